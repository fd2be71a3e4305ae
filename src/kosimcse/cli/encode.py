"""`kosimcse encode`: embed a text file into .npy or .parquet chunk by chunk, so memory stays bounded."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import click

from kosimcse.cli.options import BATCH_SIZE, ERRORS, TEXT_COLUMN, load_model, model_options
from kosimcse.errors import KoSimCSEError


@click.command("encode", epilog="""\b
Examples:
  kosimcse encode runs/unsup/best corpus.txt -o corpus.npy
  kosimcse encode e5-small-airgap reviews.jsonl --text-column review -o reviews.parquet --prefix "passage: "
""")
@click.argument("model_name", metavar="MODEL")
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Output file: .npy (float32 [n, dim], memory-mappable) or .parquet (text + embedding).")
@TEXT_COLUMN
@click.option("--chunk-size", default=10000, show_default=True, type=click.IntRange(1),
              help="Texts read, encoded and written per step; bounds memory.")
@BATCH_SIZE
@click.option("--normalize/--no-normalize", default=True, show_default=True, help="L2-normalise the embeddings.")
@ERRORS
@model_options
def command(model_name, input_path, out_path, text_column, chunk_size, batch_size, normalize, errors,
            **model_settings):
    """Embed every text of INPUT (.txt lines, .jsonl, .csv/.tsv, .parquet) with MODEL into OUT.

    Row i of the output is the i-th non-empty text of INPUT, the order `kosimcse search --texts` uses.
    """
    import numpy as np
    from tqdm.auto import tqdm

    from kosimcse.data.readers import ReadReport, read_texts

    suffix = out_path.suffix.lower()
    if suffix not in (".npy", ".parquet"):
        raise KoSimCSEError(f"--out must end in .npy or .parquet, not {out_path.name!r}")
    total = sum(1 for _ in read_texts(input_path, text_column=text_column, errors=errors))
    if total == 0:
        raise KoSimCSEError(f"{input_path}: no texts to encode")
    encoder = load_model(model_name, model_settings)
    click.echo(f"encoding {total} texts with {encoder!r}", err=True)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    # Write beside the target and rename at the end, so an interrupted run never leaves a plausible-looking file.
    tmp = out_path.with_name(out_path.name + ".partial" + suffix)
    report = ReadReport()
    texts = (r.text for r in read_texts(input_path, text_column=text_column, errors=errors, report=report))
    written, writer, memmap = 0, None, None
    try:
        with tqdm(total=total, unit="text", desc="encode") as bar:
            while chunk := list(itertools.islice(texts, chunk_size)):
                if written + len(chunk) > total:
                    raise KoSimCSEError(f"{input_path} changed while being encoded (more than {total} texts)")
                emb = encoder.encode(chunk, batch_size=batch_size, normalize=normalize, show_progress=False)
                if suffix == ".npy":
                    if memmap is None:
                        memmap = np.lib.format.open_memmap(tmp, "w+", np.float32, (total, emb.shape[1]))
                    memmap[written:written + len(chunk)] = emb
                else:
                    import pyarrow as pa
                    import pyarrow.parquet as pq

                    vectors = pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1), pa.float32()), emb.shape[1])
                    table = pa.table({"id": pa.array(range(written, written + len(chunk)), pa.int64()),
                                      "text": pa.array(chunk, pa.string()), "embedding": vectors})
                    writer = writer or pq.ParquetWriter(tmp, table.schema)
                    writer.write_table(table)
                written += len(chunk)
                bar.update(len(chunk))
        if written != total:
            raise KoSimCSEError(f"{input_path} changed while being encoded ({written} texts, expected {total})")
        if memmap is not None:
            memmap.flush()
            memmap = None  # unmapped before the rename
        if writer is not None:
            writer.close()
        os.replace(tmp, out_path)
    finally:
        if writer is not None:
            writer.close()  # a no-op when closed above
        tmp.unlink(missing_ok=True)
    if report.skipped:
        click.echo(f"skipped {report.skipped} bad rows (first: {report.examples[0]})", err=True)
    click.echo(f"wrote {written} x {encoder.dim} embeddings to {out_path}", err=True)
