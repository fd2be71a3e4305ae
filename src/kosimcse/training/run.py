"""One training run from arguments to exported model: data, model, Trainer, best-model export with a model card."""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

from kosimcse.errors import KoSimCSEError
from kosimcse.modeling.losses import INPUTS, LOSSES
from kosimcse.modeling.model import SimCSEModel
from kosimcse.training.args import DataArguments, ModelArguments, SimCSETrainingArguments
from kosimcse.training.data import ContrastiveCollator, sentence_dataset, sts_pair_dataset, triplet_dataset
from kosimcse.training.documents import document_dataset, document_setting_problems
from kosimcse.training.trainer import NonFiniteLossError, SimCSETrainer, has_finite_weights

BEST_DIR = "best"


# The kind of example each objective's data gives the loss (``losses.INPUTS``: sentence views per example).
OBJECTIVES = {"unsup": "sentences", "esimcse": "sentences", "sup": "triplets", "sts": "scored_pairs"}


def resolve_loss(margs: ModelArguments, objective: str) -> str:
    """The loss for an objective (``loss: auto``: the loss registered as its default), refused unless it takes the
    objective's kind of example."""
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
    """Refuse settings that could not take effect (or do not fit together) before anything is loaded.

    A setting counts as set when it differs from its dataclass default, so a recipe that spells out a default
    (e.g. ``temperature: 0.05`` shared by every stage) stays valid. Returns the resolved loss.
    """
    from kosimcse.modeling.model import head_setting_problem

    loss = resolve_loss(margs, dargs.objective)
    changed = lambda name: getattr(margs, name) != ModelArguments.__dataclass_fields__[name].default  # noqa: E731
    problems = []
    head = head_setting_problem(margs.pooler, margs.mlp_only_train)
    if head:
        problems.append(head)
    reads = LOSSES[loss].options
    for name in dict.fromkeys(option for c in LOSSES.values() for option in c.options):
        if name not in reads and changed(name):
            readers = "/".join(n for n, c in LOSSES.items() if name in c.options)
            problems.append(f"{name} {getattr(margs, name)} has no effect with loss {loss} (read only by loss "
                            f"{readers}); remove {name}")
    if "hard_negative_weight" in reads and margs.hard_negative_weight != 0 and OBJECTIVES[dargs.objective] != "triplets":
        problems.append(f"hard_negative_weight {margs.hard_negative_weight} has no effect with objective "
                        f"{dargs.objective}: only objective sup (NLI triplets) has hard negatives; remove it")
    if margs.prompt_template and margs.pooler != "prompt":
        problems.append(f"prompt_template is used only with pooler: prompt (pooler is {margs.pooler}); "
                        "set pooler: prompt or remove prompt_template")
    if changed("rtd_mask_ratio") and margs.rtd_weight == 0:
        problems.append(f"rtd_mask_ratio {margs.rtd_mask_ratio} has no effect while rtd_weight is 0 "
                        "(the replaced-token detection loss is off); set rtd_weight > 0 or remove rtd_mask_ratio")
    if changed("dup_rate") and dargs.objective != "esimcse":
        problems.append(f"dup_rate {margs.dup_rate} (ESimCSE word repetition) has no effect with objective "
                        f"{dargs.objective}; use objective: esimcse or remove dup_rate")
    chunk = targs.grad_cache_chunk_size
    if chunk:
        views = INPUTS[OBJECTIVES[dargs.objective]]  # GradCache chunks count rows: examples x views
        rows = targs.per_device_train_batch_size * views
        if chunk >= rows:
            problems.append(f"grad_cache_chunk_size {chunk} has no effect: one chunk already holds the whole batch "
                            f"({targs.per_device_train_batch_size} examples x {views} views = "
                            f"{rows} rows); set it below {rows} or to 0")
        if not LOSSES[loss].grad_cache:
            problems.append(f"loss {loss} is not supported with GradCache, which calls the loss without the model's "
                            "forward step (where ESimCSE fills its momentum queue); set grad_cache_chunk_size 0")
        if margs.mlm_weight > 0 or margs.rtd_weight > 0:
            # GradCache re-embeds chunks and calls only the contrastive loss; an auxiliary loss would be skipped.
            problems.append("the MLM / replaced-token auxiliary losses are not supported with GradCache; "
                            "set grad_cache_chunk_size 0 or the auxiliary weight (mlm_weight / rtd_weight) 0")
    problems += document_setting_problems(dargs)
    if problems:
        raise KoSimCSEError("; ".join(problems))
    return loss


