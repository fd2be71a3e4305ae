"""GradCache (Gao et al., 2021): a contrastive batch far larger than memory allows, with exact gradients.

Gradient accumulation does not help contrastive learning: it shrinks the negative pool to each
micro-batch. GradCache keeps the pool whole:

1. embed the batch chunk by chunk *without* a graph, remembering each chunk's RNG state;
2. compute the loss on the cached embeddings and backpropagate it to them only;
3. re-embed each chunk *with* a graph, replaying its RNG state so dropout draws the same masks,
   and backpropagate the cached embedding gradients through the encoder.

The result equals one backward pass over the whole batch (tests/test_gradcache.py checks it).
No maintained library offers this for the Hugging Face Trainer (sentence-transformers' cached
losses are tied to its own model class), hence this short module.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch


class RngState:
    """The CPU and CUDA random states at one moment, to replay dropout exactly."""

    def __init__(self):
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None

    def restore(self) -> None:
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state_all(self.cuda)


def grad_cache_backward(
    embed: Callable[[dict], torch.Tensor],
    loss_on_embeddings: Callable[[torch.Tensor], torch.Tensor],
    inputs: dict[str, torch.Tensor],
    chunk_size: int,
    backward: Callable[[torch.Tensor], None] = torch.Tensor.backward,
    no_sync: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> torch.Tensor:
    """Run one GradCache step over a flat batch ``inputs`` (tensors of ``[rows, length]``).

    ``embed(chunk_inputs)`` returns ``[chunk_rows, dim]``; ``loss_on_embeddings(all_rows)`` returns the
    scalar loss. Gradients are left in the parameters' ``.grad``; the detached loss is returned.
    ``no_sync`` (DDP's ``model.no_sync``) keeps all but the last chunk's backward from all-reducing; the last
    one then all-reduces the gradients summed over every chunk. That needs DDP's dynamic graph (static_graph
    breaks under ``no_sync``); inside an outer ``no_sync`` (gradient accumulation) the last chunk stays unsynced
    too, since ``no_sync`` restores the flag it found.
    """
    rows = next(iter(inputs.values())).size(0)
    starts = list(range(0, rows, chunk_size))
    chunks = [{k: v[s: s + chunk_size] for k, v in inputs.items()} for s in starts]

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
