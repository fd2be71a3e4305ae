"""Corpus preparation: the leakage guard, stats that add up, source selection; and NLI triplets."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pytest
from click.testing import CliRunner

from kosimcse.data.corpus import check_stats, default_sources, prepare_corpus
from kosimcse.data.korean import normalize
from kosimcse.data.nli import TripletReport, build_triplets
from kosimcse.data.readers import read_klue_nli_dacon_csv
from kosimcse.data.records import NliPair
from kosimcse.data.tasks import DEFAULT_EVAL_SETS, eval_sentences
from kosimcse.errors import DataError

PLANTED = "검은 개가 하얀 눈밭 위를 힘차게 달리고 있다."  # a "KorSTS test" sentence planted in the corpus
DEV_SENT = "두 남자가 공원 벤치에 앉아서 체스를 두고 있다."
KLUE_DEV = "숙소 위치는 찾기 쉽고 일반적인 한국의 반지하 숙소입니다."
HEADER = "genre\tfilename\tyear\tid\tscore\tsentence1\tsentence2"


def _tsv(path: Path, pairs):
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [HEADER] + [f"g\tf\t2017\t{i:04d}\t{s}\t{a}\t{b}" for i, (a, b, s) in enumerate(pairs)]
    path.write_text("\n".join(rows), encoding="utf-8")


@pytest.fixture()
def fake_data(tmp_path) -> Path:
    """A data_dir laid out like shared/data, small enough to prepare in seconds."""
    root = tmp_path / "data"
    _tsv(root / "korsts/sts-test.tsv", [(PLANTED, "고양이가 잠을 자고 있다.", 1.0)])
    _tsv(root / "korsts/sts-dev.tsv", [(DEV_SENT, "여자가 노래를 부르고 있다.", 2.5)])
    _tsv(root / "korsts/sts-train.tsv", [("남자가 피아노를 연주하고 있다.", DEV_SENT, 3.0),
                                         ("남자가 피아노를 연주하고 있다.", "아이가 책을 읽고 있다.", 0.5)])
    (root / "klue-sts").mkdir()
    (root / "klue-sts/klue-sts-v1.1_dev.json").write_text(json.dumps([
        {"sentence1": KLUE_DEV, "sentence2": "방이 넓고 깨끗해서 좋았어요.", "labels": {"real-label": 3.2}}],
        ensure_ascii=False), encoding="utf-8")
    (root / "klue-sts/klue_sts_train.csv").write_text(
        "sentence1,sentence2,label\n호스트가 매우 친절했습니다.,\"위치가 좋고, 조용했어요.\",1.5\n", encoding="utf-8")
    wiki = root / "corpus/kowiki/AA"
    wiki.mkdir(parents=True)
    long_sentence = "아주 " * 150 + "긴 문장이다."
    # The planted sentence is disguised: NFD jamo, an NBSP and a zero-width space, inside a paragraph.
    disguised = unicodedata.normalize("NFD", PLANTED).replace(" ", "\u00a0", 1).replace("개가", "개\u200b가")
    (wiki / "wiki_00").write_text("\n".join([
        '<doc id="1" url="u" title="개">', "개", "",
        f"개는 사람과 오래 함께 살아 온 동물이다. {disguised} 눈 위에서도 개는 잘 달린다.",
        "개는 사람과 오래 함께 살아 온 동물이다.",  # an exact duplicate of the first sentence
        "짧다.",
        long_sentence,
        "formula_1",
        "</doc>", '<doc id="2" url="u" title="숙소">', "숙소", "",
        f"{KLUE_DEV} 다음 문장도 있다면 좋겠다.",
        "</doc>",
    ]) + "\n", encoding="utf-8")
    nsmc = root / "domain/nsmc/raw"
    nsmc.mkdir(parents=True)
    (nsmc / "1.json").write_text(json.dumps([{"review": "최고의 영화 진짜 재밌다ㅋㅋ 또 보고싶다"}, {"review": ""},
                                             {"review": DEV_SENT}], ensure_ascii=False), encoding="utf-8")
    return root


def _lines(out: Path) -> list[str]:
    return (out / "sentences.txt").read_text(encoding="utf-8").splitlines()


def _assert_adds_up(stats: dict, out: Path):
    check_stats(stats)
    totals = stats["totals"]
    assert totals["sentences"] == totals["kept"] + sum(totals["dropped"].values())
    for s in stats["sources"].values():
        assert s["sentences"] == s["kept"] + sum(s["dropped"].values())
    lines = _lines(out)
    assert len(lines) == totals["kept"] == len(set(lines))
    assert json.loads((out / "stats.json").read_text(encoding="utf-8"))["totals"] == totals


def test_leakage_guard_removes_planted_test_sentence(fake_data, tmp_path):
    guarded = prepare_corpus(None, tmp_path / "guarded", data_dir=fake_data, progress=False)
    control = prepare_corpus(None, tmp_path / "control", eval_sets=(), data_dir=fake_data, progress=False)
    # without the guard the splitter yields the planted sentence exactly (after normalisation) ...
    assert PLANTED in _lines(tmp_path / "control") and KLUE_DEV in _lines(tmp_path / "control")
    # ... and with it, every eval sentence is gone, counted as leaked
    kept = set(_lines(tmp_path / "guarded"))
    assert PLANTED not in kept and KLUE_DEV not in kept and DEV_SENT not in kept
    assert guarded["sources"]["kowiki"]["dropped"]["leaked"] == 2
    assert guarded["sources"]["korsts"]["dropped"]["leaked"] == 1  # DEV_SENT in KorSTS train
    assert guarded["totals"]["kept"] == control["totals"]["kept"] - 3
    _assert_adds_up(guarded, tmp_path / "guarded")
    _assert_adds_up(control, tmp_path / "control")


@pytest.mark.parametrize("chosen_by", ["option", "env"])
def test_guard_removes_exactly_the_sentences_the_evaluator_scores(tmp_path, monkeypatch, chosen_by):
    """The data folder's eval files differ from the embedded copies: guard and evaluator must read the same ones."""
    from kosimcse.paths import DATA_ENV
    from kosimcse.training.args import DataArguments
    from kosimcse.training.run import build_evaluator

    monkeypatch.delenv(DATA_ENV, raising=False)
    embedded = sorted(eval_sentences())[:40]  # no folder chosen: the packaged copies
    own = [f"{n}번째 평가 문장은 이 폴더에만 있다." for n in range(12)]
    root = tmp_path / "data"
    _tsv(root / "korsts/sts-dev.tsv", [(own[0], own[1], 1.0), (own[2], own[3], 4.0)])
    _tsv(root / "korsts/sts-test.tsv", [(own[4], own[5], 2.0), (own[6], own[7], 3.0)])
    (root / "klue-sts").mkdir()
    (root / "klue-sts/klue-sts-v1.1_dev.json").write_text(json.dumps(
        [{"sentence1": own[8 + i], "sentence2": own[9 + i], "labels": {"real-label": 1.0 + i}} for i in (0, 2)],
        ensure_ascii=False), encoding="utf-8")
    assert not set(own) & set(embedded)
    lines = [*own, "이 문장은 어느 평가 세트에도 없는 문장이다.", *embedded]
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    if chosen_by == "env":
        monkeypatch.setenv(DATA_ENV, str(root))
    data_dir = str(root) if chosen_by == "option" else None
    out = tmp_path / "out"
    stats = prepare_corpus([f"text:{corpus}"], out, data_dir=data_dir, split=False, min_chars=1, max_chars=10_000,
                           progress=False)
    scored = {normalize(s) for task in DEFAULT_EVAL_SETS
              for s in build_evaluator(DataArguments(data_dir=data_dir), task).sentences}
    written = {normalize(s) for s in lines}
    removed = written - set(_lines(out))
    assert scored <= written  # every sentence the evaluator scores was offered to the guard ...
    assert removed == scored == set(own)  # ... and the guard removed exactly those
    assert stats["totals"]["dropped"]["leaked"] == len(own)


