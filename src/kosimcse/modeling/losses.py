"""Contrastive losses, registered by name: a new loss is one ``Loss`` subclass with ``@register_loss``, whose
declarations drive ``loss: auto`` and the settings checks in run.py."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from kosimcse.evaluation.similarity import cosine_matrix, pairwise_angle, pairwise_cosine

# How many ``[batch, dim]`` views each kind of example gives the loss (then ``scores`` for scored pairs): a sentence
# twice (anchor, positive), an NLI triplet (anchor, positive, hard negative), an STS pair with its score.
INPUTS = {"sentences": 2, "triplets": 3, "scored_pairs": 2}


def world() -> tuple[int, int]:
    """(rank, world_size) of the default process group, or (0, 1) outside distributed training."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_keep_local_grad(t: torch.Tensor) -> torch.Tensor:
    """``t`` of all ranks concatenated along dim 0, where only this rank's slice keeps its autograd graph: every rank
    computes the whole global loss, so gradients stay exact. (An autograd all_gather's backward collective, run while
    DDP all-reduces, gave wrong gradients under gloo.) Every rank must pass the same shape."""
    rank, size = world()
    if size == 1:
        return t
    parts = [torch.empty_like(t) for _ in range(size)]
    dist.all_gather(parts, t.detach().contiguous())
    parts[rank] = t
    return torch.cat(parts, dim=0)


def global_loss(loss: torch.Tensor) -> torch.Tensor:
    """A loss every rank computed over the gathered batch, its gradient scaled by the world size (same value), so
    DDP's average of the ranks' shares equals the single-process gradient."""
    size = world()[1]
    return loss + (size - 1.0) * (loss - loss.detach()) if size != 1 else loss


class Loss(nn.Module):
    """Base of the registered losses: ``forward(*views, [scores])`` returns the scalar loss of the global batch."""

    name = ""  # set by ``register_loss``
    inputs: tuple[str, ...] = ("sentences", "triplets")  # the kinds of example (``INPUTS``) it trains on
    options: tuple[str, ...] = ()  # SimCSEConfig fields it reads; setting another loss's is refused
    default_for: tuple[str, ...] = ()  # objectives that pick it under ``loss: auto`` (set by ``register_loss``)
    grad_cache = True  # False: its training step needs the model's whole forward, which GradCache bypasses

    @classmethod
    def from_config(cls, config, dim: int) -> "Loss":
        """The loss a ``SimCSEConfig`` asks for: its ``options``, in order, are the constructor's arguments."""
        return cls(*(getattr(config, name) for name in cls.options))


LOSSES: dict[str, type[Loss]] = {}


def register_loss(name: str, default_for: tuple[str, ...] = ()):
    """Class decorator: ``loss: NAME`` in a recipe trains with the class, the default of ``default_for`` objectives."""
    def register(cls: type[Loss]) -> type[Loss]:
        taken = [f"{o!r} ({other})" for other, c in LOSSES.items() if other != name
                 for o in c.default_for if o in default_for]
        if taken:
            raise ValueError(f"cannot register loss {name!r}: another loss is already the default for {', '.join(taken)}")
        cls.name, cls.default_for = name, tuple(default_for)
        LOSSES[name] = cls
        return cls
    return register


def build_loss(config, dim: int | None = None) -> Loss:
    """The loss a model config's ``loss`` names (``auto``: the unsup default; training resolves ``auto`` first)."""
    name = next(n for n, c in LOSSES.items() if "unsup" in c.default_for) if config.loss == "auto" else config.loss
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    return LOSSES[name].from_config(config, dim)


