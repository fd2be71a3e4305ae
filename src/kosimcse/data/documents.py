"""Documents (article, petition, review, or rows sharing an id) for the domain score and document-aware training."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from itertools import groupby, tee
from pathlib import Path

from kosimcse.data.korean import normalize, split_sentences
from kosimcse.data.readers import (
    ErrorPolicy, ReadReport, _files_under, _json_lines, _Policy, kowiki_paragraphs, parse_source_spec, read_nsmc_raw,
    read_text_lines, read_texts,
)
from kosimcse.errors import DataError, KoSimCSEError


@dataclass
class Document:
    id: str
    title: str | None
    sentences: list[str]
    source: str | None = None  # the prepare source label, so one documents.jsonl can hold several sources

    @property
    def gives_pair(self) -> bool:
        """A title or a second sentence: an ICT pair in training, a query in the domain score. An NSMC review has
        neither."""
        return bool(self.title) or len(self.sentences) >= 2


# Characters kept of a context before tokenising (training positives and the domain score's passages alike): well
# over the passage's tokens, so truncation is the tokenizer's, while a long article is not tokenised whole.
CHARS_PER_TOKEN = 8


def context_window(sentences: list[str], centre: int, max_chars: int) -> str:
    """The sentences nearest ``centre`` (itself left out; -1: a title, whose context is the opening), in document
    order, until ``max_chars``: a long document's context is the anchor's neighbourhood, not its first lines."""
    order = sorted((i for i in range(len(sentences)) if i != centre), key=lambda i: (abs(i - centre), i))
    picked, size = [], 0
    for i in order:
        if picked and size + len(sentences[i]) > max_chars:
            break
        picked.append(i)
        size += len(sentences[i]) + 1
    return " ".join(sentences[i] for i in sorted(picked))[:max_chars]


def is_heldout(doc_id: str, fraction: float, seed: int = 0) -> bool:
    """True for a reproducible ``fraction`` of document ids: a hash, so every piece of code agrees without state."""
    if not 0.0 <= fraction <= 1.0:
        raise KoSimCSEError(f"held-out fraction must be in [0, 1], not {fraction}")
    digest = hashlib.blake2b(f"{seed}\0{doc_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") < fraction * 2.0**64


def _kowiki_docs(target: str, errors: ErrorPolicy, report: ReadReport | None):
    paragraphs = kowiki_paragraphs(target, _Policy(errors, report))
    for article, group in groupby(paragraphs, key=lambda p: p[0]):
        if article is not None:  # lines before the first <doc id=...> belong to no article
            yield article[2], article[3], [t.text for _, t in group]


def _petition_docs(target: str, errors: ErrorPolicy, report: ReadReport | None):
    policy = _Policy(errors, report)
    for file in _files_under(Path(target)):
        for lineno, rec in _json_lines(file, policy):
            if not isinstance(rec.get("content"), str):
                policy.bad(DataError(f"no string 'content' field; keys are {sorted(rec)}", file, lineno))
                continue
            policy.ok()
            title = rec.get("title") if isinstance(rec.get("title"), str) else None
            yield str(rec.get("petition_idx") or f"{file.name}:{lineno}"), title, [rec["content"]]


def _jsonl_docs(target: str, text_column: str, id_column: str, errors: ErrorPolicy, report: ReadReport | None):
    policy = _Policy(errors, report)

    def rows():
        for file in _files_under(Path(target)):
            for lineno, rec in _json_lines(file, policy):
                if not isinstance(rec.get(text_column), str) or rec.get(id_column) is None:
                    policy.bad(DataError(f"needs a string {text_column!r} and a {id_column!r}; keys are "
                                         f"{sorted(rec)}", file, lineno))
                    continue
                policy.ok()
                yield str(rec[id_column]), rec[text_column]

    # consecutive rows with one id form a document; a repeated id later only repeats the same held-out decision
    for doc_id, group in groupby(rows(), key=lambda r: r[0]):
        yield doc_id, None, [text for _, text in group]


def read_documents(spec: str, data_dir: str | Path | None = None, errors: ErrorPolicy = "raise",
                   report: ReadReport | None = None, text_column: str = "text", id_column: str | None = None,
                   workers: int = 2) -> Iterator[Document]:
    """Documents of a source spec (``kowiki:``, ``petitions:``, ``nsmc:``, ``text:``/a path), split into sentences as
    ``kosimcse prepare`` splits them: one per article, petition, review (not split) or text row, or with ``id_column``
    (JSON lines) the consecutive rows sharing that id. Documents left with no sentence are not yielded."""
    kind, target = parse_source_spec(spec, data_dir)
    if kind == "kowiki":
        raw = _kowiki_docs(target, errors, report)
    elif kind == "petitions":
        raw = _petition_docs(target, errors, report)
    elif kind == "nsmc":
        raw = ((f"{f.stem}:{t.line}", None, [t.text]) for f in _files_under(Path(target), (".json",))
               for t in read_nsmc_raw(f, errors, report))
    elif kind in ("text", "hf") and id_column:
        raw = _jsonl_docs(target, text_column, id_column, errors, report)
    elif kind in ("text", "hf"):
        name = Path(target).name
        raw = ((f"{name}:{i}", None, [t.text]) for i, t in
               enumerate(read_texts(target, text_column, errors, report), start=1))
    else:
        raise KoSimCSEError(f"{spec}: a {kind} source has no documents; use kowiki:, petitions:, nsmc: or a text file")
    split = kind != "nsmc"
    if split:  # kiwi splits many paragraphs per call: a second pass over the same documents feeds it in batches
        raw, ahead = tee(raw)
        pieces = split_sentences((normalize(p) for _, _, paras in ahead for p in paras), workers=workers)
    for doc_id, title, paras in raw:
        sentences = [normalize(s) for p in paras for s in (next(pieces) if split else [p])]
        if sentences := [s for s in sentences if s]:
            yield Document(doc_id, normalize(title) if title else None, sentences)


def write_documents(path: str | Path, docs: Iterable[Document]) -> int:
    """JSON lines ``{"id", "title", "sentences"[, "source"]}``; returns how many were written."""
    n = 0
    with open(path, "w", encoding="utf-8", newline="\n") as out:
        for doc in docs:
            rec = {k: v for k, v in asdict(doc).items() if k != "source" or v is not None}
            out.write(json.dumps(rec, ensure_ascii=False) + "\n")
            n += 1
    return n


def iter_documents(path: str | Path) -> Iterator[Document]:
    """Stream the documents of a ``write_documents`` file; a malformed line raises a DataError naming it."""
    for lineno, line in read_text_lines(path):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            doc = Document(str(rec["id"]), rec.get("title"), list(rec["sentences"]), rec.get("source"))
        except (ValueError, KeyError, TypeError) as e:
            raise DataError(f"not a document line ({type(e).__name__}: {e})", path, lineno) from None
        if not all(isinstance(s, str) for s in doc.sentences):
            raise DataError("'sentences' must be a list of strings", path, lineno)
        yield doc


def load_documents(path: str | Path) -> list[Document]:
    return list(iter_documents(path))


def split_documents(labelled, out_dir: Path, fraction: float, seed: int, max_heldout: int, guard: set[str],
                    data_dir, errors: ErrorPolicy, workers: int, id_column: str | None = None) -> dict:
    """``kosimcse prepare``'s document split: ``(label, kind, path)`` sources -> ``out_dir/documents.jsonl`` (training)
    and ``out_dir/heldout.jsonl`` (a seeded sample of at most ``max_heldout`` held-out documents). Every sentence and
    title of a held-out document is added to ``guard``, and guarded sentences are removed from training documents."""
    heldout: list[Document] = []
    removed = single = 0

    def read():
        for label, kind, target in labelled:
            for doc in read_documents(f"{kind}:{target}", data_dir, errors, workers=workers, id_column=id_column):
                doc.source = label
                if fraction > 0 and is_heldout(doc.id, fraction, seed):
                    heldout.append(doc)
                else:
                    yield doc

    def training():
        nonlocal removed, single
        guard.update(s for d in heldout for s in d.sentences + ([d.title] if d.title else []))
        for d in iter_documents(tmp):
            sentences = [s for s in d.sentences if s not in guard]
            removed += len(d.sentences) - len(sentences)
            if sentences:  # a guarded title (a reposted petition's) is a held-out query: not an anchor
                doc = Document(d.id, d.title if d.title not in guard else None, sentences, d.source)
                single += not doc.gives_pair
                yield doc

    tmp = out_dir / "documents.jsonl.partial"
    try:
        write_documents(tmp, read())
        n_train = write_documents(out_dir / "documents.jsonl", training())
    finally:
        tmp.unlink(missing_ok=True)
    pool = heldout if len(heldout) <= max_heldout else random.Random(seed).sample(heldout, max_heldout)
    if fraction > 0:
        write_documents(out_dir / "heldout.jsonl", pool)
    return {"training": n_train, "heldout": len(heldout), "heldout_pool": len(pool), "fraction": fraction,
            "seed": seed, "guarded_sentences_removed": removed, "training_single_sentence": single,
            "heldout_without_query": sum(not d.gives_pair for d in pool)}
