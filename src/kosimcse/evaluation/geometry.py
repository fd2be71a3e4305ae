"""Embedding-space geometry: alignment and uniformity (Wang & Isola, 2020), and nearest-neighbour examples."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from scipy.spatial.distance import pdist
from scipy.special import logsumexp

from kosimcse.evaluation.similarity import l2_normalize

STS_POSITIVE_MIN_SCORE = 4.0  # as SimCSE's analysis on STS-B
STS_POSITIVES = "KorSTS pairs with gold score >= {min_score:g}"
DROPOUT_POSITIVES = "two dropout views of the same sentence"


def _unit_rows(x) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"expected a [n, dim] array of embeddings, got shape {arr.shape}")
    return l2_normalize(arr)


def alignment(x, y, alpha: float = 2.0) -> float:
    """``mean ||x_i - y_i||^alpha`` over row pairs of L2-normalised ``x`` and ``y``: 0 (positives coincide) to 4."""
    x, y = _unit_rows(x), _unit_rows(y)
    if x.shape != y.shape:
        raise ValueError(f"alignment needs two arrays of equal shape, got {x.shape} and {y.shape}")
    if len(x) == 0:
        raise ValueError("alignment needs at least one positive pair")
    return float(np.mean(np.linalg.norm(x - y, axis=1) ** alpha))


def uniformity(x, t: float = 2.0, max_points: int | None = None, seed: int = 0) -> float:
    """``log mean exp(-t ||x_i - x_j||^2)`` over pairs of L2-normalised rows (at most ``max_points``, sampled): 0 when
    collapsed, about -4 when spread over a high-dimensional sphere."""
    x = _unit_rows(x)
    if max_points is not None and len(x) > max_points:
        x = x[np.random.default_rng(seed).choice(len(x), size=max_points, replace=False)]
    if len(x) < 2:
        raise ValueError("uniformity needs at least 2 embeddings")
    squared = pdist(x, metric="sqeuclidean")
    # logsumexp stays exact when a model collapses to 0.
    return float(logsumexp(-t * squared) - math.log(len(squared)))


def alignment_uniformity(anchors, positives, points, positives_are: str, max_points: int | None = 2000,
                         seed: int = 0) -> dict:
    """Alignment over ``(anchors[i], positives[i])`` and uniformity over ``points``."""
    return {"alignment": alignment(anchors, positives),
            "uniformity": uniformity(points, max_points=max_points, seed=seed), "positive_pairs": int(len(anchors)), "points": int(min(len(points), max_points or len(points))),
            "positives": positives_are}


def sts_geometry(pairs, embeddings=None, encode_fn: Callable | None = None, min_score: float = STS_POSITIVE_MIN_SCORE,
                 max_points: int | None = 2000, seed: int = 0) -> dict:
    """Alignment/uniformity on ``StsPair``-like pairs, positives scored >= ``min_score``; the distinct sentences'
    vectors come from ``embeddings`` (sentence -> vector) or ``encode_fn``."""
    pairs = list(pairs)
    sentences = list(dict.fromkeys(s for p in pairs for s in (p.sentence1, p.sentence2)))
    if embeddings is None:
        if encode_fn is None:
            raise ValueError("give embeddings or encode_fn")
        embeddings = dict(zip(sentences, np.asarray(encode_fn(sentences))))
    positives = [p for p in pairs if p.score >= min_score]
    if not positives:
        raise ValueError(f"no pair has a gold score >= {min_score}")
    left = np.stack([embeddings[p.sentence1] for p in positives])
    right = np.stack([embeddings[p.sentence2] for p in positives])
    points = np.stack([embeddings[s] for s in sentences])
    return alignment_uniformity(left, right, points, STS_POSITIVES.format(min_score=min_score), max_points, seed)


def dropout_views(encoder, texts: Sequence[str], batch_size: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two embeddings of each text by a ``KoSimCSE`` encoder with dropout on (different masks)."""
    import torch

    def dropout_on(module, args):  # before every forward pass, so after ``encode`` has switched to eval mode
        module.train(True)  # returns None: a pre-hook's return value would replace the inputs

    model, was_training = encoder.model, encoder.model.training
    handle = model.register_forward_pre_hook(dropout_on)
    torch.manual_seed(seed)
    try:
        return tuple(encoder.encode(list(texts), batch_size=batch_size, show_progress=False) for _ in range(2))
    finally:
        handle.remove()
        model.train(was_training)


def corpus_geometry(view1, view2, embeddings, max_points: int | None = 2000, seed: int = 0) -> dict:
    """Alignment between two dropout views of the same sentences (SimCSE's training pairs); uniformity of the
    inference-mode embeddings, the ones a user gets."""
    return alignment_uniformity(view1, view2, embeddings, DROPOUT_POSITIVES, max_points, seed)


def nearest_neighbours(model, texts: Sequence[str], queries: Sequence[str], k: int = 5, text_embeddings=None,
                       exclude_self: bool = True) -> list[dict]:
    """For each query, the ``k`` most cosine-similar ``texts`` (not the query itself, with ``exclude_self``):
    ``[{"query", "neighbours": [{"text", "score"}]}]``. ``model``: an encode function or has ``.encode``."""
    encode = model.encode if hasattr(model, "encode") else model
    texts, queries = list(texts), list(queries)
    if not texts or not queries:
        return []
    corpus = l2_normalize(np.asarray(encode(texts) if text_embeddings is None else text_embeddings, dtype=np.float64))
    scores = l2_normalize(np.asarray(encode(queries), dtype=np.float64)) @ corpus.T
    examples = []
    for query, row in zip(queries, scores):
        order = [i for i in np.argsort(-row, kind="stable") if not (exclude_self and texts[i] == query)][:k]
        examples.append({"query": query, "neighbours": [{"text": texts[i], "score": float(row[i])} for i in order]})
    return examples
