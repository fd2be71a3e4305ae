"""Similarity functions between embeddings: the single definition every other module imports.

Pairwise functions compare row ``i`` of ``a`` with row ``i`` of ``b`` (``[n, d], [n, d] -> [n]``);
matrix functions compare every row of ``a`` with every row of ``b`` (``[n, d], [m, d] -> [n, m]``).
Distances are negated so that for every function, larger means more similar, as in
sentence-transformers. NumPy inputs are computed in float64 (metrics are then exact to print
precision); torch tensors stay torch so training code can use them on any device.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

SIMILARITIES = ("cosine", "euclidean", "manhattan", "dot")


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def _as_2d_float(x) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"expected a [n, dim] array of embeddings, got shape {arr.shape}")
    return arr


def _check_pairwise(a, b) -> None:
    if a.shape != b.shape:
        raise ValueError(f"pairwise similarity needs equal shapes, got {tuple(a.shape)} and {tuple(b.shape)}")


def l2_normalize(x, eps: float = 1e-12):
    """Rows scaled to unit length; a zero row stays zero (as ``torch.nn.functional.normalize``)."""
    if _is_torch(x):
        import torch

        return torch.nn.functional.normalize(x, p=2, dim=-1, eps=eps)
    arr = np.asarray(x)
    norms = np.linalg.norm(arr, axis=-1, keepdims=True)
    return arr / np.maximum(norms, eps)


def pairwise_cosine(a, b):
    if _is_torch(a):
        _check_pairwise(a, b)
        return (l2_normalize(a) * l2_normalize(b)).sum(-1)
    a, b = _as_2d_float(a), _as_2d_float(b)
    _check_pairwise(a, b)
    return (l2_normalize(a) * l2_normalize(b)).sum(-1)


def pairwise_dot(a, b):
    if _is_torch(a):
        _check_pairwise(a, b)
        return (a * b).sum(-1)
    a, b = _as_2d_float(a), _as_2d_float(b)
    _check_pairwise(a, b)
    return (a * b).sum(-1)


def pairwise_euclidean(a, b):
    """Negated Euclidean distance."""
    if _is_torch(a):
        import torch

        _check_pairwise(a, b)
        return -torch.linalg.vector_norm(a - b, dim=-1)
    a, b = _as_2d_float(a), _as_2d_float(b)
    _check_pairwise(a, b)
    return -np.linalg.norm(a - b, axis=-1)


def pairwise_manhattan(a, b):
    """Negated Manhattan (L1) distance."""
    if _is_torch(a):
        _check_pairwise(a, b)
        return -(a - b).abs().sum(-1)
    a, b = _as_2d_float(a), _as_2d_float(b)
    _check_pairwise(a, b)
    return -np.abs(a - b).sum(-1)


PAIRWISE: dict[str, Callable] = {
    "cosine": pairwise_cosine,
    "euclidean": pairwise_euclidean,
    "manhattan": pairwise_manhattan,
    "dot": pairwise_dot,
}


def pairwise_similarity(name: str, a, b):
    """Pairwise similarity by name (one of ``SIMILARITIES``)."""
    try:
        fn = PAIRWISE[name]
    except KeyError:
        raise ValueError(f"unknown similarity {name!r}; choose one of {', '.join(SIMILARITIES)}") from None
    return fn(a, b)


def cosine_matrix(a, b):
    """All-pairs cosine similarity ``[n, m]``; float32 for NumPy input since it feeds search, not metrics."""
    if _is_torch(a):
        return l2_normalize(a) @ l2_normalize(b).T
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    if a.ndim == 1:
        a = a[None, :]
    if b.ndim == 1:
        b = b[None, :]
    return l2_normalize(a) @ l2_normalize(b).T
