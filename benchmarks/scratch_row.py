"""The from-scratch quality row: a mini BERT pretrained with MLM on a kowiki slice, then unsupervised SimCSE.

This is the raw-PLM proxy of the quality table: no pretrained Korean checkpoint can be downloaded here, so a
small BERT is trained from nothing on the CPUs of this machine, and its budget is reported with its scores.
Only kowiki text goes into it; the tokenizer, the MLM data and the SimCSE data see no STS sentence:

1. a BERT WordPiece tokenizer (vocab 8000) trained on the kowiki sentences;
2. a 4-layer, 256-wide BERT pretrained with masked-language modelling (HF Trainer, precision auto),
   saved as a plain HF folder in ``runs/bench/scratch/mlm``;
3. unsupervised SimCSE from that folder with kosimcse's own trainer, as ``benchmarks.train_rows`` does.

It writes two rows for ``benchmarks.quality``: ``train_scratch_mini_mlm`` (the MLM model alone, mean pooling)
and ``train_scratch_mini`` (after SimCSE), each with its budget.

    python -m benchmarks.scratch_row --mlm_steps 1500 --simcse_steps 500
    python -m benchmarks.scratch_row --smoke     # plumbing check, tiny budget; writes nothing to benchmarks/results
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

RUNS = Path("runs/bench/scratch")
TASKS = ("korsts-dev", "korsts-test", "klue-sts-dev")


@dataclass(frozen=True)
class MiniBert:
    """Size of the encoder trained from scratch; the defaults are the row's, tests pass a tiny one."""

    vocab_size: int = 8000
    hidden: int = 256
    layers: int = 4
    heads: int = 4
    intermediate: int = 1024
    max_position: int = 128

    @property
    def label(self) -> str:
        return f"{self.layers}x{self.hidden}"


def read_sentences(path: str | Path, limit: int | None = None) -> list[str]:
    """The lines of a prepared ``sentences.txt`` (one sentence per line), in file order."""
    out: list[str] = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if line:
                out.append(line)
                if limit is not None and len(out) >= limit:
                    break
    return out


def train_tokenizer(sentences: list[str], vocab_size: int, model_max_length: int = 128):
    """A fast BERT-style WordPiece tokenizer trained on ``sentences``."""
    from kosimcse.modeling.tokenizer import train_wordpiece_tokenizer

    return train_wordpiece_tokenizer(sentences, vocab_size, model_max_length)


def _examples(tokenizer, sentences: list[str], max_length: int) -> list[dict]:
    # The special-tokens mask is computed once here, so the collator does not recompute it every batch.
    enc = tokenizer(sentences, truncation=True, max_length=max_length, return_special_tokens_mask=True,
                    return_token_type_ids=False, return_attention_mask=False)
    return [{"input_ids": ids, "special_tokens_mask": mask}
            for ids, mask in zip(enc["input_ids"], enc["special_tokens_mask"])]


def heldout_mlm_loss(model, batches: list[dict]) -> float:
    """Mean cross-entropy over the masked tokens of fixed, pre-masked batches (fp32, eval mode)."""
    import torch
    import torch.nn.functional as F

    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in batches:
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            labels = batch["labels"]
            total += F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                     ignore_index=-100, reduction="sum").item()
            count += int((labels != -100).sum())
    model.train(was_training)
    return total / max(count, 1)


