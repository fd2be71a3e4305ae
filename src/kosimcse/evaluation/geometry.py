"""Embedding-space geometry: alignment and uniformity (Wang & Isola, 2020) and nearest-neighbour examples.

Both measures are computed on L2-normalised embeddings, so they are comparable across models:

* alignment ``E ||f(x) - f(x+)||^2`` over positive pairs: 0 when positives coincide, 4 at most;
  lower is better.
* uniformity ``log E exp(-2 ||f(x) - f(y)||^2)`` over pairs of distinct points: 0 when every
  embedding is the same point (collapse), about -4 for points spread evenly over a high-dimensional
  sphere; lower is better.

Which pairs count as positive depends on the data, and the result dicts say which was used:

* STS sets (:func:`sts_geometry`): sentence pairs with a gold score >= 4 are positives and
  uniformity is over the set's distinct sentences, as in the SimCSE paper's analysis on STS-B.
* unlabeled text (:func:`corpus_geometry`): the positive of a sentence is the same sentence
  embedded again with dropout on, i.e. SimCSE's own training pairs; uniformity is over the
  inference-mode (dropout off) embeddings, the ones a user gets.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence

import numpy as np
from scipy.spatial.distance import pdist
from scipy.special import logsumexp

from kosimcse.evaluation.similarity import l2_normalize

EncodeFn = Callable[[list[str]], np.ndarray]

STS_POSITIVE_MIN_SCORE = 4.0
STS_POSITIVES = "KorSTS pairs with gold score >= {min_score:g}"
DROPOUT_POSITIVES = "two dropout views of the same sentence"


def _unit_rows(x) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"expected a [n, dim] array of embeddings, got shape {arr.shape}")
    return l2_normalize(arr)


def alignment(x, y, alpha: float = 2.0) -> float:
    """``mean ||x_i - y_i||^alpha`` over row pairs of L2-normalised ``x`` and ``y``."""
    x, y = _unit_rows(x), _unit_rows(y)
    if x.shape != y.shape:
        raise ValueError(f"alignment needs two arrays of equal shape, got {x.shape} and {y.shape}")
    if len(x) == 0:
        raise ValueError("alignment needs at least one positive pair")
    return float(np.mean(np.linalg.norm(x - y, axis=1) ** alpha))


def uniformity(x, t: float = 2.0, max_points: int | None = None, seed: int = 0) -> float:
    """``log mean exp(-t ||x_i - x_j||^2)`` over all pairs ``i < j`` of L2-normalised rows.

    With more than ``max_points`` rows, a random subset of that size is used (all its pairs),
    which keeps the cost at ``max_points^2 / 2`` distances.
    """
    x = _unit_rows(x)
    if max_points is not None and len(x) > max_points:
        x = x[np.random.default_rng(seed).choice(len(x), size=max_points, replace=False)]
    if len(x) < 2:
        raise ValueError("uniformity needs at least 2 embeddings")
    squared = pdist(x, metric="sqeuclidean")
    # logsumexp: exp(-2 d^2) underflows nothing at d^2 <= 4, but stays exact when a model collapses to 0.
    return float(logsumexp(-t * squared) - math.log(len(squared)))


def alignment_uniformity(anchors, positives, points=None, max_points: int | None = 2000, seed: int = 0) -> dict:
    """Alignment over ``(anchors[i], positives[i])`` and uniformity over ``points`` (default: the anchors)."""
    points = anchors if points is None else points
    return {
        "alignment": alignment(anchors, positives),
        "uniformity": uniformity(points, max_points=max_points, seed=seed),
        "positive_pairs": int(len(anchors)),
        "points": int(min(len(points), max_points or len(points))),
    }


def sts_geometry(pairs, embeddings=None, encode_fn: EncodeFn | None = None, min_score: float = STS_POSITIVE_MIN_SCORE,
                 max_points: int | None = 2000, seed: int = 0) -> dict:
    """Alignment/uniformity on an STS set: positives are pairs scored >= ``min_score``.

    ``pairs`` are ``StsPair``-like (``sentence1``, ``sentence2``, ``score``). Give either
    ``embeddings``, a mapping sentence -> vector, or ``encode_fn`` to embed the distinct sentences.
    """
    pairs = list(pairs)
    sentences = list(dict.fromkeys(s for p in pairs for s in (p.sentence1, p.sentence2)))
    if embeddings is None:
        if encode_fn is None:
            raise ValueError("give embeddings or encode_fn")
        vectors = np.asarray(encode_fn(sentences))
        embeddings = dict(zip(sentences, vectors))
    positives = [p for p in pairs if p.score >= min_score]
    if not positives:
        raise ValueError(f"no pair has a gold score >= {min_score}")
    left = np.stack([embeddings[p.sentence1] for p in positives])
    right = np.stack([embeddings[p.sentence2] for p in positives])
    points = np.stack([embeddings[s] for s in sentences])
    result = alignment_uniformity(left, right, points, max_points=max_points, seed=seed)
    result["positives"] = STS_POSITIVES.format(min_score=min_score)
    return result


@contextlib.contextmanager
def dropout_enabled(model):
    """Within this block every forward pass of ``model`` runs with dropout on, even if the caller
    switches it to eval mode first (as ``SimCSEModel.encode`` does); the previous mode is restored after."""
    was_training = model.training

    def switch_on(module, args):
        module.train(True)  # returns None: a pre-hook's return value would replace the inputs

    handle = model.register_forward_pre_hook(switch_on)
    try:
        yield model
    finally:
        handle.remove()
        model.train(was_training)


def dropout_views(encoder, texts: Sequence[str], batch_size: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two embeddings of each text by a ``KoSimCSE`` encoder with dropout on (different masks)."""
    import torch

    torch.manual_seed(seed)
    with dropout_enabled(encoder.model):
        first = encoder.encode(list(texts), batch_size=batch_size, show_progress=False)
        second = encoder.encode(list(texts), batch_size=batch_size, show_progress=False)
    return first, second


