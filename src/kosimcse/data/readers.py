"""Readers: one function per file format, each yielding typed records and raising only ``DataError``.

Every reader takes ``errors="raise"`` (default: the first bad row raises a ``DataError``
naming file and line) or ``errors="skip"`` (bad rows are skipped and counted in ``report``).
Nothing is ever dropped silently: a skip is always counted, with the first few locations kept.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from kosimcse.data.records import StsPair
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


def read_klue_sts_json(path: str | Path, errors: ErrorPolicy = "raise", report: ReadReport | None = None) -> Iterator[StsPair]:
    """Official KLUE-STS JSON (a list of objects with sentence1, sentence2, labels.real-label / labels.label).

    The JSON has no line numbers per record, so errors name the record index as ``line`` (1-based).
    """
    path = Path(path)
    policy = _Policy(errors, report)
    data = _load_json(path)
    if not isinstance(data, list):
        raise DataError("expected a JSON list of KLUE-STS records", path)
    for index, rec in enumerate(data, start=1):
        try:
            if not isinstance(rec, dict):
                raise DataError(f"record {index} is not an object", path, index)
            missing = [k for k in ("sentence1", "sentence2", "labels") if k not in rec]
            if missing:
                raise DataError(f"record {index} lacks {', '.join(missing)}", path, index)
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
                     policy: _Policy | None = None) -> Iterator[tuple[int, dict[str, str]]]:
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

    reader = csv.reader(text_iter(), delimiter=delimiter)
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
