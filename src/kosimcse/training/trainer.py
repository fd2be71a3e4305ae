"""Hugging Face ``Trainer`` plus STS model selection, GradCache, a non-finite loss guard, atomic checkpoints."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
from pathlib import Path

import torch
from transformers import Trainer
from transformers.trainer_utils import rotate_checkpoints

from kosimcse.errors import KoSimCSEError
from kosimcse.evaluation.domain import domain_scores, model_encoder, spearman_bootstrap_se
from kosimcse.evaluation.similarity import pairwise_cosine
from kosimcse.modeling.model import aliased_names
from kosimcse.training.args import SELECTION_SCORE
from kosimcse.training.checkpoints import STAGING_DIR, commit_checkpoint, latest_valid_checkpoint
from kosimcse.training.gradcache import grad_cache_backward


class NonFiniteLossError(KoSimCSEError):
    """The loss or the weights became NaN or inf."""


class SimCSETrainer(Trainer):
    def __init__(self, model=None, args=None, *, sts_evaluator=None, tokenizer=None, domain_docs=None, **kwargs):
        n_gpu = getattr(args, "n_gpu", 1)
        if n_gpu > 1:
            # nn.DataParallel computes the loss per replica: each GPU would see only its share of the negatives.
            raise KoSimCSEError(
                f"{n_gpu} GPUs are visible but training runs in one process, where the Trainer would use "
                "nn.DataParallel and each GPU would see only its share of the in-batch negatives. Start one process "
                f"per GPU: torchrun --nproc_per_node {n_gpu} -m kosimcse train RECIPE; "
                "or train on one GPU: CUDA_VISIBLE_DEVICES=0 kosimcse train RECIPE")
        if getattr(args, "selection_metric", "dev") == "domain" and not domain_docs:
            raise KoSimCSEError("selection_metric domain selects by the domain score: give domain_docs (eval_domain)")
        if sts_evaluator is not None:  # the Trainer wants an eval dataset to evaluate by steps; evaluate() ignores it
            kwargs.setdefault("eval_dataset", sts_evaluator.pairs[:1])
        super().__init__(model, args, **kwargs)
        self.sts_evaluator = sts_evaluator
        self.tokenizer_for_eval = tokenizer
        self.domain_docs = domain_docs
        self.bad_batches = 0
        self.start_metrics: dict[str, float] | None = None

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Also append each record (loss, lr, dev metrics) to ``metrics.jsonl``, for the report and for scripts."""
        super().log(logs, start_time)
        if self.is_world_process_zero():
            Path(self.args.output_dir).mkdir(parents=True, exist_ok=True)
            with open(Path(self.args.output_dir) / "metrics.jsonl", "a", encoding="utf-8") as fh:
                fh.write(json.dumps(self.state.log_history[-1], ensure_ascii=False) + "\n")

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs)
        loss = self._guard_finite(outputs["loss"],
                                  lambda: sum(p.sum() * 0.0 for p in model.parameters() if p.requires_grad))
        return (loss, outputs) if return_outputs else loss

    def _guard_finite(self, loss: torch.Tensor, zero) -> torch.Tensor:
        """Return ``loss`` if finite; else count a bad batch and return ``zero()``, or stop past the limit."""
        if torch.isfinite(loss.detach()).all():
            return loss
        self.bad_batches += 1
        step = self.state.global_step + 1
        if self.bad_batches > self.args.max_bad_batches:
            raise NonFiniteLossError(
                f"loss is {loss.item()} at step {step}; stopping (max_bad_batches={self.args.max_bad_batches}). "
                f"Last good checkpoint: {self._last_checkpoint()}. Resume from it with a lower learning rate, "
                "or raise --max_bad_batches to skip such batches.")
        self.log({"skipped_nonfinite_batch": float(step)})
        # A zero that still reaches every parameter (or cached embedding), so backward and DDP's
        # gradient reduction stay in step while the batch contributes nothing.
        return zero()

    def _last_checkpoint(self) -> str:
        folder, _ = latest_valid_checkpoint(self.args.output_dir)
        return str(folder) if folder else "none saved yet"

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        # safetensors refuses tensors sharing memory (the MLM decoder and DiffCSE's discriminator share the word
        # embeddings): save one copy; loading fills the shared Parameter, _keys_to_ignore_on_save silences the gap.
        state_dict = dict(self.model.state_dict() if state_dict is None else state_dict)
        # The distillation teacher (a frozen copy of the start) is rebuilt on resume: not saved either.
        for name in aliased_names(state_dict) + [k for k in state_dict if k.startswith("teacher.")]:
            del state_dict[name]
        super()._save(output_dir, state_dict=state_dict)

    def _get_output_dir(self, trial) -> str:
        run_dir = super()._get_output_dir(trial)
        return str(Path(run_dir) / STAGING_DIR) if getattr(self, "_staging", False) else run_dir

    def _save_checkpoint(self, model, trial) -> None:
        if not has_finite_weights(self.accelerator.unwrap_model(model)):
            raise NonFiniteLossError(
                f"weights are NaN/inf at step {self.state.global_step}; not saving them as a checkpoint. "
                f"Last good checkpoint: {self._last_checkpoint()}. Resume from it with a lower learning rate.")
        run_dir = super()._get_output_dir(trial)
        name = f"checkpoint-{self.state.global_step}"
        staged, final = Path(run_dir) / STAGING_DIR / name, Path(run_dir) / name
        if self.args.should_save:
            shutil.rmtree(staged, ignore_errors=True)  # left by a run killed mid-save
        self.accelerator.wait_for_everyone()
        self._staging = True
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._staging = False
        if self.state.best_model_checkpoint == str(staged):
            self.state.best_model_checkpoint = str(final)
        self.accelerator.wait_for_everyone()  # every rank has written its RNG state
        if self.args.should_save:
            self.state.save_to_json(str(staged / "trainer_state.json"))  # with the final best path
            commit_checkpoint(staged, run_dir)
            rotate_checkpoints(output_dir=run_dir, save_total_limit=self.args.save_total_limit,
                               best_model_checkpoint=self.state.best_model_checkpoint, use_mtime=False)
        self.accelerator.wait_for_everyone()
        if staged.is_dir():  # a node without a shared disk: its ranks' RNG files join its own checkpoint-N
            final.mkdir(parents=True, exist_ok=True)
            for path in staged.iterdir():
                with contextlib.suppress(FileNotFoundError):  # moved by another rank of this node
                    os.replace(path, final / path.name)

    def training_step(self, model, inputs, num_items_in_batch=None):
        chunk = self.args.grad_cache_chunk_size
        if not chunk:
            return super().training_step(model, inputs, num_items_in_batch)
        model.train()
        inputs = self._prepare_inputs(inputs)
        core = self.accelerator.unwrap_model(model)
        batch, views, _ = inputs["input_ids"].shape
        keys = ("input_ids", "attention_mask", "token_type_ids")
        # View-major rows: a chunk holds one view, so an anchor chunk is trimmed to the anchors' length (the model's
        # _pool cuts padding columns), not run at its passages'.
        flat = {k: inputs[k].transpose(0, 1).reshape(batch * views, -1) for k in keys if k in inputs}
        teacher = None
        if getattr(core, "teacher", None) is not None:  # distillation: the start's anchor vectors, once per batch
            with self.accelerator.autocast():
                teacher = core.teacher_vectors(*(inputs[k][:, 0] if k in inputs else None for k in keys))

        def loss_on(reps):
            reps = reps.view(views, batch, -1)
            scores = (inputs["scores"],) if "scores" in inputs else ()  # CoSENT/AnglE
            loss = core.loss_fn(*reps.unbind(0), *scores)
            if teacher is not None:
                loss = loss + core.distill_loss(reps[0], teacher)
            return self._guard_finite(loss, lambda: reps.sum() * 0.0) / self.current_gradient_accumulation_steps

        # Embedding through the (DDP-wrapped) module's forward lets DDP prepare its gradient reduction.
        return grad_cache_backward(lambda chunk_inputs: model(**chunk_inputs, embed_only=True), loss_on, flat, chunk,
                                   backward=self.accelerator.backward, autocast=self.accelerator.autocast,
                                   no_sync=getattr(model, "no_sync", None) or contextlib.nullcontext)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        if self.sts_evaluator is None:
            return {}
        model, ev, args = self.accelerator.unwrap_model(self.model), self.sts_evaluator, self.args
        seen = {}
        scores = ev(lambda texts: seen.setdefault("emb", model.encode(
            self.tokenizer_for_eval, texts, batch_size=args.per_device_eval_batch_size, precision=args.precision,
            show_progress=not args.disable_tqdm and self.is_world_process_zero())))
        metrics = {f"{metric_key_prefix}_{k}": float(v) for k, v in scores.items() if isinstance(v, (int, float))}
        if self.domain_docs:
            encode = model_encoder(model, self.tokenizer_for_eval, args.per_device_eval_batch_size, args.precision)
            found = domain_scores(encode, self.domain_docs)
            metrics.update({f"{metric_key_prefix}_domain_{k}": v for k, v in found.items() if "@" in k})
        dev = f"{metric_key_prefix}_cosine_spearman"
        if self.state.global_step == 0:
            # The Trainer leaves eval_on_start out of best-model tracking; run.py compares against it, and a dev gain
            # within the start's bootstrap standard error does not count (logged, so a resumed run has it too).
            emb = seen["emb"]
            metrics[f"{dev}_se"] = spearman_bootstrap_se(pairwise_cosine(emb[ev.left], emb[ev.right]), ev.gold)
            self.start_metrics = metrics
        if args.selection_tolerance > 0 or args.selection_metric == "domain":
            if self.start_metrics is None:  # resumed: the start's evaluation is in the restored log history
                self.start_metrics = next((r for r in self.state.log_history if r.get("step") == 0 and dev in r), None)
            if self.start_metrics is None:
                raise KoSimCSEError("selection_tolerance needs the starting model's dev score, which the resumed "
                                    "checkpoint lacks: start the run again without resuming, with eval_on_start true")
            start = self.start_metrics[dev]
            metrics[SELECTION_SCORE] = (
                selection_score(metrics[dev], start, args.selection_tolerance, self.state.global_step)
                if args.selection_metric == "dev" else metrics[f"{metric_key_prefix}_domain_mrr@10"]
                if metrics[dev] >= start - args.selection_tolerance else -1.0)
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics


def selection_score(dev: float, start: float, tolerance: float, step: int) -> float:
    """A metric whose best checkpoint is the latest one within ``tolerance`` of the start: scores at or above
    ``start - tolerance`` share that floor plus a tiny bonus per step, so the start (step 0) wins only alone there."""
    return min(dev, start - tolerance) + 1e-9 * step


def has_finite_weights(model: torch.nn.Module) -> bool:
    return all(math.isfinite(float(p.detach().float().abs().sum())) for p in model.parameters())
