"""Two gloo processes under DDP give the loss and gradients of one process on the concatenated batch.

This is what proves the negatives are gathered across devices with gradients: without the
differentiable all_gather, each rank would see only its own half as negatives and the numbers differ.
"""

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
        # static_graph as the trainer sets it (SimCSETrainingArguments.ddp_static_graph)
        ddp = torch.nn.parallel.DistributedDataParallel(model, static_graph=True)
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