def build_model(margs: ModelArguments, objective: str = "unsup", batch_size: int = 64):
    """Resolve the model id (Hub, local folder or air-gapped alias) and wrap it for SimCSE."""
    from transformers import AutoTokenizer

    from kosimcse.loading.resolve import resolve_model

    path = resolve_model(margs.model_name_or_path, allow_pickle=margs.allow_pickle,
                         trust_remote_code=margs.trust_remote_code)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=margs.trust_remote_code)
    loss = resolve_loss(margs, objective)
    resolved = {"loss": loss}
    if "queue_size" in LOSSES[loss].options:  # ESimCSE's queue: a couple of batches of past sentences by default.
        resolved["queue_size"] = margs.queue_size or 2 * batch_size
    if margs.mask_token_id is None:
        resolved["mask_token_id"] = tokenizer.mask_token_id
    config = margs.model_config(**resolved)
    model = SimCSEModel.from_encoder(path, config, trust_remote_code=margs.trust_remote_code)
    if margs.freeze_embeddings:
        # For big-vocabulary encoders (e5: 96M of 118M weights are the token matrix) AdamW on the
        # embedding matrix dominates a CPU step; freezing it is much faster and keeps the vocabulary
        # space of the pretrained model.
        model.encoder.get_input_embeddings().weight.requires_grad_(False)
    if margs.freeze_layers:
        freeze_lower_layers(model.encoder, margs.freeze_layers)
    return model, tokenizer, path


def freeze_lower_layers(encoder, n: int) -> None:
    """Freeze the embedding block and the lowest ``n`` transformer layers of a Hugging Face encoder."""
    import torch

    total = getattr(encoder.config, "num_hidden_layers", None)
    layers = next((m for m in encoder.modules() if isinstance(m, torch.nn.ModuleList) and len(m) == total), None)
    if layers is None or total is None:
        raise KoSimCSEError(f"freeze_layers: cannot find the transformer layers of {type(encoder).__name__}")
    if not 0 <= n <= total:
        raise KoSimCSEError(f"freeze_layers must be between 0 and {total} (the encoder's layers), not {n}")
    # Nothing below layer n needs a gradient, so autograd stops there: the lower layers cost a forward pass only.
    for module in [encoder.get_input_embeddings(), getattr(encoder, "embeddings", None), *layers[:n]]:
        if module is not None:
            module.requires_grad_(False)


def build_train_dataset(dargs: DataArguments, targs: SimCSETrainingArguments):
    if dargs.documents_file:
        return document_dataset(dargs, seed=targs.seed)
    if dargs.objective in ("unsup", "esimcse"):
        train_file = dargs.train_file
        if train_file is None:
            train_file = _prepare_default_corpus(dargs, Path(targs.output_dir) / "corpus")
        return sentence_dataset(train_file, limit=dargs.max_train_sentences, seed=targs.seed)
    if dargs.objective == "sup":
        return triplet_dataset(_read_triplets(dargs), limit=dargs.max_train_sentences, seed=targs.seed)
    if dargs.objective == "sts":
        return sts_pair_dataset(_read_sts_pairs(dargs), limit=dargs.max_train_sentences, seed=targs.seed)
    raise KoSimCSEError(f"objective must be one of {', '.join(OBJECTIVES)}, not {dargs.objective!r}")


def _read_sts_pairs(dargs: DataArguments):
    """KorSTS train + KLUE-STS train by default; the dev/test files are evaluation data and never read here."""
    from kosimcse.data import readers
    from kosimcse.paths import data_dir

    files = [Path(f) for f in dargs.sts_files]
    if not files:
        root = data_dir(dargs.data_dir)
        files = [root / "korsts" / "sts-train.tsv", root / "klue-sts" / "klue_sts_train.csv"]
    held_out = _evaluation_files(dargs)
    pairs = []
    for path in files:
        if path.resolve() in held_out or {"dev", "test", "val", "validation"} & set(re.split(r"[_\-.]", path.stem.lower())):
            raise KoSimCSEError(f"{path} is an evaluation set; STS training reads train files only")
        if path.suffix == ".tsv":
            pairs.extend(readers.read_korsts(path))
        elif path.suffix == ".json":
            pairs.extend(readers.read_klue_sts_json(path))
        else:
            pairs.extend(readers.read_klue_sts_csv(path))
    return pairs


