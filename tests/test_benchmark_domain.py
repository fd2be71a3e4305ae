"""benchmarks/domain.py end to end on a tiny model: results are data only, accumulate per run, and render."""

import json

import pytest

from helpers import make_tiny_model_dir
from kosimcse.data.documents import Document, write_documents
from kosimcse.modeling.model import SimCSEConfig

SENTENCES = ["한 남자가 기타를 치고 있다.", "여자가 양파를 썰고 있다.", "고양이가 소파 위에서 자고 있다.",
             "오늘 날씨가 정말 좋네요.", "아이들이 공원에서 뛰어 놀고 있다.", "그 영화는 생각보다 재미있었다.",
             "비행기가 이륙하고 있다.", "한 여자가 피아노를 연주한다."]


@pytest.mark.slow
def test_domain_benchmark_runs_accumulates_and_renders(tmp_path):
    from benchmarks import domain

    model = make_tiny_model_dir(tmp_path / "tiny", hidden=32, layers=2, heads=2)
    # the start encodes as the benchmark trains (e5's folder says the same), so a merge at weight 1 is the start
    SimCSEConfig(pooler="avg", prefix="query: ", max_length=64, inference_max_length=64).save(model)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    docs = [Document(f"d{i}", f"제목 {i}", SENTENCES[i % 8:] + SENTENCES[:i % 8]) for i in range(12)]
    write_documents(corpus / "documents.jsonl", docs[:8])
    write_documents(corpus / "heldout.jsonl", docs[8:])
    common = ["--corpus", f"toy={corpus}", "--model", str(model), "--steps", "2", "--eval-steps", "0", "--batch", "4",
              "--runs-dir", str(tmp_path / "runs"), "--results-dir", str(tmp_path / "results")]
    domain.main([*common, "--settings", "ict_distill"])
    domain.main([*common, "--settings", "ict_distill", "dropout"])  # the finished run is kept, one more is added
    data = json.loads((tmp_path / "results" / "domain_adaptation.json").read_text())["data"]
    assert list(data["runs"]["toy"]) == ["ict_distill", "dropout"]
    run = data["runs"]["toy"]["ict_distill"]["42"]
    assert run["steps"] == 2 and 0 <= run["domain"]["mrr@10"] <= 100 and run["domain"]["queries"] == 4
    assert data["corpora"]["toy"]["heldout_documents"] == 4 and "korsts-test" in data["start_sts"]
    text = "\n".join(domain.render_section(data))
    assert "ICT (50%) + dropout + distillation" in text and "dropout only" in text and "Acceptance" in text

    # --start-weights scores the finished export merged with the start; weight 1 is the start itself
    domain.main([*common, "--settings", "ict_distill", "--start-weights", "1", "0.5"])
    data = json.loads((tmp_path / "results" / "domain_adaptation.json").read_text())["data"]
    merged = data["runs"]["toy"]["ict_distill"]["42"]["merged"]
    start = data["corpora"]["toy"]["start"]
    assert merged["1"]["domain"] == pytest.approx(start["domain"])
    assert merged["1"]["korsts-test"] == pytest.approx(data["start_sts"]["korsts-test"])
    assert "export moved 0.5 of the way back to the start" in "\n".join(domain.render_section(data))

    # the Wikipedia-mix setting needs --general and records no path of this machine
    with pytest.raises(SystemExit):
        domain.main([*common, "--settings", "ict_general_distill"])
    (tmp_path / "wiki.txt").write_text("".join(f"위키 문장 {i}번.\n" for i in range(40)), encoding="utf-8")
    domain.main([*common, "--settings", "ict_general_distill", "--general", str(tmp_path / "wiki.txt")])
    data = json.loads((tmp_path / "results" / "domain_adaptation.json").read_text())["data"]
    run = data["runs"]["toy"]["ict_general_distill"]["42"]
    assert run["steps"] == 2 and run["settings"]["sentence_share"] == 0.5 and "train_file" not in run["settings"]
    assert run["general"] == {"file": f"{tmp_path.name}/wiki.txt", "sentences": 40}
    label = f"Wikipedia dropout pairs (50%) + distillation (`{tmp_path.name}/wiki.txt`, 40 sentences)"
    assert label in "\n".join(domain.render_section(data))

    # a run whose start was kept: its export is the start, so its last checkpoint is scored instead (a row that
    # never counts towards the target), and no merge is made
    path = tmp_path / "results" / "domain_adaptation.json"
    doc = json.loads(path.read_text())
    doc["data"]["runs"]["toy"]["dropout"]["42"]["kept_initial_model"] = True
    path.write_text(json.dumps(doc))
    domain.main([*common, "--settings", "dropout", "--start-weights", "0.5"])
    run = json.loads(path.read_text())["data"]["runs"]["toy"]["dropout"]["42"]
    assert run["last_checkpoint"]["step"] == 2 and "merged" not in run
    assert 0 <= run["last_checkpoint"]["domain"]["mrr@10"] <= 100 and "korsts-test" in run["last_checkpoint"]
    assert "dropout only (classic unsup); its checkpoint-2, outside the KorSTS-dev tolerance" in "\n".join(
        domain.render_section(json.loads(path.read_text())["data"]))
