"""Several visible GPUs in one process: the Trainer would fall back to nn.DataParallel, which splits the in-batch
negatives per GPU. Refused with the torchrun command instead. Faked without GPUs by patching ``n_gpu``."""

import pytest

from helpers import make_tiny_model_dir
from kosimcse.errors import KoSimCSEError
from kosimcse.modeling.model import SimCSEConfig, SimCSEModel
from kosimcse.training.args import SimCSETrainingArguments
from kosimcse.training.trainer import SimCSETrainer


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return SimCSEModel.from_encoder(make_tiny_model_dir(tmp_path_factory.mktemp("tiny")), SimCSEConfig(pooler="avg"))


def _args(tmp_path):
    return SimCSETrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[], eval_strategy="no",
                                   save_strategy="no", load_best_model_at_end=False)


def test_several_gpus_in_one_process_are_refused_with_the_torchrun_command(tiny_model, tmp_path, monkeypatch):
    from transformers.training_args import ParallelMode

    monkeypatch.setattr(SimCSETrainingArguments, "n_gpu", property(lambda self: 4))
    args = _args(tmp_path)
    assert args.parallel_mode == ParallelMode.NOT_DISTRIBUTED  # what the Trainer wraps in nn.DataParallel
    with pytest.raises(KoSimCSEError, match=r"torchrun --nproc_per_node 4 -m kosimcse train") as err:
        SimCSETrainer(model=tiny_model, args=args)
    assert "CUDA_VISIBLE_DEVICES=0" in str(err.value) and "DataParallel" in str(err.value)


def test_one_device_builds_the_trainer(tiny_model, tmp_path):
    trainer = SimCSETrainer(model=tiny_model, args=_args(tmp_path))
    assert trainer.args.n_gpu <= 1 and trainer.model is tiny_model