@register_loss("infonce", default_for=("unsup", "sup"))
class InfoNCELoss(Loss):
    """SimCSE's InfoNCE: ``anchor[i]`` must pick ``positive[i]`` among all positives and hard negatives of the global
    batch, by cosine / temperature; ``hard_negative_weight`` is added to each anchor's own hard negative's logit."""

    options = ("temperature", "hard_negative_weight")

    def __init__(self, temperature: float = 0.05, hard_negative_weight: float = 0.0):
        super().__init__()
        if temperature <= 0:
            raise ValueError("temperature must be > 0")
        self.temperature = temperature
        self.hard_negative_weight = hard_negative_weight

    def extra_candidates(self) -> list[torch.Tensor]:  # negatives beyond the batch's own (constants)
        return []

    def forward(self, anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor | None = None) -> torch.Tensor:
        anchor = gather_keep_local_grad(anchor)
        candidates = [gather_keep_local_grad(v) for v in (positive, negative) if v is not None]
        logits = cosine_matrix(anchor, torch.cat(candidates + self.extra_candidates(), dim=0)) / self.temperature
        targets = torch.arange(anchor.size(0), device=anchor.device)
        if negative is not None and self.hard_negative_weight:
            logits[targets, anchor.size(0) + targets] += self.hard_negative_weight
        return global_loss(nn.functional.cross_entropy(logits, targets))


@register_loss("esimcse", default_for=("esimcse",))
class QueueInfoNCELoss(InfoNCELoss):
    """ESimCSE: InfoNCE with a queue of past momentum-encoder embeddings as extra negatives, filled by the model's
    forward (which GradCache bypasses); ``enqueue`` gathers from every rank, so all ranks hold the same queue."""

    options = InfoNCELoss.options + ("queue_size", "momentum")
    grad_cache = False

    def __init__(self, temperature: float = 0.05, hard_negative_weight: float = 0.0, queue_size: int = 0,
                 dim: int | None = None):
        super().__init__(temperature, hard_negative_weight)
        self.queue_size = queue_size
        # Fixed shapes so that a checkpoint's queue loads back in place; ``filled`` counts the rows, newest first.
        self.register_buffer("queue", torch.zeros(queue_size, dim or 1))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))

    @classmethod
    def from_config(cls, config, dim):
        return cls(config.temperature, config.hard_negative_weight, config.queue_size, dim)

    def extra_candidates(self) -> list[torch.Tensor]:
        return [self.queue[: int(self.filled)]] if int(self.filled) else []

    @torch.no_grad()
    def enqueue(self, vectors: torch.Tensor) -> None:
        """Put the newest embeddings first and keep at most ``queue_size``."""
        if self.queue_size <= 0:
            return
        vectors = gather_keep_local_grad(vectors.detach().float())[: self.queue_size]
        k = vectors.size(0)
        self.queue.copy_(torch.cat([vectors.to(self.queue.device), self.queue[: self.queue_size - k]], dim=0))
        self.filled.fill_(min(int(self.filled) + k, self.queue_size))


@register_loss("cosent", default_for=("sts",))
class CoSENTLoss(Loss):
    """CoSENT: ``log(1 + sum_{score_i > score_j} exp(scale * (sim_j - sim_i)))`` over all pairs of the global batch
    (only the order of the gold scores matters)."""

    inputs = ("scored_pairs",)
    options = ("loss_scale",)
    similarity = staticmethod(pairwise_cosine)

    def __init__(self, scale: float = 20.0):
        super().__init__()
        self.scale = scale

    def forward(self, first: torch.Tensor, second: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        sims = gather_keep_local_grad(self.similarity(first, second)) * self.scale
        scores = gather_keep_local_grad(scores.float().to(sims.device))
        # diff[i, j] = sim_j - sim_i, kept where pair i should rank above pair j.
        diff = (sims[None, :] - sims[:, None]).masked_fill(~(scores[:, None] > scores[None, :]), float("-inf"))
        return global_loss(torch.logsumexp(torch.cat([diff.new_zeros(1), diff.flatten()]), dim=0))


@register_loss("angle")
class AnglELoss(CoSENTLoss):
    """AnglE: CoSENT's ranking over the angle similarity (no cosine saturation near ±1), as in sentence-transformers."""

    similarity = staticmethod(pairwise_angle)
