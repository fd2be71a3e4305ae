"""Command-line overrides are read by the type of the field they set, through one parser for every way to train."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from kosimcse.errors import KoSimCSEError
from kosimcse.training.args import load_recipe, parse_overrides

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.mark.parametrize("tokens, expected", [
    (["--prefix", "query: "], {"prefix": "query: "}),  # YAML would read this as the mapping {"query": None}
    (["--prefix=query: "], {"prefix": "query: "}),
    (["--output-dir=runs/my-run"], {"output_dir": "runs/my-run"}),  # only the key's dashes become underscores
    (["--prefix", "true"], {"prefix": "true"}),  # a string field takes the word as typed
    (["--prompt_template", "[X] 는 [MASK] 뜻이다: "], {"prompt_template": "[X] 는 [MASK] 뜻이다: "}),
    (["--bf16"], {"bf16": True}),
    (["--bf16", "no", "--mlp_only_train", "1", "--freeze_embeddings", "False"],
     {"bf16": False, "mlp_only_train": True, "freeze_embeddings": False}),
    (["--learning_rate", "3e-5", "--max_steps", "100", "--warmup_steps", "0.1"],
     {"learning_rate": 3e-5, "max_steps": 100, "warmup_steps": 0.1}),
    (["--report_tasks", "korsts-dev", "klue-sts-dev"], {"report_tasks": ["korsts-dev", "klue-sts-dev"]}),
    (["--report_tasks", '["korsts-dev", "klue-sts-dev"]'], {"report_tasks": ["korsts-dev", "klue-sts-dev"]}),
    (["--sts_files", "a.tsv"], {"sts_files": ["a.tsv"]}),
    (["--save_total_limit", "none", "--max_train_sentences", "null", "--train_file", "None"],
     {"save_total_limit": None, "max_train_sentences": None, "train_file": None}),
    (["--lr_scheduler_type", "cosine"], {"lr_scheduler_type": "cosine"}),
    # --STAGE.key is typed by the field after the dot
    (["--nli.max_steps", "100", "--sts.prefix", "query: ", "--sts.bf16", "false"],
     {"nli.max_steps": 100, "sts.prefix": "query: ", "sts.bf16": False}),
])
def test_values_are_read_by_the_field_type(tokens, expected):
    out = parse_overrides(tokens)
    assert out == expected
    assert all(type(out[k]) is type(v) for k, v in expected.items())


@pytest.mark.parametrize("tokens, words", [
    (["--learning_rate", "abc"], ["--learning_rate", "a number", "'abc'"]),
    (["--max_steps", "1.5"], ["--max_steps", "an integer"]),
    (["--bf16", "maybe"], ["--bf16", "true or false"]),
    (["--save_total_limit", "few"], ["--save_total_limit", "an integer", "or none"]),
    (["--lr_scheduler_type", "cosin"], ["--lr_scheduler_type", "one of", "cosine"]),
    (["--prefix"], ["--prefix", "needs a value"]),
    (["--prefix", "query:", "passage:"], ["--prefix", "takes one value"]),
    (["--sts.learning_rate", "fast"], ["--sts.learning_rate", "a number"]),
    (["--learnin_rate", "1e-5"], ["--learnin_rate", "did you mean --learning_rate"]),
    (["query: "], ["has no --key"]),
])
def test_wrong_values_are_refused_naming_the_option_and_type(tokens, words):
    with pytest.raises(KoSimCSEError) as info:
        parse_overrides(tokens)
    assert all(w in str(info.value) for w in words), str(info.value)


def test_stage_overrides_reach_their_stage_typed():
    from kosimcse.training.args import read_recipe
    from kosimcse.training.run import stage_settings

    recipe = Path(__file__).resolve().parents[1] / "recipes" / "multitask.yaml"
    overrides = parse_overrides(["--prefix", "query: ", "--sts.max_steps", "150", "--nli.bf16", "false"])
    (_, nli), (_, sts) = stage_settings(read_recipe(recipe), overrides)
    assert nli["prefix"] == sts["prefix"] == "query: "
    assert sts["max_steps"] == 150 and "max_steps" not in nli and nli["bf16"] is False
    margs, _, targs = load_recipe(None, sts)
    assert margs.prefix == "query: " and targs.max_steps == 150


def _cli(argv: list[str], capsys):
    """Run `kosimcse ARGV` in this process; return (exit status, stdout, stderr)."""
    from kosimcse.cli import main

    try:
        main(argv)
        code = 0
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_bad_value_is_one_error_line_from_the_real_cli(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "kosimcse", "train", "--learning_rate", "abc"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "--learning_rate" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("module", ["kosimcse.training.run", "kosimcse.cli.train"])
def test_kosimcse_train_is_the_one_training_entry_point(module, monkeypatch, capsys):
    """Run as `python -m`, the modules behind `kosimcse train` only define it: they neither parse nor train."""
    monkeypatch.setattr(sys, "argv", [module, "--max_steps", "many"])
    parent, _, leaf = module.rpartition(".")
    if module in sys.modules:  # the re-import below rebinds the package attribute: put the original back afterwards
        monkeypatch.setattr(sys.modules[parent], leaf, sys.modules[module])
    monkeypatch.delitem(sys.modules, module, raising=False)  # as a fresh `python -m` would find it
    runpy.run_module(module, run_name="__main__")  # an alias would exit 2 on the bad --max_steps
    assert capsys.readouterr().err == ""


def test_setting_check_is_one_error_line(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("selection_tolerance: 0.5\neval_on_start: false\n", encoding="utf-8")
    code, _, err = _cli(["train", str(recipe)], capsys)
    assert code == 2 and err.startswith("error: ") and "selection_tolerance" in err and len(err.splitlines()) == 1


@pytest.mark.usefixtures("one_thread")
def test_prefix_with_colon_trains_and_the_export_embeds_with_it(tmp_path, monkeypatch, capsys):
    """The README's `--prefix "query: "`: the string reaches the model config and the exported model uses it."""
    from test_resume import tiny_args, write_tiny_corpus

    from kosimcse.data import tasks
    from kosimcse.inference.encoder import KoSimCSE
    from kosimcse.modeling.model import SimCSEModel

    monkeypatch.setattr(tasks, "_TASKS", dict(tasks._TASKS))
    files = write_tiny_corpus(tmp_path / "tiny")
    tasks.register_sts_task("tiny-overrides-dev", files["dev"])
    values = tiny_args(files, tmp_path / "run", max_steps=2, save_steps=2, eval_steps=2, pooler="avg",
                       eval_task="tiny-overrides-dev", report_tasks=["tiny-overrides-dev"])
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(values, allow_unicode=True), encoding="utf-8")

    code, _, err = _cli(["train", str(recipe), "--prefix", "query: "], capsys)
    assert code == 0, err
    exported = Path(json.loads((tmp_path / "run" / "summary.json").read_text(encoding="utf-8"))["exported"])
    assert SimCSEModel.from_pretrained(exported).config.prefix == "query: "
    prompts = json.loads((exported / "config_sentence_transformers.json").read_text(encoding="utf-8"))["prompts"]
    assert prompts == {"query": "query: ", "document": "query: "}
    texts = ["고양이가 소파 위에서 자고 있다.", "오늘 날씨가 정말 좋네요."]
    saved = KoSimCSE.from_pretrained(exported, dtype="fp32")
    assert saved.prefix == "query: "
    bare = KoSimCSE.from_pretrained(exported, prefix="", dtype="fp32")
    np.testing.assert_allclose(saved.encode(texts), bare.encode(["query: " + t for t in texts]), atol=1e-6)
    assert not np.allclose(saved.encode(texts), bare.encode(texts), atol=1e-4)


def test_training_bar_stays_on_when_the_cli_quiets_transformers_logging(tmp_path):
    """`kosimcse` sets transformers' verbosity to error; the Trainer used to switch its progress bar off with it."""
    import transformers

    from kosimcse.training.args import load_recipe

    before = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        _, _, targs = load_recipe(None, {"output_dir": str(tmp_path / "run")})
    finally:
        transformers.logging.set_verbosity(before)
    assert targs.disable_tqdm is False
