"""Training data: memory-mapped ``datasets`` tables of sentences, NLI triplets or scored STS pairs, and the collator.

The collator tokenises once per batch (dynamic padding) and lays the views out as
``[batch, views, length]``: unsupervised views are the same tokens twice (dropout makes them differ;
ESimCSE repeats some words of the second), supervised views are (anchor, entailment, contradiction),
STS views are (sentence1, sentence2) with the gold ``scores`` beside them.
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


def triplet_dataset(triplets, limit: int | None = None, seed: int = 42):
    """Arrow dataset of (anchor, positive, negative) from ``NliTriplet`` records."""
    rows = {"anchor": [], "positive": [], "negative": []}
    for t in triplets:
        rows["anchor"].append(t.anchor)
        rows["positive"].append(t.positive)
        rows["negative"].append(t.negative)
    return _table(rows, limit, seed, "no NLI triplets: the file has no premise with both an entailment and a contradiction")


def sts_pair_dataset(pairs, limit: int | None = None, seed: int = 42):
    """Arrow dataset of (anchor, positive, score) from ``StsPair`` records (score on the 0-5 scale)."""
    rows = {"anchor": [], "positive": [], "score": []}
    for p in pairs:
        rows["anchor"].append(p.sentence1)
        rows["positive"].append(p.sentence2)
        rows["score"].append(float(p.score))
    return _table(rows, limit, seed, "no STS training pairs were read")


def _table(rows: dict[str, list], limit: int | None, seed: int, empty_message: str):
    """Columns -> Arrow dataset, optionally a seeded random subset of ``limit`` rows."""
    import datasets

    if not next(iter(rows.values())):
        raise KoSimCSEError(empty_message)
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
    # ESimCSE word repetition of the positive view (unsupervised batches only); 0 disables it.
    dup_rate: float = 0.0
    # PromptBERT: every sentence goes into this template (see kosimcse.modeling.objectives).
    template: str = ""
    # Document-aware positives (training/documents.py): the positive view's own truncation, longer than the anchor's.
    passage_max_length: int | None = None

    def __post_init__(self):
        self._mlm = None
        if self.mlm_probability > 0:
            from transformers import DataCollatorForLanguageModeling

            self._mlm = DataCollatorForLanguageModeling(self.tokenizer, mlm=True, mlm_probability=self.mlm_probability)

    def _tokenize(self, texts: list[str], dup_rate: float = 0.0, max_length: int | None = None) -> dict:
        from kosimcse.modeling.objectives import encode_batch

        return encode_batch(self.tokenizer, texts, max_length or self.max_length, self.prefix, self.template, dup_rate)

    def __call__(self, examples: list[dict]) -> dict:
        if "text" in examples[0]:
            texts = [e["text"] for e in examples]
            enc = self._tokenize(texts)
            if self.dup_rate > 0:
                repeated = self._tokenize(texts, self.dup_rate)
                width = max(enc["input_ids"].size(1), repeated["input_ids"].size(1))
                batch = {k: torch.stack([_pad_to(enc[k], width, self._pad_value(k)),
                                         _pad_to(repeated[k], width, self._pad_value(k))], dim=1) for k in enc}
            else:
                batch = {k: torch.stack([v, v], dim=1) for k, v in enc.items()}
        else:
            views = ("anchor", "positive", "negative") if "negative" in examples[0] else ("anchor", "positive")
            n = len(examples)
            if self.passage_max_length:
                encs = [self._tokenize([e[v] for e in examples], max_length=self.passage_max_length if v == "positive"
                                       else None) for v in views]
                width = max(e["input_ids"].size(1) for e in encs)
                batch = {k: torch.stack([_pad_to(e[k], width, self._pad_value(k)) for e in encs], dim=1)
                         for k in encs[0]}
            else:
                enc = self._tokenize([e[v] for v in views for e in examples])
                batch = {k: v.view(len(views), n, -1).transpose(0, 1).contiguous() for k, v in enc.items()}
            if "score" in examples[0]:
                batch["scores"] = torch.tensor([float(e["score"]) for e in examples], dtype=torch.float32)
        if self._mlm is not None:
            mlm_inputs, mlm_labels = self._mlm.torch_mask_tokens(batch["input_ids"][:, 0].clone())[:2]
            batch["mlm_input_ids"], batch["mlm_labels"] = mlm_inputs, mlm_labels
        return batch

    def _pad_value(self, key: str) -> int:
        return self.tokenizer.pad_token_id if key == "input_ids" else 0


def _pad_to(t: torch.Tensor, width: int, value: int) -> torch.Tensor:
    return torch.nn.functional.pad(t, (0, width - t.size(1)), value=value)