def test_stats_count_each_filter(fake_data, tmp_path):
    out = tmp_path / "c"
    stats = prepare_corpus([f"kowiki:{fake_data / 'corpus/kowiki'}"], out, data_dir=fake_data,
                           min_chars=8, max_chars=200, progress=False)
    wiki = stats["sources"]["kowiki"]
    assert wiki["records"] == 6  # paragraphs, titles and tags excluded
    assert wiki["dropped"] == {"empty": 1, "too_short": 1, "too_long": 1, "duplicate": 1, "leaked": 2}
    assert all(8 <= len(s) <= 200 for s in _lines(out))
    _assert_adds_up(stats, out)


def test_explicit_eval_sentences_and_nsmc_passes_unsplit(fake_data, tmp_path):
    out = tmp_path / "n"
    review = "최고의 영화 진짜 재밌다ㅋㅋ 또 보고싶다"
    stats = prepare_corpus([str(fake_data / "domain/nsmc/raw")], out, eval_sentences=[review], progress=False)
    nsmc = stats["sources"]["nsmc"]
    assert nsmc["split"] is False and nsmc["records"] == 3
    assert nsmc["dropped"]["leaked"] == 1 and nsmc["dropped"]["empty"] == 1
    assert _lines(out) == [DEV_SENT]  # DEV_SENT is not guarded here: only the given sentence is
    assert stats["settings"]["eval_sentences"] == 1