def _read_triplets(dargs: DataArguments):
    from kosimcse.data import readers
    from kosimcse.data.nli import build_triplets
    from kosimcse.paths import data_dir

    path = Path(dargs.nli_file) if dargs.nli_file else data_dir(dargs.data_dir) / "nli" / "klue-nli-train-dacon" / "benchmark_train_data.csv"
    if path.suffix == ".csv":
        pairs = readers.read_klue_nli_dacon_csv(path, split="train")  # the dev rows never enter training
    elif path.suffix == ".json":
        pairs = readers.read_klue_nli_json(path)
    else:
        pairs = readers.read_xnli_tsv(path)
    return build_triplets(list(pairs))


def _evaluation_files(dargs: DataArguments) -> set[Path]:
    """The files the evaluator reads for this data folder (one registry: ``kosimcse.data.tasks``)."""
    from kosimcse.data.tasks import task_files

    return task_files(dargs.data_dir)


def _prepare_default_corpus(dargs: DataArguments, out_dir: Path) -> Path:
    """Prepare the corpus the recipe names (seed and/or domain sources) once, into the run folder."""
    from kosimcse.data.corpus import default_sources, prepare_corpus

    target = out_dir / "sentences.txt"
    if not target.exists():
        specs = default_sources(dargs.data_dir, seed=dargs.prepare_seed, sts=dargs.prepare_sts,
                                domain=list(dargs.prepare_sources))
        from kosimcse.data.tasks import DEFAULT_EVAL_SETS

        # The sets this run evaluates on are guarded too, even custom ones.
        guarded = tuple(dict.fromkeys([*DEFAULT_EVAL_SETS, dargs.eval_task, *dargs.report_tasks]))
        prepare_corpus(specs, out_dir=out_dir, eval_sets=guarded, data_dir=dargs.data_dir)
    return target


def build_evaluator(dargs: DataArguments, task: str | None = None):
    from kosimcse.data.tasks import load_sts_task
    from kosimcse.evaluation.sts import StsEvaluator

    name = task or dargs.eval_task
    return StsEvaluator(load_sts_task(name, dargs.data_dir), name=name)


def evaluate_tasks(model, tokenizer, tasks: list[str], dargs: DataArguments, precision: str = "fp32") -> dict[str, dict]:
    """All 8 metrics on each task, for the model card and run summary; ``precision`` as in kosimcse.precision."""
    from kosimcse.precision import resolve_precision

    results = {}
    device = next(model.parameters()).device
    chosen = resolve_precision(precision, device)
    for task in tasks:
        evaluator = build_evaluator(dargs, task)
        results[task] = evaluator(lambda texts: model.encode(tokenizer, texts, batch_size=128, precision=chosen.name))
    return results


def model_card(name: str, margs: ModelArguments, dargs: DataArguments, results: dict[str, dict],
               precision: str = "") -> str:
    from kosimcse.evaluation.sts import markdown_table

    lines = [f"# {name}", "",
             f"SimCSE ({dargs.objective}) sentence embeddings trained with KoSimCSE from `{margs.model_name_or_path}`.",
             f"Pooling `{margs.pooler}`, MLP only in training: {margs.mlp_only_train}, temperature {margs.temperature}, "
             f"prefix {margs.prefix!r}." + (f" Trained and evaluated in {precision}." if precision else ""), "",
             "Loads with `transformers.AutoModel`, `kosimcse.KoSimCSE` and `kosimcse eval/encode/search`"
             + (" (prompt pooling has no sentence-transformers module, so it has no `SentenceTransformer` layout)."
                if margs.pooler == "prompt" else ", and `sentence_transformers.SentenceTransformer`."), ""]
    for task, metrics in results.items():
        lines += [f"## {task}", "", markdown_table({name: metrics}), ""]
    return "\n".join(lines)


