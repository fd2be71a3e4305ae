"""Peak memory of `kosimcse encode` on one million short lines (synthesised from KorSTS sentences).

The bound under test is the pipeline's (streamed reading, chunked writing into a memory-mapped .npy),
so a small random encoder stands in for a real one to keep the run to minutes on 2 CPU cores; the
model's own weights add a constant (e5-small: about 470 MB in fp32).

    python -m benchmarks.encode_memory [--lines 1000000]
"""

from __future__ import annotations

import argparse
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import save_result

BOUND_MB = 2048


def synthesise(path: Path, n: int, seed: int = 0) -> None:
    from kosimcse.data.tasks import load_sts_task

    sentences = sorted({s for p in load_sts_task("korsts-dev") for s in (p.sentence1, p.sentence2)})
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            # Short lines, mostly unique: a sentence with a counter so that nothing dedups away.
            fh.write(f"{rng.choice(sentences)} {i}\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    from benchmarks.harness import tiny_tokenizer, write_random_model_dir

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = write_random_model_dir(tmp / "model", tiny_tokenizer(), layers=2, hidden=64, heads=2)
        lines = tmp / "lines.txt"
        synthesise(lines, args.lines)
        out = tmp / "emb.npy"
        start = time.time()
        proc = subprocess.run([sys.executable, "-m", "kosimcse", "encode", str(model), str(lines), "-o", str(out),
                               "--batch-size", "256", "--max-length", "32"], capture_output=True, text=True)
        wall = time.time() - start
        if proc.returncode != 0:
            raise SystemExit(proc.stderr[-2000:])
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        import numpy as np

        emb = np.load(out, mmap_mode="r")
        input_mb = lines.stat().st_size / 2**20
        output_mb = out.stat().st_size / 2**20
    save_result("encode_memory", "Encode memory bound (1M lines)", wall,
                data={"lines": args.lines, "peak_rss_mb": peak_mb, "wall_time_s": wall, "bound_mb": BOUND_MB,
                      "input_mb": input_mb, "output_mb": output_mb, "output_shape": list(emb.shape),
                      "model": "random BERT 2x64", "batch_size": 256},
                command=f"python -m benchmarks.encode_memory --lines {args.lines}", order=70)
    print(f"peak RSS {peak_mb:.0f} MB (bound {BOUND_MB} MB), {wall:.0f} s")


if __name__ == "__main__":
    main()
