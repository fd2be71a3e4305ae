"""STS task registry: embedded copies, data-dir override, custom tasks, and the eval-sentence set."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from kosimcse.data import tasks
from kosimcse.errors import DataError, KoSimCSEError
from kosimcse.paths import DATA_ENV


@pytest.mark.parametrize("name, pairs", [("korsts-dev", 1500), ("korsts-test", 1379), ("klue-sts-dev", 519)])
def test_builtin_tasks_load_from_embedded_copies(name, pairs, monkeypatch):
    monkeypatch.delenv(DATA_ENV, raising=False)
    path = tasks.task_path(name)
    assert "resources" in path.parts
    loaded = tasks.load_sts_task(name)
    assert len(loaded) == pairs
    assert all(0.0 <= p.score <= 5.0 and p.sentence1 and p.sentence2 for p in loaded)


def test_embedded_copies_are_byte_identical_to_shared_data(shared_data, monkeypatch):
    monkeypatch.delenv(DATA_ENV, raising=False)
    for name in ("korsts-dev", "korsts-test", "klue-sts-dev"):
        embedded = tasks.task_path(name)
        original = tasks.task_path(name, data_dir=shared_data)
        assert embedded != original
        assert hashlib.sha256(embedded.read_bytes()).digest() == hashlib.sha256(original.read_bytes()).digest()


def test_attribution_ships_with_the_data(monkeypatch):
    monkeypatch.delenv(DATA_ENV, raising=False)
    text = (tasks.task_path("korsts-test").parent / "ATTRIBUTION.md").read_text(encoding="utf-8")
    assert "CC BY-SA 4.0" in text and "kakaobrain/KorNLUDatasets" in text and "KLUE-benchmark/KLUE" in text


def _write_korsts(path: Path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["genre\tfilename\tyear\tid\tscore\tsentence1\tsentence2"]
    lines += [f"main-captions\tMSRvid\t2012test\t{i:04d}\t{score}\t{a}\t{b}" for i, (a, b, score) in enumerate(rows)]
    path.write_text("\n".join(lines), encoding="utf-8")


def test_data_dir_overrides_the_embedded_copy(tmp_path):
    _write_korsts(tmp_path / "korsts" / "sts-test.tsv", [("고양이가 잔다.", "고양이가 자고 있다.", 4.8),
                                                        ("남자가 달린다.", "여자가 노래한다.", 0.2)])
    loaded = tasks.load_sts_task("korsts-test", data_dir=tmp_path)
    assert [(p.sentence1, p.score) for p in loaded] == [("고양이가 잔다.", 4.8), ("남자가 달린다.", 0.2)]


def test_chosen_data_folder_replaces_only_the_files_it_holds(tmp_path, monkeypatch):
    monkeypatch.delenv(DATA_ENV, raising=False)
    _write_korsts(tmp_path / "korsts" / "sts-test.tsv", [("가", "나", 1.0), ("다", "라", 2.0)])
    embedded_dev = tasks.task_path("korsts-dev")
    assert tasks.task_path("korsts-test", tmp_path) == tmp_path / "korsts" / "sts-test.tsv"
    assert tasks.task_path("korsts-dev", tmp_path) == embedded_dev  # not in the folder: the embedded copy
    # The environment variable chooses a folder just like the option, for evaluation and guard alike.
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    assert tasks.task_path("korsts-test") == tmp_path / "korsts" / "sts-test.tsv"
    assert tasks.eval_sentences(["korsts-test"]) == {"가", "나", "다", "라"}
    # A task with no embedded copy reads the chosen folder, and says which file is missing.
    with pytest.raises(DataError, match="klue_sts_val.csv"):
        tasks.load_sts_task("klue-sts-dev-csv")
    assert tmp_path / "korsts" / "sts-test.tsv" in tasks.task_files()


def test_malformed_eval_file_raises_with_location(tmp_path):
    _write_korsts(tmp_path / "korsts" / "sts-dev.tsv", [("가", "나", 1.0), ("다", "라", 7.5)])
    with pytest.raises(DataError) as info:
        tasks.load_sts_task("korsts-dev", data_dir=tmp_path)
    assert "sts-dev.tsv:3" in str(info.value)


def test_register_custom_task_and_eval_sentences(tmp_path, monkeypatch):
    monkeypatch.setattr(tasks, "_TASKS", dict(tasks._TASKS))
    csv_path = tmp_path / "mine.csv"
    csv_path.write_text('sentence1,sentence2,label\n"하나, 둘",셋,2.5\n넷,다섯,4\n', encoding="utf-8")
    tasks.register_sts_task("my-sts", csv_path)
    assert "my-sts" in tasks.list_tasks()
    assert [p.sentence1 for p in tasks.load_sts_task("my-sts")] == ["하나, 둘", "넷"]
    sentences = tasks.eval_sentences(["my-sts", "klue-sts-dev"])
    assert {"하나, 둘", "셋", "넷", "다섯"} <= sentences
    klue = tasks.load_sts_task("klue-sts-dev")
    assert len(sentences) == len({"하나, 둘", "셋", "넷", "다섯"} | {s for p in klue for s in (p.sentence1, p.sentence2)})


def test_unknown_task_names_the_known_ones():
    with pytest.raises(KoSimCSEError, match="korsts-test"):
        tasks.load_sts_task("korsts-tset")


def test_unknown_reader_format_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(tasks, "_TASKS", dict(tasks._TASKS))
    with pytest.raises(KoSimCSEError):
        tasks.register_sts_task("odd", tmp_path / "pairs.xlsx")
