"""Readers, one per file format: a bad row raises a ``DataError`` naming file and line, or is skipped and counted."""

from __future__ import annotations

import codecs
import csv
import html
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from itertools import chain
from pathlib import Path
from typing import Literal

from kosimcse.data.records import NliPair, StsPair, Text
from kosimcse.errors import DataError, KoSimCSEError

ErrorPolicy = Literal["raise", "skip"]

BOM = b"\xef\xbb\xbf"
NLI_LABELS = ("entailment", "neutral", "contradiction")
# The DACON copy of KLUE-NLI: rows 0..24,997 are the KLUE-NLI train split, 24,998.. the official dev split.
DACON_TRAIN_ROWS = 24_998


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


def _emit(policy: _Policy, rows: Iterable[tuple], build: Callable) -> Iterator:
    """The one record loop: ``build(*row)`` per row; its DataError goes to the policy, a None is passed over."""
    for row in rows:
        try:
            record = build(*row)
        except DataError as e:
            policy.bad(e)
            continue
        if record is not None:
            policy.ok()
            yield record


def read_text_lines(path: str | Path, encoding: str = "utf-8",
                    policy: _Policy | None = None) -> Iterator[tuple[int, str]]:
    """``(line_number, line)`` without newline or UTF-8 BOM, decoded line by line so bad bytes get a line number."""
    path, policy = Path(path), policy or _Policy("raise", None)
    try:
        fh = open(path, "rb")
    except OSError as e:
        raise DataError(f"cannot open: {e.strerror}", path) from None
    with fh:
        for lineno, raw in enumerate(fh, start=1):
            if lineno == 1 and encoding.replace("-", "").lower() == "utf8":
                raw = raw.removeprefix(BOM)
            try:
                line = raw.decode(encoding)
            except UnicodeDecodeError as e:
                hint = " (is it CP949/EUC-KR? pass encoding='cp949')" if encoding.startswith("utf") else ""
                policy.bad(DataError(f"invalid {encoding} bytes at byte {e.start} of the line{hint}", path, lineno))
                continue
            yield lineno, line.rstrip("\r\n")


def _head(path: Path, n: int = 4096) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(n)
    except OSError as e:
        raise DataError(f"cannot open: {e.strerror}", path) from None


def _require_nonempty(path: Path) -> None:
    if not _head(path, 1):
        raise DataError("file is empty", path)


def read_csv_records(path: str | Path, required: tuple[str, ...], delimiter: str = ",", encoding: str = "utf-8",
                     policy: _Policy | None = None) -> Iterator[tuple[int, dict]]:
    """Delimited file with a header -> ``(line_number, row_dict)``; a missing required column is always fatal.
    A tab splits on tabs only: TSV files in this field (KorSTS, KorNLI) use quotes as literal text."""
    path = Path(path)
    _require_nonempty(path)
    policy = policy or _Policy("raise", None)
    lineno = 0  # the physical line of the record being parsed

    def lines():
        nonlocal lineno
        for lineno, line in read_text_lines(path, encoding=encoding, policy=policy):
            yield line

    rows = (line.split("\t") for line in lines()) if delimiter == "\t" else csv.reader(lines(), delimiter=delimiter)
    header = None
    while True:
        try:
            row = next(rows, None)
        except csv.Error as e:
            if header is None:
                raise DataError(f"unreadable header: {e}", path, 1) from None
            policy.bad(DataError(f"malformed CSV: {e}", path, lineno))
            continue
        if row is None:
            break
        if header is None:
            header = [h.strip() for h in row]
            missing = [c for c in required if c not in header]
            if missing:
                raise DataError(f"missing column(s) {', '.join(missing)}; header is {header}", path, lineno)
        elif row and any(c.strip() for c in row):
            if len(row) == len(header):
                yield lineno, dict(zip(header, row))
            else:
                policy.bad(DataError(f"expected {len(header)} fields, found {len(row)}", path, lineno))
    if header is None:
        raise DataError("file has no header line", path)


