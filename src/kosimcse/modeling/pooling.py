"""Pooling: turn a Hugging Face encoder's token states into one vector per sentence.

The choices are those of princeton-nlp/SimCSE, plus ``mean`` as the name sentence-transformers
and e5 use for ``avg``:

- ``cls``: the [CLS] state; SimCSE puts its MLP head on top of it (see ``model.py``).
- ``cls_before_pooler``: the raw [CLS] state, never an MLP.
- ``avg`` / ``mean``: the mean over non-padding tokens of the last layer.
- ``avg_first_last``: mean of the first *transformer* layer and the last. SimCSE's code uses
  ``hidden_states[0]``, the embedding output, by mistake; we use ``hidden_states[1]``.
- ``avg_top2``: mean of the last two layers.
"""

from __future__ import annotations

import torch

POOLERS = ("cls", "cls_before_pooler", "avg", "mean", "avg_first_last", "avg_top2")


def canonical_pooler(name: str) -> str:
    """Validate a pooler name and fold the ``mean`` alias into ``avg``."""
    if name not in POOLERS:
        raise ValueError(f"unknown pooler {name!r}; choose one of {', '.join(POOLERS)}")
    return "avg" if name == "mean" else name


def needs_hidden_states(pooler: str) -> bool:
    return canonical_pooler(pooler) in ("avg_first_last", "avg_top2")


def masked_mean(states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    mask = attention_mask.unsqueeze(-1).to(states.dtype)
    return (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


def pool(pooler: str, attention_mask: torch.Tensor, last_hidden_state: torch.Tensor,
         hidden_states: tuple[torch.Tensor, ...] | None = None) -> torch.Tensor:
    """Pool token states ``[batch, seq, dim]`` into ``[batch, dim]``.

    ``hidden_states`` (embedding output first, as transformers returns them) is needed only for
    ``avg_first_last`` and ``avg_top2``.
    """
    pooler = canonical_pooler(pooler)
    if pooler in ("cls", "cls_before_pooler"):
        return last_hidden_state[:, 0]
    if pooler == "avg":
        return masked_mean(last_hidden_state, attention_mask)
    if hidden_states is None:
        raise ValueError(f"pooler {pooler!r} needs the encoder's hidden_states (output_hidden_states=True)")
    if pooler == "avg_first_last":
        return masked_mean((hidden_states[1] + hidden_states[-1]) / 2.0, attention_mask)
    return masked_mean((hidden_states[-1] + hidden_states[-2]) / 2.0, attention_mask)
