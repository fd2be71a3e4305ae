"""Quality floors: lexical TF-IDF cosine (char 2-3-gram, word 1-2-gram) and random-init encoders with mean pooling.

Run: python -m benchmarks.floors [--seeds 0 1 2] [--tokenizer FOLDER_OR_ALIAS]
Any trained model should clear these rows; a model that does not has learnt less than word overlap.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time

import numpy as np

from benchmarks.harness import E5_PATH, MINI_SHAPE, TASKS, evaluators, load_tokenizer, random_encoder

LEXICAL = {
    "char 2-3-gram TF-IDF cosine": dict(analyzer="char_wb", ngram_range=(2, 3), sublinear_tf=True),
    "word 1-2-gram TF-IDF cosine": dict(analyzer="word", ngram_range=(1, 2), sublinear_tf=True),
}


def sparse_pair_metrics(vectors, evaluator) -> dict[str, float]:
    """The 8 STS metrics for sparse sentence vectors (rows of ``evaluator.sentences``), without densifying.

    TF-IDF vocabularies have 10^5 columns, so the pairwise similarities are computed on the sparse
    rows; distances are negated, as in ``kosimcse.evaluation.similarity``.
    """
    from kosimcse.evaluation.sts import score_correlations

    index = {s: i for i, s in enumerate(evaluator.sentences)}
    left = vectors[[index[p.sentence1] for p in evaluator.pairs]]
    right = vectors[[index[p.sentence2] for p in evaluator.pairs]]
    dot = np.asarray(left.multiply(right).sum(axis=1)).ravel()
    norms = np.sqrt(np.asarray(left.multiply(left).sum(axis=1)).ravel() * np.asarray(right.multiply(right).sum(axis=1)).ravel())
    diff = left - right
    similarities = {
        "cosine": np.divide(dot, norms, out=np.zeros_like(dot), where=norms > 0),
        "euclidean": -np.sqrt(np.asarray(diff.multiply(diff).sum(axis=1)).ravel()),
        "manhattan": -np.asarray(abs(diff).sum(axis=1)).ravel(),
        "dot": dot,
    }
    return score_correlations(similarities, evaluator.gold)


def korsts_sentences(evals: dict) -> tuple[list[str], str]:
    """Every KorSTS sentence (train + dev + test) to fit TF-IDF on, and a note saying what was used."""
    from kosimcse.data.readers import read_korsts
    from kosimcse.data.tasks import load_sts_task
    from kosimcse.paths import data_dir

    sentences: list[str] = []
    used = []
    try:
        train = data_dir(None) / "korsts" / "sts-train.tsv"
        if train.is_file():
            sentences += [s for p in read_korsts(train) for s in (p.sentence1, p.sentence2)]
            used.append("train")
    except Exception:  # no data dir: fit on the evaluation sets alone, and say so
        pass
    for split in ("korsts-dev", "korsts-test"):
        sentences += [s for p in load_sts_task(split) for s in (p.sentence1, p.sentence2)]
        used.append(split.split("-")[1])
    return list(dict.fromkeys(sentences)), "KorSTS " + "+".join(used)


def lexical_floors(evals: dict, fit_sentences: list[str]) -> dict[str, dict[str, dict]]:
    from sklearn.feature_extraction.text import TfidfVectorizer

    results: dict[str, dict[str, dict]] = {task: {} for task in evals}
    for row, options in LEXICAL.items():
        vectorizer = TfidfVectorizer(**options).fit(fit_sentences)
        for task, ev in evals.items():
            results[task][row] = sparse_pair_metrics(vectorizer.transform(ev.sentences), ev)
    return results


def random_init_floors(evals: dict, tokenizer, seeds, shape: dict, batch_size: int = 128) -> dict[str, dict[int, dict]]:
    """``{task: {seed: metrics}}`` for random-init encoders of ``shape`` with mean pooling (precision auto)."""
    from kosimcse.inference.encoder import KoSimCSE

    per_seed: dict[str, dict[int, dict]] = {task: {} for task in evals}
    for seed in seeds:
        model = KoSimCSE(random_encoder(tokenizer, shape["layers"], shape["hidden"], shape["heads"], seed), tokenizer,
                         pooling="mean", dtype="auto")
        for task, ev in evals.items():
            per_seed[task][seed] = ev(lambda texts: model.encode(texts, batch_size=batch_size, show_progress=False))
        del model
    return per_seed


def mean_and_spread(per_seed: dict[int, dict]) -> tuple[dict, dict]:
    keys = next(iter(per_seed.values())).keys()
    mean = {k: float(np.mean([m[k] for m in per_seed.values()])) for k in keys}
    spread = {k: [float(min(m[k] for m in per_seed.values())), float(max(m[k] for m in per_seed.values()))] for k in keys}
    return mean, spread


def run(smoke: bool = False, seeds=(0, 1, 2), tokenizer_path: str = E5_PATH, limit: int | None = None,
        command: str | None = None) -> dict:
    """Measure every floor on every task and save ``floors.json``; returns its ``data``."""
    from benchmarks.common import save_result

    start = time.perf_counter()
    evals = evaluators(TASKS, limit=limit)
    fit_sentences, fit_note = korsts_sentences(evals)
    results = lexical_floors(evals, fit_sentences)
    if smoke:
        from benchmarks.harness import tiny_tokenizer

        tokenizer, shape, tok_note = tiny_tokenizer(), {"layers": 1, "hidden": 32, "heads": 2}, "tiny WordPiece"
    else:
        tokenizer, shape, tok_note = load_tokenizer(tokenizer_path), MINI_SHAPE, f"{tokenizer_path} tokenizer"
    per_seed = random_init_floors(evals, tokenizer, seeds, shape)
    row = f"random-init BERT {shape['layers']}x{shape['hidden']}, mean (mean of {len(seeds)} seeds)"
    for task in evals:
        results[task][row] = mean_and_spread(per_seed[task])[0]
    wall = time.perf_counter() - start

    data = {"results": results, "random_init_per_seed": {t: {str(s): m for s, m in d.items()} for t, d in per_seed.items()},
            "random_init_row": row, "fit_sentences": len(fit_sentences), "fit_note": fit_note, "seeds": list(seeds),
            "shape": shape, "tokenizer": tok_note, "pairs": {task: len(ev) for task, ev in evals.items()}}
    save_result("floors", "Quality floors: lexical TF-IDF and random-init encoders", wall, data=data,
                order=15, command=command or " ".join(["python -m benchmarks.floors", *map(shlex.quote, sys.argv[1:])]))
    return data


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--tokenizer", default=E5_PATH,
                        help="tokenizer of the random-init encoders: a model folder or alias (default: $KOSIMCSE_E5_PATH "
                             "or e5-small-airgap)")
    args = parser.parse_args(argv)
    data = run(seeds=args.seeds, tokenizer_path=args.tokenizer)
    for task, rows in data["results"].items():
        for row, m in rows.items():
            print(f"{task:13s} {row:55s} {m['cosine_pearson']:.2f} / {m['cosine_spearman']:.2f}")


if __name__ == "__main__":
    main()
