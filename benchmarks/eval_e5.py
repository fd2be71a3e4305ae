"""Baseline: multilingual-e5-small (offline HF folder) on KorSTS dev/test and KLUE-STS dev, with and without "query: ".

Run: python -m benchmarks.eval_e5 [--model FOLDER_OR_ALIAS] [--no-fp32-check]
Each sentence set is encoded once per setting (unique sentences), in the precision ``auto`` picks (bf16 only
where the CPU runs it natively); when that is not fp32, one extra fp32 row on KorSTS test shows what it costs.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time

from benchmarks.common import save_result
from benchmarks.harness import E5_PATH

TASKS = ("korsts-dev", "korsts-test", "klue-sts-dev")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=E5_PATH,
                        help="model folder or alias (default: $KOSIMCSE_E5_PATH or e5-small-airgap)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--no-fp32-check", action="store_true", help="skip the fp32 KorSTS-test row")
    args = parser.parse_args()

    from kosimcse.evaluation.sts import StsEvaluator
    from kosimcse.inference.encoder import KoSimCSE

    start = time.perf_counter()
    evaluators = {task: StsEvaluator.from_task(task) for task in TASKS}
    settings = [("me5-small, mean, prefix \"query: \"", "query: "), ("me5-small, mean, no prefix", "")]
    encoder = KoSimCSE.from_pretrained(args.model, pooling="mean", prefix="", max_length=128, dtype="auto")
    results: dict[str, dict[str, dict]] = {task: {} for task in TASKS}
    timings: dict[str, float] = {}
    for row, prefix in settings:
        encoder.prefix = prefix
        for task, evaluator in evaluators.items():
            t0 = time.perf_counter()
            results[task][row] = evaluator(lambda texts: encoder.encode(texts, batch_size=args.batch_size,
                                                                         show_progress=False))
            timings[f"{task} | {row}"] = round(time.perf_counter() - t0, 1)
            print(f"{task:13s} {row:35s} cosine {results[task][row]['cosine_pearson']:.2f} / "
                  f"{results[task][row]['cosine_spearman']:.2f}  ({timings[f'{task} | {row}']} s, {encoder.dtype})",
                  flush=True)
    dtype = encoder.dtype
    if not args.no_fp32_check and dtype != "fp32":
        encoder.prefix = "query: "
        encoder.dtype = "fp32"
        row = "me5-small, mean, prefix \"query: \" (fp32)"
        t0 = time.perf_counter()
        results["korsts-test"][row] = evaluators["korsts-test"](
            lambda texts: encoder.encode(texts, batch_size=args.batch_size, show_progress=False))
        timings[f"korsts-test | {row}"] = round(time.perf_counter() - t0, 1)
        print(f"korsts-test   {row} cosine {results['korsts-test'][row]['cosine_pearson']:.2f} / "
              f"{results['korsts-test'][row]['cosine_spearman']:.2f}", flush=True)
    wall = time.perf_counter() - start

    save_result("eval_e5", "Baseline: multilingual-e5-small on Korean STS", wall,
                data={"results": results, "dtype": dtype, "seconds": timings, "model": args.model,
                      "pairs": {task: len(ev) for task, ev in evaluators.items()},
                      "sentences": {task: len(ev.sentences) for task, ev in evaluators.items()}}, order=20,
                command=" ".join(["python -m benchmarks.eval_e5", *map(shlex.quote, sys.argv[1:])]))


if __name__ == "__main__":
    main()
