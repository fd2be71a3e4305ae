"""The quickstart end to end on a tiny random encoder and a tiny data folder; and freezing lower layers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from helpers import make_tiny_model_dir

RESOURCES = Path(__file__).resolve().parents[1] / "src" / "kosimcse" / "resources" / "sts"
HEADER = "genre\tfilename\tyear\tid\tscore\tsentence1\tsentence2"

SUBJECTS = ["작은 아이", "키 큰 남자", "젊은 여자", "늙은 농부", "하얀 고양이", "검은 강아지"]
PLACES = ["시장", "해변", "도서관", "기차역", "지붕 위", "작은 부엌"]
ACTIONS = ["빵을 굽고 있다", "책을 천천히 읽는다", "노래를 크게 부른다", "사진을 찍고 있다", "춤을 추고 있다"]


def _sentences() -> list[str]:
    return [f"{s}가 {p}에서 {a}." for s in SUBJECTS for p in PLACES for a in ACTIONS]


def tiny_data(root: Path) -> Path:
    """A data folder laid out like shared/data: the real eval sets (for the leakage guard) and made-up train text."""
    texts = _sentences()
    (root / "korsts").mkdir(parents=True)
    (root / "klue-sts").mkdir()
    shutil.copy(RESOURCES / "sts-dev.tsv", root / "korsts" / "sts-dev.tsv")
    shutil.copy(RESOURCES / "sts-test.tsv", root / "korsts" / "sts-test.tsv")
    shutil.copy(RESOURCES / "klue-sts-v1.1_dev.json", root / "klue-sts" / "klue-sts-v1.1_dev.json")
    rows = [f"g\tf\t2017\t{i:04d}\t2.5\t{a}\t{b}" for i, (a, b) in enumerate(zip(texts[0:60:2], texts[1:60:2]))]
    (root / "korsts" / "sts-train.tsv").write_text("\n".join([HEADER] + rows) + "\n", encoding="utf-8")
    (root / "klue-sts" / "klue_sts_train.csv").write_text(
        "sentence1,sentence2,label\n" + "".join(f"{a},{b},1.0\n" for a, b in zip(texts[60:120:2], texts[61:120:2])),
        encoding="utf-8")
    wiki = root / "corpus" / "kowiki" / "AA"
    wiki.mkdir(parents=True)
    (wiki / "wiki_00").write_text(f'<doc id="1" url="u" title="t">\nt\n\n{" ".join(texts[120:])}\n</doc>\n',
                                  encoding="utf-8")
    return root


def test_quickstart_end_to_end_on_a_tiny_model(tmp_path, one_thread):
    from kosimcse.cli import cli
    from kosimcse.data.tasks import list_tasks

    model_dir = make_tiny_model_dir(tmp_path / "tiny", hidden=32, layers=2, heads=2)
    data = tiny_data(tmp_path / "data")
    out = tmp_path / "qs"
    args = ["quickstart", "--model", str(model_dir), "--data-dir", str(data), "--out", str(out),
            "--max-steps", "4", "--eval-steps", "2", "--batch-size", "8", "--dev-pairs", "100", "--no-progress"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    text = result.stdout

    # The three models side by side on every task, the seed's published rows beside KorSTS test.
    for task in ("korsts-dev", "korsts-test", "klue-sts-dev"):
        assert f"### {task}" in text
    # (three 8-metric tables and the alignment/uniformity table)
    assert text.count(f"| start: {model_dir} |") == 4
    assert text.count("| last checkpoint: step 4 |") == 4
    assert text.count("| selected:") == 4
    assert "seed project, published" in text
    for section in ("### Dev curve", "### Alignment and uniformity", "### What this means", "### Next"):
        assert section in text, section
    # No progress bar reached the output: the tqdm carriage returns stay off with --no-progress.
    assert "\r" not in result.output
    # The Trainer's log records (printed when its bar is off) stay out of stdout, which is for the report or --json.
    assert "{'" not in text and "'loss'" not in text

    report = json.loads((out / "quickstart.json").read_text(encoding="utf-8"))
    assert set(report["tables"]) == {"start", "selected", "last"}
    for key in ("start", "selected", "last"):
        assert set(report["tables"][key]) == {"korsts-dev", "korsts-test", "klue-sts-dev"}
        assert len(report["tables"][key]["korsts-test"]) == 8
        assert report["geometry"][key]["alignment"] >= 0
    # The curve: the start (step 0) and every 2 steps, scored on the 100-pair subset.
    assert [p["step"] for p in report["curve"]["points"]] == [0, 2, 4]
    assert report["curve"]["pairs"] == 100
    assert report["last"]["step"] == 4 and Path(report["last"]["checkpoint"]).is_dir()
    # Training moved the weights: the last checkpoint embeds differently from the start.
    assert report["tables"]["last"]["korsts-dev"] != report["tables"]["start"]["korsts-dev"]
    if report["selected"]["kept_initial_model"]:
        assert report["tables"]["selected"] == report["tables"]["start"]
    assert report["precision"] in ("bf16", "fp32")
    assert {"corpus", "evaluate_start", "train_and_export", "evaluate_last", "total"} <= set(report["wall_time_s"])
    assert report["settings"]["freeze_layers"] == 1  # half of the tiny encoder's 2 layers
    assert report["reading"] and report["reading"] in text
    commands = [c["command"] for c in report["next_commands"]]
    assert any(" report " in c and str(out / "run") in c for c in commands)
    assert any(" search " in c for c in commands)
    assert any("--max-steps" in c and f"--model {model_dir}" in c for c in commands)
    assert any("recipes/domain.yaml" in c and "--train_file runs/domain-corpus/sentences.txt" in c for c in commands)
    for c in commands:
        assert c in text
    # The exported model's card carries the full tables; the per-run selection task is gone again.
    card = (out / "run" / "best" / "README.md").read_text(encoding="utf-8")
    assert "## korsts-test" in card
    assert "korsts-dev-quick" not in list_tasks()


def test_quickstart_refuses_steps_that_skip_the_last_evaluation(tmp_path):
    from kosimcse.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["quickstart", "--model", str(tmp_path), "--max-steps", "5", "--eval-steps", "2"])
    assert exit_info.value.code == 2


def test_quickstart_leaves_a_run_folder_it_did_not_write(tmp_path):
    from kosimcse.cli import cli

    out = tmp_path / "qs"
    (out / "corpus").mkdir(parents=True)
    (out / "corpus" / "sentences.txt").write_text("\n".join(_sentences()) + "\n", encoding="utf-8")
    (out / "run").mkdir()
    (out / "run" / "notes.txt").write_text("mine", encoding="utf-8")
    result = CliRunner().invoke(cli, ["quickstart", "--model", str(tmp_path), "--data-dir", str(tiny_data(tmp_path / "d")),
                                      "--out", str(out), "--no-progress"])
    assert result.exit_code != 0 and "not an earlier quickstart run" in str(result.exception)
    assert (out / "run" / "notes.txt").read_text(encoding="utf-8") == "mine"


def test_freeze_layers_keeps_lower_weights_fixed(tmp_path, one_thread):
    from kosimcse.training.args import ModelArguments
    from kosimcse.training.data import ContrastiveCollator
    from kosimcse.training.run import build_model

    model_dir = make_tiny_model_dir(tmp_path / "tiny", hidden=32, layers=3, heads=2)
    model, tokenizer, _ = build_model(ModelArguments(model_name_or_path=str(model_dir), pooler="avg", freeze_layers=2))
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    batch = ContrastiveCollator(tokenizer)([{"text": t} for t in _sentences()[:8]])
    model.train()
    for _ in range(2):
        model(**batch)["loss"].backward()
        optimizer.step()
        optimizer.zero_grad()
    after = model.state_dict()
    frozen = [k for k in before if k.startswith(("encoder.embeddings.", "encoder.encoder.layer.0.",
                                                  "encoder.encoder.layer.1."))]
    trained = [k for k in before if k.startswith("encoder.encoder.layer.2.")]
    assert frozen and trained
    assert all(torch.equal(before[k], after[k]) for k in frozen)
    assert all(not torch.equal(before[k], after[k]) for k in trained if k.endswith("weight"))


def test_freeze_layers_beyond_the_encoder_is_refused(tmp_path):
    from kosimcse.errors import KoSimCSEError
    from kosimcse.training.args import ModelArguments
    from kosimcse.training.run import build_model

    model_dir = make_tiny_model_dir(tmp_path / "tiny", hidden=32, layers=2, heads=2)
    with pytest.raises(KoSimCSEError, match="freeze_layers must be between 0 and 2"):
        build_model(ModelArguments(model_name_or_path=str(model_dir), pooler="avg", freeze_layers=3))


def test_progress_bars_have_a_total_and_are_off_unless_asked(tmp_path, capsys, one_thread):
    from kosimcse.data.corpus import prepare_corpus
    from kosimcse.training.args import ModelArguments
    from kosimcse.training.run import build_model

    model_dir = make_tiny_model_dir(tmp_path / "tiny", hidden=32, layers=2, heads=2)
    model, tokenizer, _ = build_model(ModelArguments(model_name_or_path=str(model_dir), pooler="avg"))
    texts = _sentences()[:40]
    capsys.readouterr()
    model.encode(tokenizer, texts, batch_size=16)
    assert capsys.readouterr().err == ""
    model.encode(tokenizer, texts, batch_size=16, show_progress=True)
    assert "0/40 " in capsys.readouterr().err  # sentences done of the total

    data = tiny_data(tmp_path / "data")
    prepare_corpus([f"kowiki:{data / 'corpus' / 'kowiki' / 'AA'}"], tmp_path / "corpus", data_dir=data, progress=True)
    err = capsys.readouterr().err
    assert "prepare kowiki" in err and "100%" in err  # a percentage: the bar has a total (the source's bytes)
