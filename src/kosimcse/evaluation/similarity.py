"""Similarity functions between embeddings: the one definition; imports no training code, so every layer may use it."""

from __future__ import annotations

import contextlib
import functools

import numpy as np

SIMILARITIES = ("cosine", "euclidean", "manhattan", "dot")


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def full_precision(device):
    """A region with autocast off. Under bf16 autocast a matmul rounds cosines near 1, and a temperature of 0.05
    turns that into logit errors of several hundredths."""
    import torch

    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()


def _similarity(fn, pairwise: bool = True):
    """``fn`` (larger = more similar: distances negated) for NumPy (float64 pairwise, float32 matrices, which feed
    search) and torch (on its device and in its graph, float32 or wider with autocast off, for exact logits)."""
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


def l2_normalize(x, eps: float = 1e-12):
    """Rows scaled to unit length; a zero row stays zero (as ``torch.nn.functional.normalize``)."""
    if _is_torch(x):
        import torch

        return torch.nn.functional.normalize(x, p=2, dim=-1, eps=eps)
    arr = np.asarray(x)
    return arr / np.maximum(np.linalg.norm(arr, axis=-1, keepdims=True), eps)


def _angle(a, b):
    """AnglE's ``|cos + sin|``: dimension i pairs with i + ceil(D/2) as a complex number's parts (an odd last real
    part pairs with an imaginary 0, as in sentence-transformers' zero padding)."""
    a, b = l2_normalize(a), l2_normalize(b)
    half = (a.shape[-1] + 1) // 2
    imag = a.shape[-1] - half
    sines = (a[..., half:] * b[..., :imag] - a[..., :imag] * b[..., half:]).sum(-1)
    return abs((a * b).sum(-1) + sines)


_PAIRWISE = {name: _similarity(fn) for name, fn in {
    "cosine": lambda a, b: (l2_normalize(a) * l2_normalize(b)).sum(-1),
    "euclidean": lambda a, b: -(((a - b) ** 2).sum(-1) ** 0.5),
    "manhattan": lambda a, b: -abs(a - b).sum(-1),
    "dot": lambda a, b: (a * b).sum(-1),
    "angle": _angle,
}.items()}
pairwise_cosine = _PAIRWISE["cosine"]
pairwise_euclidean = _PAIRWISE["euclidean"]
pairwise_manhattan = _PAIRWISE["manhattan"]
pairwise_dot = _PAIRWISE["dot"]
pairwise_angle = _PAIRWISE["angle"]
cosine_matrix = _similarity(lambda a, b: l2_normalize(a) @ l2_normalize(b).T, pairwise=False)


def pairwise_similarity(name: str, a, b):
    """Pairwise similarity by name (one of ``SIMILARITIES``)."""
    if name not in SIMILARITIES:
        raise ValueError(f"unknown similarity {name!r}; choose one of {', '.join(SIMILARITIES)}")
    return _PAIRWISE[name](a, b)
