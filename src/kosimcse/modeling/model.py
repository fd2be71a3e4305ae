"""The SimCSE model in one file: a Hugging Face encoder, a pooler, and the MLP head SimCSE uses in training.

Input layout (as in princeton-nlp/SimCSE): ``input_ids`` of shape ``[batch, views, length]``.
Unsupervised SimCSE feeds every sentence twice (``views=2``: dropout makes the two views differ);
supervised SimCSE feeds (anchor, entailment, contradiction) (``views=3``). All views go through the
encoder in one pass, then the contrastive loss from ``losses.py`` compares view 0 with the others.

The MLP head (dense + tanh) exists in two cases, and nowhere else:

- ``pooler: cls``: SimCSE's head. It is used in training, and at inference unless ``mlp_only_train``
  (SimCSE's unsupervised setting is ``pooler: cls`` + ``mlp_only_train: true``).
- ``mlp_only_train: true`` over a mean-family pooler (``avg``/``mean``, ``avg_first_last``, ``avg_top2``):
  a training-only head over that pooler (e5 keeps its mean pooling and still trains through a head).

``cls_before_pooler`` is SimCSE's pooler *without* the head, and ``prompt`` pools the [MASK] state, so
``mlp_only_train`` with either could not take effect and is refused (``head_setting_problem``).

``encode`` is the one way text becomes vectors: training's evaluation, ``KoSimCSE`` (torch and ONNX), the CLI and
the report all call it, so they agree on prompt template, prefix, truncation, head and normalisation.

``save_pretrained`` writes a folder that ``transformers.AutoModel`` and ``sentence_transformers.SentenceTransformer``
both load directly (except with prompt pooling, which no sentence-transformers module expresses); the MLP head goes
into it only when it is part of inference (``pooler: cls`` without ``mlp_only_train``): a training-only head never
reaches an export.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields, replace
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from kosimcse.errors import KoSimCSEError
from kosimcse.modeling.distill import FrozenStart, similarity_distillation
from kosimcse.modeling.losses import LOSSES, QueueInfoNCELoss, build_loss
from kosimcse.modeling.objectives import (DEFAULT_PROMPT, ConditionalDiscriminator, MomentumEncoder, encode_batch,
                                         pool_at_mask, replace_tokens)
from kosimcse.modeling.pooling import canonical_pooler, needs_hidden_states, pool

CONFIG_NAME = "kosimcse_config.json"
# PromptBERT pooling: the sentence goes into ``prompt_template`` and the [MASK] state is its vector.
PROMPT_POOLER = "prompt"
HEAD_DIR = "2_Dense"
# Poolers over which ``mlp_only_train`` adds a training-only head (canonical names: ``mean`` is ``avg``).
MEAN_POOLERS = ("avg", "avg_first_last", "avg_top2")


def head_setting_problem(pooler: str, mlp_only_train: bool) -> str | None:
    """Why ``mlp_only_train`` cannot take effect with ``pooler``, or None when the pair is fine."""
    if not mlp_only_train or pooler == "cls" or (pooler != PROMPT_POOLER and canonical_pooler(pooler) in MEAN_POOLERS):
        return None
    return (f"mlp_only_train: true has no effect with pooler: {pooler} ({pooler} has no MLP head); for SimCSE's "
            "training-only head use pooler: cls (or a mean pooler: avg, avg_first_last, avg_top2), "
            "or set mlp_only_train: false")


@dataclass
class SimCSEConfig:
    """What besides the encoder's weights defines a SimCSE model: the model options of a recipe (the argument parser
    fills this class), saved as ``kosimcse_config.json`` by the export and the e5 importer, read by every loader."""

    pooler: str = field(default="cls", metadata={"help": "cls, cls_before_pooler, avg (mean), avg_first_last, avg_top2, "
                                                         "prompt."})
    # The MLP head: SimCSE's on ``cls``, or a training-only one over a mean pooler (see the module docstring).
    mlp_only_train: bool = field(default=False, metadata={"help": (
        "Train with the MLP head, embed without it (unsup SimCSE: pooler cls + mlp_only_train true). With a mean "
        "pooler (avg, mean, avg_first_last, avg_top2) it adds a training-only head; refused with cls_before_pooler "
        "and prompt, which have no head.")})
    temperature: float = 0.05
    hard_negative_weight: float = field(default=0.0, metadata={"help": "Logit bonus of the paired hard negative (sup)."})
    mlm_weight: float = field(default=0.0, metadata={"help": "Weight of the auxiliary MLM loss; 0 disables it."})
    rtd_weight: float = field(default=0.0, metadata={"help": "DiffCSE: weight of the conditional replaced-token "
                                                            "detection loss (paper: 0.005); 0 disables it."})
    rtd_mask_ratio: float = field(default=0.3, metadata={"help": "DiffCSE: share of inner tokens replaced."})
    distill_weight: float = field(default=0.0, metadata={"help": (
        "Weight of the distillation towards the starting model (its in-batch anchor similarities, "
        "modeling/distill.py); 0 disables it.")})
    # The loss options below are read by the losses that declare them (``Loss.options``).
    loss: str = field(default="auto", metadata={"help": "A registered loss (modeling/losses.py): infonce, esimcse, "
                                                        "cosent, angle; auto: the objective's default (cosent for sts, "
                                                        "esimcse for esimcse, else infonce)."})
    loss_scale: float = field(default=20.0, metadata={"help": "CoSENT/AnglE scale (an inverse temperature)."})
    queue_size: int = field(default=0, metadata={"help": "ESimCSE queue of momentum-encoder negatives; 0: auto (2 batches)."})
    momentum: float = field(default=0.995, metadata={"help": "ESimCSE momentum encoder EMA factor."})
    prompt_template: str = field(default="", metadata={"help": "pooler prompt: template with [X] and [MASK] "
                                                               "(default: Korean PromptBERT template)."})
    mask_token_id: int | None = field(default=None, metadata={"help": "pooler prompt: the [MASK] id (default: the "
                                                                       "tokenizer's)."})
    prefix: str = field(default="", metadata={"help": "Text prefix for every sentence (e5 models want 'query: ')."})
    max_length: int = field(default=32, metadata={"help": "Training truncation in tokens (short keeps steps cheap)."})
    inference_max_length: int | None = field(default=None, metadata={"help": (
        "Truncation when the model embeds (evaluation, export, inference); default max(max_length, 64), so that a "
        "model trained on 32-token views still reads whole KorSTS sentences.")})
    normalize: bool = field(default=False, metadata={"help": "L2-normalise the vectors wherever the model embeds "
                                                             "(the export gets a Normalize module)."})

    def __post_init__(self):
        if min(self.mlm_weight, self.rtd_weight, self.distill_weight) < 0:
            raise ValueError(f"auxiliary loss weights must be >= 0 (mlm_weight {self.mlm_weight}, rtd_weight "
                             f"{self.rtd_weight}, distill_weight {self.distill_weight})")
        if not 0.0 < self.rtd_mask_ratio < 1.0:
            raise ValueError(f"rtd_mask_ratio must be in (0, 1), not {self.rtd_mask_ratio}")

    @classmethod
    def from_dict(cls, values: dict) -> "SimCSEConfig":
        """The config in ``values`` (saved JSON, or a superset such as the recipe's model group); other keys are
        ignored (the importer's ``source``)."""
        values = dict(values)
        if "pooling" in values and "pooler" not in values:
            # kosimcse_config.json as the e5 importer wrote it before this schema: inference settings only.
            values["pooler"], values["inference_max_length"] = values.pop("pooling"), values.pop("max_length", None)
        return cls(**{f.name: values[f.name] for f in fields(cls) if f.name in values})

    def save(self, folder: str | os.PathLike, **extra) -> Path:
        """Write ``kosimcse_config.json`` (plus ``extra`` keys that loaders ignore, such as provenance)."""
        path = Path(folder) / CONFIG_NAME
        values = {f.name: getattr(self, f.name) for f in fields(SimCSEConfig)}
        path.write_text(json.dumps({**values, **extra}, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        return path

    @property
    def is_prompt(self) -> bool:
        return self.pooler == PROMPT_POOLER

    @property
    def uses_head(self) -> bool:
        """Whether the model has the MLP head (always used in training; at inference see ``head_at_inference``)."""
        if self.is_prompt:
            return False
        pooler = canonical_pooler(self.pooler)
        return pooler == "cls" or (self.mlp_only_train and pooler in MEAN_POOLERS)

    def to_json_string(self) -> str:
        """As transformers configs do; the Trainer's TensorBoard logger records it."""
        return json.dumps(asdict(self), ensure_ascii=False, indent=2)

    @property
    def embed_max_length(self) -> int:
        return self.inference_max_length or max(self.max_length, 64)

    @property
    def head_at_inference(self) -> bool:
        return self.uses_head and not self.mlp_only_train


class MLPHead(nn.Module):
    """Dense + activation over the pooled vector: SimCSE's (BERT's pooler shape: tanh), or a saved
    sentence-transformers ``Dense`` module."""

    def __init__(self, in_features: int, out_features: int | None = None, activation: nn.Module | None = None,
                 bias: bool = True):
        super().__init__()
        self.dense = nn.Linear(in_features, out_features or in_features, bias=bias)
        self.activation = activation if activation is not None else nn.Tanh()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.dense(x))


class SimCSEModel(nn.Module):
    """Encoder + pooler (+ MLP head) with the contrastive loss in ``forward``."""

    def __init__(self, encoder: nn.Module, config: SimCSEConfig, mlm_head: nn.Module | None = None,
                 discriminator: ConditionalDiscriminator | None = None):
        super().__init__()
        if config.is_prompt:
            config.prompt_template = config.prompt_template or DEFAULT_PROMPT
            if config.mask_token_id is None:
                raise ValueError("prompt pooling needs mask_token_id (the tokenizer's [MASK] id)")
        else:
            canonical_pooler(config.pooler)  # fail early on a typo
        self.encoder = encoder
        self.config = config
        hidden = encoder.config.hidden_size
        self.head = MLPHead(hidden) if config.uses_head else None
        self.mlm_head = mlm_head
        self.discriminator = discriminator  # DiffCSE, training only: built by from_encoder, never exported
        # A saved model whose loss is not registered in this process still embeds; only training needs the loss.
        self.loss_fn = build_loss(config, hidden) if config.loss in (*LOSSES, "auto") else None
        self.momentum_encoder = None  # ESimCSE, training only: built by from_encoder
        self.teacher = None  # distillation towards the start, training only: built by from_encoder

    @property
    def _keys_to_ignore_on_save(self) -> list[str]:
        # Read by the Trainer on resume: missing keys equal to this list are tied twins, not lost weights.
        return aliased_names(self.state_dict())

    def tie_weights(self) -> None:
        """Nothing to redo: tied tensors are one shared Parameter, which loading a state dict fills in place."""

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def from_encoder(cls, name_or_path: str | os.PathLike, config: SimCSEConfig | None = None,
                     trust_remote_code: bool = False, **model_kwargs) -> "SimCSEModel":
        """Wrap a pretrained Hugging Face encoder (``AutoModel``), adding a fresh MLP head if the pooler needs one."""
        from transformers import AutoModel, AutoModelForMaskedLM

        config = config or SimCSEConfig()
        problem = head_setting_problem(config.pooler, config.mlp_only_train)
        if problem:  # refused for training only: old exports with such a config still load for inference
            raise KoSimCSEError(problem)
        mlm_head = None
        if config.mlm_weight > 0:
            # The MLM auxiliary loss needs the LM head; keep the full MLM model's parts and
            # use its base model as the encoder so both losses train the same weights.
            mlm_model = AutoModelForMaskedLM.from_pretrained(name_or_path, trust_remote_code=trust_remote_code, **model_kwargs)
            encoder = getattr(mlm_model, mlm_model.base_model_prefix)
            mlm_head = _lm_head_of(mlm_model)
        else:
            encoder = AutoModel.from_pretrained(name_or_path, trust_remote_code=trust_remote_code, **model_kwargs)
        discriminator = ConditionalDiscriminator(encoder) if config.rtd_weight > 0 else None
        model = cls(encoder, config, mlm_head, discriminator)
        if model.head is not None and Path(name_or_path).is_dir():
            # Continuing from an export whose head is part of inference (a later stage, or more training): its
            # trained head, not a fresh random one, or the start would be scored through noise.
            from kosimcse.loading.resolve import load_dense_head

            saved = load_dense_head(name_or_path)
            if isinstance(saved, MLPHead) and saved.dense.weight.shape == model.head.dense.weight.shape:
                model.head.load_state_dict(saved.state_dict())
        if isinstance(model.loss_fn, QueueInfoNCELoss) and config.queue_size > 0:
            # ESimCSE: an EMA copy of the encoder fills the loss's queue of negatives.
            model.momentum_encoder = MomentumEncoder(encoder, config.momentum)
        if config.distill_weight > 0:  # after the head is loaded: the teacher is the start as it will be scored
            model.teacher = FrozenStart(encoder, model.head)
        return model

    @classmethod
    def for_inference(cls, encoder, config: SimCSEConfig, head: nn.Module | None = None) -> "SimCSEModel":
        """A loaded encoder (a transformers model, or anything that answers like one: the ONNX runner) with the head
        its folder saved, in eval mode. A head the folder did not save is never made up at inference (it would be
        random); a training-only head stays, unused, so that checkpoints still load into the model."""
        model = cls(encoder, config)
        if head is not None or config.head_at_inference:
            model.head = head
        return model.eval()

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, trust_remote_code: bool = False) -> "SimCSEModel":
        """Load a folder written by ``save_pretrained`` (or any model folder ``KoSimCSE`` loads), in eval mode."""
        from kosimcse.loading.resolve import load_encoder

        return load_encoder(path, trust_remote_code=trust_remote_code).model

    # ---- embedding ----------------------------------------------------------------------------
    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None,
              with_head: bool | None = None, encoder: nn.Module | None = None) -> torch.Tensor:
        """Sentence vectors for a flat batch ``[batch, length]`` (by ``encoder``, default the model's own).

        ``with_head`` defaults to the training rule: the MLP is used in training, and at inference only
        when ``mlp_only_train`` is off.
        """
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        vectors = self._pool(encoder or self.encoder, kwargs)
        if with_head is None:
            with_head = self.training or not self.config.mlp_only_train
        if self.head is not None and with_head:
            vectors = self.head(vectors)
        return vectors

    @property
    def dim(self) -> int:
        linears = [m for m in self.head.modules() if isinstance(m, nn.Linear)] if self.head is not None else []
        return int(linears[-1].out_features if linears else self.encoder.config.hidden_size)

    @torch.inference_mode()
    def encode(self, tokenizer, texts: Sequence[str], *, batch_size: int = 64, max_length: int | None = None,
               prefix: str | None = None, device: torch.device | str | None = None, precision: str = "fp32",
               normalize: bool | None = None, show_progress: bool = False, convert_to: str = "numpy"):
        """Sentence vectors ``[len(texts), dim]`` (float32, in input order): the one encode path, used by training's
        evaluation, ``KoSimCSE`` (every backend), the CLI and the report.

        Prefix, truncation (``embed_max_length``), prompt template and normalisation come from the config unless
        given. Texts go longest first so each batch pads little. The model embeds in eval mode, and its previous
        mode is restored after, so training can call this mid-run. ``precision``: fp32, bf16 or fp16 autocast.
        """
        from tqdm.auto import tqdm

        from kosimcse.precision import resolve_precision

        if convert_to not in ("numpy", "torch"):
            raise ValueError(f"convert_to must be 'numpy' or 'torch', not {convert_to!r}")
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of strings, not one string")
        texts, config = list(texts), self.config
        max_length = max_length or config.embed_max_length
        prefix = config.prefix if prefix is None else prefix
        template = config.prompt_template if config.is_prompt else ""
        device = torch.device(device) if device is not None else next(self.parameters(), torch.empty(0)).device
        out = torch.empty(len(texts), self.dim, dtype=torch.float32)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        was_training = self.training
        self.eval()
        try:
            # One autocast context around all batches: autocast caches the low-precision weight copies only
            # while its outermost context is open.
            with tqdm(total=len(texts), disable=not show_progress, desc="encode", unit="sent", leave=False) as bar, \
                    resolve_precision(precision, device).autocast(device.type):
                for start in range(0, len(texts), batch_size):
                    idx = order[start:start + batch_size]
                    batch = encode_batch(tokenizer, [texts[i] for i in idx], max_length, prefix, template).to(device)
                    vectors = self.embed(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
                    if config.normalize if normalize is None else normalize:
                        vectors = nn.functional.normalize(vectors.float(), p=2, dim=-1)
                    out[torch.as_tensor(idx)] = vectors.float().cpu()
                    bar.update(len(idx))
        finally:
            self.train(was_training)
        return out.numpy() if convert_to == "numpy" else out

    def _pool(self, encoder: nn.Module, inputs: dict) -> torch.Tensor:
        if self.config.is_prompt:
            out = encoder(**inputs, return_dict=True)
            return pool_at_mask(out.last_hidden_state, inputs["input_ids"], self.config.mask_token_id)
        out = encoder(**inputs, output_hidden_states=needs_hidden_states(self.config.pooler), return_dict=True)
        return pool(self.config.pooler, inputs["attention_mask"], out.last_hidden_state, out.hidden_states)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                mlm_input_ids: torch.Tensor | None = None, mlm_labels: torch.Tensor | None = None,
                scores: torch.Tensor | None = None, embed_only: bool = False):
        """Contrastive loss over ``[batch, views, length]`` inputs; returns ``{"loss", "embeddings"}``.

        ``scores`` (gold STS scores, one per pair) go to score losses (CoSENT/AnglE) with views=2.

        ``embed_only`` returns just the vectors of a flat ``[rows, length]`` batch (GradCache uses it so
        that its re-embedding passes still go through DDP's forward).
        """
        if embed_only:
            return self.embed(input_ids, attention_mask, token_type_ids)
        batch, views, length = input_ids.shape
        flat = lambda t: None if t is None else t.reshape(batch * views, length)  # noqa: E731
        vectors = self.embed(flat(input_ids), flat(attention_mask), flat(token_type_ids)).view(batch, views, -1)
        loss = self.loss_fn(*(vectors[:, v] for v in range(views)), *(() if scores is None else (scores,)))
        if self.momentum_encoder is not None and self.training:
            self._refresh_queue(flat(input_ids)[::views], flat(attention_mask)[::views],
                                None if token_type_ids is None else flat(token_type_ids)[::views])
        if self.teacher is not None and self.training:
            anchors = [None if t is None else t[:, 0] for t in (input_ids, attention_mask, token_type_ids)]
            loss = loss + self.distill_loss(vectors[:, 0], self.teacher_vectors(*anchors))
        if self.mlm_head is not None and mlm_input_ids is not None and self.config.mlm_weight > 0:
            loss = loss + self.config.mlm_weight * self.mlm_loss(mlm_input_ids, attention_mask[:, 0], mlm_labels)
        if self.discriminator is not None and self.training and self.config.rtd_weight > 0:
            corrupted, replaced = replace_tokens(input_ids[:, 0], attention_mask[:, 0], self.config.rtd_mask_ratio)
            loss = loss + self.config.rtd_weight * self.discriminator(corrupted, attention_mask[:, 0], vectors[:, 0],
                                                                       replaced)
        return {"loss": loss, "embeddings": vectors}

    @torch.no_grad()
    def teacher_vectors(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        """The starting model's training-time vectors (through its head where the student trains with one)."""
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        vectors = self._pool(self.teacher.encoder, kwargs)
        return self.teacher.head(vectors) if self.teacher.head is not None else vectors

    def distill_loss(self, anchor_vectors: torch.Tensor, teacher_vectors: torch.Tensor) -> torch.Tensor:
        """``distill_weight`` x the similarity distillation of this batch's anchors (GradCache calls it too)."""
        return self.config.distill_weight * similarity_distillation(anchor_vectors, teacher_vectors,
                                                                    self.config.temperature)

    @torch.no_grad()
    def _refresh_queue(self, input_ids, attention_mask, token_type_ids) -> None:
        """ESimCSE: step the EMA encoder, then queue its embeddings of this batch's sentences for later batches."""
        self.momentum_encoder.update(self.encoder)
        # Through the head, as the positives they are compared with.
        self.loss_fn.enqueue(self.embed(input_ids, attention_mask, token_type_ids, with_head=True,
                                        encoder=self.momentum_encoder.encoder))

    def mlm_loss(self, mlm_input_ids: torch.Tensor, attention_mask: torch.Tensor, mlm_labels: torch.Tensor) -> torch.Tensor:
        states = self.encoder(input_ids=mlm_input_ids, attention_mask=attention_mask, return_dict=True).last_hidden_state
        logits = self.mlm_head(states)
        return nn.functional.cross_entropy(logits.view(-1, logits.size(-1)).float(), mlm_labels.view(-1), ignore_index=-100)

    # ---- saving ---------------------------------------------------------------------------------
    def save_pretrained(self, path: str | os.PathLike, tokenizer=None, model_card: str | None = None) -> Path:
        """Write an HF encoder folder that is also a sentence-transformers model.

        Layout: the encoder's ``config.json``/``model.safetensors`` and tokenizer at the root (so
        ``AutoModel`` works), ``modules.json`` + ``1_Pooling`` (+ ``2_Dense`` for the inference head,
        or a layer-averaging module for ``avg_first_last``/``avg_top2``) for ``SentenceTransformer``.
        """
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        encoder = self.encoder
        if not self.config.is_prompt and needs_hidden_states(self.config.pooler):
            # sentence-transformers' WeightedLayerPooling reads all layers only if the encoder returns them.
            encoder.config.output_hidden_states = True
        encoder.save_pretrained(path, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(path)
        # The embedding length is pinned in the export, so that its meaning never rests on a default in code.
        replace(self.config, inference_max_length=self.config.embed_max_length).save(path)
        if not self.config.is_prompt:
            # sentence-transformers has no prompt-template pooling; such a folder loads with kosimcse only.
            _write_sentence_transformers_modules(path, self, tokenizer)
        if model_card is not None:
            (path / "README.md").write_text(model_card, encoding="utf-8")
        return path


def aliased_names(state_dict: dict[str, torch.Tensor]) -> list[str]:
    """Names whose tensor is the same memory as an earlier name's (tied weights, e.g. an MLM decoder and the
    word embeddings). safetensors refuses to write such aliases, and one copy is all a checkpoint needs."""
    first: dict[tuple, str] = {}
    aliases = []
    for name, tensor in state_dict.items():
        if tensor.numel() == 0:
            continue
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape), tensor.dtype)
        if key in first:
            aliases.append(name)
        else:
            first[key] = name
    return aliases


def _lm_head_of(mlm_model: nn.Module) -> nn.Module:
    for name in ("lm_head", "cls", "predictions"):
        if hasattr(mlm_model, name):
            return getattr(mlm_model, name)
    raise ValueError(f"cannot find the MLM head of {type(mlm_model).__name__}")


def _write_sentence_transformers_modules(path: Path, model: SimCSEModel, tokenizer) -> None:
    """Write modules.json and each module's config with sentence-transformers' own module classes.

    Using ST's classes (rather than hand-written JSON) keeps the folder loadable by the ST version installed.
    """
    from sentence_transformers import models

    config = model.config
    pooler = canonical_pooler(config.pooler)
    hidden = model.encoder.config.hidden_size
    num_layers = model.encoder.config.num_hidden_layers
    objects = []
    if pooler in ("avg_first_last", "avg_top2"):
        # hidden_states[0] is the embedding output: (first transformer layer + last) / 2, or the top two.
        if pooler == "avg_first_last":
            weights = [1.0] + [0.0] * (num_layers - 2) + [1.0]
            layer_start = 1
        else:
            weights = [1.0, 1.0]
            layer_start = num_layers - 1
        objects.append(("1_WeightedLayerPooling", models.WeightedLayerPooling(
            hidden, num_hidden_layers=num_layers, layer_start=layer_start, layer_weights=nn.Parameter(torch.tensor(weights)))))
    mode = "cls" if pooler in ("cls", "cls_before_pooler") else "mean"
    objects.append(("1_Pooling", models.Pooling(hidden, pooling_mode=mode)))
    if config.head_at_inference and isinstance(model.head, MLPHead):
        dense = model.head.dense
        objects.append((HEAD_DIR, models.Dense(
            dense.in_features, dense.out_features, activation_function=model.head.activation,
            init_weight=dense.weight.detach().cpu().float().clone(),
            init_bias=dense.bias.detach().cpu().float().clone())))
    if config.normalize:
        objects.append(("3_Normalize", models.Normalize()))
    entries = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}]
    for idx, (subdir, module) in enumerate(objects, start=1):
        # Number the folders in load order so the layout reads top to bottom.
        folder = f"{idx}_{subdir.split('_', 1)[1]}"
        (path / folder).mkdir(exist_ok=True)
        module.save(str(path / folder))
        entries.append({"idx": idx, "name": str(idx), "path": folder,
                        "type": f"sentence_transformers.models.{type(module).__name__}"})
    (path / "modules.json").write_text(json.dumps(entries, indent=2), encoding="utf-8")
    (path / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": config.embed_max_length, "do_lower_case": False}, indent=2), encoding="utf-8")
    st_config = {"prompts": {"query": config.prefix, "document": config.prefix} if config.prefix else {},
                 "default_prompt_name": "query" if config.prefix else None, "similarity_fn_name": "cosine"}
    (path / "config_sentence_transformers.json").write_text(json.dumps(st_config, indent=2), encoding="utf-8")
