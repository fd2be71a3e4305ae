"""Two gloo processes under DDP give the loss and gradients of one process on the concatenated batch.

This is what proves the negatives are gathered across devices with gradients: without the
differentiable all_gather, each rank would see only its own half as negatives and the numbers differ.
The trainer tests below do the same through SimCSETrainer, with GradCache and gradient accumulation.
"""

import datetime
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from helpers import make_tiny_model_dir
from kosimcse.modeling.model import SimCSEConfig, SimCSEModel

SENTENCES = ["한 남자가 기타를 치고 있다.", "여자가 양파를 썰고 있다.", "고양이가 소파 위에서 자고 있다.",
             "오늘 날씨가 정말 좋네요.", "아이들이 공원에서 뛰어 놀고 있다.", "그 영화는 생각보다 재미있었다.",
             "비행기가 이륙하고 있다.", "한 여자가 피아노를 연주한다."]


def build(path, views):
    from transformers import AutoTokenizer

    torch.manual_seed(0)
    model = SimCSEModel.from_encoder(path, SimCSEConfig(pooler="cls", hard_negative_weight=1.0),
                                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    tok = AutoTokenizer.from_pretrained(path)
    enc = tok(SENTENCES * (3 if views == 3 else 1), padding="max_length", max_length=24, return_tensors="pt")
    n = len(SENTENCES)
    if views == 2:
        batch = {k: torch.stack([v, v], 1) for k, v in enc.items()}
    else:  # anchor / positive / negative drawn from rotated sentence lists
        idx = torch.arange(n)
        batch = {k: torch.stack([v[:n][idx], v[n:2 * n][(idx + 1) % n], v[2 * n:][(idx + 3) % n]], 1) for k, v in enc.items()}
    return model, batch


def _worker(rank, world, path, views, init_file, out_file):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        model, batch = build(path, views)
        # As the trainer sets it (SimCSETrainingArguments.ddp_static_graph false; the Trainer finds unused
        # parameters for a plain nn.Module). Without find_unused_parameters the bucket holding the encoder's
        # pooler layer, which SimCSE leaves unused, is never reduced, and its gradients stay per rank.
        ddp = torch.nn.parallel.DistributedDataParallel(model, static_graph=False, find_unused_parameters=True)
        half = len(SENTENCES) // world
        local = {k: v[rank * half:(rank + 1) * half] for k, v in batch.items()}
        loss = ddp(**local)["loss"]
        loss.backward()  # DDP averages gradients over ranks
        mean_loss = loss.detach().clone()
        dist.all_reduce(mean_loss)
        mean_loss /= world
        if rank == 0:
            torch.save({"loss": mean_loss, "grads": {n: p.grad for n, p in model.named_parameters() if p.grad is not None}},
                       out_file)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny"), hidden=32, layers=2, heads=2)


@pytest.mark.parametrize("views", [2, 3])
def test_two_process_ddp_equals_one_process(tiny, tmp_path, views):
    out_file = tmp_path / "rank0.pt"
    mp.spawn(_worker, args=(2, str(tiny), views, str(tmp_path / "init"), str(out_file)), nprocs=2, join=True)
    result = torch.load(out_file, weights_only=True)

    model, batch = build(tiny, views)
    loss = model(**batch)["loss"]
    loss.backward()
    torch.testing.assert_close(result["loss"], loss.detach(), atol=1e-5, rtol=0)
    single = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert single.keys() == result["grads"].keys()
    for name, g in single.items():
        torch.testing.assert_close(result["grads"][name], g, atol=1e-5, rtol=1e-4, msg=name)


# ---- through SimCSETrainer: GradCache and gradient accumulation under DDP ----------------------------------------

TRAIN_STEPS = 2
MICRO_BATCH = 4  # pairs per rank and micro-step


def pair_dataset(path, rows):
    """``rows`` sentence pairs (two different sentences, so no pair is trivial), padded to one length."""
    from transformers import AutoTokenizer

    from helpers import korean_sample_texts

    texts = korean_sample_texts(limit=2 * rows)[: 2 * rows]
    enc = AutoTokenizer.from_pretrained(path)(texts, padding="max_length", truncation=True, max_length=24,
                                              return_tensors="pt")
    return [{k: v[2 * i: 2 * i + 2] for k, v in enc.items()} for i in range(rows)]


def stack(features):
    return {k: torch.stack([f[k] for f in features]) for k in features[0]}


def train_and_record(path, out_dir, batch, accumulation, chunk):
    """Train ``TRAIN_STEPS`` optimizer steps with SimCSETrainer; the gradients it steps with, and the weights after.

    Plain SGD, no clipping, no dropout, data in order: every rank's gradients and weights follow from the
    data alone, so any difference to one process comes from how gradients are reduced.
    """
    from transformers import TrainerCallback

    from kosimcse.training.args import SimCSETrainingArguments
    from kosimcse.training.trainer import SimCSETrainer

    class RecordGradients(TrainerCallback):
        def __init__(self):
            self.steps = []

        def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
            self.steps.append({n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None})

    torch.manual_seed(0)
    model = SimCSEModel.from_encoder(path, SimCSEConfig(pooler="avg"), hidden_dropout_prob=0.0,
                                     attention_probs_dropout_prob=0.0)
    args = SimCSETrainingArguments(
        output_dir=str(out_dir), per_device_train_batch_size=batch, gradient_accumulation_steps=accumulation,
        grad_cache_chunk_size=chunk, max_steps=TRAIN_STEPS, optim="sgd", learning_rate=0.1,
        lr_scheduler_type="constant", max_grad_norm=0.0, weight_decay=0.0, train_sampling_strategy="sequential", use_cpu=True,
        precision="fp32",  # exact gradient comparisons: bf16 rounding would differ between 1 and 2 processes
        eval_strategy="no", save_strategy="no", load_best_model_at_end=False, report_to=[], disable_tqdm=True,
        logging_steps=1, seed=0)
    world = max(args.world_size, 1)
    data = pair_dataset(path, batch * accumulation * TRAIN_STEPS * world)
    record = RecordGradients()
    trainer = SimCSETrainer(model=model, args=args, train_dataset=data, data_collator=stack, callbacks=[record])
    trainer.train()
    return {"grads": record.steps, "weights": {n: p.detach().clone() for n, p in model.named_parameters()}}


CONFIGS = {"gradcache-2chunks": (1, 4), "accumulation-2": (2, 0), "gradcache-2chunks+accumulation-2": (2, 4)}


def _trainer_worker(rank, world, path, init_file, out_dir):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world),
                      OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    # Accelerate finds the group already there and keeps it (no TCP port to pick); the timeout ends a rank
    # left waiting by a crash on the other.
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=120))
    try:
        for name, (accumulation, chunk) in CONFIGS.items():  # one spawn for all: starting Python costs the most
            try:
                result = train_and_record(path, f"{out_dir}/{name}", MICRO_BATCH, accumulation, chunk)
            except Exception as exc:  # reported by that configuration's test
                result = {"error": f"{type(exc).__name__}: {exc}"}
            torch.save(result, f"{out_dir}/{name}-rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_rank_runs(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp-trainer")
    mp.spawn(_trainer_worker, args=(2, str(tiny), str(out / "init"), str(out)), nprocs=2, join=True)
    return out


