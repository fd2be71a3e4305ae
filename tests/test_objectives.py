"""Objectives beyond plain SimCSE: CoSENT/AnglE, ESimCSE (word repetition + momentum queue), prompt pooling, MLM."""

import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from transformers import AutoModel, AutoTokenizer

from helpers import make_tiny_model_dir
from kosimcse.errors import KoSimCSEError
from kosimcse.modeling.losses import AnglELoss, CoSENTLoss, InfoNCELoss, QueueInfoNCELoss
from kosimcse.modeling.model import SimCSEConfig, SimCSEModel
from kosimcse.modeling.objectives import DEFAULT_PROMPT, encode_batch, pool_at_mask, repeat_words
from kosimcse.training.data import ContrastiveCollator, sts_pair_dataset

SENTENCES = ["한 남자가 기타를 치고 있다.", "여자가 양파를 썰고 있다.", "고양이가 소파 위에서 자고 있다.",
             "오늘 날씨가 정말 좋네요.", "아이들이 공원에서 뛰어 놀고 있다.", "그 영화는 생각보다 재미있었다."]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny"), hidden=32, layers=2, heads=2)


@pytest.fixture(scope="module")
def tok(tiny):
    return AutoTokenizer.from_pretrained(tiny)


def _inputs(seed=0, n=10, dim=8):
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(n, dim, generator=g), torch.randn(n, dim, generator=g)
    scores = torch.tensor([0.0, 1.0, 1.0, 2.5, 3.0, 5.0, 4.0, 0.2, 3.0, 1.0])[:n]  # ties included
    return a, b, scores


def reference_cosent(sims, scores, scale=20.0):
    """log(1 + sum over pairs (i, j) with score_i > score_j of exp(scale * (sim_j - sim_i))), by loops."""
    terms = [scale * (float(sims[j]) - float(sims[i]))
             for i in range(len(sims)) for j in range(len(sims)) if scores[i] > scores[j]]
    m = max(terms + [0.0])
    return m + math.log(math.exp(-m) + sum(math.exp(t - m) for t in terms))


def test_cosent_matches_loop_reference():
    a, b, scores = _inputs()
    sims = torch.nn.functional.cosine_similarity(a, b)
    assert float(CoSENTLoss()(a, b, scores)) == pytest.approx(reference_cosent(sims, scores), rel=1e-5)


@pytest.mark.parametrize("ours,theirs_name", [(CoSENTLoss, "CoSENTLoss"), (AnglELoss, "AnglELoss")])
@pytest.mark.parametrize("dim", [8, 7])  # odd dimensions are padded for AnglE's complex pairing
def test_score_losses_equal_sentence_transformers(ours, theirs_name, dim):
    from sentence_transformers.sentence_transformer import losses

    a, b, scores = _inputs(seed=dim, dim=dim)
    theirs = getattr(losses, theirs_name)(torch.nn.Linear(1, 1), scale=20.0)
    expected = theirs.compute_loss_from_embeddings([a, b], scores)
    torch.testing.assert_close(ours(20.0)(a, b, scores), expected, atol=1e-5, rtol=1e-5)


def test_cosent_is_zero_ish_when_similarities_follow_scores_and_large_when_reversed():
    scores = torch.tensor([0.0, 1.0, 2.0, 3.0])
    angle = torch.tensor([3.0, 2.0, 1.0, 0.0])  # cosine rises with score
    a = torch.stack([torch.ones(4), torch.zeros(4)], 1)
    b = torch.stack([torch.cos(angle), torch.sin(angle)], 1)
    good = CoSENTLoss()(a, b, scores)
    bad = CoSENTLoss()(a, b, scores.flip(0))
    assert float(good) < 0.01 < 5.0 < float(bad)


def test_score_losses_pass_gradients_to_both_sides():
    a, b, scores = _inputs()
    for loss_cls in (CoSENTLoss, AnglELoss):
        x, y = a.clone().requires_grad_(), b.clone().requires_grad_()
        loss_cls()(x, y, scores).backward()
        assert x.grad.abs().sum() > 0 and y.grad.abs().sum() > 0


