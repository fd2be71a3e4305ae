"""The MLP head: SimCSE's on ``cls``, a training-only one over mean poolers, refused where it cannot exist.

Before, ``mlp_only_train: true`` with any pooler but ``cls`` silently trained without a head.
"""

import json

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from helpers import make_tiny_model_dir
from kosimcse.errors import KoSimCSEError
from kosimcse.modeling.model import SimCSEConfig, SimCSEModel
from kosimcse.training.data import ContrastiveCollator

SENTENCES = ["한 남자가 기타를 치고 있다.", "여자가 양파를 썰고 있다.", "고양이가 소파 위에서 자고 있다.",
             "오늘 날씨가 정말 좋네요. 산책을 가야겠다", "아이들이 공원에서 뛰어 놀고 있다.", "그 영화는 생각보다 재미있었다."]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny"), hidden=32, layers=3, heads=2)


@pytest.fixture(scope="module")
def tok(tiny_dir):
    return AutoTokenizer.from_pretrained(tiny_dir)


@pytest.mark.parametrize("pooler,mlp_only_train,has_head,at_inference", [
    ("cls", False, True, True),                 # supervised SimCSE: the head stays
    ("cls", True, True, False),                 # unsupervised SimCSE: training only
    ("cls_before_pooler", False, False, False),
    ("avg", False, False, False),
    ("avg", True, True, False),                 # a training-only head over mean pooling
    ("mean", True, True, False),
    ("avg_first_last", True, True, False),
    ("avg_top2", True, True, False),
])
def test_which_settings_have_a_head(tiny_dir, pooler, mlp_only_train, has_head, at_inference):
    model = SimCSEModel.from_encoder(tiny_dir, SimCSEConfig(pooler=pooler, mlp_only_train=mlp_only_train))
    assert (model.head is not None) == has_head
    assert model.config.head_at_inference == at_inference


@pytest.mark.parametrize("pooler", ["cls_before_pooler", "prompt"])
def test_mlp_only_train_without_a_head_is_refused(tiny_dir, tok, pooler):
    with pytest.raises(KoSimCSEError, match="pooler: cls"):
        SimCSEModel.from_encoder(tiny_dir, SimCSEConfig(pooler=pooler, mlp_only_train=True,
                                                        mask_token_id=tok.mask_token_id))


def test_an_old_export_with_a_no_effect_flag_still_loads_for_inference(tiny_dir, tok, tmp_path):
    model = SimCSEModel.from_encoder(tiny_dir, SimCSEConfig(pooler="cls_before_pooler"))
    out = model.save_pretrained(tmp_path / "old", tokenizer=tok)
    config = json.loads((out / "kosimcse_config.json").read_text(encoding="utf-8"))
    (out / "kosimcse_config.json").write_text(json.dumps(dict(config, mlp_only_train=True)), encoding="utf-8")
    reloaded = SimCSEModel.from_pretrained(out)
    assert reloaded.head is None
    np.testing.assert_allclose(reloaded.encode(tok, SENTENCES, batch_size=128, max_length=64, prefix=""),
                               model.encode(tok, SENTENCES, batch_size=128, max_length=64, prefix=""),
                               atol=1e-6)


@pytest.mark.parametrize("pooler,prefix", [("avg", "query: "), ("avg_first_last", "")])
def test_training_only_head_over_mean_pooling_trains_and_stays_out_of_the_export(tiny_dir, tok, tmp_path, pooler, prefix):
    from sentence_transformers import SentenceTransformer

    torch.manual_seed(0)
    model = SimCSEModel.from_encoder(tiny_dir, SimCSEConfig(pooler=pooler, mlp_only_train=True, prefix=prefix,
                                                            max_length=64))
    batch = ContrastiveCollator(tok, max_length=32, prefix=prefix)([{"text": t} for t in SENTENCES])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    model.train()
    before = model.head.dense.weight.detach().clone()
    for _ in range(2):
        model(**batch)["loss"].backward()
        # Training really goes through the head.
        assert model.head.dense.weight.grad is not None and model.head.dense.weight.grad.abs().sum() > 0
        optimizer.step()
        optimizer.zero_grad()
    assert not torch.equal(before, model.head.dense.weight)
    model.eval()
    enc = tok([prefix + s for s in SENTENCES], padding=True, return_tensors="pt")
    with torch.no_grad():
        plain = model.embed(enc["input_ids"], enc["attention_mask"])
        headed = model.embed(enc["input_ids"], enc["attention_mask"], with_head=True)
    assert not torch.allclose(plain, headed)  # inference embeds without the head

    out = model.save_pretrained(tmp_path / "export", tokenizer=tok)
    modules = json.loads((out / "modules.json").read_text(encoding="utf-8"))
    assert not any("Dense" in m["type"] for m in modules) and not list(out.glob("*Dense*"))
    saved = json.loads((out / "kosimcse_config.json").read_text(encoding="utf-8"))
    assert (saved["pooler"], saved["mlp_only_train"]) == (pooler, True)

    # The vectors the training run evaluates with = the exported folder's, through both loaders.
    ours = model.encode(tok, SENTENCES, batch_size=128, max_length=64, prefix=prefix)
    np.testing.assert_allclose(ours, plain.numpy(), atol=1e-5)
    theirs = SentenceTransformer(str(out), device="cpu").encode(SENTENCES, convert_to_numpy=True)
    np.testing.assert_allclose(theirs, ours, atol=1e-5)
    reloaded = SimCSEModel.from_pretrained(out)
    assert not reloaded.config.head_at_inference
    np.testing.assert_allclose(reloaded.encode(tok, SENTENCES, batch_size=128, max_length=64, prefix=prefix), ours, atol=1e-6)


def test_esimcse_queue_is_filled_in_the_training_head_space(tiny_dir, tok):
    """The queue's negatives are compared with head-mapped positives, so they pass through the head too."""
    torch.manual_seed(0)
    model = SimCSEModel.from_encoder(tiny_dir, SimCSEConfig(pooler="avg", mlp_only_train=True, loss="esimcse",
                                                            queue_size=8, momentum=0.5))
    batch = ContrastiveCollator(tok, max_length=32, dup_rate=0.32)([{"text": t} for t in SENTENCES[:4]])
    model.train()
    loss = model(**batch)["loss"]
    loss.backward()
    assert model.head.dense.weight.grad.abs().sum() > 0
    with torch.no_grad():
        anchors = {k: batch[k][:, 0] for k in ("input_ids", "attention_mask", "token_type_ids")}
        pooled = model._pool(model.momentum_encoder.encoder, anchors)
        expected = model.head(pooled)
    torch.testing.assert_close(model.loss_fn.queue[:4], expected, atol=1e-6, rtol=1e-5)
