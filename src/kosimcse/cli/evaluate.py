"""`kosimcse eval`: evaluate an encoder on Korean STS tasks and print the 8-metric table per task."""

from __future__ import annotations

import time
from pathlib import Path

import click

from kosimcse.data.tasks import list_tasks
from kosimcse.inference.onnx import BACKENDS

DEFAULT_TASKS = ("korsts-dev", "korsts-test", "klue-sts-dev")


def validate_pooling(ctx, param, value):
    """Click callback: reject an unknown pooler as a usage error rather than a traceback."""
    if value is None:
        return None
    from kosimcse.modeling.model import PROMPT_POOLER
    from kosimcse.modeling.pooling import canonical_pooler

    try:
        if value != PROMPT_POOLER:
            canonical_pooler(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    return value


# Shared by eval, encode and search.
backend_option = click.option(
    "--backend", type=click.Choice(BACKENDS), default="auto", show_default=True,
    help="What runs the encoder: torch; onnx (fp32 graph) or onnx-int8 (int8 graph for this CPU), built into the "
         "model folder on first use (needs kosimcse[onnx]); auto: onnx-int8 where that export is present and kept "
         "its vectors within 0.99 cosine of fp32, else torch.")


@click.command(
    "eval",
    epilog="""\b
Examples:
  kosimcse eval --model models/me5-small --pooling mean --prefix "query: " --task korsts-test
  kosimcse eval --model e5-small-airgap --pooling mean --prefix "query: "      # all three tasks
  kosimcse eval --model runs/unsup/best --json --out results.json
  kosimcse eval --model runs/unsup/best --task korsts-dev --data-dir ../shared/data --fp32
""",
)
@click.option("--model", "model_name", required=True,
              help="Model folder, Hub id, or e5-small-airgap (the offline multilingual-e5-small).")
@click.option("--pooling", default=None, callback=validate_pooling, help="cls | cls_before_pooler | mean | avg | avg_first_last | avg_top2 | prompt. "
              "Default: the one saved with the model, else mean.")
@click.option("--prefix", default=None, help='Text put before every sentence (e5 needs "query: "). '
              "Default: the one saved with the model, else none.")
@click.option("--task", "tasks", multiple=True, type=click.Choice(list_tasks()),
              help=f"STS task (repeatable). Default: {', '.join(DEFAULT_TASKS)}.")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(1))
@click.option("--max-length", default=None, type=click.IntRange(1),
              help="Token limit per sentence. Default: saved with the model, else 128.")
@click.option("--bf16/--fp32", "bf16", default=None,
              help="Compute precision. Default: bf16 on CPUs with AMX/AVX512-BF16 (and bf16 GPUs), else fp32.")
@click.option("--device", default=None, help="cpu, cuda, cuda:1 ... Default: cuda if available, else cpu.")
@backend_option
@click.option("--name", "row_name", default=None, help="Row name in the table. Default: the model argument.")
@click.option("--data-dir", default=None, type=click.Path(file_okay=False),
              help="Read tasks from this data folder (shared/data layout) instead of the embedded copies.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of markdown tables.")
@click.option("--out", "out_path", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the JSON results to this file.")
@click.option("--allow-pickle", is_flag=True, help="Allow pickle (.bin) weights. Only for files you trust.")
@click.option("--trust-remote-code", is_flag=True, help="Allow model code from the model folder/Hub. Off by default.")
def command(model_name, pooling, prefix, tasks, batch_size, max_length, bf16, device, backend, row_name, data_dir,
            as_json, out_path, allow_pickle, trust_remote_code):
    """Evaluate a sentence encoder on KorSTS / KLUE-STS: Pearson and Spearman (x100) of
    cosine, Euclidean, Manhattan and dot similarities against the gold scores."""
    from kosimcse.evaluation.sts import StsEvaluator, markdown_table, metrics_json
    from kosimcse.inference.encoder import KoSimCSE

    tasks = list(tasks) or list(DEFAULT_TASKS)
    dtype = "auto" if bf16 is None else ("bf16" if bf16 else "fp32")
    encoder = KoSimCSE.from_pretrained(model_name, pooling=pooling, prefix=prefix, max_length=max_length,
                                       device=device, dtype=dtype, allow_pickle=allow_pickle,
                                       trust_remote_code=trust_remote_code, backend=backend)
    row = row_name or model_name
    click.echo(f"model: {encoder!r}", err=True)
    results: dict[str, dict] = {}
    for task in tasks:
        evaluator = StsEvaluator.from_task(task, data_dir=data_dir)
        start = time.perf_counter()
        metrics = evaluator(lambda texts: encoder.encode(texts, batch_size=batch_size, show_progress=not as_json))
        elapsed = time.perf_counter() - start
        results[task] = metrics
        if not as_json:
            click.echo(f"\n### {task} ({len(evaluator)} pairs, {len(evaluator.sentences)} sentences, {elapsed:.1f} s)\n")
            click.echo(markdown_table({row: metrics}))
    settings = {"model": model_name, "name": row, "pooling": encoder.pooling, "prefix": encoder.prefix,
                "max_length": encoder.max_length, "dtype": encoder.dtype, "device": str(encoder.device),
                "backend": encoder.backend}
    payload = metrics_json(results, **settings)
    if as_json:
        click.echo(payload)
    if out_path is not None:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(payload + "\n", encoding="utf-8")
        click.echo(f"wrote {out_path}", err=True)
