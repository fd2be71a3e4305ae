"""Kill -9 and resume: ``kosimcse train`` SIGKILLed at random moments, resumed with ``--resume``, ends bit-identical."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from test_resume import assert_same_state, write_tiny_corpus

# STEPS leaves room past the last kill target: on a fast CI box a step takes a few ms, and the run must
# still be unfinished when the third kill lands.
STEPS, SAVE_EVERY, KILLS = 30, 2, 3


def recipe(files: dict, output_dir: Path) -> dict:
    # Model selection needs an STS task registered in the child process; with evaluation off the run
    # still exercises model, optimizer, scheduler, RNG and data-position state, which is what resuming restores.
    return dict(model_name_or_path=str(files["model"]), train_file=str(files["train_file"]), output_dir=str(output_dir),
                max_steps=STEPS, per_device_train_batch_size=8, save_steps=SAVE_EVERY, logging_steps=1,
                eval_strategy="no", load_best_model_at_end=False, report_tasks=[], report_to=[], use_cpu=True,
                bf16=False, seed=11, data_seed=11, full_determinism=True, save_total_limit=2,
                dataloader_num_workers=0, max_length=16, learning_rate=1e-3)


def _cmd(recipe_path: Path, resume: bool) -> list[str]:
    return [sys.executable, "-m", "kosimcse", "train", str(recipe_path)] + (["--resume"] if resume else [])


def _env() -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("PYTEST_CURRENT_TEST", None)
    return env


def _newest_checkpoint(out: Path) -> int:
    steps = [int(m.group(1)) for p in out.glob("checkpoint-*") if (m := re.fullmatch(r"checkpoint-(\d+)", p.name))]
    return max(steps, default=0)


def _last_logged_step(out: Path) -> int:
    path = out / "metrics.jsonl"
    if not path.is_file():
        return 0
    steps = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            steps.append(json.loads(line)["step"])
        except (ValueError, KeyError):
            pass  # a line being written
    return steps[-1] if steps else 0


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_is_bit_exact(tmp_path):
    files = write_tiny_corpus(tmp_path / "data")
    rng = random.Random(int(os.environ.get("KOSIMCSE_KILL_SEED", "0")) or None)

    straight = tmp_path / "straight"
    straight_recipe = tmp_path / "straight.json"
    straight_recipe.write_text(json.dumps(recipe(files, straight)), encoding="utf-8")
    subprocess.run(_cmd(straight_recipe, False), env=_env(), check=True, timeout=600, capture_output=True)

    out = tmp_path / "killed"
    killed_recipe = tmp_path / "killed.json"
    killed_recipe.write_text(json.dumps(recipe(files, out)), encoding="utf-8")
    # Kill points: after 3 different checkpoints, each followed by 0-1 more steps and up to 0.15 s, so
    # kills land right after a save, mid-step, or mid-save of the next one. The delay is cut short once the
    # run logs the step of the next checkpoint: on a fast machine 0.15 s is many steps, and a kill in
    # wall-clock time alone once let the run finish before it (CI, assert 20 < 20).
    targets = sorted(rng.sample(range(SAVE_EVERY, 14, SAVE_EVERY), KILLS))
    kills, kill_points = 0, []
    for target in targets:
        target = max(target, _newest_checkpoint(out) + SAVE_EVERY)
        extra_steps, delay = rng.randrange(SAVE_EVERY), rng.uniform(0.0, 0.15)
        proc = subprocess.Popen(_cmd(killed_recipe, kills > 0), env=_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        deadline = time.time() + 300
        while ((_newest_checkpoint(out) < target or _last_logged_step(out) < target + extra_steps)
               and proc.poll() is None and time.time() < deadline):
            time.sleep(0.002)
        kill_at, step_limit = time.time() + delay, target + extra_steps + SAVE_EVERY
        while time.time() < kill_at and _last_logged_step(out) < step_limit and proc.poll() is None:
            time.sleep(0.002)
        if proc.poll() is not None:
            pytest.fail(f"run ended before the kill (rc {proc.returncode}): {proc.stderr.read().decode()[-2000:]}")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        kills += 1
        kill_points.append(_last_logged_step(out))
        assert _newest_checkpoint(out) < STEPS
    done = subprocess.run(_cmd(killed_recipe, True), env=_env(), timeout=600, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    print(f"kills survived: {kills} (last logged step at each kill: {kill_points})")

    assert_same_state(straight / f"checkpoint-{STEPS}", out / f"checkpoint-{STEPS}")
    a, b = load_file(straight / "best" / "model.safetensors"), load_file(out / "best" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
