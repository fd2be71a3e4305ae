"""One training run from arguments to the exported best model with its card, and the chaining of ``stages:``."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
from transformers import AutoTokenizer, set_seed

from kosimcse.data.documents import load_documents
from kosimcse.errors import KoSimCSEError
from kosimcse.evaluation.domain import domain_scores, model_encoder
from kosimcse.evaluation.sts import StsEvaluator, markdown_table
from kosimcse.loading.resolve import resolve_model
from kosimcse.modeling.distill import merge_with_start
from kosimcse.modeling.losses import INPUTS, LOSSES
from kosimcse.modeling.model import SimCSEModel, head_setting_problem
from kosimcse.training.args import DataArguments, ModelArguments, SimCSETrainingArguments, load_recipe, read_recipe
from kosimcse.training.checkpoints import resume_checkpoint
from kosimcse.training.data import OBJECTIVES, ContrastiveCollator, build_train_dataset
from kosimcse.training.trainer import NonFiniteLossError, SimCSETrainer, has_finite_weights

BEST_DIR = "best"
PREVIOUS = "{previous}"


def resolve_loss(margs: ModelArguments, objective: str) -> str:
    """The loss for an objective (``auto``: its registered default), refused unless it fits the objective's examples."""
    if objective not in OBJECTIVES:
        raise KoSimCSEError(f"objective must be one of {', '.join(OBJECTIVES)}, not {objective!r}")
    kind = OBJECTIVES[objective]
    loss = next(n for n, c in LOSSES.items() if objective in c.default_for) if margs.loss == "auto" else margs.loss
    if loss not in LOSSES:
        raise KoSimCSEError(f"unknown loss {loss!r}; choose auto or one of {', '.join(LOSSES)}")
    if kind not in LOSSES[loss].inputs:
        fitting = " or ".join(n for n, c in LOSSES.items() if kind in c.inputs)
        raise KoSimCSEError(f"loss {loss!r} does not fit objective {objective!r}: its examples are "
                            f"{kind.replace('_', ' ')}, which train with {fitting}")
    return loss


