"""The SimCSE trainer: Hugging Face ``Trainer`` (Accelerate underneath) plus what contrastive training needs.

The Trainer already gives DDP over torchrun/accelerate, bf16/fp16 autocast (bf16 on CPU too),
checkpoints with optimizer/scheduler/RNG state and data position, TensorBoard, and best-checkpoint
tracking. This subclass adds only:

- evaluation = STS on KorSTS dev (no eval loss exists for SimCSE), driving best-model selection;
- GradCache when ``grad_cache_chunk_size`` is set;
- a guard against non-finite losses (skip a bounded number of batches, then stop with a clear message);
- checkpoints that appear only complete (staged, then renamed), never holding NaN/inf weights;
- a JSONL metrics log beside TensorBoard.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
from pathlib import Path

import torch
from transformers import Trainer, TrainerCallback
from transformers.trainer_utils import rotate_checkpoints

from kosimcse.errors import KoSimCSEError
from kosimcse.modeling.model import aliased_names
from kosimcse.training.args import SELECTION_SCORE
from kosimcse.training.checkpoints import commit_checkpoint, staging_dir
from kosimcse.training.gradcache import grad_cache_backward


class NonFiniteLossError(KoSimCSEError):
    """The loss became NaN or inf more often than ``max_bad_batches`` allows."""


class JsonlLogger(TrainerCallback):
    """Append every log record (loss, lr, dev metrics) to ``metrics.jsonl`` for the report and for scripts."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            record = {"step": state.global_step, "epoch": state.epoch, **logs}
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")


def refuse_data_parallel(args) -> None:
    """Stop where the Trainer would fall back to ``nn.DataParallel`` (several visible GPUs, one process).

    DataParallel splits each batch across the GPUs and computes the loss per replica, so every GPU would
    contrast its sentences only with its own share of the negatives; DDP under torchrun gathers them all.
    """
    n_gpu = getattr(args, "n_gpu", 1)
    if n_gpu > 1:
        raise KoSimCSEError(
            f"{n_gpu} GPUs are visible but training runs in one process, where the Trainer would use "
            "nn.DataParallel and each GPU would see only its share of the in-batch negatives. Start one process "
            f"per GPU: torchrun --nproc_per_node {n_gpu} -m kosimcse train RECIPE; "
            "or train on one GPU: CUDA_VISIBLE_DEVICES=0 kosimcse train RECIPE")


