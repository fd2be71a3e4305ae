"""SimCSE model: pooling choices, training-only head, and the export that transformers and sentence-transformers load."""

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from helpers import make_tiny_model_dir
from kosimcse.modeling.model import SimCSEConfig, SimCSEModel
from kosimcse.modeling.pooling import pool

SENTENCES = ["한 남자가 기타를 치고 있다.", "여자가 양파를 썰고 있다.", "고양이가 소파 위에서 자고 있다.",
             "오늘 날씨가 정말 좋네요. 산책을 가야겠다", "아이들"]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny"), hidden=32, layers=3, heads=2)


def test_avg_first_last_uses_first_transformer_layer_not_embeddings():
    mask = torch.tensor([[1, 1, 0]])
    states = tuple(torch.full((1, 3, 2), float(i)) for i in range(4))  # embeddings=0, layers 1..3
    out = pool("avg_first_last", mask, states[-1], states)
    assert torch.allclose(out, torch.tensor([[2.0, 2.0]]))  # (1 + 3) / 2, not (0 + 3) / 2
    top2 = pool("avg_top2", mask, states[-1], states)
    assert torch.allclose(top2, torch.tensor([[2.5, 2.5]]))


def test_mean_pooling_ignores_padding():
    mask = torch.tensor([[1, 0]])
    last = torch.tensor([[[2.0], [100.0]]])
    assert pool("avg", mask, last).item() == 2.0


def test_head_used_in_training_only_when_mlp_only_train(tiny_dir):
    tok = AutoTokenizer.from_pretrained(tiny_dir)
    enc = tok(SENTENCES, padding=True, return_tensors="pt")
    model = SimCSEModel.from_encoder(tiny_dir, SimCSEConfig(pooler="cls", mlp_only_train=True))
    model.eval()
    raw = model.embed(enc["input_ids"], enc["attention_mask"])
    assert torch.allclose(raw, model.encoder(**enc).last_hidden_state[:, 0])
    model.train()
    torch.manual_seed(0)
    headed = model.embed(enc["input_ids"], enc["attention_mask"])
    assert headed.abs().max() <= 1.0  # tanh head applied in training


@pytest.mark.parametrize("pooler,mlp_only_train,prefix", [
    ("cls", False, ""), ("cls", True, ""), ("cls_before_pooler", False, ""), ("avg", False, "query: "),
    ("avg_first_last", False, ""), ("avg_top2", False, ""),
])
def test_export_loads_in_transformers_and_sentence_transformers(tiny_dir, tmp_path, pooler, mlp_only_train, prefix):
    from sentence_transformers import SentenceTransformer

    torch.manual_seed(0)
    model = SimCSEModel.from_encoder(tiny_dir, SimCSEConfig(pooler=pooler, mlp_only_train=mlp_only_train, prefix=prefix,
                                                            max_length=64))
    if model.head is not None:
        torch.nn.init.normal_(model.head.dense.weight, std=0.5)  # make a wrong head choice visible
    tok = AutoTokenizer.from_pretrained(tiny_dir)
    out = model.save_pretrained(tmp_path / "export", tokenizer=tok)

    ours = model.encode(tok, SENTENCES, batch_size=128, max_length=64, prefix=prefix)
    st = SentenceTransformer(str(out), device="cpu")
    theirs = st.encode(SENTENCES, convert_to_numpy=True)
    np.testing.assert_allclose(theirs, ours, atol=1e-5)

    reloaded = SimCSEModel.from_pretrained(out)
    np.testing.assert_allclose(reloaded.encode(tok, SENTENCES, batch_size=128, max_length=64, prefix=prefix), ours, atol=1e-6)

    hf = AutoModel.from_pretrained(out)
    enc = tok(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        np.testing.assert_allclose(hf(**enc).last_hidden_state.numpy(),
                                   model.encoder.eval()(**enc).last_hidden_state.numpy(), atol=1e-6)
    assert (out / "model.safetensors").exists() and not list(out.glob("*.bin"))


def test_continuing_from_an_export_keeps_its_trained_inference_head(tmp_path):
    """A later stage from an export with `pooler: cls` (head used at inference) starts from that head, not a random one."""
    import torch
    from transformers import AutoTokenizer

    from helpers import make_tiny_model_dir
    from kosimcse.modeling.model import SimCSEConfig, SimCSEModel

    base = make_tiny_model_dir(tmp_path / "tiny", hidden=32, layers=2, heads=2)
    first = SimCSEModel.from_encoder(base, SimCSEConfig(pooler="cls"))
    with torch.no_grad():
        first.head.dense.weight.fill_(0.01)
        first.head.dense.bias.fill_(0.5)
    export = first.save_pretrained(tmp_path / "export", tokenizer=AutoTokenizer.from_pretrained(base))
    second = SimCSEModel.from_encoder(export, SimCSEConfig(pooler="cls"))
    assert torch.equal(second.head.dense.weight, first.head.dense.weight)
    assert torch.equal(second.head.dense.bias, first.head.dense.bias)