def corpus_geometry(view1, view2, embeddings, max_points: int | None = 2000, seed: int = 0) -> dict:
    """Alignment between two dropout views of the same sentences; uniformity of their inference embeddings."""
    result = alignment_uniformity(view1, view2, embeddings, max_points=max_points, seed=seed)
    result["positives"] = DROPOUT_POSITIVES
    return result


def nearest_neighbours(model, texts: Sequence[str], queries: Sequence[str], k: int = 5, text_embeddings=None,
                       exclude_self: bool = True) -> list[dict]:
    """For each query, the ``k`` most cosine-similar ``texts``: ``[{"query", "neighbours": [{"text", "score"}]}]``.

    ``model`` is an encode function or anything with ``.encode(texts)``; ``text_embeddings`` (rows of
    ``texts``) skips re-embedding the texts. A text identical to its query is left out with
    ``exclude_self``, so the examples show neighbours rather than the query finding itself.
    """
    encode = model.encode if hasattr(model, "encode") else model
    texts, queries = list(texts), list(queries)
    if not texts or not queries:
        return []
    if text_embeddings is None:
        text_embeddings = encode(texts)
    corpus = l2_normalize(np.asarray(text_embeddings, dtype=np.float64))
    query_emb = l2_normalize(np.asarray(encode(queries), dtype=np.float64))
    scores = query_emb @ corpus.T
    examples = []
    for query, row in zip(queries, scores):
        order = np.argsort(-row, kind="stable")
        neighbours = []
        for idx in order:
            if exclude_self and texts[idx] == query:
                continue
            neighbours.append({"text": texts[idx], "score": float(row[idx])})
            if len(neighbours) == k:
                break
        examples.append({"query": query, "neighbours": neighbours})
    return examples