def assert_same_run(got, want, what):
    assert len(got["grads"]) == len(want["grads"]) == TRAIN_STEPS, what
    for step, (g, w) in enumerate(zip(got["grads"], want["grads"])):
        assert g.keys() == w.keys(), f"{what}, step {step + 1}"
        for name in w:
            torch.testing.assert_close(g[name], w[name], atol=1e-6, rtol=1e-4, msg=f"{what}, step {step + 1}: {name}")
    for name in want["weights"]:
        torch.testing.assert_close(got["weights"][name], want["weights"][name], atol=1e-6, rtol=1e-5,
                                   msg=f"{what}: {name}")


@pytest.mark.parametrize("config", list(CONFIGS))
def test_two_process_trainer_equals_one_process_on_the_joint_batch(tiny, two_rank_runs, tmp_path, config):
    """SimCSETrainer with its default DDP settings on two gloo ranks of ``MICRO_BATCH`` pairs each, against one
    process with ``2 * MICRO_BATCH`` pairs per micro-step and the same accumulation steps: the same gradient at
    each optimizer step, and the same weights after them.

    That is the joint batch because negatives are gathered per micro-step, not per accumulation window: at
    micro-step ``s`` each rank holds its ``MICRO_BATCH`` pairs (rank 0 the first, in data order), and one
    process holds both ranks' pairs, rank 0's first (the order of the gathered embeddings). GradCache chunks of
    4 rows (2 pairs) give 2 chunks per rank and micro-step.
    """
    accumulation, chunk = CONFIGS[config]
    ranks = [torch.load(two_rank_runs / f"{config}-rank{r}.pt", weights_only=True) for r in range(2)]
    for rank, result in enumerate(ranks):
        assert "error" not in result, f"rank {rank}: {result.get('error')}"
    single = train_and_record(tiny, tmp_path / "single", 2 * MICRO_BATCH, accumulation, chunk)
    assert max(g.abs().max() for g in single["grads"][0].values()) > 0.1  # a real gradient, not a vanishing one
    assert_same_run(ranks[1], ranks[0], "rank 1 vs rank 0")
    assert_same_run(ranks[0], single, "two ranks vs one process")


@pytest.mark.parametrize("setting", [{"gradient_accumulation_steps": 2}, {"grad_cache_chunk_size": 4}])
def test_static_graph_is_refused_where_ddp_no_sync_runs(tmp_path, setting):
    from kosimcse.training.args import SimCSETrainingArguments

    with pytest.raises(ValueError, match="ddp_static_graph true does not work"):
        SimCSETrainingArguments(output_dir=str(tmp_path), ddp_static_graph=True, report_to=[], **setting)
    SimCSETrainingArguments(output_dir=str(tmp_path), ddp_static_graph=True, report_to=[])  # alone it is fine
