"""Training data: memory-mapped ``datasets`` tables of sentences or NLI triplets, and the contrastive collator.

The collator tokenises once per batch (dynamic padding) and lays the views out as
``[batch, views, length]``: unsupervised views are the same tokens twice (dropout makes them differ),
supervised views are (anchor, entailment, contradiction).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from kosimcse.errors import KoSimCSEError


def sentence_dataset(path: str | Path, cache_dir: str | Path | None = None, limit: int | None = None, seed: int = 42):
    """A one-column (``text``) Arrow dataset over a sentences file, memory-mapped so millions of lines fit."""
    import datasets

    path = Path(path)
    if not path.exists():
        raise KoSimCSEError(f"training file not found: {path} (run `kosimcse prepare` first)")
    if path.stat().st_size == 0:
        raise KoSimCSEError(f"training file is empty: {path}")
    ds = datasets.load_dataset("text", data_files=str(path), split="train",
                               cache_dir=str(cache_dir) if cache_dir else None)
    ds = ds.filter(lambda row: bool(row["text"].strip()))
    if limit is not None and limit < len(ds):
        ds = ds.shuffle(seed=seed).select(range(limit))
    return ds


def sentences_to_dataset(sentences: list[str]):
    import datasets

    return datasets.Dataset.from_dict({"text": list(sentences)})


def triplet_dataset(triplets, limit: int | None = None, seed: int = 42):
    """Arrow dataset of (anchor, positive, negative) from ``NliTriplet`` records."""
    import datasets

    rows = {"anchor": [], "positive": [], "negative": []}
    for t in triplets:
        rows["anchor"].append(t.anchor)
        rows["positive"].append(t.positive)
        rows["negative"].append(t.negative)
    if not rows["anchor"]:
        raise KoSimCSEError("no NLI triplets: the file has no premise with both an entailment and a contradiction")
    ds = datasets.Dataset.from_dict(rows)
    if limit is not None and limit < len(ds):
        ds = ds.shuffle(seed=seed).select(range(limit))
    return ds


@dataclass
class ContrastiveCollator:
    """Batch -> ``input_ids``/``attention_mask`` of shape ``[batch, views, length]`` (+ MLM inputs if asked)."""

    tokenizer: object
    max_length: int = 32
    prefix: str = ""
    mlm_probability: float = 0.0

    def __post_init__(self):
        self._mlm = None
        if self.mlm_probability > 0:
            from transformers import DataCollatorForLanguageModeling

            self._mlm = DataCollatorForLanguageModeling(self.tokenizer, mlm=True, mlm_probability=self.mlm_probability)

    def _tokenize(self, texts: list[str]) -> dict:
        return self.tokenizer([self.prefix + t for t in texts], padding=True, truncation=True,
                              max_length=self.max_length, return_tensors="pt")

    def __call__(self, examples: list[dict]) -> dict:
        if "text" in examples[0]:
            enc = self._tokenize([e["text"] for e in examples])
            batch = {k: torch.stack([v, v], dim=1) for k, v in enc.items()}
        else:
            views = ("anchor", "positive", "negative") if "negative" in examples[0] else ("anchor", "positive")
            n = len(examples)
            enc = self._tokenize([e[v] for v in views for e in examples])
            batch = {k: v.view(len(views), n, -1).transpose(0, 1).contiguous() for k, v in enc.items()}
        if self._mlm is not None:
            mlm_inputs, mlm_labels = self._mlm.torch_mask_tokens(batch["input_ids"][:, 0].clone())[:2]
            batch["mlm_input_ids"], batch["mlm_labels"] = mlm_inputs, mlm_labels
        return batch
