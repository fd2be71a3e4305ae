"""GradCache (Gao et al., 2021): a contrastive batch larger than memory allows, with exact gradients.

Gradient accumulation would shrink the negative pool to each micro-batch. GradCache embeds the batch chunk by chunk
without a graph, backpropagates the loss to the cached embeddings, then re-embeds each chunk with a graph (replaying
its RNG state, so dropout draws the same masks) and backpropagates the cached gradients. sentence-transformers'
cached losses are tied to its own model class, hence this module.
"""

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
    """One GradCache step over a flat batch ``inputs`` (``[rows, length]`` tensors); returns the detached loss.

    ``embed(chunk)`` gives ``[chunk_rows, dim]``, ``loss_on_embeddings(all_rows)`` the scalar loss; gradients land
    in ``.grad``. ``no_sync`` (DDP's) keeps all but the last chunk's backward from all-reducing; inside an outer
    ``no_sync`` (gradient accumulation) the last one stays unsynced too, since ``no_sync`` restores the flag it found.
    """
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
