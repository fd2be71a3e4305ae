"""The label-free domain score: pseudo-query -> passage retrieval over held-out documents (MRR@10, R@1, R@10)."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from kosimcse.data.documents import CHARS_PER_TOKEN, Document, context_window, load_documents
from kosimcse.errors import KoSimCSEError
from kosimcse.evaluation.similarity import cosine_matrix

# encode(texts, max_length) -> [n, dim] array: SimCSEModel.encode with its tokenizer bound, or KoSimCSE.encode.
Encode = Callable[[list[str], int], np.ndarray]
# the scores of domain_scores that tables and plots show, in their order
SCORE_KEYS = ("mrr@10", "r@1", "r@10")


def retrieval_pairs(docs: Sequence[Document], seed: int = 0, kind: str = "auto",
                    max_chars: int = 2048) -> tuple[list[str], list[str]]:
    """One (pseudo-query, passage) per document: title -> body (unless ``kind`` is ``ict``), else the Inverse Cloze
    Task (a seeded random sentence -> the rest); a document without title and with < 2 sentences gives none."""
    rng = random.Random(seed)
    queries, passages = [], []
    for doc in docs:
        if doc.title and doc.sentences and kind != "ict":
            queries.append(doc.title)
            passages.append(context_window(doc.sentences, -1, max_chars))
        elif len(doc.sentences) >= 2:
            i = rng.randrange(len(doc.sentences))
            queries.append(doc.sentences[i])
            passages.append(context_window(doc.sentences, i, max_chars))
    return queries, passages


def domain_scores(encode: Encode, docs_or_path: Sequence[Document] | str | Path, seed: int = 0,
                  passage_max_length: int = 256, query_max_length: int = 64, queries: str = "auto") -> dict:
    """Retrieve every query's own passage among all passages of the pool (cosine similarity); scores x100, with the
    standard error of MRR@10 over queries."""
    docs = load_documents(docs_or_path) if isinstance(docs_or_path, (str, Path)) else docs_or_path
    if queries not in ("auto", "ict"):
        raise KoSimCSEError(f"queries must be auto (titles where there are some) or ict, not {queries!r}")
    texts, passages = retrieval_pairs(docs, seed, queries, max_chars=CHARS_PER_TOKEN * passage_max_length)
    skipped = len(docs) - len(texts)
    if len(texts) < 2:
        raise KoSimCSEError(f"domain score needs at least 2 usable held-out documents, got {len(texts)} "
                            f"({skipped} skipped: no title and fewer than 2 sentences)")
    sims = cosine_matrix(encode(texts, query_max_length), encode(passages, passage_max_length))
    # rank of the own passage; a tie counts against it, so an encoder that cannot tell passages apart scores low
    rank = (sims >= np.diag(sims)[:, None]).sum(axis=1)
    rr = np.where(rank <= 10, 1.0 / rank, 0.0)
    return {"mrr@10": float(rr.mean() * 100), "r@1": float((rank == 1).mean() * 100),
            "r@10": float((rank <= 10).mean() * 100), "mrr@10_se": float(rr.std(ddof=1) / np.sqrt(len(rr)) * 100),
            "queries": len(texts), "skipped": skipped}


def model_encoder(model, tokenizer, batch_size: int = 64, precision: str = "fp32") -> Encode:
    """The ``Encode`` of a SimCSEModel through its one encode path."""
    return lambda texts, max_length: model.encode(tokenizer, texts, batch_size=batch_size, max_length=max_length,
                                                   precision=precision)


def spearman_bootstrap_se(scores, gold, n: int = 1000, seed: int = 0) -> float:
    """Bootstrap standard error (x100) of Spearman(scores, gold) over pairs: the size of a gain that is only noise."""
    from scipy.stats import rankdata

    scores, gold = np.asarray(scores, dtype=np.float64), np.asarray(gold, dtype=np.float64)
    idx = np.random.default_rng(seed).integers(0, len(gold), (n, len(gold)))
    a, b = rankdata(scores[idx], axis=1), rankdata(gold[idx], axis=1)
    a, b = a - a.mean(axis=1, keepdims=True), b - b.mean(axis=1, keepdims=True)
    r = (a * b).sum(axis=1) / np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    return float(np.nanstd(r, ddof=1) * 100)


def kosimcse_encoder(encoder, batch_size: int = 64) -> Encode:
    """The ``Encode`` of a ``kosimcse.KoSimCSE`` (truncation set per call, then put back)."""
    def encode(texts, max_length):
        kept = encoder.max_length
        encoder.max_length = max_length
        try:
            return encoder.encode(texts, batch_size=batch_size, show_progress=False)
        finally:
            encoder.max_length = kept
    return encode
