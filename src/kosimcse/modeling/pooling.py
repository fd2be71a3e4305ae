"""SimCSE's poolers (``mean`` is sentence-transformers' and e5's name for ``avg``): token states to one vector."""

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
    """``[batch, seq, dim]`` token states to ``[batch, dim]``: the [CLS] state (``cls``: SimCSE's head goes on top;
    ``cls_before_pooler``: never), or the mean of the last layer, of the first transformer layer and the last
    (``hidden_states[1]``, where SimCSE's code takes the embedding output by mistake), or of the top two layers."""
    pooler = canonical_pooler(pooler)
    if pooler in ("cls", "cls_before_pooler"):
        return last_hidden_state[:, 0]
    if pooler == "avg":
        return masked_mean(last_hidden_state, attention_mask)
    if hidden_states is None:
        raise ValueError(f"pooler {pooler!r} needs the encoder's hidden_states (output_hidden_states=True)")
    first = hidden_states[1] if pooler == "avg_first_last" else hidden_states[-2]
    return masked_mean((first + hidden_states[-1]) / 2.0, attention_mask)
