"""The from-scratch row's plumbing on a tiny budget: tokenizer + MLM, a loadable HF folder, SimCSE, and rows
that benchmarks.quality reads, without writing anything under benchmarks/results."""

from __future__ import annotations

import json
import math

import pytest

from benchmarks.common import RESULTS_DIR

from tests.helpers import korean_sample_texts

TINY = dict(vocab_size=600, hidden=32, layers=2, heads=2, intermediate=64, max_position=64)


def _snapshot(folder):
    return {p.name: p.stat().st_mtime_ns for p in folder.glob("*")} if folder.is_dir() else {}


@pytest.fixture
def scratch_tasks(monkeypatch):
    """Sampled STS tasks registered for this test only (the registry is restored afterwards)."""
    from kosimcse.data import tasks

    from benchmarks.scratch_row import TASKS, sampled_tasks

    monkeypatch.setattr(tasks, "_TASKS", dict(tasks._TASKS))
    yield sampled_tasks(TASKS, 40)
    tasks._load_cached.cache_clear()


def test_scratch_row_plumbing_on_a_tiny_budget(tmp_path, one_thread, scratch_tasks):
    import torch
    from transformers import AutoModel, AutoTokenizer

    from benchmarks.quality import collect
    from benchmarks.render import section
    from benchmarks.scratch_row import TASKS, MiniBert, rows, run_row

    sentences = korean_sample_texts(400)
    train_file = tmp_path / "sentences.txt"
    train_file.write_text("\n".join(sentences) + "\n", encoding="utf-8")
    size = MiniBert(**TINY)
    before = _snapshot(RESULTS_DIR)

    out = run_row(train_file, tmp_path / "runs", size=size, mlm_steps=3, simcse_steps=2, batch_size=8,
                  tasks=scratch_tasks, heldout=40, log=lambda *_: None)

    mlm = out["mlm"]
    assert mlm["global_step"] == 3 and math.isfinite(mlm["train_loss"])
    # A random-init MLM head predicts nearly uniformly: the held-out loss starts near ln(vocab).
    assert abs(mlm["heldout_loss_before"] - math.log(mlm["vocab_size"])) < 1.0
    assert math.isfinite(mlm["heldout_loss_after"]) and mlm["heldout_sentences"] == 40

    # The MLM folder is a plain HF checkpoint: AutoTokenizer splits Korean into known pieces, AutoModel encodes.
    tokenizer = AutoTokenizer.from_pretrained(mlm["folder"])
    model = AutoModel.from_pretrained(mlm["folder"])
    assert model.config.hidden_size == 32 and model.config.num_hidden_layers == 2
    batch = tokenizer([sentences[0]], return_tensors="pt")
    ids = batch["input_ids"][0].tolist()
    assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
    assert tokenizer.unk_token_id not in ids[1:-1]
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    assert hidden.shape == (1, len(ids), 32) and torch.isfinite(hidden).all()

    for results in (out["mlm_results"], out["mlm_results_cls"], out["simcse"]["results"]):
        assert set(results) == set(scratch_tasks)
        for metrics in results.values():
            assert len(metrics) == 8
            assert all(math.isfinite(v) and -100 <= v <= 100 for v in metrics.values()), metrics
    assert out["simcse"]["global_step"] == 2 and (tmp_path / "runs" / "simcse" / "best").is_dir()

    # The two rows have the shape benchmarks.quality collects (row_name, results, budget).
    made = rows(out, size, total_s=60.0)
    assert [name for name, *_ in made] == ["train_scratch_mini_mlm", "train_scratch_mini"]
    (tmp_path / "results").mkdir()
    for name, title, data in made:
        assert data["budget"].startswith("MLM 3 steps x 8") and "CPU cores" in data["budget"]
        assert data["row_name"] in section({"name": name, "title": title, "data": data})
        # Back to the real task names, which are the ones the quality table lists.
        data = dict(data, results={task.rsplit("-sample", 1)[0]: m for task, m in data["results"].items()})
        (tmp_path / "results" / f"{name}.json").write_text(
            json.dumps({"command": "python -m benchmarks.scratch_row", "title": title, "data": data}), encoding="utf-8")
    assert "SimCSE 2 steps x 8" in made[1][2]["budget"]
    tables, sources = collect(tmp_path / "results")
    for _, _, data in made:
        assert sources[data["row_name"]].startswith(f"trained ({data['budget']})")
        assert all(len(tables[task][data["row_name"]]) == 8 for task in TASKS)
    assert _snapshot(RESULTS_DIR) == before, "the scratch row touched benchmarks/results"