def _json_list(path: Path, kind: str) -> list:
    """A whole JSON file that must hold a list; errors are located by line where the decoder knows it."""
    _require_nonempty(path)
    raw = path.read_bytes().removeprefix(BOM)
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise DataError(f"invalid UTF-8 bytes at byte {e.start}", path, raw[: e.start].count(b"\n") + 1) from None
    except ValueError as e:  # json.JSONDecodeError
        raise DataError(f"invalid JSON: {getattr(e, 'msg', e)}", path, getattr(e, "lineno", None)) from None
    except RecursionError:
        raise DataError("invalid JSON: nested too deeply", path) from None
    if not isinstance(data, list):
        raise DataError(f"expected a JSON list of {kind}", path)
    return data


def _fields(rec, keys: tuple[str, ...], path: Path, index: int) -> list:
    """The values of ``keys`` in a record (a JSON list's: ``index`` is 1-based)."""
    if not isinstance(rec, dict):
        raise DataError(f"record {index} is not an object", path, index)
    if missing := [k for k in keys if k not in rec]:
        raise DataError(f"record {index} lacks {', '.join(missing)}", path, index)
    return [rec[k] for k in keys]


def _json_lines(file: Path, policy: _Policy) -> Iterator[tuple[int, dict]]:
    _require_nonempty(file)
    for lineno, line in read_text_lines(file, policy=policy):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except (ValueError, RecursionError) as e:
            policy.bad(DataError(f"invalid JSON: {getattr(e, 'msg', e)}", file, lineno))
            continue
        if isinstance(rec, dict):
            yield lineno, rec
        else:
            policy.bad(DataError("line is not a JSON object", file, lineno))


# STS and NLI pairs


def _sts_pair(s1, s2, score, path: Path, line: int) -> StsPair:
    s1, s2 = str(s1).strip(), str(s2).strip()
    if not s1 or not s2:
        raise DataError("empty sentence", path, line)
    try:
        value = float(score)
    except (TypeError, ValueError):
        raise DataError(f"score {score!r} is not a number", path, line) from None
    if not math.isfinite(value) or not 0.0 <= value <= 5.0:
        raise DataError(f"score {score!r} is outside [0, 5]", path, line)
    return StsPair(s1, s2, value)


def _klue_sts_pair(s1, s2, labels, path: Path, line: int) -> StsPair:
    labels = labels if isinstance(labels, dict) else {}
    return _sts_pair(s1, s2, labels.get("real-label", labels.get("label")), path, line)


def _record_reader(make: Callable, columns: tuple[str, ...], delimiter: str | None, doc: str) -> Callable:
    """A reader of ``make(*columns, path, line)`` records from a JSON list (``delimiter`` None; ``line`` is the
    record index) or a delimited file with a header."""

    def read(path: str | Path, errors: ErrorPolicy = "raise", report: ReadReport | None = None):
        path, policy = Path(path), _Policy(errors, report)
        if delimiter is None:
            rows = enumerate(_json_list(path, "records"), start=1)
        else:
            rows = read_csv_records(path, columns, delimiter, policy=policy)
        yield from _emit(policy, rows, lambda line, rec: make(*_fields(rec, columns, path, line), path, line))

    read.__doc__ = doc
    return read


read_korsts = _record_reader(_sts_pair, ("sentence1", "sentence2", "score"), "\t", "KorSTS ``.tsv`` (score, pair).")
read_klue_sts_json = _record_reader(_klue_sts_pair, ("sentence1", "sentence2", "labels"), None,
                                    "Official KLUE-STS JSON (gold: ``labels.real-label``, else ``.label``).")
read_klue_sts_csv = _record_reader(_sts_pair, ("sentence1", "sentence2", "label"), ",",
                                   "KLUE-STS CSV copy (``sentence1,sentence2,label`` with label = real-label, 0-5).")

# The one dispatch of STS files by format name or suffix (eval tasks, read_source, STS training).
STS_READERS = {"korsts": read_korsts, "klue-json": read_klue_sts_json, "klue-csv": read_klue_sts_csv}
_STS_SUFFIXES = {".tsv": "korsts", ".json": "klue-json", ".csv": "klue-csv"}