def test_queue_loss_equals_infonce_with_the_queue_as_extra_negatives():
    g = torch.Generator().manual_seed(3)
    a, p, past = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g), torch.randn(6, 8, generator=g)
    loss = QueueInfoNCELoss(0.05, queue_size=6, dim=8)
    torch.testing.assert_close(loss(a, p), InfoNCELoss(0.05)(a, p))  # empty queue: plain SimCSE
    loss.enqueue(past[:4])
    loss.enqueue(past[4:])
    assert int(loss.filled) == 6
    torch.testing.assert_close(loss.queue, torch.cat([past[4:], past[:4]]))  # newest first
    logits = torch.nn.functional.normalize(a, dim=-1) @ torch.nn.functional.normalize(torch.cat([p, loss.queue]), dim=-1).T
    expected = torch.nn.functional.cross_entropy(logits / 0.05, torch.arange(4))
    torch.testing.assert_close(loss(a, p), expected, atol=1e-5, rtol=1e-5)
    loss.enqueue(torch.randn(8, 8, generator=g))  # more than fits: keeps the newest queue_size rows
    assert loss.queue.shape == (6, 8) and int(loss.filled) == 6


# ---- DDP: the new losses give the single-process gradients on 2 gloo ranks -------------------------
def _loss_worker(rank, world, init_file, out_file):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        a, b, scores = _inputs()
        half = a.size(0) // world
        mine = slice(rank * half, (rank + 1) * half)
        results = {}
        for name, loss_fn in _ddp_losses().items():
            x, y = a[mine].clone().requires_grad_(), b[mine].clone().requires_grad_()
            loss = loss_fn(x, y, scores[mine]) if name != "queue" else loss_fn(x, y)
            loss.backward()
            # DDP averages over ranks; scale_gradient put the factor `world` in, so grad / world is this rank's share.
            results[name] = (loss.detach(), x.grad / world, y.grad / world)
        if rank == 0:
            torch.save(results, out_file)
    finally:
        dist.destroy_process_group()


def _ddp_losses():
    queue = QueueInfoNCELoss(0.05, queue_size=3, dim=8)
    queue.queue.copy_(torch.randn(3, 8, generator=torch.Generator().manual_seed(9)))
    queue.filled.fill_(3)
    return {"cosent": CoSENTLoss(), "angle": AnglELoss(), "queue": queue}


def test_score_and_queue_losses_under_two_ranks_equal_one_process(tmp_path):
    out_file = tmp_path / "rank0.pt"
    # fork: the ranks inherit the imported torch (spawning re-imports it, ~10 s per rank on a busy box).
    mp.start_processes(_loss_worker, args=(2, str(tmp_path / "init"), str(out_file)), nprocs=2, join=True,
                       start_method="fork")
    got = torch.load(out_file, weights_only=True)
    a, b, scores = _inputs()
    for name, loss_fn in _ddp_losses().items():
        x, y = a.clone().requires_grad_(), b.clone().requires_grad_()
        loss = loss_fn(x, y, scores) if name != "queue" else loss_fn(x, y)
        loss.backward()
        half = a.size(0) // 2
        torch.testing.assert_close(got[name][0], loss.detach(), atol=1e-5, rtol=0, msg=name)
        torch.testing.assert_close(got[name][1], x.grad[:half], atol=1e-5, rtol=1e-4, msg=name)
        torch.testing.assert_close(got[name][2], y.grad[:half], atol=1e-5, rtol=1e-4, msg=name)


# ---- ESimCSE ------------------------------------------------------------------------------------------
def test_word_repetition_only_doubles_tokens_in_place():
    ids = list(range(100, 130))
    g = torch.Generator().manual_seed(0)
    lengths = set()
    for _ in range(50):
        out = repeat_words(ids, 0.32, g)
        extra = len(out) - len(ids)
        assert 0 <= extra <= max(2, int(0.32 * len(ids)))
        lengths.add(extra)
        # Dropping consecutive repeats gives the sentence back (ids are distinct here).
        assert [t for i, t in enumerate(out) if i == 0 or out[i - 1] != t] == ids
    assert len(lengths) > 3
    assert repeat_words([], 0.32, g) == [] and repeat_words(ids, 0.0, g) == ids


