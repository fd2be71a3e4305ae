"""Readers: exact counts on the real files, and every kind of bad input located by file and line (or counted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kosimcse.data import readers as R
from kosimcse.data.readers import ReadReport
from kosimcse.errors import DataError, KoSimCSEError

# ---------------------------------------------------------------------------------------------
# Real files: counts from shared/data/README.md
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rel, expected", [
    ("korsts/sts-train.tsv", 5749), ("korsts/sts-dev.tsv", 1500), ("korsts/sts-test.tsv", 1379),
])
def test_korsts_counts(shared_data, rel, expected):
    report = ReadReport()
    pairs = list(R.read_korsts(shared_data / rel, report=report))
    assert len(pairs) == expected == report.read and report.skipped == 0
    assert all(0.0 <= p.score <= 5.0 for p in pairs)
    # quotes are literal in KorSTS: some sentences must still carry them
    assert any('"' in p.sentence1 or '"' in p.sentence2 for p in pairs)


def test_klue_sts_counts(shared_data):
    train = list(R.read_klue_sts_csv(shared_data / "klue-sts/klue_sts_train.csv"))
    dev_csv = list(R.read_klue_sts_csv(shared_data / "klue-sts/klue_sts_val.csv"))
    dev_json = list(R.read_klue_sts_json(shared_data / "klue-sts/klue-sts-v1.1_dev.json"))
    assert (len(train), len(dev_csv), len(dev_json)) == (11668, 519, 519)
    assert [(p.sentence1, p.sentence2) for p in dev_csv] == [(p.sentence1, p.sentence2) for p in dev_json]


def test_nli_counts(shared_data):
    assert sum(1 for _ in R.read_xnli_tsv(shared_data / "nli/xnli.dev.ko.tsv")) == 2490
    assert sum(1 for _ in R.read_xnli_tsv(shared_data / "nli/xnli.test.ko.tsv")) == 5010
    dev_json = list(R.read_klue_nli_json(shared_data / "nli/klue-nli-v1.1_dev.json"))
    assert len(dev_json) == 3000


def test_dacon_split_keeps_dev_apart(shared_data):
    path = shared_data / "nli/klue-nli-train-dacon/benchmark_train_data.csv"
    train = list(R.read_klue_nli_dacon_csv(path, split="train"))
    dev = list(R.read_klue_nli_dacon_csv(path, split="dev"))
    assert len(train) == 24998 and len(dev) == 3000
    assert sum(1 for _ in R.read_klue_nli_dacon_csv(path, split="all")) == 27998
    counts = {lab: sum(p.label == lab for p in train) for lab in R.NLI_LABELS}
    assert counts == {"entailment": 8561, "contradiction": 8489, "neutral": 7948}
    # README: 2,999 of the 3,000 dev rows equal the official dev JSON (one differs by a '?' for an NBSP)
    official = list(R.read_klue_nli_json(shared_data / "nli/klue-nli-v1.1_dev.json"))
    assert sum(a == b for a, b in zip(dev, official)) == 2999
    train_keys = {(p.premise, p.hypothesis) for p in train}
    assert not any((p.premise, p.hypothesis) in train_keys for p in official)


def test_unlabeled_counts(shared_data):
    kowiki = R.read_kowiki(shared_data / "corpus/kowiki")
    n = 0
    for t in kowiki:
        n += 1
        assert not t.text.startswith("<doc") and t.text != "</doc>" and "formula_" not in t.text
    assert n == 250174
    nsmc = list(R.read_nsmc_raw(shared_data / "domain/nsmc/raw"))
    assert len(nsmc) == 84146 and len({t.text for t in nsmc}) == 82454
    assert sum(1 for _ in R.read_petitions(shared_data / "domain/petitions")) == 3691


def test_kowiki_drops_titles(shared_data):
    first = shared_data / "corpus/kowiki/AA/wiki_00"
    lines = first.read_text(encoding="utf-8").splitlines()
    title = lines[1]
    texts = [t.text for t in R.read_kowiki(first)]
    assert title not in texts[:3]
    assert texts[0].startswith('제임스 얼 "지미" 카터 주니어(1924년 10월 1일')  # "(, 1924년" lost its stray comma


@pytest.mark.parametrize("rel, kind", [
    ("corpus/kowiki", "kowiki"), ("domain/nsmc/raw", "nsmc"), ("domain/nsmc", "nsmc"),
    ("domain/petitions", "petitions"), ("korsts/sts-test.tsv", "korsts"),
    ("klue-sts/klue_sts_train.csv", "klue-sts"), ("klue-sts/klue-sts-v1.1_dev.json", "klue-sts"),
])
def test_detect_kind(shared_data, rel, kind):
    assert R.detect_kind(shared_data / rel) == kind
    assert R.parse_source_spec(rel, shared_data) == (kind, str(shared_data / rel))


def test_read_source_sts_gives_both_sides(shared_data):
    texts = list(R.read_source("korsts:korsts/sts-test.tsv", data_dir=shared_data))
    pairs = list(R.read_korsts(shared_data / "korsts/sts-test.tsv"))
    assert len(texts) == 2 * len(pairs) == 2758
    assert {t.source for t in texts} == {"korsts"}
    assert texts[0].text == pairs[0].sentence1 and texts[1].text == pairs[0].sentence2


# ---------------------------------------------------------------------------------------------
# Bad inputs, per reader: small files in tmp_path
# ---------------------------------------------------------------------------------------------

KO1, KO2, KO3 = "한 남자가 기타를 치고 있다.", "여자가 양파를 썰고 있다.", "아이들이 공원에서 놀고 있다."


def _korsts_row(score="3.5", s1=KO1, s2=KO2):
    return f"main-captions\tMSRvid\t2012test\t0001\t{score}\t{s1}\t{s2}"


KORSTS_HEADER = "genre\tfilename\tyear\tid\tscore\tsentence1\tsentence2"


def _lines_file(tmp_path: Path, name: str, lines: list, encoding="utf-8") -> Path:
    """Join str/bytes lines; str lines are encoded with ``encoding``."""
    raw = b"\n".join(line if isinstance(line, bytes) else line.encode(encoding) for line in lines) + b"\n"
    path = tmp_path / name
    path.write_bytes(raw)
    return path


# Each line-based format: (reader, file name, header, good row, {case: bad row}, encoding)
def _line_formats():
    return {
        "korsts": (R.read_korsts, "sts.tsv", KORSTS_HEADER, _korsts_row(), {
            "truncated": _korsts_row().rsplit("\t", 1)[0],
            "non_numeric_score": _korsts_row(score="abc"),
            "out_of_range_score": _korsts_row(score="5.5"),
            "negative_score": _korsts_row(score="-0.1"),
            "nan_score": _korsts_row(score="nan"),
            "inf_score": _korsts_row(score="inf"),
            "empty_sentence": _korsts_row(s2=" "),
            "invalid_utf8": _korsts_row().encode() + b"\xff\xfe",
            "cp949": _korsts_row().encode("cp949"),
        }, "utf-8"),
        "klue_sts_csv": (R.read_klue_sts_csv, "sts.csv", "sentence1,sentence2,label", f"{KO1},{KO2},3.2", {
            "truncated": f"{KO1},{KO2}",
            "non_numeric_score": f"{KO1},{KO2},high",
            "out_of_range_score": f"{KO1},{KO2},7",
            "nan_score": f"{KO1},{KO2},NaN",
            "invalid_utf8": f"{KO1},{KO2},3".encode() + b"\x80",
            "cp949": f"{KO1},{KO2},3".encode("cp949"),
        }, "utf-8"),
        "xnli": (R.read_xnli_tsv, "x.tsv", "sentence1\tsentence2\tgold_label", f"{KO1}\t{KO2}\tneutral", {
            "truncated": f"{KO1}\t{KO2}",
            "bad_label": f"{KO1}\t{KO2}\tmaybe",
            "too_many_fields": f"{KO1}\t{KO2}\tneutral\textra",
            "invalid_utf8": f"{KO1}\t{KO2}\tneutral".encode() + b"\xc3\x28",
            "cp949": f"{KO1}\t{KO2}\tneutral".encode("cp949"),
        }, "utf-8"),
        "dacon": (R.read_klue_nli_dacon_csv, "d.csv", "index,premise,hypothesis,label", "0,{KO1},{KO2},entailment", {
            "truncated": f"1,{KO1},{KO2}",
            "bad_label": f"1,{KO1},{KO2},yes",
            "non_numeric_index": f"x,{KO1},{KO2},neutral",
            "invalid_cp949": f"1,{KO1},{KO2},neutral".encode("cp949") + b"\xff",
        }, "cp949"),
        "kowiki": (R.read_kowiki, "wiki_00", '<doc id="1" url="u" title="t">', "문단 하나입니다. 두 문장.", {
            "invalid_utf8": "문단".encode() + b"\xed\xa0\x80",
            "cp949": "문단 둘입니다.".encode("cp949"),
        }, "utf-8"),
        "petitions": (R.read_petitions, "petitions_x", json.dumps({"title": "t", "content": KO1}, ensure_ascii=False),
                      json.dumps({"title": "t", "content": KO2}, ensure_ascii=False), {
            "truncated": '{"title": "t", "content": "잘린',
            "missing_field": json.dumps({"title": "t", "body": KO3}, ensure_ascii=False),
            "not_an_object": "[1, 2]",
            "non_string": json.dumps({"content": 3}),
            "invalid_utf8": b'{"content": "\xff"}',
            "cp949": json.dumps({"content": KO3}, ensure_ascii=False).encode("cp949"),
        }, "utf-8"),
        "texts_jsonl": (R.read_texts, "t.jsonl", json.dumps({"text": KO1}, ensure_ascii=False),
                        json.dumps({"text": KO2}, ensure_ascii=False), {
            "truncated": '{"text": "잘린',
            "missing_column": json.dumps({"body": KO3}, ensure_ascii=False),
            "null_text": json.dumps({"text": None}),
            "cp949": json.dumps({"text": KO3}, ensure_ascii=False).encode("cp949"),
        }, "utf-8"),
        "texts_csv": (R.read_texts, "t.csv", "id,text", f"1,{KO1}", {
            "truncated": "2",
            "invalid_utf8": f"2,{KO2}".encode() + b"\xfe",
        }, "utf-8"),
        "texts_tsv": (R.read_texts, "t.tsv", "id\ttext", f'1\t"{KO1}', {
            "truncated": "2",
            "cp949": f"2\t{KO2}".encode("cp949"),
        }, "utf-8"),
        "texts_txt": (R.read_texts, "t.txt", KO1, KO2, {
            "invalid_utf8": b"\xff\xff",
            "cp949": KO3.encode("cp949"),
        }, "utf-8"),
    }


LINE_FORMATS = _line_formats()
BAD_LINE_CASES = [(fmt, case) for fmt, spec in LINE_FORMATS.items() for case in spec[4]]


def _call(fmt, path, **kw):
    reader = LINE_FORMATS[fmt][0]
    return list(reader(path, **kw))


def _good_rows(fmt):
    _, _, header, good, _, _ = LINE_FORMATS[fmt]
    if fmt == "dacon":
        return [good.format(KO1=KO1, KO2=KO2), f"1,{KO2},{KO1},neutral", f"2,{KO3},{KO1},contradiction"]
    if fmt in ("petitions", "texts_jsonl"):
        return [good, good.replace(KO2, KO3), good]
    return [good, good.replace(KO1, KO3) if KO1 in good else good + " 더", good]


# the "header" of these formats is a record too; in kowiki the first row after <doc> is the title
HEADER_RECORDS = {"texts_txt": 1, "petitions": 1, "texts_jsonl": 1, "kowiki": -1}


@pytest.mark.parametrize("fmt", list(LINE_FORMATS))
def test_good_file_reads_and_bom_is_dropped(tmp_path, fmt):
    _, name, header, _, _, encoding = LINE_FORMATS[fmt]
    rows = _good_rows(fmt)
    path = _lines_file(tmp_path, name, [header, *rows], encoding)
    expected = len(rows) + HEADER_RECORDS.get(fmt, 0)
    assert len(_call(fmt, path)) == expected
    if encoding == "utf-8":
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
        got = _call(fmt, path)
        assert len(got) == expected
        first = got[0]
        assert "\ufeff" not in str(first)


@pytest.mark.parametrize("fmt, case", BAD_LINE_CASES)
def test_bad_row_raises_with_file_and_line(tmp_path, fmt, case):
    _, name, header, _, bad_cases, encoding = LINE_FORMATS[fmt]
    good = _good_rows(fmt)
    path = _lines_file(tmp_path, name, [header, good[0], bad_cases[case], good[1]], encoding)
    with pytest.raises(DataError) as exc:
        _call(fmt, path)
    assert exc.value.path == str(path)
    assert exc.value.line == 3, str(exc.value)
    assert f"{path}:3" in str(exc.value)


@pytest.mark.parametrize("fmt, case", BAD_LINE_CASES)
def test_bad_row_is_skipped_and_counted(tmp_path, fmt, case):
    _, name, header, _, bad_cases, encoding = LINE_FORMATS[fmt]
    good = _good_rows(fmt)
    path = _lines_file(tmp_path, name, [header, good[0], bad_cases[case], good[1]], encoding)
    report = ReadReport()
    got = _call(fmt, path, errors="skip", report=report)
    expected_good = 2 + HEADER_RECORDS.get(fmt, 0)
    assert len(got) == expected_good and report.read == expected_good
    assert report.skipped == 1 and f"{path}:3" in report.examples[0]


@pytest.mark.parametrize("fmt", list(LINE_FORMATS))
def test_empty_file(tmp_path, fmt):
    path = tmp_path / LINE_FORMATS[fmt][1]
    path.write_bytes(b"")
    with pytest.raises(DataError, match="empty") as exc:
        _call(fmt, path, errors="skip")
    assert exc.value.path == str(path)


@pytest.mark.parametrize("fmt, header", [
    ("korsts", "genre\tfilename\tyear\tid\tsentence1\tsentence2"),
    ("klue_sts_csv", "sentence1,sentence2,score"),
    ("xnli", "premise\thypothesis\tgold_label"),
    ("dacon", "index,premise,hypo,label"),
    ("texts_csv", "id,body"),
    ("texts_tsv", "id\tbody"),
])
def test_missing_column_is_fatal_even_under_skip(tmp_path, fmt, header):
    _, name, _, _, _, encoding = LINE_FORMATS[fmt]
    path = _lines_file(tmp_path, name, [header, "a,b,c,d"], encoding)
    with pytest.raises(DataError) as exc:
        _call(fmt, path, errors="skip")
    assert exc.value.line == 1 and exc.value.path == str(path)
    assert "column" in str(exc.value)


def test_utf8_where_cp949_expected(tmp_path):
    path = _lines_file(tmp_path, "d.csv", ["index,premise,hypothesis,label", f"0,{KO1},{KO2},neutral"], "utf-8")
    with pytest.raises(DataError, match="UTF-8, not CP949") as exc:
        list(R.read_klue_nli_dacon_csv(path))
    assert exc.value.line == 2
    assert len(list(R.read_klue_nli_dacon_csv(path, encoding="utf-8"))) == 1


def test_dacon_split_by_index_column(tmp_path):
    rows = ["index,premise,hypothesis,label", f"24997,{KO1},{KO2},neutral", f"24998,{KO2},{KO3},entailment"]
    path = _lines_file(tmp_path, "d.csv", rows, "cp949")
    assert [p.premise for p in R.read_klue_nli_dacon_csv(path, split="train")] == [KO1]
    assert [p.premise for p in R.read_klue_nli_dacon_csv(path, split="dev")] == [KO2]
    with pytest.raises(ValueError):
        list(R.read_klue_nli_dacon_csv(path, split="test"))


# JSON-list formats: the error "line" is the 1-based record index


def _sts_rec(score=3.0, s1=KO1):
    return {"sentence1": s1, "sentence2": KO2, "labels": {"real-label": score, "label": score}}


def _nli_rec(label="neutral", premise=KO1):
    return {"premise": premise, "hypothesis": KO2, "gold_label": label}


JSON_CASES = {
    ("klue_sts_json", "non_numeric_score"): (R.read_klue_sts_json, _sts_rec(), _sts_rec(score="x")),
    ("klue_sts_json", "out_of_range_score"): (R.read_klue_sts_json, _sts_rec(), _sts_rec(score=5.01)),
    ("klue_sts_json", "nan_score"): (R.read_klue_sts_json, _sts_rec(), _sts_rec(score=float("nan"))),
    ("klue_sts_json", "missing_field"): (R.read_klue_sts_json, _sts_rec(), {"sentence1": KO1}),
    ("klue_nli_json", "bad_label"): (R.read_klue_nli_json, _nli_rec(), _nli_rec(label="unknown")),
    ("klue_nli_json", "missing_field"): (R.read_klue_nli_json, _nli_rec(), {"premise": KO1}),
    ("klue_nli_json", "not_an_object"): (R.read_klue_nli_json, _nli_rec(), [1]),
    ("klue_nli_json", "empty_premise"): (R.read_klue_nli_json, _nli_rec(), _nli_rec(premise="  ")),
    ("nsmc", "missing_review"): (R.read_nsmc_raw, {"review": KO1}, {"rating": "3"}),
    ("nsmc", "non_string_review"): (R.read_nsmc_raw, {"review": KO1}, {"review": 5}),
}


@pytest.mark.parametrize("key", list(JSON_CASES), ids=["-".join(k) for k in JSON_CASES])
def test_json_bad_record(tmp_path, key):
    reader, good, bad = JSON_CASES[key]
    path = tmp_path / "x.json"
    path.write_text(json.dumps([good, bad, good], ensure_ascii=False), encoding="utf-8")
    with pytest.raises(DataError) as exc:
        list(reader(path))
    assert exc.value.path == str(path) and exc.value.line == 2
    report = ReadReport()
    assert len(list(reader(path, errors="skip", report=report))) == 2
    assert report.skipped == 1 and report.read == 2


@pytest.mark.parametrize("reader", [R.read_klue_sts_json, R.read_klue_nli_json, R.read_nsmc_raw])
@pytest.mark.parametrize("case, raw, line", [
    ("truncated", '[{"premise": "가"'.encode(), 1),
    ("invalid_utf8", b'[\n{"review": "\xff"}]', 2),
    ("cp949", '[\n\n{"review": "가나다"}]'.encode("cp949"), 3),
    ("empty", b"", None),
])
def test_json_whole_file_errors(tmp_path, reader, case, raw, line):
    path = tmp_path / "x.json"
    path.write_bytes(raw)
    with pytest.raises(DataError) as exc:
        list(reader(path))
    assert exc.value.path == str(path) and exc.value.line == line


def test_json_bom_is_dropped(tmp_path):
    path = tmp_path / "x.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps([_nli_rec()], ensure_ascii=False).encode())
    assert len(list(R.read_klue_nli_json(path))) == 1


def test_nsmc_bad_file_in_folder_is_skipped_and_counted(tmp_path):
    (tmp_path / "1.json").write_text(json.dumps([{"review": KO1}, {"review": ""}], ensure_ascii=False), "utf-8")
    (tmp_path / "2.json").write_bytes(b"[{broken")
    (tmp_path / "3.json").write_text(json.dumps([{"review": KO2}], ensure_ascii=False), "utf-8")
    (tmp_path / "README.md").write_text("not data", "utf-8")
    with pytest.raises(DataError) as exc:
        list(R.read_nsmc_raw(tmp_path))
    assert exc.value.path == str(tmp_path / "2.json")
    report = ReadReport()
    texts = [t.text for t in R.read_nsmc_raw(tmp_path, errors="skip", report=report)]
    assert texts == [KO1, "", KO2]  # the empty review is yielded, so corpus stats can count it
    assert report.skipped == 1 and report.read == 3


def test_kowiki_structure_and_formula(tmp_path):
    path = _lines_file(tmp_path, "wiki_00", [
        '<doc id="5" url="u" title="지미 카터">', "지미 카터", "", "첫 문단이다. formula_1 값은 formula_23 이다.",
        "</doc>", '<doc id="6" url="u" title="수학">', "수학", "", "formula_2", "둘째 문단.",
        "슈파이어()는 도시다. 대지모신(大地母神, )은 여신이다. 로마(, Roma)와 ( ; )파리(Paris).", "</doc>",
    ])
    texts = [(t.text, t.line) for t in R.read_kowiki(path)]
    assert texts == [("첫 문단이다. 값은 이다.", 4), ("", 9), ("둘째 문단.", 10),
                     ("슈파이어는 도시다. 대지모신(大地母神)은 여신이다. 로마(Roma)와 파리(Paris).", 11)]


def test_kowiki_folder_is_recursive_and_sorted(tmp_path):
    for sub, text in [("AB", "둘째 폴더."), ("AA", "첫째 폴더.")]:
        (tmp_path / sub).mkdir()
        _lines_file(tmp_path / sub, "wiki_00", ['<doc id="1" url="u" title="t">', "t", text, "</doc>"])
    (tmp_path / "README.md").write_text("# readme\n", "utf-8")
    assert [t.text for t in R.read_kowiki(tmp_path)] == ["첫째 폴더.", "둘째 폴더."]


def test_missing_path(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        list(R.read_kowiki(tmp_path / "nope"))
    with pytest.raises(DataError, match="no data files"):
        list(R.read_petitions(tmp_path))


# ---------------------------------------------------------------------------------------------
# Generic read_texts: parquet, datasets folder, Hub id
# ---------------------------------------------------------------------------------------------


def test_read_texts_parquet_streams_row_groups(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = [f"문장 {i}" for i in range(250)]
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"id": list(range(250)), "sentence": texts}), path, row_group_size=100)
    assert [t.text for t in R.read_texts(path, text_column="sentence")] == texts
    with pytest.raises(DataError, match=r"missing column 'text'; available: \['id', 'sentence'\]"):
        list(R.read_texts(path))
    pq.write_table(pa.table({"text": ["가나다", None, "라마바"]}), path)
    with pytest.raises(DataError) as exc:
        list(R.read_texts(path))
    assert exc.value.line == 2
    report = ReadReport()
    assert len(list(R.read_texts(path, errors="skip", report=report))) == 2 and report.skipped == 1
    path.write_bytes(b"PAR1 not really parquet")
    with pytest.raises(DataError, match="unreadable parquet"):
        list(R.read_texts(path))


def test_read_texts_datasets_folder(tmp_path):
    import datasets

    ds = datasets.Dataset.from_dict({"text": [KO1, KO2, KO3], "n": [1, 2, 3]})
    ds.save_to_disk(str(tmp_path / "ds"))
    got = list(R.read_texts(tmp_path / "ds"))
    assert [t.text for t in got] == [KO1, KO2, KO3] and got[0].source == "ds"
    with pytest.raises(DataError, match=r"available: \['text', 'n'\]"):
        list(R.read_texts(tmp_path / "ds", text_column="body"))
    datasets.DatasetDict({"train": ds, "test": ds.select([0])}).save_to_disk(str(tmp_path / "dd"))
    assert len(list(R.read_texts(tmp_path / "dd", split="test"))) == 1
    with pytest.raises(DataError, match="split"):
        list(R.read_texts(tmp_path / "dd", split="validation"))
    assert R.detect_kind(tmp_path / "ds") == "text"
    assert [t.text for t in R.read_source(str(tmp_path / "dd"))] == [KO1, KO2, KO3]


def test_read_texts_hub_unreachable_names_offline_options():
    with pytest.raises(KoSimCSEError) as exc:
        list(R.read_texts("someone/korean-corpus-that-is-not-cached"))
    assert not isinstance(exc.value, DataError)
    message = str(exc.value)
    assert "save_to_disk" in message and ".parquet" in message and "HF_DATASETS_OFFLINE" in message
    assert R.detect_kind("someone/korean-corpus") == "hf"


def test_read_source_spec_label_and_unique(tmp_path):
    path = _lines_file(tmp_path, "dom.txt", [KO1, "", KO2])
    texts = list(R.read_source(f"text:{path}", name="mydomain"))
    assert [(t.text, t.source, t.line) for t in texts] == [(KO1, "mydomain", 1), (KO2, "mydomain", 3)]
    assert R.parse_source_spec(str(path)) == ("text", str(path))
