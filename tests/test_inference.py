"""Encoder and model loading on tiny random models: order, precision, search, saved settings, safety, offline."""

from __future__ import annotations

import json
import shutil
import socket
import time

import numpy as np
import pytest
import torch

from helpers import make_tiny_model_dir
from kosimcse.errors import ModelLoadError
from kosimcse.inference.encoder import KoSimCSE, topk_cosine
from kosimcse.loading import resolve as loading

TEXTS = [
    "한 남자가 기타를 치고 있다.",
    "고양이",
    "아이들이 공원에서 뛰어 놀고 있고 부모들은 벤치에 앉아 그들을 지켜보고 있다.",
    "여자가 양파를 썰고 있다.",
    "비",
    "오늘 날씨가 정말 좋네요, 산책하기 딱 좋은 날입니다.",
    "그 영화는 생각보다 재미있었다.",
]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def tiny(tiny_dir):
    return KoSimCSE.from_pretrained(tiny_dir, pooling="mean", device="cpu", dtype="fp32")


def test_length_sorted_batches_come_back_in_input_order(tiny):
    one_by_one = np.stack([tiny.encode([t], batch_size=1, show_progress=False)[0] for t in TEXTS])
    batched = tiny.encode(TEXTS, batch_size=3, show_progress=False)
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    perm = np.random.default_rng(0).permutation(len(TEXTS))
    permuted = tiny.encode([TEXTS[i] for i in perm], batch_size=4, show_progress=False)
    np.testing.assert_allclose(permuted, batched[perm], atol=1e-5)
    assert batched.shape == (len(TEXTS), tiny.dim) and batched.dtype == np.float32


def test_single_string_normalize_and_torch_output(tiny):
    vec = tiny.encode(TEXTS[0], normalize=True, show_progress=False)
    assert vec.shape == (tiny.dim,) and abs(np.linalg.norm(vec) - 1) < 1e-5
    as_torch = tiny.encode(TEXTS[:2], convert_to="torch", show_progress=False)
    assert torch.is_tensor(as_torch) and as_torch.shape == (2, tiny.dim)


def test_bf16_autocast_stays_close_to_fp32(tiny_dir):
    fp32 = KoSimCSE.from_pretrained(tiny_dir, pooling="mean", device="cpu", dtype="fp32")
    bf16 = KoSimCSE.from_pretrained(tiny_dir, pooling="mean", device="cpu", dtype="bf16")
    assert bf16.dtype == "bf16"
    a = fp32.encode(TEXTS, show_progress=False)
    b = bf16.encode(TEXTS, show_progress=False)
    cos = np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() > 0.99
    assert not np.array_equal(a, b)  # bf16 really ran


def test_prefix_and_pooling_change_the_embedding(tiny_dir, tiny):
    plain = tiny.encode(TEXTS[:2], show_progress=False)
    prefixed = KoSimCSE.from_pretrained(tiny_dir, pooling="mean", prefix="질문: ", device="cpu", dtype="fp32")
    cls = KoSimCSE.from_pretrained(tiny_dir, pooling="cls", device="cpu", dtype="fp32")
    assert not np.allclose(prefixed.encode(TEXTS[:2], show_progress=False), plain)
    assert not np.allclose(cls.encode(TEXTS[:2], show_progress=False), plain)


def test_prefix_set_on_a_loaded_encoder_is_used(tiny_dir):
    enc = KoSimCSE.from_pretrained(tiny_dir, pooling="mean", device="cpu", dtype="fp32")
    enc.prefix = "질문: "  # as benchmarks/eval_e5.py switches prefixes on one loaded model
    prefixed = KoSimCSE.from_pretrained(tiny_dir, pooling="mean", prefix="질문: ", device="cpu", dtype="fp32")
    np.testing.assert_array_equal(enc.encode(TEXTS[:2], show_progress=False),
                                  prefixed.encode(TEXTS[:2], show_progress=False))


def test_encode_restores_training_mode_and_handles_hidden_state_poolers(tiny):
    from kosimcse.modeling.model import SimCSEConfig, SimCSEModel

    model = SimCSEModel.for_inference(tiny.model, SimCSEConfig(pooler="avg_first_last"))
    model.train()
    try:
        out = model.encode(tiny.tokenizer, TEXTS[:3], max_length=16, batch_size=2)
        again = model.encode(tiny.tokenizer, TEXTS[:3], max_length=16, batch_size=2)
        assert model.training
        np.testing.assert_array_equal(out, again)  # dropout was off while encoding
    finally:
        model.eval()


