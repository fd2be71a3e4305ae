"""Contrastive losses, registered by name: adding a loss is one ``Loss`` subclass plus ``@register_loss``.
Its declarations (``inputs``, ``options``, ``default_for``) drive ``loss: auto`` and the settings checks in run.py.

``InfoNCELoss`` is SimCSE's objective: cosine similarities divided by a temperature, cross-entropy
towards each anchor's own positive. Candidates (positives, hard negatives) are gathered from all
devices *with gradients*, so under DDP the negative pool is the global batch and the gradients equal
those of one process on the concatenated batch. Beside it: ``CoSENTLoss``/``AnglELoss`` (STS-score
supervision: rank pairs by gold score) and ``QueueInfoNCELoss`` (ESimCSE: InfoNCE plus a queue of
momentum-encoder negatives).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from kosimcse.evaluation.similarity import cosine_matrix, pairwise_angle, pairwise_cosine

# What one training example gives the loss, and in how many views of ``[batch, dim]`` (then ``scores`` for scored
# pairs): a sentence twice (anchor, positive), an NLI triplet (anchor, positive, hard negative), an STS pair + score.
INPUTS = {"sentences": 2, "triplets": 3, "scored_pairs": 2}


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


class Loss(nn.Module):
    """Base of the registered losses: ``forward(*views, [scores])`` returns the scalar loss of the global batch."""

    name = ""  # set by ``register_loss``
    inputs: tuple[str, ...] = ("sentences", "triplets")  # the kinds of example (``INPUTS``) it trains on
    options: tuple[str, ...] = ()  # SimCSEConfig fields it reads; setting another loss's is refused
    default_for: tuple[str, ...] = ()  # objectives that pick it under ``loss: auto`` (set by ``register_loss``)
    grad_cache = True  # False: its training step needs the model's whole forward, which GradCache bypasses

    @classmethod
    def from_config(cls, config, dim: int) -> "Loss":
        """The loss a model config (``SimCSEConfig``) asks for; ``dim`` is the embedding size."""
        return cls()


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
    """The loss module a model config's ``loss`` names (``auto``: the unsupervised objective's default; training
    resolves ``auto`` per objective before building the model)."""
    name = next(n for n, c in LOSSES.items() if "unsup" in c.default_for) if config.loss == "auto" else config.loss
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    return LOSSES[name].from_config(config, dim)


@register_loss("infonce", default_for=("unsup", "sup"))
class InfoNCELoss(Loss):
    """SimCSE's InfoNCE: ``anchor[i]`` must pick ``positive[i]`` among all positives (and hard negatives).

    ``hard_negative_weight`` is added to the logit of each anchor's own hard negative, as in SimCSE's
    supervised recipe (0 leaves it an ordinary negative).
    """

    options = ("temperature", "hard_negative_weight")

    def __init__(self, temperature: float = 0.05, hard_negative_weight: float = 0.0):
        super().__init__()
        if temperature <= 0:
            raise ValueError("temperature must be > 0")
        self.temperature = temperature
        self.hard_negative_weight = hard_negative_weight

    @classmethod
    def from_config(cls, config, dim):
        return cls(config.temperature, config.hard_negative_weight)

    def extra_candidates(self) -> list[torch.Tensor]:
        """Negatives beyond the batch's own (constants, after the positives and hard negatives)."""
        return []

    def forward(self, anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor | None = None) -> torch.Tensor:
        _, size = world()
        anchor = gather_keep_local_grad(anchor)
        n = anchor.size(0)
        candidates = [gather_keep_local_grad(positive)]
        if negative is not None:
            candidates.append(gather_keep_local_grad(negative))
        logits = cosine_matrix(anchor, torch.cat(candidates + self.extra_candidates(), dim=0)) / self.temperature
        targets = torch.arange(n, device=anchor.device)
        if negative is not None and self.hard_negative_weight:
            bonus = torch.zeros_like(logits)
            bonus[targets, n + targets] = self.hard_negative_weight
            logits = logits + bonus
        loss = nn.functional.cross_entropy(logits, targets)
        # DDP averages the ranks' gradients; each rank holds only its own share of dL/dθ, so the
        # average needs the factor back to equal the single-process gradient.
        return scale_gradient(loss, size)


@register_loss("esimcse", default_for=("esimcse",))
class QueueInfoNCELoss(InfoNCELoss):
    """ESimCSE's InfoNCE: in-batch candidates plus a queue of past momentum-encoder embeddings as extra negatives.

    The queue holds constants (no gradient). ``enqueue`` gathers from every rank first, so all ranks
    hold the same queue and the loss stays the global one under DDP. The model fills it from its
    momentum encoder (``momentum``) in its forward, so GradCache, which calls the loss alone, cannot.
    """

    options = InfoNCELoss.options + ("queue_size", "momentum")
    grad_cache = False

    def __init__(self, temperature: float = 0.05, hard_negative_weight: float = 0.0, queue_size: int = 0,
                 dim: int | None = None):
        super().__init__(temperature, hard_negative_weight)
        self.queue_size = queue_size
        # Fixed shapes so a checkpoint's queue loads back in place (resume continues with the same
        # negatives); ``filled`` counts the valid rows, newest first.
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
    """CoSENT: every pair with a higher gold score must get a higher similarity than every lower one.

    ``loss = log(1 + sum_{score_i > score_j} exp(scale * (sim_j - sim_i)))`` over all pairs of the
    (global) batch; only the order of the gold scores matters, so 0–5 scores need no rescaling.
    Pairs are compared across devices too, the same way ``InfoNCELoss`` gathers its candidates.
    """

    inputs = ("scored_pairs",)
    options = ("loss_scale",)
    similarity = staticmethod(pairwise_cosine)

    def __init__(self, scale: float = 20.0):
        super().__init__()
        self.scale = scale

    @classmethod
    def from_config(cls, config, dim):
        return cls(config.loss_scale)

    def forward(self, first: torch.Tensor, second: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        _, size = world()
        sims = gather_keep_local_grad(self.similarity(first, second)) * self.scale
        scores = gather_keep_local_grad(scores.float().to(sims.device))
        # diff[i, j] = sim_j - sim_i, kept where pair i should rank above pair j.
        diff = sims[None, :] - sims[:, None]
        diff = diff.masked_fill(~(scores[:, None] > scores[None, :]), float("-inf"))
        loss = torch.logsumexp(torch.cat([diff.new_zeros(1), diff.flatten()]), dim=0)
        return scale_gradient(loss, size)


@register_loss("angle")
class AnglELoss(CoSENTLoss):
    """AnglE: CoSENT's ranking over the angle similarity (no cosine saturation near ±1), as in sentence-transformers."""

    similarity = staticmethod(pairwise_angle)
