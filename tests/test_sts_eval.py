"""STS metrics: agreement with sentence-transformers, sensitivity to embedding quality, evaluator and table."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from kosimcse.data.records import StsPair
from kosimcse.evaluation import similarity as sim
from kosimcse.evaluation.sts import METRIC_KEYS, StsEvaluator, markdown_table, metrics_json, sts_metrics


def _synthetic_sts(n=300, dim=24, seed=0):
    """Pairs whose second embedding drifts from the first more as the gold score drops; gold has ties."""
    rng = np.random.default_rng(seed)
    gold = np.round(rng.uniform(0, 5, n) * 2) / 2  # 0.5 steps: many ties, as in KorSTS
    emb1 = rng.normal(size=(n, dim)).astype(np.float32)
    noise = rng.normal(size=(n, dim)).astype(np.float32)
    emb2 = emb1 + noise * (5.5 - gold)[:, None] * 0.4 + rng.normal(0.3, 0.1, size=(1, dim)).astype(np.float32)
    return emb1, emb2, gold


class _PrecomputedModel:
    """Stands in for a SentenceTransformer: encode() looks embeddings up by sentence."""

    similarity_fn_name = "cosine"

    def __init__(self, table):
        self.table = table

        class _Card:
            def set_evaluation_metrics(self, *args, **kwargs):
                pass

        self.model_card_data = _Card()

    def encode(self, sentences, **kwargs):
        return np.stack([self.table[s] for s in sentences])


def test_metrics_equal_sentence_transformers_evaluator():
    from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator

    emb1, emb2, gold = _synthetic_sts()
    s1 = [f"a{i}" for i in range(len(gold))]
    s2 = [f"b{i}" for i in range(len(gold))]
    table = {**dict(zip(s1, emb1)), **dict(zip(s2, emb2))}
    evaluator = EmbeddingSimilarityEvaluator(s1, s2, gold.tolist(), name="t", write_csv=False,
                                             similarity_fn_names=["cosine", "euclidean", "manhattan", "dot"])
    theirs = evaluator(_PrecomputedModel(table))
    ours = sts_metrics(emb1, emb2, gold)
    assert set(ours) == set(METRIC_KEYS)
    for key in METRIC_KEYS:
        similarity_name, corr = key.split("_")
        expected = theirs[f"t_{corr}_{similarity_name}"] * 100
        assert abs(ours[key] - expected) < 1e-4, (key, ours[key], expected)


def test_metrics_reward_good_embeddings_and_not_shuffled_ones():
    emb1, emb2, gold = _synthetic_sts(seed=1)
    good = sts_metrics(emb1, emb2, gold)
    shuffled = sts_metrics(emb1, emb2[np.random.default_rng(0).permutation(len(gold))], gold)
    assert good["cosine_spearman"] > 50
    assert abs(shuffled["cosine_spearman"]) < 20
    # Distances are negated: closer pairs must correlate positively with gold, like cosine.
    assert good["euclidean_spearman"] > 50 and good["manhattan_spearman"] > 50


def test_constant_similarity_gives_nan_not_an_exception():
    emb = np.ones((5, 4))
    metrics = sts_metrics(emb, emb, [0, 1, 2, 3, 4])
    assert math.isnan(metrics["cosine_pearson"])
    assert "n/a" in markdown_table({"collapsed": metrics})
    assert '"cosine_pearson": null' in metrics_json({"t": metrics})


def test_metrics_json_is_strict_json():
    """inf is not JSON either (Python would write Infinity); paths, as the CLI passes them, become strings."""
    text = metrics_json({"t": {"cosine_pearson": float("inf")}}, model=Path("runs/x"))
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in {text}")) == {
        "model": str(Path("runs/x")), "results": {"t": {"cosine_pearson": None}}}


def test_metrics_reject_mismatched_inputs():
    with pytest.raises(ValueError):
        sts_metrics(np.zeros((3, 4)), np.zeros((2, 4)), [1, 2, 3])
    with pytest.raises(ValueError):
        sts_metrics(np.zeros((3, 4)), np.zeros((3, 4)), [1, 2])


def test_numpy_and_torch_similarities_agree_with_scipy():
    from scipy.spatial.distance import cdist

    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(7, 5)), rng.normal(size=(7, 5))
    np.testing.assert_allclose(sim.pairwise_euclidean(a, b), -np.diag(cdist(a, b, "euclidean")), rtol=1e-10)
    np.testing.assert_allclose(sim.pairwise_manhattan(a, b), -np.diag(cdist(a, b, "cityblock")), rtol=1e-10)
    np.testing.assert_allclose(sim.pairwise_cosine(a, b), 1 - np.diag(cdist(a, b, "cosine")), rtol=1e-10)
    np.testing.assert_allclose(sim.pairwise_dot(a, b), np.einsum("ij,ij->i", a, b), rtol=1e-10)
    ta, tb = torch.tensor(a), torch.tensor(b)
    for name in sim.SIMILARITIES:
        np.testing.assert_allclose(sim.pairwise_similarity(name, ta, tb).numpy(), sim.pairwise_similarity(name, a, b),
                                   rtol=1e-10)
    np.testing.assert_allclose(sim.cosine_matrix(a, b), 1 - cdist(a, b, "cosine"), atol=1e-5)
    with pytest.raises(ValueError):
        sim.pairwise_similarity("jaccard", a, b)


def test_evaluator_encodes_each_sentence_once_and_matches_direct_metrics():
    rng = np.random.default_rng(5)
    sentences = [f"문장 {i}" for i in range(12)]
    vectors = {s: rng.normal(size=8) for s in sentences}
    pairs = [StsPair(sentences[i % 12], sentences[(i * 5 + 1) % 12], float(i % 6)) for i in range(30)]
    calls = []

    def encode(texts):
        calls.append(list(texts))
        return np.stack([vectors[t] for t in texts])

    evaluator = StsEvaluator(pairs, "toy")
    result = evaluator(encode)
    assert len(calls) == 1 and len(calls[0]) == len(set(calls[0])) == len({s for p in pairs for s in (p.sentence1, p.sentence2)})
    direct = sts_metrics(np.stack([vectors[p.sentence1] for p in pairs]), np.stack([vectors[p.sentence2] for p in pairs]),
                         [p.score for p in pairs])
    assert result == pytest.approx(direct)


def test_evaluator_rejects_wrong_shaped_encoder_output():
    pairs = [StsPair("가", "나", 1.0), StsPair("다", "라", 2.0)]
    with pytest.raises(ValueError):
        StsEvaluator(pairs)(lambda texts: np.zeros((1, 3)))


def test_markdown_table_shape():
    metrics = {key: 10.0 + i + 0.126 for i, key in enumerate(METRIC_KEYS)}
    table = markdown_table({"model-a": metrics, "model|b": metrics}).splitlines()
    assert table[0] == ("| Model | Cosine Pearson | Cosine Spearman | Euclidean Pearson | Euclidean Spearman | "
                        "Manhattan Pearson | Manhattan Spearman | Dot Pearson | Dot Spearman |")
    assert len(table) == 4
    cells = [c.strip() for c in table[2].strip("|").split("|")]
    assert cells[0] == "model-a" and cells[1:] == [f"{10 + i + 0.126:.2f}" for i in range(8)]
    assert "model\\|b" in table[3]


@pytest.mark.parametrize("dim", [7, 8])  # an odd last real part pairs with an imaginary 0
def test_torch_similarities_are_float32_under_autocast_and_agree_with_numpy(dim):
    rng = np.random.default_rng(dim)
    a, b = rng.normal(size=(6, dim)), rng.normal(size=(6, dim))
    ta, tb = torch.tensor(a, dtype=torch.bfloat16), torch.tensor(b, dtype=torch.bfloat16)
    for fn in (sim.pairwise_angle, sim.pairwise_cosine, sim.pairwise_euclidean, sim.cosine_matrix):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = fn(ta, tb)
        assert got.dtype == torch.float32, fn.__name__
        np.testing.assert_allclose(got.numpy(), fn(ta.float().numpy(), tb.float().numpy()), atol=1e-5)
