"""The domain benchmark's own pieces: the labelled NSMC sample and the kNN sentiment check it scores embeddings with."""

from __future__ import annotations

import json

import numpy as np

from benchmarks.domain_geometry import domain_sample, knn_accuracy, rated_reviews


def test_knn_accuracy_separates_clusters_and_is_chance_on_noise():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 100)
    centres = np.array([[1.0, 0, 0, 0], [0, 1.0, 0, 0]])
    clustered = centres[labels] + 0.05 * rng.normal(size=(200, 4))
    assert knn_accuracy(clustered, labels, k=11) == 1.0
    noise = rng.normal(size=(200, 16))
    assert 0.35 < knn_accuracy(noise, labels, k=11) < 0.65
    # A point never votes for itself: one isolated point of the other label is misclassified.
    labels_flip = labels.copy()
    labels_flip[0] = 1
    assert knn_accuracy(clustered, labels_flip, k=11) == 199 / 200


def test_rated_reviews_balances_polarities_and_skips_neutral_and_duplicates(tmp_path):
    reviews = ([{"review": f"좋아요 {i}", "rating": "10"} for i in range(30)]
               + [{"review": f"별로 {i}", "rating": "2"} for i in range(12)]
               + [{"review": f"그냥 {i}", "rating": "6"} for i in range(20)]
               + [{"review": "좋아요 0", "rating": "1"}, {"review": "  ", "rating": "10"}])
    (tmp_path / "1.json").write_text(json.dumps(reviews[:40], ensure_ascii=False), encoding="utf-8")
    (tmp_path / "2.json").write_text(json.dumps(reviews[40:], ensure_ascii=False), encoding="utf-8")
    texts, labels = rated_reviews(tmp_path, per_class=10, seed=1)
    assert len(texts) == len(set(texts)) == 20
    assert labels.tolist() == [0] * 10 + [1] * 10
    assert all(t.startswith("별로") for t, y in zip(texts, labels) if y == 0)
    assert all(t.startswith("좋아요") for t, y in zip(texts, labels) if y == 1)
    assert not any(t.startswith("그냥") for t in texts)


def test_domain_sample_is_distinct_bounded_and_seeded(tmp_path):
    lines = [f"문장 {i % 150}" for i in range(400)]  # 150 distinct texts, each repeated
    path = tmp_path / "d.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    first = domain_sample(f"text:{path}", 50, seed=3)
    assert len(first) == len(set(first)) == 50
    assert first == domain_sample(f"text:{path}", 50, seed=3)
    assert sorted(domain_sample(f"text:{path}", 500, seed=3)) == sorted(set(lines))
