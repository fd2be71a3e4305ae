"""How eval, encode and search load and run a model: their shared options, declared once, and the one load call."""

from __future__ import annotations

import functools

import click

from kosimcse.inference.onnx import BACKENDS


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


_OPTIONS = (
    click.option("--pooling", default=None, callback=validate_pooling,
                 help="cls | cls_before_pooler | mean | avg | avg_first_last | avg_top2 | prompt. "
                      "Default: saved with the model, else mean."),
    click.option("--prefix", default=None, help='Text put before every sentence (e5 needs "query: "). '
                                                "Default: saved with the model, else none."),
    click.option("--max-length", default=None, type=click.IntRange(1), help="Default: saved with the model, else 128."),
    click.option("--bf16/--fp32", "bf16", default=None,
                 help="Compute precision. Default: bf16 on CPUs with AMX/AVX512-BF16 (and bf16 GPUs), else fp32."),
    click.option("--device", default=None, help="cpu, cuda, cuda:1 ... Default: cuda if available, else cpu."),
    click.option("--backend", type=click.Choice(BACKENDS), default="auto", show_default=True,
                 help="What runs the encoder: torch; onnx (fp32 graph) or onnx-int8 (int8 graph for this CPU), built "
                      "into the model folder on first use (needs kosimcse[onnx]); auto: onnx-int8 where that export "
                      "is present and kept its vectors within 0.99 cosine of fp32, else torch."),
    click.option("--allow-pickle", is_flag=True, help="Allow pickle (.bin) weights. Only for files you trust."),
    click.option("--trust-remote-code", is_flag=True, help="Allow model code from the model folder/Hub. Off by default."),
)
_NAMES = ("pooling", "prefix", "max_length", "bf16", "device", "backend", "allow_pickle", "trust_remote_code")


def model_options(command):
    """Add the shared options; the command receives them as one ``model_settings`` dict for ``load_model``."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        return command(*args, model_settings={name: kwargs.pop(name) for name in _NAMES}, **kwargs)

    for option in reversed(_OPTIONS):
        wrapper = option(wrapper)
    return wrapper


def dtype_from_flag(bf16: bool | None) -> str:
    """``--bf16/--fp32`` as a KoSimCSE dtype; unset: ``auto``, the precision rule decides."""
    return "auto" if bf16 is None else ("bf16" if bf16 else "fp32")


def load_model(model_name: str, settings: dict):
    """``KoSimCSE.from_pretrained`` with the shared options."""
    from kosimcse.inference.encoder import KoSimCSE

    settings = dict(settings)
    return KoSimCSE.from_pretrained(model_name, dtype=dtype_from_flag(settings.pop("bf16")), **settings)
