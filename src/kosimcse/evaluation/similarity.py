"""Similarity functions between embeddings: the single definition that evaluation, inference and the losses import.

Pairwise functions compare row ``i`` of ``a`` with row ``i`` of ``b`` (``[n, d], [n, d] -> [n]``);
matrix functions compare every row of ``a`` with every row of ``b`` (``[n, d], [m, d] -> [n, m]``).
Distances are negated so that for every function, larger means more similar, as in
sentence-transformers. NumPy inputs are computed in float64 (metrics are then exact to print
precision); torch tensors stay torch, on their device and in their graph, computed in float32 or
wider with autocast off (``full_precision``), so a loss's logits under bf16 autocast equal float32 ones.
This module imports no training code (and torch only for torch inputs), so every layer may use it.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable

import numpy as np

SIMILARITIES = ("cosine", "euclidean", "manhattan", "dot")


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def full_precision(device):
    """A region where autocast is off, so similarities are computed in float32 even inside a bf16/fp16 step.

    Under autocast a matmul runs in the low precision whatever its inputs' dtype; divided by a temperature of
    0.05, bf16's rounding of cosines near 1 becomes a logit error of several hundredths.
    """
    import torch

    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()


def _similarity(pairwise: bool):
    """One body for NumPy and torch inputs: NumPy as 2-D float64 (float32 for matrices, which feed search, not
    metrics); torch widened to float32 (float64 stays) and run under ``full_precision``."""
    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def run(a, b):
            if _is_torch(a):
                a, b = (x if x.is_floating_point() and x.element_size() >= 4 else x.float() for x in (a, b))
                context = full_precision(a.device)
            else:
                a, b = (np.atleast_2d(np.asarray(x, dtype=np.float64 if pairwise else np.float32)) for x in (a, b))
                if a.ndim != 2 or b.ndim != 2:
                    raise ValueError(f"expected [n, dim] arrays of embeddings, got shapes {a.shape} and {b.shape}")
                context = contextlib.nullcontext()
            if pairwise and a.shape != b.shape:
                raise ValueError(f"pairwise similarity needs equal shapes, got {tuple(a.shape)} and {tuple(b.shape)}")
            with context:
                return fn(a, b)
        return run
    return wrap


def l2_normalize(x, eps: float = 1e-12):
    """Rows scaled to unit length; a zero row stays zero (as ``torch.nn.functional.normalize``)."""
    if _is_torch(x):
        import torch

        return torch.nn.functional.normalize(x, p=2, dim=-1, eps=eps)
    arr = np.asarray(x)
    norms = np.linalg.norm(arr, axis=-1, keepdims=True)
    return arr / np.maximum(norms, eps)


@_similarity(pairwise=True)
def pairwise_cosine(a, b):
    return (l2_normalize(a) * l2_normalize(b)).sum(-1)


@_similarity(pairwise=True)
def pairwise_dot(a, b):
    return (a * b).sum(-1)


@_similarity(pairwise=True)
def pairwise_euclidean(a, b):
    """Negated Euclidean distance."""
    return -(((a - b) ** 2).sum(-1) ** 0.5)


@_similarity(pairwise=True)
def pairwise_manhattan(a, b):
    """Negated Manhattan (L1) distance."""
    return -abs(a - b).sum(-1)


@_similarity(pairwise=True)
def pairwise_angle(a, b):
    """AnglE's similarity ``|cos + sin|``: dimension ``i`` pairs with ``i + ceil(D/2)`` as a complex number's parts
    (an odd last real part pairs with an imaginary 0, as in sentence-transformers' zero padding)."""
    a, b = l2_normalize(a), l2_normalize(b)
    half = (a.shape[-1] + 1) // 2
    imag = a.shape[-1] - half
    sines = (a[..., half:] * b[..., :imag] - a[..., :imag] * b[..., half:]).sum(-1)
    return abs((a * b).sum(-1) + sines)


def pairwise_similarity(name: str, a, b):
    """Pairwise similarity by name (one of ``SIMILARITIES``)."""
    if name not in SIMILARITIES:
        raise ValueError(f"unknown similarity {name!r}; choose one of {', '.join(SIMILARITIES)}")
    return globals()[f"pairwise_{name}"](a, b)


@_similarity(pairwise=False)
def cosine_matrix(a, b):
    """All-pairs cosine similarity ``[n, m]``."""
    return l2_normalize(a) @ l2_normalize(b).T
