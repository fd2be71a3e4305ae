"""Non-finite losses and weights: skipped up to ``max_bad_batches``, else a clear stop; never a NaN checkpoint or export."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from kosimcse.modeling.losses import InfoNCELoss
from kosimcse.training.checkpoints import checkpoint_problem
from kosimcse.training.trainer import NonFiniteLossError
from test_resume import SAVE_EVERY, STEPS, run, tiny, tiny_args  # noqa: F401 (fixtures)

pytestmark = pytest.mark.usefixtures("one_thread")


def poison_loss(monkeypatch, bad_steps: set[int], value: float = math.nan) -> None:
    """Make the contrastive loss ``value`` at the given optimizer steps (the loss runs once per step)."""
    real = InfoNCELoss.forward
    calls = {"n": 0}

    def forward(self, *args, **kwargs):
        loss = real(self, *args, **kwargs)
        calls["n"] += 1
        return loss * value if calls["n"] in bad_steps else loss

    monkeypatch.setattr(InfoNCELoss, "forward", forward)


def _skipped_steps(out) -> list[int]:
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    return [int(r["skipped_nonfinite_batch"]) for r in records if "skipped_nonfinite_batch" in r]


@pytest.mark.parametrize("value", [math.nan, math.inf], ids=["nan", "inf"])
def test_nonfinite_loss_stops_naming_step_and_last_good_checkpoint(tiny, tmp_path, monkeypatch, value):
    out = tmp_path / "run"
    poison_loss(monkeypatch, {6}, value)
    with pytest.raises(NonFiniteLossError) as err:
        run(tiny_args(tiny, out))
    message = str(err.value)
    assert "at step 6" in message and f"checkpoint-{SAVE_EVERY}" in message and "max_bad_batches=0" in message
    assert not (out / "best").exists(), "a stopped run must not export a model"
    assert sorted(p.name for p in out.glob("checkpoint-*")) == [f"checkpoint-{SAVE_EVERY}"]
    assert checkpoint_problem(out / f"checkpoint-{SAVE_EVERY}") is None


def test_nonfinite_loss_before_any_checkpoint_says_so(tiny, tmp_path, monkeypatch):
    poison_loss(monkeypatch, {2})
    with pytest.raises(NonFiniteLossError, match="at step 2.*none saved yet"):
        run(tiny_args(tiny, tmp_path / "run"))


def test_max_bad_batches_skips_that_many_then_stops(tiny, tmp_path, monkeypatch):
    out = tmp_path / "run"
    poison_loss(monkeypatch, {3, 6})
    summary = run(tiny_args(tiny, out, max_bad_batches=2))
    assert summary["global_step"] == STEPS and _skipped_steps(out) == [3, 6]
    exported = load_file(out / "best" / "model.safetensors")
    assert all(torch.isfinite(t).all() for t in exported.values())

    monkeypatch.undo()
    out = tmp_path / "third"
    poison_loss(monkeypatch, {3, 6, 9})
    with pytest.raises(NonFiniteLossError, match="at step 9.*max_bad_batches=2"):
        run(tiny_args(tiny, out, max_bad_batches=2))
    assert _skipped_steps(out) == [3, 6] and not (out / "best").exists()


def test_skipped_batch_leaves_weights_finite_under_grad_cache(tiny, tmp_path, monkeypatch):
    """GradCache computes the loss on cached embeddings: the guard works there too."""
    out = tmp_path / "run"
    poison_loss(monkeypatch, {2})
    summary = run(tiny_args(tiny, out, max_bad_batches=1, grad_cache_chunk_size=4, max_steps=SAVE_EVERY))
    assert summary["global_step"] == SAVE_EVERY and _skipped_steps(out) == [2]
    weights = load_file(out / f"checkpoint-{SAVE_EVERY}" / "model.safetensors")
    assert all(torch.isfinite(t).all() for t in weights.values())


class _PoisonWeights:
    """A callback that writes NaN into one weight at the end of ``step`` (what an overflowing update does)."""

    def __new__(cls, step: int):
        from transformers import TrainerCallback

        class Poison(TrainerCallback):
            def on_step_end(self, args, state, control, model=None, **kwargs):
                if state.global_step == step:
                    with torch.no_grad():
                        next(model.parameters()).view(-1)[0] = float("nan")

        return Poison()


def test_nan_weights_are_never_checkpointed(tiny, tmp_path, monkeypatch):
    out = tmp_path / "run"
    values = tiny_args(tiny, out, eval_strategy="no", load_best_model_at_end=False)
    with pytest.raises(NonFiniteLossError, match=f"NaN/inf at step {2 * SAVE_EVERY}.*checkpoint-{SAVE_EVERY}"):
        run(values, callbacks=[_PoisonWeights(2 * SAVE_EVERY)], monkeypatch=monkeypatch)
    assert sorted(p.name for p in out.glob("checkpoint-*")) == [f"checkpoint-{SAVE_EVERY}"]


def test_nan_weights_are_never_exported(tiny, tmp_path, monkeypatch):
    out = tmp_path / "run"
    values = tiny_args(tiny, out, eval_strategy="no", save_strategy="no", load_best_model_at_end=False,
                       max_steps=SAVE_EVERY)
    with pytest.raises(NonFiniteLossError, match="not exporting"):
        run(values, callbacks=[_PoisonWeights(SAVE_EVERY)], monkeypatch=monkeypatch)
    assert not (out / "best").exists()
