"""Options shared by several commands, declared once, and the one model load call of eval, encode and search."""

from __future__ import annotations

import click

from kosimcse.inference.onnx import BACKENDS


def validate_pooling(ctx, param, value):
    """Click callback: an unknown pooler is a usage error, not a traceback."""
    from kosimcse.modeling.model import PROMPT_POOLER
    from kosimcse.modeling.pooling import canonical_pooler

    try:
        if value not in (None, PROMPT_POOLER):
            canonical_pooler(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    return value


def _dtype(ctx, param, bf16: bool | None) -> str:
    """``--bf16/--fp32`` as a KoSimCSE dtype; unset: ``auto``, the precision rule decides."""
    return "auto" if bf16 is None else ("bf16" if bf16 else "fp32")


BATCH_SIZE = click.option("--batch-size", default=64, show_default=True, type=click.IntRange(1))
DTYPE = click.option("--bf16/--fp32", "dtype", default=None, callback=_dtype,
                     help="Compute precision. Default: bf16 on CPUs with AMX/AVX512-BF16 (and bf16 GPUs), else fp32.")
DEVICE = click.option("--device", default=None, help="cpu, cuda, cuda:1 ... Default: cuda if available, else cpu.")
ERRORS = click.option("--errors", type=click.Choice(["raise", "skip"]), default="raise", show_default=True,
                      help="On a bad input row: stop with its file:line, or skip it and count it.")
STS_DATA_DIR = click.option("--data-dir", default=None, type=click.Path(file_okay=False),
                            help="Read STS tasks from this data folder (shared/data layout), not the embedded copies.")
TEXT_COLUMN = click.option("--text-column", default="text", show_default=True,
                           help="Column/key holding the text (jsonl/csv/parquet).")
_MODEL_OPTIONS = (
    click.option("--pooling", default=None, callback=validate_pooling,
                 help="cls | cls_before_pooler | mean | avg | avg_first_last | avg_top2 | prompt. "
                      "Default: saved with the model, else mean."),
    click.option("--prefix", default=None,
                 help='Text put before every sentence (e5 needs "query: "). Default: saved with the model, else none.'),
    click.option("--max-length", default=None, type=click.IntRange(1), help="Default: saved with the model, else 128."),
    DTYPE,
    DEVICE,
    click.option("--backend", type=click.Choice(BACKENDS), default="auto", show_default=True,
                 help="What runs the encoder: torch; onnx (fp32 graph) or onnx-int8 (int8 graph for this CPU), built "
                      "into the model folder on first use (needs kosimcse[onnx]); auto: onnx-int8 where that export "
                      "is present and kept its vectors within 0.99 cosine of fp32, else torch."),
    click.option("--allow-pickle", is_flag=True, help="Allow pickle (.bin) weights. Only for files you trust."),
    click.option("--trust-remote-code", is_flag=True, help="Run model code from the model folder/Hub. Off by default."),
)


def model_options(command):
    """Add the model options; the command takes them as ``**model_settings`` for ``load_model``."""
    for option in reversed(_MODEL_OPTIONS):
        command = option(command)
    return command


def load_model(model_name: str, settings: dict):
    """``KoSimCSE.from_pretrained`` with the model options."""
    from kosimcse.inference.encoder import KoSimCSE

    return KoSimCSE.from_pretrained(model_name, **settings)
