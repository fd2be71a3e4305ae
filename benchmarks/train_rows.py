"""Trained quality rows: e5-small + SimCSE (supervised NLI, unsupervised seed corpus, kowiki + domain) on a CPU budget.

Each row is one `kosimcse` training run, dev-selected (KorSTS dev, the starting model included), reported on
KorSTS test/dev and KLUE-STS dev, and saved as ``benchmarks/results/train_<row>.json`` for benchmarks.quality.

    python -m benchmarks.train_rows --rows sup_nli unsup_seed domain_nsmc
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from benchmarks.common import save_result

RUNS = Path("runs/bench")
E5 = dict(model_name_or_path="e5-small-airgap", pooler="avg", prefix="query: ", mlp_only_train=False,
          freeze_embeddings=True, temperature=0.05)
COMMON = dict(precision="auto", report_to=[], disable_tqdm=True, eval_on_start=True, warmup_steps=0, logging_steps=10,
              seed=42, report_tasks=["korsts-dev", "korsts-test", "klue-sts-dev"])


def corpus(name: str, specs: list[str]) -> str:
    """Prepare (once) a corpus from source specs; returns the sentences file."""
    from kosimcse.data.corpus import prepare_corpus

    out = RUNS / f"corpus-{name}"
    if not (out / "sentences.txt").exists():
        prepare_corpus(specs, out)
    return str(out / "sentences.txt")


def row_settings(row: str, steps: int, data: Path) -> tuple[str, dict]:
    if row == "sup_nli":
        return ("multilingual-e5-small + supervised SimCSE (KLUE-NLI triplets)", dict(
            E5, **COMMON, objective="sup", learning_rate=2e-5, per_device_train_batch_size=32, max_length=48,
            max_train_sentences=32 * steps, max_steps=steps, eval_steps=max(steps // 4, 1), save_steps=max(steps // 4, 1)))
    kowiki = f"kowiki:{data / 'corpus' / 'kowiki' / 'AA'}"
    extra: dict = {}
    if row == "unsup_seed":
        train_file = corpus("seed", [kowiki, f"klue-sts:{data / 'klue-sts' / 'klue_sts_train.csv'}",
                                     f"korsts:{data / 'korsts' / 'sts-train.tsv'}"])
        name = "multilingual-e5-small + unsupervised SimCSE (kowiki slice + KLUE-STS/KorSTS train sentences)"
    elif row == "domain_nsmc":
        train_file = corpus("domain-nsmc", [kowiki, f"nsmc:{data / 'domain' / 'nsmc' / 'raw'}"])
        name = "multilingual-e5-small + unsupervised SimCSE (kowiki slice + NSMC reviews, no STS data)"
        # As recipes/domain.yaml: the latest checkpoint within 0.5 KorSTS-dev points of the start.
        extra = dict(selection_tolerance=0.5)
    else:
        raise SystemExit(f"unknown row {row}")
    return name, dict(E5, **COMMON, objective="unsup", train_file=train_file, learning_rate=1e-5,
                      per_device_train_batch_size=64, max_length=32, max_train_sentences=64 * steps, max_steps=steps,
                      eval_steps=max(steps // 4, 1), save_steps=max(steps // 4, 1), **extra)


def dev_curve(output_dir: str) -> list[tuple[int, float]]:
    """(step, KorSTS dev cosine Spearman) at every evaluation of the run, the start included."""
    import json

    path = Path(output_dir) / "metrics.jsonl"
    records = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()] if path.exists() else []
    return [(r["step"], r["eval_cosine_spearman"]) for r in records if "eval_cosine_spearman" in r]


def save_row(row: str, name: str, settings: dict, summary: dict, wall: float, steps: int) -> None:
    if summary["kept_initial_model"]:
        name += " [no checkpoint qualified on dev: starting weights kept]"
    elif settings.get("selection_tolerance"):
        name += f" [latest checkpoint within {settings['selection_tolerance']:g} KorSTS-dev points of the start]"
    save_result(f"train_{row}", f"Trained row: {name}", wall,
                data={"row_name": name, "results": summary["results"], "summary": {
                    k: v for k, v in summary.items() if k != "results"}, "settings": settings,
                    "dev_curve": dev_curve(settings["output_dir"])},
                command=f"python -m benchmarks.train_rows --rows {row} --steps {steps}", order=40)


def main(argv=None):
    import json

    from kosimcse.paths import data_dir
    from kosimcse.training.args import load_recipe
    from kosimcse.training.run import train

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", nargs="+", default=["sup_nli", "unsup_seed", "domain_nsmc"])
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--rerender", action="store_true",
                        help="Rewrite the result files from the finished runs in runs/bench (no training).")
    args = parser.parse_args(argv)
    data = data_dir()
    for row in args.rows:
        name, settings = row_settings(row, args.steps, data)
        settings["output_dir"] = str(RUNS / row)
        if args.rerender:
            summary = json.loads((RUNS / row / "summary.json").read_text(encoding="utf-8"))
            save_row(row, name, settings, summary, summary["wall_time_s"], args.steps)
            continue
        # A fresh run: metrics.jsonl is appended to, and an earlier run's evaluations would mix into the dev curve.
        shutil.rmtree(settings["output_dir"], ignore_errors=True)
        start = time.time()
        summary = train(*load_recipe(None, settings))
        save_row(row, name, settings, summary, time.time() - start, args.steps)


if __name__ == "__main__":
    main()
