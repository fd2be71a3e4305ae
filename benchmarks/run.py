"""One command for every benchmark table: ``python -m benchmarks.run --quick`` (minutes) or ``--full`` (hours).

--quick: floors, e5 zero-shot (reused from eval_e5.json unless --rerun-e5), the speed comparisons with
         short timed segments, the quality table, then docs/BENCHMARKS.md.
--full:  also re-runs the e5 evaluation and the long training rows (``benchmarks/train_rows.py``
         when present), with longer speed segments.
--smoke: seconds-long run of the whole harness on tiny random models into --results-dir (CI).
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _step(name: str) -> float:
    print(f"== {name}", flush=True)
    return time.perf_counter()


def _module(name: str, *args: str) -> None:
    subprocess.run([sys.executable, "-m", name, *args], check=True, cwd=str(ROOT))


def smoke(results_dir: Path, log=print) -> Path:
    """The harness end to end on tiny models; writes only under ``results_dir``."""
    from benchmarks import floors, quality, render, speed
    from benchmarks.harness import results_dir as redirect

    results_dir = Path(results_dir)
    with redirect(results_dir):
        floors.run(smoke=True, seeds=(0,), limit=40, command="python -m benchmarks.run --smoke")
        speed.run(smoke=True, repeats=1, train_steps=2, warmup=1, batch=4, max_length=16, encode_n=16, encode_n1=2,
                  command="python -m benchmarks.run --smoke", log=log)
        quality.run(command="python -m benchmarks.run --smoke")
    out = results_dir / "BENCHMARKS.md"
    render.render(results_dir, out)
    return out


def quick_or_full(full: bool, rerun_e5: bool, skip: tuple[str, ...] = ()) -> None:
    from benchmarks import floors, quality, render, speed
    from benchmarks.common import RESULTS_DIR

    command = "python -m benchmarks.run " + " ".join(sys.argv[1:])
    if "floors" in skip:
        print("== floors: skipped, keeping benchmarks/results/floors.json")
    else:
        t = _step("floors")
        floors.run(command=command)
        print(f"   {time.perf_counter() - t:.0f} s")
    if full or rerun_e5 or not (RESULTS_DIR / "eval_e5.json").is_file():
        t = _step("e5 zero-shot")
        _module("benchmarks.eval_e5")
        print(f"   {time.perf_counter() - t:.0f} s")
    else:
        print("== e5 zero-shot: reusing benchmarks/results/eval_e5.json (--rerun-e5 to measure again)")
    if full and importlib.util.find_spec("benchmarks.train_rows") is not None:
        t = _step("training rows")
        _module("benchmarks.train_rows")
        print(f"   {time.perf_counter() - t:.0f} s")
    if "speed" in skip:
        print("== speed: skipped, keeping benchmarks/results/speed.json")
    else:
        t = _step("speed")
        if full:
            speed.run(repeats=5, train_steps=30, warmup=2, encode_n=1024, encode_n1=64, command=command)
        else:
            # Short segments: on the shared 2-core box one e5 worker (imports, load, 6 steps) takes minutes.
            speed.run(repeats=3, train_steps=5, warmup=1, encode_n=128, encode_n1=8, command=command)
        print(f"   {time.perf_counter() - t:.0f} s")
    quality.run(command=command)
    render.render()
    print(f"wrote {render.DOC}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--quick", action="store_true")
    mode.add_argument("--full", action="store_true")
    mode.add_argument("--smoke", action="store_true")
    parser.add_argument("--results-dir", help="--smoke only: where results and BENCHMARKS.md go (default: a temp dir)")
    parser.add_argument("--rerun-e5", action="store_true", help="--quick: measure e5 zero-shot again")
    parser.add_argument("--skip", nargs="+", default=[], choices=["floors", "speed"],
                        help="keep these results from an earlier run instead of measuring again")
    args = parser.parse_args(argv)
    if args.smoke:
        out = smoke(Path(args.results_dir or tempfile.mkdtemp(prefix="kosimcse-bench-smoke-")))
        print(f"wrote {out}")
        return
    quick_or_full(full=args.full, rerun_e5=args.rerun_e5, skip=tuple(args.skip))


if __name__ == "__main__":
    main()
