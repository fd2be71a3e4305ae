"""Adding a loss is one class plus one registration: a toy loss registered here trains through ``train()``."""

import json

import pytest
import torch

from helpers import make_tiny_model_dir
from kosimcse.errors import KoSimCSEError
from kosimcse.evaluation.similarity import cosine_matrix, pairwise_cosine
from kosimcse.modeling.losses import LOSSES, Loss, register_loss
from kosimcse.modeling.model import SimCSEModel
from kosimcse.training.args import ModelArguments, load_recipe
from kosimcse.training.run import resolve_loss, train, validate_settings

SENTENCES = ["한 남자가 기타를 치고 있다.", "여자가 양파를 썰고 있다.", "고양이가 소파 위에서 자고 있다.",
             "오늘 날씨가 정말 좋네요.", "아이들이 공원에서 뛰어 놀고 있다.", "그 영화는 생각보다 재미있었다.",
             "비행기가 이륙하고 있다.", "한 여자가 피아노를 연주한다."] * 2


@pytest.fixture
def toy_loss():
    calls = []

    @register_loss("toy")
    class AlignUniformLoss(Loss):
        """Wang & Isola's alignment + uniformity, with the recipe's temperature as the uniformity scale."""

        inputs = ("sentences",)
        options = ("temperature",)

        def __init__(self, temperature: float):
            super().__init__()
            self.temperature = temperature

        @classmethod
        def from_config(cls, config, dim):
            return cls(config.temperature)

        def forward(self, anchor, positive):
            calls.append(tuple(anchor.shape))
            align = (1 - pairwise_cosine(anchor, positive)).mean()
            return align + torch.logsumexp(cosine_matrix(anchor, anchor) / self.temperature, dim=-1).mean()

    yield AlignUniformLoss, calls
    LOSSES.pop("toy")


def _settings(**values):
    return load_recipe(None, dict(values, report_to=[], bf16=False))


def test_a_registered_loss_trains_end_to_end(toy_loss, tmp_path):
    cls, calls = toy_loss
    model_dir = make_tiny_model_dir(tmp_path / "tiny", hidden=32, layers=2, heads=2)
    train_file = tmp_path / "sentences.txt"
    train_file.write_text("\n".join(SENTENCES), encoding="utf-8")
    summary = train(*_settings(
        model_name_or_path=str(model_dir), train_file=str(train_file), output_dir=str(tmp_path / "run"),
        loss="toy", temperature=0.5, pooler="avg", per_device_train_batch_size=8, max_steps=2, warmup_steps=0,
        eval_strategy="no", save_strategy="no", load_best_model_at_end=False, precision="fp32", disable_tqdm=True,
        report_tasks=[], seed=3))
    assert calls and all(shape == (8, 32) for shape in calls)  # two views of 8 sentences per step
    assert summary["global_step"] == 2 and summary["train_loss"] > 0
    export = tmp_path / "run" / "best"
    saved = json.loads((export / "kosimcse_config.json").read_text(encoding="utf-8"))
    assert (saved["loss"], saved["temperature"]) == ("toy", 0.5)
    loaded = SimCSEModel.from_pretrained(export).loss_fn
    assert type(loaded) is cls and loaded.temperature == 0.5


def test_the_training_checks_follow_the_declarations(toy_loss):
    assert resolve_loss(ModelArguments(loss="toy"), "unsup") == "toy"
    assert resolve_loss(ModelArguments(), "unsup") == "infonce"  # not registered as a default
    with pytest.raises(KoSimCSEError, match="does not fit"):
        resolve_loss(ModelArguments(loss="toy"), "sup")  # inputs: sentences only
    with pytest.raises(KoSimCSEError, match="loss_scale") as err:
        validate_settings(*_settings(loss="toy", loss_scale=30.0, temperature=0.1))
    assert "temperature" not in str(err.value)  # the toy loss declares that it reads temperature
    with pytest.raises(ValueError, match="already the default"):
        register_loss("toy2", default_for=("unsup",))(type("Toy2", (Loss,), {}))
    assert "toy2" not in LOSSES
