"""Domain row, second half: what unsupervised SimCSE on kowiki + NSMC did to KorSTS and to the domain text itself.

For a finished domain run (``benchmarks.train_rows --rows domain_nsmc``) it compares three models: the starting
encoder, the dev-selected export (``best/``; the start itself when no checkpoint beat it) and the last checkpoint
(trained to the end, not selected). Each gets KorSTS test and dev cosine Spearman and, on a sample of NSMC reviews
(no labels used), alignment between two dropout views of a sentence and uniformity (Wang & Isola), plus
nearest-neighbour examples. NSMC also carries star ratings, which training never sees; here they give one labelled
domain check: leave-one-out k-nearest-neighbour sentiment accuracy (ratings 1-4 negative, 9-10 positive, balanced),
i.e. how well cosine neighbours in the embedding space agree on the review's polarity.

    python -m benchmarks.domain_geometry [--run runs/bench/domain_nsmc] [--sample 1000]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from benchmarks.common import command_line, save_result

TASKS = ("korsts-test", "korsts-dev")


def load_checkpoint_encoder(run_dir: Path, checkpoint: Path, **settings):
    """A ``KoSimCSE`` over a Trainer checkpoint: the exported model's architecture with the checkpoint's weights."""
    from safetensors.torch import load_file

    from kosimcse.inference.encoder import KoSimCSE
    from kosimcse.modeling.model import SimCSEModel

    model = SimCSEModel.from_pretrained(run_dir / "best")
    missing, unexpected = model.load_state_dict(load_file(str(checkpoint / "model.safetensors")), strict=False)
    if unexpected or any(not k.startswith("mlm_head") for k in missing):
        raise SystemExit(f"{checkpoint}: weights do not fit the exported model (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]})")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(run_dir / "best"))
    return KoSimCSE(model.encoder, tokenizer, path=checkpoint, **settings)


def domain_sample(spec: str, n: int, seed: int = 0) -> list[str]:
    """``n`` distinct domain texts drawn uniformly (reservoir sampling) from a source spec, in source order."""
    from kosimcse.data.readers import read_source

    rng = np.random.default_rng(seed)
    reservoir: list[str] = []
    seen: set[str] = set()
    count = 0
    for record in read_source(spec, errors="skip"):
        text = record.text.strip()
        if not text or text in seen:
            continue
        seen.add(text)
        count += 1
        if len(reservoir) < n:
            reservoir.append(text)
        else:
            slot = int(rng.integers(0, count))
            if slot < n:
                reservoir[slot] = text
    return reservoir


def rated_reviews(nsmc_dir: Path, per_class: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Balanced NSMC reviews with their polarity (1: rating 9-10, 0: rating 1-4; 5-8 left out as NSMC's splits do)."""
    by_label: dict[int, list[str]] = {0: [], 1: []}
    seen: set[str] = set()
    for path in sorted(nsmc_dir.glob("*.json")):
        for item in json.loads(path.read_text(encoding="utf-8")):
            text, rating = str(item.get("review", "")).strip(), int(item.get("rating", 0) or 0)
            if not text or text in seen or 5 <= rating <= 8 or rating == 0:
                continue
            seen.add(text)
            by_label[int(rating >= 9)].append(text)
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for label, pool in by_label.items():
        for i in sorted(rng.choice(len(pool), min(per_class, len(pool)), replace=False)):
            texts.append(pool[i])
            labels.append(label)
    return texts, np.asarray(labels)


def knn_accuracy(embeddings: np.ndarray, labels: np.ndarray, k: int = 11) -> float:
    """Leave-one-out majority vote of the ``k`` most cosine-similar other texts; odd ``k`` has no ties (ties count as wrong)."""
    from kosimcse.evaluation.similarity import l2_normalize

    unit = l2_normalize(np.asarray(embeddings, dtype=np.float64))
    scores = unit @ unit.T
    np.fill_diagonal(scores, -np.inf)
    neighbours = np.argpartition(-scores, k, axis=1)[:, :k]
    votes = labels[neighbours].mean(axis=1)
    predicted = np.where(votes > 0.5, 1, np.where(votes < 0.5, 0, -1))
    return float((predicted == labels).mean())


