"""Contrastive losses, shared by the unsupervised and supervised paths.

``InfoNCELoss`` is SimCSE's objective: cosine similarities divided by a temperature, cross-entropy
towards each anchor's own positive. Candidates (positives, hard negatives) are gathered from all
devices *with gradients*, so under DDP the negative pool is the global batch and the gradients equal
those of one process on the concatenated batch.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


def world() -> tuple[int, int]:
    """(rank, world_size) of the default process group, or (0, 1) outside distributed training."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_keep_local_grad(t: torch.Tensor) -> torch.Tensor:
    """Concatenate ``t`` from all ranks along dim 0; this rank's slice keeps its autograd graph.

    The other ranks' slices are constants here. That is enough for exact gradients because every
    rank then computes the *whole* global loss (see ``InfoNCELoss``): each rank back-propagates
    every term that involves its own embeddings, as anchor and as negative alike. We avoid an
    autograd all_gather on purpose: its backward collective, run while DDP all-reduces gradients
    from its hooks, gave wrong gradients under gloo (tests/test_ddp.py caught it).
    Every rank must pass the same shape (the trainer drops ragged last batches).
    """
    rank, size = world()
    if size == 1:
        return t
    parts = [torch.empty_like(t) for _ in range(size)]
    dist.all_gather(parts, t.detach().contiguous())
    parts[rank] = t
    return torch.cat(parts, dim=0)


def scale_gradient(loss: torch.Tensor, factor: float) -> torch.Tensor:
    """Same value, gradient multiplied by ``factor``."""
    return loss + (factor - 1.0) * (loss - loss.detach()) if factor != 1 else loss


def cosine_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a = nn.functional.normalize(a.float(), dim=-1)
    b = nn.functional.normalize(b.float(), dim=-1)
    return a @ b.T


class InfoNCELoss(nn.Module):
    """SimCSE's InfoNCE: ``anchor[i]`` must pick ``positive[i]`` among all positives (and hard negatives).

    ``hard_negative_weight`` is added to the logit of each anchor's own hard negative, as in SimCSE's
    supervised recipe (0 leaves it an ordinary negative).
    """

    def __init__(self, temperature: float = 0.05, hard_negative_weight: float = 0.0):
        super().__init__()
        if temperature <= 0:
            raise ValueError("temperature must be > 0")
        self.temperature = temperature
        self.hard_negative_weight = hard_negative_weight

    def forward(self, anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor | None = None) -> torch.Tensor:
        _, size = world()
        anchor = gather_keep_local_grad(anchor)
        candidates = gather_keep_local_grad(positive)
        n = anchor.size(0)
        if negative is not None:
            candidates = torch.cat([candidates, gather_keep_local_grad(negative)], dim=0)
        logits = cosine_matrix(anchor, candidates) / self.temperature
        targets = torch.arange(n, device=anchor.device)
        if negative is not None and self.hard_negative_weight:
            bonus = torch.zeros_like(logits)
            bonus[targets, n + targets] = self.hard_negative_weight
            logits = logits + bonus
        loss = nn.functional.cross_entropy(logits, targets)
        # DDP averages the ranks' gradients; each rank holds only its own share of dL/dθ, so the
        # average needs the factor back to equal the single-process gradient.
        return scale_gradient(loss, size)
