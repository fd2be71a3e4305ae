"""`kosimcse eval`: evaluate an encoder on Korean STS tasks and print the 8-metric table per task."""

from __future__ import annotations

import time
from pathlib import Path

import click

from kosimcse.cli.options import BATCH_SIZE, STS_DATA_DIR, load_model, model_options
from kosimcse.data.tasks import DEFAULT_EVAL_SETS, list_tasks


@click.command("eval", epilog="""\b
Examples:
  kosimcse eval --model models/me5-small --pooling mean --prefix "query: " --task korsts-test
  kosimcse eval --model e5-small-airgap --pooling mean --prefix "query: "      # all three tasks
  kosimcse eval --model runs/unsup/best --json --out results.json
  kosimcse eval --model runs/unsup/best --task korsts-dev --data-dir ../shared/data --fp32
""")
@click.option("--model", "model_name", required=True,
              help="Model folder, Hub id, or e5-small-airgap (the offline multilingual-e5-small).")
@click.option("--task", "tasks", multiple=True, type=click.Choice(list_tasks()),
              help=f"STS task (repeatable). Default: {', '.join(DEFAULT_EVAL_SETS)}.")
@BATCH_SIZE
@click.option("--name", "row_name", default=None, help="Row name in the table. Default: the model argument.")
@STS_DATA_DIR
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of markdown tables.")
@click.option("--out", "out_path", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the JSON results to this file.")
@model_options
def command(model_name, tasks, batch_size, row_name, data_dir, as_json, out_path, **model_settings):
    """Evaluate a sentence encoder on KorSTS / KLUE-STS: Pearson and Spearman (x100) of cosine, Euclidean,
    Manhattan and dot similarities against the gold scores."""
    from kosimcse.evaluation.sts import StsEvaluator, markdown_table, metrics_json

    tasks = list(tasks) or list(DEFAULT_EVAL_SETS)
    encoder = load_model(model_name, model_settings)
    row = row_name or model_name
    click.echo(f"model: {encoder!r}", err=True)
    results: dict[str, dict] = {}
    for task in tasks:
        evaluator = StsEvaluator.from_task(task, data_dir=data_dir)
        start = time.perf_counter()
        metrics = evaluator(lambda texts: encoder.encode(texts, batch_size=batch_size, show_progress=not as_json))
        results[task] = metrics
        if not as_json:
            click.echo(f"\n### {task} ({len(evaluator)} pairs, {len(evaluator.sentences)} sentences, "
                       f"{time.perf_counter() - start:.1f} s)\n\n{markdown_table({row: metrics})}")
    payload = metrics_json(results, model=model_name, name=row, pooling=encoder.pooling, prefix=encoder.prefix,
                           max_length=encoder.max_length, dtype=encoder.dtype, device=str(encoder.device),
                           backend=encoder.backend)
    if as_json:
        click.echo(payload)
    if out_path is not None:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(payload + "\n", encoding="utf-8")
        click.echo(f"wrote {out_path}", err=True)
