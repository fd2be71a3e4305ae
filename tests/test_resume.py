"""Resume equality: a run stopped right after its step-k checkpoint and resumed ends bit-identical to one that never stopped."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from helpers import korean_sample_texts, make_tiny_model_dir

STEPS, SAVE_EVERY, BATCH = 12, 4, 8


def write_tiny_corpus(root: Path) -> dict:
    """A tiny model, a 200-line training file and a 20-pair KorSTS-format dev file (cheap evaluation)."""
    root.mkdir(parents=True, exist_ok=True)
    texts = korean_sample_texts(400)
    model = make_tiny_model_dir(root / "model", vocab_texts=texts)
    train_file = root / "train.txt"
    train_file.write_text("\n".join(texts[:200]) + "\n", encoding="utf-8")
    rows = ["genre\tfilename\tyear\tid\tscore\tsentence1\tsentence2"]
    rows += [f"main-captions\tMSRvid\t2012test\t{i:04d}\t{i % 6:.1f}\t{texts[i]}\t{texts[i + 20]}" for i in range(20)]
    dev = root / "dev.tsv"
    dev.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return {"model": model, "train_file": train_file, "dev": dev}


def tiny_args(files: dict, output_dir: Path, **extra) -> dict:
    """Recipe values for a deterministic fp32 CPU run of ``STEPS`` steps, checkpointing every ``SAVE_EVERY``."""
    values = dict(model_name_or_path=str(files["model"]), train_file=str(files["train_file"]), eval_task="tiny-dev",
                  report_tasks=["tiny-dev"], output_dir=str(output_dir), max_steps=STEPS,
                  per_device_train_batch_size=BATCH, save_steps=SAVE_EVERY, eval_steps=SAVE_EVERY, logging_steps=1,
                  report_to=[], use_cpu=True, bf16=False, seed=7, data_seed=7, full_determinism=True,
                  save_total_limit=None, dataloader_num_workers=0, max_length=16, learning_rate=1e-3)
    values.update(extra)
    return values


class StopAfterSave(TrainerCallback):
    """Stop training right after the checkpoint of ``step`` is written: an orderly interruption."""

    def __init__(self, step: int):
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True
        return control


def run(values: dict, resume=None, callbacks=(), monkeypatch=None) -> dict:
    from kosimcse.training import run as run_module
    from kosimcse.training.args import load_recipe

    if callbacks:
        base = run_module.SimCSETrainer

        class WithCallbacks(base):
            def __init__(self, *a, **kw):
                super().__init__(*a, **kw)
                for cb in callbacks:
                    self.add_callback(cb)

        monkeypatch.setattr(run_module, "SimCSETrainer", WithCallbacks)
    margs, dargs, targs = load_recipe(None, values)
    try:
        return run_module.train(margs, dargs, targs, resume_from_checkpoint=resume)
    finally:
        if callbacks:
            monkeypatch.setattr(run_module, "SimCSETrainer", base)


def assert_same_state(dir_a: Path, dir_b: Path) -> None:
    """Model weights and optimizer state of two checkpoint folders are bit-identical."""
    wa, wb = load_file(dir_a / "model.safetensors"), load_file(dir_b / "model.safetensors")
    assert wa.keys() == wb.keys()
    differing = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not differing, f"weights differ in {len(differing)} tensors, e.g. {differing[:3]}"
    oa = torch.load(dir_a / "optimizer.pt", weights_only=True)
    ob = torch.load(dir_b / "optimizer.pt", weights_only=True)
    assert oa["state"].keys() == ob["state"].keys() and oa["state"]
    for key in oa["state"]:
        for name, value in oa["state"][key].items():
            assert torch.equal(value, ob["state"][key][name]), f"optimizer state {key}/{name} differs"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from kosimcse.data.tasks import register_sts_task

    files = write_tiny_corpus(tmp_path_factory.mktemp("tiny"))
    register_sts_task("tiny-dev", files["dev"])
    return files


@pytest.fixture(scope="module")
def uninterrupted(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("straight") / "run"
    summary = run(tiny_args(tiny, out))
    return out, summary


def test_stopped_and_resumed_run_equals_uninterrupted(tiny, uninterrupted, tmp_path, monkeypatch):
    straight, straight_summary = uninterrupted
    out = tmp_path / "run"
    first = run(tiny_args(tiny, out), callbacks=[StopAfterSave(8)], monkeypatch=monkeypatch)
    assert first["global_step"] == 8 and not (out / f"checkpoint-{STEPS}").exists()
    second = run(tiny_args(tiny, out), resume=True)
    assert second["global_step"] == STEPS
    assert_same_state(straight / f"checkpoint-{STEPS}", out / f"checkpoint-{STEPS}")
    # Model selection after resuming sees the same dev scores, so it picks the same best checkpoint.
    assert second["best_metric"] == straight_summary["best_metric"]
    assert Path(second["best_checkpoint"]).name == Path(straight_summary["best_checkpoint"]).name
    exported_a, exported_b = load_file(straight / "best" / "model.safetensors"), load_file(out / "best" / "model.safetensors")
    assert all(torch.equal(exported_a[k], exported_b[k]) for k in exported_a)


def test_changed_seed_changes_weights(tiny, uninterrupted, tmp_path):
    """The equality above is not vacuous: a different seed (data order, dropout) gives different weights."""
    straight, _ = uninterrupted
    out = tmp_path / "run"
    run(tiny_args(tiny, out, seed=8, data_seed=8, max_steps=SAVE_EVERY))
    a = load_file(straight / f"checkpoint-{SAVE_EVERY}" / "model.safetensors")
    b = load_file(out / f"checkpoint-{SAVE_EVERY}" / "model.safetensors")
    assert any(not torch.equal(a[k], b[k]) for k in a)


# ---- checkpoint integrity ---------------------------------------------------------------------------

def _copy_checkpoints(src: Path, dst: Path, steps) -> None:
    import shutil

    dst.mkdir(parents=True)
    for step in steps:
        shutil.copytree(src / f"checkpoint-{step}", dst / f"checkpoint-{step}")


def test_saved_checkpoints_pass_the_integrity_check_and_damage_is_named(uninterrupted, tmp_path):
    from kosimcse.training.checkpoints import MANIFEST, checkpoint_problem

    straight, _ = uninterrupted
    for step in range(SAVE_EVERY, STEPS + 1, SAVE_EVERY):
        assert checkpoint_problem(straight / f"checkpoint-{step}") is None
        assert (straight / f"checkpoint-{step}" / MANIFEST).is_file()
    assert not any(straight.glob(".staging/checkpoint-*")), "staged folders are renamed away"

    def damaged(how) -> str:
        folder = tmp_path / f"c{len(list(tmp_path.iterdir()))}"
        _copy_checkpoints(straight, folder, [SAVE_EVERY])
        ckpt = folder / f"checkpoint-{SAVE_EVERY}"
        how(ckpt)
        problem = checkpoint_problem(ckpt)
        assert problem, "damage went unnoticed"
        return problem

    def truncate(name, keep):
        def go(ckpt):
            path = ckpt / name
            path.write_bytes(path.read_bytes()[:keep])
        return go

    assert "model.safetensors" in damaged(truncate("model.safetensors", 1000))
    assert "optimizer.pt" in damaged(lambda c: (c / "optimizer.pt").unlink())
    assert "trainer_state.json" in damaged(truncate("trainer_state.json", 50))
    # Without the manifest the file formats alone still give truncation away.
    for name in ("model.safetensors", "optimizer.pt", "rng_state.pth", "trainer_state.json"):
        def cut(ckpt, name=name):
            (ckpt / MANIFEST).unlink()
            truncate(name, 200)(ckpt)
        assert name in damaged(cut)


def test_resume_skips_a_truncated_newest_checkpoint(tiny, uninterrupted, tmp_path, caplog):
    straight, _ = uninterrupted
    out = tmp_path / "run"
    _copy_checkpoints(straight, out, [SAVE_EVERY, 2 * SAVE_EVERY])
    weights = out / f"checkpoint-{2 * SAVE_EVERY}" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with caplog.at_level("WARNING"):
        summary = run(tiny_args(tiny, out), resume=True)
    skipped = [r.getMessage() for r in caplog.records if "skipping damaged checkpoint" in r.getMessage()]
    assert len(skipped) == 1 and f"checkpoint-{2 * SAVE_EVERY}" in skipped[0] and "model.safetensors" in skipped[0]
    assert summary["global_step"] == STEPS
    # Resumed from checkpoint-4, it redoes steps 5-12 and lands exactly where the uninterrupted run did.
    assert_same_state(straight / f"checkpoint-{STEPS}", out / f"checkpoint-{STEPS}")


def test_explicit_damaged_checkpoint_is_refused(uninterrupted, tmp_path):
    from kosimcse.errors import KoSimCSEError
    from kosimcse.training.checkpoints import resume_checkpoint

    straight, _ = uninterrupted
    _copy_checkpoints(straight, tmp_path / "run", [SAVE_EVERY])
    ckpt = tmp_path / "run" / f"checkpoint-{SAVE_EVERY}"
    (ckpt / "trainer_state.json").unlink()
    with pytest.raises(KoSimCSEError, match="trainer_state.json is missing"):
        resume_checkpoint(str(ckpt), str(tmp_path / "run"))
    assert resume_checkpoint(True, str(tmp_path / "run")) is None  # nothing intact: start afresh


def test_crash_while_saving_leaves_no_checkpoint_folder(tiny, uninterrupted, tmp_path, monkeypatch):
    """Killed half-way through writing checkpoint-8, the run shows only checkpoint-4, and resumes from it exactly."""
    from kosimcse.training.trainer import SimCSETrainer

    straight, _ = uninterrupted
    out = tmp_path / "run"
    real = SimCSETrainer._save_rng_state

    def crash_at_8(self, output_dir):
        if self.state.global_step == 2 * SAVE_EVERY:
            raise KeyboardInterrupt("simulated kill while saving")
        return real(self, output_dir)

    monkeypatch.setattr(SimCSETrainer, "_save_rng_state", crash_at_8)
    with pytest.raises(KeyboardInterrupt):
        run(tiny_args(tiny, out))
    monkeypatch.setattr(SimCSETrainer, "_save_rng_state", real)
    assert sorted(p.name for p in out.glob("checkpoint-*")) == [f"checkpoint-{SAVE_EVERY}"]
    # The half-written one exists only in the staging folder (its model and optimizer were written).
    assert (out / ".staging" / f"checkpoint-{2 * SAVE_EVERY}" / "model.safetensors").is_file()
    summary = run(tiny_args(tiny, out), resume=True)
    assert summary["global_step"] == STEPS
    assert_same_state(straight / f"checkpoint-{STEPS}", out / f"checkpoint-{STEPS}")


def test_bf16_autocast_on_cpu_repeats_and_resumes_bit_exact(tiny, tmp_path, monkeypatch):
    """Measured for RELIABILITY.md: CPU bf16 autocast is as deterministic as fp32 (same seed -> same bits)."""
    first, second, resumed = tmp_path / "a", tmp_path / "b", tmp_path / "r"
    run(tiny_args(tiny, first, bf16=True))
    run(tiny_args(tiny, second, bf16=True))
    run(tiny_args(tiny, resumed, bf16=True), callbacks=[StopAfterSave(SAVE_EVERY)], monkeypatch=monkeypatch)
    run(tiny_args(tiny, resumed, bf16=True), resume=True)
    assert_same_state(first / f"checkpoint-{STEPS}", second / f"checkpoint-{STEPS}")
    assert_same_state(first / f"checkpoint-{STEPS}", resumed / f"checkpoint-{STEPS}")


def test_best_checkpoint_is_tracked_through_staging(uninterrupted):
    """Checkpoints are written under .staging and renamed; the best-model bookkeeping must point at the final folders."""
    import json

    straight, summary = uninterrupted
    records = [json.loads(line) for line in (straight / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    dev = [(r["step"], r["eval_cosine_spearman"]) for r in records if "eval_cosine_spearman" in r]
    best_step = max(dev, key=lambda sd: sd[1])[0]  # first of equal maxima, like the Trainer's strict '>'
    assert summary["best_checkpoint"] == str(straight / f"checkpoint-{best_step}")
    for step in range(SAVE_EVERY, STEPS + 1, SAVE_EVERY):
        state = json.loads((straight / f"checkpoint-{step}" / "trainer_state.json").read_text(encoding="utf-8"))
        assert ".staging" not in str(state["best_model_checkpoint"])
    # load_best_model_at_end: the exported encoder is the best checkpoint's.
    best = load_file(straight / f"checkpoint-{best_step}" / "model.safetensors")
    exported = load_file(straight / "best" / "model.safetensors")
    assert all(torch.equal(best["encoder." + k], v) for k, v in exported.items())