def measure(encoder, evaluators: dict, texts: list[str], align_texts: list[str], queries: list[str], seed: int,
            rated: tuple[list[str], np.ndarray] | None = None) -> dict:
    from kosimcse.evaluation import geometry

    encode = lambda batch: encoder.encode(batch, batch_size=64, show_progress=False)  # noqa: E731
    out = {task: ev(encode) for task, ev in evaluators.items()}
    plain = encode(texts)
    view1, view2 = geometry.dropout_views(encoder, align_texts, seed=seed)
    out["domain"] = geometry.corpus_geometry(view1, view2, plain, seed=seed)
    out["neighbours"] = geometry.nearest_neighbours(encode, texts, queries, k=3, text_embeddings=plain)
    if rated is not None:
        out["knn_sentiment_accuracy"] = knn_accuracy(encode(rated[0]), rated[1])
    return out


def main(argv=None) -> None:
    from kosimcse.evaluation.sts import StsEvaluator
    from kosimcse.inference.encoder import KoSimCSE
    from kosimcse.paths import data_dir
    from kosimcse.training.checkpoints import checkpoints_newest_first

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="runs/bench/domain_nsmc")
    parser.add_argument("--domain", default=None, help="source spec of the domain text (default: nsmc raw)")
    parser.add_argument("--sample", type=int, default=1000, help="domain sentences for uniformity and neighbours")
    parser.add_argument("--align-sample", type=int, default=500, help="of which, embedded twice with dropout")
    parser.add_argument("--rated-per-class", type=int, default=1000,
                        help="NSMC reviews per polarity for the kNN sentiment check (0 skips it)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    run_dir = Path(args.run)
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    spec = args.domain or f"nsmc:{data_dir() / 'domain' / 'nsmc' / 'raw'}"

    best = KoSimCSE.from_pretrained(run_dir / "best")
    # Same pooling, prefix and length everywhere, as the run evaluated: the comparison is about the weights.
    settings = dict(pooling=best.pooling, prefix=best.prefix, max_length=max(best.max_length, 64))
    best.max_length = settings["max_length"]
    checkpoints = checkpoints_newest_first(run_dir)
    if not checkpoints:
        raise SystemExit(f"{run_dir}: no checkpoint-* folder left to take the last weights from")
    selected = "start kept" if summary["kept_initial_model"] else Path(summary["best_checkpoint"]).name
    models = {"before (starting encoder)": KoSimCSE.from_pretrained(summary["resolved_model"], **settings),
              f"after, selected ({selected})": best}
    if selected != checkpoints[0].name:  # the last weights differ from the export: measure them too
        models[f"after, last checkpoint ({checkpoints[0].name}, not selected)"] = load_checkpoint_encoder(
            run_dir, checkpoints[0], **settings)

    texts = domain_sample(spec, args.sample, args.seed)
    rng = np.random.default_rng(args.seed + 1)
    align_texts = [texts[i] for i in sorted(rng.choice(len(texts), min(args.align_sample, len(texts)), replace=False))]
    queries = [texts[i] for i in sorted(rng.choice(len(texts), min(2, len(texts)), replace=False))]
    evaluators = {task: StsEvaluator.from_task(task) for task in TASKS}
    rated = rated_reviews(data_dir() / "domain" / "nsmc" / "raw", args.rated_per_class, args.seed) \
        if args.rated_per_class and not args.domain else None
    results = {}
    for name, encoder in models.items():
        print(f"== {name}", flush=True)
        results[name] = measure(encoder, evaluators, texts, align_texts, queries, args.seed, rated)

    data = {"run": str(run_dir), "steps": summary["global_step"], "domain_spec": spec, "sample": len(texts),
            "align_sample": len(align_texts), "settings": settings, "seed": args.seed,
            "rated_per_class": args.rated_per_class if rated is not None else 0, "models": results}
    path = save_result("domain_geometry",
                       "Domain adaptation on NSMC: KorSTS kept? alignment and uniformity on the domain text",
                       time.perf_counter() - start, order=42, command=command_line(), data=data)
    from benchmarks.render import section

    print(section(json.loads(path.read_text(encoding="utf-8"))))


if __name__ == "__main__":
    main()