def test_bad_rows_raise_or_are_counted(fake_data, tmp_path):
    domain = tmp_path / "dom.jsonl"
    domain.write_text('{"text": "좋은 문장 하나입니다."}\n{"text": 5}\n{"text": "또 다른 좋은 문장입니다."}\n', "utf-8")
    with pytest.raises(DataError) as exc:
        prepare_corpus([str(domain)], tmp_path / "r", eval_sentences=[], progress=False)
    assert exc.value.path == str(domain) and exc.value.line == 2
    stats = prepare_corpus([str(domain)], tmp_path / "s", eval_sentences=[], errors="skip", progress=False)
    (label, s), = stats["sources"].items()
    assert s["skipped_bad_rows"] == 1 and s["records"] == 2 and s["kept"] == 2
    assert stats["totals"]["skipped_bad_rows"] == 1


def test_default_sources_and_cli_domain_scenario(fake_data, tmp_path):
    specs = default_sources(fake_data)
    assert [s.split(":", 1)[0] for s in specs] == ["kowiki", "klue-sts", "korsts"]
    assert [s.split(":", 1)[0] for s in default_sources(fake_data, sts=False, domain=["x"])] == ["kowiki", "x"]
    assert eval_sentences(data_dir=fake_data) >= {PLANTED, DEV_SENT, KLUE_DEV}

    from kosimcse.cli.prepare import command

    out = tmp_path / "cli"
    result = CliRunner().invoke(command, ["--data-dir", str(fake_data), "--out", str(out), "--no-sts",
                                          "--domain", "domain/nsmc/raw", "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.output)
    assert list(stats["sources"]) == ["kowiki", "nsmc"]
    assert DEV_SENT not in _lines(out)
    table = CliRunner().invoke(command, ["--data-dir", str(fake_data), "--out", str(out), "--quiet"])
    assert table.exit_code == 0 and "| total |" in table.output and "kept" in table.output


# ---------------------------------------------------------------------------------------------
# NLI triplets
# ---------------------------------------------------------------------------------------------


def test_build_triplets_pairs_within_premise():
    pairs = [NliPair("p1", "e1", "entailment"), NliPair("p1", "c1", "contradiction"), NliPair("p1", "n1", "neutral"),
             NliPair("p2", "e2", "entailment"), NliPair("p2", "n2", "neutral"),
             NliPair("p3", "e3a", "entailment"), NliPair("p3", "e3b", "entailment"), NliPair("p3", "c3", "contradiction"),
             NliPair("p4", "c4", "contradiction")]
    report = TripletReport()
    triplets = build_triplets(pairs, report)
    assert [(t.anchor, t.positive, t.negative) for t in triplets] == [
        ("p1", "e1", "c1"), ("p3", "e3a", "c3"), ("p3", "e3b", "c3")]
    assert report.as_dict() == {"premises": 4, "premises_with_both": 2, "premises_lacking": 2,
                                "lacking_entailment": 1, "lacking_contradiction": 1, "triplets": 3}


def test_klue_nli_train_triplets_match_readme(shared_data):
    report = TripletReport()
    triplets = build_triplets(read_klue_nli_dacon_csv(
        shared_data / "nli/klue-nli-train-dacon/benchmark_train_data.csv", split="train"), report)
    assert report.premises == 8390 and report.premises_with_both == 8045  # README: 8,045 of 8,390
    assert len(triplets) == report.triplets >= 8045
    assert all(t.positive != t.negative for t in triplets)
