"""Shared benchmark pieces: the STS tasks, random-init model builders, and redirecting results for smoke runs."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

TASKS = ("korsts-test", "korsts-dev", "klue-sts-dev")
# The e5 encoder the benchmarks measure: a folder from $KOSIMCSE_E5_PATH, else the air-gapped conversion in the
# kosimcse cache dir (model alias e5-small-airgap, converted on first use).
E5_PATH = os.environ.get("KOSIMCSE_E5_PATH", "e5-small-airgap")
MINI_SHAPE = {"layers": 4, "hidden": 256, "heads": 4}


def evaluators(tasks=TASKS, limit: int | None = None) -> dict:
    """``{task: StsEvaluator}``; ``limit`` keeps only the first N pairs (smoke runs)."""
    from kosimcse.data.tasks import load_sts_task
    from kosimcse.evaluation.sts import StsEvaluator

    out = {}
    for task in tasks:
        pairs = load_sts_task(task)
        out[task] = StsEvaluator(pairs[:limit] if limit else pairs, name=task)
    return out


def tiny_tokenizer():
    """A small WordPiece tokenizer trained on KorSTS dev (offline, ~1 s): smoke runs need no e5 folder."""
    from kosimcse.data.tasks import load_sts_task
    from kosimcse.modeling.tokenizer import train_wordpiece_tokenizer

    texts = [s for p in load_sts_task("korsts-dev") for s in (p.sentence1, p.sentence2)]
    return train_wordpiece_tokenizer(texts, vocab_size=2000)


def random_encoder(tokenizer, layers: int, hidden: int, heads: int, seed: int):
    """A random-init BERT encoder of the given shape over ``tokenizer``'s vocabulary."""
    import torch
    from transformers import AutoModel, BertConfig

    config = BertConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=hidden * 4, max_position_embeddings=512,
                        pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    return AutoModel.from_config(config).eval()


def model_folder(name_or_path: str | Path) -> Path:
    """The local folder of a model folder, Hub id or alias (``e5-small-airgap``), as kosimcse resolves it."""
    from kosimcse.loading.resolve import resolve_model

    return resolve_model(name_or_path)


def load_tokenizer(name_or_path: str | Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_folder(name_or_path)))


def write_random_model_dir(path: str | Path, tokenizer, layers: int, hidden: int, heads: int, seed: int = 0) -> Path:
    """Save a random-init encoder + tokenizer as an HF folder that both kosimcse and sentence-transformers load."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    random_encoder(tokenizer, layers, hidden, heads, seed).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@contextlib.contextmanager
def results_dir(path: str | Path | None):
    """Point ``benchmarks.common.save_result`` at another folder (smoke runs must not touch benchmarks/results)."""
    from benchmarks import common

    if path is None:
        yield common.RESULTS_DIR
        return
    saved = common.RESULTS_DIR
    common.RESULTS_DIR = Path(path)
    try:
        yield common.RESULTS_DIR
    finally:
        common.RESULTS_DIR = saved


def current_results_dir() -> Path:
    from benchmarks import common

    return common.RESULTS_DIR
