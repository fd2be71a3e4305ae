"""Domain adaptation, training side: document-aware positives (ICT / crops mixed with dropout positives, held-out
documents never used) and the distillation towards the starting model (zero at the start, pulls a drifted model back,
the same gradients under GradCache and under DDP as in one plain step)."""

import datetime
import json

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from helpers import make_tiny_model_dir
from kosimcse.data.documents import Document, write_documents
from kosimcse.errors import KoSimCSEError
from kosimcse.modeling.model import SimCSEConfig, SimCSEModel
from kosimcse.training.documents import DocumentPairs

SENTENCES = ["한 남자가 기타를 치고 있다.", "여자가 양파를 썰고 있다.", "고양이가 소파 위에서 자고 있다.",
             "오늘 날씨가 정말 좋네요.", "아이들이 공원에서 뛰어 놀고 있다.", "그 영화는 생각보다 재미있었다.",
             "비행기가 이륙하고 있다.", "한 여자가 피아노를 연주한다."]


def docs(n=12, length=6, title=False):
    return [Document(f"d{i}", f"제목 {i}" if title else None, [f"문서 {i}의 문장 {j}." for j in range(length)])
            for i in range(n)]


def test_ict_positive_is_the_rest_of_the_anchors_document():
    pairs = DocumentPairs(docs(title=True), ict_ratio=1.0)
    assert len(pairs) == 12 * 7  # every sentence and every title is an anchor once
    for i in range(len(pairs)):
        ex = pairs[i]
        doc = next(d for d in docs(title=True) if ex["anchor"] in (d.title, *d.sentences))
        if ex["anchor"] == doc.title:
            assert ex["positive"] == " ".join(doc.sentences)
        else:
            assert ex["positive"] == " ".join(s for s in doc.sentences if s != ex["anchor"])


def test_ict_positive_of_a_long_document_is_the_anchors_neighbourhood_not_its_opening():
    long = Document("long", None, [f"문장 {j:02d} " + "가" * 60 + "." for j in range(40)])
    pairs = DocumentPairs([long], ict_ratio=1.0, passage_max_length=32)  # 256 characters: about 3 sentences
    positive = pairs[20]["positive"]
    assert "문장 19" in positive and "문장 21" in positive and "문장 20" not in positive
    assert "문장 00" not in positive and len(positive) <= 256
    title = DocumentPairs([Document("t", "제목", long.sentences)], ict_ratio=1.0, passage_max_length=32)[0]
    assert title["anchor"] == "제목" and title["positive"].startswith("문장 00")  # a title's context: the opening


def test_crop_is_a_contiguous_span_of_the_other_sentences():
    pairs = DocumentPairs(docs(n=4, length=20), ict_ratio=1.0, positive="crop")
    sizes = set()
    for i in range(len(pairs)):
        ex = pairs[i]
        doc = next(d for d in docs(n=4, length=20) if ex["anchor"] in d.sentences)
        others = [s for s in doc.sentences if s != ex["anchor"]]
        span = ex["positive"].split(" 문서 ")
        sizes.add(len(span))
        assert ex["anchor"] not in ex["positive"] and ex["positive"] in " ".join(others)
    assert min(sizes) >= 1 and max(sizes) <= 9 and len(sizes) > 3  # 10-50% of 19 sentences, varied


def test_ict_ratio_mixes_in_dropout_positives_reproducibly():
    never, always = DocumentPairs(docs(), ict_ratio=0.0), DocumentPairs(docs(), ict_ratio=1.0)
    assert all(never[i]["positive"] == never[i]["anchor"] for i in range(len(never)))
    assert all(always[i]["positive"] != always[i]["anchor"] for i in range(len(always)))
    half = DocumentPairs(docs(n=50), ict_ratio=0.5, seed=1)
    dropout = sum(half[i]["positive"] == half[i]["anchor"] for i in range(len(half)))
    assert 0.4 * len(half) < dropout < 0.6 * len(half)
    again, other = DocumentPairs(docs(n=50), ict_ratio=0.5, seed=1), DocumentPairs(docs(n=50), ict_ratio=0.5, seed=2)
    assert [again[i] for i in range(len(again))] == [half[i] for i in range(len(half))]
    assert [other[i] for i in range(len(other))] != [half[i] for i in range(len(half))]