def _pick_reader(what: str, readers: dict, suffixes: dict, path: str | Path, kind: str) -> Callable:
    if kind == "auto":
        kind = suffixes.get(Path(path).suffix.lower(), "")
        if not kind:
            raise KoSimCSEError(f"cannot tell the {what} format of {path} from its suffix ({', '.join(suffixes)}); "
                                f"pass reader={' or '.join(readers)}")
    if kind not in readers:
        raise KoSimCSEError(f"unknown {what} reader {kind!r}; choose one of {', '.join(readers)}")
    return readers[kind]


def sts_reader(path: str | Path, kind: str = "auto") -> Callable[..., Iterator[StsPair]]:
    """The reader for an STS file: ``kind`` is a key of ``STS_READERS``, or ``auto`` to pick by the file suffix."""
    return _pick_reader("STS", STS_READERS, _STS_SUFFIXES, path, kind)


def _nli_pair(premise, hypothesis, label, path: Path, lineno: int) -> NliPair:
    if not isinstance(premise, str) or not isinstance(hypothesis, str) or not isinstance(label, str):
        raise DataError("premise, hypothesis and label must be strings", path, lineno)
    premise, hypothesis, label = premise.strip(), hypothesis.strip(), label.strip().lower()
    if not premise or not hypothesis:
        raise DataError("empty premise or hypothesis", path, lineno)
    if label not in NLI_LABELS:
        raise DataError(f"label {label!r} is not one of {', '.join(NLI_LABELS)}", path, lineno)
    return NliPair(premise, hypothesis, label)


read_klue_nli_json = _record_reader(_nli_pair, ("premise", "hypothesis", "gold_label"), None,
                                    "Official KLUE-NLI JSON (premise, hypothesis, gold_label).")
read_xnli_tsv = _record_reader(_nli_pair, ("sentence1", "sentence2", "gold_label"), "\t",
                               "KorNLI / XNLI ``.tsv`` (sentence1, sentence2, gold_label).")


def read_klue_nli_dacon_csv(path: str | Path, split: Literal["train", "dev", "all"] = "train",
                            errors: ErrorPolicy = "raise", report: ReadReport | None = None,
                            encoding: str = "cp949"):
    """DACON copy of KLUE-NLI (``index,premise,hypothesis,label``, CP949). ``split`` goes by the ``index`` column
    (< 24,998: KLUE-NLI train, else dev), so dev rows never leak into training, even after a skipped row."""
    if split not in ("train", "dev", "all"):
        raise ValueError(f"split must be 'train', 'dev' or 'all', not {split!r}")
    path, policy = Path(path), _Policy(errors, report)
    if encoding.replace("-", "").lower() == "cp949":
        _refuse_utf8(path)

    def build(line, row):
        try:
            index = int(row["index"])
        except ValueError:
            raise DataError(f"index {row['index']!r} is not an integer", path, line) from None
        if index < 0:
            raise DataError(f"index {index} is negative", path, line)
        pair = _nli_pair(row["premise"], row["hypothesis"], row["label"], path, line)
        return pair if split == "all" or (split == "train") == (index < DACON_TRAIN_ROWS) else None

    rows = read_csv_records(path, ("index", "premise", "hypothesis", "label"), encoding=encoding, policy=policy)
    yield from _emit(policy, rows, build)


def _refuse_utf8(path: Path, probe: int = 1 << 16) -> None:
    """Fail early on a UTF-8 file where CP949 is expected: read as CP949 it would decode into silent mojibake."""
    head = _head(path, probe)
    if head.isascii():
        return
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return  # not UTF-8: CP949 decoding will tell whether it is valid CP949
    line = head[: next(i for i, b in enumerate(head) if b >= 0x80)].count(b"\n") + 1
    raise DataError("file is UTF-8, not CP949 (the DACON KLUE-NLI file is CP949); pass encoding='utf-8'", path, line)


# The one dispatch of NLI files (NLI training). The DACON reader's default split is "train": dev rows stay out.
NLI_READERS = {"klue-json": read_klue_nli_json, "klue-dacon": read_klue_nli_dacon_csv, "xnli": read_xnli_tsv}
_NLI_SUFFIXES = {".json": "klue-json", ".csv": "klue-dacon", ".tsv": "xnli"}


def nli_reader(path: str | Path, kind: str = "auto") -> Callable[..., Iterator[NliPair]]:
    """The reader for an NLI file: ``kind`` is a key of ``NLI_READERS``, or ``auto`` to pick by the file suffix."""
    return _pick_reader("NLI", NLI_READERS, _NLI_SUFFIXES, path, kind)