def test_esimcse_collator_keeps_the_anchor_and_lengthens_the_positive(tok):
    torch.manual_seed(0)
    plain = ContrastiveCollator(tok, max_length=48)([{"text": t} for t in SENTENCES])
    esim = ContrastiveCollator(tok, max_length=48, dup_rate=0.5)([{"text": t} for t in SENTENCES])
    width = plain["input_ids"].size(-1)
    assert torch.equal(esim["input_ids"][:, 0, :width], plain["input_ids"][:, 0])
    anchor_len, positive_len = esim["attention_mask"][:, 0].sum(1), esim["attention_mask"][:, 1].sum(1)
    assert (positive_len >= anchor_len).all() and (positive_len > anchor_len).any()
    assert esim["input_ids"].shape == esim["attention_mask"].shape


def test_esimcse_model_fills_queue_and_moves_the_momentum_encoder(tiny, tok):
    torch.manual_seed(0)
    model = SimCSEModel.from_encoder(tiny, SimCSEConfig(pooler="cls", loss="esimcse", queue_size=8, momentum=0.5))
    batch = ContrastiveCollator(tok, max_length=32, dup_rate=0.32)([{"text": t} for t in SENTENCES[:4]])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    model.train()
    for step in range(3):
        loss = model(**batch)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert int(model.loss_fn.filled) == 8  # 3 batches of 4, capped at 8
    assert all(not p.requires_grad for p in model.momentum_encoder.parameters())
    assert not model.momentum_encoder.encoder.training  # no dropout in the EMA encoder
    online = dict(model.encoder.named_parameters())
    ema = dict(model.momentum_encoder.encoder.named_parameters())
    name = "encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(ema[name], online[name])  # lags behind the online encoder, but follows it
    fresh = SimCSEModel.from_encoder(tiny, SimCSEConfig(pooler="cls"))
    assert not torch.equal(ema[name], dict(fresh.encoder.named_parameters())[name])


# ---- prompt pooling -----------------------------------------------------------------------------------
def test_prompt_template_survives_truncation_and_pools_the_mask_state(tok):
    long = " ".join(SENTENCES * 5)
    enc = encode_batch(tok, [long, SENTENCES[0]], max_length=32, template=DEFAULT_PROMPT)
    assert enc["input_ids"].size(1) <= 32
    assert ((enc["input_ids"] == tok.mask_token_id).sum(1) == 1).all()
    states = torch.randn(2, enc["input_ids"].size(1), 4)
    pooled = pool_at_mask(states, enc["input_ids"], tok.mask_token_id)
    where = (enc["input_ids"] == tok.mask_token_id).nonzero()
    torch.testing.assert_close(pooled, states[where[:, 0], where[:, 1]])
    with pytest.raises(ValueError, match="MASK"):
        pool_at_mask(states, torch.zeros_like(enc["input_ids"]), tok.mask_token_id)


def test_prompt_pooling_model_exports_and_reloads_with_the_same_vectors(tiny, tok, tmp_path):

    torch.manual_seed(0)
    model = SimCSEModel.from_encoder(tiny, SimCSEConfig(pooler="prompt", mask_token_id=tok.mask_token_id))
    assert model.config.prompt_template == DEFAULT_PROMPT and model.head is None
    batch = ContrastiveCollator(tok, max_length=48, template=DEFAULT_PROMPT)([{"text": t} for t in SENTENCES])
    loss = model(**batch)["loss"]
    loss.backward()
    assert model.encoder.embeddings.word_embeddings.weight.grad.abs().sum() > 0
    ours = model.encode(tok, SENTENCES, batch_size=128, max_length=48, prefix="")
    out = model.save_pretrained(tmp_path / "export", tokenizer=tok)
    reloaded = SimCSEModel.from_pretrained(out)
    assert reloaded.config.pooler == "prompt" and reloaded.config.mask_token_id == tok.mask_token_id
    torch.testing.assert_close(torch.from_numpy(reloaded.encode(tok, SENTENCES, batch_size=128, max_length=48, prefix="")),
                               torch.from_numpy(ours), atol=1e-6, rtol=0)
    # Different from mean pooling of the bare sentence: the template really is applied.
    mean = SimCSEModel.from_encoder(tiny, SimCSEConfig(pooler="avg"))
    assert not torch.allclose(torch.from_numpy(mean.encode(tok, SENTENCES, batch_size=128, max_length=64, prefix="")), torch.from_numpy(ours))


