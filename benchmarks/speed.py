"""Speed: kosimcse training and encoding against plain sentence-transformers, alternating A/B runs, as ratios.

Run: python -m benchmarks.speed [--repeats 3] [--train-steps 10] [--encode-sentences 256]
Every measurement runs in its own subprocess (so its peak RSS is its own), sides alternate
A, B, A, B … and each repeat gives one ratio; the table shows min/median/max of the ratios. Same
model, data, precision, batch and max length on both sides; the precision is what ``auto`` picks on this
machine (kosimcse.precision): bf16 only where the CPU runs it natively. Where it does not, the bf16 rows
(SentenceTransformer under bf16 autocast, the bf16 matmul peak) are skipped and the result says why.
Only ratios count on a shared machine: absolute sentences/s move with the other processes' load.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.harness import E5_PATH, MINI_SHAPE, load_tokenizer, model_folder, write_random_model_dir

RESULT_MARK = "BENCH-RESULT "


# ---------------------------------------------------------------- workers (one side, one subprocess)

def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def _nonembedding_params(encoder) -> int:
    embedding_ids = {id(p) for p in encoder.get_input_embeddings().parameters()}
    return sum(p.numel() for p in encoder.parameters() if id(p) not in embedding_ids)


class _StepClock:
    """Counts tokens the encoder sees and stamps each optimizer step, so warm-up steps can be cut off."""

    def __init__(self, encoder):
        self.tokens: list[int] = []
        self.marks: list[tuple[float, int]] = []  # (time, tokens so far) at each step end
        # Hooked on the token-embedding layer: sentence-transformers calls ``model.forward`` directly,
        # which skips hooks on the encoder itself (the first quick run counted 0 tokens there).
        encoder.get_input_embeddings().register_forward_pre_hook(self._count)

    def _count(self, module, args):
        if args:
            self.tokens.append(int(args[0].numel()))

    def callback(self):
        from transformers import TrainerCallback

        clock = self

        class Stamp(TrainerCallback):
            def on_train_begin(self, args, state, control, **kwargs):
                clock.marks.append((time.perf_counter(), 0))

            def on_step_end(self, args, state, control, **kwargs):
                clock.marks.append((time.perf_counter(), sum(clock.tokens)))

        return Stamp()

    def timed(self, warmup: int) -> tuple[float, int, int]:
        """(seconds, tokens, steps) after the first ``warmup`` steps."""
        (t0, k0), (t1, k1) = self.marks[warmup], self.marks[-1]
        return t1 - t0, k1 - k0, len(self.marks) - 1 - warmup


def _train_common_args(spec: dict, out: str) -> dict:
    return dict(output_dir=out, per_device_train_batch_size=spec["batch"], max_steps=spec["warmup"] + spec["steps"],
                learning_rate=5e-5, use_cpu=True, report_to=[], save_strategy="no", logging_steps=10_000,
                dataloader_drop_last=True, seed=42, disable_tqdm=True)


def train_kosimcse_worker(spec: dict) -> dict:
    """Our path: SimCSEModel + ContrastiveCollator + SimCSETrainer, as ``kosimcse train`` builds them."""
    from kosimcse.training.args import load_recipe
    from kosimcse.training.data import ContrastiveCollator
    from kosimcse.training.run import build_model, build_train_dataset
    from kosimcse.training.trainer import SimCSETrainer

    with tempfile.TemporaryDirectory() as out:
        common = _train_common_args(spec, out)
        common.pop("disable_tqdm")
        margs, dargs, targs = load_recipe(None, dict(
            model_name_or_path=spec["model"], pooler="mean", max_length=spec["max_length"],
            freeze_embeddings=spec.get("freeze", False), train_file=spec["sentences_file"], eval_strategy="no",
            load_best_model_at_end=False, metric_for_best_model=None, disable_tqdm=True,
            precision=spec["precision"], **common))
        model, tokenizer, _ = build_model(margs)
        clock = _StepClock(model.encoder)
        dataset = build_train_dataset(dargs, targs)
        trainer = SimCSETrainer(model=model, args=targs, train_dataset=dataset, tokenizer=tokenizer,
                                data_collator=ContrastiveCollator(tokenizer, max_length=margs.max_length))
        trainer.add_callback(clock.callback())
        trainer.train()
        seconds, tokens, steps = clock.timed(spec["warmup"])
        return {"seconds": seconds, "tokens": tokens, "steps": steps,
                "sentences_per_s": steps * spec["batch"] / seconds,
                "nonembedding_params": _nonembedding_params(model.encoder), "peak_rss_mb": _peak_rss_mb()}


def train_st_worker(spec: dict) -> dict:
    """The sbert.net unsupervised SimCSE recipe: MultipleNegativesRankingLoss on (s, s) pairs, mean pooling."""
    import datasets
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    lines = [s for s in Path(spec["sentences_file"]).read_text(encoding="utf-8").splitlines() if s.strip()]
    dataset = datasets.Dataset.from_dict({"anchor": lines, "positive": lines})
    transformer = Transformer(spec["model"], max_seq_length=spec["max_length"])
    model = SentenceTransformer(modules=[transformer, Pooling(transformer.get_embedding_dimension(), "mean")],
                                device="cpu")
    encoder = transformer.auto_model
    clock = _StepClock(encoder)
    with tempfile.TemporaryDirectory() as out:
        args = SentenceTransformerTrainingArguments(**_train_common_args(spec, out), bf16=spec["precision"] == "bf16")
        trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset,
                                             loss=MultipleNegativesRankingLoss(model), callbacks=[clock.callback()])
        trainer.train()
    seconds, tokens, steps = clock.timed(spec["warmup"])
    return {"seconds": seconds, "tokens": tokens, "steps": steps, "sentences_per_s": steps * spec["batch"] / seconds,
            "nonembedding_params": _nonembedding_params(encoder), "peak_rss_mb": _peak_rss_mb()}


def _time_encode(encode, texts: list[str], batch_sizes: dict) -> tuple[dict, np.ndarray | None]:
    rates, kept = {}, None
    for batch, n in batch_sizes.items():
        batch = int(batch)
        encode(texts[: min(n, 2 * batch, 8)], batch)  # warm-up: first calls build kernels
        t0 = time.perf_counter()
        emb = encode(texts[:n], batch)
        rates[str(batch)] = n / (time.perf_counter() - t0)
        if kept is None or n > len(kept):
            kept = np.asarray(emb, dtype=np.float32)
    return rates, kept


def encode_kosimcse_worker(spec: dict) -> dict:
    from kosimcse.inference.encoder import KoSimCSE

    texts = json.loads(Path(spec["texts_file"]).read_text(encoding="utf-8"))
    enc = KoSimCSE.from_pretrained(spec["model"], pooling="mean", prefix=spec["prefix"], max_length=spec["max_length"],
                                   dtype=spec["dtype"], device="cpu")
    rates, emb = _time_encode(lambda t, b: enc.encode(t, batch_size=b, show_progress=False), texts, spec["batch_sizes"])
    np.save(spec["embeddings_out"], emb)
    return {"sentences_per_s": rates, "peak_rss_mb": _peak_rss_mb()}


def encode_st_worker(spec: dict) -> dict:
    import contextlib

    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    texts = json.loads(Path(spec["texts_file"]).read_text(encoding="utf-8"))
    transformer = Transformer(spec["model"], max_seq_length=spec["max_length"])
    model = SentenceTransformer(modules=[transformer, Pooling(transformer.get_embedding_dimension(), "mean")],
                                device="cpu")
    precision = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if spec.get("autocast") else contextlib.nullcontext

    def encode(t, b):
        with precision():
            out = model.encode(t, batch_size=b, prompt=spec["prefix"] or None, show_progress_bar=False,
                               convert_to_tensor=True)
        return out.float().numpy()

    rates, emb = _time_encode(encode, texts, spec["batch_sizes"])
    np.save(spec["embeddings_out"], emb)
    return {"sentences_per_s": rates, "peak_rss_mb": _peak_rss_mb()}


WORKERS = {"train-kosimcse": train_kosimcse_worker, "train-st": train_st_worker,
           "encode-kosimcse": encode_kosimcse_worker, "encode-st": encode_st_worker}


# Smoke runs call the workers in this process: a fresh interpreter costs seconds of imports each.
IN_PROCESS = False


def run_worker(spec: dict, timeout: float = 900) -> dict:
    """Run one side in a fresh interpreter; its result comes back as one marked JSON line."""
    if IN_PROCESS:
        return WORKERS[spec["kind"]](spec)
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", TRANSFORMERS_VERBOSITY="error", TQDM_DISABLE="1")
    proc = subprocess.run([sys.executable, "-m", "benchmarks.speed", "--worker", json.dumps(spec)],
                          capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=str(Path(__file__).resolve().parents[1]))
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK):])
    raise RuntimeError(f"worker {spec['kind']} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")


# ---------------------------------------------------------------- orchestration

def matmul_peak_tflops(precision: str, n: int = 2048, iters: int = 10) -> float:
    """Measured matmul throughput (TFLOP/s) of an n x n GEMM in ``precision`` (bf16 or fp32) on this CPU, now."""
    import torch

    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a = torch.randn(n, n, dtype=dtype)
    b = torch.randn(n, n, dtype=dtype)
    for _ in range(3):
        a @ b
    t0 = time.perf_counter()
    for _ in range(iters):
        a @ b
    return 2 * n ** 3 * iters / (time.perf_counter() - t0) / 1e12


def alternate(specs: dict[str, dict], repeats: int, log=print) -> dict[str, list[dict]]:
    """Run every side once per repeat, in turn (A, B, C, A, B, C …)."""
    runs: dict[str, list[dict]] = {label: [] for label in specs}
    for r in range(repeats):
        for label, spec in specs.items():
            t0 = time.perf_counter()
            runs[label].append(run_worker(spec))
            log(f"  repeat {r + 1}/{repeats} {label}: {time.perf_counter() - t0:.0f} s")
    return runs


def ratio_stats(a: list[float], b: list[float]) -> dict:
    ratios = [x / y for x, y in zip(a, b)]
    return {"ratios": ratios, "min": min(ratios), "median": statistics.median(ratios), "max": max(ratios)}


def flop_utilisation(runs: list[dict], peak_tflops: float) -> float | None:
    """Median of 6 x non-embedding parameters x tokens / seconds over the peak; None when a side counted no tokens."""
    if any(r["tokens"] == 0 for r in runs):
        return None
    return statistics.median(6 * r["nonembedding_params"] * r["tokens"] / r["seconds"] / 1e12 / peak_tflops
                             for r in runs)


def training_section(models: dict[str, str], sentences_file: str, spec: dict, repeats: int, matmul_n: int = 2048,
                     log=print) -> dict:
    """Alternating training runs per model; FLOP utilisation against the matmul peak in the precision used."""
    data, peaks = {}, []
    for model_label, model_path in models.items():
        base = dict(spec, model=model_path, sentences_file=sentences_file)
        sides = {
            "kosimcse": dict(base, kind="train-kosimcse", freeze=False),
            "kosimcse (frozen embeddings)": dict(base, kind="train-kosimcse", freeze=True),
            "sentence-transformers MNRL": dict(base, kind="train-st"),
        }
        log(f"training throughput, {model_label}")
        peaks.append(matmul_peak_tflops(spec["precision"], matmul_n))
        runs = alternate(sides, repeats, log)
        peaks.append(matmul_peak_tflops(spec["precision"], matmul_n))
        st = [r["sentences_per_s"] for r in runs["sentence-transformers MNRL"]]
        data[model_label] = {"runs": runs}
        for ours in ("kosimcse", "kosimcse (frozen embeddings)"):
            data[model_label][ours] = ratio_stats([r["sentences_per_s"] for r in runs[ours]], st)
    for model_label in models:
        entry = data[model_label]
        for ours in ("kosimcse", "kosimcse (frozen embeddings)"):
            entry[ours]["flop_utilisation_median"] = flop_utilisation(entry["runs"][ours], max(peaks))
        entry["st_flop_utilisation_median"] = flop_utilisation(entry["runs"]["sentence-transformers MNRL"], max(peaks))
    data["matmul_peak_tflops"] = peaks
    data["matmul_precision"] = spec["precision"]
    data["matmul_n"] = matmul_n
    return data


def encoding_section(model: str, model_label: str, texts: list[str], prefix: str, batch_sizes: dict, repeats: int,
                     workdir: Path, precision: str, bf16_native: bool, fp32_reference: dict | None,
                     log=print) -> dict:
    texts_file = workdir / "encode_texts.json"
    texts_file.write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
    base = dict(model=model, texts_file=str(texts_file), prefix=prefix, max_length=128, batch_sizes=batch_sizes)
    ours = f"kosimcse {precision}"
    sides = {
        ours: dict(base, kind="encode-kosimcse", dtype=precision, embeddings_out=str(workdir / "ours.npy")),
        "SentenceTransformer fp32": dict(base, kind="encode-st", autocast=False, embeddings_out=str(workdir / "st32.npy")),
    }
    if bf16_native:
        sides["SentenceTransformer bf16 autocast"] = dict(base, kind="encode-st", autocast=True,
                                                          embeddings_out=str(workdir / "st16.npy"))
    log("encoding throughput")
    runs = alternate(sides, repeats, log)
    ours_emb, st32 = np.load(workdir / "ours.npy"), np.load(workdir / "st32.npy")
    cos = (ours_emb * st32).sum(1) / (np.linalg.norm(ours_emb, axis=1) * np.linalg.norm(st32, axis=1))
    data = {"runs": runs, "ours": ours, "model": model_label, "prefix": prefix, "max_length": 128,
            "batch_sizes": batch_sizes, "repeats": repeats,
            "cosine_vs_fp32": {"min": float(cos.min()), "mean": float(cos.mean()), "n": int(len(cos))}}
    for batch in batch_sizes:
        for other in sides:
            if other != ours:
                data[f"batch {batch} vs {other}"] = ratio_stats([r["sentences_per_s"][batch] for r in runs[ours]],
                                                               [r["sentences_per_s"][batch] for r in runs[other]])
    if fp32_reference:
        data["fp32_reference"] = fp32_reference
    return data


def prepare_section(results_dir: Path) -> dict:
    path = results_dir / "prepare.json"
    if not path.is_file():
        return {}
    prep = json.loads(path.read_text(encoding="utf-8"))
    return {"from": path.name, "command": prep["command"], "date": prep["date"],
            "summary": prep["data"].get("summary", {})}


def _bf16_fp32_reference(results_dir: Path) -> dict | None:
    path = results_dir / "eval_e5.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    if data.get("dtype") != "bf16":
        return None  # no bf16 rows: the e5 evaluation ran in fp32 here
    rows = data["results"].get("korsts-test", {})
    bf16 = next((m for name, m in rows.items() if "query" in name and "fp32" not in name), None)
    fp32 = next((m for name, m in rows.items() if "fp32" in name), None)
    if not bf16 or not fp32:
        return None
    return {"bf16": bf16["cosine_spearman"], "fp32": fp32["cosine_spearman"], "source": "benchmarks/results/eval_e5.json"}


def training_sentences(limit: int) -> list[str]:
    """Training text for the throughput runs: KorSTS train sentences, else the embedded dev set."""
    from kosimcse.data.readers import read_korsts
    from kosimcse.data.tasks import load_sts_task
    from kosimcse.paths import data_dir

    sentences: list[str] = []
    try:
        train = data_dir(None) / "korsts" / "sts-train.tsv"
        if train.is_file():
            sentences = [s for p in read_korsts(train) for s in (p.sentence1, p.sentence2)]
    except Exception:  # no data dir (CI): fall back to the embedded dev pairs
        pass
    if not sentences:
        sentences = [s for p in load_sts_task("korsts-dev") for s in (p.sentence1, p.sentence2)]
    return list(dict.fromkeys(sentences))[:limit]


def run(smoke: bool = False, repeats: int = 3, train_steps: int = 10, warmup: int = 2, batch: int = 32,
        max_length: int = 32, encode_n: int = 256, encode_n1: int = 16, e5: str = E5_PATH, include_e5_training: bool = True,
        command: str | None = None, log=print) -> dict:
    from kosimcse.data.tasks import load_sts_task
    from kosimcse.precision import cpu_bf16_native, resolve_precision

    from benchmarks.common import save_result
    from benchmarks.harness import current_results_dir, tiny_tokenizer

    global IN_PROCESS
    IN_PROCESS = smoke
    start = time.perf_counter()
    results_dir = current_results_dir()
    precision = resolve_precision("auto", "cpu")
    bf16_native, bf16_why = cpu_bf16_native()
    skipped = {} if bf16_native else {
        "bf16 rows": f"not measured: {bf16_why} (SentenceTransformer under bf16 autocast, the bf16 matmul peak)"}
    with tempfile.TemporaryDirectory(prefix="kosimcse-speed-") as tmp:
        tmp = Path(tmp)
        sentences_file = tmp / "train.txt"
        sentences_file.write_text("\n".join(training_sentences(batch * (train_steps + warmup) * 4)) + "\n", encoding="utf-8")
        if smoke:
            tok, shape = tiny_tokenizer(), {"layers": 1, "hidden": 32, "heads": 2}
            mini = write_random_model_dir(tmp / "mini", tok, seed=0, **shape)
            train_models = {"tiny 1x32 (random)": str(mini)}
            encode_model, encode_label, prefix = str(mini), "tiny 1x32 (random)", ""
        else:
            shape = MINI_SHAPE
            e5_folder = str(model_folder(e5))
            mini = write_random_model_dir(tmp / "mini", load_tokenizer(e5), seed=0, **shape)
            train_models = {f"mini {shape['layers']}x{shape['hidden']} (random init, e5 tokenizer)": str(mini)}
            if include_e5_training:
                train_models = {"multilingual-e5-small": e5_folder, **train_models}
            encode_model, encode_label, prefix = e5_folder, str(e5), "query: "
        spec = dict(batch=batch, max_length=max_length, steps=train_steps, warmup=warmup, precision=precision.name)
        # A smoke run checks plumbing: a small GEMM is enough for the peak.
        train_data = training_section(train_models, str(sentences_file), spec, repeats, 256 if smoke else 2048, log)
        pairs = load_sts_task("korsts-test")
        texts = list(dict.fromkeys(s for p in pairs for s in (p.sentence1, p.sentence2)))[:encode_n]
        enc_data = encoding_section(encode_model, encode_label, texts, prefix, {"128": encode_n, "1": encode_n1},
                                    repeats, tmp, precision.name, bf16_native,
                                    None if smoke else _bf16_fp32_reference(results_dir), log)
    wall = time.perf_counter() - start
    data = {"training": train_data, "encoding": enc_data, "prepare": prepare_section(results_dir),
            "precision": {"name": precision.name, "reason": precision.reason}, "skipped": skipped,
            "settings": dict(spec, repeats=repeats, encode_n=encode_n, encode_n1=encode_n1, smoke=smoke)}
    save_result("speed", "Speed: kosimcse vs sentence-transformers (ratios from alternating runs)", wall,
                data=data, order=40,
                command=command or " ".join(["python -m benchmarks.speed", *map(shlex.quote, sys.argv[1:])]))
    return data


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--encode-sentences", type=int, default=256)
    parser.add_argument("--encode-sentences-batch1", type=int, default=16)
    parser.add_argument("--model", default=E5_PATH,
                        help="e5 model folder or alias (default: $KOSIMCSE_E5_PATH or e5-small-airgap)")
    parser.add_argument("--no-e5-training", action="store_true", help="train-time comparison on the mini model only")
    args = parser.parse_args(argv)
    if args.worker:
        spec = json.loads(args.worker)
        result = WORKERS[spec["kind"]](spec)
        print(RESULT_MARK + json.dumps(result), flush=True)
        return
    run(repeats=args.repeats, train_steps=args.train_steps, warmup=args.warmup, batch=args.batch,
        encode_n=args.encode_sentences, encode_n1=args.encode_sentences_batch1, e5=args.model,
        include_e5_training=not args.no_e5_training)


if __name__ == "__main__":
    main()
