"""Model selection counts the starting model: a run that only makes dev worse exports the weights it started from."""

import json

import pytest
import torch
from safetensors.torch import load_file

from helpers import make_tiny_model_dir
from kosimcse.training.args import load_recipe
from kosimcse.training.run import train

SENTENCES = ["한 남자가 기타를 치고 있다.", "여자가 양파를 썰고 있다.", "고양이가 소파 위에서 자고 있다.",
             "오늘 날씨가 정말 좋네요.", "아이들이 공원에서 뛰어 놀고 있다.", "그 영화는 생각보다 재미있었다.",
             "비행기가 이륙하고 있다.", "한 여자가 피아노를 연주한다."] * 4


def run(tmp_path, name, lr, resume=None, **extra):
    model_dir = make_tiny_model_dir(tmp_path / "tiny", hidden=32, layers=2, heads=2)
    train_file = tmp_path / "sentences.txt"
    train_file.write_text("\n".join(SENTENCES), encoding="utf-8")
    margs, dargs, targs = load_recipe(None, dict(
        model_name_or_path=str(model_dir), train_file=str(train_file), output_dir=str(tmp_path / name), pooler="avg",
        learning_rate=lr, per_device_train_batch_size=8, max_steps=4, eval_steps=2, save_steps=2, warmup_steps=0,
        eval_on_start=True, report_to=[], disable_tqdm=True, report_tasks=["korsts-dev"], seed=3, max_grad_norm=0.0) | extra)
    return model_dir, train(margs, dargs, targs, resume_from_checkpoint=resume)


@pytest.mark.parametrize("metric", ["eval_cosine_spearman", "cosine_spearman"])  # the Trainer takes both spellings
def test_a_run_that_hurts_dev_keeps_the_starting_weights(tmp_path, metric):
    model_dir, summary = run(tmp_path, "hurt", lr=5.0, metric_for_best_model=metric)  # a step size that wrecks it
    assert summary["kept_initial_model"] is True
    assert summary["best_checkpoint"] is None and summary["best_metric"] == summary["start_metric"]
    start = load_file(str(model_dir / "model.safetensors"))
    exported = load_file(str(tmp_path / "hurt" / "best" / "model.safetensors"))
    for name, tensor in start.items():
        assert torch.equal(exported[name], tensor), name
    assert abs(summary["results"]["korsts-dev"]["cosine_spearman"] - summary["start_metric"]) < 1e-6


def test_selection_score_prefers_the_latest_checkpoint_within_tolerance():
    from kosimcse.training.trainer import selection_score

    start = selection_score(80.0, 80.0, 0.5, 0)
    early_better = selection_score(81.0, 80.0, 0.5, 10)
    late_within = selection_score(79.6, 80.0, 0.5, 40)
    late_outside = selection_score(79.4, 80.0, 0.5, 60)
    assert late_within > early_better > start > late_outside


def test_a_resumed_merge_with_distillation_takes_the_start_from_the_teacher_not_a_rebuild(tmp_path, monkeypatch):
    import kosimcse.training.run as run_module

    settings = dict(lr=5.0, selection_tolerance=1000.0, start_weight=0.25, distill_weight=1.0)
    model_dir, _ = run(tmp_path, "merged", **settings)
    built = []
    real_build = run_module.build_model
    monkeypatch.setattr(run_module, "build_model", lambda *a, **k: built.append(a) or real_build(*a, **k))
    run(tmp_path, "merged", resume=str(tmp_path / "merged" / "checkpoint-2"), **settings)
    assert len(built) == 1  # the training model only: the merge read the teacher's frozen start
    start = load_file(str(model_dir / "model.safetensors"))
    chosen = load_file(str(tmp_path / "merged" / "checkpoint-4" / "model.safetensors"))
    exported = load_file(str(tmp_path / "merged" / "best" / "model.safetensors"))
    for name, tensor in exported.items():
        if tensor.is_floating_point():
            torch.testing.assert_close(tensor, 0.75 * chosen["encoder." + name] + 0.25 * start[name])


def test_selection_tolerance_exports_the_most_trained_checkpoint_within_it(tmp_path):
    # A huge tolerance admits every checkpoint: the last one (step 4) must be the export, weights and all.
    _, summary = run(tmp_path, "tolerant", lr=5.0, selection_tolerance=1000.0)
    assert summary["kept_initial_model"] is False
    assert summary["best_checkpoint"].endswith("checkpoint-4")
    chosen = load_file(str(tmp_path / "tolerant" / "checkpoint-4" / "model.safetensors"))
    exported = load_file(str(tmp_path / "tolerant" / "best" / "model.safetensors"))
    for name, tensor in exported.items():
        assert torch.equal(chosen["encoder." + name], tensor), name
    records = [json.loads(line) for line in (tmp_path / "tolerant" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "eval_selection_score" in r] == [0, 2, 4]


def test_a_resumed_tolerant_run_reads_the_start_score_from_its_checkpoint(tmp_path):
    """Resumed, the run no longer evaluates the start itself; its checkpoint's log history holds that score."""
    _, first = run(tmp_path, "tolerant", lr=5.0, selection_tolerance=1000.0)
    _, again = run(tmp_path, "tolerant", lr=5.0, selection_tolerance=1000.0,
                   resume=str(tmp_path / "tolerant" / "checkpoint-2"))
    assert again["best_checkpoint"].endswith("checkpoint-4") and again["best_metric"] == first["best_metric"]


def test_selection_tolerance_still_keeps_the_start_when_every_checkpoint_falls_below_it(tmp_path):
    _, summary = run(tmp_path, "strict", lr=5.0, selection_tolerance=1e-6)
    assert summary["kept_initial_model"] is True
    assert abs(summary["results"]["korsts-dev"]["cosine_spearman"] - summary["start_dev"]) < 1e-6


def test_a_corpus_smaller_than_one_batch_is_refused_instead_of_training_zero_steps(tmp_path):
    import pytest

    from kosimcse.errors import KoSimCSEError

    with pytest.raises(KoSimCSEError, match="fill no batch of 64"):
        run(tmp_path, "tiny-corpus", lr=1e-4, per_device_train_batch_size=64)


def test_start_weight_exports_the_chosen_checkpoint_moved_back_to_the_start_also_when_resumed(tmp_path):
    model_dir, summary = run(tmp_path, "merged", lr=5.0, selection_tolerance=1000.0, start_weight=0.25)
    assert summary["best_checkpoint"].endswith("checkpoint-4") and summary["start_weight"] == 0.25
    start = load_file(str(model_dir / "model.safetensors"))
    for again in (False, True):
        if again:  # resumed, the run has no start in memory: it is rebuilt from model_name_or_path
            run(tmp_path, "merged", lr=5.0, selection_tolerance=1000.0, start_weight=0.25,
                resume=str(tmp_path / "merged" / "checkpoint-2"))
        chosen = load_file(str(tmp_path / "merged" / "checkpoint-4" / "model.safetensors"))
        exported = load_file(str(tmp_path / "merged" / "best" / "model.safetensors"))
        assert exported.keys() == start.keys()
        for name, tensor in exported.items():
            if tensor.is_floating_point():
                torch.testing.assert_close(tensor, 0.75 * chosen["encoder." + name] + 0.25 * start[name])
