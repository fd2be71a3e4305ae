"""Training arguments (model, data and a ``TrainingArguments`` subclass) from a YAML/JSON recipe and typed overrides."""

from __future__ import annotations

import argparse
import difflib
import functools
import json
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import yaml
from transformers import HfArgumentParser, TrainingArguments
from transformers.hf_argparser import string_to_bool

from kosimcse.errors import KoSimCSEError
from kosimcse.modeling.model import SimCSEConfig
from kosimcse.precision import PRECISIONS, resolve_precision


@dataclass
class ModelArguments(SimCSEConfig):
    """``SimCSEConfig`` (saved with the export) plus how this run obtains and trains its encoder, which is not saved:
    a machine's path and the security switches must never travel with an export."""

    model_name_or_path: str = field(default="klue/roberta-small", metadata={"help": "HF id, folder, e5-small-airgap."})
    freeze_embeddings: bool = field(default=False, metadata={"help": "Freeze the token embeddings (fast on CPU)."})
    freeze_layers: int = field(default=0, metadata={"help": "Freeze the embedding block and the lowest N layers."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Run model code from the Hub. Off unless asked."})
    allow_pickle: bool = field(default=False, metadata={"help": "Allow loading pickle .bin weights (unsafe)."})
    dup_rate: float = field(default=0.32, metadata={"help": "ESimCSE word repetition rate of the positive view."})

    def model_config(self, **resolved) -> SimCSEConfig:
        """The ``SimCSEConfig`` part, with ``resolved`` values (the loss chosen by ``auto``, ...) over it."""
        return SimCSEConfig.from_dict({**asdict(self), **resolved})



@dataclass
class DataArguments:
    objective: str = field(default="unsup", metadata={"help": "unsup or esimcse (sentences), sup (NLI triplets) or "
                                                              "sts (scored pairs)."})
    sts_files: list[str] = field(default_factory=list, metadata={"help": "sts: pair files (default KorSTS, KLUE-STS)."})
    train_file: str | None = field(default=None, metadata={"help": (
        "unsup: sentences.txt from `kosimcse prepare`; beside documents_file, general sentences (Wikipedia) mixed "
        "into the document pairs as dropout pairs.")})
    documents_file: str | None = field(default=None, metadata={"help": (
        "unsup: documents.jsonl from `kosimcse prepare`: document-aware positives (training/documents.py); held-out "
        "documents (heldout.jsonl beside it) are never used.")})
    sentence_share: float = field(default=0.5, metadata={"help": "documents_file with train_file: share of the "
                                                                 "training examples that are train_file sentences."})
    ict_ratio: float = field(default=0.5, metadata={"help": "documents_file: share of positives taken from the "
                                                            "anchor's document; the rest are dropout positives."})
    title_share: float | None = field(default=None, metadata={"help": (
        "documents_file: share of the document anchors that are titles (each title repeated to reach it); with "
        "sentence_share, titles are title_share x (1 - sentence_share) of all examples. Default: a title is one "
        "anchor, as each sentence is.")})
    document_positive: str = field(default="rest", metadata={"help": "documents_file: rest (ICT: the document "
                                                                     "without the anchor) or crop (a random span)."})
    passage_max_length: int = field(default=128, metadata={"help": "documents_file: truncation of the document "
                                                                   "positives in tokens."})
    nli_file: str | None = field(default=None, metadata={"help": "sup: KLUE-NLI train (DACON CP949 CSV or JSON)."})
    # Without train_file the run prepares its corpus: kowiki (prepare_seed), STS train sentences, these sources.
    prepare_sources: list[str] = field(default_factory=list)
    prepare_seed: bool = True
    prepare_sts: bool = True
    max_train_sentences: int | None = field(default=None, metadata={"help": "Use only N (shuffled) examples."})
    data_dir: str | None = field(default=None, metadata={"help": "Root of the local data (default ../shared/data)."})
    eval_task: str = field(default="korsts-dev", metadata={"help": "Model selection task."})
    eval_domain: str | None = field(default=None, metadata={"help": (
        "heldout.jsonl from `kosimcse prepare --heldout`: log the label-free domain retrieval score at every eval.")})
    report_tasks: list[str] = field(default_factory=lambda: ["korsts-dev", "korsts-test", "klue-sts-dev"])


SELECTION_SCORE = "eval_selection_score"


@dataclass
class SimCSETrainingArguments(TrainingArguments):
    output_dir: str = "runs/simcse"
    grad_cache_chunk_size: int = field(default=0, metadata={"help": "GradCache chunk in rows (batch x views); 0: off."})
    max_bad_batches: int = field(default=0, metadata={"help": "Skip up to N non-finite-loss batches before stopping."})
    precision: str = field(default="auto", metadata={"help": "auto, bf16, fp16 or fp32 (kosimcse.precision); an "
                                                             "explicit bf16/fp16 flag wins."})
    bf16: bool | None = None  # None: not said, `precision` decides; an explicit true or false wins over auto
    fp16: bool | None = None
    precision_reason: str = field(default="", init=False)  # for the log, the run summary and the model card
    selection_tolerance: float = field(default=0.0, metadata={"help": (
        "Keep the most-trained checkpoint within this many dev points of the start (needs eval_on_start); "
        "0: the best dev score wins.")})
    selection_metric: str = field(default="dev", metadata={"help": (
        "dev: the best dev score, which must beat the start by more than its bootstrap standard error; domain: the "
        "best eval_domain MRR@10 among checkpoints whose dev score stays within selection_tolerance of the start.")})
    start_weight: float = field(default=0.0, metadata={"help": (
        "Export the selected model moved this share of the way back to the starting encoder's weights (WiSE-FT "
        "weight averaging): a strong start keeps more of its general quality. 0: the trained weights.")})
    # Contrastive defaults that differ from the Trainer's.
    per_device_train_batch_size: int = 64
    per_device_eval_batch_size: int = 128
    num_train_epochs: float = 1.0
    logging_steps: int = 10
    disable_tqdm: bool | None = False  # the Trainer ties its bar to the log level, which the CLI quiets
    eval_strategy: str = "steps"
    eval_steps: int = 125
    save_steps: int = 125
    save_total_limit: int | None = 2
    # all_gather needs equal batch sizes on every rank, and a ragged last batch would shrink the negative pool.
    dataloader_drop_last: bool = True
    # static_graph breaks under DDP's no_sync, which gradient accumulation and GradCache use (pytorch/pytorch#143580);
    # the dynamic graph's find_unused_parameters covers the encoder pooler that SimCSE's poolers leave unused.
    ddp_static_graph: bool | None = False
    metric_for_best_model: str | None = "eval_cosine_spearman"
    load_best_model_at_end: bool = True
    remove_unused_columns: bool = False
    report_to: str | list[str] = field(default_factory=lambda: ["tensorboard"])

    def __post_init__(self):
        if self.ddp_static_graph and (self.gradient_accumulation_steps > 1 or self.grad_cache_chunk_size):
            raise ValueError("ddp_static_graph true does not work with gradient_accumulation_steps > 1 or GradCache "
                             "(PyTorch's static graph breaks under DDP's no_sync); set ddp_static_graph false")
        if self.selection_tolerance < 0:
            raise ValueError(f"selection_tolerance must be >= 0, not {self.selection_tolerance}")
        if not 0.0 <= self.start_weight <= 1.0:
            raise ValueError(f"start_weight must be between 0 and 1, not {self.start_weight}")
        if self.metric_for_best_model and not self.metric_for_best_model.startswith("eval_"):
            # The Trainer accepts "cosine_spearman" and adds the prefix itself; the start's score is looked up by the
            # logged key, and without the prefix the start could never be kept.
            self.metric_for_best_model = f"eval_{self.metric_for_best_model}"
        if self.selection_metric not in ("dev", "domain"):
            raise ValueError(f"selection_metric must be dev or domain, not {self.selection_metric!r}")
        if self.selection_tolerance > 0 or self.selection_metric == "domain":
            if not self.eval_on_start:
                raise ValueError("selection_tolerance compares checkpoints with the starting model: "
                                 "set eval_on_start true")
            # The Trainer's own best-checkpoint tracking then does the selection (see SimCSETrainer.evaluate).
            self.metric_for_best_model, self.greater_is_better = SELECTION_SCORE, True
        self._resolve_precision()
        super().__post_init__()

    def _resolve_precision(self) -> None:
        """Turn ``precision`` (and any explicit bf16/fp16 flag) into the Trainer's bf16/fp16 switches."""
        if self.precision not in PRECISIONS:
            raise KoSimCSEError(f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
        if self.bf16 and self.fp16:
            raise KoSimCSEError("bf16 and fp16 are both true; set one (or precision: bf16 / fp16)")
        for flag in ("bf16", "fp16"):  # an explicit flag must agree with an explicit precision
            said = getattr(self, flag)
            if self.precision != "auto" and said is not None and said != (flag == self.precision):
                raise KoSimCSEError(f"precision {self.precision} contradicts {flag}: {str(said).lower()}; set only "
                                    "one of them")
        requested = "bf16" if self.bf16 else "fp16" if self.fp16 else self.precision
        if requested == "auto" and False in (self.bf16, self.fp16):
            requested = "fp32"  # an explicit `bf16: false` / `fp16: false` turns half precision off, not auto
        device = "cpu" if self.use_cpu or not torch.cuda.is_available() else "cuda"
        try:
            chosen = resolve_precision(requested, device)
        except ValueError as e:
            raise KoSimCSEError(str(e)) from None
        self.precision, self.precision_reason = chosen.name, chosen.reason
        self.bf16, self.fp16 = chosen.name == "bf16", chosen.name == "fp16"
        if chosen.name == "bf16" and device == "cpu":
            self.use_cpu = True  # transformers refuses bf16 without a GPU unless told it runs on the CPU


ARG_CLASSES = (ModelArguments, DataArguments, SimCSETrainingArguments)
_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", string_to_bool: "true or false"}


@functools.cache
def _option_actions() -> dict[str, tuple[argparse.Action, bool]]:
    """Field -> (the argparse action ``HfArgumentParser`` builds for it, whether it takes None), so that overrides
    convert exactly as transformers' example scripts do."""
    optional = {name for cls in ARG_CLASSES for name, tp in typing.get_type_hints(cls).items()
                if type(None) in typing.get_args(tp)}
    actions = {}
    for action in HfArgumentParser(ARG_CLASSES)._actions:
        if action.option_strings:  # the field's own action comes first, before its --no_ twin
            actions.setdefault(action.dest, (action, action.dest in optional))
    return actions


def _coerce(option: str, field_name: str, words: list[str]):
    """The value of ``--option`` (a field, or ``STAGE.field``) from the words after it, by the field's type."""
    action, optional = _option_actions()[field_name]
    many = action.nargs in ("+", "*")
    expected = ("one of " + ", ".join(map(str, action.choices)) if action.choices
                else _TYPE_NAMES.get(action.type, getattr(action.type, "__name__", "a string")))
    expected = (f"one or more values ({expected} each, or a JSON/YAML list)" if many else expected) + (
        ", or none" if optional else "")
    if not words:
        if action.type is string_to_bool:  # a bare boolean flag
            return True
        raise KoSimCSEError(f"option --{option} needs a value ({expected})")
    if optional and len(words) == 1 and words[0].lower() in ("none", "null"):
        return None
    if len(words) > 1 and not many:
        raise KoSimCSEError(f"option --{option} takes one value ({expected}), got {len(words)}: {' '.join(words)}")
    if many and len(words) == 1 and words[0].lstrip().startswith("["):
        try:  # text that opens with "[" is a YAML list or no YAML at all
            words = [item if isinstance(item, str) else json.dumps(item) for item in yaml.safe_load(words[0])]
        except yaml.YAMLError:
            raise KoSimCSEError(f"option --{option}: cannot read {words[0]!r} as a list") from None
    try:
        values = [(action.type or str)(word) for word in words]
    except (ValueError, TypeError, argparse.ArgumentTypeError):
        values = None
    if values is None or action.choices and any(v not in action.choices for v in values):
        raise KoSimCSEError(f"option --{option} expects {expected}, not {' '.join(words)!r}")
    return values if many else values[0]


def parse_overrides(tokens: list[str]) -> dict:
    """``["--learning_rate", "1e-5", "--bf16", "--nli.max_steps", "100"]`` -> dict, each value read by its field's
    type (a bare bool flag: true; a list: words or a JSON/YAML list; Optional: ``none``/``null``). ``--STAGE.key``
    sets ``key`` in one stage of a staged recipe."""
    words: dict[str, list[str]] = {}
    key = None
    for tok in tokens:
        if tok.startswith("--") and len(tok) > 2:
            name, has_value, value = tok[2:].partition("=")
            words[name.replace("-", "_")] = [value] if has_value else []
            key = None if has_value else name.replace("-", "_")
        elif key is None:
            raise KoSimCSEError(f"override {tok!r} has no --key before it")
        else:
            words[key].append(tok)
    fields = _option_actions()
    out: dict = {}
    for option, values in words.items():
        field_name = option.split(".", 1)[-1]
        if field_name not in fields:
            close = difflib.get_close_matches(field_name, fields, n=1)
            hint = f"; did you mean --{close[0]}?" if close else " (see `kosimcse train --help`)"
            raise KoSimCSEError(f"unknown option --{option}{hint}")
        out[option] = _coerce(option, field_name, values)
    return out


def read_recipe(path: str | Path) -> dict:
    """The raw option mapping of a YAML/JSON recipe file."""
    path = Path(path)
    if not path.exists():
        raise KoSimCSEError(f"recipe not found: {path}")
    text = path.read_text(encoding="utf-8")
    try:
        values = (json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)) or {}
    except (ValueError, yaml.YAMLError) as e:
        raise KoSimCSEError(f"{path}: cannot parse recipe: {e}") from None
    if not isinstance(values, dict):
        raise KoSimCSEError(f"{path}: a recipe must be a mapping of option: value")
    return values


def load_recipe(path: str | Path | None, overrides: dict | None = None):
    """Load a YAML/JSON recipe and apply overrides -> (ModelArguments, DataArguments, SimCSETrainingArguments)."""
    values: dict = read_recipe(path) if path is not None else {}
    if "stages" in values:
        raise KoSimCSEError(f"{path} has stages; run it with `kosimcse train {path}` (each stage is one training run)")
    values.update(overrides or {})
    values.pop("description", None)  # recipes may carry a prose description
    unknown = sorted(set(values) - {f for cls in ARG_CLASSES for f in cls.__dataclass_fields__})
    if unknown:
        raise KoSimCSEError(f"unknown option(s): {', '.join(unknown)} (see `kosimcse train --help`)")
    if not torch.cuda.is_available():
        values.setdefault("use_cpu", True)  # the precision rule and transformers' bf16 check need to know the device
    try:
        return HfArgumentParser(ARG_CLASSES).parse_dict(values, allow_extra_keys=False)
    except ValueError as e:  # the argument classes' own checks, as one error line naming where the options came from
        raise KoSimCSEError(f"{path or 'options'}: {e}") from None
