"""`kosimcse report`: one self-contained HTML page (curves, tables, plots, geometry, neighbours) for a training run."""

from __future__ import annotations

from pathlib import Path

import click

from kosimcse.cli.options import BATCH_SIZE, DEVICE, DTYPE, STS_DATA_DIR
from kosimcse.data.tasks import list_tasks
from kosimcse.report.html import DEFAULT_ALIGN_SAMPLE, DEFAULT_SAMPLE, MAX_SAMPLE


@click.command("report", epilog="""\b
Examples:
  kosimcse report runs/unsup-seed                          # -> runs/unsup-seed/report.html
  kosimcse report runs/domain --before base                # compare with the model training started from
  kosimcse report runs/domain --before models/me5-small --domain my_texts.txt --sample 1000 --fp32
  kosimcse report runs/unsup-seed --out report.html --json > report.json
""")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "out_path", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="HTML file to write. Default: RUN_DIR/report.html.")
@click.option("--before", "before_model", default=None,
              help="Model to compare with (folder or e5-small-airgap); 'base' = the run's starting model. "
                   "It is embedded with the trained model's pooling and prefix.")
@click.option("--domain", "domain_path", default=None, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Text file (one sentence a line) for domain geometry and neighbours, or a heldout.jsonl of "
                   "`kosimcse prepare --heldout` for the domain score (MRR@10, R@1, R@10) as well. Default: the run's "
                   "eval_domain file, else RUN_DIR/corpus/sentences.txt.")
@click.option("--sample", default=DEFAULT_SAMPLE, show_default=True, type=click.IntRange(2, MAX_SAMPLE),
              help="Domain sentences sampled for uniformity and neighbours (embedded once per model).")
@click.option("--align-sample", default=DEFAULT_ALIGN_SAMPLE, show_default=True, type=click.IntRange(1),
              help="Of those, how many are embedded twice more with dropout on, for alignment.")
@click.option("--task", default="korsts-test", show_default=True, type=click.Choice(list_tasks()),
              help="STS set for the before/after table, scatter, histograms and STS geometry.")
@click.option("--queries", default=5, show_default=True, type=click.IntRange(0), help="Nearest-neighbour examples.")
@BATCH_SIZE
@DTYPE
@DEVICE
@STS_DATA_DIR
@click.option("--seed", default=0, show_default=True, type=int, help="Seed for the samples and dropout views.")
@click.option("--json", "as_json", is_flag=True, help="Also print the measured numbers as JSON on stdout.")
def command(run_dir, out_path, before_model, domain_path, sample, align_sample, task, queries, batch_size, dtype,
            device, data_dir, seed, as_json):
    """Write an HTML report for a `kosimcse train` output folder: run summary, loss and dev curves, 8-metric
    tables, before/after comparison, gold-vs-cosine scatter, similarity histograms, alignment/uniformity and
    nearest-neighbour examples. Plots are embedded; the file stands alone."""
    from kosimcse.evaluation.sts import json_text
    from kosimcse.report.html import build_report, render_html

    report = build_report(run_dir, before_model=before_model, domain_texts=domain_path, task=task, sample=sample,
                          align_sample=align_sample, queries=queries, batch_size=batch_size, device=device,
                          dtype=dtype, data_dir=data_dir, seed=seed,
                          progress=lambda message: click.echo(message, err=True))
    out = out_path or run_dir / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(report), encoding="utf-8")
    for note in report.notes:
        click.echo(f"note: {note}", err=True)
    click.echo(f"wrote {out}", err=True)
    if as_json:
        click.echo(json_text({"report": str(out), **report.data, "notes": report.notes}))
