"""Safe loading: safetensors everywhere we write weights, no unrestricted unpickling, no remote code by default."""

from __future__ import annotations

import ast
import inspect
import shutil
from pathlib import Path

import click
import pytest
import torch
from click.testing import CliRunner

from kosimcse.errors import ModelLoadError
from kosimcse.loading import resolve as loading
from test_resume import SAVE_EVERY, run, tiny, tiny_args  # noqa: F401 (fixtures)

pytestmark = pytest.mark.usefixtures("one_thread")

SRC = Path(__file__).resolve().parents[1] / "src" / "kosimcse"
# What the Trainer writes with torch.save besides the weights: resume state, all loaded by transformers with
# weights_only=True, and training_args.bin, which is written for the record and never loaded.
TRAINER_STATE_FILES = {"optimizer.pt", "scheduler.pt", "rng_state.pth", "scaler.pt", "training_args.bin"}
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


class _Result:
    def __init__(self, exit_code: int, stdout: str, stderr: str):
        self.exit_code, self.stdout, self.stderr = exit_code, stdout, stderr
        self.output = stdout + stderr


def _invoke(args) -> _Result:
    """Run the real entry point (``kosimcse ...``): errors print ``error: ...`` and exit 2."""
    from kosimcse.cli import main

    runner = CliRunner()
    with runner.isolation() as (out, err, _):
        try:
            main(list(args))
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        return _Result(code, out.getvalue().decode(), err.getvalue().decode())


def _recipe(tmp_path: Path, model) -> str:
    path = tmp_path / "recipe.yaml"
    path.write_text(f"model_name_or_path: {model}\noutput_dir: {tmp_path / 'run'}\nreport_to: []\n", encoding="utf-8")
    return str(path)


# ---- our own code never unpickles without weights_only ------------------------------------------------

def unsafe_loads(source: str, filename: str = "<src>") -> list[str]:
    """``torch.load`` calls without ``weights_only=True`` and any ``pickle``/``dill`` load, as ``file:line``."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        owner = node.func.value.id if isinstance(node.func.value, ast.Name) else ""
        if owner == "torch" and node.func.attr == "load":
            safe = any(k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                       for k in node.keywords)
            if not safe:
                found.append(f"{filename}:{node.lineno}")
        elif owner in ("pickle", "dill", "cloudpickle", "joblib") and node.func.attr in ("load", "loads"):
            found.append(f"{filename}:{node.lineno}")
    return found


def test_scanner_catches_unsafe_loads():
    bad = "import torch, pickle\ntorch.load(p)\ntorch.load(p, weights_only=False)\npickle.loads(b)\n"
    assert unsafe_loads(bad) == ["<src>:2", "<src>:3", "<src>:4"]
    assert unsafe_loads("torch.load(p, map_location='cpu', weights_only=True)\n") == []


def test_source_never_unpickles_unrestricted():
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 20
    found = [hit for f in files for hit in unsafe_loads(f.read_text(encoding="utf-8"), str(f.relative_to(SRC)))]
    assert found == []


# ---- trust_remote_code is off unless asked ---------------------------------------------------------------

def _is_click_callback(node) -> bool:
    """Click fills these parameters from options; the options' defaults are checked separately."""
    return any(isinstance(d, ast.Call) and isinstance(d.func, ast.Attribute) and d.func.attr == "option"
               for d in node.decorator_list)


def test_trust_remote_code_defaults_to_off_everywhere():
    """Every function parameter and CLI option named trust_remote_code defaults to False."""
    from kosimcse.cli import cli
    from kosimcse.training.args import ModelArguments

    params = 0
    for f in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not _is_click_callback(node):
                args = node.args
                positional = args.posonlyargs + args.args
                pairs = list(zip(positional[len(positional) - len(args.defaults):], args.defaults))
                pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
                required = [a.arg for a in positional[: len(positional) - len(args.defaults)]]
                required += [a.arg for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is None]
                assert "trust_remote_code" not in required, f"{f.name}:{node.lineno} {node.name}: no default"
                for arg, default in pairs:
                    if arg.arg == "trust_remote_code":
                        params += 1
                        assert isinstance(default, ast.Constant) and default.value is False, f"{f.name}:{node.lineno}"
    assert params >= 5
    assert ModelArguments().trust_remote_code is False and ModelArguments().allow_pickle is False
    options = 0
    for name in ("eval", "encode", "search"):  # the verbs that load a model from flags
        command = cli.get_command(None, name)
        for param in command.params:
            if param.name in ("trust_remote_code", "allow_pickle"):
                options += 1
                default = param.get_default(click.Context(command))
                assert default is False and param.is_flag, f"{name} --{param.name}: {default!r}"
    assert options >= 6  # eval, encode, search each have both
    recipes = Path(__file__).resolve().parents[1] / "recipes"
    for recipe in recipes.glob("*.yaml"):
        assert "trust_remote_code: true" not in recipe.read_text(encoding="utf-8").lower()


