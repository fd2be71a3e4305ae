"""Contrastive losses, shared by the unsupervised and supervised paths.

``InfoNCELoss`` is SimCSE's objective: cosine similarities divided by a temperature, cross-entropy
towards each anchor's own positive. Candidates (positives, hard negatives) are gathered from all
devices *with gradients*, so under DDP the negative pool is the global batch and the gradients equal
those of one process on the concatenated batch.

Beside it: ``CoSENTLoss``/``AnglELoss`` (STS-score supervision: rank pairs by gold score) and
``QueueInfoNCELoss`` (ESimCSE: InfoNCE plus a queue of momentum-encoder negatives).
"""

from __future__ import annotations

import contextlib

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


def full_precision(device: torch.device):
    """A region where autocast is off, so similarities are computed in float32 even inside a bf16/fp16 step.

    Under autocast a matmul runs in the low precision whatever its inputs' dtype; divided by a temperature of
    0.05, bf16's rounding of cosines near 1 becomes a logit error of several hundredths.
    """
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()


def cosine_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """All cosines between the rows of ``a`` and ``b``, in float32 (autocast off)."""
    with full_precision(a.device):
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


def pairwise_cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine ``cos(a[i], b[i])`` in float32 (autocast off)."""
    with full_precision(a.device):
        return (nn.functional.normalize(a.float(), dim=-1) * nn.functional.normalize(b.float(), dim=-1)).sum(-1)


def pairwise_angle(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """AnglE's similarity ``|cos + sin|``: dimension ``i`` pairs with ``i + D/2`` as a complex number's parts."""
    with full_precision(a.device):
        a, b = a.float(), b.float()
        if a.size(-1) % 2:
            a, b = nn.functional.pad(a, (0, 1)), nn.functional.pad(b, (0, 1))
        a, b = nn.functional.normalize(a, dim=-1), nn.functional.normalize(b, dim=-1)
        a_re, a_im = a.chunk(2, dim=-1)
        b_re, b_im = b.chunk(2, dim=-1)
        sines = (a_im * b_re - a_re * b_im).sum(-1)
        return ((a * b).sum(-1) + sines).abs()


class CoSENTLoss(nn.Module):
    """CoSENT: every pair with a higher gold score must get a higher similarity than every lower one.

    ``loss = log(1 + sum_{score_i > score_j} exp(scale * (sim_j - sim_i)))`` over all pairs of the
    (global) batch; only the order of the gold scores matters, so 0–5 scores need no rescaling.
    Pairs are compared across devices too, the same way ``InfoNCELoss`` gathers its candidates.
    """

    similarity = staticmethod(pairwise_cosine)

    def __init__(self, scale: float = 20.0):
        super().__init__()
        self.scale = scale

    def forward(self, first: torch.Tensor, second: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        _, size = world()
        sims = gather_keep_local_grad(self.similarity(first, second)) * self.scale
        scores = gather_keep_local_grad(scores.float().to(sims.device))
        # diff[i, j] = sim_j - sim_i, kept where pair i should rank above pair j.
        diff = sims[None, :] - sims[:, None]
        diff = diff.masked_fill(~(scores[:, None] > scores[None, :]), float("-inf"))
        loss = torch.logsumexp(torch.cat([diff.new_zeros(1), diff.flatten()]), dim=0)
        return scale_gradient(loss, size)


class AnglELoss(CoSENTLoss):
    """AnglE: CoSENT's ranking over the angle similarity (no cosine saturation near ±1), as in sentence-transformers."""

    similarity = staticmethod(pairwise_angle)


class QueueInfoNCELoss(InfoNCELoss):
    """ESimCSE's InfoNCE: in-batch candidates plus a queue of past momentum-encoder embeddings as extra negatives.

    The queue holds constants (no gradient). ``enqueue`` gathers from every rank first, so all ranks
    hold the same queue and the loss stays the global one under DDP.
    """

    def __init__(self, temperature: float = 0.05, hard_negative_weight: float = 0.0, queue_size: int = 0,
                 dim: int | None = None):
        super().__init__(temperature, hard_negative_weight)
        self.queue_size = queue_size
        # Fixed shapes so a checkpoint's queue loads back in place (resume continues with the same
        # negatives); ``filled`` counts the valid rows, newest first.
        self.register_buffer("queue", torch.zeros(queue_size, dim or 1))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))

    def forward(self, anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor | None = None) -> torch.Tensor:
        _, size = world()
        anchor = gather_keep_local_grad(anchor)
        n = anchor.size(0)
        candidates = [gather_keep_local_grad(positive)]
        if negative is not None:
            candidates.append(gather_keep_local_grad(negative))
        if int(self.filled):
            candidates.append(self.queue[: int(self.filled)])
        logits = cosine_matrix(anchor, torch.cat([c.float() for c in candidates], dim=0)) / self.temperature
        targets = torch.arange(n, device=anchor.device)
        if negative is not None and self.hard_negative_weight:
            bonus = torch.zeros_like(logits)
            bonus[targets, n + targets] = self.hard_negative_weight
            logits = logits + bonus
        return scale_gradient(nn.functional.cross_entropy(logits, targets), size)

    @torch.no_grad()
    def enqueue(self, vectors: torch.Tensor) -> None:
        """Put the newest embeddings first and keep at most ``queue_size``."""
        if self.queue_size <= 0:
            return
        vectors = gather_keep_local_grad(vectors.detach().float())[: self.queue_size]
        k = vectors.size(0)
        self.queue.copy_(torch.cat([vectors.to(self.queue.device), self.queue[: self.queue_size - k]], dim=0))
        self.filled.fill_(min(int(self.filled) + k, self.queue_size))


LOSSES = ("infonce", "cosent", "angle", "esimcse")


def build_loss(name: str, temperature: float = 0.05, hard_negative_weight: float = 0.0, scale: float = 20.0,
               queue_size: int = 0, dim: int | None = None) -> nn.Module:
    """The loss module a recipe's ``loss:`` names."""
    if name == "infonce":
        return InfoNCELoss(temperature, hard_negative_weight)
    if name == "cosent":
        return CoSENTLoss(scale)
    if name == "angle":
        return AnglELoss(scale)
    if name == "esimcse":
        return QueueInfoNCELoss(temperature, hard_negative_weight, queue_size, dim)
    raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
