"""Objective comparison: each objective on the same data and step budget, from one of two starting encoders.

``--start e5`` (the default) is the offline multilingual-e5-small (``e5-small-airgap``: mean pooling, "query: "
prefix, frozen token embeddings); ``--start mini`` is the 4x256 BERT pretrained from scratch by
``benchmarks.scratch_row`` (mean pooling, everything trained, a higher learning rate). Every run is a `kosimcse`
training run in the precision ``auto`` picks, repeated over seeds; multi-stage rows are chained by kosimcse's own
``stages:`` expansion (``kosimcse.training.run.stage_settings``). KorSTS dev selects the checkpoint (the starting model competes
too); KorSTS test and KLUE-STS dev are evaluated once, on the selected model. The table gives mean ± half-range
over seeds. Multitask rows are two runs: supervised SimCSE on KLUE-NLI triplets, then CoSENT/AnglE on KorSTS train
+ KLUE-STS train from the first run's export (the recipe in recipes/multitask.yaml).

    python -m benchmarks.objectives --smoke                       # plumbing check: 2 steps, one seed
    python -m benchmarks.objectives --objectives multitask_cosent --steps 100 --sts_steps 150 --seeds 42 43
    python -m benchmarks.objectives --objectives sts_cosent --sts_steps 1200 --sts_lr 5e-5 --warmup 0.1 \
        --evals 6 --name objectives_long           # a longer STS stage, saved as its own section
    python -m benchmarks.objectives --start mini --objectives unsup_infonce unsup_mlm --name objectives_mini
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.common import RESULTS_DIR, save_result

RUNS = Path("runs/bench-objectives")
MINI_DIR = Path("runs/bench/scratch/mlm")


@dataclass(frozen=True)
class Start:
    """A starting encoder: its model settings, learning rate per stage kind, and how the report describes it."""

    label: str
    model: dict
    learning_rates: dict = field(default_factory=dict)  # "sup" / "sts" / "unsup" -> lr
    description: str = ""
    zero_shot_result: str = ""  # result file whose korsts-test row is the start's own score
    zero_shot_row: str = ""  # the row's name, where that file holds several rows per task


STARTS = {
    "e5": Start("multilingual-e5-small", dict(model_name_or_path="e5-small-airgap", pooler="avg", prefix="query: ",
                                              mlp_only_train=False, freeze_embeddings=True, temperature=0.05),
                {"sup": 2e-5, "sts": 2e-5, "unsup": 1e-5},
                "multilingual-e5-small (offline), mean pooling, prefix \"query: \", frozen token embeddings; "
                "unsupervised objectives train through SimCSE's MLP head, used in training only",
                "eval_e5", 'me5-small, mean, prefix "query: "'),
    # A from-scratch model has no well-placed space to keep, so it trains everything at the learning rate
    # scratch_row's SimCSE stage used; mean pooling is its better pooling before SimCSE (dev 58.7 vs 35.4 [CLS]).
    "mini": Start("mini BERT 4x256 from scratch", dict(model_name_or_path=str(MINI_DIR), pooler="avg", prefix="",
                                                        mlp_only_train=False, freeze_embeddings=False, temperature=0.05),
                  {"sup": 1e-4, "sts": 1e-4, "unsup": 1e-4},
                  "mini BERT 4x256 pretrained from scratch with MLM on a kowiki slice (benchmarks.scratch_row; "
                  "5.3M parameters, WordPiece 8000), mean pooling, all weights trained; unsupervised objectives train "
                  "through SimCSE's MLP head, used in training only",
                  "train_scratch_mini_mlm"),
}
COMMON = dict(precision="auto", report_to=[], disable_tqdm=True, eval_on_start=True, logging_steps=10,
              save_total_limit=1)
TASKS = ["korsts-dev", "korsts-test", "klue-sts-dev"]

# SimCSE's unsupervised setting: an MLP head in training only (--pooler_type cls --mlp_only_train), here over mean pooling.
HEAD = {"mlp_only_train": True}
# name -> list of stages; each stage is (objective, extra settings, which step budget it uses).
OBJECTIVES: dict[str, list[tuple[str, dict, str]]] = {
    "sup_infonce": [("sup", {}, "steps")],
    "sts_cosent": [("sts", {"loss": "cosent"}, "sts_steps")],
    "sts_angle": [("sts", {"loss": "angle"}, "sts_steps")],
    "multitask_cosent": [("sup", {}, "steps"), ("sts", {"loss": "cosent"}, "sts_steps")],
    "multitask_angle": [("sup", {}, "steps"), ("sts", {"loss": "angle"}, "sts_steps")],
    "unsup_infonce": [("unsup", HEAD, "steps")],
    "unsup_mlm": [("unsup", {"mlm_weight": 0.1, **HEAD}, "steps")],
    "esimcse": [("esimcse", {"dup_rate": 0.32, "momentum": 0.995, **HEAD}, "steps")],
    "prompt_unsup": [("unsup", {"pooler": "prompt"}, "steps")],  # the [MASK] state has no head
    # The paper's 0.005 barely registers in a 100-step run; 0.05 lets the detection loss shape the vectors.
    "diffcse": [("unsup", {"rtd_weight": 0.05, **HEAD}, "steps")],
}
LABELS = {
    "sup_infonce": "supervised SimCSE (KLUE-NLI triplets)",
    "sts_cosent": "CoSENT (KorSTS + KLUE-STS train)",
    "sts_angle": "AnglE (KorSTS + KLUE-STS train)",
    "multitask_cosent": "multitask: sup SimCSE → CoSENT",
    "multitask_angle": "multitask: sup SimCSE → AnglE",
    "unsup_infonce": "unsupervised SimCSE (seed corpus slice)",
    "unsup_mlm": "unsupervised SimCSE + MLM 0.1",
    "esimcse": "ESimCSE (repetition + momentum queue)",
    "prompt_unsup": "unsupervised SimCSE, prompt pooling",
    "diffcse": "DiffCSE-style: SimCSE + replaced-token detection 0.05",
}


def unsup_corpus(data: Path, smoke: bool = False) -> str:
    """The seed corpus slice (kowiki AA + KLUE-STS/KorSTS train sentences), prepared once; smoke: KorSTS train only."""
    from kosimcse.data.corpus import prepare_corpus

    out = RUNS / ("corpus-smoke" if smoke else "corpus-seed")
    specs = [f"korsts:{data / 'korsts' / 'sts-train.tsv'}"]
    if not smoke:
        specs += [f"kowiki:{data / 'corpus' / 'kowiki' / 'AA'}", f"klue-sts:{data / 'klue-sts' / 'klue_sts_train.csv'}"]
    if not (out / "sentences.txt").exists():
        prepare_corpus(specs, out)
    return str(out / "sentences.txt")


def stage_settings(objective: str, extra: dict, steps: int, batch: int, seed: int, data: Path, smoke: bool,
                   evals: int = 3, last_stage: bool = True, sts_lr: float | None = None, warmup: float = 0.0,
                   start: str = "e5") -> dict:
    """One stage's training settings; ``sts_lr`` None takes the start's own STS learning rate."""
    every = max(steps // max(evals, 1), 1)
    lrs = STARTS[start].learning_rates
    settings = dict(STARTS[start].model, **COMMON, objective=objective, seed=seed, max_steps=steps, eval_steps=every, save_steps=every,
                    per_device_train_batch_size=batch, max_train_sentences=batch * steps,
                    # test is reported once, for the final model only
                    report_tasks=TASKS if last_stage and not smoke else ["korsts-dev"],
                    warmup_steps=warmup)  # transformers 5: a value below 1 is a fraction of the run
    if objective == "sup":
        settings.update(learning_rate=lrs["sup"], max_length=48)
    elif objective == "sts":
        settings.update(learning_rate=sts_lr or lrs["sts"], max_length=64)
    else:
        settings.update(learning_rate=lrs["unsup"], max_length=32, train_file=unsup_corpus(data, smoke))
    if smoke:
        settings.update(eval_on_start=False, eval_steps=steps, save_steps=steps)
    settings.update(extra)
    return settings


def _budget_suffix(objective: str, steps: int, args) -> str:
    """Folder suffix for a stage's learning rate and warmup, so --reuse never takes an export made with others.

    The step count is checked by --reuse itself (the summary's global_step), so default settings keep the folder
    names of earlier runs.
    """
    start = STARTS[getattr(args, "start", "e5")]
    lr = args.sts_lr if objective == "sts" else None
    if not args.warmup and lr in (None, start.learning_rates["sts"]):
        return ""
    return f"-{steps}" + (f"-lr{lr:g}" if lr else "") + (f"-w{args.warmup:g}" if args.warmup else "")


def run_objective(name: str, seed: int, args, data: Path) -> dict:
    from kosimcse.training.args import load_recipe
    from kosimcse.training.run import BEST_DIR, PREVIOUS, train
    from kosimcse.training.run import stage_settings as chain_stages

    stages, steps_of = [], {}
    for i, (objective, extra, budget) in enumerate(OBJECTIVES[name]):
        steps = getattr(args, budget)
        settings = stage_settings(objective, extra, steps, args.batch, seed, data, args.smoke, args.evals,
                                  last_stage=i == len(OBJECTIVES[name]) - 1, sts_lr=args.sts_lr, warmup=args.warmup,
                                  start=args.start)
        if args.no_eval_on_start:
            settings["eval_on_start"] = False
        if i > 0:
            # The previous stage's export was dev-selected with the starting model competing already.
            settings.update(model_name_or_path=PREVIOUS, eval_on_start=False)
        stage = f"stage{i + 1}-{objective}{_budget_suffix(objective, steps, args)}"
        stages.append(dict(settings, name=stage))
        steps_of[stage] = steps
    root = RUNS / ("smoke" if args.smoke else "") / ("" if args.start == "e5" else args.start) / f"{name}-s{seed}"
    wall = 0.0
    summary: dict = {}
    for stage, settings in chain_stages({"stages": stages, "output_dir": str(root)}):
        out = Path(settings["output_dir"])
        done = out / "summary.json"
        if (args.reuse and done.exists() and (out / BEST_DIR).is_dir()
                and json.loads(done.read_text(encoding="utf-8"))["global_step"] == steps_of[stage]):
            # A finished earlier stage (same settings) is reused: its export starts the next stage.
            summary = json.loads(done.read_text(encoding="utf-8"))
            wall += summary["wall_time_s"]
        else:
            # A fresh stage folder: an earlier run's summary.json, checkpoints and (appended) metrics.jsonl
            # would otherwise pass for this run's.
            shutil.rmtree(out, ignore_errors=True)
            start = time.time()
            summary = train(*load_recipe(None, settings))
            wall += time.time() - start
    return {"results": summary["results"], "wall_time_s": wall, "kept_initial_model": summary["kept_initial_model"],
            "best_checkpoint": summary["best_checkpoint"], "precision": summary.get("precision")}


def start_zero_shot(start: Start) -> float | None:
    """The starting encoder's own KorSTS test cosine Spearman, from its result file, if that was measured here."""
    path = RESULTS_DIR / f"{start.zero_shot_result}.json"
    if not path.is_file():
        return None
    test = json.loads(path.read_text(encoding="utf-8"))["data"].get("results", {}).get("korsts-test", {})
    return (test.get(start.zero_shot_row, {}) if start.zero_shot_row else test).get("cosine_spearman")


def main(argv=None):
    from kosimcse.paths import data_dir

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objectives", nargs="+", default=["multitask_cosent"], choices=sorted(OBJECTIVES))
    parser.add_argument("--start", default="e5", choices=sorted(STARTS),
                        help="starting encoder: the offline multilingual-e5-small, or the from-scratch mini BERT")
    parser.add_argument("--seeds", nargs="+", type=int, default=[42, 43])
    parser.add_argument("--steps", type=int, default=100, help="steps of NLI/unsupervised stages")
    parser.add_argument("--sts_steps", type=int, default=150, help="steps of STS-score stages")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--sts_lr", type=float, default=None,
                        help="learning rate of STS-score stages (default: the start's, 2e-5 for e5, 1e-4 for mini)")
    parser.add_argument("--warmup", type=float, default=0.0, help="warmup steps; below 1, a fraction of each stage")
    parser.add_argument("--name", default="objectives",
                        help="result name (benchmarks/results/NAME.json); another name adds a section instead of replacing")
    parser.add_argument("--evals", type=int, default=3, help="dev evaluations per stage (checkpoint candidates)")
    parser.add_argument("--no_eval_on_start", action="store_true",
                        help="skip the starting model's dev evaluation (saves one evaluation on a slow machine)")
    parser.add_argument("--reuse", action="store_true", help="reuse finished stages found in the run folders")
    parser.add_argument("--smoke", action="store_true", help="2 steps, one seed, dev only; results are not saved")
    args = parser.parse_args(argv)
    start_profile = STARTS[args.start]
    if args.start == "mini" and not (MINI_DIR / "config.json").is_file():
        raise SystemExit(f"--start mini: no pretrained mini model in {MINI_DIR}; build it first with "
                         "`python -m benchmarks.scratch_row --mlm_steps 1500 --simcse_steps 500` (about 30 min)")
    if args.smoke:
        args.steps = args.sts_steps = 2
        args.seeds = args.seeds[:1]
        args.batch = 8
    data = data_dir()
    start = time.time()
    runs: dict[str, dict[int, dict]] = {}
    for name in args.objectives:
        for seed in args.seeds:
            runs.setdefault(name, {})[seed] = run_objective(name, seed, args, data)
            print(json.dumps({"objective": name, "seed": seed, "korsts-dev": runs[name][seed]["results"]["korsts-dev"]
                              ["cosine_spearman"]}), flush=True)
    if args.smoke:
        print("smoke run finished; nothing saved")
        return runs
    sts_lr = args.sts_lr or start_profile.learning_rates["sts"]
    title = f"Objectives compared from {start_profile.label} (KorSTS cosine Spearman ×100)"
    path = save_result(args.name, title if args.name == "objectives" else f"{title}: {args.name}", time.time() - start,
                       data={"runs": {n: {str(s): r for s, r in v.items()} for n, v in runs.items()},
                             "start": args.start, "start_description": start_profile.description,
                             "start_zero_shot": start_zero_shot(start_profile),
                             "learning_rates": dict(start_profile.learning_rates, sts=sts_lr),
                             "steps": args.steps, "sts_steps": args.sts_steps, "batch": args.batch,
                             "seeds": args.seeds, "sts_lr": sts_lr, "warmup": args.warmup, "evals": args.evals,
                             "no_eval_on_start": args.no_eval_on_start,
                             "stages": {n: [[o, budget] for o, _, budget in OBJECTIVES[n]] for n in runs},
                             "labels": {n: LABELS[n] for n in runs}},
                       order=45)
    from benchmarks.render import section

    print(section(json.loads(path.read_text(encoding="utf-8"))))
    return runs


if __name__ == "__main__":
    main()
