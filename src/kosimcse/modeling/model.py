"""The SimCSE model: a Hugging Face encoder, a pooler and SimCSE's MLP head, over ``[batch, views, length]`` inputs
(a sentence twice for unsup, an NLI triplet for sup); a training-only head never reaches an export."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields, replace
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from kosimcse.errors import KoSimCSEError
from kosimcse.modeling.distill import FrozenCopy, similarity_distillation
from kosimcse.modeling.losses import LOSSES, QueueInfoNCELoss, build_loss
from kosimcse.modeling.objectives import (DEFAULT_PROMPT, ConditionalDiscriminator, MomentumEncoder, encode_batch,
                                         pool_at_mask, replace_tokens)
from kosimcse.modeling.pooling import canonical_pooler, needs_hidden_states, pool

CONFIG_NAME = "kosimcse_config.json"
PROMPT_POOLER = "prompt"  # PromptBERT: the sentence goes into ``prompt_template``; the [MASK] state is its vector
MEAN_POOLERS = ("avg", "avg_first_last", "avg_top2")  # where ``mlp_only_train`` adds a training-only head


def head_setting_problem(pooler: str, mlp_only_train: bool) -> str | None:
    """Why ``mlp_only_train`` cannot take effect with ``pooler``, or None."""
    if not mlp_only_train or SimCSEConfig(pooler=pooler, mlp_only_train=True).uses_head:
        return None
    return (f"mlp_only_train: true has no effect with pooler: {pooler} ({pooler} has no MLP head); for SimCSE's "
            "training-only head use pooler: cls (or a mean pooler: avg, avg_first_last, avg_top2), "
            "or set mlp_only_train: false")


def trim_padding(inputs: dict) -> dict:
    """Cut the trailing columns that are padding in every row (attention runs over them all the same). Right padding
    only: with left padding the last column is real and nothing is cut, so positions never shift."""
    mask = inputs["attention_mask"]
    real = mask.any(0).nonzero()
    n = int(real[-1]) + 1 if len(real) else mask.shape[1]
    return inputs if n == mask.shape[1] else {k: v[:, :n] for k, v in inputs.items()}


def _opt(default, help: str):
    return field(default=default, metadata={"help": help})


@dataclass
class SimCSEConfig:
    """The model options of a recipe, saved as ``kosimcse_config.json`` by the export and the importer."""

    pooler: str = _opt("cls", "cls, cls_before_pooler, avg (mean), avg_first_last, avg_top2, prompt.")
    mlp_only_train: bool = _opt(False, "Train with the MLP head, embed without it (pooler cls, or a mean pooler).")
    temperature: float = 0.05
    hard_negative_weight: float = _opt(0.0, "Logit bonus of the paired hard negative (sup).")
    mlm_weight: float = _opt(0.0, "Weight of the auxiliary MLM loss; 0 disables it.")
    rtd_weight: float = _opt(0.0, "DiffCSE: weight of the replaced-token detection loss (paper: 0.005); 0: off.")
    rtd_mask_ratio: float = _opt(0.3, "DiffCSE: share of inner tokens replaced.")
    distill_weight: float = _opt(0.0, "Weight of the distillation towards the starting model's similarities; 0: off.")
    loss: str = _opt("auto", "infonce, esimcse, cosent, angle (modeling/losses.py); auto: the objective's default.")
    loss_scale: float = _opt(20.0, "CoSENT/AnglE scale (an inverse temperature).")
    queue_size: int = _opt(0, "ESimCSE queue of momentum-encoder negatives; 0: auto (2 batches).")
    momentum: float = _opt(0.995, "ESimCSE momentum encoder EMA factor.")
    prompt_template: str = _opt("", "pooler prompt: template with [X] and [MASK] (default: Korean PromptBERT template).")
    mask_token_id: int | None = _opt(None, "pooler prompt: the [MASK] id (default: the tokenizer's).")
    prefix: str = _opt("", "Text prefix for every sentence (e5 models want 'query: ').")
    max_length: int = _opt(32, "Training truncation in tokens (short keeps steps cheap).")
    inference_max_length: int | None = _opt(None, "Truncation when the model embeds; default max(max_length, 64).")
    normalize: bool = _opt(False, "L2-normalise the vectors wherever the model embeds (export: a Normalize module).")

    def __post_init__(self):
        if min(self.mlm_weight, self.rtd_weight, self.distill_weight) < 0:
            raise ValueError(f"auxiliary loss weights must be >= 0 (mlm_weight {self.mlm_weight}, rtd_weight "
                             f"{self.rtd_weight}, distill_weight {self.distill_weight})")
        if not 0.0 < self.rtd_mask_ratio < 1.0:
            raise ValueError(f"rtd_mask_ratio must be in (0, 1), not {self.rtd_mask_ratio}")

    @classmethod
    def from_dict(cls, values: dict) -> "SimCSEConfig":
        """The config in ``values``; other keys (the importer's ``source``, run-only options) are ignored."""
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

    def to_json_string(self) -> str:  # the Trainer's TensorBoard logger records it
        return json.dumps(asdict(self), ensure_ascii=False, indent=2)

    @property
    def is_prompt(self) -> bool:
        return self.pooler == PROMPT_POOLER

    @property
    def uses_head(self) -> bool:
        """Whether the model has the MLP head (always used in training)."""
        pooler = None if self.is_prompt else canonical_pooler(self.pooler)
        return pooler == "cls" or (self.mlp_only_train and pooler in MEAN_POOLERS)

    @property
    def head_at_inference(self) -> bool:
        return self.uses_head and not self.mlp_only_train

    @property
    def embed_max_length(self) -> int:
        return self.inference_max_length or max(self.max_length, 64)


class MLPHead(nn.Module):
    """Dense + activation over the pooled vector: SimCSE's (tanh), or a saved sentence-transformers ``Dense``."""

    def __init__(self, in_features: int, out_features: int | None = None, activation: nn.Module | None = None,
                 bias: bool = True):
        super().__init__()
        self.dense = nn.Linear(in_features, out_features or in_features, bias=bias)
        self.activation = activation if activation is not None else nn.Tanh()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.dense(x))


