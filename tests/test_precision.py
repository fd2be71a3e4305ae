"""Precision: bf16 only where the CPU/GPU runs it natively, an explicit choice wins, and training says what it chose."""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import make_tiny_model_dir
from kosimcse import precision as precision_module
from kosimcse.errors import KoSimCSEError
from kosimcse.precision import resolve_precision
from kosimcse.training.args import load_recipe

REPO = Path(__file__).resolve().parents[1]


def _cpu(monkeypatch, native: bool):
    monkeypatch.setattr(precision_module, "cpu_bf16_native",
                        lambda: (native, "native bf16 here" if native else "no native bf16 here"))


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_picks_bf16_only_on_a_cpu_with_native_bf16(monkeypatch, native, expected):
    _cpu(monkeypatch, native)
    chosen = resolve_precision("auto", "cpu")
    assert chosen.name == expected and chosen.reason


def test_explicit_bf16_on_a_slow_cpu_wins_with_one_warning(monkeypatch, caplog):
    _cpu(monkeypatch, False)
    precision_module._warn_once.cache_clear()
    with caplog.at_level(logging.WARNING, logger="kosimcse.precision"):
        first = resolve_precision("bf16", "cpu")
        resolve_precision("bf16", "cpu")
    assert first.name == "bf16"
    warnings = [r for r in caplog.records if "bf16 was asked for" in r.getMessage()]
    assert len(warnings) == 1 and "no native bf16 here" in warnings[0].getMessage()


def test_fp16_on_cpu_and_unknown_names_are_refused():
    with pytest.raises(ValueError, match="CUDA"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("half", "cpu")


def test_onednn_isa_cap_turns_bf16_off_on_any_cpu():
    """On an AMX machine ONEDNN_MAX_CPU_ISA=AVX2 makes bf16 emulated; on a CPU without AVX-512 it is off anyway."""
    code = "from kosimcse.precision import resolve_precision as r; p = r('auto', 'cpu'); print(p.name); print(p.reason)"
    env = dict(os.environ, ONEDNN_MAX_CPU_ISA="AVX2", PYTHONPATH=str(REPO / "src"))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    name, reason = out.strip().splitlines()
    assert name == "fp32", out
    assert "emulated" in reason


def _values(tmp_path, **extra):
    model_dir = make_tiny_model_dir(tmp_path / "tiny", hidden=32, layers=2, heads=2)
    train_file = tmp_path / "sentences.txt"
    train_file.write_text("\n".join(["한 남자가 기타를 치고 있다.", "여자가 양파를 썰고 있다.",
                                     "고양이가 소파 위에서 자고 있다.", "오늘 날씨가 정말 좋네요."] * 4), encoding="utf-8")
    return dict(model_name_or_path=str(model_dir), train_file=str(train_file), output_dir=str(tmp_path / "run"),
                pooler="avg", per_device_train_batch_size=8, max_steps=2, eval_steps=2, save_steps=2, warmup_steps=0,
                report_to=[], disable_tqdm=True, report_tasks=["korsts-dev"], seed=3, **extra)


@pytest.mark.parametrize("native, bf16", [(True, True), (False, False)])
def test_training_arguments_follow_the_rule(tmp_path, monkeypatch, native, bf16):
    _cpu(monkeypatch, native)
    _, _, targs = load_recipe(None, _values(tmp_path))
    assert (targs.bf16, targs.fp16) == (bf16, False)
    assert targs.precision == ("bf16" if bf16 else "fp32") and targs.precision_reason


def test_training_arguments_refuse_contradicting_settings(tmp_path, monkeypatch):
    _cpu(monkeypatch, True)
    with pytest.raises(KoSimCSEError, match="contradicts"):
        load_recipe(None, _values(tmp_path, precision="fp32", bf16=True))
    _, _, targs = load_recipe(None, _values(tmp_path, precision="fp32"))
    assert targs.bf16 is False and targs.precision == "fp32"


def test_tiny_train_on_a_cpu_without_fast_bf16_logs_and_records_fp32(tmp_path):
    """The acceptance run: `kosimcse train` under ONEDNN_MAX_CPU_ISA=AVX2 says fp32 and why, in the log and the files."""
    values = _values(tmp_path)
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps(values), encoding="utf-8")
    env = dict(os.environ, ONEDNN_MAX_CPU_ISA="AVX2", PYTHONPATH=str(REPO / "src"))
    proc = subprocess.run([sys.executable, "-m", "kosimcse", "train", str(recipe)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(line for line in proc.stderr.splitlines() if line.startswith("precision:"))
    assert line.startswith("precision: fp32 (") and "bf16" in line
    summary = json.loads((tmp_path / "run" / "summary.json").read_text(encoding="utf-8"))
    assert summary["precision"] == "fp32" and summary["precision_reason"]
    card = (tmp_path / "run" / "best" / "README.md").read_text(encoding="utf-8")
    assert "Trained and evaluated in fp32" in card


def test_explicit_bf16_false_turns_half_precision_off_even_where_bf16_is_native(tmp_path, monkeypatch):
    _cpu(monkeypatch, True)
    _, _, targs = load_recipe(None, _values(tmp_path, bf16=False))
    assert (targs.bf16, targs.precision) == (False, "fp32")
    with pytest.raises(KoSimCSEError, match="contradicts"):
        load_recipe(None, _values(tmp_path, precision="bf16", bf16=False))


@pytest.mark.parametrize("isa", ["AVX2", "AVX512_CORE", "AVX512_CORE_VNNI"])
def test_onednn_caps_without_bf16_instructions_mean_fp32(monkeypatch, isa):
    """oneDNN's own check passes AVX512_CORE caps, which still have no bf16 instructions."""
    monkeypatch.setattr(precision_module, "_cpu_flags", lambda: {"avx512f", "avx512_bf16", "amx_bf16"})
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", isa)
    precision_module.cpu_bf16_native.cache_clear()
    try:
        native, reason = precision_module.cpu_bf16_native()
    finally:
        precision_module.cpu_bf16_native.cache_clear()
    assert native is False and isa in reason