def validate_settings(margs: ModelArguments, dargs: DataArguments, targs: SimCSETrainingArguments) -> str:
    """Refuse settings that could not take effect or do not fit together, before loading anything; return the loss.
    A setting counts as set when it differs from its default, so a recipe may spell out a default."""
    loss = resolve_loss(margs, dargs.objective)
    changed = lambda args, name: getattr(args, name) != type(args).__dataclass_fields__[name].default  # noqa: E731
    document_options = [n for n in ("ict_ratio", "title_share", "document_positive", "passage_max_length")
                        if changed(dargs, n)]
    reads, kind = LOSSES[loss].options, OBJECTIVES[dargs.objective]
    problems = [f"{name} {getattr(margs, name)} has no effect with loss {loss} (read only by loss "
                f"{'/'.join(n for n, c in LOSSES.items() if name in c.options)}); remove {name}"
                for name in dict.fromkeys(o for c in LOSSES.values() for o in c.options)
                if name not in reads and changed(margs, name)]
    views = INPUTS[kind]  # GradCache chunks count rows: examples x views
    batch, chunk = targs.per_device_train_batch_size, targs.grad_cache_chunk_size
    checks = [  # (refused when true, why); a new option's check is one more row
        (True, head_setting_problem(margs.pooler, margs.mlp_only_train)),  # None when the head fits the pooler
        # The teacher's head is the freshly initialised one, and embedding skips it: it would guard the wrong vectors.
        (margs.distill_weight > 0 and margs.mlp_only_train,
         "distill_weight distils through the training-only MLP head, which embedding skips; set mlp_only_train "
         "false (or distill_weight 0)"),
        # The merge moves the encoder only: a head that embedding uses would stay as trained, on an encoder it no
        # longer fits.
        (targs.start_weight > 0 and margs.head_at_inference,
         f"start_weight merges the encoder with the start's, but pooler {margs.pooler} with mlp_only_train false "
         "embeds through the MLP head, which has no start to merge with; set mlp_only_train true or start_weight 0"),
        (targs.selection_metric == "domain" and not dargs.eval_domain,
         "selection_metric domain selects by the domain score: set eval_domain (a heldout.jsonl of kosimcse prepare)"),
        ("hard_negative_weight" in reads and margs.hard_negative_weight != 0 and kind != "triplets",
         f"hard_negative_weight {margs.hard_negative_weight} has no effect with objective {dargs.objective}: only "
         "objective sup (NLI triplets) has hard negatives; remove it"),
        (margs.prompt_template and margs.pooler != "prompt",
         f"prompt_template is used only with pooler: prompt (pooler is {margs.pooler}); set pooler: prompt or remove "
         "prompt_template"),
        (changed(margs, "rtd_mask_ratio") and margs.rtd_weight == 0,
         f"rtd_mask_ratio {margs.rtd_mask_ratio} has no effect while rtd_weight is 0 (the replaced-token detection "
         "loss is off); set rtd_weight > 0 or remove rtd_mask_ratio"),
        (changed(margs, "dup_rate") and dargs.objective != "esimcse",
         f"dup_rate {margs.dup_rate} (ESimCSE word repetition) has no effect with objective {dargs.objective}; use "
         "objective: esimcse or remove dup_rate"),
        (chunk and chunk >= batch * views,
         f"grad_cache_chunk_size {chunk} has no effect: one chunk already holds the whole batch ({batch} examples x "
         f"{views} views = {batch * views} rows); set it below {batch * views} or to 0"),
        (chunk and not LOSSES[loss].grad_cache,
         f"loss {loss} is not supported with GradCache, which calls the loss without the model's forward step (where "
         "ESimCSE fills its momentum queue); set grad_cache_chunk_size 0"),
        # GradCache re-embeds chunks and calls only the contrastive loss; an auxiliary loss would be skipped.
        (chunk and (margs.mlm_weight > 0 or margs.rtd_weight > 0),
         "the MLM / replaced-token auxiliary losses are not supported with GradCache; set grad_cache_chunk_size 0 or "
         "the auxiliary weight (mlm_weight / rtd_weight) 0"),
        (document_options and not dargs.documents_file,
         f"{', '.join(document_options)} take effect only with documents_file; set it or remove them"),
        (dargs.documents_file and dargs.objective != "unsup",
         f"documents_file trains objective unsup (anchor, positive) pairs, not {dargs.objective}"),
        (changed(dargs, "sentence_share") and not (dargs.documents_file and dargs.train_file),
         f"sentence_share {dargs.sentence_share} mixes train_file sentences into documents_file pairs; set both or "
         "remove sentence_share"),
        (dargs.documents_file and dargs.train_file and not 0.0 < dargs.sentence_share < 1.0,
         f"sentence_share must be between 0 and 1 (exclusive), not {dargs.sentence_share}"),
        # Before the encoder loads (and before earlier stages train), not when the dataset is built.
        (dargs.documents_file and not 0.0 <= dargs.ict_ratio <= 1.0,
         f"ict_ratio must be between 0 and 1, not {dargs.ict_ratio}"),
        (dargs.documents_file and dargs.title_share is not None and not 0.0 < dargs.title_share < 1.0,
         f"title_share must be between 0 and 1 (exclusive), not {dargs.title_share}"),
    ]
    problems += [why for refused, why in checks if refused and why]
    if problems:
        raise KoSimCSEError("; ".join(problems))
    return loss