def test_title_share_repeats_titles_to_their_share_each_repeat_drawing_ict_or_dropout_anew(tmp_path):
    plain = DocumentPairs(docs(title=True), ict_ratio=0.5, seed=5)
    weighed = DocumentPairs(docs(title=True), ict_ratio=0.5, seed=5, title_share=0.5)
    titles = [weighed[i] for i in range(len(weighed)) if weighed[i]["anchor"].startswith("제목")]
    assert sum(plain[i]["anchor"].startswith("제목") for i in range(len(plain))) == 12  # 12 of 84: once each
    assert len(weighed) == 12 * 6 * 2 and len(titles) == 72  # 6 sentences a document: each title 6 times, half
    assert {t["anchor"]: sum(u["anchor"] == t["anchor"] for u in titles) for t in titles} == {
        f"제목 {i}": 6 for i in range(12)}
    assert {t["positive"] == t["anchor"] for t in titles} == {True, False}  # repeats draw ICT and dropout apart
    sentences = [weighed[i] for i in range(len(weighed)) if not weighed[i]["anchor"].startswith("제목")]
    assert sorted(e["anchor"] for e in sentences) == sorted(s for d in docs() for s in d.sentences)
    with pytest.warns(UserWarning, match="title_share 0.25 ignored: no document has a title"):
        untitled = DocumentPairs(docs(), ict_ratio=0.5, seed=5, title_share=0.25)  # the recipe on reviews, chat
    unweighed = DocumentPairs(docs(), ict_ratio=0.5, seed=5)
    assert [untitled[i] for i in range(len(untitled))] == [unweighed[i] for i in range(len(unweighed))]
    with pytest.raises(KoSimCSEError, match=r"title_share must be in \(0, 1\)"):
        DocumentPairs(docs(title=True), title_share=1.0)
    with pytest.warns(UserWarning, match=r"title_share 0.05 not reached: titles are 0.14 of the anchors"):
        DocumentPairs(docs(title=True), title_share=0.05)  # one title to six sentences already
    assert len(DocumentPairs([], title_share=0.25)) == 0  # no documents: document_dataset says so, not this
    from kosimcse.training.documents import document_dataset

    write_documents(tmp_path / "documents.jsonl", docs())
    _, dargs, _ = _args(tmp_path, documents_file=str(tmp_path / "documents.jsonl"), title_share=0.25)
    with pytest.warns(UserWarning, match=r"documents\.jsonl: title_share 0.25 ignored"):
        assert len(document_dataset(dargs)) == sum(len(d.sentences) for d in docs())


def test_single_sentence_documents_get_dropout_positives_and_limit_subsamples():
    single = DocumentPairs([Document(str(i), None, [s]) for i, s in enumerate(SENTENCES)], ict_ratio=1.0)
    assert [single[i]["positive"] for i in range(len(single))] == SENTENCES
    limited = DocumentPairs(docs(), ict_ratio=1.0, limit=10, seed=3)
    assert len(limited) == 10 and len({limited[i]["anchor"] for i in range(10)}) == 10


def _args(tmp_path, **values):
    from kosimcse.training.args import load_recipe

    return load_recipe(None, dict(model_name_or_path="unused", output_dir=str(tmp_path / "run"), report_to=[],
                                  **values))


def test_heldout_documents_never_become_training_pairs(tmp_path):
    """Even when the documents file (wrongly) holds a held-out document, its text reaches no anchor or positive."""
    from kosimcse.training.run import build_train_dataset

    corpus = docs(title=True)
    held = [corpus[3], Document("h1", "숨긴 제목", ["숨긴 문장 하나.", "숨긴 문장 둘."])]
    write_documents(tmp_path / "documents.jsonl", corpus + held[1:])  # h1 leaked into the training file
    write_documents(tmp_path / "heldout.jsonl", held)
    _, dargs, targs = _args(tmp_path, documents_file=str(tmp_path / "documents.jsonl"), ict_ratio=0.7)
    data = build_train_dataset(dargs, targs)
    hidden = {t for d in held for t in (d.title, *d.sentences)}
    texts = [text for i in range(len(data)) for text in data[i].values()]
    assert len(data) == 11 * 7 and texts
    assert not [t for t in texts if any(h in t for h in hidden)]


