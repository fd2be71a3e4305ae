"""Documents for the domain score: readers per source kind, the held-out hash, the JSON-lines round trip; and the
retrieval score over a held-out pool."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kosimcse.data.documents import Document, is_heldout, load_documents, read_documents, write_documents
from kosimcse.errors import DataError, KoSimCSEError
from kosimcse.evaluation.domain import domain_scores, retrieval_pairs

WIKI = """<doc id="5" url="https://ko.wikipedia.org/wiki?curid=5" title="지미 카터">
지미 카터

제임스 얼 카터 주니어는 미국의 제39대 대통령이다. 그는 조지아주에서 태어났다.
대통령 임기 후에는 인권 활동을 했다.
</doc>
<doc id="9" url="https://ko.wikipedia.org/wiki?curid=9" title="수학 &amp; 과학">
수학 &amp; 과학

수학은 수와 양을 연구하는 학문이다.
</doc>
"""


def test_kowiki_articles_keep_id_title_and_split_sentences(tmp_path):
    (tmp_path / "AA").mkdir()
    (tmp_path / "AA" / "wiki_00").write_text(WIKI, encoding="utf-8")
    docs = list(read_documents(f"kowiki:{tmp_path}"))
    assert [(d.id, d.title) for d in docs] == [("5", "지미 카터"), ("9", "수학 & 과학")]
    assert docs[0].sentences == ["제임스 얼 카터 주니어는 미국의 제39대 대통령이다.", "그는 조지아주에서 태어났다.",
                                 "대통령 임기 후에는 인권 활동을 했다."]
    assert docs[1].sentences == ["수학은 수와 양을 연구하는 학문이다."]


def test_petitions_nsmc_and_jsonl_documents(tmp_path):
    pet = tmp_path / "petitions_2019-04"
    pet.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in [
        {"petition_idx": "510", "title": "학교 급식 개선", "content": "급식이 부실합니다. 개선해 주세요."},
        {"title": "내용 없음", "content": "   "},
    ]) + "\n", encoding="utf-8")
    docs = list(read_documents(f"petitions:{pet}"))
    assert [(d.id, d.title, d.sentences) for d in docs] == [("510", "학교 급식 개선", ["급식이 부실합니다.", "개선해 주세요."])]

    nsmc = tmp_path / "nsmc"
    nsmc.mkdir()
    (nsmc / "10001.json").write_text(json.dumps([{"review": "재밌다. 또 볼래요"}, {"review": "별로"}],
                                                ensure_ascii=False), encoding="utf-8")
    assert [(d.id, d.sentences) for d in read_documents(f"nsmc:{nsmc}")] == [("10001:1", ["재밌다. 또 볼래요"]),
                                                                             ("10001:2", ["별로"])]

    rows = tmp_path / "texts.jsonl"
    rows.write_text("".join(json.dumps({"doc": d, "text": t}, ensure_ascii=False) + "\n" for d, t in
                            [("a", "첫 문장이다."), ("a", "둘째 문장이다."), ("b", "다른 문서다.")]), encoding="utf-8")
    assert [(d.id, d.sentences) for d in read_documents(str(rows), id_column="doc")] == [
        ("a", ["첫 문장이다.", "둘째 문장이다."]), ("b", ["다른 문서다."])]
    with pytest.raises(DataError, match="texts.jsonl:1"):
        list(read_documents(str(rows), id_column="missing"))


def test_is_heldout_is_reproducible_and_sized():
    ids = [str(i) for i in range(20_000)]
    picked = [i for i in ids if is_heldout(i, 0.1)]
    assert picked == [i for i in ids if is_heldout(i, 0.1, seed=0)]
    assert 1_800 < len(picked) < 2_200
    assert set(picked) != {i for i in ids if is_heldout(i, 0.1, seed=1)}
    assert {i for i in ids if is_heldout(i, 0.05)} <= set(picked)  # a smaller fraction is a subset
    assert not any(is_heldout(i, 0.0) for i in ids) and all(is_heldout(i, 1.0) for i in ids)
    with pytest.raises(KoSimCSEError, match="fraction"):
        is_heldout("x", 1.5)


def test_documents_round_trip_and_bad_line(tmp_path):
    docs = [Document("1", "제목", ["가.", "나."]), Document("2", None, ["다."], source="kowiki")]
    path = tmp_path / "d.jsonl"
    assert write_documents(path, docs) == 2
    assert load_documents(path) == docs
    path.write_text(path.read_text(encoding="utf-8") + '{"id": 3}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"d.jsonl:3"):
        load_documents(path)


def test_retrieval_pairs_title_or_ict_and_skips():
    docs = [Document("1", "제목", ["본문 하나.", "본문 둘."]), Document("2", None, ["a.", "b.", "c."]),
            Document("3", None, ["혼자."])]
    queries, passages = retrieval_pairs(docs, seed=3)
    assert queries[0] == "제목" and passages[0] == "본문 하나. 본문 둘."
    assert queries[1] in ("a.", "b.", "c.") and queries[1] not in passages[1].split()
    assert sorted(passages[1].split() + [queries[1]]) == ["a.", "b.", "c."]
    assert len(queries) == 2 and retrieval_pairs(docs, seed=3) == (queries, passages)
    # queries="ict": the titled document gives a sentence of its own as the query, like an untitled one
    ict_queries, ict_passages = retrieval_pairs(docs, seed=3, kind="ict")
    assert ict_queries[0] in ("본문 하나.", "본문 둘.") and ict_queries[0] not in ict_passages[0]
    assert sorted([ict_queries[0], ict_passages[0]]) == ["본문 둘.", "본문 하나."]


def test_domain_scores_refuses_an_unknown_query_kind():
    docs = [Document(str(i), None, ["가.", "나."]) for i in range(3)]
    with pytest.raises(KoSimCSEError, match="queries must be"):
        domain_scores(lambda t, m: np.ones((len(t), 2)), docs, queries="title")


def _bag_encoder(vocab: list[str]):
    """Bag-of-characters vectors: a passage is nearest to the query whose characters it shares."""
    def encode(texts, max_length):
        return np.array([[t.count(c) for c in vocab] for t in texts], dtype=np.float32)
    return encode


def test_domain_scores_rank_own_passage():
    docs = [Document(str(i), None, [f"{c}{c}{c}.", f"{c}{c} {c}."]) for i, c in enumerate("가나다라마")]
    good = domain_scores(_bag_encoder(list("가나다라마")), docs)
    assert good == {"mrr@10": 100.0, "r@1": 100.0, "r@10": 100.0, "mrr@10_se": 0.0, "queries": 5, "skipped": 0}
    # an encoder that sees only "." cannot tell documents apart: all 5 passages tie, and a tie counts against
    flat = domain_scores(_bag_encoder(["."]), docs + [Document("x", None, ["하나."])])
    assert flat == {"mrr@10": 20.0, "r@1": 0.0, "r@10": 100.0, "mrr@10_se": 0.0, "queries": 5, "skipped": 1}
    shifted = domain_scores(lambda t, m: np.array([[1.0, i % 2] for i, _ in enumerate(t)]), docs)
    assert shifted["r@1"] < 100.0 and shifted["r@10"] == 100.0 and 0 < shifted["mrr@10"] < 100.0
    assert shifted["mrr@10_se"] > 0
    with pytest.raises(KoSimCSEError, match="at least 2"):
        domain_scores(_bag_encoder(["가"]), docs[:1])


def _petitions(path, n):
    path.write_text("".join(json.dumps({"petition_idx": str(i), "title": f"{i}번 청원 제목",
                                        "content": f"{i}번 청원의 첫째 문장입니다. {i}번 청원은 이것을 요청합니다."},
                                       ensure_ascii=False) + "\n" for i in range(n)), encoding="utf-8")


def test_prepare_keeps_heldout_documents_out_of_training(tmp_path):
    from click.testing import CliRunner

    from kosimcse.cli.prepare import command

    pet = tmp_path / "petitions_2019-04"
    _petitions(pet, 60)
    held = [str(i) for i in range(60) if is_heldout(str(i), 0.3, seed=7)]
    assert 5 < len(held) < 40
    # a seed corpus that repeats a held-out petition's sentence: the guard must drop it there too
    wiki = tmp_path / "wiki_00"
    wiki.write_text(f'<doc id="1" url="u" title="t">\nt\n\n{held[0]}번 청원의 첫째 문장입니다. 위키 문장은 남는다.\n</doc>\n',
                    encoding="utf-8")
    out = tmp_path / "out"
    result = CliRunner().invoke(command, ["--out", str(out), "--source", f"kowiki:{wiki}", "--domain",
                                          f"petitions:{pet}", "--heldout", "0.3", "--heldout-seed", "7",
                                          "--heldout-max", "4", "--quiet", "--json"])
    assert result.exit_code == 0, result.output
    pool = load_documents(out / "heldout.jsonl")
    training = load_documents(out / "documents.jsonl")
    assert len(pool) == 4 and {d.id for d in pool} <= set(held)
    assert sorted((d.id for d in training), key=int) == [str(i) for i in range(60) if str(i) not in held]
    held_sentences = {f"{i}번 청원의 첫째 문장입니다." for i in held} | {f"{i}번 청원은 이것을 요청합니다." for i in held}
    lines = set((out / "sentences.txt").read_text(encoding="utf-8").splitlines())
    assert not lines & held_sentences
    assert not {s for d in training for s in d.sentences} & held_sentences
    assert "위키 문장은 남는다." in lines and f"{training[0].id}번 청원의 첫째 문장입니다." in lines
    stats = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    assert stats["documents"] == {"training": 60 - len(held), "heldout": len(held), "heldout_pool": 4,
                                  "fraction": 0.3, "seed": 7, "guarded_sentences_removed": 0,
                                  "training_single_sentence": 0, "heldout_without_query": 0}
    assert stats["sources"]["kowiki"]["dropped"]["leaked"] == 1

    # a reposted petition: a held-out title reaches no training document (titles are anchors there)
    pets = tmp_path / "pets"
    pets.mkdir()
    (pets / pet.name).write_bytes(pet.read_bytes())
    (pets / "petitions_2019-05").write_text("".join(json.dumps(
        {"petition_idx": f"re{i}", "title": f"{held[0]}번 청원 제목", "content": f"다시 올린 {i}번째 청원입니다."},
        ensure_ascii=False) + "\n" for i in range(3)), encoding="utf-8")
    again = CliRunner().invoke(command, ["--out", str(tmp_path / "again"), "--no-seed", "--no-sts", "--domain",
                                         f"petitions:{pets}", "--heldout", "0.3", "--heldout-seed", "7",
                                         "--quiet", "--json"])
    assert again.exit_code == 0, again.output
    titles = {d.title for d in load_documents(tmp_path / "again" / "documents.jsonl")}
    assert f"{held[0]}번 청원 제목" not in titles and f"{training[0].id}번 청원 제목" in titles

    bad = CliRunner().invoke(command, ["--out", str(out), "--source", f"kowiki:{wiki}", "--heldout", "0.1"])
    assert isinstance(bad.exception, KoSimCSEError) and "--domain" in str(bad.exception)


def test_prepare_says_when_documents_of_one_sentence_give_no_ict_pairs_or_queries(tmp_path):
    from click.testing import CliRunner

    from kosimcse.cli.prepare import command

    reviews = tmp_path / "reviews.jsonl"  # NSMC-like: one short review a document, no title
    rows = [{"id": f"r{i}", "text": f"{i}번 영화는 정말 재미있었다"} for i in range(30)]
    rows += [{"id": "long", "text": "첫째 문장입니다. 둘째 문장입니다."}]
    reviews.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "out"
    result = CliRunner().invoke(command, ["--out", str(out), "--no-seed", "--no-sts", "--domain", f"text:{reviews}",
                                          "--doc-id-column", "id", "--heldout", "0.3", "--quiet"])
    assert result.exit_code == 0, result.output
    docs = json.loads((out / "stats.json").read_text(encoding="utf-8"))["documents"]
    pool, training = load_documents(out / "heldout.jsonl"), load_documents(out / "documents.jsonl")
    assert docs["heldout_without_query"] == sum(len(d.sentences) == 1 for d in pool) > 0
    assert docs["training_single_sentence"] == sum(len(d.sentences) == 1 for d in training) > 0
    assert f"note: {docs['training_single_sentence']} training documents have one sentence" in result.output
