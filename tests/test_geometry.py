"""Alignment/uniformity against values known in closed form, dropout views, and nearest-neighbour examples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from helpers import make_tiny_model_dir
from kosimcse.data.records import StsPair
from kosimcse.evaluation.geometry import (
    DROPOUT_POSITIVES,
    alignment,
    corpus_geometry,
    dropout_views,
    nearest_neighbours,
    sts_geometry,
    uniformity,
)


def _circle(n: int, arc: float = 2 * math.pi) -> np.ndarray:
    angles = np.linspace(0.0, arc, n, endpoint=False)
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)


def test_identical_pairs_have_zero_alignment():
    x = np.random.default_rng(0).normal(size=(50, 8))
    assert alignment(x, x.copy()) == pytest.approx(0.0, abs=1e-12)


def test_alignment_is_scale_free_and_matches_antipodal_distance():
    x = np.random.default_rng(1).normal(size=(20, 4))
    # Opposite unit vectors are 2 apart: squared distance 4, whatever the original lengths.
    assert alignment(3.0 * x, -0.5 * x) == pytest.approx(4.0)
    # Orthogonal unit vectors: squared distance 2.
    assert alignment(np.eye(3), np.roll(np.eye(3), 1, axis=0)) == pytest.approx(2.0)


def test_collapsed_embeddings_have_zero_uniformity():
    collapsed = np.tile([[0.3, -1.2, 2.0]], (40, 1)) * np.arange(1, 41)[:, None]  # same direction, any length
    assert uniformity(collapsed) == pytest.approx(0.0, abs=1e-12)


def test_uniformity_of_two_antipodal_points_is_exact():
    # One pair at squared distance 4: log exp(-2 * 4) = -8.
    assert uniformity(np.array([[1.0, 0.0], [-1.0, 0.0]])) == pytest.approx(-8.0)


def test_spread_points_are_more_uniform_than_clustered_ones():
    spread = uniformity(_circle(64))
    clustered = uniformity(_circle(64, arc=0.3))
    assert spread < clustered < 0.0
    # Independent uniform points on the circle have E exp(-2|x-y|^2) = exp(-4) I0(4); an even grid of n
    # points reproduces that mean over all n^2 ordered pairs, and leaving out the n self-pairs (each 1) gives:
    from scipy.special import i0

    n, mean_all = 64, math.exp(-4) * i0(4)
    assert spread == pytest.approx(math.log((n * mean_all - 1) / (n - 1)), abs=1e-9)


def test_uniformity_subsample_is_bounded_and_close():
    x = np.random.default_rng(2).normal(size=(3000, 16))
    full = uniformity(x[:1500])
    sampled = uniformity(x, max_points=500, seed=1)
    assert sampled == pytest.approx(full, abs=0.05)


def test_invalid_inputs_raise_value_errors():
    with pytest.raises(ValueError):
        alignment(np.ones((3, 2)), np.ones((4, 2)))
    with pytest.raises(ValueError):
        uniformity(np.ones((1, 2)))
    with pytest.raises(ValueError):
        uniformity(np.ones(5))


def _pairs():
    return [StsPair("a", "b", 5.0), StsPair("a", "c", 4.0), StsPair("b", "d", 1.0), StsPair("c", "d", 0.0)]


def test_sts_geometry_uses_only_high_scored_pairs():
    vectors = {"a": np.array([1.0, 0.0]), "b": np.array([1.0, 0.0]), "c": np.array([0.0, 1.0]),
               "d": np.array([-1.0, 0.0])}
    result = sts_geometry(_pairs(), embeddings=vectors)
    # Positives (a,b): distance 0 and (a,c): squared distance 2 -> mean 1. The low pairs would add 4s.
    assert result["alignment"] == pytest.approx(1.0)
    assert result["positive_pairs"] == 2 and result["points"] == 4
    assert "4" in result["positives"]
    by_fn = sts_geometry(_pairs(), encode_fn=lambda texts: np.stack([vectors[t] for t in texts]))
    assert by_fn["alignment"] == pytest.approx(result["alignment"])
    assert by_fn["uniformity"] == pytest.approx(result["uniformity"])
    with pytest.raises(ValueError):
        sts_geometry(_pairs(), embeddings=vectors, min_score=5.5)


def test_nearest_neighbours_ranks_by_cosine_and_skips_the_query_itself():
    texts = ["east", "north-east", "north", "west"]
    vectors = {"east": [1.0, 0.0], "north-east": [1.0, 1.0], "north": [0.0, 2.0], "west": [-1.0, 0.0]}
    encode = lambda batch: np.array([vectors[t] for t in batch])  # noqa: E731
    (example,) = nearest_neighbours(encode, texts, ["east"], k=2)
    assert example["query"] == "east"
    assert [n["text"] for n in example["neighbours"]] == ["north-east", "north"]
    assert example["neighbours"][0]["score"] == pytest.approx(1 / math.sqrt(2))
    (with_self,) = nearest_neighbours(encode, texts, ["east"], k=1, exclude_self=False)
    assert with_self["neighbours"] == [{"text": "east", "score": pytest.approx(1.0)}]


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory):
    from kosimcse.inference.encoder import KoSimCSE

    return KoSimCSE.from_pretrained(make_tiny_model_dir(tmp_path_factory.mktemp("geo")), dtype="fp32", device="cpu")


def test_dropout_views_differ_and_inference_mode_is_restored(tiny_encoder):
    texts = ["한 남자가 기타를 치고 있다.", "여자가 양파를 썰고 있다.", "고양이가 소파 위에서 자고 있다."]
    first, second = dropout_views(tiny_encoder, texts)
    assert first.shape == second.shape == (3, tiny_encoder.dim)
    assert not np.allclose(first, second)
    assert not tiny_encoder.model.training
    plain = tiny_encoder.encode(texts, show_progress=False)
    np.testing.assert_allclose(plain, tiny_encoder.encode(texts, show_progress=False))
    result = corpus_geometry(first, second, plain)
    assert 0.0 < result["alignment"] < 4.0 and result["uniformity"] < 0.0
    assert result["positives"] == DROPOUT_POSITIVES
