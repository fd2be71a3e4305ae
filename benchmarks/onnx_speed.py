"""ONNX speed: sentence-transformers and kosimcse on torch fp32, ONNX fp32 and ONNX int8, side by side in one run.

Run: python -m benchmarks.onnx_speed --model DIR [--sentences 2000] [--batches 1,32,128]

DIR is a kosimcse export (a sentence-transformers folder); its ONNX graphs are built into DIR/onnx first if
missing. Each row runs in its own subprocess, so its peak RSS is its own. Every row encodes the KorSTS test
sentences once at the largest batch (for the cosine Spearman, and for the mean cosine to the
SentenceTransformer fp32 vectors over the first --sentences of them), then times the same first --sentences
at each batch size after one warm-up batch. Only ratios within one run count on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULT_MARK = "ONNX-SPEED-RESULT "
ROWS = [
    # (row, library, backend); "int8" files are the ones this CPU's kosimcse onnx-int8 picks.
    ("SentenceTransformer.encode fp32 (torch)", "st", "torch"),
    ("SentenceTransformer ONNX fp32", "st", "onnx"),
    ("SentenceTransformer ONNX int8", "st", "onnx-int8"),
    ("kosimcse torch fp32", "kosimcse", "torch"),
    ("kosimcse onnx", "kosimcse", "onnx"),
    ("kosimcse onnx-int8", "kosimcse", "onnx-int8"),
]
REFERENCE = ROWS[0][0]


def _load(spec: dict):
    """A callable ``encode(texts, batch_size) -> normalized vectors`` for one row."""
    from kosimcse.inference import onnx as onnx_backend

    model_dir = spec["model"]
    if spec["library"] == "kosimcse":
        from kosimcse import KoSimCSE

        model = KoSimCSE.from_pretrained(model_dir, backend=spec["backend"], device="cpu", dtype="fp32")
        return lambda texts, bs: model.encode(texts, batch_size=bs, normalize=True, show_progress=False)
    from sentence_transformers import SentenceTransformer

    kwargs = {}
    if spec["backend"] != "torch":
        kwargs = {"backend": "onnx", "model_kwargs": {"file_name": onnx_backend.onnx_file(model_dir, spec["backend"]).name}}
    model = SentenceTransformer(model_dir, device="cpu", **kwargs)
    return lambda texts, bs: model.encode(texts, batch_size=bs, normalize_embeddings=True, prompt_name="query")


def worker(spec: dict) -> dict:
    from kosimcse.evaluation.sts import StsEvaluator

    evaluator = StsEvaluator.from_task("korsts-test", data_dir=spec.get("data_dir"))
    encode = _load(spec)
    batches = spec["batches"]
    vectors = np.asarray(encode(evaluator.sentences, max(batches)), dtype=np.float32)
    spearman = evaluator(lambda texts: vectors)["cosine_spearman"]
    timed = evaluator.sentences[:spec["sentences"]]
    speed = {}
    for bs in batches:
        encode(timed[:bs], bs)  # warm-up: first-call allocations and kernel selection
        start = time.perf_counter()
        encode(timed, bs)
        speed[str(bs)] = round(len(timed) / (time.perf_counter() - start), 2)
    np.save(spec["vectors"], vectors[:spec["sentences"]])
    return {"sentences_per_s": speed, "korsts_test_cosine_spearman": round(float(spearman), 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)}


def run_row(spec: dict) -> dict:
    """One row in a fresh interpreter; a row that cannot run records why instead of stopping the others."""
    proc = subprocess.run([sys.executable, "-m", "benchmarks.onnx_speed", "--worker", json.dumps(spec)],
                          capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK):])
    tail = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    return {"error": tail[-1][:300] if tail else f"exit status {proc.returncode}"}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=os.environ.get("KOSIMCSE_BENCH_MODEL"),
                        help="kosimcse export (sentence-transformers folder); env KOSIMCSE_BENCH_MODEL")
    parser.add_argument("--sentences", type=int, default=2000, help="KorSTS test sentences timed per batch size")
    parser.add_argument("--batches", default="1,32,128")
    parser.add_argument("--data-dir", default=None, help="Data folder (shared/data layout); default: embedded KorSTS")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(RESULT_MARK + json.dumps(worker(json.loads(args.worker))), flush=True)
        return
    if not args.model:
        parser.error("--model (or KOSIMCSE_BENCH_MODEL) is required")
    from benchmarks.common import save_result
    from kosimcse.inference import onnx as onnx_backend

    start = time.perf_counter()
    model_dir = str(Path(args.model).resolve())
    if not all(onnx_backend.onnx_file(model_dir, b).is_file() for b in ("onnx", "onnx-int8")):
        onnx_backend.export_onnx(model_dir)
    batches = [int(b) for b in args.batches.split(",")]
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, library, backend in ROWS:
            spec = {"model": model_dir, "library": library, "backend": backend, "batches": batches,
                    "sentences": args.sentences, "data_dir": args.data_dir, "vectors": f"{tmp}/{len(rows)}.npy"}
            print(f"{name} ...", file=sys.stderr, flush=True)
            rows[name] = run_row(spec)
            rows[name]["vectors"] = spec["vectors"]
            print(f"  {rows[name]}", file=sys.stderr, flush=True)
        ref = np.load(rows[REFERENCE]["vectors"]) if "error" not in rows[REFERENCE] else None
        for row in rows.values():
            path = row.pop("vectors")
            if "error" not in row and ref is not None:
                row["mean_cosine_to_st_fp32"] = round(float(np.mean(np.sum(np.load(path) * ref, axis=1))), 5)
    info = onnx_backend.read_export_info(model_dir)
    data = {
        "model": Path(args.model).name,
        "sentences": args.sentences,
        "batches": batches,
        "cpu_flags": onnx_backend.cpu_flags(),
        "int8_file": onnx_backend.onnx_file(model_dir, "onnx-int8").name,
        "export_check": info.get("int8_mean_cosine_to_fp32"),
        "versions": _versions(),
        "rows": rows,
    }
    save_result("onnx_speed", "ONNX and int8 CPU inference against SentenceTransformer.encode",
                time.perf_counter() - start, data=data, order=45)
    print(json.dumps(data, indent=2))


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for package in ("onnxruntime", "sentence-transformers", "transformers", "optimum-onnx"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = None
    return out


if __name__ == "__main__":
    main()
