"""Readers: one function per file format, each yielding typed records and raising only ``DataError``.

Every reader takes ``errors="raise"`` (default: the first bad row raises a ``DataError``
naming file and line) or ``errors="skip"`` (bad rows are skipped and counted in ``report``).
Nothing is ever dropped silently: a skip is always counted, with the first few locations kept.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from kosimcse.data.records import NliPair, StsPair, Text
from kosimcse.errors import DataError

ErrorPolicy = Literal["raise", "skip"]

STS_SCORE_RANGE = (0.0, 5.0)


@dataclass
class ReadReport:
    """Counts of what a reader read and skipped; ``examples`` keeps the first few skip reasons."""

    read: int = 0
    skipped: int = 0
    examples: list[str] = field(default_factory=list)
    max_examples: int = 20

    def skip(self, err: DataError) -> None:
        self.skipped += 1
        if len(self.examples) < self.max_examples:
            self.examples.append(str(err))

    def as_dict(self) -> dict:
        return {"read": self.read, "skipped": self.skipped, "examples": list(self.examples)}


class _Policy:
    """Applies an error policy: raise the DataError, or count it in the report and go on."""

    def __init__(self, errors: ErrorPolicy, report: ReadReport | None):
        if errors not in ("raise", "skip"):
            raise ValueError(f"errors must be 'raise' or 'skip', not {errors!r}")
        self.errors = errors
        self.report = report if report is not None else ReadReport()

    def bad(self, err: DataError) -> None:
        if self.errors == "raise":
            raise err
        self.report.skip(err)

    def ok(self) -> None:
        self.report.read += 1


def read_text_lines(path: str | Path, encoding: str = "utf-8", policy: _Policy | None = None) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, line)`` without the newline; a UTF-8 BOM is dropped.

    Decoding is done line by line so that invalid bytes are reported with their line number;
    under a skip ``policy`` an undecodable line is counted and skipped instead of raising.
    """
    path = Path(path)
    try:
        fh = open(path, "rb")
    except OSError as e:
        raise DataError(f"cannot open: {e.strerror}", path) from None
    with fh:
        for lineno, raw in enumerate(fh, start=1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf") and encoding.replace("-", "").lower() == "utf8":
                raw = raw[3:]
            try:
                line = raw.decode(encoding)
            except UnicodeDecodeError as e:
                hint = " (is it CP949/EUC-KR? pass encoding='cp949')" if encoding.startswith("utf") else ""
                err = DataError(f"invalid {encoding} bytes at byte {e.start} of the line{hint}", path, lineno)
                if policy is None:
                    raise err from None
                policy.bad(err)
                continue
            yield lineno, line.rstrip("\r\n")


def _parse_score(value: str, path: Path, lineno: int, lo: float = STS_SCORE_RANGE[0], hi: float = STS_SCORE_RANGE[1]) -> float:
    try:
        score = float(value)
    except (TypeError, ValueError):
        raise DataError(f"score {value!r} is not a number", path, lineno) from None
    if not math.isfinite(score) or not lo <= score <= hi:
        raise DataError(f"score {value!r} is outside [{lo:g}, {hi:g}]", path, lineno)
    return score


def _require_nonempty(path: Path) -> None:
    try:
        size = path.stat().st_size
    except OSError as e:
        raise DataError(f"cannot open: {e.strerror}", path) from None
    if size == 0:
        raise DataError("file is empty", path)


def read_korsts(path: str | Path, errors: ErrorPolicy = "raise", report: ReadReport | None = None) -> Iterator[StsPair]:
    """KorSTS ``.tsv``: header + 7 tab-separated fields (genre, filename, year, id, score, sentence1, sentence2).

    Quotes are literal characters in KorSTS (``csv.QUOTE_NONE``), so fields are split on tabs only.
    """
    path = Path(path)
    _require_nonempty(path)
    policy = _Policy(errors, report)
    header_seen = False
    columns: dict[str, int] = {}
    for lineno, line in read_text_lines(path, policy=policy):
        if not header_seen:
            header_seen = True
            fields = line.split("\t")
            missing = [c for c in ("score", "sentence1", "sentence2") if c not in fields]
            if missing:
                raise DataError(f"header lacks column(s) {', '.join(missing)}; found {fields}", path, lineno)
            columns = {name: fields.index(name) for name in ("score", "sentence1", "sentence2")}
            n_fields = len(fields)
            continue
        if not line.strip():
            continue
        fields = line.split("\t")
        try:
            if len(fields) != n_fields:
                raise DataError(f"expected {n_fields} tab-separated fields, found {len(fields)}", path, lineno)
            s1, s2 = fields[columns["sentence1"]].strip(), fields[columns["sentence2"]].strip()
            if not s1 or not s2:
                raise DataError("empty sentence", path, lineno)
            score = _parse_score(fields[columns["score"]], path, lineno)
        except DataError as e:
            policy.bad(e)
            continue
        policy.ok()
        yield StsPair(s1, s2, score)
    if not header_seen:
        raise DataError("file has no header line", path)



def _load_json(path: Path):
    import json

    _require_nonempty(path)
    try:
        raw = path.read_bytes()
        if raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(f"invalid UTF-8 bytes at byte {e.start}", path, line) from None
    except ValueError as e:  # json.JSONDecodeError
        raise DataError(f"invalid JSON: {getattr(e, 'msg', e)}", path, getattr(e, "lineno", None)) from None
    except RecursionError:
        raise DataError("invalid JSON: nested too deeply", path) from None


def _json_records(path: Path, kind: str, required: tuple[str, ...], policy: _Policy) -> Iterator[tuple[int, dict]]:
    """``(index, record)`` of a JSON list of objects; a non-object or a record lacking a key goes to the policy.

    The JSON has no line numbers per record, so errors name the 1-based record index as ``line``.
    """
    data = _load_json(path)
    if not isinstance(data, list):
        raise DataError(f"expected a JSON list of {kind} records", path)
    for index, rec in enumerate(data, start=1):
        if not isinstance(rec, dict):
            policy.bad(DataError(f"record {index} is not an object", path, index))
            continue
        missing = [k for k in required if k not in rec]
        if missing:
            policy.bad(DataError(f"record {index} lacks {', '.join(missing)}", path, index))
            continue
        yield index, rec


def read_klue_sts_json(path: str | Path, errors: ErrorPolicy = "raise", report: ReadReport | None = None) -> Iterator[StsPair]:
    """Official KLUE-STS JSON (a list of objects with sentence1, sentence2, labels.real-label / labels.label).

    The JSON has no line numbers per record, so errors name the record index as ``line`` (1-based).
    """
    path = Path(path)
    policy = _Policy(errors, report)
    for index, rec in _json_records(path, "KLUE-STS", ("sentence1", "sentence2", "labels"), policy):
        try:
            labels = rec["labels"] if isinstance(rec["labels"], dict) else {}
            value = labels.get("real-label", labels.get("label"))
            s1, s2 = str(rec["sentence1"]).strip(), str(rec["sentence2"]).strip()
            if not s1 or not s2:
                raise DataError(f"record {index} has an empty sentence", path, index)
            score = _parse_score(value, path, index)
        except DataError as e:
            policy.bad(e)
            continue
        policy.ok()
        yield StsPair(s1, s2, score)


def read_csv_records(path: str | Path, required: tuple[str, ...], delimiter: str = ",", encoding: str = "utf-8",
                     policy: _Policy | None = None, quoting: int = csv.QUOTE_MINIMAL) -> Iterator[tuple[int, dict[str, str]]]:
    """Ordinary quoted CSV/TSV with a header: yield ``(line_number, row_dict)``.

    Rows with a wrong field count are reported (or skipped under a skip policy); a missing
    required column is always fatal, since no row could be read.
    """
    path = Path(path)
    _require_nonempty(path)
    policy = policy or _Policy("raise", None)
    lines = read_text_lines(path, encoding=encoding, policy=policy)
    # csv needs an iterator of strings; keep the physical line number of each record's first line.
    current = {"lineno": 0}

    def text_iter():
        for lineno, line in lines:
            current["lineno"] = lineno
            yield line

    reader = csv.reader(text_iter(), delimiter=delimiter, quoting=quoting)
    try:
        header = next(reader)
    except StopIteration:
        raise DataError("file has no header line", path) from None
    except csv.Error as e:
        raise DataError(f"unreadable header: {e}", path, 1) from None
    header = [h.strip() for h in header]
    missing = [c for c in required if c not in header]
    if missing:
        raise DataError(f"missing column(s) {', '.join(missing)}; header is {header}", path, current["lineno"])
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            policy.bad(DataError(f"malformed CSV: {e}", path, current["lineno"]))
            continue
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(header):
            policy.bad(DataError(f"expected {len(header)} fields, found {len(row)}", path, current["lineno"]))
            continue
        yield current["lineno"], dict(zip(header, row))


def read_klue_sts_csv(path: str | Path, errors: ErrorPolicy = "raise", report: ReadReport | None = None) -> Iterator[StsPair]:
    """KLUE-STS CSV copy (``sentence1,sentence2,label`` with label = real-label, 0–5)."""
    path = Path(path)
    policy = _Policy(errors, report)
    for lineno, row in read_csv_records(path, ("sentence1", "sentence2", "label"), policy=policy):
        try:
            s1, s2 = row["sentence1"].strip(), row["sentence2"].strip()
            if not s1 or not s2:
                raise DataError("empty sentence", path, lineno)
            score = _parse_score(row["label"], path, lineno)
        except DataError as e:
            policy.bad(e)
            continue
        policy.ok()
        yield StsPair(s1, s2, score)


# ---------------------------------------------------------------------------------------------
# NLI readers
# ---------------------------------------------------------------------------------------------

NLI_LABELS = ("entailment", "neutral", "contradiction")
# The DACON copy of KLUE-NLI: rows 0..24,997 are the KLUE-NLI train split, 24,998.. the official dev split.
DACON_TRAIN_ROWS = 24_998


def _nli_pair(premise, hypothesis, label, path: Path, lineno: int):
    if not isinstance(premise, str) or not isinstance(hypothesis, str) or not isinstance(label, str):
        raise DataError("premise, hypothesis and label must be strings", path, lineno)
    premise, hypothesis, label = premise.strip(), hypothesis.strip(), label.strip().lower()
    if not premise or not hypothesis:
        raise DataError("empty premise or hypothesis", path, lineno)
    if label not in NLI_LABELS:
        raise DataError(f"label {label!r} is not one of {', '.join(NLI_LABELS)}", path, lineno)
    return NliPair(premise, hypothesis, label)


def read_klue_nli_json(path: str | Path, errors: ErrorPolicy = "raise", report: ReadReport | None = None):
    """Official KLUE-NLI JSON (a list of objects with premise, hypothesis, gold_label).

    As for KLUE-STS JSON, ``line`` in errors is the 1-based record index.
    """
    path = Path(path)
    policy = _Policy(errors, report)
    for index, rec in _json_records(path, "KLUE-NLI", ("premise", "hypothesis", "gold_label"), policy):
        try:
            pair = _nli_pair(rec["premise"], rec["hypothesis"], rec["gold_label"], path, index)
        except DataError as e:
            policy.bad(e)
            continue
        policy.ok()
        yield pair


def read_klue_nli_dacon_csv(path: str | Path, split: Literal["train", "dev", "all"] = "train",
                            errors: ErrorPolicy = "raise", report: ReadReport | None = None,
                            encoding: str = "cp949"):
    """DACON copy of KLUE-NLI (``index,premise,hypothesis,label``, CP949-encoded).

    ``split="train"`` yields only rows with index < 24,998 (KLUE-NLI train), ``"dev"`` only the
    rest (KLUE-NLI dev), so the dev rows can never leak into training by accident.
    The split is decided by the ``index`` column, not by position, so a skipped bad row cannot shift it.
    """
    if split not in ("train", "dev", "all"):
        raise ValueError(f"split must be 'train', 'dev' or 'all', not {split!r}")
    path = Path(path)
    policy = _Policy(errors, report)
    if encoding.replace("-", "").lower() == "cp949":
        _refuse_utf8(path)
    for lineno, row in read_csv_records(path, ("index", "premise", "hypothesis", "label"), encoding=encoding,
                                        policy=policy):
        try:
            try:
                index = int(row["index"])
            except ValueError:
                raise DataError(f"index {row['index']!r} is not an integer", path, lineno) from None
            if index < 0:
                raise DataError(f"index {index} is negative", path, lineno)
            pair = _nli_pair(row["premise"], row["hypothesis"], row["label"], path, lineno)
        except DataError as e:
            policy.bad(e)
            continue
        is_train = index < DACON_TRAIN_ROWS
        if split == "all" or (split == "train") == is_train:
            policy.ok()
            yield pair


def _refuse_utf8(path: Path, probe: int = 1 << 16) -> None:
    """Fail early on a UTF-8 file where CP949 is expected: read as CP949 it would decode into silent mojibake."""
    import codecs

    try:
        with open(path, "rb") as fh:
            head = fh.read(probe)
    except OSError as e:
        raise DataError(f"cannot open: {e.strerror}", path) from None
    if head.isascii():
        return
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return  # not UTF-8: CP949 decoding will tell whether it is valid CP949
    first_non_ascii = next(i for i, b in enumerate(head) if b >= 0x80)
    line = head[:first_non_ascii].count(b"\n") + 1
    raise DataError("file is UTF-8, not CP949 (the DACON KLUE-NLI file is CP949); pass encoding='utf-8'",
                    path, line)


def _read_tsv_no_quotes(path: Path, required: tuple[str, ...], policy: _Policy) -> Iterator[tuple[int, dict[str, str]]]:
    """Header + tab-separated fields where quotes are literal (``csv.QUOTE_NONE``): yield ``(line, row)``."""
    _require_nonempty(path)
    header: list[str] | None = None
    for lineno, line in read_text_lines(path, policy=policy):
        if header is None:
            header = [h.strip() for h in line.split("\t")]
            missing = [c for c in required if c not in header]
            if missing:
                raise DataError(f"missing column(s) {', '.join(missing)}; header is {header}", path, lineno)
            continue
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != len(header):
            policy.bad(DataError(f"expected {len(header)} tab-separated fields, found {len(fields)}", path, lineno))
            continue
        yield lineno, dict(zip(header, fields))
    if header is None:
        raise DataError("file has no header line", path)


def read_xnli_tsv(path: str | Path, errors: ErrorPolicy = "raise", report: ReadReport | None = None):
    """KorNLI / XNLI ``.tsv`` (``sentence1, sentence2, gold_label``; quotes are literal text)."""
    path = Path(path)
    policy = _Policy(errors, report)
    for lineno, row in _read_tsv_no_quotes(path, ("sentence1", "sentence2", "gold_label"), policy):
        try:
            pair = _nli_pair(row["sentence1"], row["sentence2"], row["gold_label"], path, lineno)
        except DataError as e:
            policy.bad(e)
            continue
        policy.ok()
        yield pair


# ---------------------------------------------------------------------------------------------
# Unlabeled text readers
# ---------------------------------------------------------------------------------------------

_FORMULA_RE = None


def _files_under(path: Path, suffixes: tuple[str, ...] | None = None) -> list[Path]:
    """A file itself, or every regular file under a folder (recursive, sorted), skipping READMEs and hidden files."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError("no such file or directory", path)
    files = []
    for p in sorted(path.rglob("*")):
        if not p.is_file() or any(part.startswith(".") for part in p.relative_to(path).parts):
            continue
        if p.suffix.lower() == ".md" or p.name.upper().startswith("README"):
            continue
        if suffixes is not None and p.suffix.lower() not in suffixes:
            continue
        files.append(p)
    if not files:
        raise DataError("folder holds no data files" + (f" ({', '.join(suffixes)})" if suffixes else ""), path)
    return files


def read_kowiki(path_or_dir: str | Path, errors: ErrorPolicy = "raise", report: ReadReport | None = None):
    """WikiExtractor output (``<doc>`` blocks, title line, one paragraph per line) -> one ``Text`` per paragraph.

    Drops the ``<doc …>``/``</doc>`` lines, the title line after each ``<doc>`` and blank lines, and
    removes the ``formula_N`` placeholders WikiExtractor leaves for math and the brackets it empties. A folder is read recursively in
    sorted order. A paragraph that held only placeholders is yielded empty, so that the corpus stats count it.
    """
    import re


    global _FORMULA_RE
    if _FORMULA_RE is None:
        # no word boundaries: placeholders touch Korean particles ("formula_5인"), units ("sformula_1") and each other
        _FORMULA_RE = re.compile(r"formula_\d+")
    # WikiExtractor removes foreign-script glosses but leaves their brackets: "슈파이어()는", "대지모신(大地母神, )".
    empty_parens = re.compile(r"\(\s*(?:[,;]\s*)*\)")
    dangling_comma = re.compile(r"\s*[,;]\s*\)|\(\s*[,;]\s*")

    def clean(paragraph: str) -> str:
        paragraph = empty_parens.sub("", _FORMULA_RE.sub("", paragraph))
        paragraph = dangling_comma.sub(lambda m: ")" if m.group(0).rstrip().endswith(")") else "(", paragraph)
        return " ".join(paragraph.split())

    policy = _Policy(errors, report)
    for file in _files_under(Path(path_or_dir)):
        _require_nonempty(file)
        expect_title = False
        for lineno, line in read_text_lines(file, policy=policy):
            stripped = line.strip()
            if stripped.startswith("<doc ") or stripped == "<doc>":
                expect_title = True
                continue
            if stripped == "</doc>":
                expect_title = False
                continue
            if not stripped:
                continue
            if expect_title:
                expect_title = False
                continue
            policy.ok()
            yield Text(clean(stripped), "kowiki", lineno)


def read_nsmc_raw(path_or_dir: str | Path, errors: ErrorPolicy = "raise", report: ReadReport | None = None):
    """NSMC raw crawl: per-movie JSON files, each a list of ``{"review", "rating", ...}`` -> one ``Text`` per review.

    ``line`` is the 1-based review index within its file. A file that is not valid JSON is one bad
    row (raised, or skipped and counted); a record without a string ``review`` is one bad row.
    Empty reviews are yielded (empty) so that the corpus stats count them.
    """

    policy = _Policy(errors, report)
    for file in _files_under(Path(path_or_dir), suffixes=(".json",) if Path(path_or_dir).is_dir() else None):
        try:
            data = _load_json(file)
            if not isinstance(data, list):
                raise DataError("expected a JSON list of review objects", file, 1)
        except DataError as e:
            policy.bad(e)
            continue
        for index, rec in enumerate(data, start=1):
            if not isinstance(rec, dict) or not isinstance(rec.get("review"), str):
                policy.bad(DataError(f"record {index} has no string 'review'", file, index))
                continue
            policy.ok()
            yield Text(rec["review"].strip(), "nsmc", index)


def _json_lines(file: Path, policy: _Policy) -> Iterator[tuple[int, dict]]:
    import json

    _require_nonempty(file)
    for lineno, line in read_text_lines(file, policy=policy):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except (ValueError, RecursionError) as e:
            policy.bad(DataError(f"invalid JSON: {getattr(e, 'msg', e)}", file, lineno))
            continue
        if not isinstance(rec, dict):
            policy.bad(DataError("line is not a JSON object", file, lineno))
            continue
        yield lineno, rec


def read_petitions(path_or_dir: str | Path, errors: ErrorPolicy = "raise", report: ReadReport | None = None,
                   field: str = "content"):
    """Blue House petitions: JSON lines with ``title``, ``content``, … -> one ``Text`` per petition body."""

    policy = _Policy(errors, report)
    for file in _files_under(Path(path_or_dir)):
        for lineno, rec in _json_lines(file, policy):
            value = rec.get(field)
            if not isinstance(value, str):
                policy.bad(DataError(f"no string {field!r} field; keys are {sorted(rec)}", file, lineno))
                continue
            policy.ok()
            yield Text(value.strip(), "petitions", lineno)


# ---------------------------------------------------------------------------------------------
# Generic texts: .txt, .jsonl/.json, .csv/.tsv, .parquet, a save_to_disk folder, or a Hub dataset id
# ---------------------------------------------------------------------------------------------

TEXT_SUFFIXES = (".txt", ".jsonl", ".json", ".csv", ".tsv", ".parquet")
_HF_DISK_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
HUB_OFFLINE_HINT = (
    "The Hugging Face Hub is unreachable from here. Offline options: pass a local file "
    "(.txt one text per line, .jsonl, .csv/.tsv, .parquet with a text column), a folder written by "
    "datasets' save_to_disk, or a dataset already in the HF cache with HF_DATASETS_OFFLINE=1."
)


def _is_hf_disk_folder(path: Path) -> bool:
    return path.is_dir() and any((path / m).is_file() for m in _HF_DISK_MARKERS)


def _text_value(value, column: str, path: Path, lineno: int) -> str:
    if not isinstance(value, str):
        raise DataError(f"column {column!r} holds {type(value).__name__}, not text", path, lineno)
    return value.strip()


def _read_plain_lines(path: Path, name: str, policy: _Policy):

    _require_nonempty(path)
    for lineno, line in read_text_lines(path, policy=policy):
        if line.strip():
            policy.ok()
            yield Text(line.strip(), name, lineno)


def _read_jsonl_texts(path: Path, column: str, name: str, policy: _Policy):

    first = True
    for lineno, rec in _json_lines(path, policy):
        if column not in rec:
            err = DataError(f"missing column {column!r}; available: {sorted(rec)}", path, lineno)
            if first:  # the file's layout is wrong, not one row: no row could be read
                raise err
            policy.bad(err)
            continue
        first = False
        try:
            text = _text_value(rec[column], column, path, lineno)
        except DataError as e:
            policy.bad(e)
            continue
        policy.ok()
        yield Text(text, name, lineno)


def _read_json_list_texts(path: Path, column: str, name: str, policy: _Policy):

    data = _load_json(path)
    if not isinstance(data, list):
        raise DataError("expected a JSON list of objects (or JSON lines)", path)
    for index, rec in enumerate(data, start=1):
        if isinstance(rec, str) and column == "text":
            text = rec.strip()
        else:
            try:
                if not isinstance(rec, dict) or column not in rec:
                    keys = sorted(rec) if isinstance(rec, dict) else type(rec).__name__
                    raise DataError(f"record {index} lacks column {column!r}; available: {keys}", path, index)
                text = _text_value(rec[column], column, path, index)
            except DataError as e:
                policy.bad(e)
                continue
        policy.ok()
        yield Text(text, name, index)


def _read_delimited_texts(path: Path, column: str, name: str, policy: _Policy, delimiter: str):

    # TSV files in this field (KorSTS, KorNLI) use quotes as literal text: never parse them as quoting.
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    for lineno, row in read_csv_records(path, (column,), delimiter=delimiter, policy=policy, quoting=quoting):
        policy.ok()
        yield Text(row[column].strip(), name, lineno)


def _read_parquet_texts(path: Path, column: str, name: str, policy: _Policy, batch_size: int = 8192):
    import pyarrow.parquet as pq

    _require_nonempty(path)
    try:
        pf = pq.ParquetFile(path)
        names = pf.schema_arrow.names
    except Exception as e:  # pyarrow raises several types for a corrupt file
        raise DataError(f"unreadable parquet file: {e}", path) from None
    if column not in names:
        raise DataError(f"missing column {column!r}; available: {names}", path)
    rows_read = 0

    def values():
        nonlocal rows_read
        # iter_batches reads one row group at a time, so a multi-GB file never sits in memory whole.
        for batch in pf.iter_batches(batch_size=batch_size, columns=[column]):
            for value in batch.column(0).to_pylist():
                rows_read += 1
                yield value

    try:
        yield from _value_texts(values(), column, path, name, policy)
    except DataError:
        raise
    except Exception as e:
        raise DataError(f"unreadable parquet data after row {rows_read}: {e}", path, rows_read + 1) from None


def _iter_dataset_texts(ds, column: str, name: str, where: str, policy: _Policy):
    yield from _value_texts((value for batch in ds.iter(batch_size=1000) for value in batch[column]),
                            column, Path(where), name, policy)


def _value_texts(values, column: str, path: Path, name: str, policy: _Policy):
    """Column values -> ``Text`` records numbered from 1; a bad value goes to the policy."""

    for row, value in enumerate(values, start=1):
        try:
            text = _text_value(value, column, path, row)
        except DataError as e:
            policy.bad(e)
            continue
        policy.ok()
        yield Text(text, name, row)


def _read_hf_disk(path: Path, column: str, name: str, policy: _Policy, split: str):
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as e:
        raise DataError(f"not a readable datasets folder: {e}", path) from None
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise DataError(f"split {split!r} not in this DatasetDict; splits: {list(ds)}", path)
        ds = ds[split]
    if column not in ds.column_names:
        raise DataError(f"missing column {column!r}; available: {ds.column_names}", path)
    yield from _iter_dataset_texts(ds.select_columns([column]), column, name, str(path), policy)


def _read_hub(dataset_id: str, column: str, policy: _Policy, split: str):
    from kosimcse.errors import KoSimCSEError

    try:
        import datasets

        # streaming: a Hub corpus of many GB is read record by record, never downloaded whole first.
        ds = datasets.load_dataset(dataset_id, split=split, streaming=True)
        it = iter(ds)
        first = next(it, None)
    except Exception as e:
        raise KoSimCSEError(f"could not load Hugging Face dataset {dataset_id!r} "
                            f"({type(e).__name__}: {str(e)[:200]}). {HUB_OFFLINE_HINT}") from None
    if first is None:
        return
    if column not in first:
        raise DataError(f"missing column {column!r}; available: {sorted(first)}", dataset_id)
    from itertools import chain


    row = 0
    try:
        for rec in chain([first], it):
            row += 1
            try:
                text = _text_value(rec.get(column), column, Path(dataset_id), row)
            except DataError as e:
                policy.bad(e)
                continue
            policy.ok()
            yield Text(text, dataset_id, row)
    except (OSError, ConnectionError) as e:
        raise KoSimCSEError(f"lost the Hub while streaming {dataset_id!r} at row {row}: {e}. {HUB_OFFLINE_HINT}") from None


def _looks_like_hub_id(source: str) -> bool:
    import re

    return bool(re.fullmatch(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?", source)) and not source.endswith(TEXT_SUFFIXES)


def read_texts(source: str | Path, text_column: str = "text", errors: ErrorPolicy = "raise",
               report: ReadReport | None = None, split: str = "train", source_name: str | None = None):
    """Generic unlabeled texts -> ``Text`` records, streamed.

    ``source`` is a ``.txt`` file (one text per line), ``.jsonl``/``.json``, ``.csv``/``.tsv`` or
    ``.parquet`` with a ``text_column``, a folder written by ``datasets.save_to_disk``, a folder of such
    files, or a Hugging Face dataset id (``datasets.load_dataset(..., streaming=True)``).
    A file without a known extension is read as plain lines. Everything streams except a ``.json``
    list, which is parsed whole: use ``.jsonl`` or ``.parquet`` for corpora of many GB.
    """
    policy = _Policy(errors, report)
    path = Path(source)
    name = source_name or (path.name if path.exists() else str(source))
    if not path.exists():
        if isinstance(source, str) and _looks_like_hub_id(source):
            yield from _read_hub(source, text_column, policy, split)
            return
        raise DataError("no such file or directory", path)
    if _is_hf_disk_folder(path):
        yield from _read_hf_disk(path, text_column, name, policy, split)
        return
    if path.is_dir():
        for file in _files_under(path):
            yield from read_texts(file, text_column, errors, policy.report, split, source_name=name)
        return
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        yield from _read_parquet_texts(path, text_column, name, policy)
    elif suffix in (".csv", ".tsv"):
        yield from _read_delimited_texts(path, text_column, name, policy, "\t" if suffix == ".tsv" else ",")
    elif suffix in (".jsonl", ".json"):
        if suffix == ".json" and _first_char(path) == "[":
            yield from _read_json_list_texts(path, text_column, name, policy)
        else:
            yield from _read_jsonl_texts(path, text_column, name, policy)
    else:
        yield from _read_plain_lines(path, name, policy)


def _first_char(path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError as e:
        raise DataError(f"cannot open: {e.strerror}", path) from None
    head = head.removeprefix(b"\xef\xbb\xbf").lstrip()
    return chr(head[0]) if head else ""


# ---------------------------------------------------------------------------------------------
# Source specs: ``kind:PATH`` or a plain path, auto-detected
# ---------------------------------------------------------------------------------------------

SOURCE_KINDS = ("kowiki", "nsmc", "petitions", "korsts", "klue-sts", "text", "hf")


def _head(path: Path, n: int = 4096) -> str:
    try:
        with open(path, "rb") as fh:
            return fh.read(n).removeprefix(b"\xef\xbb\xbf").decode("utf-8", errors="replace")
    except OSError as e:
        raise DataError(f"cannot open: {e.strerror}", path) from None


def detect_kind(path: str | Path) -> str:
    """Guess a source's kind from its layout and first bytes (see ``SOURCE_KINDS``)."""
    path = Path(path)
    if not path.exists():
        if _looks_like_hub_id(str(path)):
            return "hf"
        raise DataError("no such file or directory", path)
    if _is_hf_disk_folder(path):
        return "text"
    first = _files_under(path)[0] if path.is_dir() else path
    head = _head(first)
    first_line = head.split("\n", 1)[0]
    suffix = first.suffix.lower()
    if first_line.lstrip().startswith("<doc "):
        return "kowiki"
    if suffix == ".tsv" and {"score", "sentence1", "sentence2"} <= set(first_line.strip().split("\t")):
        return "korsts"
    if suffix == ".csv" and {"sentence1", "sentence2", "label"} <= {c.strip() for c in first_line.split(",")}:
        return "klue-sts"
    if suffix == ".json" and head.lstrip().startswith("["):
        if '"review"' in head:
            return "nsmc"
        if '"sentence1"' in head and '"labels"' in head:
            return "klue-sts"
    if suffix in ("", ".jsonl") and first_line.lstrip().startswith("{") and '"content"' in first_line:
        return "petitions"
    return "text"


def parse_source_spec(spec: str, data_dir: str | Path | None = None) -> tuple[str, str]:
    """``kind:PATH`` -> ``(kind, path)``; a plain path gets its kind from ``detect_kind``.

    A relative PATH that does not exist is also looked up under ``data_dir``.
    """
    kind, sep, target = spec.partition(":")
    if not sep or kind not in SOURCE_KINDS:
        kind, target = "", spec
    if kind != "hf" and data_dir is not None and not Path(target).exists() and (Path(data_dir) / target).exists():
        target = str(Path(data_dir) / target)
    return (kind or detect_kind(target)), target


def read_source(spec: str, errors: ErrorPolicy = "raise", report: ReadReport | None = None,
                data_dir: str | Path | None = None, text_column: str = "text", name: str | None = None):
    """Read any text source spec (``kowiki:PATH``, ``nsmc:PATH``, ``petitions:PATH``, ``korsts:PATH``,
    ``klue-sts:PATH``, ``text:PATH``, ``hf:DATASET_ID`` or a plain path) as ``Text`` records.

    For labelled STS files both sentences of every pair are yielded and the scores dropped.
    ``source`` on each record is ``name`` (default: the kind).
    """

    kind, target = parse_source_spec(spec, data_dir)
    label = name or kind
    if kind in ("korsts", "klue-sts"):
        policy = _Policy(errors, report)
        for file in _files_under(Path(target)):
            if kind == "korsts":
                pairs = read_korsts(file, errors, policy.report)
            elif file.suffix.lower() == ".json":
                pairs = read_klue_sts_json(file, errors, policy.report)
            else:
                pairs = read_klue_sts_csv(file, errors, policy.report)
            for pair in pairs:
                yield Text(pair.sentence1, label)
                yield Text(pair.sentence2, label)
        return
    if kind in ("hf", "text"):
        records = read_texts(target, text_column, errors, report, source_name=label)
    else:
        reader = {"kowiki": read_kowiki, "nsmc": read_nsmc_raw, "petitions": read_petitions}[kind]
        records = reader(target, errors, report)
    for rec in records:
        yield Text(rec.text, label, rec.line) if rec.source != label else rec