# Unlabeled text corpora

# WikiExtractor leaves formula_N for math (touching particles and units: "formula_5인", "sformula_1") and
# empties foreign-script glosses but keeps their brackets: "슈파이어()는", "대지모신(大地母神, )".
_FORMULA_RE = re.compile(r"formula_\d+")
_EMPTY_PARENS_RE = re.compile(r"\(\s*(?:[,;]\s*)*\)")
_DANGLING_COMMA_RE = re.compile(r"\s*[,;]\s*\)|\(\s*[,;]\s*")
_DOC_ID, _DOC_TITLE = re.compile(r'<doc\b[^>]*\bid="([^"]*)"'), re.compile(r'\btitle="([^"]*)"')


def _missing_column(column: str, rec, where, line: int | None) -> DataError:
    keys = sorted(rec) if isinstance(rec, dict) else type(rec).__name__
    return DataError(f"missing column {column!r}; available: {keys}", where, line)


def _text(line: int, rec, column: str, where, name: str) -> Text:
    if not isinstance(rec, dict) or column not in rec:
        raise _missing_column(column, rec, where, line)
    if not isinstance(rec[column], str):
        raise DataError(f"column {column!r} holds {type(rec[column]).__name__}, not text", where, line)
    return Text(rec[column].strip(), name, line)