# ---- STS pairs through the model -------------------------------------------------------------------------
def test_sts_pairs_train_with_cosent_through_the_model(tiny, tok):
    from kosimcse.data.records import StsPair

    pairs = [StsPair(SENTENCES[i], SENTENCES[(i + 1) % 6], float(i % 5)) for i in range(6)]
    ds = sts_pair_dataset(pairs)
    batch = ContrastiveCollator(tok, max_length=32)([ds[i] for i in range(len(ds))])
    torch.testing.assert_close(batch["scores"], torch.tensor([float(i % 5) for i in range(6)]))
    torch.manual_seed(0)
    model = SimCSEModel.from_encoder(tiny, SimCSEConfig(pooler="avg", loss="cosent"))
    model.eval()
    out = model(**batch)
    vectors = out["embeddings"]
    torch.testing.assert_close(out["loss"], CoSENTLoss()(vectors[:, 0], vectors[:, 1], batch["scores"]))


def test_objective_and_loss_must_fit():
    from kosimcse.training.args import ModelArguments
    from kosimcse.training.run import resolve_loss

    assert resolve_loss(ModelArguments(), "sts") == "cosent"
    assert resolve_loss(ModelArguments(loss="angle"), "sts") == "angle"
    assert resolve_loss(ModelArguments(), "esimcse") == "esimcse"
    assert resolve_loss(ModelArguments(), "sup") == "infonce"
    with pytest.raises(KoSimCSEError, match="does not fit"):
        resolve_loss(ModelArguments(loss="infonce"), "sts")
    with pytest.raises(KoSimCSEError, match="does not fit"):
        resolve_loss(ModelArguments(loss="cosent"), "unsup")


def test_sts_training_refuses_evaluation_files(tmp_path):
    from kosimcse.training.args import DataArguments
    from kosimcse.training.data import read_sts_pairs

    val = tmp_path / "klue_sts_val.csv"
    val.write_text("sentence1,sentence2,label\n가,나,3.0\n", encoding="utf-8")
    with pytest.raises(KoSimCSEError, match="evaluation set"):
        read_sts_pairs(DataArguments(sts_files=[str(val)], data_dir=str(tmp_path)))
    train = tmp_path / "klue_sts_train.csv"
    train.write_text("sentence1,sentence2,label\n가,나,3.0\n", encoding="utf-8")
    assert [p.score for p in read_sts_pairs(DataArguments(sts_files=[str(train)], data_dir=str(tmp_path)))] == [3.0]


def test_sts_training_refuses_the_files_the_evaluator_reads(tmp_path, monkeypatch):
    """A registered eval set is refused by its file, whatever its name; the registry says which file that is."""
    from kosimcse.data import tasks
    from kosimcse.training.args import DataArguments
    from kosimcse.training.data import read_sts_pairs

    monkeypatch.setattr(tasks, "_TASKS", dict(tasks._TASKS))
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("sentence1,sentence2,label\n가,나,3.0\n", encoding="utf-8")
    assert len(read_sts_pairs(DataArguments(sts_files=[str(pairs)], data_dir=str(tmp_path)))) == 1
    tasks.register_sts_task("my-held-out", pairs)
    with pytest.raises(KoSimCSEError, match="evaluation set"):
        read_sts_pairs(DataArguments(sts_files=[str(pairs)], data_dir=str(tmp_path)))


def test_nli_training_reads_each_format_and_only_the_dacon_train_rows(tmp_path):
    from kosimcse.training.args import DataArguments
    from kosimcse.training.data import read_triplets

    def triplets(name, text, encoding="utf-8"):
        (tmp_path / name).write_text(text, encoding=encoding)
        return [(t.anchor, t.positive, t.negative) for t in
                read_triplets(DataArguments(nli_file=str(tmp_path / name), data_dir=str(tmp_path)))]

    # DACON index >= 24,998 is KLUE-NLI dev: its premise has both labels but must not become a triplet.
    dacon = ("index,premise,hypothesis,label\n0,가,나,entailment\n1,가,다,contradiction\n"
             "24998,라,마,entailment\n24999,라,바,contradiction\n")
    assert triplets("nli.csv", dacon, "cp949") == [("가", "나", "다")]
    assert triplets("nli.json", '[{"premise": "가", "hypothesis": "나", "gold_label": "entailment"}, '
                    '{"premise": "가", "hypothesis": "다", "gold_label": "contradiction"}]') == [("가", "나", "다")]
    assert triplets("nli.tsv", "sentence1\tsentence2\tgold_label\n가\t나\tentailment\n"
                    "가\t다\tcontradiction\n") == [("가", "나", "다")]
    with pytest.raises(KoSimCSEError, match="NLI format of .*nli.txt"):
        triplets("nli.txt", "가\t나\tentailment\n")