def test_general_sentences_mix_into_the_document_pairs_held_out_ones_left_out(tmp_path):
    """train_file beside documents_file: sentence_share of the examples are its sentences as dropout pairs, the rest
    document pairs; a train_file sentence of a held-out document (spaced differently) is left out, and counted."""
    from kosimcse.training.run import build_train_dataset

    corpus = docs(title=True)
    write_documents(tmp_path / "documents.jsonl", corpus[:10])
    write_documents(tmp_path / "heldout.jsonl", corpus[10:])
    leaked = corpus[10].sentences[2]
    wiki = tmp_path / "wiki.txt"
    wiki.write_text("\n".join([*SENTENCES, " " + leaked.replace(" ", "  "), ""]) + "\n", encoding="utf-8")
    values = dict(documents_file=str(tmp_path / "documents.jsonl"), train_file=str(wiki), ict_ratio=1.0)
    with pytest.warns(UserWarning, match="1 sentences of held-out documents left out"):
        data = build_train_dataset(*_args(tmp_path, **values, sentence_share=0.25, max_train_sentences=20)[1:])
    rows = [data[i] for i in range(len(data))]
    general = [r for r in rows if r["anchor"] in SENTENCES]
    assert len(rows) == 20 and len(general) == 5 and all(r["positive"] == r["anchor"] for r in general)
    assert all(r["anchor"].startswith(("문서", "제목")) for r in rows if r not in general)

    # no limit: every document pair (70) and the share in proportion, here more than the file has: all its kept
    # sentences, and the share missed is said
    with pytest.warns(UserWarning) as caught:
        data = build_train_dataset(*_args(tmp_path, **values, sentence_share=0.5)[1:])
    assert any("sentence_share 0.5 not reached: 8 sentences" in str(w.message) for w in caught)
    assert len(data.datasets[0]) == 10 * 7
    assert sorted(data.datasets[1][i]["anchor"] for i in range(len(data.datasets[1]))) == sorted(SENTENCES)

    wiki.write_text(leaked + "\n", encoding="utf-8")
    with pytest.warns(UserWarning), pytest.raises(KoSimCSEError, match="no sentence left to mix in"):
        build_train_dataset(*_args(tmp_path, **values)[1:])


def test_the_documents_scored_during_training_never_train(tmp_path):
    """eval_domain may name a pool other than the heldout.jsonl beside documents_file: its documents stay out too."""
    from kosimcse.training.run import build_train_dataset

    corpus = docs(title=True)
    write_documents(tmp_path / "documents.jsonl", corpus)
    write_documents(tmp_path / "other-pool.jsonl", corpus[:2])
    _, dargs, targs = _args(tmp_path, documents_file=str(tmp_path / "documents.jsonl"), ict_ratio=0.7,
                            eval_domain=str(tmp_path / "other-pool.jsonl"))
    data = build_train_dataset(dargs, targs)
    titles, sentences = {d.title for d in corpus[:2]}, {s for d in corpus[:2] for s in d.sentences}
    texts = [text for i in range(len(data)) for text in data[i].values()]
    assert texts and not [t for t in texts if t in titles or any(h in t for h in sentences)]


