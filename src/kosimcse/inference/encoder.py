"""Sentence encoding for inference: batched, length-sorted, bf16 only where it is native, plus cosine top-k search."""

from __future__ import annotations

import importlib.util
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from kosimcse.precision import resolve_precision

# Below this many sentences per batch, dtype "auto" encodes in fp32 on CPU (see KoSimCSE.encode).
SMALL_CPU_BATCH = 4


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def topk_cosine(queries: np.ndarray, corpus: np.ndarray, k: int = 10, chunk_size: int = 65536,
                use_faiss: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` corpus rows by cosine per query: ``(scores [q, k], indices [q, k])``, best first. A (memory-mapped)
    corpus is scanned in chunks so memory stays bounded; faiss serves in-memory ones if installed."""
    from sentence_transformers.util import semantic_search

    queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    k = min(k, len(corpus))
    if k <= 0:
        return np.empty((len(queries), 0), np.float32), np.empty((len(queries), 0), np.int64)
    if use_faiss is None:
        use_faiss = not isinstance(corpus, np.memmap) and len(corpus) <= chunk_size * 4
    if use_faiss and importlib.util.find_spec("faiss"):
        import faiss

        index = faiss.IndexFlatIP(corpus.shape[1])
        index.add(np.asarray(corpus, np.float32) / np.linalg.norm(corpus, axis=1, keepdims=True).clip(1e-12))
        scores, indices = index.search(queries / np.linalg.norm(queries, axis=1, keepdims=True).clip(1e-12), k)
        return scores, indices.astype(np.int64)
    with warnings.catch_warnings(action="ignore", category=UserWarning):  # a read-only memmap: torch warns, only reads
        corpus = torch.from_numpy(np.asarray(corpus))
    hits = semantic_search(torch.from_numpy(queries).to(corpus.dtype), corpus, corpus_chunk_size=chunk_size, top_k=k)
    return (np.array([[h["score"] for h in row] for row in hits], np.float32),
            np.array([[h["corpus_id"] for h in row] for row in hits], np.int64))


class KoSimCSE:
    """A sentence encoder: ``KoSimCSE.from_pretrained(path).encode(texts)``, a thin wrapper over ``SimCSEModel.encode``.
    Pooling, prefix and max length come from the arguments, else the model's saved settings, else mean/""/128."""

    def __init__(self, model, tokenizer, pooling: str | None = None, prefix: str | None = None,
                 max_length: int | None = None, device: torch.device | str | None = None, dtype: str = "auto",
                 path: Path | None = None, head=None, backend: str = "torch"):
        """``model``: a ``SimCSEModel``, or a bare encoder that the other settings make into one."""
        from kosimcse.loading.resolve import DEFAULT_MAX_LENGTH, DEFAULT_POOLING
        from kosimcse.modeling.model import SimCSEConfig, SimCSEModel

        if not isinstance(model, SimCSEModel):
            config = SimCSEConfig(pooler=pooling or DEFAULT_POOLING, prefix=prefix or "",
                                  inference_max_length=max_length or DEFAULT_MAX_LENGTH,
                                  mask_token_id=tokenizer.mask_token_id)
            model = SimCSEModel.for_inference(model, config, head)
        if backend != "torch":  # ONNX graphs run on ONNX Runtime's CPU provider, in their exported precision
            device, dtype = "cpu", "fp32"
        self.backend, self.tokenizer, self.path = backend, tokenizer, path
        self.device = torch.device(device) if device is not None else default_device()
        self.module = model.to(self.device).eval()
        self.dtype = resolve_precision(dtype, self.device).name
        self.auto_dtype = dtype == "auto"  # "auto" may still choose per call: see encode()

    @classmethod
    def from_pretrained(cls, path_or_id: str | os.PathLike, pooling: str | None = None, prefix: str | None = None,
                        max_length: int | None = None, device: str | None = None, dtype: str = "auto",
                        allow_pickle: bool = False, trust_remote_code: bool = False,
                        backend: str = "auto", prompt_template: str | None = None) -> "KoSimCSE":
        """``backend``: ``torch``, ``onnx`` (fp32 graph), ``onnx-int8`` (this CPU's int8 graph), or ``auto`` (int8
        where its export kept its vectors close to fp32, else torch); an ONNX backend exports on first use."""
        from kosimcse.inference.onnx import load_onnx_encoder, resolve_backend
        from kosimcse.loading.resolve import load_encoder, resolve_model

        if backend == "auto":
            path_or_id = resolve_model(path_or_id, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
        backend = resolve_backend(backend, path_or_id, device or default_device())
        settings = dict(pooler=pooling, prefix=prefix, inference_max_length=max_length, prompt_template=prompt_template,
                        allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
        if backend == "torch":
            loaded = load_encoder(path_or_id, **settings)
        else:
            loaded = load_onnx_encoder(path_or_id, backend, **settings)
        return cls(loaded.model, loaded.tokenizer, device=device, dtype=dtype, path=loaded.path, backend=backend)

    # The settings live in the model's config; these read (and, for prefix and length, set) them.
    model = property(lambda self: self.module.encoder, doc="The encoder: a transformers model or an ONNX graph.")
    head = property(lambda self: self.module.head)
    pooling = property(lambda self: self.module.config.pooler)
    dim = property(lambda self: self.module.dim)
    prefix = property(lambda self: self.module.config.prefix,
                      lambda self, value: setattr(self.module.config, "prefix", value))
    max_length = property(lambda self: self.module.config.embed_max_length,
                          lambda self, value: setattr(self.module.config, "inference_max_length", value))

    def __repr__(self) -> str:
        return (f"KoSimCSE(path={str(self.path)!r}, pooling={self.pooling!r}, prefix={self.prefix!r}, "
                f"max_length={self.max_length}, device={str(self.device)!r}, dtype={self.dtype!r}, "
                f"backend={self.backend!r})")

    def encode(self, texts: Sequence[str] | str, batch_size: int = 64, normalize: bool | None = None,
               show_progress: bool = True, convert_to: str = "numpy"):
        """Embeddings ``[n, dim]`` in input order (one string gives ``[dim]``); ``normalize`` defaults to the
        model's saved setting."""
        single = isinstance(texts, str)
        dtype = self.dtype
        per_batch = min(batch_size, 1 if single else len(texts))
        if self.auto_dtype and self.device.type == "cpu" and per_batch < SMALL_CPU_BATCH:
            dtype = "fp32"  # a tiny batch is latency-bound: bf16's casts cost more than they save
        emb = self.module.encode(self.tokenizer, [texts] if single else texts, batch_size=batch_size,
                                 device=self.device, precision=dtype, normalize=normalize,
                                 show_progress=show_progress, convert_to=convert_to)
        return emb[0] if single else emb

    def similarity(self, a, b) -> np.ndarray:
        """Cosine similarity matrix ``[len(a), len(b)]``; ``a``/``b`` are texts or embeddings."""
        from kosimcse.evaluation.similarity import cosine_matrix

        return cosine_matrix(self._as_embeddings(a), self._as_embeddings(b))

    def search(self, queries, corpus_embeddings, k: int = 10) -> list[list[tuple[int, float]]]:
        """For each query (text or embedding), the ``k`` nearest corpus rows by cosine as ``(index, score)``."""
        scores, indices = topk_cosine(self._as_embeddings(queries), corpus_embeddings, k)
        return [[(int(i), float(s)) for i, s in zip(row_i, row_s)] for row_i, row_s in zip(indices, scores)]

    def _as_embeddings(self, x) -> np.ndarray:
        if isinstance(x, str):
            x = [x]
        elif not (isinstance(x, np.ndarray) or torch.is_tensor(x)):
            x = list(x)
        if isinstance(x, list) and x and isinstance(x[0], str):
            return self.encode(x, show_progress=False)
        return np.atleast_2d(np.asarray(x, dtype=np.float32))