def test_train_warns_when_remote_code_is_on(tmp_path):
    recipe = _recipe(tmp_path, tmp_path / "absent")
    result = _invoke(["train", recipe, "--trust_remote_code"])
    assert "warning: --trust_remote_code is on" in result.stderr
    result = _invoke(["train", recipe])
    assert "trust_remote_code" not in result.stderr
    assert result.exit_code == 2 and "does not exist" in result.output


# ---- pickle-only model folders ------------------------------------------------------------------------

class _Payload:
    """Unpickling this creates a file: the observable stand-in for arbitrary code execution."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture(scope="module")
def pickled_folders(tiny, tmp_path_factory):
    from safetensors.torch import load_file

    root = tmp_path_factory.mktemp("pickled")
    honest = root / "honest"
    shutil.copytree(tiny["model"], honest)
    state = load_file(honest / "model.safetensors")
    (honest / "model.safetensors").unlink()
    torch.save(state, honest / "pytorch_model.bin")
    evil = root / "evil"
    shutil.copytree(honest, evil)
    marker = root / "payload-ran"
    torch.save({**state, "x": _Payload(marker)}, evil / "pytorch_model.bin")
    return honest, evil, marker


def test_pickle_only_folder_refused_by_resolve_model_and_eval_cli(tiny, pickled_folders):
    honest, evil, marker = pickled_folders
    with pytest.raises(ModelLoadError, match="only pickle weights.*--allow-pickle"):
        loading.resolve_model(honest)
    assert loading.resolve_model(honest, allow_pickle=True) == honest.resolve()
    # korsts-dev read from a data folder holding the 20-pair dev file keeps the allowed run cheap.
    data = honest.parent / "data"
    (data / "korsts").mkdir(parents=True, exist_ok=True)
    shutil.copy(tiny["dev"], data / "korsts" / "sts-dev.tsv")
    args = ["eval", "--model", str(honest), "--task", "korsts-dev", "--data-dir", str(data), "--fp32", "--pooling", "mean"]
    refused = _invoke(args)
    assert refused.exit_code == 2 and "error:" in refused.output and "pickle" in refused.output
    allowed = _invoke(args + ["--allow-pickle"])
    assert allowed.exit_code == 0, allowed.output
    assert "korsts-dev (20 pairs" in allowed.output
    # A malicious pickle is refused outright, and even with --allow-pickle transformers reads .bin files
    # with torch.load(weights_only=True), so the payload never runs.
    assert _invoke(["eval", "--model", str(evil), "--task", "korsts-dev", "--data-dir", str(data), "--fp32"]).exit_code == 2
    forced = _invoke(["eval", "--model", str(evil), "--task", "korsts-dev", "--data-dir", str(data), "--fp32",
                      "--allow-pickle"])
    assert forced.exit_code == 2 and "Weights only load failed" in forced.output and not marker.exists()


def test_train_refuses_a_pickle_only_model(pickled_folders, tmp_path):
    honest, _, _ = pickled_folders
    result = _invoke(["train", _recipe(tmp_path, honest)])
    assert result.exit_code == 2 and "pickle" in result.output and "allow-pickle" in result.output


# ---- what training writes -------------------------------------------------------------------------------

def test_checkpoints_and_exports_hold_safetensors_weights_only(tiny, tmp_path):
    out = tmp_path / "run"
    run(tiny_args(tiny, out, max_steps=SAVE_EVERY))
    files = [p for p in out.rglob("*") if p.is_file() and ".staging" not in p.parts]
    checkpoint_files = [p for p in files if p.parent.name.startswith("checkpoint-")]
    exported = [p for p in files if "best" in p.relative_to(out).parts]
    assert checkpoint_files and exported
    assert any(p.name == "model.safetensors" for p in checkpoint_files)
    assert (out / "best" / "model.safetensors").is_file()
    assert [p for p in exported if p.suffix in PICKLE_SUFFIXES] == []
    pickled = {p.name for p in checkpoint_files if p.suffix in PICKLE_SUFFIXES}
    assert pickled and pickled <= TRAINER_STATE_FILES, pickled - TRAINER_STATE_FILES
    # The resume state loads without unrestricted unpickling, exactly as transformers reads it: weights_only
    # with only numpy's array/dtype reconstruction allowed (the numpy RNG state is an array).
    from transformers.trainer_pt_utils import safe_globals

    for name in pickled - {"training_args.bin"}:
        with safe_globals():
            torch.load(out / f"checkpoint-{SAVE_EVERY}" / name, weights_only=True)
    assert loading.check_weights(out / f"checkpoint-{SAVE_EVERY}") == "safetensors"
    assert loading.check_weights(out / "best") == "safetensors"


def test_weights_only_refuses_the_payload(tmp_path):
    """The guarantee the above relies on, checked on this torch: weights_only=True will not run a payload."""
    marker = tmp_path / "ran"
    torch.save({"w": torch.zeros(1), "x": _Payload(marker)}, tmp_path / "evil.pt")
    with pytest.raises(Exception):
        torch.load(tmp_path / "evil.pt", weights_only=True)
    assert not marker.exists()
    assert inspect.signature(torch.load).parameters["weights_only"] is not None
