"""``kosimcse prepare``: build the unsupervised training corpus and print what each filter dropped."""

from __future__ import annotations

import json

import click

from kosimcse.cli.options import ERRORS


@click.command("prepare", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Root of the Korean data (default: $KOSIMCSE_DATA_DIR, then ../shared/data).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="runs/corpus", show_default=True,
              help="Folder for sentences.txt and stats.json.")
@click.option("--source", "sources", multiple=True, metavar="SPEC",
              help="A source spec (kowiki:PATH, nsmc:PATH, petitions:PATH, korsts:PATH, klue-sts:PATH, "
                   "text:PATH, hf:ID, or a plain path). Repeatable. Replaces the default seed sources.")
@click.option("--domain", "domain", multiple=True, metavar="PATH",
              help="Add a domain source (a path or spec), e.g. domain/nsmc/raw. Repeatable.")
@click.option("--no-seed", is_flag=True, help="Leave out kowiki from the default sources.")
@click.option("--no-sts", is_flag=True, help="Leave out KLUE-STS/KorSTS train sentences from the default sources.")
@click.option("--eval-set", "eval_sets", multiple=True, metavar="NAME",
              help="Evaluation sets whose sentences are removed (leakage guard). "
                   "Default: korsts-dev, korsts-test, klue-sts-dev.")
@click.option("--min-chars", type=click.IntRange(min=0), default=8, show_default=True, help="Drop shorter sentences.")
@click.option("--max-chars", type=click.IntRange(min=1), default=256, show_default=True, help="Drop longer sentences.")
@click.option("--no-split", is_flag=True, help="Keep paragraphs whole instead of splitting them into sentences.")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True,
              help="Threads for kiwipiepy sentence splitting.")
@ERRORS
@click.option("--heldout", type=click.FloatRange(0, 1, max_open=True), default=None, metavar="FRACTION",
              help="Read the --domain sources as documents and hold out this fraction of them (by a hash of the "
                   "document id) for the domain score: OUT/heldout.jsonl, never in OUT/sentences.txt or "
                   "OUT/documents.jsonl. 0 writes documents.jsonl only.")
@click.option("--heldout-seed", type=int, default=0, show_default=True, help="Seed of the held-out hash and sample.")
@click.option("--heldout-max", type=click.IntRange(min=2), default=2000, show_default=True,
              help="At most this many held-out documents in heldout.jsonl (the retrieval pool).")
@click.option("--doc-id-column", default=None, metavar="NAME",
              help="For a JSON-lines domain source: rows sharing this column's value form one document.")
@click.option("--json", "as_json", is_flag=True, help="Print the stats as JSON instead of a table.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def command(data_dir, out_dir, sources, domain, no_seed, no_sts, eval_sets, min_chars, max_chars, no_split,
            workers, errors, heldout, heldout_seed, heldout_max, doc_id_column, as_json, quiet):
    """Build the unsupervised SimCSE corpus: read, normalise, split into sentences, length-filter, deduplicate,
    drop every sentence of the evaluation sets, and write OUT/sentences.txt (one a line) and OUT/stats.json.

    \b
    Examples:
      kosimcse prepare --out runs/corpus                       # kowiki + KLUE-STS/KorSTS train
      kosimcse prepare --out runs/nsmc --no-sts --domain domain/nsmc/raw
      kosimcse prepare --out runs/dom --no-seed --no-sts --domain petitions:domain/petitions
      kosimcse prepare --source my_texts.txt --source hf:some/corpus --json
      kosimcse prepare --out runs/pet --no-seed --no-sts --domain petitions:domain/petitions --heldout 0.1
    """
    from kosimcse.data.corpus import DEFAULT_EVAL_SETS, default_sources, format_stats_table, prepare_corpus
    from kosimcse.errors import KoSimCSEError

    if (heldout is not None or doc_id_column) and not domain:
        raise KoSimCSEError("--heldout/--doc-id-column split the --domain sources into documents: give --domain")
    specs = [*sources, *domain] if sources else default_sources(data_dir, not no_seed, not no_sts, domain)
    stats = prepare_corpus(specs, out_dir, eval_sets=tuple(eval_sets) or DEFAULT_EVAL_SETS, min_chars=min_chars,
                           max_chars=max_chars, split=not no_split, workers=workers, data_dir=data_dir,
                           errors=errors, progress=not quiet, heldout=heldout or 0.0, heldout_seed=heldout_seed,
                           heldout_max=heldout_max, doc_id_column=doc_id_column,
                           documents=domain if heldout is not None or doc_id_column else ())
    if as_json:
        click.echo(json.dumps(stats, ensure_ascii=False, indent=2))
        return
    click.echo(format_stats_table(stats))
    s = stats["settings"]
    click.echo(f"\nkept {stats['totals']['kept']:,} sentences -> {stats['output']}  "
               f"(leakage guard: {s['eval_sentences']:,} sentences of {', '.join(s['eval_sets'])}; "
               f"{stats['wall_time_s']} s)")
    if docs := stats.get("documents"):
        click.echo(f"documents: {docs['training']:,} for training -> documents.jsonl; {docs['heldout']:,} held out, "
                   f"{docs['heldout_pool']:,} of them -> heldout.jsonl")
        if docs["training_single_sentence"] or docs["heldout_without_query"]:
            click.echo(f"note: {docs['training_single_sentence']:,} training documents have one sentence and no title "
                       f"(no ICT pair: only dropout positives), and {docs['heldout_without_query']:,} held-out ones "
                       "give no domain-score query; documents of several sentences or with titles are needed for both")