def test_document_options_are_checked(tmp_path):
    from kosimcse.training.run import validate_settings

    with pytest.raises(KoSimCSEError, match="distils through the training-only MLP head"):
        validate_settings(*_args(tmp_path, documents_file="d.jsonl", distill_weight=1.0, pooler="cls",
                                 mlp_only_train=True))
    with pytest.raises(KoSimCSEError, match="selection_metric domain selects by the domain score"):
        validate_settings(*_args(tmp_path, documents_file="d.jsonl", selection_metric="domain", eval_on_start=True))

    with pytest.raises(KoSimCSEError, match="ict_ratio take effect only with documents_file"):
        validate_settings(*_args(tmp_path, ict_ratio=0.3))
    with pytest.raises(KoSimCSEError, match="title_share take effect only with documents_file"):
        validate_settings(*_args(tmp_path, title_share=0.2))
    with pytest.raises(KoSimCSEError, match="sentence_share 0.3 mixes train_file sentences"):
        validate_settings(*_args(tmp_path, documents_file="d.jsonl", sentence_share=0.3))
    with pytest.raises(KoSimCSEError, match="sentence_share must be between 0 and 1"):
        validate_settings(*_args(tmp_path, documents_file="d.jsonl", train_file="s.txt", sentence_share=1.0))
    with pytest.raises(KoSimCSEError, match="documents_file trains objective unsup"):
        validate_settings(*_args(tmp_path, documents_file="d.jsonl", objective="sup"))
    with pytest.raises(KoSimCSEError, match="ict_ratio must be in"):
        DocumentPairs(docs(), ict_ratio=1.5)
    with pytest.raises(KoSimCSEError, match="ict_ratio must be between 0 and 1, not 1.5"):
        validate_settings(*_args(tmp_path, documents_file="d.jsonl", ict_ratio=1.5))
    with pytest.raises(KoSimCSEError, match=r"title_share must be between 0 and 1 \(exclusive\), not 25"):
        validate_settings(*_args(tmp_path, documents_file="d.jsonl", title_share=25))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny"), hidden=32, layers=2, heads=2)


def test_collator_truncates_positives_at_the_passage_length(tiny):
    from transformers import AutoTokenizer

    from kosimcse.training.data import ContrastiveCollator

    long = " ".join(SENTENCES * 4)
    collate = ContrastiveCollator(AutoTokenizer.from_pretrained(tiny), max_length=12, passage_max_length=40)
    batch = collate([{"anchor": SENTENCES[0], "positive": long}, {"anchor": SENTENCES[0], "positive": SENTENCES[0]},
                     {"anchor": long, "positive": long}])
    lengths = batch["attention_mask"].sum(-1)
    assert batch["input_ids"].shape == (3, 2, 40)
    assert lengths[0, 0] < 12 and lengths[0, 1] == 40 and lengths[1, 0] == lengths[1, 1] < 12
    # a dropout pair longer than max_length is still one input twice, not a sentence against a longer cut of itself
    assert lengths[2].tolist() == [12, 12]
    assert torch.equal(batch["input_ids"][2, 0], batch["input_ids"][2, 1])
    assert torch.equal(batch["attention_mask"][2, 0], batch["attention_mask"][2, 1])


def test_anchors_and_teacher_run_at_their_own_length_beside_long_passages(tiny):
    """Views padded to the passage length are trimmed per view: the same vectors and loss, shorter encoder calls."""
    from transformers import AutoTokenizer

    from kosimcse.training.data import ContrastiveCollator

    collate = ContrastiveCollator(AutoTokenizer.from_pretrained(tiny), max_length=12, passage_max_length=40)
    batch = collate([{"anchor": s, "positive": " ".join(SENTENCES * 3)} for s in SENTENCES[:4]])
    anchor_len = int(batch["attention_mask"][:, 0].sum(-1).max())
    assert batch["input_ids"].shape[-1] == 40 and anchor_len < 20
    model = build(tiny).train()
    seen = {"student": [], "teacher": []}
    model.encoder.register_forward_pre_hook(lambda m, a, kw: seen["student"].append(kw["input_ids"].shape[1]),
                                            with_kwargs=True)
    model.teacher.encoder.register_forward_pre_hook(
        lambda m, a, kw: seen["teacher"].append(kw["input_ids"].shape[1]), with_kwargs=True)
    out = model(**batch)
    assert sorted(seen["student"]) == [anchor_len, 40] and seen["teacher"] == [anchor_len]
    flat = model.embed(batch["input_ids"].reshape(8, 40), batch["attention_mask"].reshape(8, 40)).view(4, 2, -1)
    torch.testing.assert_close(out["embeddings"], flat, atol=1e-5, rtol=1e-4)  # padding changed nothing
    same = collate([{"text": s} for s in SENTENCES[:4]])  # a sentence twice (unsup): one call, as SimCSE
    seen["student"].clear()
    model(**same)
    assert len(seen["student"]) == 1


