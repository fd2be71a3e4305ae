"""GradCache gives the gradients of the plain large batch, with dropout replayed chunk by chunk."""

import pytest
import torch

from helpers import make_tiny_model_dir
from kosimcse.modeling.model import SimCSEConfig, SimCSEModel
from kosimcse.training import gradcache
from kosimcse.training.gradcache import grad_cache_backward

SENTENCES = ["한 남자가 기타를 치고 있다.", "여자가 양파를 썰고 있다.", "고양이가 소파 위에서 자고 있다.",
             "오늘 날씨가 정말 좋네요.", "아이들이 공원에서 뛰어 놀고 있다.", "그 영화는 생각보다 재미있었다.",
             "비행기가 이륙하고 있다.", "한 여자가 피아노를 연주한다.", "남자가 말을 타고 있다.", "개가 공을 쫓는다."]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from transformers import AutoTokenizer

    path = make_tiny_model_dir(tmp_path_factory.mktemp("tiny"), hidden=32, layers=2, heads=2)
    tok = AutoTokenizer.from_pretrained(path)
    enc = tok(SENTENCES, padding=True, return_tensors="pt")
    # unsupervised layout: every sentence twice, flattened to rows (b0v0, b0v1, b1v0, ...)
    flat = {k: torch.stack([v, v], 1).reshape(2 * len(SENTENCES), -1) for k, v in enc.items()}
    return path, flat


def fresh_model(path):
    torch.manual_seed(0)
    model = SimCSEModel.from_encoder(path, SimCSEConfig(pooler="cls", mlp_only_train=True))
    model.train()
    return model


def loss_of(model, reps):
    reps = reps.view(len(SENTENCES), 2, -1)
    return model.loss_fn(reps[:, 0], reps[:, 1])


def grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def run_gradcache(path, flat, chunk, seed=123):
    model = fresh_model(path)
    torch.manual_seed(seed)
    loss = grad_cache_backward(lambda c: model(**c, embed_only=True), lambda r: loss_of(model, r), flat, chunk)
    return loss, grads(model)


def run_reference(path, flat, chunk, seed=123):
    """One graph over the whole batch, built chunk by chunk so dropout draws the same random numbers."""
    model = fresh_model(path)
    torch.manual_seed(seed)
    reps = torch.cat([model(**{k: v[s:s + chunk] for k, v in flat.items()}, embed_only=True)
                      for s in range(0, flat["input_ids"].size(0), chunk)])
    loss = loss_of(model, reps.float())
    loss.backward()
    return loss.detach(), grads(model)


def assert_same(ga, gb, atol=1e-5):
    assert ga.keys() == gb.keys()
    for name in ga:
        torch.testing.assert_close(ga[name], gb[name], atol=atol, rtol=1e-4, msg=name)


def test_gradcache_equals_full_batch_with_dropout(setup):
    path, flat = setup
    loss_gc, g_gc = run_gradcache(path, flat, chunk=6)
    loss_ref, g_ref = run_reference(path, flat, chunk=6)
    assert float(loss_gc) == pytest.approx(float(loss_ref), abs=1e-6)
    assert_same(g_gc, g_ref)


def test_gradcache_equals_single_pass_without_dropout(setup):
    path, flat = setup
    def no_dropout(path):
        m = fresh_model(path)
        for mod in m.modules():
            if isinstance(mod, torch.nn.Dropout):
                mod.p = 0.0
        return m

    model = no_dropout(path)
    grad_cache_backward(lambda c: model(**c, embed_only=True), lambda r: loss_of(model, r), flat, 4)
    g_gc = grads(model)
    model = no_dropout(path)
    loss_of(model, model(**flat, embed_only=True).float()).backward()  # one plain pass, whole batch
    assert_same(g_gc, grads(model))


def test_without_rng_replay_gradients_differ(setup, monkeypatch):
    """The replay is what makes GradCache exact under dropout: disabling it must break the equality."""
    path, flat = setup
    _, g_ref = run_reference(path, flat, chunk=6)
    monkeypatch.setattr(gradcache.RngState, "restore", lambda self: None)
    _, g_broken = run_gradcache(path, flat, chunk=6)
    diff = max((g_ref[n] - g_broken[n]).abs().max().item() for n in g_ref)
    assert diff > 1e-4
