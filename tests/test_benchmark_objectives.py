"""The objectives harness: stage settings follow the command line, and runs at different budgets never share a folder."""

from __future__ import annotations

from argparse import Namespace
from pathlib import Path

from benchmarks.objectives import _budget_suffix, stage_settings


def _args(**overrides) -> Namespace:
    return Namespace(**{"steps": 100, "sts_steps": 400, "sts_lr": 2e-5, "warmup": 0.0, **overrides})


def test_sts_stage_takes_its_learning_rate_and_warmup_from_the_command_line():
    settings = stage_settings("sts", {"loss": "cosent"}, 1200, 32, 42, Path("data"), smoke=False, evals=6,
                              sts_lr=5e-5, warmup=0.1)
    assert settings["learning_rate"] == 5e-5 and settings["warmup_steps"] == 0.1
    assert settings["max_steps"] == 1200 and settings["eval_steps"] == settings["save_steps"] == 200
    assert settings["report_tasks"] == ["korsts-dev", "korsts-test", "klue-sts-dev"]
    nli = stage_settings("sup", {}, 100, 32, 42, Path("data"), smoke=False, last_stage=False, sts_lr=5e-5)
    assert nli["learning_rate"] == 2e-5 and nli["report_tasks"] == ["korsts-dev"]  # test is reported once, at the end


def test_stage_folders_differ_by_budget_so_reuse_cannot_take_another_runs_export():
    usual = _args()
    assert _budget_suffix("sts", 400, usual) == "" and _budget_suffix("sup", 100, usual) == ""
    longer = _args(sts_steps=1200, sts_lr=5e-5, warmup=0.1)
    assert _budget_suffix("sts", 1200, longer) == "-1200-lr5e-05-w0.1"
    # A different STS learning rate alone must still change the folder.
    assert _budget_suffix("sts", 400, _args(sts_lr=5e-5)) != _budget_suffix("sts", 400, usual)
    # The NLI stage at its usual budget is shared by rows that differ only in their STS stage.
    assert _budget_suffix("sup", 100, longer) == "-100-w0.1"
    assert _budget_suffix("sup", 100, _args(sts_lr=5e-5)) == ""


def test_mini_start_trains_everything_at_its_own_learning_rates():
    mini = stage_settings("sts", {"loss": "angle"}, 400, 32, 43, Path("data"), smoke=False, start="mini")
    e5 = stage_settings("sts", {"loss": "angle"}, 400, 32, 43, Path("data"), smoke=False)
    assert mini["model_name_or_path"] != e5["model_name_or_path"] == "e5-small-airgap"
    assert mini["freeze_embeddings"] is False and e5["freeze_embeddings"] is True
    assert (mini["prefix"], e5["prefix"]) == ("", "query: ")
    assert (mini["learning_rate"], e5["learning_rate"]) == (1e-4, 2e-5)
    assert mini["loss"] == e5["loss"] == "angle"
    # --sts_lr still overrides the start's rate, and only the STS stage.
    assert stage_settings("sts", {}, 400, 32, 43, Path("data"), smoke=False, start="mini", sts_lr=3e-5)["learning_rate"] == 3e-5
    assert stage_settings("sup", {}, 100, 32, 43, Path("data"), smoke=False, start="mini", sts_lr=3e-5)["learning_rate"] == 1e-4
    # The start's own STS rate is its default: no folder suffix; another rate gets one.
    assert _budget_suffix("sts", 400, _args(start="mini", sts_lr=None)) == ""
    assert _budget_suffix("sts", 400, _args(start="mini", sts_lr=2e-5)) == "-400-lr2e-05"


def test_mini_start_without_its_pretrained_folder_says_how_to_build_it(tmp_path, monkeypatch):
    import pytest

    import benchmarks.objectives as harness

    monkeypatch.setattr(harness, "MINI_DIR", tmp_path / "absent")
    with pytest.raises(SystemExit, match="benchmarks.scratch_row"):
        harness.main(["--start", "mini", "--smoke"])


def test_multitask_stages_chain_through_kosimcse_stage_expansion(tmp_path, monkeypatch):
    """Stage 2 starts from stage 1's exported best model, in its own folder, without re-evaluating the start."""
    import benchmarks.objectives as harness
    from kosimcse.training import args as training_args
    from kosimcse.training import run

    calls = []

    def fake_train(settings):
        calls.append(settings)
        return {"results": {"korsts-dev": {"cosine_spearman": 80.0}}, "kept_initial_model": False,
                "best_checkpoint": "checkpoint-2", "precision": "fp32"}

    monkeypatch.setattr(harness, "RUNS", tmp_path)
    monkeypatch.setattr(training_args, "load_recipe", lambda path, settings: (settings,))
    monkeypatch.setattr(run, "train", fake_train)
    out = harness.run_objective("multitask_cosent", 42, _args(batch=8, smoke=False, evals=2, start="e5", reuse=False,
                                                              no_eval_on_start=False), Path("data"))
    first, second = calls
    assert (first["objective"], second["objective"]) == ("sup", "sts")
    assert first["output_dir"] == str(tmp_path / "multitask_cosent-s42" / "stage1-sup")
    assert second["model_name_or_path"] == str(Path(first["output_dir"]) / run.BEST_DIR)
    assert first["eval_on_start"] is True and second["eval_on_start"] is False
    assert first["precision"] == second["precision"] == "auto"
    assert out["precision"] == "fp32" and out["best_checkpoint"] == "checkpoint-2"
