"""Sentence encoding for inference: batched, length-sorted, bf16 only where it is native, plus cosine top-k search."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from kosimcse.precision import resolve_precision

# Below this many sentences per batch, dtype "auto" encodes in fp32 on CPU (see KoSimCSE.encode).
SMALL_CPU_BATCH = 4


def resolve_dtype(dtype: str, device: torch.device | str) -> str:
    """``auto`` follows kosimcse.precision: bf16 only where it is native, fp16 on GPUs without bf16, else fp32."""
    return resolve_precision(dtype, device).name


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _normalized_f32(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def topk_cosine(queries: np.ndarray, corpus: np.ndarray, k: int = 10, chunk_size: int = 65536,
                use_faiss: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` corpus rows by cosine for each query: ``(scores [q, k], indices [q, k])``, best first.

    The corpus (possibly a memory-mapped ``.npy``) is scanned in chunks so memory stays bounded;
    faiss is used when installed and the corpus is an in-memory array.
    """
    queries = _normalized_f32(np.atleast_2d(queries))
    n = corpus.shape[0]
    k = min(k, n)
    if k <= 0:
        return np.empty((len(queries), 0), np.float32), np.empty((len(queries), 0), np.int64)
    if use_faiss is None:
        use_faiss = not isinstance(corpus, np.memmap) and n <= chunk_size * 4
    if use_faiss:
        try:
            import faiss
        except ImportError:
            pass
        else:
            index = faiss.IndexFlatIP(corpus.shape[1])
            index.add(_normalized_f32(corpus))
            scores, indices = index.search(queries, k)
            return scores, indices.astype(np.int64)
    best_scores = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_idx = np.empty((len(queries), 0), dtype=np.int64)
    for start in range(0, n, chunk_size):
        block = _normalized_f32(corpus[start:start + chunk_size])
        scores = queries @ block.T
        kk = min(k, scores.shape[1])
        part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
        best_scores = np.concatenate([best_scores, np.take_along_axis(scores, part, 1)], axis=1)
        best_idx = np.concatenate([best_idx, part + start], axis=1)
        if best_scores.shape[1] > k:
            keep = np.argpartition(-best_scores, k - 1, axis=1)[:, :k]
            best_scores = np.take_along_axis(best_scores, keep, 1)
            best_idx = np.take_along_axis(best_idx, keep, 1)
    order = np.argsort(-best_scores, axis=1, kind="stable")
    return np.take_along_axis(best_scores, order, 1), np.take_along_axis(best_idx, order, 1)


class KoSimCSE:
    """A sentence encoder: ``KoSimCSE.from_pretrained(path).encode(texts)``, a thin wrapper over ``SimCSEModel.encode``.

    Pooling, prefix and max length come from the arguments, else from the settings saved with the
    model (``kosimcse_config.json`` or a sentence-transformers pooling config), else ``mean``/``""``/128.
    ``backend`` says what runs the encoder: ``torch``, or an ONNX Runtime graph (``onnx``, ``onnx-int8``;
    see ``kosimcse.inference.onnx``); pooling, head and normalisation are the same code on all of them.
    """

    def __init__(self, model, tokenizer, pooling: str | None = None, prefix: str | None = None,
                 max_length: int | None = None, device: torch.device | str | None = None, dtype: str = "auto",
                 path: Path | None = None, head=None, backend: str = "torch"):
        """``model``: a ``SimCSEModel``, or a bare encoder that ``pooling``, ``prefix``, ``max_length`` and ``head``
        make into one."""
        from kosimcse.loading.resolve import DEFAULT_MAX_LENGTH, DEFAULT_POOLING
        from kosimcse.modeling.model import SimCSEConfig, SimCSEModel

        if not isinstance(model, SimCSEModel):
            config = SimCSEConfig(pooler=pooling or DEFAULT_POOLING, prefix=prefix or "",
                                  inference_max_length=max_length or DEFAULT_MAX_LENGTH,
                                  mask_token_id=tokenizer.mask_token_id)
            model = SimCSEModel.for_inference(model, config, head)
        self.backend = backend
        if backend != "torch":
            # ONNX graphs run on ONNX Runtime's CPU provider, always in their exported precision.
            device, dtype = "cpu", "fp32"
        self.device = torch.device(device) if device is not None else default_device()
        self.module = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.dtype = resolve_dtype(dtype, self.device)
        # "auto" may still choose per call: see encode().
        self.auto_dtype = dtype == "auto"
        self.path = path

    @classmethod
    def from_pretrained(cls, path_or_id: str | os.PathLike, pooling: str | None = None, prefix: str | None = None,
                        max_length: int | None = None, device: str | None = None, dtype: str = "auto",
                        allow_pickle: bool = False, trust_remote_code: bool = False,
                        backend: str = "auto", prompt_template: str | None = None) -> "KoSimCSE":
        """``backend``: ``torch``, ``onnx`` (fp32 graph), ``onnx-int8`` (this CPU's int8 graph), or ``auto``: int8
        where its export is present and kept its vectors close to fp32, else torch. An ONNX backend builds
        its export into the model folder on first use."""
        from kosimcse.inference.onnx import BACKENDS, load_onnx_encoder, resolve_backend
        from kosimcse.loading.resolve import load_encoder, resolve_model

        if backend not in BACKENDS:
            from kosimcse.errors import KoSimCSEError

            raise KoSimCSEError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
        if backend == "auto":
            root = resolve_model(path_or_id, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
            backend = resolve_backend(backend, root, device or default_device())
            path_or_id = root
        settings = dict(pooler=pooling, prefix=prefix, inference_max_length=max_length, prompt_template=prompt_template,
                        allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
        if backend == "torch":
            loaded = load_encoder(path_or_id, **settings)
        else:
            loaded = load_onnx_encoder(path_or_id, backend, **settings)
        return cls(loaded.model, loaded.tokenizer, device=device, dtype=dtype, path=loaded.path, backend=backend)

    # The settings live in the model's config; these read (and, for the length, set) them.
    model = property(lambda self: self.module.encoder, doc="The encoder: a transformers model or an ONNX graph.")
    head = property(lambda self: self.module.head)
    pooling = property(lambda self: self.module.config.pooler)
    prefix = property(lambda self: self.module.config.prefix)
    dim = property(lambda self: self.module.dim)

    @property
    def max_length(self) -> int:
        return self.module.config.embed_max_length

    @max_length.setter
    def max_length(self, value: int) -> None:
        self.module.config.inference_max_length = value

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
            # Measured (benchmarks/speed.py, e5-small on 2 AMX cores): at batch 1 sentence-transformers ran 57
            # sentences/s in fp32 and 37 under bf16 autocast; a single short sentence is latency-bound and the
            # bf16 casts cost more than they save. Big batches keep bf16 (about 2x fp32 at batch 128).
            dtype = "fp32"
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
        if isinstance(x, np.ndarray) or torch.is_tensor(x):
            return np.atleast_2d(np.asarray(x, dtype=np.float32))
        x = list(x)
        if x and isinstance(x[0], str):
            return self.encode(x, show_progress=False)
        return np.atleast_2d(np.asarray(x, dtype=np.float32))
