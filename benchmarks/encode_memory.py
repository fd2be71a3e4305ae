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
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from helpers import make_tiny_model_dir

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = make_tiny_model_dir(tmp / "model", hidden=64, layers=2, heads=2)
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
    verdict = "within" if peak_mb < BOUND_MB else "OVER"
    md = (f"`kosimcse encode` on {args.lines:,} synthesised short lines ({input_mb:.0f} MB of text) with a random "
          f"2x64 encoder, batch 256, bf16 where fast; output {emb.shape} float32 ({output_mb:.0f} MB) written chunk by "
          f"chunk into a memory-mapped .npy.\n\n"
          f"| lines | wall time (s) | lines/s | peak RSS (MB) | bound (MB) | verdict |\n|---:|---:|---:|---:|---:|---|\n"
          f"| {args.lines:,} | {wall:.0f} | {args.lines / wall:,.0f} | {peak_mb:.0f} | {BOUND_MB} | {verdict} |\n")
    save_result("encode_memory", "Encode memory bound (1M lines)", md, wall,
                data={"lines": args.lines, "peak_rss_mb": peak_mb, "wall_time_s": wall, "bound_mb": BOUND_MB},
                command=f"python -m benchmarks.encode_memory --lines {args.lines}", order=70)
    print(md)


if __name__ == "__main__":
    main()