def build(path, distill=1.0, pooler="avg"):
    torch.manual_seed(0)
    return SimCSEModel.from_encoder(path, SimCSEConfig(pooler=pooler, distill_weight=distill),
                                    hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def batch_of(path, n=len(SENTENCES)):
    from transformers import AutoTokenizer

    enc = AutoTokenizer.from_pretrained(path)(SENTENCES[:n], padding="max_length", max_length=24, return_tensors="pt")
    return {k: torch.stack([v, v.roll(1, 0)], 1) for k, v in enc.items()}  # (sentence, another one) pairs


@pytest.mark.parametrize("pooler", ["avg", "cls"])
def test_distillation_is_zero_at_the_start_and_pulls_a_drifted_model_back(tiny, pooler):
    model = build(tiny, pooler=pooler).train()
    batch = batch_of(tiny)
    anchors = [batch[k][:, 0] for k in ("input_ids", "attention_mask")]

    def distill():
        return model.distill_loss(model.embed(*anchors), model.teacher_vectors(*anchors))

    assert distill().item() == pytest.approx(0.0, abs=1e-6)
    assert not any(p.requires_grad for p in model.teacher.parameters())
    with torch.no_grad():  # drift: noise on every trained weight (encoder and head)
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.2)
    drifted = distill().item()
    assert drifted > 1e-3
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
    for _ in range(30):
        optimizer.zero_grad()
        distill().backward()
        optimizer.step()
    assert distill().item() < 0.5 * drifted
    assert model.teacher.encoder.state_dict().keys() and all(  # the teacher did not move
        torch.equal(a, b) for a, b in zip(model.teacher.encoder.state_dict().values(),
                                          build(tiny, pooler=pooler).encoder.state_dict().values()))


def test_distillation_adds_to_the_forward_loss_only_when_weighted(tiny):
    batch = batch_of(tiny)
    plain, weighted = build(tiny, distill=0.0).train(), build(tiny, distill=2.0).train()
    assert plain.teacher is None
    with torch.no_grad():
        for model in (plain, weighted):
            model.encoder.encoder.layer[0].output.dense.weight.mul_(1.5)  # same drift in both
    anchors = [batch[k][:, 0] for k in ("input_ids", "attention_mask")]
    term = weighted.distill_loss(weighted.embed(*anchors), weighted.teacher_vectors(*anchors))
    assert term.item() > 0
    torch.testing.assert_close(weighted(**batch)["loss"], plain(**batch)["loss"] + term)


def _train_one_step(path, out_dir, chunk, batch_size=len(SENTENCES)):
    from kosimcse.training.args import SimCSETrainingArguments
    from kosimcse.training.trainer import SimCSETrainer

    model = build(path, distill=3.0)
    with torch.no_grad():  # the distillation only has a gradient once the student differs from the start
        model.encoder.encoder.layer[0].output.dense.weight.mul_(1.5)
    args = SimCSETrainingArguments(
        output_dir=str(out_dir), per_device_train_batch_size=batch_size, grad_cache_chunk_size=chunk, max_steps=1,
        optim="sgd", learning_rate=0.5, lr_scheduler_type="constant", max_grad_norm=0.0, weight_decay=0.0,
        train_sampling_strategy="sequential", use_cpu=True, precision="fp32", eval_strategy="no", save_strategy="no",
        load_best_model_at_end=False, report_to=[], disable_tqdm=True, seed=0)
    batch = batch_of(path)
    rows = [{k: v[i] for k, v in batch.items()} for i in range(len(SENTENCES))]
    stack = lambda feats: {k: torch.stack([f[k] for f in feats]) for k in feats[0]}  # noqa: E731
    SimCSETrainer(model=model, args=args, train_dataset=rows, data_collator=stack).train()
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def test_gradcache_step_with_distillation_equals_the_plain_step(tiny, tmp_path):
    start = {n: p for n, p in build(tiny, distill=3.0).named_parameters() if p.requires_grad}
    plain, cached = _train_one_step(tiny, tmp_path / "plain", 0), _train_one_step(tiny, tmp_path / "gc", 4)
    assert any(not torch.equal(plain[n], start[n]) for n in plain if "layer.0" in n)
    for name in plain:
        torch.testing.assert_close(cached[name], plain[name], atol=1e-6, rtol=1e-5, msg=name)


