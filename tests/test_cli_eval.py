"""CLI verbs eval / encode / search end to end on a tiny random model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from helpers import make_tiny_model_dir
from kosimcse.cli import main
from kosimcse.evaluation.sts import METRIC_KEYS

TEXTS = ["한 남자가 기타를 치고 있다.", "여자가 양파를 썰고 있다.", "", "고양이가 소파 위에서 자고 있다.",
         "아이들이 공원에서 뛰어 놀고 있다.", "오늘 날씨가 정말 좋네요."]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny-cli"))


def _invoke(args):
    from kosimcse.cli import cli

    return CliRunner().invoke(cli, args, catch_exceptions=False)


def test_eval_prints_the_table(tiny_dir):
    result = _invoke(["eval", "--model", str(tiny_dir), "--task", "klue-sts-dev", "--fp32", "--name", "tiny", "--max-length", "32"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "### klue-sts-dev (519 pairs" in out
    assert "| Model | Cosine Pearson | Cosine Spearman |" in out
    row = next(line for line in out.splitlines() if line.startswith("| tiny |"))
    values = [float(c) for c in row.strip("|").split("|")[1:]]
    assert len(values) == 8 and all(-100 <= v <= 100 for v in values)


def test_eval_json_and_out_file(tiny_dir, tmp_path):
    out_file = tmp_path / "res" / "eval.json"
    result = _invoke(["eval", "--model", str(tiny_dir), "--task", "klue-sts-dev", "--pooling", "cls",
                      "--prefix", "query: ", "--json", "--out", str(out_file), "--max-length", "32"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed == json.loads(out_file.read_text(encoding="utf-8"))
    assert set(printed["results"]["klue-sts-dev"]) == set(METRIC_KEYS)
    assert (printed["pooling"], printed["prefix"], printed["max_length"]) == ("cls", "query: ", 32)


def test_eval_help_has_examples():
    result = _invoke(["eval", "--help"])
    assert result.exit_code == 0 and "Examples:" in result.output and "--task" in result.output


def test_eval_missing_model_is_one_error_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["eval", "--model", str(tmp_path / "missing" / "model"), "--task", "klue-sts-dev"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "does not exist" in err and "Traceback" not in err


@pytest.mark.parametrize("suffix", [".npy", ".parquet"])
def test_encode_then_search(tiny_dir, tmp_path, suffix):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    index = tmp_path / f"index{suffix}"
    result = _invoke(["encode", str(tiny_dir), str(corpus), "-o", str(index), "--chunk-size", "2", "--batch-size", "2",
                      "--fp32"])
    assert result.exit_code == 0, result.output
    kept = [t for t in TEXTS if t]
    if suffix == ".npy":
        emb = np.load(index)
    else:
        import pyarrow.parquet as pq

        table = pq.read_table(index)
        assert table.column("text").to_pylist() == kept
        emb = np.stack(table.column("embedding").to_pylist())
    assert emb.shape == (len(kept), 32)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    assert not list(tmp_path.glob("*.partial*"))

    args = ["search", str(tiny_dir), "--index", str(index), "--query", kept[2], "-k", "2", "--json", "--fp32"]
    if suffix == ".npy":
        args += ["--texts", str(corpus)]
    result = _invoke(args)
    assert result.exit_code == 0, result.output
    hit = json.loads(result.stdout.splitlines()[0])
    assert hit["hits"][0]["index"] == 2 and hit["hits"][0]["text"] == kept[2]
    assert len(hit["hits"]) == 2


def test_search_refuses_texts_that_do_not_match_the_index(tiny_dir, tmp_path, capsys):
    corpus = tmp_path / "c.txt"
    corpus.write_text("하나\n둘\n셋\n", encoding="utf-8")
    np.save(tmp_path / "i.npy", np.zeros((2, 32), np.float32))
    with pytest.raises(SystemExit) as info:
        main(["search", str(tiny_dir), "--index", str(tmp_path / "i.npy"), "--texts", str(corpus), "--query", "둘"])
    assert info.value.code == 2 and "3 texts but the index has 2 rows" in capsys.readouterr().err
