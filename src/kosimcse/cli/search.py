"""`kosimcse search`: top-k cosine search of queries over an index written by `kosimcse encode`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from kosimcse.cli.options import TEXT_COLUMN, load_model, model_options
from kosimcse.errors import DataError, KoSimCSEError


def load_index(path: Path, texts_path: Path | None = None, text_column: str = "text"):
    """Embeddings (``.npy`` memory-mapped, so large indexes are scanned, not loaded; or ``.parquet``) and the texts
    behind the rows: from ``texts_path`` (encode's INPUT), else a .parquet index's own column, else none."""
    import numpy as np

    from kosimcse.data.readers import read_texts

    texts = [r.text for r in read_texts(texts_path, text_column=text_column)] if texts_path is not None else []
    try:
        if path.suffix.lower() == ".npy":
            emb = np.load(path, mmap_mode="r")
        elif path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(path, columns=["embedding"] if texts_path else ["embedding", "text"])
            column = table.column("embedding").combine_chunks()
            emb = column.flatten().to_numpy().reshape(len(column), -1)
            texts = texts or table.column("text").to_pylist()
        else:
            raise DataError("index must be a .npy or .parquet file written by `kosimcse encode`", path)
    except (OSError, ValueError, KeyError) as e:
        raise DataError(f"unreadable index: {e}", path) from None
    if emb.ndim != 2:
        raise DataError(f"index has shape {emb.shape}, expected [n, dim]", path)
    return emb, texts


@click.command("search", epilog="""\b
Examples:
  kosimcse encode runs/unsup/best corpus.txt -o corpus.npy
  kosimcse search runs/unsup/best --index corpus.npy --texts corpus.txt --query "영화가 재미있다" -k 5
  kosimcse search runs/unsup/best --index corpus.parquet --query "날씨" --query "축구 경기" --json
""")
@click.argument("model_name", metavar="MODEL")
@click.option("--index", "index_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Embeddings written by `kosimcse encode` (.npy or .parquet).")
@click.option("--texts", "texts_path", default=None, type=click.Path(exists=True, path_type=Path),
              help="The INPUT given to `encode`, to show texts (a .parquet index already has them).")
@TEXT_COLUMN
@click.option("--query", "queries", multiple=True, required=True, help="Query text (repeatable).")
@click.option("-k", "--top-k", "k", default=10, show_default=True, type=click.IntRange(1))
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines: one object per query.")
@model_options
def command(model_name, index_path, texts_path, text_column, queries, k, as_json, **model_settings):
    """Print the K most similar indexed texts (cosine) for each --query."""
    corpus, texts = load_index(index_path, texts_path, text_column)
    if texts and len(texts) != corpus.shape[0]:
        raise KoSimCSEError(f"{texts_path or index_path} has {len(texts)} texts but the index has {corpus.shape[0]} "
                            "rows; pass the same INPUT (and --text-column) that `encode` used")
    encoder = load_model(model_name, model_settings)
    if corpus.shape[1] != encoder.dim:
        raise KoSimCSEError(f"index dimension {corpus.shape[1]} does not match the model's {encoder.dim}")
    hits = encoder.search(list(queries), corpus, k=k)
    for query, row in zip(queries, hits):
        if as_json:
            click.echo(json.dumps({"query": query, "hits": [
                {"rank": r, "index": i, "score": round(s, 6), "text": texts[i] if texts else None}
                for r, (i, s) in enumerate(row, start=1)]}, ensure_ascii=False))
            continue
        click.echo(f"\nquery: {query}")
        for rank, (i, score) in enumerate(row, start=1):
            click.echo(f"{rank:3d}. {score:.4f}  [{i}] {texts[i] if texts else ''}")
