"""Training data (sentences, NLI triplets or scored STS pairs) and the collator to ``[batch, views, length]``."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

import datasets
import torch
from torch.nn.utils.rnn import pad_sequence
from transformers import DataCollatorForLanguageModeling

from kosimcse.data import readers
from kosimcse.data.corpus import default_sources, prepare_corpus
from kosimcse.data.nli import build_triplets
from kosimcse.data.tasks import DEFAULT_EVAL_SETS, task_files
from kosimcse.errors import KoSimCSEError
from kosimcse.modeling.objectives import encode_batch
from kosimcse.paths import data_dir
from kosimcse.training.documents import document_dataset, mix_sentences

# The kind of example each objective's data gives the loss (``losses.INPUTS``: sentence views per example).
OBJECTIVES = {"unsup": "sentences", "esimcse": "sentences", "sup": "triplets", "sts": "scored_pairs"}


def sentence_dataset(path: str | Path):
    """A one-column (``text``) Arrow dataset over a sentences file, memory-mapped so millions of lines fit."""
    path = Path(path)
    if not path.exists():
        raise KoSimCSEError(f"training file not found: {path} (run `kosimcse prepare` first)")
    if path.stat().st_size == 0:
        raise KoSimCSEError(f"training file is empty: {path}")
    ds = datasets.load_dataset("text", data_files=str(path), split="train")
    return ds.filter(lambda row: bool(row["text"].strip()))


def sts_pair_dataset(pairs):
    """(anchor, positive, score) from ``StsPair`` records (score on the 0-5 scale)."""
    return datasets.Dataset.from_dict({"anchor": [p.sentence1 for p in pairs], "positive": [p.sentence2 for p in pairs],
                                       "score": [p.score for p in pairs]})


def build_train_dataset(dargs, targs):
    """The training examples of ``dargs.objective`` (``DataArguments``): a seeded random subset when limited."""
    kind, limit = OBJECTIVES.get(dargs.objective), dargs.max_train_sentences
    if dargs.documents_file:
        if dargs.train_file:
            return mix_sentences(dargs, sentence_dataset(dargs.train_file), seed=targs.seed)
        return document_dataset(dargs, seed=targs.seed)
    if kind == "sentences":
        ds = sentence_dataset(dargs.train_file or _prepare_default_corpus(dargs, Path(targs.output_dir) / "corpus"))
    elif kind == "triplets":
        ds = datasets.Dataset.from_list([asdict(t) for t in read_triplets(dargs)])
    elif kind == "scored_pairs":
        ds = sts_pair_dataset(read_sts_pairs(dargs))
    else:
        raise KoSimCSEError(f"objective must be one of {', '.join(OBJECTIVES)}, not {dargs.objective!r}")
    return ds.shuffle(seed=targs.seed).select(range(limit)) if limit is not None and limit < len(ds) else ds


def read_sts_pairs(dargs) -> list:
    """KorSTS train + KLUE-STS train by default; a file the evaluator reads, or named dev/test/val, is refused."""
    files = [Path(f) for f in dargs.sts_files]
    if not files:  # the data folder is looked for only when no file is named
        root = data_dir(dargs.data_dir)
        files = [root / "korsts" / "sts-train.tsv", root / "klue-sts" / "klue_sts_train.csv"]
    held_out = task_files(dargs.data_dir)
    pairs = []
    for path in files:
        words = set(re.split(r"[_\-.]", path.stem.lower()))
        if path.resolve() in held_out or {"dev", "test", "val", "validation"} & words:
            raise KoSimCSEError(f"{path} is an evaluation set; STS training reads train files only")
        pairs.extend(readers.sts_reader(path)(path))
    if not pairs:
        raise KoSimCSEError("no STS training pairs were read")
    return pairs


def read_triplets(dargs) -> list:
    """(anchor, entailment, contradiction) triplets from the NLI training file (KLUE-NLI by default)."""
    path = Path(dargs.nli_file or data_dir(dargs.data_dir) / "nli/klue-nli-train-dacon/benchmark_train_data.csv")
    triplets = build_triplets(list(readers.nli_reader(path)(path)))  # a DACON file gives its train rows only
    if not triplets:
        raise KoSimCSEError("no NLI triplets: the file has no premise with both an entailment and a contradiction")
    return triplets


def _prepare_default_corpus(dargs, out_dir: Path) -> Path:
    """Prepare the corpus the recipe names (seed and/or domain sources) once, into the run folder."""
    target = out_dir / "sentences.txt"
    if not target.exists():
        specs = default_sources(dargs.data_dir, seed=dargs.prepare_seed, sts=dargs.prepare_sts,
                                domain=list(dargs.prepare_sources))
        # The sets this run evaluates on are guarded too, even custom ones.
        guarded = tuple(dict.fromkeys([*DEFAULT_EVAL_SETS, dargs.eval_task, *dargs.report_tasks]))
        prepare_corpus(specs, out_dir=out_dir, eval_sets=guarded, data_dir=dargs.data_dir)
    return target


@dataclass
class ContrastiveCollator:
    """Examples -> ``[batch, views, length]`` tensors (+ MLM inputs if asked): a sentence twice (dropout makes the
    views differ; ESimCSE repeats some words of the second), else the example's columns (+ ``scores`` for STS)."""

    tokenizer: object
    max_length: int = 32
    prefix: str = ""
    mlm_probability: float = 0.0
    dup_rate: float = 0.0  # ESimCSE word repetition of the positive view (unsupervised batches only)
    template: str = ""  # PromptBERT: every sentence goes into this template
    passage_max_length: int | None = None  # document-aware positives (training/documents.py): their own truncation

    def __post_init__(self):
        self._mlm = None
        if self.mlm_probability > 0:
            self._mlm = DataCollatorForLanguageModeling(self.tokenizer, mlm=True, mlm_probability=self.mlm_probability)

    def _tokenize(self, texts: list[str], dup_rate: float = 0.0, max_length: int | None = None) -> dict:
        return encode_batch(self.tokenizer, texts, max_length or self.max_length, self.prefix, self.template, dup_rate)

    def _stack(self, encs: list[dict]) -> dict:
        """Views tokenised apart -> ``[batch, views, length]``, each padded to the longest view."""
        return {k: pad_sequence([e[k].T for e in encs], batch_first=True, padding_value=self.tokenizer.pad_token_id
                                if k == "input_ids" else 0).permute(2, 0, 1).contiguous() for k in encs[0]}

    def _rows_from(self, into: dict, source: dict, rows: list[int]) -> dict:
        """``into`` with ``rows`` replaced by those of ``source``, both right-padded to the longer of the two."""
        length = max(into["input_ids"].shape[1], source["input_ids"].shape[1])
        out = {}
        for k in into:
            pad = self.tokenizer.pad_token_id if k == "input_ids" else 0
            a, b = (torch.nn.functional.pad(t[k], (0, length - t[k].shape[1]), value=pad) for t in (into, source))
            a[rows] = b[rows]
            out[k] = a
        return out

    def __call__(self, examples: list[dict]) -> dict:
        if "text" in examples[0]:
            texts = [e["text"] for e in examples]
            enc = self._tokenize(texts)
            batch = self._stack([enc, self._tokenize(texts, self.dup_rate) if self.dup_rate > 0 else enc])
        else:
            views = ("anchor", "positive", "negative") if "negative" in examples[0] else ("anchor", "positive")
            encs = [self._tokenize([e[v] for e in examples], max_length=self.passage_max_length
                                   if v == "positive" else None) for v in views]
            if self.passage_max_length is not None:
                # A dropout pair is one input encoded twice (SimCSE): cut at the passage length, a sentence longer
                # than max_length would be paired with a longer version of itself.
                same = [i for i, e in enumerate(examples) if e["positive"] == e["anchor"]]
                if same:
                    encs[1] = self._rows_from(encs[1], encs[0], same)
            batch = self._stack(encs)
            if "score" in examples[0]:
                batch["scores"] = torch.tensor([float(e["score"]) for e in examples], dtype=torch.float32)
        if self._mlm is not None:
            mlm_inputs, mlm_labels = self._mlm.torch_mask_tokens(batch["input_ids"][:, 0].clone())[:2]
            batch["mlm_input_ids"], batch["mlm_labels"] = mlm_inputs, mlm_labels
        return batch