class SimCSEModel(nn.Module):
    """Encoder + pooler (+ MLP head) with the contrastive loss (and optional auxiliary losses) in ``forward``."""

    def __init__(self, encoder: nn.Module, config: SimCSEConfig, mlm_head: nn.Module | None = None,
                 discriminator: ConditionalDiscriminator | None = None):
        super().__init__()
        if config.is_prompt:
            config.prompt_template = config.prompt_template or DEFAULT_PROMPT
            if config.mask_token_id is None:
                raise ValueError("prompt pooling needs mask_token_id (the tokenizer's [MASK] id)")
        self.encoder = encoder
        self.config = config
        hidden = encoder.config.hidden_size
        self.head = MLPHead(hidden) if config.uses_head else None  # uses_head refuses an unknown pooler
        # Training-only parts, built by from_encoder and never exported.
        self.mlm_head = mlm_head
        self.discriminator = discriminator  # DiffCSE
        self.momentum_encoder = None  # ESimCSE
        # A saved model whose loss is not registered in this process still embeds; only training needs the loss.
        self.loss_fn = build_loss(config, hidden) if config.loss in (*LOSSES, "auto") else None
        self.teacher = None  # distillation towards the start

    @property
    def _keys_to_ignore_on_save(self) -> list[str]:
        # Read by the Trainer on resume: missing keys equal to this list are tied twins, not lost weights.
        # The distillation teacher is a frozen copy of the start, rebuilt by from_encoder: never saved.
        return aliased_names(self.state_dict()) + [k for k in self.state_dict() if k.startswith("teacher.")]

    def tie_weights(self) -> None:
        """Nothing to redo: tied tensors are one shared Parameter, which loading a state dict fills in place."""

    @classmethod
    def from_encoder(cls, name_or_path: str | os.PathLike, config: SimCSEConfig | None = None,
                     trust_remote_code: bool = False, **model_kwargs) -> "SimCSEModel":
        """Wrap a pretrained Hugging Face encoder for training, with the parts its config's objectives need."""
        from transformers import AutoModel, AutoModelForMaskedLM

        config = config or SimCSEConfig()
        problem = head_setting_problem(config.pooler, config.mlp_only_train)
        if problem:  # refused for training only: old exports with such a config still load for inference
            raise KoSimCSEError(problem)
        mlm_head = None
        kwargs = dict(trust_remote_code=trust_remote_code, **model_kwargs)
        if config.mlm_weight > 0:
            # The MLM model's base model is the encoder, so both losses train the same weights.
            mlm_model = AutoModelForMaskedLM.from_pretrained(name_or_path, **kwargs)
            encoder = getattr(mlm_model, mlm_model.base_model_prefix)
            mlm_head = next((getattr(mlm_model, n) for n in ("lm_head", "cls", "predictions") if hasattr(mlm_model, n)),
                            None)
            if mlm_head is None:
                raise ValueError(f"cannot find the MLM head of {type(mlm_model).__name__}")
        else:
            encoder = AutoModel.from_pretrained(name_or_path, **kwargs)
        discriminator = ConditionalDiscriminator(encoder) if config.rtd_weight > 0 else None
        model = cls(encoder, config, mlm_head, discriminator)
        if model.head is not None and Path(name_or_path).is_dir():
            # Continuing from an export whose head is part of inference: its trained head, not a random one.
            from kosimcse.loading.resolve import load_dense_head

            saved = load_dense_head(name_or_path)
            if isinstance(saved, MLPHead) and saved.dense.weight.shape == model.head.dense.weight.shape:
                model.head.load_state_dict(saved.state_dict())
        if isinstance(model.loss_fn, QueueInfoNCELoss) and config.queue_size > 0:
            model.momentum_encoder = MomentumEncoder(encoder, config.momentum)
        if config.distill_weight > 0:  # after the head is loaded: the teacher is the start as it will be scored
            model.teacher = FrozenCopy(encoder, model.head)
        return model

    @classmethod
    def for_inference(cls, encoder, config: SimCSEConfig, head: nn.Module | None = None) -> "SimCSEModel":
        """A loaded encoder (transformers, or the ONNX runner) with the head its folder saved, in eval mode. A head the
        folder did not save is never made up; a training-only head stays, unused, so that checkpoints still load."""
        model = cls(encoder, config)
        if head is not None or config.head_at_inference:
            model.head = head
        return model.eval()

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, trust_remote_code: bool = False) -> "SimCSEModel":
        """Load a folder written by ``save_pretrained`` (or any model folder ``KoSimCSE`` loads), in eval mode."""
        from kosimcse.loading.resolve import load_encoder

        return load_encoder(path, trust_remote_code=trust_remote_code).model

    @property
    def dim(self) -> int:
        linears = [m for m in self.head.modules() if isinstance(m, nn.Linear)] if self.head is not None else []
        return int(linears[-1].out_features if linears else self.encoder.config.hidden_size)

    def _pool(self, encoder: nn.Module, inputs: dict) -> torch.Tensor:
        inputs = trim_padding({k: v for k, v in inputs.items() if v is not None})
        if self.config.is_prompt:
            out = encoder(**inputs, return_dict=True)
            return pool_at_mask(out.last_hidden_state, inputs["input_ids"], self.config.mask_token_id)
        out = encoder(**inputs, output_hidden_states=needs_hidden_states(self.config.pooler), return_dict=True)
        return pool(self.config.pooler, inputs["attention_mask"], out.last_hidden_state, out.hidden_states)

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None,
              with_head: bool | None = None, encoder: nn.Module | None = None) -> torch.Tensor:
        """Sentence vectors of a flat ``[batch, length]`` batch by ``encoder`` (default: the model's own).
        ``with_head`` defaults to SimCSE's rule: the head in training, at inference unless ``mlp_only_train``."""
        inputs = dict(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        vectors = self._pool(encoder or self.encoder, inputs)
        if with_head is None:
            with_head = self.training or not self.config.mlp_only_train
        return self.head(vectors) if self.head is not None and with_head else vectors

    @torch.inference_mode()
    def encode(self, tokenizer, texts: Sequence[str], *, batch_size: int = 64, max_length: int | None = None,
               prefix: str | None = None, device: torch.device | str | None = None, precision: str = "fp32",
               normalize: bool | None = None, show_progress: bool = False, convert_to: str = "numpy"):
        """Float32 vectors ``[len(texts), dim]`` in input order: the one encode path (training's evaluation,
        ``KoSimCSE``, the CLI, the report). Prefix, truncation, prompt template and normalisation default to the
        config; ``precision``: fp32, bf16 or fp16 autocast. Embeds in eval mode and restores the previous mode."""
        from tqdm.auto import tqdm

        from kosimcse.precision import resolve_precision

        if convert_to not in ("numpy", "torch"):
            raise ValueError(f"convert_to must be 'numpy' or 'torch', not {convert_to!r}")
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of strings, not one string")
        texts, config = list(texts), self.config
        # Never past what the model reads (a 256-token passage for a 128-position encoder): the tokenizer's limit.
        limit = getattr(tokenizer, "model_max_length", None)
        max_length = min(max_length or config.embed_max_length, limit if limit and limit < 1e6 else 1 << 30)
        prefix = config.prefix if prefix is None else prefix
        normalize = config.normalize if normalize is None else normalize
        template = config.prompt_template if config.is_prompt else ""
        device = torch.device(device) if device is not None else next(self.parameters(), torch.empty(0)).device
        out = torch.empty(len(texts), self.dim, dtype=torch.float32)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # longest first: batches pad little
        was_training = self.training
        self.eval()
        try:
            # One autocast context around all batches: it caches low-precision weights only while it is open.
            with tqdm(total=len(texts), disable=not show_progress, desc="encode", unit="sent", leave=False) as bar, \
                    resolve_precision(precision, device).autocast(device.type):
                for start in range(0, len(texts), batch_size):
                    idx = order[start:start + batch_size]
                    batch = encode_batch(tokenizer, [texts[i] for i in idx], max_length, prefix, template).to(device)
                    vectors = self.embed(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
                    vectors = nn.functional.normalize(vectors.float(), dim=-1) if normalize else vectors.float()
                    out[torch.as_tensor(idx)] = vectors.cpu()
                    bar.update(len(idx))
        finally:
            self.train(was_training)
        return out.numpy() if convert_to == "numpy" else out

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                mlm_input_ids: torch.Tensor | None = None, mlm_labels: torch.Tensor | None = None,
                scores: torch.Tensor | None = None, embed_only: bool = False):
        """The loss of ``[batch, views, length]`` inputs: the contrastive loss plus each enabled auxiliary term.
        Returns ``{"loss", "embeddings"}``. ``scores``: gold STS scores for score losses. ``embed_only``: just the
        vectors of a flat ``[rows, length]`` batch (GradCache re-embeds through DDP's forward with it)."""
        if embed_only:
            return self.embed(input_ids, attention_mask, token_type_ids)
        batch, views, length = input_ids.shape
        inputs = (input_ids, attention_mask, token_type_ids)
        used = attention_mask.sum(-1).amax(0)  # each view's longest row
        if int(used.min()) < int(used.max()):
            # Views of different lengths (a sentence and its 128-token passage) embed apart, each trimmed to its own
            # length: one flat batch would run every anchor, and the teacher's anchors, at the passage's length.
            vectors = torch.stack([self.embed(*(t if t is None else t[:, v] for t in inputs)) for v in range(views)], 1)
        else:  # both views of one sentence (unsup): one batch, as SimCSE
            vectors = self.embed(*(t if t is None else t.reshape(batch * views, length) for t in inputs))
            vectors = vectors.view(batch, views, -1)
        loss = self.loss_fn(*vectors.unbind(1), *(() if scores is None else (scores,)))
        anchor_ids, anchor_mask, anchor_types = (t if t is None else t[:, 0] for t in inputs)
        config = self.config
        if self.momentum_encoder is not None and self.training:
            # ESimCSE: step the EMA encoder, then queue its vectors of this batch (through the head, as the positives).
            self.momentum_encoder.update(self.encoder)
            with torch.no_grad():
                self.loss_fn.enqueue(self.embed(anchor_ids, anchor_mask, anchor_types, with_head=True,
                                                encoder=self.momentum_encoder.encoder))
        if self.teacher is not None and self.training:
            loss = loss + self.distill_loss(vectors[:, 0], self.teacher_vectors(anchor_ids, anchor_mask, anchor_types))
        if self.mlm_head is not None and mlm_input_ids is not None and config.mlm_weight > 0:
            loss = loss + config.mlm_weight * self.mlm_loss(mlm_input_ids, anchor_mask, mlm_labels)
        if self.discriminator is not None and self.training and config.rtd_weight > 0:
            corrupted, replaced = replace_tokens(anchor_ids, anchor_mask, config.rtd_mask_ratio)
            loss = loss + config.rtd_weight * self.discriminator(corrupted, anchor_mask, vectors[:, 0], replaced)
        return {"loss": loss, "embeddings": vectors}

    @torch.no_grad()
    def teacher_vectors(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        """The starting model's training-time vectors (through its head where the student trains with one)."""
        inputs = dict(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        vectors = self._pool(self.teacher.encoder, inputs)
        return self.teacher.head(vectors) if self.teacher.head is not None else vectors

    def distill_loss(self, anchor_vectors: torch.Tensor, teacher_vectors: torch.Tensor) -> torch.Tensor:
        """``distill_weight`` x the similarity distillation of this batch's anchors (GradCache calls it too)."""
        return self.config.distill_weight * similarity_distillation(anchor_vectors, teacher_vectors,
                                                                    self.config.temperature)

    def mlm_loss(self, mlm_input_ids: torch.Tensor, attention_mask: torch.Tensor, mlm_labels: torch.Tensor) -> torch.Tensor:
        states = self.encoder(input_ids=mlm_input_ids, attention_mask=attention_mask, return_dict=True).last_hidden_state
        logits = self.mlm_head(states)
        return nn.functional.cross_entropy(logits.view(-1, logits.size(-1)).float(), mlm_labels.view(-1), ignore_index=-100)

    def save_pretrained(self, path: str | os.PathLike, tokenizer=None, model_card: str | None = None) -> Path:
        """Write the encoder's HF folder (``AutoModel`` loads it) that is also a sentence-transformers model
        (``modules.json``: pooling, the inference head, normalisation), unless the pooler is ``prompt``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        if not self.config.is_prompt and needs_hidden_states(self.config.pooler):
            # sentence-transformers' WeightedLayerPooling reads all layers only if the encoder returns them.
            self.encoder.config.output_hidden_states = True
        self.encoder.save_pretrained(path, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(path)
        # The embedding length is pinned in the export, so that its meaning never rests on a default in code.
        replace(self.config, inference_max_length=self.config.embed_max_length).save(path)
        if not self.config.is_prompt:  # no sentence-transformers module does prompt-template pooling
            _write_sentence_transformers_modules(path, self)
        if model_card is not None:
            (path / "README.md").write_text(model_card, encoding="utf-8")
        return path


def aliased_names(state_dict: dict[str, torch.Tensor]) -> list[str]:
    """Names whose tensor is the same memory as an earlier name's (tied weights): safetensors refuses such aliases."""
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


def _write_sentence_transformers_modules(path: Path, model: SimCSEModel) -> None:
    """modules.json and the modules, written by sentence-transformers' own classes (the installed version loads them)."""
    from sentence_transformers import models

    config = model.config
    pooler = canonical_pooler(config.pooler)
    hidden, layers = model.encoder.config.hidden_size, model.encoder.config.num_hidden_layers
    modules = []
    if pooler in ("avg_first_last", "avg_top2"):
        # hidden_states[0] is the embedding output: (first transformer layer + last) / 2, or the top two.
        first_last = pooler == "avg_first_last"
        weights = [1.0] + [0.0] * (layers - 2) + [1.0] if first_last else [1.0, 1.0]
        modules.append(models.WeightedLayerPooling(hidden, num_hidden_layers=layers,
                                                   layer_start=1 if first_last else layers - 1,
                                                   layer_weights=nn.Parameter(torch.tensor(weights))))
    modules.append(models.Pooling(hidden, pooling_mode="cls" if pooler in ("cls", "cls_before_pooler") else "mean"))
    if config.head_at_inference and isinstance(model.head, MLPHead):
        dense = model.head.dense
        modules.append(models.Dense(dense.in_features, dense.out_features, activation_function=model.head.activation,
                                    init_weight=dense.weight.detach().cpu().float().clone(),
                                    init_bias=dense.bias.detach().cpu().float().clone()))
    if config.normalize:
        modules.append(models.Normalize())
    entries = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}]
    for idx, module in enumerate(modules, start=1):
        kind = type(module).__name__
        folder = f"{idx}_{kind}"
        (path / folder).mkdir(exist_ok=True)
        module.save(str(path / folder))
        entries.append({"idx": idx, "name": str(idx), "path": folder, "type": f"sentence_transformers.models.{kind}"})
    st_config = {"prompts": {"query": config.prefix, "document": config.prefix} if config.prefix else {},
                 "default_prompt_name": "query" if config.prefix else None, "similarity_fn_name": "cosine"}
    for name, values in (("modules.json", entries), ("config_sentence_transformers.json", st_config),
                         ("sentence_bert_config.json", {"max_seq_length": config.embed_max_length,
                                                        "do_lower_case": False})):
        (path / name).write_text(json.dumps(values, indent=2), encoding="utf-8")