# ---- SimCSE + MLM auxiliary ---------------------------------------------------------------------------------
def test_mlm_auxiliary_loss_runs_and_decreases(tiny, tok):
    torch.manual_seed(0)
    model = SimCSEModel.from_encoder(tiny, SimCSEConfig(pooler="cls", mlm_weight=1.0))
    assert model.mlm_head is not None
    collator = ContrastiveCollator(tok, max_length=32, mlm_probability=0.3)
    torch.manual_seed(1)
    batch = collator([{"text": t} for t in SENTENCES])
    assert (batch["mlm_labels"] != -100).any()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()

    def mlm_only():
        with torch.no_grad():
            return float(model.mlm_loss(batch["mlm_input_ids"], batch["attention_mask"][:, 0], batch["mlm_labels"]))

    before = mlm_only()
    total_before = None
    for _ in range(15):
        loss = model(**batch)["loss"]
        total_before = total_before if total_before is not None else float(loss.detach())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert mlm_only() < 0.7 * before
    assert float(model(**batch)["loss"].detach()) < total_before


# ---- multitask recipe: stages -------------------------------------------------------------------------------
def test_multitask_recipe_expands_into_stages_chained_by_exports():
    from pathlib import Path

    from kosimcse.training.args import load_recipe, read_recipe
    from kosimcse.training.run import stage_settings

    recipe = Path(__file__).resolve().parents[1] / "recipes" / "multitask.yaml"
    with pytest.raises(KoSimCSEError, match="stages"):
        load_recipe(recipe)  # one plain run cannot hold two stages
    stages = stage_settings(read_recipe(recipe), {"model_name_or_path": "e5-small-airgap", "output_dir": "runs/x",
                                                  "sts.max_steps": 150, "bf16": False})
    (first, s1), (second, s2) = stages
    assert (first, second) == ("nli", "sts")
    assert s1["model_name_or_path"] == "e5-small-airgap" and s1["objective"] == "sup"
    assert s2["model_name_or_path"] == str(Path("runs/x/nli/best")) and s2["objective"] == "sts"
    assert s2["max_steps"] == 150 and "max_steps" not in s1 and s1["bf16"] is False is s2["bf16"]
    margs, dargs, _ = load_recipe(None, s2)
    assert (margs.loss, margs.pooler, dargs.objective) == ("cosent", "avg", "sts")
    with pytest.raises(KoSimCSEError, match="unknown stage"):
        stage_settings(read_recipe(recipe), {"nope.max_steps": 1})


# ---- end to end through the Trainer on a tiny model --------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run_files(tmp_path_factory):
    from test_resume import write_tiny_corpus

    from kosimcse.data.tasks import register_sts_task

    files = write_tiny_corpus(tmp_path_factory.mktemp("tiny-run"))
    register_sts_task("tiny-objectives-dev", files["dev"])
    sts_train = files["dev"].with_name("sts-train.tsv")  # a train-named copy: the STS objective reads train files only
    sts_train.write_text(files["dev"].read_text(encoding="utf-8"), encoding="utf-8")
    files["sts_train"] = sts_train
    return files