def build_model(margs: ModelArguments, objective: str = "unsup", batch_size: int = 64):
    """Resolve the model id (Hub, local folder or air-gapped alias) and wrap it for SimCSE."""
    path = resolve_model(margs.model_name_or_path, allow_pickle=margs.allow_pickle,
                         trust_remote_code=margs.trust_remote_code)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=margs.trust_remote_code)
    resolved = {"loss": resolve_loss(margs, objective)}
    if "queue_size" in LOSSES[resolved["loss"]].options:  # ESimCSE's queue: two batches of past sentences by default
        resolved["queue_size"] = margs.queue_size or 2 * batch_size
    if margs.mask_token_id is None:
        resolved["mask_token_id"] = tokenizer.mask_token_id
    model = SimCSEModel.from_encoder(path, margs.model_config(**resolved), trust_remote_code=margs.trust_remote_code)
    if margs.freeze_embeddings:
        # For big vocabularies (e5: 96M of 118M weights) AdamW on the token matrix dominates a CPU step.
        model.encoder.get_input_embeddings().weight.requires_grad_(False)
    if margs.freeze_layers:
        freeze_lower_layers(model.encoder, margs.freeze_layers)
    return model, tokenizer, path


def freeze_lower_layers(encoder, n: int) -> None:
    """Freeze the embedding block and the lowest ``n`` transformer layers: autograd stops above them."""
    total = getattr(encoder.config, "num_hidden_layers", None)
    layers = next((m for m in encoder.modules() if isinstance(m, torch.nn.ModuleList) and len(m) == total), None)
    if layers is None or total is None:
        raise KoSimCSEError(f"freeze_layers: cannot find the transformer layers of {type(encoder).__name__}")
    if not 0 <= n <= total:
        raise KoSimCSEError(f"freeze_layers must be between 0 and {total} (the encoder's layers), not {n}")
    for module in [encoder.get_input_embeddings(), getattr(encoder, "embeddings", None), *layers[:n]]:
        if module is not None:
            module.requires_grad_(False)


def build_evaluator(dargs: DataArguments, task: str | None = None):
    return StsEvaluator.from_task(task or dargs.eval_task, dargs.data_dir)


def model_card(name: str, margs: ModelArguments, dargs: DataArguments, results: dict[str, dict],
               precision: str = "") -> str:
    lines = [f"# {name}", "",
             f"SimCSE ({dargs.objective}) sentence embeddings trained with KoSimCSE from `{margs.model_name_or_path}`.",
             f"Pooling `{margs.pooler}`, MLP only in training: {margs.mlp_only_train}, "
             f"temperature {margs.temperature}, prefix {margs.prefix!r}."
             + (f" Trained and evaluated in {precision}." if precision else ""), "",
             "Loads with `transformers.AutoModel`, `kosimcse.KoSimCSE` and `kosimcse eval/encode/search`"
             + (" (prompt pooling has no sentence-transformers module, so it has no `SentenceTransformer` layout)."
                if margs.pooler == "prompt" else ", and `sentence_transformers.SentenceTransformer`."), ""]
    for task, metrics in results.items():
        lines += [f"## {task}", "", markdown_table({name: metrics}), ""]
    return "\n".join(lines)


