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


def gather_with_grad(t: torch.Tensor) -> torch.Tensor:
    """Concatenate ``t`` from all ranks along dim 0, keeping the autograd graph.

    ``torch.distributed.nn.functional.all_gather`` sums the incoming gradients back to their owners
    in backward, which is what makes every rank's embeddings receive the gradient of being a negative
    for other ranks' anchors.
    """
    rank, size = world()
    if size == 1:
        return t
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(t.contiguous()), dim=0)


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
        rank, _ = world()
        local = anchor.size(0)
        candidates = gather_with_grad(positive)
        n_pos = candidates.size(0)
        if negative is not None:
            candidates = torch.cat([candidates, gather_with_grad(negative)], dim=0)
        logits = cosine_matrix(anchor, candidates) / self.temperature
        targets = torch.arange(local, device=anchor.device) + rank * local
        if negative is not None and self.hard_negative_weight:
            bonus = torch.zeros_like(logits)
            bonus[torch.arange(local), n_pos + targets] = self.hard_negative_weight
            logits = logits + bonus
        return nn.functional.cross_entropy(logits, targets)
