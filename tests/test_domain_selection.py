"""Training logs the label-free domain score, the summary shows it before/after, and model selection ignores
noise-sized gains: a dev gain within the start's bootstrap standard error, or selection by domain MRR@10 under a dev
tolerance."""

import json

import numpy as np
import pytest

from kosimcse.data.documents import Document, write_documents
from kosimcse.evaluation.domain import spearman_bootstrap_se
from test_model_selection import SENTENCES, run


def _heldout(tmp_path):
    docs = [Document(str(i), None, [SENTENCES[i], SENTENCES[(i + 3) % 8], SENTENCES[(i + 5) % 8]]) for i in range(8)]
    path = tmp_path / "heldout.jsonl"
    write_documents(path, docs)
    return path


def _records(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_bootstrap_se_shrinks_with_more_pairs():
    rng = np.random.default_rng(0)
    gold = rng.normal(size=4000)
    scores = gold + rng.normal(size=4000)
    small, large = spearman_bootstrap_se(scores[:100], gold[:100]), spearman_bootstrap_se(scores, gold)
    # (1 - rho^2) / sqrt(n) is the textbook size for rho ~ 0.7: about 5 points at n=100, 0.8 at n=4000
    assert 3 < small < 8 and 0.5 < large < 1.2 and spearman_bootstrap_se(gold, gold) == 0.0


@pytest.mark.slow
def test_domain_selection_logs_scores_and_picks_best_domain_checkpoint(tmp_path):
    heldout = _heldout(tmp_path)
    _, summary = run(tmp_path, "dom", lr=1e-3, eval_domain=str(heldout), selection_metric="domain",
                     selection_tolerance=1000.0)
    evals = {r["step"]: r for r in _records(tmp_path / "dom" / "metrics.jsonl") if "eval_domain_mrr@10" in r}
    assert sorted(evals) == [0, 2, 4]
    assert all(r["eval_selection_score"] == r["eval_domain_mrr@10"] for r in evals.values())
    start = evals[0]
    assert summary["domain"]["before"] == {k[len("eval_domain_"):]: v for k, v in start.items()
                                           if k.startswith("eval_domain_")}
    best_step = max((2, 4), key=lambda s: evals[s]["eval_domain_mrr@10"])
    gain = evals[best_step]["eval_domain_mrr@10"] - start["eval_domain_mrr@10"]
    assert summary["selection_margin"] == pytest.approx(start["eval_domain_mrr@10_se"])
    assert summary["kept_initial_model"] is (gain <= start["eval_domain_mrr@10_se"])
    chosen = start if summary["kept_initial_model"] else evals[best_step]
    assert summary["domain"]["after"]["mrr@10"] == pytest.approx(chosen["eval_domain_mrr@10"], abs=1e-4)
    assert summary["dev_spearman"] == summary["results"]["korsts-dev"]["cosine_spearman"]
    # what `kosimcse train` prints: the domain score before and after, flagged as chosen on these documents
    from kosimcse.cli.train import _summary_text

    text = _summary_text(summary)
    for name in ("before", "after"):
        assert f"| {name} | {summary['domain'][name]['mrr@10']:.2f} | {summary['domain'][name]['r@1']:.2f} |" in text
    assert summary["domain"]["selected_on"] is True and "'after' is optimistic" in text
    assert "optimistic" not in _summary_text({**summary, "domain": {**summary["domain"], "selected_on": False}})


@pytest.mark.slow
def test_a_dev_gain_within_the_bootstrap_se_keeps_the_start(tmp_path, monkeypatch):
    import kosimcse.training.run as run_module
    from kosimcse.evaluation.sts import StsEvaluator

    class Rising(StsEvaluator):
        """Adds 0.1 dev points per evaluation after the start: a steady gain far below the bootstrap SE."""
        calls = 0

        def __call__(self, encode_fn):
            scores = super().__call__(encode_fn)
            Rising.calls += 1
            return scores | {"cosine_spearman": scores["cosine_spearman"] + 0.1 * (Rising.calls > 1) * Rising.calls}

    build = run_module.build_evaluator
    monkeypatch.setattr(run_module, "build_evaluator", lambda dargs, task=None: Rising(build(dargs, task).pairs)
                        if task is None else build(dargs, task))
    _, summary = run(tmp_path, "noise", lr=1e-6)
    evals = [r for r in _records(tmp_path / "noise" / "metrics.jsonl") if "eval_cosine_spearman" in r]
    start_se = evals[0]["eval_cosine_spearman_se"]
    gain = max(r["eval_cosine_spearman"] for r in evals[1:]) - evals[0]["eval_cosine_spearman"]
    assert 0 < gain < start_se  # precondition: dev rose, by less than its noise; plain best-dev would take it
    assert summary["kept_initial_model"] is True and summary["selection_margin"] == start_se


def test_a_trainer_built_directly_for_domain_selection_without_documents_is_refused(tmp_path):
    from helpers import make_tiny_model_dir
    from kosimcse.errors import KoSimCSEError
    from kosimcse.modeling.model import SimCSEConfig, SimCSEModel
    from kosimcse.training.args import SimCSETrainingArguments
    from kosimcse.training.trainer import SimCSETrainer

    model = SimCSEModel.from_encoder(make_tiny_model_dir(tmp_path / "tiny"), SimCSEConfig(pooler="avg"))
    args = SimCSETrainingArguments(output_dir=str(tmp_path / "run"), use_cpu=True, report_to=[], eval_on_start=True,
                                   selection_metric="domain", selection_tolerance=0.5)
    with pytest.raises(KoSimCSEError, match="domain_docs"):  # was a KeyError at the first evaluation
        SimCSETrainer(model=model, args=args)
