"""Settings that cannot take effect are refused, each with a clear error; every shipped recipe still validates."""

from pathlib import Path

import pytest

from kosimcse.errors import KoSimCSEError
from kosimcse.training.args import load_recipe, read_recipe
from kosimcse.training.run import stage_settings, train, validate_settings

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.yaml"))
TEMPLATE = '문장 "[X]" 의 뜻은 [MASK]'


def _validate(**values):
    return validate_settings(*load_recipe(None, dict(values, report_to=[], bf16=False)))


@pytest.mark.parametrize("values,message", [
    ({"pooler": "cls_before_pooler", "mlp_only_train": True}, "pooler: cls"),
    ({"pooler": "prompt", "mlp_only_train": True}, "pooler: cls"),
    ({"hard_negative_weight": 1.0}, "hard_negative_weight"),
    ({"objective": "sts", "hard_negative_weight": 1.0, "pooler": "avg"}, "hard_negative_weight"),
    ({"prompt_template": TEMPLATE}, "prompt_template"),
    ({"rtd_mask_ratio": 0.15}, "rtd_mask_ratio"),
    ({"dup_rate": 0.5}, "dup_rate"),
    ({"momentum": 0.9}, "momentum"),
    ({"objective": "sup", "queue_size": 16}, "queue_size"),
    ({"loss_scale": 30.0}, "loss_scale"),
    ({"objective": "sts", "temperature": 0.1, "pooler": "avg"}, "temperature"),
    ({"grad_cache_chunk_size": 128, "per_device_train_batch_size": 64}, "grad_cache_chunk_size"),
    ({"objective": "sup", "grad_cache_chunk_size": 150, "per_device_train_batch_size": 50}, "grad_cache_chunk_size"),
    ({"objective": "esimcse", "grad_cache_chunk_size": 16}, "GradCache"),
    ({"mlm_weight": 0.1, "grad_cache_chunk_size": 16}, "GradCache"),
    ({"rtd_weight": 0.005, "grad_cache_chunk_size": 16}, "GradCache"),
    ({"pooler": "cls", "mlp_only_train": False, "start_weight": 0.5}, "start_weight merges the encoder"),
])
def test_settings_without_effect_are_refused(values, message):
    with pytest.raises(KoSimCSEError, match=message):
        _validate(**values)


@pytest.mark.parametrize("values", [
    {"objective": "sup", "hard_negative_weight": 1.0},
    {"objective": "esimcse", "dup_rate": 0.5, "queue_size": 16, "momentum": 0.9},
    {"objective": "unsup", "loss": "esimcse", "queue_size": 16, "momentum": 0.9},
    {"objective": "sts", "loss_scale": 30.0, "pooler": "avg"},
    {"objective": "sts", "loss": "angle", "temperature": 0.05, "pooler": "avg"},  # a default spelled out
    {"rtd_weight": 0.005, "rtd_mask_ratio": 0.15},
    {"pooler": "prompt", "prompt_template": TEMPLATE},
    {"pooler": "cls", "mlp_only_train": True},
    {"pooler": "avg", "mlp_only_train": True},
    {"pooler": "avg_top2", "mlp_only_train": True},
    {"temperature": 0.1},
    {"grad_cache_chunk_size": 64, "per_device_train_batch_size": 64},  # 128 rows (2 views): two chunks
    {"objective": "sup", "grad_cache_chunk_size": 100, "per_device_train_batch_size": 50},
    {"pooler": "cls", "mlp_only_train": True, "start_weight": 0.5},  # the head is training-only: nothing to merge
    {"pooler": "avg", "start_weight": 0.5},
])
def test_settings_that_take_effect_pass(values):
    _validate(**values)


def test_several_problems_are_named_together():
    with pytest.raises(KoSimCSEError) as err:
        _validate(hard_negative_weight=1.0, loss_scale=30.0)
    assert "hard_negative_weight" in str(err.value) and "loss_scale" in str(err.value)


def test_train_validates_before_loading_anything(tmp_path):
    with pytest.raises(KoSimCSEError, match="hard_negative_weight"):
        train(*load_recipe(None, {"model_name_or_path": str(tmp_path / "absent"), "hard_negative_weight": 1.0,
                                  "output_dir": str(tmp_path / "run"), "report_to": [], "bf16": False}))


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_every_recipe_and_stage_loads_and_validates(recipe):
    values = read_recipe(recipe)
    overrides = {"bf16": False}  # bf16 support depends on the machine; not what is checked here
    runs = stage_settings(values, overrides) if "stages" in values else [(recipe.stem, None)]
    for name, settings in runs:
        margs, dargs, targs = load_recipe(recipe if settings is None else None, settings or overrides)
        validate_settings(margs, dargs, targs)
        if recipe.stem in ("unsup-seed", "esimcse", "domain"):
            assert (margs.pooler, margs.mlp_only_train) == ("cls", True), name  # SimCSE's unsupervised setting


def test_benchmark_objectives_validate_for_every_start(monkeypatch):
    import benchmarks.objectives as harness

    monkeypatch.setattr(harness, "unsup_corpus", lambda data, smoke=False: "sentences.txt")
    for start in harness.STARTS:
        for objective, stages in harness.OBJECTIVES.items():
            for stage, extra, _ in stages:
                settings = harness.stage_settings(stage, extra, 100, 32, 42, Path("data"), smoke=False, start=start)
                _validate(**settings)


def test_a_later_stage_is_validated_before_the_first_one_trains(tmp_path, monkeypatch):
    from kosimcse.training import run as run_module

    recipe = tmp_path / "two.yaml"
    recipe.write_text("pooler: avg\nstages:\n  - name: nli\n    objective: sup\n"
                      "  - name: sts\n    objective: sts\n    model_name_or_path: '{previous}'\n    temperature: 0.1\n",
                      encoding="utf-8")
    monkeypatch.setattr(run_module, "train", lambda *a, **k: pytest.fail("a stage trained before validation"))
    with pytest.raises(KoSimCSEError, match="temperature"):
        run_module.train_stages(recipe, {"bf16": False, "report_to": []})
