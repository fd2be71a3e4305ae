"""Training arguments as dataclasses, loadable from a YAML/JSON recipe with ``--key value`` overrides.

Three groups, as in transformers' examples: what model (``ModelArguments``: the ``SimCSEConfig`` plus run-only
fields), what data (``DataArguments``), and how to train (``SimCSETrainingArguments``, a ``TrainingArguments`` subclass,
so every Trainer option — bf16, save_steps, report_to, resume … — works in a recipe as is).
"""

from __future__ import annotations

import argparse
import difflib
import functools
import json
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml
from transformers import HfArgumentParser, TrainingArguments
from transformers.hf_argparser import string_to_bool

from kosimcse.errors import KoSimCSEError
from kosimcse.modeling.model import SimCSEConfig


@dataclass
class ModelArguments(SimCSEConfig):
    """The recipe's model options: every ``SimCSEConfig`` field (what the exported model is, saved with it) plus
    the fields below, which say only how this run obtains and trains its encoder.

    They are kept out of the saved config on purpose: a machine's path and the security switches
    (``trust_remote_code``, ``allow_pickle``) must never travel with an export to be read back by a loader, and
    ``freeze_embeddings`` / ``freeze_layers`` / ``dup_rate`` (ESimCSE's augmentation) change training, not what
    the vectors mean.
    """

    model_name_or_path: str = field(default="klue/roberta-small", metadata={"help": "HF id, local folder, or 'e5-small-airgap'."})
    freeze_embeddings: bool = field(default=False, metadata={"help": "Freeze the token-embedding matrix (fast for big vocabularies)."})
    freeze_layers: int = field(default=0, metadata={"help": "Freeze the whole embedding block and the lowest N transformer "
                                                            "layers: backward then stops above them (faster CPU steps)."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Run model code from the Hub. Off unless asked."})
    allow_pickle: bool = field(default=False, metadata={"help": "Allow loading pickle .bin weights (unsafe)."})
    dup_rate: float = field(default=0.32, metadata={"help": "ESimCSE word repetition rate of the positive view."})

    def model_config(self, **resolved) -> SimCSEConfig:
        """The ``SimCSEConfig`` part, with ``resolved`` values (the loss chosen by ``auto``, ...) over it."""
        return SimCSEConfig.from_dict({**asdict(self), **resolved})


@dataclass
class DataArguments:
    objective: str = field(default="unsup", metadata={"help": "unsup (sentences), esimcse (sentences), sup (NLI "
                                                              "triplets) or sts (scored pairs: KorSTS + KLUE-STS train)."})
    sts_files: list[str] = field(default_factory=list, metadata={"help": "sts: training pair files (KorSTS .tsv or KLUE-STS "
                                                                         ".csv); default KorSTS train + KLUE-STS train."})
    train_file: str | None = field(default=None, metadata={"help": "unsup: sentences.txt from `kosimcse prepare`."})
    documents_file: str | None = field(default=None, metadata={"help": (
        "unsup: documents.jsonl from `kosimcse prepare`: document-aware positives (training/documents.py) instead of "
        "train_file; held-out documents (heldout.jsonl beside it) are never used.")})
    ict_ratio: float = field(default=0.5, metadata={"help": "documents_file: share of positives taken from the anchor's "
                                                            "document; the rest are dropout positives."})
    document_positive: str = field(default="rest", metadata={"help": "documents_file: rest (ICT: the document without "
                                                                     "the anchor) or crop (a random span of it)."})
    passage_max_length: int = field(default=128, metadata={"help": "documents_file: truncation of the document "
                                                                   "positives in tokens."})
    nli_file: str | None = field(default=None, metadata={"help": "sup: KLUE-NLI train (DACON CP949 CSV) or KLUE-NLI JSON."})
    prepare_sources: list[str] = field(default_factory=list, metadata={"help": "If train_file is absent: extra (domain) sources to prepare."})
    prepare_seed: bool = field(default=True, metadata={"help": "If train_file is absent: include kowiki."})
    prepare_sts: bool = field(default=True, metadata={"help": "If train_file is absent: include KLUE-STS/KorSTS train sentences."})
    max_train_sentences: int | None = field(default=None, metadata={"help": "Use only the first N (shuffled) examples."})
    data_dir: str | None = field(default=None, metadata={"help": "Root of the local data (default ../shared/data)."})
    eval_task: str = field(default="korsts-dev", metadata={"help": "Model selection task."})
    report_tasks: list[str] = field(default_factory=lambda: ["korsts-dev", "korsts-test", "klue-sts-dev"])


SELECTION_SCORE = "eval_selection_score"


@dataclass
class SimCSETrainingArguments(TrainingArguments):
    output_dir: str = "runs/simcse"
    grad_cache_chunk_size: int = field(default=0, metadata={"help": "GradCache sub-batch size in sentence views (rows: "
                                                                    "batch x views); 0 turns GradCache off."})
    max_bad_batches: int = field(default=0, metadata={"help": "Skip up to N batches with a non-finite loss before stopping."})
    eval_batch_size: int = 128
    precision: str = field(default="auto", metadata={"help": (
        "auto, bf16, fp16 or fp32. auto: bf16 only where it is native (CPUs with AMX/AVX512-BF16, bf16 GPUs), fp16 on "
        "other GPUs, else fp32. An explicit bf16/fp16 (or --bf16/--fp16) wins.")})
    # None = not said: `precision` decides. An explicit true or false wins over precision auto.
    bf16: bool | None = None
    fp16: bool | None = None
    # The resolved precision's reason, for the log, the run summary and the model card.
    precision_reason: str = field(default="", init=False)
    selection_tolerance: float = field(default=0.0, metadata={"help": (
        "Domain adaptation: keep the most-trained checkpoint whose dev score stays within this many points of "
        "the starting model's (needs eval_on_start); 0: the best dev score wins.")})
    # Contrastive defaults that differ from the Trainer's.
    learning_rate: float = 5e-5
    per_device_train_batch_size: int = 64
    num_train_epochs: float = 1.0
    logging_steps: int = 10
    # The training bar with loss and ETA stays on even though the CLI quiets transformers' logging (the Trainer's
    # default ties the bar to that log level).
    disable_tqdm: bool | None = False
    eval_strategy: str = "steps"
    eval_steps: int = 125
    save_strategy: str = "steps"
    save_steps: int = 125
    save_total_limit: int | None = 2
    # all_gather needs equal batch sizes on every rank, and a ragged last batch would shrink the negative pool.
    dataloader_drop_last: bool = True
    # DDP's dynamic graph: static_graph breaks under no_sync, which gradient accumulation and GradCache use
    # (PyTorch: an INTERNAL ASSERT at the first backward, pytorch/pytorch#143580). The dynamic graph needs
    # find_unused_parameters, which the Trainer turns on for our plain nn.Module: the encoder's own pooler
    # layer gets no gradient from SimCSE's poolers. tests/test_ddp.py checks both against one process.
    ddp_static_graph: bool | None = False
    metric_for_best_model: str | None = "eval_cosine_spearman"
    greater_is_better: bool | None = True
    load_best_model_at_end: bool = True
    remove_unused_columns: bool = False
    report_to: str | list[str] = field(default_factory=lambda: ["tensorboard"])
    save_safetensors: bool = True

    def __post_init__(self):
        if self.ddp_static_graph and (self.gradient_accumulation_steps > 1 or self.grad_cache_chunk_size):
            raise ValueError("ddp_static_graph true does not work with gradient_accumulation_steps > 1 or GradCache "
                             "(PyTorch's static graph breaks under DDP's no_sync); set ddp_static_graph false")
        if self.selection_tolerance < 0:
            raise ValueError(f"selection_tolerance must be >= 0, not {self.selection_tolerance}")
        if self.selection_tolerance > 0:
            if not self.eval_on_start:
                raise ValueError("selection_tolerance compares checkpoints with the starting model: set eval_on_start true")
            # The Trainer's own best-checkpoint tracking then does the selection (see SimCSETrainer.evaluate).
            self.metric_for_best_model, self.greater_is_better = SELECTION_SCORE, True
        self._resolve_precision()
        super().__post_init__()

    def _resolve_precision(self) -> None:
        """Turn ``precision`` (and any explicit bf16/fp16 flag) into the Trainer's bf16/fp16 switches."""
        import torch

        from kosimcse.precision import PRECISIONS, resolve_precision

        if self.precision not in PRECISIONS:
            raise KoSimCSEError(f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
        if self.bf16 and self.fp16:
            raise KoSimCSEError("bf16 and fp16 are both true; set one (or precision: bf16 / fp16)")
        flagged = "bf16" if self.bf16 else "fp16" if self.fp16 else None
        if flagged and self.precision not in ("auto", flagged):
            raise KoSimCSEError(f"precision {self.precision} contradicts {flagged}: true; set only one of them")
        requested = flagged or self.precision
        if requested == "auto" and False in (self.bf16, self.fp16):
            requested = "fp32"  # an explicit `bf16: false` / `fp16: false` turns half precision off, not auto
        if not flagged and self.precision in ("bf16", "fp16") and getattr(self, self.precision) is False:
            raise KoSimCSEError(f"precision {self.precision} contradicts {self.precision}: false; set only one of them")
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


@functools.cache
def _option_actions() -> dict[str, tuple[argparse.Action, bool]]:
    """Field name -> (the argparse action ``HfArgumentParser`` builds for it, whether the field takes None).

    transformers' own ``--key value`` parser decides each field's type, choices and list-ness, so
    overrides convert exactly as its example scripts do.
    """
    actions = {}
    for action in HfArgumentParser(ARG_CLASSES)._actions:
        if action.option_strings and action.dest not in actions:  # the field's own, not its --no_ twin
            actions[action.dest] = action
    optional = {name for cls in ARG_CLASSES for name, tp in typing.get_type_hints(cls).items()
                if type(None) in typing.get_args(tp)}
    return {name: (action, name in optional) for name, action in actions.items()}


def _expected(action: argparse.Action, optional: bool) -> str:
    if action.choices:
        text = "one of " + ", ".join(map(str, action.choices))
    else:
        text = {str: "a string", int: "an integer", float: "a number", string_to_bool: "true or false"}.get(
            action.type, getattr(action.type, "__name__", "a string"))
    if action.nargs in ("+", "*"):
        text = f"one or more values ({text} each, or a JSON/YAML list)"
    return text + (", or none" if optional else "")


def _coerce(option: str, field_name: str, words: list[str]):
    """The value of ``--option`` (a field, or ``STAGE.field``) from the words after it, by the field's type."""
    action, optional = _option_actions()[field_name]
    expected = _expected(action, optional)
    many = action.nargs in ("+", "*")
    if not words:
        if action.nargs == "?" and action.const is not None:  # a bare boolean flag
            return action.const
        if action.type is string_to_bool:  # a bare flag for a bool that defaults to None ("not said")
            return True
        raise KoSimCSEError(f"option --{option} needs a value ({expected})")
    if optional and len(words) == 1 and words[0].lower() in ("none", "null"):
        return None
    if len(words) > 1 and not many:
        raise KoSimCSEError(f"option --{option} takes one value ({expected}), got {len(words)}: {' '.join(words)}")
    if many and len(words) == 1 and words[0].lstrip().startswith("["):
        try:
            items = yaml.safe_load(words[0])
        except yaml.YAMLError:
            items = None
        if not isinstance(items, list):
            raise KoSimCSEError(f"option --{option}: cannot read {words[0]!r} as a list")
        words = [item if isinstance(item, str) else json.dumps(item) for item in items]
    convert = action.type or str
    try:
        values = [convert(word) for word in words]
    except (ValueError, TypeError, argparse.ArgumentTypeError):
        raise KoSimCSEError(f"option --{option} expects {expected}, not {' '.join(words)!r}") from None
    if action.choices and any(v not in action.choices for v in values):
        raise KoSimCSEError(f"option --{option} expects {expected}, not {' '.join(words)!r}")
    return values if many else values[0]


def parse_overrides(tokens: list[str]) -> dict:
    """``["--learning_rate", "1e-5", "--bf16", "--report_tasks", "a", "b", "--nli.max_steps", "100"]`` -> dict.

    Each value is read by the type of the field it sets: a string field takes the words as typed
    (``--prefix "query: "``), a bool ``true/false/yes/no/1/0`` (a bare flag means true), numbers as numbers,
    a list several words or a JSON/YAML list, an Optional field ``none``/``null``. ``--STAGE.key`` sets
    ``key`` in one stage of a staged recipe. A wrong type or an unknown option raises ``KoSimCSEError``.
    """
    words: dict[str, list[str]] = {}
    key = None
    for tok in tokens:
        if tok.startswith("--") and len(tok) > 2:
            key = tok[2:].replace("-", "_")
            value = None
            if "=" in key:
                key, value = key.split("=", 1)
            words[key] = [] if value is None else [value]
            if value is not None:
                key = None
        elif key is None:
            raise KoSimCSEError(f"override {tok!r} has no --key before it")
        else:
            words[key].append(tok)
    fields = _option_actions()
    out: dict = {}
    for option, values in words.items():
        field_name = option.split(".", 1)[1] if "." in option else option
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
        raise KoSimCSEError(f"{path} has stages; run it with `kosimcse train {path}` "
                            "(each stage is one training run)")
    values.update(overrides or {})
    values.pop("description", None)  # recipes may carry a prose description
    known = {f for cls in ARG_CLASSES for f in cls.__dataclass_fields__}
    unknown = sorted(set(values) - known)
    if unknown:
        raise KoSimCSEError(f"unknown option(s): {', '.join(unknown)} (see `kosimcse train --help`)")
    import torch

    if not torch.cuda.is_available():
        # transformers refuses bf16 without a GPU unless told it runs on the CPU, and the precision rule
        # (kosimcse.precision) needs to know the device; say so instead of making every recipe spell it out.
        values.setdefault("use_cpu", True)
    parser = HfArgumentParser(ARG_CLASSES)
    try:
        return parser.parse_dict(values, allow_extra_keys=False)
    except ValueError as e:  # the argument classes' own checks, as one error line naming where the options came from
        raise KoSimCSEError(f"{path or 'options'}: {e}") from None