class SimCSETrainer(Trainer):
    def __init__(self, *args, sts_evaluator=None, tokenizer=None, **kwargs):
        refuse_data_parallel(kwargs["args"] if "args" in kwargs else args[1] if len(args) > 1 else None)
        super().__init__(*args, **kwargs)
        self.sts_evaluator = sts_evaluator
        self.tokenizer_for_eval = tokenizer
        self.bad_batches = 0
        self.start_metrics: dict[str, float] | None = None
        self._staging = False
        self.add_callback(JsonlLogger(Path(self.args.output_dir) / "metrics.jsonl"))

    # ---- loss ------------------------------------------------------------------------------------
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs)
        loss = outputs["loss"]
        loss = self._guard_finite(loss, lambda: sum(p.sum() * 0.0 for p in model.parameters() if p.requires_grad))
        return (loss, outputs) if return_outputs else loss

    def _guard_finite(self, loss: torch.Tensor, zero) -> torch.Tensor:
        """Return ``loss`` if finite; else count a bad batch and return ``zero()``, or stop past the limit."""
        if torch.isfinite(loss.detach()).all():
            return loss
        self.bad_batches += 1
        step = self.state.global_step + 1
        if self.bad_batches > self.args.max_bad_batches:
            last = self._last_checkpoint()
            raise NonFiniteLossError(
                f"loss is {loss.item()} at step {step}; stopping (max_bad_batches={self.args.max_bad_batches}). "
                f"Last good checkpoint: {last or 'none saved yet'}. Resume from it with a lower learning rate, "
                "or raise --max_bad_batches to skip such batches.")
        self.log({"skipped_nonfinite_batch": float(step)})
        # A zero that still reaches every parameter (or cached embedding), so backward and DDP's
        # gradient reduction stay in step while the batch contributes nothing.
        return zero()

    def _last_checkpoint(self) -> str | None:
        from kosimcse.training.checkpoints import latest_valid_checkpoint

        folder, _ = latest_valid_checkpoint(self.args.output_dir)
        return str(folder) if folder else None

    # ---- checkpoints: staged, then renamed into place (see kosimcse.training.checkpoints) ----------
    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        # SimCSEModel is a plain nn.Module, so the Trainer writes its state dict with safetensors, which refuses
        # tensors sharing memory: the MLM auxiliary loss's decoder is tied to the word embeddings, and the DiffCSE
        # discriminator shares them too. Save one copy;
        # on resume, loading fills the shared Parameter and the model's _keys_to_ignore_on_save silences the gap.
        state_dict = dict(self.model.state_dict() if state_dict is None else state_dict)
        for name in aliased_names(state_dict):
            del state_dict[name]
        super()._save(output_dir, state_dict=state_dict)

    def _get_output_dir(self, trial) -> str:
        run_dir = super()._get_output_dir(trial)
        return str(staging_dir(run_dir)) if getattr(self, "_staging", False) else run_dir

    def _save_checkpoint(self, model, trial) -> None:
        if not has_finite_weights(self.accelerator.unwrap_model(model)):
            last = self._last_checkpoint()
            raise NonFiniteLossError(
                f"weights are NaN/inf at step {self.state.global_step}; not saving them as a checkpoint. "
                f"Last good checkpoint: {last or 'none saved yet'}. Resume from it with a lower learning rate.")
        run_dir = super()._get_output_dir(trial)
        name = f"checkpoint-{self.state.global_step}"
        staged = staging_dir(run_dir) / name
        if self.args.should_save:
            shutil.rmtree(staged, ignore_errors=True)  # left by a run killed mid-save
        self.accelerator.wait_for_everyone()
        self._staging = True
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._staging = False
        final = str(Path(run_dir) / name)
        if self.state.best_model_checkpoint == str(staged):
            self.state.best_model_checkpoint = final
        self.accelerator.wait_for_everyone()  # every rank has written its RNG state
        if self.args.should_save:
            self.state.save_to_json(str(staged / "trainer_state.json"))  # with the final best path
            commit_checkpoint(staged, run_dir)
            rotate_checkpoints(output_dir=run_dir, save_total_limit=self.args.save_total_limit,
                               best_model_checkpoint=self.state.best_model_checkpoint, use_mtime=False)
        self.accelerator.wait_for_everyone()
        if staged.is_dir():  # a node without a shared disk: its ranks' RNG files join its own checkpoint-N
            Path(final).mkdir(parents=True, exist_ok=True)
            for path in staged.iterdir():
                try:
                    os.replace(path, Path(final) / path.name)
                except FileNotFoundError:
                    pass  # moved by another rank of this node

    def training_step(self, model, inputs, num_items_in_batch=None):
        chunk = self.args.grad_cache_chunk_size
        if not chunk:
            return super().training_step(model, inputs, num_items_in_batch)
        model.train()
        inputs = self._prepare_inputs(inputs)
        core = self.accelerator.unwrap_model(model)
        batch, views, length = inputs["input_ids"].shape
        flat = {k: inputs[k].reshape(batch * views, -1) for k in ("input_ids", "attention_mask", "token_type_ids") if k in inputs}

        def embed(chunk_inputs):
            # Through the (DDP-wrapped) module's forward so DDP prepares its gradient reduction.
            return model(**chunk_inputs, embed_only=True)

        teacher = None
        if getattr(core, "teacher", None) is not None:  # distillation: the start's anchor vectors, once per batch
            with self.accelerator.autocast():
                teacher = core.teacher_vectors(*(inputs[k][:, 0] if k in inputs else None
                                                 for k in ("input_ids", "attention_mask", "token_type_ids")))

        def loss_on(reps):
            reps = reps.view(batch, views, -1)
            scores = (inputs["scores"],) if "scores" in inputs else ()  # CoSENT/AnglE
            loss = core.loss_fn(*(reps[:, v] for v in range(views)), *scores)
            if teacher is not None:
                loss = loss + core.distill_loss(reps[:, 0], teacher)
            return self._guard_finite(loss, lambda: reps.sum() * 0.0) / self.current_gradient_accumulation_steps

        no_sync = getattr(model, "no_sync", None) or contextlib.nullcontext
        return grad_cache_backward(embed, loss_on, flat, chunk, backward=self.accelerator.backward,
                                   no_sync=no_sync, autocast=self.accelerator.autocast)

    # ---- evaluation ------------------------------------------------------------------------------
    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        if self.sts_evaluator is None:
            return {}
        model = self.accelerator.unwrap_model(self.model)
        precision = "bf16" if self.args.bf16 else "fp16" if self.args.fp16 else "fp32"
        scores = self.sts_evaluator(lambda texts: model.encode(
            self.tokenizer_for_eval, texts, batch_size=self.args.eval_batch_size, precision=precision,
            show_progress=not self.args.disable_tqdm and self.is_world_process_zero()))
        metrics = {f"{metric_key_prefix}_{k}": float(v) for k, v in scores.items() if isinstance(v, (int, float))}
        if self.state.global_step == 0:
            # The Trainer leaves eval_on_start out of best-model tracking; run.py compares against it.
            self.start_metrics = metrics
        if self.args.selection_tolerance > 0:
            if self.start_metrics is None:  # resumed: the start was evaluated by the first attempt
                self.start_metrics = logged_start_metrics(Path(self.args.output_dir) / "metrics.jsonl")
            metrics[SELECTION_SCORE] = selection_score(
                metrics[f"{metric_key_prefix}_cosine_spearman"], self.start_metrics[f"{metric_key_prefix}_cosine_spearman"],
                self.args.selection_tolerance, self.state.global_step)
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics



def logged_start_metrics(path: Path) -> dict[str, float]:
    """The step-0 evaluation recorded in a run's ``metrics.jsonl`` (needed again when a run resumes)."""
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line) if line.strip() else {}
            if record.get("step") == 0 and "eval_cosine_spearman" in record:
                return {k: v for k, v in record.items() if k.startswith("eval_")}
    raise KoSimCSEError(f"selection_tolerance needs the starting model's dev score, and {path} has none: "
                        "start the run again without resuming, with eval_on_start true")


def selection_score(dev: float, start: float, tolerance: float, step: int) -> float:
    """Score that makes "the latest checkpoint within ``tolerance`` of the start" the Trainer's best checkpoint.

    Every evaluation at or above ``start - tolerance`` scores the same floor plus a tiny bonus per step, so the
    most-trained of them wins; one below the floor scores lower. The start itself (step 0) sits on the floor
    without a bonus, so it is kept only when no trained checkpoint stays within the tolerance.
    Expressed as a metric so that the Trainer's best-checkpoint tracking and ``save_total_limit`` keep it.
    """
    return min(dev, start - tolerance) + 1e-9 * step


def has_finite_weights(model: torch.nn.Module) -> bool:
    return all(math.isfinite(float(p.detach().float().abs().sum())) for p in model.parameters())