def train(margs: ModelArguments, dargs: DataArguments, targs: SimCSETrainingArguments,
          resume_from_checkpoint: str | bool | None = None) -> dict:
    """Train, keep the best checkpoint by the dev score, export it to ``OUTPUT/best``; return a summary."""
    validate_settings(margs, dargs, targs)
    set_seed(targs.seed)
    if targs.should_log:
        print(f"precision: {targs.precision} ({targs.precision_reason})", file=sys.stderr, flush=True)
    model, tokenizer, resolved = build_model(margs, dargs.objective, targs.per_device_train_batch_size)
    train_dataset = build_train_dataset(dargs, targs)
    batch = targs.per_device_train_batch_size * max(targs.world_size, 1)
    if targs.dataloader_drop_last and len(train_dataset) < batch:
        # Ragged batches are dropped (all_gather needs equal shapes), so this would train 0 steps and export the start.
        raise KoSimCSEError(f"{len(train_dataset)} training examples fill no batch of {batch} "
                            "(per_device_train_batch_size x processes): training would run 0 steps. Lower "
                            "per_device_train_batch_size or give more data")
    collator = ContrastiveCollator(tokenizer, max_length=margs.max_length, prefix=margs.prefix,
                                   mlm_probability=0.15 if margs.mlm_weight > 0 else 0.0,
                                   dup_rate=margs.dup_rate if dargs.objective == "esimcse" else 0.0,
                                   template=model.config.prompt_template if model.config.is_prompt else "",
                                   passage_max_length=dargs.passage_max_length if dargs.documents_file else None)
    domain_docs = load_documents(dargs.eval_domain) if dargs.eval_domain else None
    trainer = SimCSETrainer(model=model, args=targs, train_dataset=train_dataset, data_collator=collator,
                            sts_evaluator=build_evaluator(dargs), tokenizer=tokenizer, domain_docs=domain_docs)
    resume = resume_checkpoint(resume_from_checkpoint, targs.output_dir)
    # With eval_on_start the starting model competes in model selection too: a strong encoder (e5) can come out of
    # a short contrastive run worse than it went in, and then it is kept as it was.
    initial_state = ({k: v.detach().clone() for k, v in model.state_dict().items()}
                     if targs.eval_on_start and not resume else None)
    start = time.time()
    result = trainer.train(resume_from_checkpoint=resume)
    wall = time.time() - start
    start_metrics = trainer.start_metrics or {}
    start_score = start_metrics.get(targs.metric_for_best_model or "eval_cosine_spearman")
    best_ckpt, best_score = trainer.state.best_model_checkpoint, trainer.state.best_metric
    # A trained checkpoint replaces the start only by more than the noise of the score it is chosen on: the dev
    # set's bootstrap standard error (or the domain MRR's); the tolerance rule wants the most-trained one instead.
    domain, tolerance = targs.selection_metric == "domain", targs.selection_tolerance
    start_se = 0.0 if not domain and tolerance > 0 else start_metrics.get(
        "eval_domain_mrr@10_se" if domain else "eval_cosine_spearman_se", 0.0)
    kept_initial = initial_state is not None and start_score is not None and (
        best_ckpt is None or not Path(best_ckpt).is_dir() or best_score is None or start_score + start_se >= best_score)
    best = trainer.accelerator.unwrap_model(trainer.model)
    if kept_initial:
        best.load_state_dict(initial_state)
        best_ckpt, best_score = None, start_score
    elif targs.start_weight:  # the encoder only (validate_settings refuses a head that embedding uses)
        # Without a copy kept for selection (no eval_on_start, or resumed), the distillation teacher is the start's
        # encoder; without a teacher either, the start is read again from its folder.
        if initial_state is not None:
            start_encoder = {k.removeprefix("encoder."): v for k, v in initial_state.items()
                             if k.startswith("encoder.")}
        elif getattr(best, "teacher", None) is not None:
            start_encoder = best.teacher.encoder.state_dict()
        else:
            start_model = build_model(margs, dargs.objective, targs.per_device_train_batch_size)[0]
            start_encoder = start_model.encoder.state_dict()
        merge_with_start(best.encoder, start_encoder, targs.start_weight)
    summary = {"train_loss": result.training_loss, "global_step": result.global_step, "wall_time_s": wall,
               "train_sentences": len(train_dataset), "model": str(margs.model_name_or_path),
               "resolved_model": str(resolved), "best_checkpoint": best_ckpt, "best_metric": best_score,
               "kept_initial_model": kept_initial, "start_weight": 0.0 if kept_initial else targs.start_weight,
               "start_metric": start_score,
               "start_dev": start_metrics.get("eval_cosine_spearman"),
               "precision": targs.precision, "precision_reason": targs.precision_reason,
               "selection": (f"{'best domain MRR@10' if domain else 'latest checkpoint'} within {tolerance:g} dev "
                             "points of the start" if domain or tolerance > 0 else
                             "best dev score, if it beats the start by more than the dev bootstrap standard error"),
               "selection_margin": start_se,
               "sentences_per_s": result.global_step * batch * targs.gradient_accumulation_steps / wall if wall > 0
               else None}
    if not trainer.is_world_process_zero():
        return summary
    if not has_finite_weights(best):
        raise NonFiniteLossError(f"the final model has NaN/inf weights; not exporting it to {BEST_DIR}/")
    encode = model_encoder(best, tokenizer, 128, targs.precision)
    # every metric on each task, for the model card and the summary
    results = {task: build_evaluator(dargs, task)(lambda texts: encode(texts, None)) for task in dargs.report_tasks}
    summary["dev_spearman"] = results.get(dargs.eval_task, {}).get("cosine_spearman")
    if domain_docs:
        before = {k[len("eval_domain_"):]: v for k, v in start_metrics.items() if k.startswith("eval_domain_")}
        # selected_on: the checkpoint was chosen by this score on these documents, so "after" is optimistic
        summary["domain"] = {"file": dargs.eval_domain, "before": before or None,
                             "after": domain_scores(encode, domain_docs), "selected_on": domain}
    out = Path(targs.output_dir) / BEST_DIR
    card = model_card(out.name, margs, dargs, results, precision=f"{targs.precision} ({targs.precision_reason})")
    best.save_pretrained(out, tokenizer=tokenizer, model_card=card)
    summary.update(results=results, eval_task=dargs.eval_task, exported=str(out))
    (Path(targs.output_dir) / "summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2),
                                                        encoding="utf-8")
    return summary


