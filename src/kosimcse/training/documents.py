"""Document-aware positives: (anchor sentence or title, positive) with the positive, with probability ``ict_ratio``,
from the same document (ICT ``rest`` or a Contriever ``crop``), else the anchor itself (a dropout positive)."""

from __future__ import annotations

import random
import warnings
from pathlib import Path

import numpy as np
import torch

from kosimcse.data.documents import CHARS_PER_TOKEN, context_window, iter_documents
from kosimcse.data.korean import normalize
from kosimcse.errors import KoSimCSEError

POSITIVES = ("rest", "crop")


class DocumentPairs(torch.utils.data.Dataset):
    """``{"anchor", "positive"}`` examples drawn lazily (no text held twice); an example's draws depend only on the
    seed and its index, so DDP ranks, GradCache's replays and resumed runs see the same pairs."""

    def __init__(self, docs, ict_ratio: float = 0.5, positive: str = "rest", seed: int = 42, limit: int | None = None,
                 passage_max_length: int = 128, title_share: float | None = None, source: str | None = None):
        if not 0.0 <= ict_ratio <= 1.0:
            raise KoSimCSEError(f"ict_ratio must be in [0, 1], not {ict_ratio}")
        if title_share is not None and not 0.0 < title_share < 1.0:
            raise KoSimCSEError(f"title_share must be in (0, 1), not {title_share}")
        if positive not in POSITIVES:
            raise KoSimCSEError(f"document_positive must be one of {', '.join(POSITIVES)}, not {positive!r}")
        self.docs, self.ict_ratio, self.positive, self.seed = list(docs), ict_ratio, positive, seed
        self.max_chars = CHARS_PER_TOKEN * passage_max_length
        # One anchor per sentence and title: (document, unit), unit -1 being the title.
        anchors = [(d, u) for d, doc in enumerate(self.docs) for u in range(-1 if doc.title else 0, len(doc.sentences))]
        self.anchors = np.asarray(anchors, dtype=np.int64).reshape(-1, 2)
        if title_share is not None:
            self.anchors = _weigh_titles(self.anchors, title_share, f"{source}: " if source else "")
        if limit is not None and limit < len(self.anchors):
            pick = np.random.default_rng(seed).permutation(len(self.anchors))[:limit]
            self.anchors = self.anchors[np.sort(pick)]

    def __len__(self) -> int:
        return len(self.anchors)

    def __getitem__(self, index: int) -> dict:
        d, u = (int(x) for x in self.anchors[index])
        doc = self.docs[d]
        anchor = doc.title if u < 0 else doc.sentences[u]
        others = doc.sentences if u < 0 else doc.sentences[:u] + doc.sentences[u + 1:]
        rng = random.Random(self.seed * 1_000_003 + index)
        if not others or rng.random() >= self.ict_ratio:
            return {"anchor": anchor, "positive": anchor}
        if self.positive == "rest":  # ICT: the anchor's neighbourhood in its document
            return {"anchor": anchor, "positive": context_window(doc.sentences, u, self.max_chars)}
        n = len(others)  # crop: 10-50% of the other sentences, contiguous
        size = rng.randint(max(1, n // 10), max(1, n // 2))
        start = rng.randint(0, n - size)
        return {"anchor": anchor, "positive": " ".join(others[start:start + size])[: self.max_chars]}


def _weigh_titles(anchors: np.ndarray, share: float, where: str = "") -> np.ndarray:
    """Each title anchor repeated so that titles are about ``share`` of the anchors: a title is one anchor among a
    document's many sentences (2-5% on kowiki and petitions), though title -> body is how people search. Repeats
    rather than a weighted sampler, so that every draw still depends on the seed and the index alone (DDP, GradCache,
    resume); each repeat draws ICT or dropout (and its own crop) anew."""
    is_title = anchors[:, 1] < 0
    titles, sentences = int(is_title.sum()), int((~is_title).sum())
    if not titles:
        # A recipe's title_share must not stop a corpus without titles (reviews, chat): it trains on sentences.
        # No anchors at all is no documents: the caller says so.
        if sentences:
            warnings.warn(f"{where}title_share {share:g} ignored: no document has a title", stacklevel=3)
        return anchors
    repeats = max(1, round(share * sentences / ((1.0 - share) * titles)))
    reached = repeats * titles / (repeats * titles + sentences)
    if abs(reached - share) > 0.01:
        warnings.warn(f"{where}title_share {share:g} not reached: titles are {reached:.2f} of the anchors "
                      f"({titles:,} titles, {sentences:,} sentences)", stacklevel=3)
    return np.repeat(anchors, np.where(is_title, repeats, 1), axis=0)


class SentencePairs(torch.utils.data.Dataset):
    """General sentences (``train_file``) as dropout pairs beside the document pairs: Wikipedia in the batch keeps
    general sentences among the negatives and under the distillation, not only the domain's."""

    def __init__(self, sentences):
        self.sentences = sentences  # a `datasets` text dataset: memory-mapped, not read into memory

    def __len__(self) -> int:
        return len(self.sentences)

    def __getitem__(self, index: int) -> dict:
        text = self.sentences[int(index)]["text"]
        return {"anchor": text, "positive": text}


def mix_sentences(dargs, sentences, seed: int = 42) -> torch.utils.data.ConcatDataset:
    """``documents_file``'s pairs and ``train_file``'s ``sentences`` (shuffled with ``seed``), the sentences being
    ``sentence_share`` of the examples (of ``max_train_sentences`` when set); the trainer's sampler mixes them. A
    sentence of a held-out document is left out of the sentences too, and counted; a share the data cannot give is
    said."""
    share, limit, held = dargs.sentence_share, dargs.max_train_sentences, heldout_documents(dargs)
    texts = {normalize(t) for doc in held for t in (doc.title, *doc.sentences) if t}
    kept = sentences.filter(lambda row: normalize(row["text"]) not in texts) if texts else sentences
    if len(kept) < len(sentences):
        warnings.warn(f"{dargs.train_file}: {len(sentences) - len(kept):,} sentences of held-out documents left out "
                      "of training", stacklevel=2)
    if not len(kept):
        raise KoSimCSEError(f"{dargs.train_file}: no sentence left to mix in (all are held-out documents' text)")
    # The documents first (all of them, or what the share leaves of the limit), then the sentences in proportion.
    wanted = None if limit is None else min(max(1, round(limit * share)), limit - 1)
    pairs = document_dataset(dargs, seed, held=held, limit=None if limit is None else limit - min(wanted, len(kept)))
    n = min(len(kept), max(1, round(len(pairs) * share / (1.0 - share))))
    if abs(n / (n + len(pairs)) - share) > 0.01:
        warnings.warn(f"sentence_share {share:g} not reached: {n:,} sentences of {dargs.train_file} beside "
                      f"{len(pairs):,} document pairs ({n / (n + len(pairs)):.2f})", stacklevel=2)
    return torch.utils.data.ConcatDataset([pairs, SentencePairs(kept.shuffle(seed=seed).select(range(n)))])


def heldout_documents(dargs) -> list:
    """The documents that never train: ``heldout.jsonl`` beside ``documents_file`` (as ``kosimcse prepare`` writes
    it) and ``eval_domain``, wherever it lies."""
    heldout = Path(dargs.documents_file).with_name("heldout.jsonl")
    held_files = ([heldout] if heldout.is_file() else []) + ([dargs.eval_domain] if dargs.eval_domain else [])
    return [doc for held_file in held_files for doc in iter_documents(held_file)]


def document_dataset(dargs, seed: int = 42, limit: int | None = None, held: list | None = None) -> DocumentPairs:
    """The training pairs of ``dargs.documents_file``, without the held-out documents (``held``, by default
    ``heldout_documents``); at most ``limit`` (default ``max_train_sentences``)."""
    path = Path(dargs.documents_file)
    if not path.is_file():
        raise KoSimCSEError(f"documents_file not found: {path} (write it with `kosimcse prepare`)")
    held = {doc.id for doc in (heldout_documents(dargs) if held is None else held)}
    docs = [doc for doc in iter_documents(path) if doc.id not in held]
    pairs = DocumentPairs(docs, dargs.ict_ratio, dargs.document_positive, seed,
                          dargs.max_train_sentences if limit is None else limit, dargs.passage_max_length,
                          dargs.title_share, source=str(path))
    if not len(pairs):
        raise KoSimCSEError(f"{path}: no training documents (after leaving out {len(held)} held-out ones)")
    return pairs
