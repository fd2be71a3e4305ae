"""STS evaluation: correlations of embedding similarities with gold scores (as sentence-transformers), tables."""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from scipy.stats import pearsonr, spearmanr

from kosimcse.data.records import StsPair
from kosimcse.evaluation.similarity import SIMILARITIES, pairwise_similarity

METRIC_KEYS = tuple(f"{sim}_{corr}" for sim in SIMILARITIES for corr in ("pearson", "spearman"))


def sts_metrics(emb1, emb2, gold) -> dict[str, float]:
    """Pearson and Spearman (x100) of the four similarities against gold (``METRIC_KEYS``), as sentence-transformers'
    ``EmbeddingSimilarityEvaluator``."""
    emb1, emb2 = np.asarray(emb1), np.asarray(emb2)
    gold = np.asarray(gold, dtype=np.float64)
    if emb1.shape != emb2.shape or emb1.ndim != 2:
        raise ValueError(f"need two [n, dim] arrays of equal shape, got {emb1.shape} and {emb2.shape}")
    if gold.shape != (emb1.shape[0],):
        raise ValueError(f"need one gold score per pair: {emb1.shape[0]} pairs, {gold.shape} scores")
    if emb1.shape[0] < 2:
        raise ValueError("correlation needs at least 2 pairs")
    return score_correlations({sim: pairwise_similarity(sim, emb1, emb2) for sim in SIMILARITIES}, gold)


def score_correlations(scores: Mapping[str, np.ndarray], gold) -> dict[str, float]:
    """Pearson and Spearman (x100) of each ``{similarity name: per-pair scores}`` against gold (constant: NaN)."""
    gold = np.asarray(gold, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant scores (a collapsed model) have no correlation: NaN, not warnings
        return {f"{sim}_{corr}": float(fn(gold, np.asarray(values))[0]) * 100.0
                for sim, values in scores.items() for corr, fn in (("pearson", pearsonr), ("spearman", spearmanr))}


class StsEvaluator:
    """Evaluates an ``encode_fn(list[str]) -> [n, dim] array`` on one STS set, encoding each sentence once."""

    def __init__(self, pairs: Sequence[StsPair], name: str = "sts"):
        if len(pairs) < 2:
            raise ValueError(f"STS set {name!r} needs at least 2 pairs, got {len(pairs)}")
        self.pairs = list(pairs)
        self.name = name
        self.sentences = list(dict.fromkeys(s for p in self.pairs for s in (p.sentence1, p.sentence2)))
        index = {s: i for i, s in enumerate(self.sentences)}
        self.left = np.array([index[p.sentence1] for p in self.pairs])  # rows of ``sentences``
        self.right = np.array([index[p.sentence2] for p in self.pairs])
        self.gold = np.array([p.score for p in self.pairs], dtype=np.float64)

    @classmethod
    def from_task(cls, task: str, data_dir=None) -> "StsEvaluator":
        from kosimcse.data.tasks import load_sts_task

        return cls(load_sts_task(task, data_dir=data_dir), name=task)

    def __len__(self) -> int:
        return len(self.pairs)

    def __call__(self, encode_fn: Callable) -> dict[str, float]:
        embeddings = np.asarray(encode_fn(self.sentences))
        if embeddings.ndim != 2 or embeddings.shape[0] != len(self.sentences):
            raise ValueError(f"encode_fn returned shape {embeddings.shape} for {len(self.sentences)} sentences")
        return sts_metrics(embeddings[self.left], embeddings[self.right], self.gold)


def fmt_number(value, spec: str = ".2f") -> str:
    """``value`` in format ``spec``; None and NaN (no correlation, e.g. from a collapsed model) as "n/a"."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return format(value, spec)


def markdown_table(rows: Mapping[str, Mapping[str, float]]) -> str:
    """Rows ``{model name: metrics}`` as the KoSimCSE README table (8 metric columns, 2 decimals)."""
    header = ["Model"] + [" ".join(key.split("_")).title() for key in METRIC_KEYS]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":---"] + [":---:"] * len(METRIC_KEYS)) + "|"]
    for name, metrics in rows.items():
        cells = [str(name).replace("|", "\\|")] + [fmt_number(metrics.get(key)) for key in METRIC_KEYS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def json_text(data) -> str:
    """``data`` as JSON any reader accepts: NaN and inf written as null, other non-JSON values (paths) as strings."""
    text = json.dumps(data, default=str)
    return json.dumps(json.loads(text, parse_constant=lambda _: None), ensure_ascii=False, indent=2)


def metrics_json(results: Mapping, **extra) -> str:
    """Results (and ``extra`` fields) as JSON through ``json_text``."""
    return json_text({**extra, "results": results})