def _files_under(path: Path, suffixes: tuple[str, ...] | None = None) -> list[Path]:
    """A file itself, or the files (of ``suffixes``) under a folder, recursive, sorted, without READMEs and dotfiles."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError("no such file or directory", path)
    files = [p for p in sorted(path.rglob("*"))
             if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
             and p.suffix.lower() != ".md" and not p.name.upper().startswith("README")
             and (suffixes is None or p.suffix.lower() in suffixes)]
    if not files:
        raise DataError("folder holds no data files" + (f" ({', '.join(suffixes)})" if suffixes else ""), path)
    return files


def _clean_wiki(paragraph: str) -> str:
    paragraph = _EMPTY_PARENS_RE.sub("", _FORMULA_RE.sub("", paragraph))
    paragraph = _DANGLING_COMMA_RE.sub(lambda m: ")" if m.group(0).rstrip().endswith(")") else "(", paragraph)
    return " ".join(paragraph.split())


def kowiki_paragraphs(path_or_dir: str | Path, policy: _Policy) -> Iterator[tuple[tuple | None, Text]]:
    """WikiExtractor output (``<doc>`` blocks, title line, paragraph lines) -> ``(article, Text)`` per cleaned
    paragraph, ``article`` = ``(file, line, id, title)`` of the last ``<doc id=...>`` header (None before one)."""
    for file in _files_under(Path(path_or_dir)):
        _require_nonempty(file)
        article, expect_title = None, False
        for lineno, line in read_text_lines(file, policy=policy):
            stripped = line.strip()
            if stripped.startswith("<doc ") or stripped in ("<doc>", "</doc>"):
                expect_title = stripped != "</doc>"
                if doc_id := _DOC_ID.match(stripped):
                    title = _DOC_TITLE.search(stripped)
                    article = (file, lineno, doc_id.group(1), html.unescape(title.group(1)) if title else None)
            elif stripped and expect_title:
                expect_title = False
            elif stripped:
                policy.ok()
                yield article, Text(_clean_wiki(stripped), "kowiki", lineno)


def read_kowiki(path_or_dir: str | Path, errors: ErrorPolicy = "raise", report: ReadReport | None = None):
    """One cleaned ``Text`` per kowiki paragraph; one that held only placeholders is yielded empty, for the stats."""
    for _, text in kowiki_paragraphs(path_or_dir, _Policy(errors, report)):
        yield text


def read_nsmc_raw(path_or_dir: str | Path, errors: ErrorPolicy = "raise", report: ReadReport | None = None):
    """NSMC raw crawl: per-movie JSON lists of ``{"review", "rating", ...}`` -> one ``Text`` per review (``line``: its
    index). A file that is not a JSON list is one bad row; empty reviews are yielded, for the corpus stats."""
    policy = _Policy(errors, report)
    for file in _files_under(Path(path_or_dir), suffixes=(".json",)):
        try:
            data = _json_list(file, "review objects")
        except DataError as e:
            policy.bad(e)
            continue
        yield from _emit(policy, enumerate(data, start=1), partial(_text, column="review", where=file, name="nsmc"))


def read_petitions(path_or_dir: str | Path, errors: ErrorPolicy = "raise", report: ReadReport | None = None):
    """Blue House petitions: JSON lines with ``title``, ``content``, … -> one ``Text`` per petition body."""
    policy = _Policy(errors, report)
    for file in _files_under(Path(path_or_dir)):
        build = partial(_text, column="content", where=file, name="petitions")
        yield from _emit(policy, _json_lines(file, policy), build)


# Generic texts: .txt, .jsonl/.json, .csv/.tsv, .parquet, a save_to_disk folder, or a Hub dataset id

_HF_DISK_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
_HUB_ID_RE = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")
HUB_OFFLINE_HINT = ("The Hugging Face Hub is unreachable from here. Offline options: pass a local file (.txt one "
                    "text per line, .jsonl, .csv/.tsv, .parquet with a text column), a folder written by datasets' "
                    "save_to_disk, or a dataset already in the HF cache with HF_DATASETS_OFFLINE=1.")


def _is_hf_disk_folder(path: Path) -> bool:
    return path.is_dir() and any((path / m).is_file() for m in _HF_DISK_MARKERS)


def _texts(policy: _Policy, rows: Iterable[tuple[int, object]], column: str, where, name: str) -> Iterator[Text]:
    """``(line, record)`` rows -> ``Text`` of each record's ``column``; a first object without it is fatal (the file's
    layout or the column asked for is wrong), a later one is a bad row."""
    rows = iter(rows)
    first = next(rows, None)
    if first is not None and isinstance(first[1], dict) and column not in first[1]:
        raise _missing_column(column, first[1], where, first[0])
    build = partial(_text, column=column, where=where, name=name)
    yield from _emit(policy, chain([first] if first else [], rows), build)


def _plain_rows(path: Path, column: str, policy: _Policy):
    _require_nonempty(path)
    return ((n, {column: line}) for n, line in read_text_lines(path, policy=policy) if line.strip())


def _json_rows(path: Path, column: str, policy: _Policy):
    """A ``.json`` list of objects (or of strings, as the ``text`` column); any other ``.json`` is JSON lines."""
    if not _head(path).removeprefix(BOM).lstrip().startswith(b"["):
        return _json_lines(path, policy)
    records = _json_list(path, "objects (or JSON lines)")
    return enumerate(({"text": r} if isinstance(r, str) else r for r in records), start=1)


def _parquet_rows(path: Path, column: str, policy: _Policy, batch_size: int = 8192):
    import pyarrow.parquet as pq

    _require_nonempty(path)
    try:
        pf = pq.ParquetFile(path)
        names = pf.schema_arrow.names
    except Exception as e:  # pyarrow raises several types for a corrupt file
        raise DataError(f"unreadable parquet file: {e}", path) from None
    if column not in names:
        raise DataError(f"missing column {column!r}; available: {names}", path)
    row = 0
    try:  # one row group at a time, so a multi-GB file never sits in memory whole
        for batch in pf.iter_batches(batch_size=batch_size, columns=[column]):
            for rec in batch.to_pylist():
                row += 1
                yield row, rec
    except Exception as e:
        raise DataError(f"unreadable parquet data after row {row}: {e}", path, row + 1) from None


def _hf_disk_rows(path: Path, column: str, split: str):
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
    return enumerate(ds.select_columns([column]), start=1)


def _hub_rows(dataset_id: str, split: str):
    import datasets

    row = 0
    try:  # streaming: a Hub corpus of many GB is read record by record, never downloaded whole first
        for row, rec in enumerate(datasets.load_dataset(dataset_id, split=split, streaming=True), start=1):
            yield row, rec
    except Exception as e:
        raise KoSimCSEError(f"could not read Hugging Face dataset {dataset_id!r} after row {row} "
                            f"({type(e).__name__}: {str(e)[:200]}). {HUB_OFFLINE_HINT}") from None


# The one dispatch of text files by suffix; any other file is read as plain lines.
_TEXT_ROWS = {
    ".parquet": _parquet_rows,
    ".tsv": lambda path, column, policy: read_csv_records(path, (column,), "\t", policy=policy),
    ".csv": lambda path, column, policy: read_csv_records(path, (column,), ",", policy=policy),
    ".jsonl": lambda path, column, policy: _json_lines(path, policy),
    ".json": _json_rows,
}
TEXT_SUFFIXES = (".txt", *_TEXT_ROWS)


def _looks_like_hub_id(source: str) -> bool:
    return bool(_HUB_ID_RE.fullmatch(source)) and not source.endswith(TEXT_SUFFIXES)


def read_texts(source: str | Path, text_column: str = "text", errors: ErrorPolicy = "raise",
               report: ReadReport | None = None, split: str = "train", source_name: str | None = None):
    """Unlabeled texts, streamed: a ``.txt`` file (one text per line; also any unknown suffix), ``.jsonl``/``.json``,
    ``.csv``/``.tsv`` or ``.parquet`` with a ``text_column``, a ``save_to_disk`` folder, a folder of such files,
    or a Hub dataset id. Only a ``.json`` list is parsed whole."""
    policy = _Policy(errors, report)
    path = Path(source)
    name = source_name or (path.name if path.exists() else str(source))
    where = path
    if not path.exists():
        if not (isinstance(source, str) and _looks_like_hub_id(source)):
            raise DataError("no such file or directory", path)
        rows, where = _hub_rows(source, split), source
    elif _is_hf_disk_folder(path):
        rows = _hf_disk_rows(path, text_column, split)
    elif path.is_dir():
        for file in _files_under(path):
            yield from read_texts(file, text_column, errors, policy.report, split, source_name=name)
        return
    else:
        rows = _TEXT_ROWS.get(path.suffix.lower(), _plain_rows)(path, text_column, policy)
    yield from _texts(policy, rows, text_column, where, name)


# Source specs: ``kind:PATH`` or a plain path, auto-detected

SOURCE_KINDS = ("kowiki", "nsmc", "petitions", "korsts", "klue-sts", "text", "hf")


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
    head = _head(first).removeprefix(BOM).decode("utf-8", errors="replace")
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
    """``kind:PATH`` -> ``(kind, path)``; a plain path gets its kind from ``detect_kind``. A relative PATH that
    does not exist is also looked up under ``data_dir``."""
    kind, sep, target = spec.partition(":")
    if not sep or kind not in SOURCE_KINDS:
        kind, target = "", spec
    if kind != "hf" and data_dir is not None and not Path(target).exists() and (Path(data_dir) / target).exists():
        target = str(Path(data_dir) / target)
    return (kind or detect_kind(target)), target


def _sts_sentences(target: str, errors: ErrorPolicy, report: ReadReport | None, kind: str) -> Iterator[Text]:
    """Both sentences of every pair of an STS file or folder (the scores are dropped)."""
    for file in _files_under(Path(target)):
        for pair in sts_reader(file, "korsts" if kind == "korsts" else "auto")(file, errors, report):
            yield Text(pair.sentence1, kind)
            yield Text(pair.sentence2, kind)


_SOURCE_READERS = {"kowiki": read_kowiki, "nsmc": read_nsmc_raw, "petitions": read_petitions,
                   **{kind: partial(_sts_sentences, kind=kind) for kind in ("korsts", "klue-sts")}}


def read_source(spec: str, errors: ErrorPolicy = "raise", report: ReadReport | None = None,
                data_dir: str | Path | None = None, text_column: str = "text", name: str | None = None):
    """Read a text source spec (``KIND:PATH`` with a kind of ``SOURCE_KINDS``, or a plain path) as ``Text``
    records, each with ``source`` = ``name`` (default: the kind); STS files give both sentences of each pair."""
    kind, target = parse_source_spec(spec, data_dir)
    label = name or kind
    if kind in _SOURCE_READERS:
        records = _SOURCE_READERS[kind](target, errors, report)
    else:
        records = read_texts(target, text_column, errors, report, source_name=label)
    for rec in records:
        yield Text(rec.text, label, rec.line) if rec.source != label else rec