def _ddp_worker(rank, world, path, init_file, out_file):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=120))
    try:
        model = build(path, distill=2.0)
        with torch.no_grad():
            model.encoder.encoder.layer[0].output.dense.weight.mul_(1.5)
        ddp = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
        half = len(SENTENCES) // world
        local = {k: v[rank * half:(rank + 1) * half] for k, v in batch_of(path).items()}
        ddp(**local)["loss"].backward()
        if rank == 0:
            torch.save({n: p.grad for n, p in model.named_parameters() if p.grad is not None}, out_file)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_process_ddp_with_distillation_equals_one_process(tiny, tmp_path):
    mp.spawn(_ddp_worker, args=(2, str(tiny), str(tmp_path / "init"), str(tmp_path / "rank0.pt")), nprocs=2,
             join=True)
    ranks = torch.load(tmp_path / "rank0.pt", weights_only=True)
    model = build(tiny, distill=2.0)
    with torch.no_grad():
        model.encoder.encoder.layer[0].output.dense.weight.mul_(1.5)
    model(**batch_of(tiny))["loss"].backward()
    single = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert ranks.keys() == single.keys()
    for name in single:
        torch.testing.assert_close(ranks[name], single[name], atol=1e-6, rtol=1e-4, msg=name)


@pytest.mark.slow
def test_training_on_documents_with_distillation_and_gradcache(tiny, tmp_path):
    from kosimcse.training.args import load_recipe
    from kosimcse.training.run import train

    write_documents(tmp_path / "documents.jsonl", [Document(str(i), None, SENTENCES[i:] + SENTENCES[:i])
                                                   for i in range(len(SENTENCES))])
    summary = train(*load_recipe(None, dict(
        model_name_or_path=str(tiny), documents_file=str(tmp_path / "documents.jsonl"), ict_ratio=0.5,
        passage_max_length=48, distill_weight=1.0, grad_cache_chunk_size=8, pooler="avg", output_dir=str(tmp_path / "r"),
        per_device_train_batch_size=8, max_steps=3, eval_steps=3, save_steps=3, report_to=[], disable_tqdm=True,
        report_tasks=["korsts-dev"], max_grad_norm=0.0, precision="fp32")))
    assert summary["global_step"] == 3 and summary["train_sentences"] == 64
    saved = json.loads((tmp_path / "r" / "best" / "kosimcse_config.json").read_text())
    assert saved["distill_weight"] == 1.0 and not (tmp_path / "r" / "best" / "teacher").exists()
    # the teacher is rebuilt from the start on resume: checkpoints do not carry a second copy of the encoder
    from safetensors import safe_open

    with safe_open(str(tmp_path / "r" / "checkpoint-3" / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert any(k.startswith("encoder.") for k in keys) and not [k for k in keys if k.startswith("teacher.")]
    resumed = train(*load_recipe(None, dict(
        model_name_or_path=str(tiny), documents_file=str(tmp_path / "documents.jsonl"), ict_ratio=0.5,
        passage_max_length=48, distill_weight=1.0, grad_cache_chunk_size=8, pooler="avg", output_dir=str(tmp_path / "r"),
        per_device_train_batch_size=8, max_steps=4, eval_steps=4, save_steps=4, report_to=[], disable_tqdm=True,
        report_tasks=["korsts-dev"], max_grad_norm=0.0, precision="fp32")), resume_from_checkpoint=True)
    assert resumed["global_step"] == 4


def test_merge_with_start_moves_each_weight_once_and_keeps_what_the_start_lacks():
    from kosimcse.modeling.distill import merge_with_start

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
    model[1].weight = model[0].weight  # tied: one tensor under two names
    trained = {k: v.clone() for k, v in model.state_dict().items()}
    start = {k: torch.randn_like(v) for k, v in trained.items() if not k.startswith("2.")}  # no head at the start
    start["1.weight"] = start["0.weight"]
    merge_with_start(model, start, 0.25)
    for name, value in model.state_dict().items():
        expected = trained[name] if name.startswith("2.") else 0.75 * trained[name] + 0.25 * start[name]
        torch.testing.assert_close(value, expected)
    merge_with_start(model, start, 1.0)
    torch.testing.assert_close(model[0].weight, start["0.weight"])
    with pytest.raises(ValueError, match="start_weight"):
        merge_with_start(model, start, 1.5)