def _checkpoint_to_resume(resume: str | bool | None, output_dir: str) -> str | None:
    """``True``: the newest intact checkpoint in ``output_dir`` (damaged ones are skipped, with the reason);
    a path: that checkpoint, refused if damaged."""
    import logging

    from kosimcse.training.checkpoints import checkpoint_problem, latest_valid_checkpoint

    if not resume:
        return None
    if resume is True:
        folder, skipped = latest_valid_checkpoint(output_dir)
        for bad, why in skipped:
            logging.getLogger(__name__).warning("skipping damaged checkpoint %s: %s", bad, why)
        if folder is None:
            logging.getLogger(__name__).warning("no intact checkpoint in %s; starting from scratch", output_dir)
        return str(folder) if folder else None
    problem = checkpoint_problem(resume)
    if problem:
        raise KoSimCSEError(f"cannot resume from {resume}: {problem}")
    return str(resume)


def train(margs: ModelArguments, dargs: DataArguments, targs: SimCSETrainingArguments,
          resume_from_checkpoint: str | bool | None = None) -> dict:
    """Train, keep the best checkpoint by dev cosine Spearman, export it to ``OUTPUT/best``; return a summary."""
    from transformers import set_seed

    validate_settings(margs, dargs, targs)
    set_seed(targs.seed)
    if targs.should_log:
        print(f"precision: {targs.precision} ({targs.precision_reason})", file=sys.stderr, flush=True)
    model, tokenizer, resolved = build_model(margs, dargs.objective, targs.per_device_train_batch_size)
    train_dataset = build_train_dataset(dargs, targs)
    global_batch = targs.per_device_train_batch_size * max(targs.world_size, 1)
    if targs.dataloader_drop_last and len(train_dataset) < global_batch:
        # Ragged batches are dropped (all_gather needs equal shapes), so this would train 0 steps and export the start.
        raise KoSimCSEError(f"{len(train_dataset)} training examples fill no batch of {global_batch} "
                            "(per_device_train_batch_size x processes): training would run 0 steps. "
                            "Lower per_device_train_batch_size or give more data")
    evaluator = build_evaluator(dargs)
    collator = ContrastiveCollator(tokenizer, max_length=margs.max_length, prefix=margs.prefix,
                                   mlm_probability=0.15 if margs.mlm_weight > 0 else 0.0,
                                   dup_rate=margs.dup_rate if dargs.objective == "esimcse" else 0.0,
                                   template=model.config.prompt_template if model.config.is_prompt else "",
                                   passage_max_length=dargs.passage_max_length if dargs.documents_file else None)
    import datasets

    # The Trainer insists on an eval dataset when evaluating by steps; ours is the dev pairs themselves.
    eval_stub = datasets.Dataset.from_dict({"sentence1": [p.sentence1 for p in evaluator.pairs[:1]]})
    trainer = SimCSETrainer(model=model, args=targs, train_dataset=train_dataset, eval_dataset=eval_stub,
                            data_collator=collator, sts_evaluator=evaluator, tokenizer=tokenizer)
    resume_from_checkpoint = _checkpoint_to_resume(resume_from_checkpoint, targs.output_dir)
    # With eval_on_start the starting model competes in model selection too: a strong encoder
    # (e5) can come out of a short contrastive run worse than it went in, and then we keep it as it was.
    initial_state = ({k: v.detach().clone() for k, v in model.state_dict().items()}
                     if targs.eval_on_start and not resume_from_checkpoint else None)
    start = time.time()
    result = trainer.train(resume_from_checkpoint=resume_from_checkpoint or None)
    wall = time.time() - start
    kept_initial = False
    best_ckpt = trainer.state.best_model_checkpoint
    start_score = (trainer.start_metrics or {}).get(targs.metric_for_best_model or "eval_cosine_spearman")
    best_score = trainer.state.best_metric
    if initial_state is not None and start_score is not None and (
            best_ckpt is None or not Path(best_ckpt).is_dir() or best_score is None or start_score >= best_score):
        trainer.accelerator.unwrap_model(trainer.model).load_state_dict(initial_state)
        kept_initial = True
    summary = {"train_loss": result.training_loss, "global_step": result.global_step, "wall_time_s": wall,
               "train_sentences": len(train_dataset), "model": str(margs.model_name_or_path),
               "resolved_model": str(resolved), "best_checkpoint": trainer.state.best_model_checkpoint,
               "best_metric": trainer.state.best_metric, "kept_initial_model": kept_initial,
               "start_metric": start_score,
               "start_dev": (trainer.start_metrics or {}).get("eval_cosine_spearman"),
               "precision": targs.precision, "precision_reason": targs.precision_reason,
               "selection": (f"latest checkpoint within {targs.selection_tolerance:g} dev points of the start"
                             if targs.selection_tolerance > 0 else "best dev score")}
    if kept_initial:
        summary["best_checkpoint"], summary["best_metric"] = None, start_score
    seen = result.global_step * targs.per_device_train_batch_size * targs.gradient_accumulation_steps * max(targs.world_size, 1)
    summary["sentences_per_s"] = seen / wall if wall > 0 else None
    if trainer.is_world_process_zero():
        best = trainer.accelerator.unwrap_model(trainer.model)
        if not has_finite_weights(best):
            raise NonFiniteLossError(f"the final model has NaN/inf weights; not exporting it to {BEST_DIR}/")
        results = evaluate_tasks(best, tokenizer, list(dargs.report_tasks), dargs, precision=targs.precision)
        summary["results"] = results
        summary["eval_task"] = dargs.eval_task
        out = Path(targs.output_dir) / BEST_DIR
        card = model_card(out.name, margs, dargs, results, precision=f"{targs.precision} ({targs.precision_reason})")
        best.save_pretrained(out, tokenizer=tokenizer, model_card=card)
        summary["exported"] = str(out)
        (Path(targs.output_dir) / "summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2),
                                                            encoding="utf-8")
    return summary