def stage_settings(values: dict, overrides: dict | None = None) -> list[tuple[str, dict]]:
    """``(name, options)`` per stage: the top-level options + the stage's own + the overrides (``--NAME.key`` for one
    stage only), in ``OUTPUT/NAME``. ``model_name_or_path: "{previous}"`` starts from the previous stage's export."""
    values = dict(values)
    stages = values.pop("stages")
    values.pop("description", None)
    if not isinstance(stages, list) or not stages or not all(isinstance(s, dict) and s.get("name") for s in stages):
        raise KoSimCSEError("stages must be a list of mappings, each with a name")
    names = [s["name"] for s in stages]
    scoped = {tuple(k.split(".", 1)): v for k, v in (overrides or {}).items() if "." in k}
    common = {k: v for k, v in (overrides or {}).items() if "." not in k}
    unknown = sorted({stage for stage, _ in scoped} - set(names))
    if unknown:
        raise KoSimCSEError(f"override(s) for unknown stage(s): {', '.join(unknown)}; stages are {', '.join(names)}")
    root = Path(common.pop("output_dir", values.pop("output_dir", "runs/stages")))
    out: list[tuple[str, dict]] = []
    for i, stage in enumerate(stages):
        settings = {**values, **{k: v for k, v in stage.items() if k != "name"}, **common}
        if i > 0 and stage.get("model_name_or_path") == PREVIOUS:
            settings["model_name_or_path"] = PREVIOUS  # a plain override names the starting model, not this stage's
        settings.update({key: v for (name, key), v in scoped.items() if name == stage["name"]})
        if settings.get("model_name_or_path") == PREVIOUS:
            if i == 0:
                raise KoSimCSEError("the first stage has no previous stage to start from")
            settings["model_name_or_path"] = str(Path(out[-1][1]["output_dir"]) / BEST_DIR)
        out.append((stage["name"], {**settings, "output_dir": str(root / stage["name"])}))
    return out


def train_stages(path: str | Path, overrides: dict | None = None, resume: bool = False) -> list[dict]:
    """Run every stage of a ``stages:`` recipe; a stage whose export exists already is skipped when resuming."""
    stages = stage_settings(read_recipe(path), overrides)
    for name, settings in stages:  # a later stage's mistake should not wait for the earlier stages' training
        try:
            validate_settings(*load_recipe(None, settings))
        except KoSimCSEError as e:
            raise KoSimCSEError(f"{path}, stage {name}: {e}") from None
    summaries = []
    for name, settings in stages:
        summary_file = Path(settings["output_dir"]) / "summary.json"
        if resume and summary_file.exists() and (Path(settings["output_dir"]) / BEST_DIR).is_dir():
            summaries.append(json.loads(summary_file.read_text(encoding="utf-8")))
            continue
        summaries.append({**train(*load_recipe(None, settings), resume_from_checkpoint=True if resume else None),
                          "stage": name})
    return summaries