def pretrain_mlm(sentences: list[str], out_dir: str | Path, size: MiniBert = MiniBert(), steps: int = 1500,
                 batch_size: int = 64, max_length: int = 64, learning_rate: float = 5e-4,
                 warmup_steps: int | None = None, heldout: int = 1000, precision: str = "auto", seed: int = 42,
                 logging_steps: int = 50) -> dict:
    """Train the tokenizer and the MLM model; save both to ``out_dir`` (``save_pretrained``); return a summary.

    The last ``heldout`` sentences (the last articles, in file order) are kept out of training and give a
    held-out masked-LM loss before and after, on the same fixed masks, so the summary shows it learned.
    """
    import torch
    from transformers import BertConfig, BertForMaskedLM, DataCollatorForLanguageModeling, Trainer, TrainingArguments
    from transformers import set_seed

    from kosimcse.precision import resolve_precision

    start = time.perf_counter()
    out_dir = Path(out_dir)
    heldout = min(heldout, len(sentences) // 10)
    train_sentences, held_sentences = sentences[:len(sentences) - heldout], sentences[len(sentences) - heldout:]
    tokenizer = train_tokenizer(train_sentences, size.vocab_size, model_max_length=size.max_position)
    tokenizer_s = time.perf_counter() - start

    set_seed(seed)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=size.hidden, num_hidden_layers=size.layers,
                        num_attention_heads=size.heads, intermediate_size=size.intermediate,
                        max_position_embeddings=size.max_position, pad_token_id=tokenizer.pad_token_id)
    model = BertForMaskedLM(config)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm=True, mlm_probability=0.15)
    train_data = _examples(tokenizer, train_sentences, max_length)
    # The held-out batches are masked once, with their own seeded collator, so "before" and "after" see the same masks.
    fixed = DataCollatorForLanguageModeling(tokenizer, mlm=True, mlm_probability=0.15, seed=seed)
    held_data = _examples(tokenizer, held_sentences, max_length)
    held_batches = [fixed(held_data[i:i + batch_size]) for i in range(0, len(held_data), batch_size)]
    heldout_before = heldout_mlm_loss(model, held_batches) if held_batches else None

    chosen = resolve_precision(precision).name
    args = TrainingArguments(
        output_dir=str(out_dir.parent / (out_dir.name + "-trainer")), max_steps=steps,
        per_device_train_batch_size=batch_size, learning_rate=learning_rate,
        warmup_steps=steps // 10 if warmup_steps is None else warmup_steps, weight_decay=0.01,
        lr_scheduler_type="linear", bf16=chosen == "bf16", fp16=chosen == "fp16",
        use_cpu=not torch.cuda.is_available(), seed=seed,
        logging_steps=logging_steps, save_strategy="no", report_to=[], disable_tqdm=True,
        dataloader_drop_last=True, remove_unused_columns=False)
    trainer = Trainer(model=model, args=args, train_dataset=train_data, data_collator=collator)
    t0 = time.perf_counter()
    result = trainer.train()
    train_s = time.perf_counter() - t0
    heldout_after = heldout_mlm_loss(model, held_batches) if held_batches else None

    # The whole BertForMaskedLM is saved, as a raw PLM checkpoint is: AutoModel takes its encoder (and a
    # fresh BERT pooler, which SimCSE's cls pooling never reads), AutoModelForMaskedLM the MLM head too.
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    curve = [(h["step"], h["loss"]) for h in trainer.state.log_history if "loss" in h]
    seen = result.global_step * batch_size
    return {"folder": str(out_dir), "train_loss": result.training_loss, "global_step": result.global_step,
            "heldout_loss_before": heldout_before, "heldout_loss_after": heldout_after,
            "heldout_sentences": len(held_sentences), "train_sentences": len(train_sentences),
            "loss_curve": curve, "vocab_size": len(tokenizer), "size": asdict(size),
            "parameters": sum(p.numel() for p in model.parameters()), "batch_size": batch_size,
            "max_length": max_length, "learning_rate": learning_rate, "precision": chosen,
            "tokenizer_s": round(tokenizer_s, 1),
            "train_s": round(train_s, 1), "sentences_per_s": seen / train_s if train_s > 0 else None,
            "wall_time_s": round(time.perf_counter() - start, 1)}


def evaluate_folder(folder: str | Path, pooling: str, tasks=TASKS, max_length: int = 64, precision: str = "auto") -> dict:
    """All 8 metrics per task for an HF encoder folder, through the ``KoSimCSE`` encoder (as benchmarks.eval_e5)."""
    from kosimcse.evaluation.sts import StsEvaluator
    from kosimcse.inference.encoder import KoSimCSE

    # max_length 64 and the precision rule match how the SimCSE run evaluates its model (embed_max_length).
    encoder = KoSimCSE.from_pretrained(folder, pooling=pooling, prefix="", max_length=max_length, dtype=precision)
    return {task: StsEvaluator.from_task(task)(lambda texts: encoder.encode(texts, batch_size=128, show_progress=False))
            for task in tasks}


