"""Fuzzing every reader with random bytes, lines and fields: only ``DataError`` may ever escape."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kosimcse.data import readers as R
from kosimcse.data.readers import ReadReport
from kosimcse.errors import DataError

MAX_EXAMPLES = 150

# Field-ish tokens that hit the parsers' edges: separators, quotes, numbers in odd spellings, BOM, bad bytes.
TOKENS = [b"\t", b",", b'"', b"'", b"\n", b"\r\n", b"\r", b"", b" ", b"\xef\xbb\xbf", b"\xff", b"\x80", b"\x00",
          b"nan", b"inf", b"-1", b"2.5", b"5.0001", b"1e3", b"1_0", b"0", b"24998", b"entailment", b"neutral",
          b"contradiction", "한 남자가 걷는다.".encode(), "가나다".encode("cp949"), b"{", b"}", b"[", b"]", b":",
          b'"review"', b'"content"', b'"text"', b'"premise"', b'"labels"', b"null", b"<doc id=\"1\">", b"</doc>",
          b"formula_1", b"\\ud800", b'"\\ud800"']

FIELD = st.lists(st.sampled_from([t for t in TOKENS if t not in (b"\n", b"\r\n", b"\r")] + [b"3.2", b"1"]),
                 min_size=0, max_size=3).map(b"".join)


def _rows(sep: bytes, n_fields: int):
    """Rows of about the right width, so that parsing gets past the field count into values."""
    row = st.integers(n_fields - 1, n_fields + 1).flatmap(lambda n: st.lists(FIELD, min_size=n, max_size=n))
    return st.lists(row.map(sep.join), max_size=5)


_JSON_KEYS = {
    "klue_sts_json": ["sentence1", "sentence2", "labels"], "klue_nli_json": ["premise", "hypothesis", "gold_label"],
    "nsmc": ["review", "rating"], "petitions": ["content", "title"], "texts_jsonl": ["text"],
}
_ROW_SHAPES = {"korsts": (b"\t", 7), "klue_sts_csv": (b",", 3), "dacon": (b",", 4), "xnli": (b"\t", 3),
               "texts_csv": (b",", 2), "texts_tsv": (b"\t", 2)}
scalar = (st.none() | st.integers(-3, 30000) | st.floats(allow_nan=True) | st.text(max_size=8)
          | st.sampled_from(["entailment", "contradiction", "neutral", "4.5", "nan", "한 문장이다."]))


def plausible(fmt: str):
    """Inputs close to valid for ``fmt``: the right keys or field counts, random values."""
    if fmt in _ROW_SHAPES:
        return _rows(*_ROW_SHAPES[fmt]).map(lambda rows: b"\n".join(FORMATS[fmt][1] + rows))
    keys = _JSON_KEYS.get(fmt, ["text"])
    value = scalar | st.dictionaries(st.sampled_from(["real-label", "label"]), scalar, max_size=2)
    rec = st.fixed_dictionaries({}, optional={k: value for k in keys})
    if fmt in ("petitions", "texts_jsonl"):
        return st.lists(rec, max_size=5).map(lambda rs: b"\n".join(json.dumps(r).encode() for r in rs))
    return st.lists(rec | scalar, max_size=5).map(lambda rs: json.dumps(rs).encode())


# One format per reader: (file name, header lines that make the input plausible, reader call)
FORMATS = {
    "korsts": ("f.tsv", [b"genre\tfilename\tyear\tid\tscore\tsentence1\tsentence2"], R.read_korsts),
    "klue_sts_csv": ("f.csv", [b"sentence1,sentence2,label"], R.read_klue_sts_csv),
    "klue_sts_json": ("f.json", [], R.read_klue_sts_json),
    "klue_nli_json": ("f.json", [], R.read_klue_nli_json),
    "dacon": ("f.csv", [b"index,premise,hypothesis,label"], R.read_klue_nli_dacon_csv),
    "xnli": ("f.tsv", [b"sentence1\tsentence2\tgold_label"], R.read_xnli_tsv),
    "kowiki": ("wiki_00", [b'<doc id="1" url="u" title="t">', b"t"], R.read_kowiki),
    "nsmc": ("1.json", [], R.read_nsmc_raw),
    "petitions": ("petitions_x", [], R.read_petitions),
    "texts_txt": ("f.txt", [], R.read_texts),
    "texts_jsonl": ("f.jsonl", [], R.read_texts),
    "texts_csv": ("f.csv", [b"id,text"], R.read_texts),
    "texts_tsv": ("f.tsv", [b"id\ttext"], R.read_texts),
    "texts_parquet": ("f.parquet", [], R.read_texts),
    "read_source": ("f", [], lambda p, errors, report: R.read_source(str(p), errors=errors, report=report)),
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8)
    | st.sampled_from(["entailment", "neutral", "contradiction", "nan", "3.5"]),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["review", "content", "text", "premise", "hypothesis", "gold_label",
                                        "sentence1", "sentence2", "labels", "real-label", "label"]), children,
                      max_size=6),
    max_leaves=12,
)


@st.composite
def contents(draw, header: list[bytes]):
    kind = draw(st.sampled_from(["bytes", "lines", "json", "jsonl"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "json":
        return json.dumps(draw(json_values), allow_nan=True).encode()
    if kind == "jsonl":
        return b"\n".join(json.dumps(v).encode() for v in draw(st.lists(json_values, max_size=5)))
    lines = draw(st.lists(st.lists(st.sampled_from(TOKENS), max_size=8).map(b"".join), max_size=6))
    keep_header = draw(st.booleans())
    return b"\n".join((header if keep_header else []) + lines)


@st.composite
def parquet_contents(draw, header):
    """Real parquet files with random columns and values, sometimes cut short, sometimes plain random bytes."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    if draw(st.integers(0, 5)) == 0:
        return draw(st.binary(max_size=300))
    n = draw(st.integers(0, 6))
    columns = draw(st.lists(st.sampled_from(["text", "body", "id"]), min_size=1, max_size=3, unique=True))
    data = {}
    for col in columns:
        if draw(st.booleans()):
            data[col] = pa.array(draw(st.lists(st.none() | st.text(max_size=10), min_size=n, max_size=n)),
                                 type=pa.string())
        else:
            data[col] = pa.array(draw(st.lists(st.integers(-5, 5), min_size=n, max_size=n)), type=pa.int64())
    buf = io.BytesIO()
    pq.write_table(pa.table(data), buf, row_group_size=max(1, draw(st.integers(1, 3))))
    raw = buf.getvalue()
    if draw(st.booleans()):
        raw = raw[: draw(st.integers(0, len(raw)))]
    return raw


