"""HTML report on a small fake run folder (tiny exported model, metrics.jsonl, summary.json), and the CLI."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest
from click.testing import CliRunner

from helpers import korean_sample_texts, make_tiny_model_dir
from kosimcse.errors import KoSimCSEError
from kosimcse.evaluation.sts import METRIC_KEYS, StsEvaluator
from kosimcse.report.html import build_report, read_metrics, render_html, sample_lines, write_report

_RESOURCES = __import__("pathlib").Path(__file__).resolve().parents[1] / "src" / "kosimcse" / "resources" / "sts"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A data folder whose korsts-test is the first 60 pairs of the real one (the shared/data layout)."""
    root = tmp_path_factory.mktemp("data")
    lines = (_RESOURCES / "sts-test.tsv").read_text(encoding="utf-8").splitlines()
    (root / "korsts").mkdir()
    (root / "korsts" / "sts-test.tsv").write_text("\n".join(lines[:61]) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """What `kosimcse train` leaves behind, without paying for a training run."""
    from transformers import AutoTokenizer

    from kosimcse.modeling.model import SimCSEConfig, SimCSEModel

    root = tmp_path_factory.mktemp("report")
    base = make_tiny_model_dir(root / "base", seed=0)
    run = root / "run"
    model = SimCSEModel.from_encoder(make_tiny_model_dir(root / "trained", seed=1),
                                     SimCSEConfig(pooler="avg", max_length=32))
    model.save_pretrained(run / "best", tokenizer=AutoTokenizer.from_pretrained(base))
    records = []
    for step in range(1, 7):
        records.append({"step": step, "epoch": step / 6, "loss": 3.0 - 0.3 * step, "learning_rate": 1e-4 * (7 - step)})
        if step % 2 == 0:
            records.append({"step": step, "epoch": step / 6, **{f"eval_{k}": 40.0 + step for k in METRIC_KEYS}})
    text = "\n".join(json.dumps(r) for r in records) + '\n{"step": 7, "loss"'  # a run killed mid-write
    (run / "metrics.jsonl").write_text(text, encoding="utf-8")
    summary = {"train_loss": 2.1, "global_step": 6, "wall_time_s": 12.5, "train_sentences": 96, "model": str(base),
               "resolved_model": str(base), "best_checkpoint": str(run / "checkpoint-6"), "best_metric": 46.0,
               "sentences_per_s": 46.1, "exported": str(run / "best"),
               "results": {"korsts-test": {k: 30.0 + i for i, k in enumerate(METRIC_KEYS)}}}
    (run / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    (run / "corpus").mkdir()
    (run / "corpus" / "sentences.txt").write_text("\n".join(korean_sample_texts(200)[:120]) + "\n", encoding="utf-8")
    return run


@pytest.fixture(scope="module")
def report(run_dir, data_dir):
    return build_report(run_dir, before_model="base", data_dir=data_dir, sample=40, align_sample=16, dtype="fp32",
                        device="cpu")


def _images(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def test_report_has_every_section_with_embedded_plots(report, run_dir):
    page = render_html(report)
    for anchor in ("summary", "curves", "metrics", "before-after", "sts-plots", "geometry", "neighbours"):
        assert f'<section id="{anchor}">' in page, anchor
    images = _images(page)
    assert len(images) == 4 and all(img.startswith(PNG_MAGIC) and len(img) > 5000 for img in images)
    # Self-contained: nothing fetched from elsewhere.
    assert not re.search(r'(src|href)="(?!data:|#)', page)
    assert "<table>" in page and "<th>Cosine Spearman</th>" in page.replace(' style="text-align: center;"', "")
    assert '<tr class="delta">' in page
    assert "metrics.jsonl: 1 unreadable line(s) skipped" in page
    assert "KorSTS pairs with gold score &gt;= 4" in page and "two dropout views of the same sentence" in page
    corpus = set((run_dir / "corpus" / "sentences.txt").read_text(encoding="utf-8").splitlines())
    queries = re.findall(r'<section id="neighbours">.*', page, re.S)[0]
    assert sum(f"<h3>{q}</h3>" in queries for q in corpus) == 5


def test_report_numbers_are_the_evaluators(report, run_dir, data_dir):
    from kosimcse.data.tasks import load_sts_task
    from kosimcse.inference.encoder import KoSimCSE

    data = report.data
    encoder = KoSimCSE.from_pretrained(run_dir / "best", dtype="fp32", device="cpu", max_length=64)
    expected = StsEvaluator(load_sts_task("korsts-test", data_dir=data_dir))(
        lambda texts: encoder.encode(texts, show_progress=False))
    assert data["sts"]["after"] == pytest.approx(expected)
    assert data["sts"]["before"] != pytest.approx(expected)
    assert data["models"]["before"]["pooling"] == "avg"  # the trained model's pooling, not the base default
    for model in ("before", "after"):
        for dataset in ("korsts-test", "domain"):
            value = data["geometry"][model][dataset]
            assert 0.0 <= value["alignment"] <= 4.0 and value["uniformity"] <= 0.0
        assert (data["geometry"][model]["domain"]["points"], data["geometry"][model]["domain"]["positive_pairs"]) == (40, 16)
    assert data["domain_sample"] == 40
    assert [len(e["neighbours"]) for e in data["neighbours"]["after"]] == [3] * 5
    assert data["evaluations"][-1]["eval_cosine_spearman"] == 46.0


def test_report_without_model_keeps_what_it_can(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"step": 1, "loss": 2.5}\n{"step": 2, "loss": 2.0}\n', encoding="utf-8")
    page = write_report(run).read_text(encoding="utf-8")  # default: RUN/report.html
    assert (run / "report.html").is_file()
    assert len(_images(page)) == 1 and '<section id="curves">' in page
    assert "no exported model" in page
    with pytest.raises(KoSimCSEError, match="neither summary.json nor metrics.jsonl"):
        build_report(tmp_path)
    with pytest.raises(KoSimCSEError, match="sample"):
        build_report(run, sample=5000)


def test_page_skeleton_escapes_title_folder_and_notes():
    from kosimcse.report.html import Report

    page = render_html(Report(run_dir=__import__("pathlib").Path("runs/<i>"), notes=["<b>bad</b> & co"]),
                       title="<script>x</script>")
    assert "<script>" not in page and "<i>" not in page and "<b>" not in page
    assert "<title>&lt;script&gt;x&lt;/script&gt;</title>" in page and "&lt;b&gt;bad&lt;/b&gt; &amp; co" in page
    assert "<code>runs/&lt;i&gt;</code>" in page and page.rstrip().endswith("</body></html>")


def test_curves_survive_nan_evaluations():
    from kosimcse.report.plots import png_bytes, training_curves

    records = [{"step": 1, "loss": 2.0}, {"step": 2, "eval_cosine_spearman": float("nan")},
               {"step": 4, "eval_cosine_spearman": 12.0}, {"step": 6, "eval_cosine_spearman": float("nan")}]
    assert png_bytes(training_curves(records)).startswith(PNG_MAGIC)
    assert png_bytes(training_curves(records[-1:])).startswith(PNG_MAGIC)


def test_read_metrics_counts_bad_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n[1, 2]\nnot json\n\n{"step": 2}\n', encoding="utf-8")
    records, bad = read_metrics(path)
    assert [r["step"] for r in records] == [1, 2] and bad == 2


def test_sample_lines_is_a_seeded_subset_in_file_order(tmp_path):
    path = tmp_path / "s.txt"
    path.write_text("".join(f"line {i}\n" if i % 10 else "\n" for i in range(1000)), encoding="utf-8")
    picked = sample_lines(path, 50, seed=3)
    numbers = [int(t.split()[1]) for t in picked]
    assert len(set(numbers)) == 50 and numbers == sorted(numbers) and all(n % 10 for n in numbers)
    assert picked == sample_lines(path, 50, seed=3) and picked != sample_lines(path, 50, seed=4)
    # Uniform draw, not the head of the file.
    assert np.mean(numbers) == pytest.approx(500, abs=120)
    assert len(sample_lines(path, 5000)) == 900


def test_cli_writes_html_and_json(run_dir, data_dir, tmp_path):
    from kosimcse.cli import cli

    out = tmp_path / "cli" / "report.html"
    result = CliRunner().invoke(cli, ["report", str(run_dir), "--out", str(out), "--data-dir", str(data_dir),
                                      "--sample", "20", "--queries", "1", "--fp32", "--device", "cpu", "--json"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["report"] == str(out) and out.is_file()
    assert set(payload["sts"]) == {"after"} and set(payload["sts"]["after"]) == set(METRIC_KEYS)
    assert "before-after" not in out.read_text(encoding="utf-8")


def test_cli_help_and_bad_run_dir(tmp_path):
    from kosimcse.cli import cli

    runner = CliRunner()
    help_text = runner.invoke(cli, ["report", "--help"]).output
    assert "Examples:" in help_text and "--before" in help_text and "--sample" in help_text
    result = runner.invoke(cli, ["report", str(tmp_path / "missing")])
    assert result.exit_code == 2


def test_report_domain_heldout_shows_domain_score_before_and_after(run_dir, data_dir, tmp_path):
    from kosimcse.data.documents import Document, write_documents
    from kosimcse.evaluation.domain import domain_scores, kosimcse_encoder
    from kosimcse.inference.encoder import KoSimCSE

    texts = korean_sample_texts(200)[:60]
    docs = [Document(str(i), None, texts[3 * i:3 * i + 3]) for i in range(20)]
    heldout = tmp_path / "heldout.jsonl"
    write_documents(heldout, docs)
    result = CliRunner().invoke(__import__("kosimcse.cli.report", fromlist=["command"]).command, [
        str(run_dir), "--before", "base", "--domain", str(heldout), "--data-dir", str(data_dir), "--sample", "20",
        "--align-sample", "4", "--queries", "0", "--fp32", "--device", "cpu", "--out", str(tmp_path / "r.html"),
        "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout[result.stdout.index("{"):])
    encoder = KoSimCSE.from_pretrained(run_dir / "best", dtype="fp32", device="cpu")
    assert data["domain_retrieval"]["after"] == pytest.approx(domain_scores(kosimcse_encoder(encoder), docs))
    assert data["domain_retrieval"]["before"]["queries"] == 20 and data["domain_source"] == str(heldout)
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    section = re.findall(r'<section id="domain">.*?</section>', page, re.S)[0]
    assert "after - before" in section and len(_images(section)) == 1

    # single-sentence documents (NSMC reviews) have no pseudo-query: the report says so instead of failing
    reviews = tmp_path / "reviews.jsonl"
    write_documents(reviews, [Document(f"r{i}", None, [t]) for i, t in enumerate(texts[:20])])
    single = CliRunner().invoke(__import__("kosimcse.cli.report", fromlist=["command"]).command, [
        str(run_dir), "--domain", str(reviews), "--data-dir", str(data_dir), "--sample", "20", "--align-sample", "4",
        "--queries", "0", "--fp32", "--device", "cpu", "--out", str(tmp_path / "s.html")])
    assert single.exit_code == 0, single.output
    page = (tmp_path / "s.html").read_text(encoding="utf-8")
    assert 'id="domain"' not in page and "no domain score" in page


def test_report_defaults_to_the_runs_own_heldout_file(run_dir, data_dir, tmp_path):
    """A run trained with eval_domain records its held-out file; the report scores it without --domain."""
    import shutil

    from kosimcse.data.documents import Document, write_documents

    texts = korean_sample_texts(200)[:60]
    heldout = tmp_path / "heldout.jsonl"
    write_documents(heldout, [Document(str(i), f"제목 {i}", texts[3 * i:3 * i + 3]) for i in range(20)])
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    shutil.rmtree(run / "corpus")
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    (run / "summary.json").write_text(json.dumps({**summary, "domain": {"file": str(heldout)}}), encoding="utf-8")
    options = dict(before_model="base", data_dir=data_dir, sample=20, align_sample=4, queries=0, dtype="fp32",
                   device="cpu")
    data = build_report(run, **options).data
    assert data["domain_source"] == str(heldout) and set(data["domain_retrieval"]) == {"before", "after"}
    assert data["domain_retrieval"]["after"]["queries"] == 20

    # a relative path recorded by a run started elsewhere: said, not silently dropped
    (run / "summary.json").write_text(json.dumps({**summary, "domain": {"file": "elsewhere/heldout.jsonl"}}),
                                      encoding="utf-8")
    report = build_report(run, **options)
    assert "domain_retrieval" not in report.data and any("elsewhere/heldout.jsonl" in n for n in report.notes)