def test_search_finds_the_text_itself(tiny):
    corpus = tiny.encode(TEXTS, show_progress=False)
    hits = tiny.search([TEXTS[3], TEXTS[5]], corpus, k=3)
    assert [row[0][0] for row in hits] == [3, 5]
    assert hits[0][0][1] == pytest.approx(1.0, abs=1e-4)
    assert hits[0][0][1] >= hits[0][1][1] >= hits[0][2][1]
    sims = tiny.similarity(TEXTS[:2], TEXTS)
    assert sims.shape == (2, len(TEXTS)) and np.argmax(sims[1]) == 1


def test_chunked_topk_equals_brute_force():
    rng = np.random.default_rng(1)
    corpus, queries = rng.normal(size=(1000, 16)), rng.normal(size=(5, 16))
    scores, idx = topk_cosine(queries, corpus, k=7, chunk_size=64, use_faiss=False)
    cn = corpus / np.linalg.norm(corpus, axis=1, keepdims=True)
    qn = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    expected = np.argsort(-(qn @ cn.T), axis=1)[:, :7]
    np.testing.assert_array_equal(idx, expected)
    assert np.all(np.diff(scores, axis=1) <= 0)


def test_saved_kosimcse_config_supplies_defaults(tiny_dir, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_dir, folder)
    (folder / loading.KOSIMCSE_CONFIG).write_text(json.dumps({"pooling": "cls", "prefix": "query: ", "max_length": 32}))
    enc = KoSimCSE.from_pretrained(folder, device="cpu", dtype="fp32")
    assert (enc.pooling, enc.prefix, enc.max_length) == ("cls", "query: ", 32)
    assert KoSimCSE.from_pretrained(folder, pooling="mean", prefix="", device="cpu").prefix == ""


def test_sentence_transformers_pooling_config_is_read(tiny_dir, tmp_path):
    folder = tmp_path / "st"
    shutil.copytree(tiny_dir, folder)
    (folder / "1_Pooling").mkdir()
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]))
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 32, "pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 64}))
    cfg = loading.read_config(folder)
    assert (cfg.pooler, cfg.embed_max_length, cfg.normalize) == ("cls", 64, True)


def test_pickle_only_folder_is_refused_unless_allowed(tiny_dir, tmp_path):
    from safetensors.torch import load_file

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_dir, folder)
    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match="pickle"):
        loading.resolve_model(folder)
    with pytest.raises(ModelLoadError, match="allow-pickle"):
        KoSimCSE.from_pretrained(folder)
    enc = KoSimCSE.from_pretrained(folder, pooling="mean", device="cpu", dtype="fp32", allow_pickle=True)
    reference = KoSimCSE.from_pretrained(tiny_dir, pooling="mean", device="cpu", dtype="fp32")
    np.testing.assert_allclose(enc.encode(TEXTS[:2], show_progress=False),
                               reference.encode(TEXTS[:2], show_progress=False), atol=1e-6)


def test_folder_without_weights_is_refused(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelLoadError, match="no model weights"):
        loading.resolve_model(tmp_path)


def test_missing_local_path_is_not_sent_to_the_hub(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        loading.resolve_model(str(tmp_path / "runs" / "nope" / "best"))


def test_hub_id_fails_fast_when_offline_is_set(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(ModelLoadError) as info:
        loading.resolve_model("kosimcse-test-org/never-downloaded-model")
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert "kosimcse import-e5" in message and "e5-small-airgap" in message and "local" in message


def test_hub_id_fails_fast_when_hub_is_unreachable(monkeypatch):
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    attempts = []

    def unreachable(address, timeout=None, *args, **kwargs):
        attempts.append(address)
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    start = time.monotonic()
    with pytest.raises(ModelLoadError) as info:
        loading.resolve_model("kosimcse-test-org/never-downloaded-model")
    assert time.monotonic() - start < 5
    assert attempts and attempts[0][0] == "huggingface.co"
    assert "unreachable" in str(info.value) and "e5-small-airgap" in str(info.value)


def test_airgap_alias_goes_to_the_airgap_builder(monkeypatch, tiny_dir):
    import kosimcse.loading.airgap as airgap

    monkeypatch.setattr(airgap, "ensure_e5_small", lambda cache_dir=None, **kw: tiny_dir)
    assert loading.resolve_model("e5-small-airgap") == tiny_dir


def test_roberta_style_model_encodes(tmp_path):
    folder = make_tiny_model_dir(tmp_path / "rob", model_type="roberta")
    enc = KoSimCSE.from_pretrained(folder, pooling="cls", device="cpu", dtype="fp32")
    assert enc.encode(TEXTS[:3], show_progress=False).shape == (3, 32)


def test_saved_dense_head_is_applied_like_sentence_transformers(tiny_dir, tmp_path, tiny):
    from safetensors.torch import save_file

    folder = tmp_path / "with-head"
    shutil.copytree(tiny_dir, folder)
    (folder / "2_Dense").mkdir()
    (folder / "1_Pooling").mkdir()
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}]))
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode": "cls"}))
    (folder / "2_Dense" / "config.json").write_text(json.dumps(
        {"in_features": 32, "out_features": 32, "bias": True,
         "activation_function": "torch.nn.modules.activation.Tanh"}))
    gen = torch.Generator().manual_seed(0)
    weight, bias = torch.randn(32, 32, generator=gen) * 0.1, torch.randn(32, generator=gen) * 0.1
    save_file({"linear.weight": weight, "linear.bias": bias}, str(folder / "2_Dense" / "model.safetensors"))
    # SimCSEConfig names the pooler "pooler"; it must be honoured as the pooling.
    (folder / "kosimcse_config.json").write_text(json.dumps({"pooler": "cls", "prefix": "", "max_length": 64}))

    with_head = KoSimCSE.from_pretrained(folder, device="cpu", dtype="fp32")
    assert with_head.pooling == "cls" and with_head.head is not None
    cls_vectors = KoSimCSE.from_pretrained(tiny_dir, pooling="cls", device="cpu", dtype="fp32").encode(
        TEXTS, show_progress=False)
    expected = torch.tanh(torch.from_numpy(cls_vectors) @ weight.T + bias).numpy()
    np.testing.assert_allclose(with_head.encode(TEXTS, show_progress=False), expected, atol=1e-5)


