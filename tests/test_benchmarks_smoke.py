"""Benchmark harness: the --smoke run writes every table into its own folder, and the lexical floor math is exact."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.common import RESULTS_DIR


def _snapshot(folder):
    return {p.name: p.stat().st_mtime_ns for p in folder.glob("*")} if folder.is_dir() else {}


def test_smoke_run_writes_tables_only_into_its_folder(tmp_path):
    from benchmarks.run import smoke

    before = _snapshot(RESULTS_DIR)
    out = smoke(tmp_path, log=lambda *_: None)
    assert _snapshot(RESULTS_DIR) == before, "the smoke run touched benchmarks/results"

    names = {p.stem for p in tmp_path.glob("*.json")}
    assert {"floors", "speed", "quality"} <= names
    for name in names:
        result = json.loads((tmp_path / f"{name}.json").read_text(encoding="utf-8"))
        assert result["command"].startswith("python -m benchmarks.run --smoke")
        assert {"nproc", "cpu", "torch", "cpu_flags", "precision_auto"} <= set(result["machine"])
        assert "markdown" not in result  # data only: benchmarks.render writes the tables

    quality = json.loads((tmp_path / "quality.json").read_text(encoding="utf-8"))
    tables = quality["data"]["tables"]
    assert set(tables) == {"korsts-test", "korsts-dev", "klue-sts-dev"}
    for task, rows in tables.items():
        floor_rows = [r for r in rows if "TF-IDF" in r or "random-init" in r]
        assert len(floor_rows) == 3, (task, list(rows))
        for row in floor_rows:
            assert len(rows[row]) == 8 and all(-100 <= v <= 100 for v in rows[row].values())
    assert sum("published, not measured here" in r for r in tables["korsts-test"]) == 5
    assert not any("published" in r for r in tables["korsts-dev"])

    speed = json.loads((tmp_path / "speed.json").read_text(encoding="utf-8"))["data"]
    for model_runs in (v for v in speed["training"].values() if isinstance(v, dict)):
        stats = model_runs["kosimcse"]
        assert stats["min"] <= stats["median"] <= stats["max"] and stats["min"] > 0
        # FLOP utilisation needs the token count of every side, sentence-transformers included.
        assert all(r["tokens"] > 0 for runs in model_runs["runs"].values() for r in runs)
    cosine = speed["encoding"]["cosine_vs_fp32"]
    assert 0.9 < cosine["min"] <= cosine["mean"] <= 1.0 + 1e-6
    # bf16 is timed only where it is native; elsewhere its rows are skipped, with the reason in the result.
    from kosimcse.precision import cpu_bf16_native

    native, _ = cpu_bf16_native()
    assert speed["precision"]["name"] == ("bf16" if native else "fp32")
    assert speed["training"]["matmul_precision"] == speed["precision"]["name"]
    assert ("SentenceTransformer bf16 autocast" in speed["encoding"]["runs"]) is native
    assert bool(speed["skipped"]) is not native

    doc = out.read_text(encoding="utf-8")
    for heading in ("## Quality", "**korsts-test**", "**klue-sts-dev**", "### Training throughput",
                    "### Encoding throughput", "| Model | Cosine Pearson |", "published, not measured here"):
        assert heading in doc, heading
    assert native or "Skipped, bf16 rows: not measured" in doc


def test_smoke_speed_never_times_bf16_where_it_is_emulated(tmp_path, monkeypatch):
    """Without native bf16 (e.g. ONEDNN_MAX_CPU_ISA=AVX2) no bf16 GEMM or bf16 encode runs: each is ~20x slower."""
    from benchmarks import speed
    from benchmarks.harness import results_dir
    from kosimcse import precision

    monkeypatch.setattr(precision, "cpu_bf16_native", lambda: (False, "no AMX or AVX512-BF16 (test)"))
    timed = []
    real_peak = speed.matmul_peak_tflops
    monkeypatch.setattr(speed, "matmul_peak_tflops", lambda p, n=2048, iters=10: timed.append(p) or real_peak(p, 64, 1))
    with results_dir(tmp_path):
        data = speed.run(smoke=True, repeats=1, train_steps=1, warmup=1, batch=4, max_length=16, encode_n=8,
                         encode_n1=2, log=lambda *_: None)
    assert set(timed) == {"fp32"}
    assert data["precision"]["name"] == "fp32"
    assert list(data["encoding"]["runs"]) == ["kosimcse fp32", "SentenceTransformer fp32"]
    assert "no AMX or AVX512-BF16 (test)" in data["skipped"]["bf16 rows"]


def test_sparse_tfidf_metrics_equal_dense_sts_metrics():
    from sklearn.feature_extraction.text import TfidfVectorizer

    from benchmarks.floors import sparse_pair_metrics
    from kosimcse.data.records import StsPair
    from kosimcse.evaluation.sts import StsEvaluator, sts_metrics

    from tests.helpers import korean_sample_texts

    # Real sentences paired at random: distinct distances, so rank ties cannot hide a difference.
    rng = np.random.default_rng(0)
    texts = korean_sample_texts(200)
    pairs = [StsPair(texts[i], texts[j], float(rng.uniform(0, 5))) for i, j in rng.integers(0, len(texts), (60, 2))]
    evaluator = StsEvaluator(pairs)
    vectors = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 3), sublinear_tf=True).fit_transform(evaluator.sentences)
    dense = vectors.toarray()
    index = {s: i for i, s in enumerate(evaluator.sentences)}
    expected = sts_metrics(dense[[index[p.sentence1] for p in pairs]], dense[[index[p.sentence2] for p in pairs]],
                           [p.score for p in pairs])
    got = sparse_pair_metrics(vectors, evaluator)
    assert got == pytest.approx(expected, abs=1e-9)


def test_ratio_stats_are_per_repeat_ratios():
    from benchmarks.speed import ratio_stats

    stats = ratio_stats([10.0, 30.0, 20.0], [5.0, 10.0, 20.0])
    assert stats["ratios"] == [2.0, 3.0, 1.0]
    assert (stats["min"], stats["median"], stats["max"]) == (1.0, 2.0, 3.0)
