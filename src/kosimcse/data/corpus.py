"""Build the unsupervised training corpus: read, normalise, split, filter, dedup, guard against eval leakage, write."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from tqdm import tqdm

from kosimcse.data.korean import normalize, split_sentences
from kosimcse.data.readers import ErrorPolicy, ReadReport, _files_under, parse_source_spec, read_source
from kosimcse.data.records import Text
from kosimcse.data.tasks import DEFAULT_EVAL_SETS
from kosimcse.data.tasks import eval_sentences as task_sentences
from kosimcse.errors import DataError, KoSimCSEError
from kosimcse.paths import data_dir as resolve_data_dir

# Kinds whose records are paragraphs or documents, split into sentences. NSMC reviews (<= 140 chars, informal, often
# unpunctuated) would be cut into fragments that are worse training text than the whole review.
SPLIT_KINDS = frozenset({"kowiki", "petitions", "text", "hf"})

DROP_REASONS = ("empty", "too_short", "too_long", "duplicate", "leaked")
_COUNTS = ("records", "skipped_bad_rows", "paragraphs_split", "sentences", "kept")
DEFAULT_MIN_CHARS = 8
DEFAULT_MAX_CHARS = 256


def default_sources(data_dir: str | Path | None = None, seed: bool = True, sts: bool = True,
                    domain: Sequence[str] = ()) -> list[str]:
    """The seed corpus specs (kowiki; KLUE-STS and KorSTS train sentences unless ``sts=False``) and domain specs."""
    root = resolve_data_dir(data_dir) if seed or sts else None
    specs = [f"kowiki:{root / 'corpus' / 'kowiki'}"] if seed else []
    if sts:
        specs += [f"klue-sts:{root / 'klue-sts' / 'klue_sts_train.csv'}", f"korsts:{root / 'korsts' / 'sts-train.tsv'}"]
    specs += domain
    if not specs:
        raise KoSimCSEError("no sources: give --source/--domain, or drop --no-seed/--no-sts")
    return specs


def _source_labels(specs: Sequence[str], data_dir) -> list[tuple[str, str, str]]:
    """``(label, kind, path)`` per spec; labels are the kind, made unique with the file or folder name."""
    parsed = [parse_source_spec(s, data_dir) for s in specs]
    kinds = [k for k, _ in parsed]
    out, used = [], set()
    for kind, target in parsed:
        label = kind if kinds.count(kind) == 1 else f"{kind}:{Path(target).name}"
        base, n = label, 2
        while label in used:
            label, n = f"{base}#{n}", n + 1
        used.add(label)
        out.append((label, kind, target))
    return out


def check_stats(stats: dict) -> None:
    """Assert the bookkeeping identity for every source and the totals: sentences = kept + dropped."""
    for label, s in list(stats["sources"].items()) + [("totals", stats["totals"])]:
        dropped = sum(s["dropped"].values())
        if s["sentences"] != s["kept"] + dropped:
            raise AssertionError(f"{label}: sentences {s['sentences']} != kept {s['kept']} + dropped {dropped}")
    for key in ("records", "skipped_bad_rows", "sentences", "kept"):
        if stats["totals"][key] != sum(s[key] for s in stats["sources"].values()):
            raise AssertionError(f"totals[{key}] is not the sum over sources")


def prepare_corpus(sources: Sequence[str] | None, out_dir: str | Path,
                   eval_sets: Sequence[str] = DEFAULT_EVAL_SETS,
                   min_chars: int = DEFAULT_MIN_CHARS, max_chars: int = DEFAULT_MAX_CHARS,
                   split: bool = True, workers: int = 2, data_dir: str | Path | None = None,
                   eval_sentences: Iterable[str] | None = None, errors: ErrorPolicy = "raise",
                   progress: bool = True, documents: Sequence[str] = (), heldout: float = 0.0, heldout_seed: int = 0,
                   heldout_max: int = 2000, doc_id_column: str | None = None) -> dict:
    """Read ``sources`` (None: ``default_sources``) into ``out_dir/sentences.txt`` and ``stats.json``; return the
    stats. Sentences are dropped as empty, too_short, too_long, duplicate or leaked (in ``eval_sentences``, else in
    ``eval_sets``). ``documents`` (specs among ``sources``) go through ``split_documents`` first."""
    if min_chars < 0 or max_chars < max(1, min_chars):
        raise KoSimCSEError(f"need 0 <= min_chars <= max_chars (got {min_chars}, {max_chars})")
    start = time.perf_counter()
    if sources is None:
        sources = default_sources(data_dir)
    eval_set_list = list(eval_sets) if eval_sentences is None else ["(given)"]
    if eval_sentences is None:
        eval_sentences = task_sentences(eval_set_list, data_dir)
    guard = {normalize(s) for s in eval_sentences} - {""}
    if data_dir is None:  # relative specs such as "domain/nsmc/raw" may name paths under the default data dir
        data_dir = resolve_data_dir(None, must_exist=False)
    labelled = _source_labels(sources, data_dir)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    doc_stats, doc_labels = {}, set()
    if documents:
        from kosimcse.data.documents import iter_documents, split_documents

        doc_labels = {label for (label, _, _), spec in zip(labelled, sources) if spec in documents}
        doc_stats = split_documents([x for x in labelled if x[0] in doc_labels], out_dir, heldout, heldout_seed,
                                    heldout_max, guard, data_dir, errors, workers, doc_id_column)
    final, tmp = out_dir / "sentences.txt", out_dir / "sentences.txt.partial"
    seen: set[bytes] = set()  # 16-byte digests: a million sentences cost ~100 MB less than the strings

    def drop_reason(sentence: str) -> str | None:
        if not sentence:
            return "empty"
        if len(sentence) < min_chars:
            return "too_short"
        if len(sentence) > max_chars:
            return "too_long"
        digest = hashlib.blake2b(sentence.encode("utf-8"), digest_size=16).digest()
        if digest in seen:
            return "duplicate"
        seen.add(digest)
        return "leaked" if sentence in guard else None

    per_source: dict[str, dict] = {}
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as out:
            for label, kind, target in labelled:
                do_split = split and kind in SPLIT_KINDS and label not in doc_labels
                st = per_source[label] = {"spec": f"{kind}:{target}", "kind": kind, "split": do_split, "records": 0,
                                          "skipped_bad_rows": 0, "paragraphs_split": 0, "sentences": 0,
                                          "dropped": dict.fromkeys(DROP_REASONS, 0), "kept": 0}
                report = ReadReport()
                if label in doc_labels:  # already split into documents, held-out ones removed: a record a sentence
                    records = (Text(s, label) for d in iter_documents(out_dir / "documents.jsonl")
                               if d.source == label for s in d.sentences)
                else:
                    records = read_source(f"{kind}:{target}", errors=errors, report=report, data_dir=data_dir,
                                          name=label)
                # A bar with an end: the source's bytes, advanced by the text each record carries (markup and
                # other columns are not counted, so it jumps to the end when the source is done).
                with tqdm(desc=f"prepare {label}", total=_source_bytes(kind, target), unit="B", unit_scale=True,
                          unit_divisor=1024, disable=not progress, mininterval=1.0, dynamic_ncols=True) as bar:
                    for sentence in _sentences(records, st, do_split, workers, bar):
                        st["sentences"] += 1
                        if reason := drop_reason(sentence):
                            st["dropped"][reason] += 1
                        else:
                            st["kept"] += 1
                            out.write(sentence + "\n")
                    bar.update(max(0, (bar.total or 0) - bar.n))
                    bar.set_postfix_str(f"{st['records']:,} records, {st['kept']:,} kept", refresh=False)
                st["skipped_bad_rows"] = report.skipped
                if report.examples:
                    st["skip_examples"] = report.examples[:5]
    except BaseException:
        tmp.unlink(missing_ok=True)  # never leave a half corpus that looks usable
        raise
    os.replace(tmp, final)

    totals = {key: sum(s[key] for s in per_source.values()) for key in _COUNTS}
    totals["dropped"] = {r: sum(s["dropped"][r] for s in per_source.values()) for r in DROP_REASONS}
    stats = {
        "sources": per_source,
        "totals": totals,
        "settings": {"min_chars": min_chars, "max_chars": max_chars, "split": split, "workers": workers,
                     "errors": errors, "eval_sets": eval_set_list, "eval_sentences": len(guard)},
        "output": str(final),
        "wall_time_s": round(time.perf_counter() - start, 2),
        **({"documents": doc_stats} if doc_stats else {}),
    }
    check_stats(stats)
    (out_dir / "stats.json").write_text(json.dumps(stats, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return stats


def _source_bytes(kind: str, target: str) -> int | None:
    """Size of a local source on disk (the progress bar's total); None for Hub datasets and unreadable paths."""
    if kind == "hf":
        return None
    try:
        return sum(f.stat().st_size for f in _files_under(Path(target))) or None
    except (DataError, OSError):
        return None


def _sentences(records, st: dict, do_split: bool, workers: int, bar) -> Iterator[str]:
    """Normalised sentences of the records; a record with no text gives one empty sentence, to be counted."""

    def texts():
        for rec in records:
            st["records"] += 1
            bar.update(len(rec.text.encode("utf-8")) + 1)
            if st["records"] % 1000 == 0:
                bar.set_postfix_str(f"{st['records']:,} records, {st['kept']:,} kept", refresh=False)
            text = normalize(rec.text)
            st["paragraphs_split"] += bool(text and do_split)
            yield text

    if not do_split:
        yield from texts()
        return
    for pieces in split_sentences(texts(), workers=workers):
        yield from [s for s in map(normalize, pieces) if s] or [""]


def format_stats_table(stats: dict) -> str:
    """A plain-text table of the per-source stats and totals (also used as markdown by the benchmark)."""
    cols = ["records", "skipped_bad_rows", "sentences", *DROP_REASONS, "kept"]
    rows = [[label, *(s["dropped"][c] if c in DROP_REASONS else s[c] for c in cols)]
            for label, s in [*stats["sources"].items(), ("total", stats["totals"])]]
    lines = ["| " + " | ".join(["source", *cols]) + " |", "|" + "|".join(["---"] + ["---:"] * len(cols)) + "|"]
    lines += ["| " + " | ".join(f"{v:,}" if isinstance(v, int) else str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
