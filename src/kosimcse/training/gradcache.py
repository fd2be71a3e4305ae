"""GradCache (Gao et al., 2021): a contrastive batch larger than memory allows, with exact gradients (gradient
accumulation would shrink the negative pool). sentence-transformers' cached losses are tied to its model class."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch


class RngState:
    """The CPU and CUDA random states at one moment, to replay dropout exactly."""

    def __init__(self):
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None

    def restore(self) -> None:
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state_all(self.cuda)


def grad_cache_backward(embed: Callable[[dict], torch.Tensor],
                        loss_on_embeddings: Callable[[torch.Tensor], torch.Tensor], inputs: dict[str, torch.Tensor],
                        chunk_size: int, backward=torch.Tensor.backward, no_sync=contextlib.nullcontext,
                        autocast=contextlib.nullcontext) -> torch.Tensor:
    """Embed ``inputs`` (``[rows, length]`` tensors) chunk by chunk without a graph, backpropagate the loss to the
    cached embeddings, then re-embed each chunk with a graph (same RNG, so same dropout) and backpropagate the cached
    gradients; returns the detached loss. ``no_sync`` (DDP's) keeps all but the last chunk from all-reducing."""
    rows = next(iter(inputs.values())).size(0)
    chunks = [{k: v[s: s + chunk_size] for k, v in inputs.items()} for s in range(0, rows, chunk_size)]
    states, cached = [], []
    with torch.no_grad():
        for chunk in chunks:
            states.append(RngState())
            with autocast():
                cached.append(embed(chunk).detach())
    after_first_pass = RngState()

    reps = torch.cat(cached).float().requires_grad_(True)
    with autocast():
        loss = loss_on_embeddings(reps)
    loss.backward()  # touches only `reps`, a leaf: no parameter gradient yet, no DDP sync
    grads = reps.grad.split([c.size(0) for c in cached])

    for i, (chunk, state, grad) in enumerate(zip(chunks, states, grads)):
        state.restore()
        context = no_sync() if i < len(chunks) - 1 else contextlib.nullcontext()
        with context:
            with autocast():
                out = embed(chunk)
            backward((out.float() * grad).sum())
    after_first_pass.restore()  # the run's RNG stream continues as if each chunk ran once
    return loss.detach()