@pytest.mark.parametrize("objective,extra", [
    ("esimcse", {"queue_size": 16, "pooler": "cls", "mlp_only_train": True}),
    ("unsup", {"pooler": "prompt"}),
    ("sts", {"loss": "angle", "pooler": "avg"}),
    ("unsup", {"rtd_weight": 0.05, "pooler": "cls", "mlp_only_train": True}),  # DiffCSE
])
def test_each_objective_trains_and_exports_through_the_trainer(tiny_run_files, tmp_path, objective, extra):
    from safetensors.torch import load_file
    from test_resume import tiny_args

    from kosimcse.training.args import load_recipe
    from kosimcse.training.run import train

    values = tiny_args(tiny_run_files, tmp_path / "run", objective=objective, max_steps=4, save_steps=4, eval_steps=4,
                       eval_task="tiny-objectives-dev", report_tasks=["tiny-objectives-dev"], **extra)
    if objective == "sts":
        values["sts_files"] = [str(tiny_run_files["sts_train"])]
        values["per_device_train_batch_size"] = 4
    summary = train(*load_recipe(None, values))
    assert summary["global_step"] == 4 and math.isfinite(summary["train_loss"])
    exported = SimCSEModel.from_pretrained(summary["exported"])
    assert exported.config.pooler == extra["pooler"] and exported.momentum_encoder is None or objective == "esimcse"
    assert not any(k.startswith(("momentum", "loss_fn", "discriminator"))
                   for k in load_file(f"{summary['exported']}/model.safetensors"))
    assert exported.discriminator is None  # a training-only network: inference never builds it
    if extra.get("rtd_weight"):
        state = load_file(f"{tmp_path / 'run'}/checkpoint-4/model.safetensors")
        assert "discriminator.classifier.weight" in state  # checkpointed for resume, its shared token matrix once
    if objective == "esimcse":
        state = load_file(f"{tmp_path / 'run'}/checkpoint-4/model.safetensors")
        assert int(state["loss_fn.filled"]) == 16  # 4 batches of 8, capped: the queue is checkpointed for resume
        assert any(k.startswith("momentum_encoder.") for k in state)


def test_mlm_auxiliary_run_checkpoints_its_tied_decoder_once_and_resumes(tiny_run_files, tmp_path, monkeypatch):
    """The MLM decoder shares the word embeddings; safetensors refuses aliases, so a checkpoint keeps one copy."""
    from safetensors.torch import load_file
    from test_resume import StopAfterSave, run, tiny_args

    values = tiny_args(tiny_run_files, tmp_path / "run", mlm_weight=0.1, max_steps=4, save_steps=2, eval_steps=2,
                       eval_task="tiny-objectives-dev", report_tasks=["tiny-objectives-dev"])
    first = run(values, callbacks=[StopAfterSave(2)], monkeypatch=monkeypatch)
    assert first["global_step"] == 2
    second = run(values, resume=True)
    assert second["global_step"] == 4 and math.isfinite(second["train_loss"])
    saved = load_file(tmp_path / "run" / "checkpoint-4" / "model.safetensors")
    assert "encoder.embeddings.word_embeddings.weight" in saved and any(k.startswith("mlm_head.") for k in saved)
    fresh = SimCSEModel.from_encoder(tiny_run_files["model"], SimCSEConfig(pooler="cls", mlm_weight=0.1))
    aliases = fresh._keys_to_ignore_on_save
    assert "mlm_head.predictions.decoder.weight" in aliases and not set(aliases) & saved.keys()
    missing, unexpected = fresh.load_state_dict(saved, strict=False)
    assert sorted(missing) == sorted(aliases) and not unexpected
    # Loading filled the shared tensor, so the tied decoder holds the trained embeddings, not the fresh ones.
    torch.testing.assert_close(fresh.mlm_head.predictions.decoder.weight, saved["encoder.embeddings.word_embeddings.weight"])