def simcse_settings(mlm_dir: str | Path, train_file: str, steps: int, output_dir: str | Path,
                    learning_rate: float = 1e-4, batch_size: int = 64, pooler: str = "cls",
                    tasks=TASKS, precision: str = "auto") -> dict:
    """Unsupervised SimCSE as in the paper (cls pooling, MLP in training only), the train_rows way."""
    from benchmarks.train_rows import COMMON

    # lr 1e-4, not SimCSE's 3e-5 for BERT-base: a small, barely pretrained model is usually trained with a
    # larger step; the choice is untuned (a 2-core box affords one run) and is reported with the row.
    return dict(COMMON, precision=precision, report_tasks=list(tasks), eval_task=tasks[0], model_name_or_path=str(mlm_dir),
                pooler=pooler, mlp_only_train=True, temperature=0.05, objective="unsup", train_file=str(train_file),
                learning_rate=learning_rate, per_device_train_batch_size=batch_size, max_length=32,
                max_steps=steps, max_train_sentences=batch_size * steps, eval_steps=max(steps // 4, 1),
                save_steps=max(steps // 4, 1), output_dir=str(output_dir))


def run_row(train_file: str | Path, out_root: str | Path = RUNS, size: MiniBert = MiniBert(), mlm_steps: int = 1500,
            simcse_steps: int = 500, batch_size: int = 64, mlm_lr: float = 5e-4, simcse_lr: float = 1e-4,
            pooler: str = "cls", tasks=TASKS, heldout: int = 1000, precision: str = "auto", log=print,
            reuse_mlm: dict | None = None) -> dict:
    """Tokenizer + MLM, evaluate the MLM model, then SimCSE.

    Returns ``{"mlm": MLM summary, "mlm_results": mean pooling, "mlm_results_cls": [CLS] pooling,
    "simcse": the SimCSE run summary (with "results"), "settings": its recipe}``.
    """
    from kosimcse.training.args import load_recipe
    from kosimcse.training.run import train

    out_root = Path(out_root)
    # A fresh row: an earlier run's checkpoints would enter the Trainer's rotation, and its metrics.jsonl
    # (appended to) would mix into this run's dev curve. Its numbers live on in benchmarks/results.
    simcse_dir = out_root / (f"simcse-{pooler}" if pooler != "cls" else "simcse")
    for stale in (simcse_dir,) if reuse_mlm else (simcse_dir, out_root / "mlm-trainer"):
        shutil.rmtree(stale, ignore_errors=True)
    if reuse_mlm:
        # SimCSE variants from the same pretrained model: MLM is most of the row's CPU time.
        mlm, mlm_results, mlm_results_cls = reuse_mlm["mlm"], reuse_mlm["results"], reuse_mlm["results_cls_pooling"]
        log(f"MLM: reusing {mlm['folder']} ({mlm['global_step']} steps)")
    else:
        sentences = read_sentences(train_file)
        log(f"MLM: {len(sentences)} sentences, {size.label} BERT, {mlm_steps} steps x {batch_size}")
        mlm = pretrain_mlm(sentences, out_root / "mlm", size=size, steps=mlm_steps, batch_size=batch_size,
                           learning_rate=mlm_lr, heldout=heldout, precision=precision,
                           logging_steps=max(1, min(50, mlm_steps // 10)))
        log(f"MLM done in {mlm['wall_time_s']} s: train loss {mlm['train_loss']:.3f}, held-out masked-LM loss "
            f"{mlm['heldout_loss_before']} -> {mlm['heldout_loss_after']}")
        t0 = time.perf_counter()
        # Mean pooling is the usual raw-PLM baseline; cls is what the SimCSE row embeds with, shown for comparison.
        mlm_results = evaluate_folder(mlm["folder"], "mean", tasks, precision=precision)
        mlm_results_cls = evaluate_folder(mlm["folder"], "cls", tasks, precision=precision)
        mlm["eval_s"] = round(time.perf_counter() - t0, 1)
    settings = simcse_settings(mlm["folder"], str(train_file), simcse_steps, simcse_dir,
                               learning_rate=simcse_lr, batch_size=batch_size, pooler=pooler, tasks=tasks,
                               precision=precision)
    log(f"SimCSE: {simcse_steps} steps x {batch_size}, lr {simcse_lr}, pooler {pooler}")
    t0 = time.perf_counter()
    summary = train(*load_recipe(None, settings))
    summary["row_wall_time_s"] = round(time.perf_counter() - t0, 1)
    return {"mlm": mlm, "mlm_results": mlm_results, "mlm_results_cls": mlm_results_cls, "simcse": summary,
            "settings": settings}


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def row_names(size: MiniBert, pooler: str = "cls") -> tuple[str, str]:
    base = f"mini BERT {size.label} from scratch (MLM on a kowiki slice)"
    pooling = "" if pooler == "cls" else f", {pooler} pooling"
    return f"{base}, mean pooling, no SimCSE", f"{base} + unsupervised SimCSE (kowiki slice{pooling})"


def result_name(pooler: str) -> str:
    return "train_scratch_mini" + ("" if pooler == "cls" else f"_{pooler}")


def rows(out: dict, size: MiniBert, total_s: float) -> list[tuple[str, str, dict]]:
    """``(result name, title, data)`` for the MLM-only row and the MLM + SimCSE row (rendered by benchmarks.render)."""
    from benchmarks.train_rows import dev_curve

    mlm, summary, settings = out["mlm"], out["simcse"], out["settings"]
    mlm_name, simcse_name = row_names(size, settings["pooler"])
    cores = _cores()
    mlm_min = (mlm["wall_time_s"] + mlm.get("eval_s", 0)) / 60
    mlm_steps = f"MLM {mlm['global_step']} steps x {mlm['batch_size']} sentences (<= {mlm['max_length']} tokens)"
    mlm_budget = f"{mlm_steps}, {mlm_min:.0f} min on {cores} CPU cores"
    budget = (f"{mlm_steps} + SimCSE {summary['global_step']} steps x "
              f"{settings['per_device_train_batch_size']}, {total_s / 60:.0f} min in all on {cores} CPU cores")
    name = simcse_name + (" [no checkpoint beat the start on dev: starting weights kept]"
                          if summary["kept_initial_model"] else "")
    simcse_summary = {k: v for k, v in summary.items() if k != "results"}
    return [
        ("train_scratch_mini_mlm", f"Trained row: {mlm_name}",
         {"row_name": mlm_name, "results": out["mlm_results"], "results_cls_pooling": out["mlm_results_cls"],
          "budget": mlm_budget, "mlm": mlm, "size": asdict(size)}),
        (result_name(settings["pooler"]), f"Trained row: {name}",
         {"row_name": name, "results": summary["results"], "budget": budget, "mlm": mlm, "summary": simcse_summary,
          "settings": settings, "dev_curve": dev_curve(settings["output_dir"]), "mlm_only_results": out["mlm_results"],
          "size": asdict(size)}),
    ]


def sampled_tasks(tasks=TASKS, pairs: int = 100) -> tuple[str, ...]:
    """Register ``<task>-sample<pairs>``: evenly spaced pairs of each task, for evaluations that only check plumbing."""
    from kosimcse.data.tasks import load_sts_task, register_sts_task, task_path

    names = []
    for task in tasks:
        every = load_sts_task(task)
        chosen = tuple(every[::max(len(every) // pairs, 1)][:pairs])
        name = f"{task}-sample{pairs}"
        register_sts_task(name, task_path(task), reader=lambda _path, chosen=chosen: iter(chosen),
                          description=f"{len(chosen)} evenly spaced pairs of {task}")
        names.append(name)
    return tuple(names)


def smoke_corpus(out_dir: Path, paragraphs: int = 300) -> str:
    """A few hundred kowiki sentences through the project's corpus pipeline (split, filter, leak guard)."""
    from kosimcse.data.corpus import prepare_corpus
    from kosimcse.data.readers import read_source
    from kosimcse.paths import data_dir

    source = data_dir() / "corpus" / "kowiki" / "AA" / "wiki_00"
    raw = out_dir / "paragraphs.txt"
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(raw, "w", encoding="utf-8") as fh:
        for i, rec in enumerate(read_source(f"kowiki:{source}")):
            if i >= paragraphs:
                break
            if rec.text:
                fh.write(rec.text + "\n")
    prepare_corpus([f"text:{raw}"], out_dir / "corpus", workers=1, progress=False)
    return str(out_dir / "corpus" / "sentences.txt")


def reusable_mlm(mlm_steps: int) -> dict:
    """The finished MLM stage recorded in ``benchmarks/results/train_scratch_mini_mlm.json``, if its folder is intact."""
    import json

    from benchmarks.common import RESULTS_DIR

    path = RESULTS_DIR / "train_scratch_mini_mlm.json"
    if not path.is_file():
        raise SystemExit(f"--reuse_mlm: {path} is missing; run without --reuse_mlm first")
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    folder = Path(data["mlm"]["folder"])
    if data["mlm"]["global_step"] != mlm_steps or not (folder / "config.json").is_file():
        raise SystemExit(f"--reuse_mlm: {path} records {data['mlm']['global_step']} MLM steps in {folder} "
                         f"(folder present: {folder.is_dir()}); asked for {mlm_steps}")
    return data


def main(argv=None) -> None:
    from benchmarks.common import save_result

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mlm_steps", type=int, default=1500)
    parser.add_argument("--simcse_steps", type=int, default=500)
    parser.add_argument("--mlm_lr", type=float, default=5e-4)
    parser.add_argument("--simcse_lr", type=float, default=1e-4)
    parser.add_argument("--pooler", default="cls", help="SimCSE pooler (cls: SimCSE's, with MLP in training only)")
    parser.add_argument("--reuse_mlm", action="store_true",
                        help="skip MLM: reuse runs/bench/scratch/mlm and its numbers in benchmarks/results "
                             "(same --mlm_steps), train only the SimCSE stage, e.g. with another --pooler")
    parser.add_argument("--smoke", action="store_true",
                        help="5 MLM + 4 SimCSE steps on ~300 kowiki paragraphs, 100 pairs per task, in a temp folder; "
                             "saves no result")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    size = MiniBert()
    if args.smoke:
        tmp = Path(tempfile.mkdtemp(prefix="scratch-row-smoke-"))
        try:
            # Full-size model, a handful of steps, 100 pairs per task: every stage runs, in about a minute.
            out = run_row(smoke_corpus(tmp), tmp / "runs", size=size, mlm_steps=5, simcse_steps=4,
                          mlm_lr=args.mlm_lr, simcse_lr=args.simcse_lr, pooler=args.pooler, heldout=64,
                          tasks=sampled_tasks(TASKS, 100))
            from benchmarks.render import section

            for name, title, data in rows(out, size, time.perf_counter() - start):
                print(f"\n== {name} (smoke, not saved)\n" + section({"name": name, "title": title, "data": data}))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return

    from kosimcse.paths import data_dir

    from benchmarks.train_rows import corpus

    # kowiki only: the row is "raw PLM + unsupervised SimCSE on Wikipedia", so no STS sentence goes in.
    train_file = corpus("kowiki-aa", [f"kowiki:{data_dir() / 'corpus' / 'kowiki' / 'AA'}"])
    reuse = None
    if args.reuse_mlm:
        reuse = reusable_mlm(args.mlm_steps)
    start = time.perf_counter()  # the budget is training and evaluation; the corpus is prepared once and cached
    out = run_row(train_file, RUNS, size=size, mlm_steps=args.mlm_steps, simcse_steps=args.simcse_steps,
                  mlm_lr=args.mlm_lr, simcse_lr=args.simcse_lr, pooler=args.pooler, reuse_mlm=reuse)
    total = time.perf_counter() - start
    if reuse:  # the row's budget still counts the MLM stage it stands on
        total += out["mlm"]["wall_time_s"] + out["mlm"].get("eval_s", 0)
    command = (f"python -m benchmarks.scratch_row --mlm_steps {args.mlm_steps} --simcse_steps {args.simcse_steps}"
               + (f" --mlm_lr {args.mlm_lr}" if args.mlm_lr != 5e-4 else "")
               + (f" --simcse_lr {args.simcse_lr}" if args.simcse_lr != 1e-4 else "")
               + (f" --pooler {args.pooler}" if args.pooler != "cls" else "")
               + (" --reuse_mlm" if args.reuse_mlm else ""))
    for name, title, data in rows(out, size, total):
        if reuse and name.endswith("_mlm"):
            continue  # unchanged: keep the file (and date) of the run that trained it
        wall = out["mlm"]["wall_time_s"] + out["mlm"]["eval_s"] if name.endswith("_mlm") else total
        path = save_result(name, title, wall, data=data, command=command, order=40)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