PREVIOUS = "{previous}"


def stage_settings(values: dict, overrides: dict | None = None) -> list[tuple[str, dict]]:
    """Expand a recipe with ``stages:`` into one option mapping per stage, in order.

    Each stage = the top-level options + its own + the overrides (``--NAME.key value`` for one stage only).
    ``output_dir`` becomes ``OUTPUT/NAME``; a stage's ``model_name_or_path: "{previous}"`` starts from the
    previous stage's exported best model, and a plain ``--model_name_or_path`` override sets the first stage's.
    """
    values = dict(values)
    stages = values.pop("stages")
    values.pop("description", None)
    if not isinstance(stages, list) or not stages or not all(isinstance(s, dict) and s.get("name") for s in stages):
        raise KoSimCSEError("stages must be a list of mappings, each with a name")
    overrides = dict(overrides or {})
    names = [s["name"] for s in stages]
    scoped = {k: v for k, v in overrides.items() if "." in k}
    common = {k: v for k, v in overrides.items() if "." not in k}
    unknown = sorted({k.split(".", 1)[0] for k in scoped} - set(names))
    if unknown:
        raise KoSimCSEError(f"override(s) for unknown stage(s): {', '.join(unknown)}; stages are {', '.join(names)}")
    root = Path(common.pop("output_dir", values.pop("output_dir", "runs/stages")))
    out: list[tuple[str, dict]] = []
    for i, stage in enumerate(stages):
        settings = {**values, **{k: v for k, v in stage.items() if k != "name"}, **common}
        settings.update({k.split(".", 1)[1]: v for k, v in scoped.items() if k.split(".", 1)[0] == stage["name"]})
        if i > 0 and "model_name_or_path" in common and stage.get("model_name_or_path") == PREVIOUS:
            settings["model_name_or_path"] = PREVIOUS  # the override names the starting model, not this stage's
        if settings.get("model_name_or_path") == PREVIOUS:
            if i == 0:
                raise KoSimCSEError("the first stage has no previous stage to start from")
            settings["model_name_or_path"] = str(Path(out[-1][1]["output_dir"]) / BEST_DIR)
        settings["output_dir"] = str(root / stage["name"])
        out.append((stage["name"], settings))
    return out


def train_stages(path: str | Path, overrides: dict | None = None, resume: bool = False) -> list[dict]:
    """Run every stage of a ``stages:`` recipe; a stage whose export exists already is skipped when resuming."""
    from kosimcse.training.args import load_recipe, read_recipe

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
        summary = train(*load_recipe(None, settings), resume_from_checkpoint=True if resume else None)
        summary["stage"] = name
        summaries.append(summary)
    return summaries


if __name__ == "__main__":  # an alias of `kosimcse train RECIPE [--resume] [--key value | --STAGE.key value]`
    import sys

    from kosimcse.cli import main

    main(["train", *sys.argv[1:]])