# ---- DiffCSE: conditional replaced-token detection ---------------------------------------------------------
def test_replace_tokens_corrupts_only_inner_tokens_with_tokens_of_the_batch(tok):
    from kosimcse.modeling.objectives import inner_tokens, replace_tokens

    enc = tok(SENTENCES * 4, padding=True, return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    corrupted, replaced = replace_tokens(ids, mask, 0.3, torch.Generator().manual_seed(0))
    inner = inner_tokens(mask)
    lengths = mask.sum(1)
    assert not inner[:, 0].any() and not inner[torch.arange(len(ids)), lengths - 1].any()
    assert torch.equal(corrupted[~inner], ids[~inner])  # [CLS], [SEP] and padding are never touched
    assert torch.equal(replaced, inner & (corrupted != ids))
    assert set(corrupted[replaced].tolist()) <= set(ids[inner].tolist())
    share = replaced.sum() / inner.sum()
    assert 0.15 < float(share) < 0.35  # 30% drawn, minus draws that hit the original token
    again, _ = replace_tokens(ids, mask, 0.3, torch.Generator().manual_seed(0))
    assert torch.equal(again, corrupted)


def test_diffcse_detection_loss_reaches_the_sentence_encoder(tiny, tok):
    """The replaced-token loss flows into the encoder only through the sentence vector: with it on, the encoder's
    gradients change; the discriminator shares the token matrix and is never exported."""
    enc = tok(SENTENCES, padding=True, return_tensors="pt")
    batch = {k: torch.stack([v, v], 1) for k, v in enc.items()}

    def grads(rtd_weight):
        torch.manual_seed(0)
        model = SimCSEModel.from_encoder(tiny, SimCSEConfig(pooler="avg", rtd_weight=rtd_weight),
                                         hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0).train()
        torch.manual_seed(1)
        model(**batch)["loss"].backward()
        return model, {n: p.grad.clone() for n, p in model.encoder.named_parameters() if p.grad is not None}

    with_rtd, g_rtd = grads(1.0)
    _, g_plain = grads(0.0)
    assert with_rtd.discriminator.encoder.get_input_embeddings() is with_rtd.encoder.get_input_embeddings()
    last_layer = [n for n in g_plain if "encoder.layer.1." in n and n.endswith("weight")]
    assert last_layer and any(not torch.allclose(g_rtd[n], g_plain[n]) for n in last_layer)
    assert with_rtd.discriminator.classifier.weight.grad is not None


def test_diffcse_discriminator_learns_to_detect_replacements(tiny, tok):
    from kosimcse.modeling.objectives import ConditionalDiscriminator, replace_tokens

    torch.manual_seed(0)
    encoder = AutoModel.from_pretrained(tiny)
    disc = ConditionalDiscriminator(encoder)
    enc = tok(SENTENCES * 2, padding=True, return_tensors="pt")
    vectors = torch.zeros(len(SENTENCES) * 2, encoder.config.hidden_size)
    optimizer = torch.optim.AdamW(disc.parameters(), lr=3e-3)
    # One fixed corruption: a working detector (embeddings -> transformer -> per-token logit) can fit it.
    corrupted, replaced = replace_tokens(enc["input_ids"], enc["attention_mask"], 0.3, torch.Generator().manual_seed(0))
    assert replaced.any()
    losses = []
    for _ in range(40):
        loss = disc(corrupted, enc["attention_mask"], vectors, replaced)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]


def test_auxiliary_losses_refuse_gradcache(tiny_run_files, tmp_path):
    from test_resume import tiny_args

    from kosimcse.training.args import load_recipe
    from kosimcse.training.run import train

    for extra in ({"rtd_weight": 0.005}, {"mlm_weight": 0.1}):
        values = tiny_args(tiny_run_files, tmp_path / "run", grad_cache_chunk_size=4, eval_task="tiny-objectives-dev",
                           report_tasks=["tiny-objectives-dev"], **extra)
        with pytest.raises(KoSimCSEError, match="GradCache"):
            train(*load_recipe(None, values))


def test_rtd_mask_ratio_out_of_range_is_refused():
    from kosimcse.training.args import ModelArguments

    with pytest.raises(ValueError, match="rtd_mask_ratio"):
        ModelArguments(rtd_weight=0.005, rtd_mask_ratio=1.5)


def test_cosent_under_gradcache_equals_one_plain_pass(tiny, tok):
    from kosimcse.training.gradcache import grad_cache_backward

    enc = tok(SENTENCES, padding=True, return_tensors="pt")
    flat = {k: torch.stack([v, v.roll(1, 0)], 1).reshape(2 * len(SENTENCES), -1) for k, v in enc.items()}
    scores = torch.tensor([0.0, 4.0, 2.0, 5.0, 1.0, 3.0])

    def model_without_dropout():
        torch.manual_seed(0)
        model = SimCSEModel.from_encoder(tiny, SimCSEConfig(pooler="avg", loss="cosent"),
                                         hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
        return model.train()

    def loss_on(model):
        return lambda reps: model.loss_fn(*reps.view(len(SENTENCES), 2, -1).unbind(1), scores)

    cached = model_without_dropout()
    grad_cache_backward(lambda c: cached(**c, embed_only=True), loss_on(cached), flat, 4)
    plain = model_without_dropout()
    loss_on(plain)(plain(**flat, embed_only=True)).backward()
    for (name, a), (_, b) in zip(cached.named_parameters(), plain.named_parameters()):
        if b.grad is not None:
            torch.testing.assert_close(a.grad, b.grad, atol=1e-5, rtol=1e-4, msg=name)