class Counter:
    def __init__(self):
        self.cases = 0
        self.data_errors = 0
        self.records = 0


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_only_data_error_escapes(fmt):
    name, header, reader = FORMATS[fmt]
    counter = Counter()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name

        if fmt == "texts_parquet":
            strategy = parquet_contents(header)
        elif fmt in _ROW_SHAPES or fmt in _JSON_KEYS or fmt in ("klue_sts_json", "klue_nli_json"):
            strategy = contents(header) | plausible(fmt)
        else:
            strategy = contents(header)

        @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
        @given(raw=strategy, errors=st.sampled_from(["raise", "skip"]))
        def run(raw, errors):
            counter.cases += 1
            path.write_bytes(raw)
            report = ReadReport()
            try:
                records = list(reader(path, errors=errors, report=report))
            except DataError as e:
                counter.data_errors += 1
                assert e.path is not None  # every error names its file
                return
            counter.records += len(records)
            if errors == "skip":
                assert report.read == len(records)  # every yielded record is counted, every skip too

        run()
    print(f"{fmt}: {counter.cases} cases, {counter.data_errors} DataErrors, {counter.records} records")
    assert counter.cases >= MAX_EXAMPLES // 2
    assert 0 < counter.data_errors < counter.cases or fmt in ("texts_txt", "read_source")
