"""ONNX backends on tiny random models: export layout, loading on each backend, same vectors as torch, auto, errors."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest

from helpers import make_tiny_model_dir
from kosimcse.errors import KoSimCSEError, ModelLoadError
from kosimcse.inference import onnx as onnx_backend
from kosimcse.inference.encoder import KoSimCSE

TEXTS = [
    "한 남자가 기타를 치고 있다.",
    "고양이",
    "아이들이 공원에서 뛰어 놀고 있고 부모들은 벤치에 앉아 그들을 지켜보고 있다.",
    "여자가 양파를 썰고 있다.",
    "비",
]


def _simcse_export(tiny_dir, out, pooler):
    from transformers import AutoTokenizer

    from kosimcse.modeling.model import SimCSEConfig, SimCSEModel

    model = SimCSEModel.from_encoder(str(tiny_dir), SimCSEConfig(pooler=pooler, prefix="질문: "))
    model.save_pretrained(out, AutoTokenizer.from_pretrained(tiny_dir))
    return out


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def cls_export(tiny_dir, tmp_path_factory):
    """A trained-model folder (cls pooler + SimCSE's Dense head, a prefix) with fp32 and both int8 graphs."""
    pytest.importorskip("onnxruntime")
    folder = _simcse_export(tiny_dir, tmp_path_factory.mktemp("cls") / "model", "cls")
    files = onnx_backend.export_onnx(folder, quantize=("avx2", "avx512_vnni"))
    return folder, files


def _encode(folder, backend, **kwargs):
    model = KoSimCSE.from_pretrained(folder, device="cpu", dtype="fp32", backend=backend, **kwargs)
    return model, model.encode(TEXTS, batch_size=2, normalize=True, show_progress=False)


def test_export_writes_sentence_transformers_layout(cls_export):
    import onnxruntime as ort

    folder, files = cls_export
    assert {p.relative_to(folder).as_posix() for p in files.values()} == {
        "onnx/model.onnx", "onnx/model_quint8_avx2.onnx", "onnx/model_qint8_avx512_vnni.onnx"}
    for path in files.values():
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        # optimum's feature-extraction graph: the tokenizer's inputs in, last_hidden_state out.
        assert {i.name for i in session.get_inputs()} == {"input_ids", "attention_mask", "token_type_ids"}
        assert [o.name for o in session.get_outputs()] == ["last_hidden_state"]
    info = json.loads((folder / "onnx" / "kosimcse_onnx.json").read_text(encoding="utf-8"))
    assert set(info["int8_mean_cosine_to_fp32"]) == {"avx2", "avx512_vnni"}


@pytest.mark.parametrize("isa", ["avx2", "avx512_vnni"])
def test_backends_give_the_torch_vectors_with_prefix_pooler_and_head(cls_export, monkeypatch, isa):
    folder, _ = cls_export
    monkeypatch.setattr(onnx_backend, "int8_isa", lambda: isa)
    torch_model, ref = _encode(folder, "torch")
    fp32_model, fp32 = _encode(folder, "onnx")
    int8_model, int8 = _encode(folder, "onnx-int8")
    assert int8_model.model.file.name == onnx_backend.INT8_FILES[isa]
    for model in (fp32_model, int8_model):
        assert (model.pooling, model.prefix, model.head is not None) == ("cls", "질문: ", True)
    np.testing.assert_allclose(fp32, ref, atol=1e-5)
    # int8 weights and activations round each matmul; a random 32-wide encoder has no outlier channels,
    # so its vectors stay close, but not to fp32's last digits.
    assert np.sum(int8 * ref, axis=1).min() >= 0.95
    # The prefix reaches the graph: without it the vectors move far beyond the tolerance above.
    _, bare = _encode(folder, "onnx", prefix="")
    assert np.abs(bare - fp32).max() > 1e-3


def test_layer_averaging_pooler_exports_every_layer_and_matches_torch(tiny_dir, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    folder = _simcse_export(tiny_dir, tmp_path / "model", "avg_first_last")
    _, ref = _encode(folder, "torch")
    model, got = _encode(folder, "onnx")  # no export yet: built on first use, with a message
    assert "exporting" in capsys.readouterr().err
    assert model.model.has_hidden_states and model.pooling == "avg_first_last"
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_auto_uses_int8_only_where_its_export_kept_the_vectors(cls_export, tmp_path, monkeypatch):
    folder, _ = cls_export
    copy = tmp_path / "model"
    shutil.copytree(folder, copy)
    monkeypatch.setattr(onnx_backend, "int8_isa", lambda: "avx2")
    assert KoSimCSE.from_pretrained(copy, backend="auto", device="cpu").backend == "onnx-int8"
    info_path = copy / "onnx" / "kosimcse_onnx.json"
    info = json.loads(info_path.read_text(encoding="utf-8"))
    info["int8_mean_cosine_to_fp32"]["avx2"] = 0.9
    info_path.write_text(json.dumps(info), encoding="utf-8")
    assert KoSimCSE.from_pretrained(copy, backend="auto", device="cpu").backend == "torch"
    shutil.rmtree(copy / "onnx")
    assert KoSimCSE.from_pretrained(copy, backend="auto", device="cpu").backend == "torch"
    assert not (copy / "onnx").exists()  # auto never builds an export


def test_exported_graph_loads_in_sentence_transformers_onnx_backend(cls_export, monkeypatch):
    try:  # optimum has no release for transformers 5 yet; where it imports, the export must load there
        import optimum.onnxruntime  # noqa: F401
    except ImportError as e:
        pytest.skip(f"optimum's onnxruntime backend is unavailable: {e}")
    from sentence_transformers import SentenceTransformer

    folder, _ = cls_export
    # Batches of one on both sides: int8 activations are quantized with one scale per batch tensor, so vectors
    # move slightly with what else (and how much padding) shares the batch.
    for backend, file_name in [("onnx", onnx_backend.FP32_FILE), *[("onnx-int8", f) for f in onnx_backend.INT8_FILES.values()]]:
        isa = next((k for k, v in onnx_backend.INT8_FILES.items() if v == file_name), "avx2")
        monkeypatch.setattr(onnx_backend, "int8_isa", lambda isa=isa: isa)
        ours = KoSimCSE.from_pretrained(folder, backend=backend).encode(TEXTS, batch_size=1, normalize=True,
                                                                        show_progress=False)
        st = SentenceTransformer(str(folder), device="cpu", backend="onnx", model_kwargs={"file_name": file_name})
        theirs = st.encode(TEXTS, batch_size=1, prompt_name="query", normalize_embeddings=True)
        # Tighter than int8's own drift from fp32, so loading the wrong graph would fail.
        np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_prompt_pooling_is_refused_with_a_clear_message(tiny_dir, tmp_path):
    pytest.importorskip("onnxruntime")
    folder = tmp_path / "prompt"
    shutil.copytree(tiny_dir, folder)
    (folder / "kosimcse_config.json").write_text(json.dumps({"pooler": "prompt"}), encoding="utf-8")
    with pytest.raises(ModelLoadError, match="'prompt' cannot run on the ONNX backends"):
        KoSimCSE.from_pretrained(folder, backend="onnx")
    assert not (folder / "onnx").exists()


def test_missing_extra_fails_with_the_extra_named(tiny_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` raise ImportError
    for backend in ("onnx", "onnx-int8"):
        with pytest.raises(KoSimCSEError, match=r"kosimcse\[onnx\]"):
            KoSimCSE.from_pretrained(tiny_dir, backend=backend, pooling="mean")
    # auto falls back to torch instead of failing.
    assert KoSimCSE.from_pretrained(tiny_dir, backend="auto", pooling="mean", device="cpu").backend == "torch"


def test_cli_reports_the_missing_extra_as_one_error_line(tiny_dir, tmp_path, monkeypatch, capsys):
    from kosimcse.cli import main

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    texts = tmp_path / "in.txt"
    texts.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        main(["encode", str(tiny_dir), str(texts), "-o", str(tmp_path / "out.npy"), "--backend", "onnx-int8"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err and "kosimcse[onnx]" in err and not (tmp_path / "out.npy").exists()


def test_unknown_backend_is_refused(tiny_dir):
    with pytest.raises(KoSimCSEError, match="backend must be one of"):
        KoSimCSE.from_pretrained(tiny_dir, backend="tensorrt")


def test_onnx_speed_result_renders_ratios_and_targets(tmp_path):
    from benchmarks.render import render

    def row(speed, rho, cosine):
        return {"sentences_per_s": {"1": speed[0], "32": speed[1], "128": speed[2]}, "peak_rss_mb": 900.0,
                "korsts_test_cosine_spearman": rho, "mean_cosine_to_st_fp32": cosine}

    data = {"model": "m", "sentences": 10, "batches": [1, 32, 128], "int8_file": "model_quint8_avx2.onnx",
            "export_check": None, "versions": {"onnxruntime": "1"},
            "cpu_flags": {"avx2": True, "avx512f": False, "avx512_vnni": False, "avx_vnni": False, "amx": False},
            "rows": {"SentenceTransformer.encode fp32 (torch)": row([10, 20, 40], 76.85, 1.0),
                     "SentenceTransformer ONNX int8": {"error": "Exception: needs optimum"},
                     "kosimcse onnx-int8": row([30, 50, 70], 76.10, 0.995)}}
    (tmp_path / "onnx_speed.json").write_text(json.dumps({
        "name": "onnx_speed", "title": "ONNX", "order": 45, "command": "python -m benchmarks.onnx_speed",
        "date": "d", "machine": {"nproc": 2, "cpu": "c", "torch": "t"}, "wall_time_s": 1.0, "markdown": "",
        "data": data}), encoding="utf-8")
    text = render(tmp_path, tmp_path / "BENCHMARKS.md")
    assert "| kosimcse onnx-int8 | 30.0 | 50.0 | 70.0 | 3.00× | 2.50× | 1.75× | 900 | 0.99500 | 76.10 |" in text
    assert ("| onnx-int8 encoding vs SentenceTransformer.encode fp32 (batch 32) | 2.50× | 2× | +0.50× | met | "
            "CPU without AVX-512 |") in text
    assert ("| onnx-int8 encoding vs SentenceTransformer.encode fp32 (batch 128) | 1.75× | 2× | -0.25× | below | "
            "CPU without AVX-512 |") in text
    assert ("| onnx-int8 KorSTS test cosine Spearman drop vs fp32 (at most) | -0.75 | -0.5 | -0.25 | below | "
            "76.10 vs 76.85 |") in text
    assert "SentenceTransformer ONNX int8: not run: Exception: needs optimum" in text
    assert "AVX2 yes, AVX-512F no" in text