def test_dense_head_with_unknown_activation_is_refused(tiny_dir, tmp_path):
    folder = tmp_path / "odd-head"
    shutil.copytree(tiny_dir, folder)
    (folder / "2_Dense").mkdir()
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}]))
    (folder / "2_Dense" / "config.json").write_text(json.dumps(
        {"in_features": 32, "out_features": 32, "activation_function": "os.system"}))
    (folder / "2_Dense" / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelLoadError, match="activation"):
        loading.load_dense_head(folder)


@pytest.mark.parametrize("pooler, mlp_only_train", [("cls", False), ("avg_first_last", False)])
def test_exported_simcse_folder_embeds_like_sentence_transformers(tiny_dir, tmp_path, pooler, mlp_only_train):
    """A folder written by training's export must mean the same vectors to KoSimCSE and to SentenceTransformer."""
    model_mod = pytest.importorskip("kosimcse.modeling.model")
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer

    model = model_mod.SimCSEModel.from_encoder(str(tiny_dir), model_mod.SimCSEConfig(
        pooler=pooler, mlp_only_train=mlp_only_train, prefix="질문: "))
    model.save_pretrained(tmp_path / "export", AutoTokenizer.from_pretrained(tiny_dir))
    ours = KoSimCSE.from_pretrained(tmp_path / "export", device="cpu", dtype="fp32")
    assert (ours.pooling, ours.prefix) == (pooler, "질문: ")
    theirs = SentenceTransformer(str(tmp_path / "export"), device="cpu").encode(TEXTS, prompt_name="query")
    np.testing.assert_allclose(ours.encode(TEXTS, show_progress=False), theirs, atol=1e-5)


def test_auto_dtype_encodes_tiny_batches_in_fp32_and_big_ones_as_resolved(tiny_dir, monkeypatch):
    from kosimcse import precision as precision_module

    monkeypatch.setattr(precision_module, "cpu_bf16_native", lambda: (True, "as on an AMX CPU"))
    auto = KoSimCSE.from_pretrained(tiny_dir, pooling="mean", device="cpu", dtype="auto")
    fp32 = KoSimCSE.from_pretrained(tiny_dir, pooling="mean", device="cpu", dtype="fp32")
    bf16 = KoSimCSE.from_pretrained(tiny_dir, pooling="mean", device="cpu", dtype="bf16")
    assert auto.dtype == "bf16"
    # Batch 1 (and a single string) runs in fp32: bit-equal to the fp32 encoder.
    assert np.array_equal(auto.encode(TEXTS, batch_size=1, show_progress=False),
                          fp32.encode(TEXTS, batch_size=1, show_progress=False))
    assert np.array_equal(auto.encode(TEXTS[0], show_progress=False), fp32.encode(TEXTS[0], show_progress=False))
    # A full batch keeps bf16; an explicit dtype is never overridden.
    assert np.array_equal(auto.encode(TEXTS, batch_size=64, show_progress=False),
                          bf16.encode(TEXTS, batch_size=64, show_progress=False))
    assert not np.array_equal(bf16.encode(TEXTS, batch_size=1, show_progress=False),
                              fp32.encode(TEXTS, batch_size=1, show_progress=False))
