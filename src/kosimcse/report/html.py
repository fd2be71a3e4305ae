"""One self-contained HTML report for a training run: summary, curves, metric tables, STS plots, geometry, neighbours."""

from __future__ import annotations

import base64
import html
import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kosimcse.errors import KoSimCSEError

DEFAULT_TASK = "korsts-test"
DEFAULT_SAMPLE = 300
# Dropout views cost two more passes per model; alignment is a plain mean over pairs, and a few hundred pin it down.
DEFAULT_ALIGN_SAMPLE = 128
MAX_SAMPLE = 2000

_SUMMARY_FIELDS = (
    ("model", "Base model"), ("resolved_model", "Resolved from"), ("global_step", "Steps"),
    ("train_sentences", "Training examples"), ("train_loss", "Mean training loss"), ("wall_time_s", "Training time (s)"),
    ("sentences_per_s", "Throughput (sentences/s)"), ("dev_spearman", "Dev cosine Spearman (exported model)"),
    ("start_dev", "Dev cosine Spearman (start)"), ("selection", "Selection"), ("best_metric", "Selection score"),
    ("best_checkpoint", "Best checkpoint"), ("exported", "Exported model"),
)


@dataclass
class Report:
    """What ``build_report`` found and measured: ``data`` is JSON-ready, ``figures`` are PNG bytes by name."""

    run_dir: Path
    data: dict = field(default_factory=dict)
    figures: dict[str, bytes] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def read_metrics(path: Path) -> tuple[list[dict], int]:
    """Records of ``metrics.jsonl`` and the number of unreadable lines (a run killed mid-write leaves one)."""
    records, bad = [], 0
    if not path.is_file():
        return records, bad
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                bad += 1
                continue
            if isinstance(record, dict):
                records.append(record)
            else:
                bad += 1
    return records, bad


def sample_lines(path: Path, n: int, seed: int = 0) -> list[str]:
    """``n`` non-empty lines drawn uniformly from a text file of any size (reservoir sampling), file order kept."""
    from kosimcse.data.readers import read_text_lines

    rng = np.random.default_rng(seed)
    reservoir: list[tuple[int, str]] = []
    seen = 0
    for lineno, line in read_text_lines(path):
        text = line.strip()
        if not text:
            continue
        seen += 1
        if len(reservoir) < n:
            reservoir.append((lineno, text))
        else:
            slot = int(rng.integers(0, seen))
            if slot < n:
                reservoir[slot] = (lineno, text)
    return [text for _, text in sorted(reservoir)]


def _load_summary(run_dir: Path) -> dict:
    path = run_dir / "summary.json"
    if not path.is_file():
        return {}
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise KoSimCSEError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(summary, dict):
        raise KoSimCSEError(f"{path}: expected a JSON object")
    return summary


def _is_documents(path: Path) -> bool:
    """A ``heldout.jsonl``/``documents.jsonl`` of ``kosimcse prepare``, not a text file of sentences."""
    if path.suffix.lower() != ".jsonl" or not path.is_file():
        return False
    with open(path, encoding="utf-8", errors="replace") as fh:
        first = fh.readline()
    try:
        return isinstance(json.loads(first).get("sentences"), list)
    except (ValueError, AttributeError):
        return False


def _exported_model(run_dir: Path, summary: dict) -> Path | None:
    candidates = [run_dir / "best"]
    if summary.get("exported"):
        candidates.insert(0, Path(summary["exported"]))
    return next((p for p in candidates if p.is_dir()), None)


def _random_pair_cosines(embeddings: np.ndarray, n: int, seed: int) -> np.ndarray:
    from kosimcse.evaluation.similarity import pairwise_cosine

    if len(embeddings) < 2:
        return np.empty(0)
    rng = np.random.default_rng(seed)
    left = rng.integers(0, len(embeddings), size=n)
    right = (left + rng.integers(1, len(embeddings), size=n)) % len(embeddings)  # never a sentence with itself
    return np.asarray(pairwise_cosine(embeddings[left], embeddings[right]))


def build_report(run_dir, before_model=None, domain_texts=None, *, task: str = DEFAULT_TASK,
                 sample: int = DEFAULT_SAMPLE, align_sample: int = DEFAULT_ALIGN_SAMPLE, queries: int = 5, k: int = 3,
                 random_pairs: int = 2000, batch_size: int = 64, device: str | None = None, dtype: str = "auto", data_dir=None,
                 seed: int = 0, progress=None) -> Report:
    """Read a run folder, embed a bounded amount of text with its exported model (and ``before_model``), measure.

    Encoding is bounded: the ``task`` STS set once per model, ``sample`` (<= 2000) domain sentences
    once per model, and the first ``align_sample`` of them twice more, with dropout on, for alignment. ``domain_texts``
    is a text file (one sentence a line) or a list of sentences; by default ``RUN/corpus/sentences.txt``.
    ``before_model`` is a model folder/id, or ``"base"`` for the model the run started from (summary.json).
    """
    from kosimcse.report import plots

    say = progress or (lambda message: None)
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise KoSimCSEError(f"run folder not found: {run_dir}")
    if not 2 <= sample <= MAX_SAMPLE:
        raise KoSimCSEError(f"sample must be between 2 and {MAX_SAMPLE}, not {sample}")
    if align_sample < 1:
        raise KoSimCSEError(f"align_sample must be at least 1, not {align_sample}")
    summary = _load_summary(run_dir)
    records, bad_lines = read_metrics(run_dir / "metrics.jsonl")
    if not summary and not records:
        raise KoSimCSEError(f"{run_dir} has neither summary.json nor metrics.jsonl: is it a `kosimcse train` output_dir?")
    report = Report(run_dir=run_dir)
    timings: dict[str, float] = {}
    report.data.update(run_dir=str(run_dir), summary=summary, results=summary.get("results", {}), timings=timings)
    if bad_lines:
        report.notes.append(f"metrics.jsonl: {bad_lines} unreadable line(s) skipped")
    if (run_dir / "corpus" / "stats.json").is_file():
        try:
            report.data["corpus_stats"] = json.loads((run_dir / "corpus" / "stats.json").read_text(encoding="utf-8"))
        except ValueError:
            report.notes.append("corpus/stats.json is not valid JSON; left out")
    report.data["evaluations"] = [{k: v for k, v in r.items() if k == "step" or k.startswith("eval_")}
                                  for r in records if "eval_cosine_spearman" in r]
    if records:
        report.figures["curves"] = plots.png_bytes(plots.training_curves(records))

    exported = _exported_model(run_dir, summary)
    if exported is None:
        report.notes.append("no exported model (best/) in the run folder: embedding sections left out")
        return report

    if before_model == "base" and not Path("base").exists():
        before_model = summary.get("resolved_model") or summary.get("model")
        if not before_model:
            raise KoSimCSEError(f"--before base: {run_dir}/summary.json does not name the model training started from")

    from kosimcse.data.tasks import load_sts_task
    from kosimcse.evaluation import geometry
    from kosimcse.evaluation.similarity import pairwise_cosine
    from kosimcse.evaluation.sts import sts_metrics
    from kosimcse.inference.encoder import KoSimCSE

    start = time.perf_counter()
    after = KoSimCSE.from_pretrained(exported, device=device, dtype=dtype)
    models = {"after": after}
    if before_model is not None:
        # Same pooling, prefix and length as the trained model: the comparison is about the weights.
        models = {"before": KoSimCSE.from_pretrained(
            before_model, pooling=after.pooling, prefix=after.prefix, max_length=after.max_length, device=device,
            dtype=dtype, prompt_template=after.module.config.prompt_template or None),
                  "after": after}
    timings["load_models_s"] = time.perf_counter() - start
    report.data["models"] = {name: {"path": str(enc.path), "pooling": enc.pooling, "prefix": enc.prefix,
                                    "max_length": enc.max_length, "dtype": enc.dtype} for name, enc in models.items()}
    report.data["models"]["after"]["path"] = str(exported)
    if before_model is not None:
        report.data["models"]["before"]["path"] = str(before_model)

    pairs = list(load_sts_task(task, data_dir=data_dir))
    sentences = list(dict.fromkeys(s for p in pairs for s in (p.sentence1, p.sentence2)))
    index = {s: i for i, s in enumerate(sentences)}
    left = np.array([index[p.sentence1] for p in pairs])
    right = np.array([index[p.sentence2] for p in pairs])
    gold = np.array([p.score for p in pairs], dtype=np.float64)

    if domain_texts is None and (run_dir / "corpus" / "sentences.txt").is_file():
        domain_texts = run_dir / "corpus" / "sentences.txt"
    docs = None
    if isinstance(domain_texts, (str, Path)) and _is_documents(Path(domain_texts)):
        from kosimcse.data.documents import load_documents

        # held-out documents (heldout.jsonl): the domain score, and their sentences for geometry and neighbours
        docs, source = load_documents(domain_texts), str(domain_texts)
        domain_texts = [s for d in docs for s in d.sentences]
    domain: list[str] = []
    if domain_texts is not None:
        if isinstance(domain_texts, (str, Path)):
            report.data["domain_source"] = str(domain_texts)
            domain = sample_lines(Path(domain_texts), sample, seed=seed)
        else:
            report.data["domain_source"] = source if docs else "given texts"
            domain = [t for t in dict.fromkeys(str(t).strip() for t in domain_texts) if t]
            if len(domain) > sample:
                keep = np.sort(np.random.default_rng(seed).choice(len(domain), size=sample, replace=False))
                domain = [domain[i] for i in keep]
        if len(domain) < 2:
            report.notes.append(f"domain sample has {len(domain)} sentence(s): domain geometry left out")
            domain = []
    report.data["domain_sample"] = len(domain)
    align_texts = [domain[i] for i in sorted(np.random.default_rng(seed + 2).choice(
        len(domain), size=min(align_sample, len(domain)), replace=False))] if domain else []

    sts_metrics_by_model, scatter, histograms, geometry_points, domain_embeddings = {}, {}, {}, {}, {}
    for name, encoder in models.items():
        say(f"{name}: embedding {len(sentences)} {task} sentences")
        start = time.perf_counter()
        embeddings = encoder.encode(sentences, batch_size=batch_size, show_progress=False)
        timings[f"{name}_{task}_s"] = time.perf_counter() - start
        cosine = np.asarray(pairwise_cosine(embeddings[left], embeddings[right]))
        sts_metrics_by_model[name] = sts_metrics(embeddings[left], embeddings[right], gold)
        scatter[name] = (gold, cosine)
        histograms[name] = (gold, cosine, _random_pair_cosines(embeddings, random_pairs, seed))
        geometry_points[name] = {task: geometry.sts_geometry(pairs, embeddings=dict(zip(sentences, embeddings)),
                                                             max_points=MAX_SAMPLE, seed=seed)}
        if domain:
            say(f"{name}: embedding {len(domain)} domain sentences (+ 2 dropout views of {len(align_texts)})")
            start = time.perf_counter()
            plain = encoder.encode(domain, batch_size=batch_size, show_progress=False)
            view1, view2 = geometry.dropout_views(encoder, align_texts, batch_size=batch_size, seed=seed)
            timings[f"{name}_domain_s"] = time.perf_counter() - start
            geometry_points[name]["domain"] = geometry.corpus_geometry(view1, view2, plain, max_points=MAX_SAMPLE,
                                                                       seed=seed)
            domain_embeddings[name] = plain
        if docs:
            from kosimcse.evaluation.domain import domain_scores, kosimcse_encoder

            say(f"{name}: domain retrieval over {len(docs)} held-out documents")
            start = time.perf_counter()
            report.data.setdefault("domain_retrieval", {})[name] = domain_scores(kosimcse_encoder(encoder, batch_size),
                                                                                 docs)
            timings[f"{name}_domain_retrieval_s"] = time.perf_counter() - start
    if docs:
        report.figures["domain"] = plots.png_bytes(plots.domain_plot(report.data["domain_retrieval"]))
    report.data["task"] = task
    report.data["sts"] = sts_metrics_by_model
    report.data["geometry"] = geometry_points
    report.figures["scatter"] = plots.png_bytes(plots.score_scatter(scatter, task=task))
    report.figures["histograms"] = plots.png_bytes(plots.similarity_histograms(histograms))
    report.figures["geometry"] = plots.png_bytes(plots.geometry_plot(
        {name: {d: v for d, v in per.items()} for name, per in geometry_points.items()}))

    if domain and queries > 0:
        picks = np.random.default_rng(seed + 1).choice(len(domain), size=min(queries, len(domain)), replace=False)
        query_texts = [domain[i] for i in sorted(picks)]
        examples = {}
        for name, embeddings in domain_embeddings.items():
            by_text = dict(zip(domain, embeddings))
            examples[name] = geometry.nearest_neighbours(lambda texts: np.stack([by_text[t] for t in texts]), domain,
                                                         query_texts, k=k, text_embeddings=embeddings)
        report.data["neighbours"] = examples
    return report


# ---- HTML ---------------------------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", "Noto Sans KR", "Malgun Gothic", sans-serif;
       max-width: 1180px; margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #1f77b4; padding-bottom: .2em; }
h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .6em 0 1.2em; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: .3em .6em; }
th { background: #f3f6fa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.delta td { font-weight: 600; }
img { max-width: 100%; border: 1px solid #eee; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: .4em .8em; }
.muted { color: #666; font-size: .9em; }
nav a { margin-right: 1em; }
table.nn { width: 100%; table-layout: fixed; }
table.nn td { vertical-align: top; }
"""


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    return str(value)


def _small(value: float) -> str:
    """3 decimals, or 3 significant digits near 0, where a collapsed model's values live (-0.000 says nothing)."""
    return f"{value:.3f}" if value == 0 or abs(value) >= 1e-2 else f"{value:.2e}"


def markdown_to_html(text: str) -> str:
    """Markdown (our metric tables) to HTML with the ``markdown`` package's tables extension."""
    import markdown

    return markdown.markdown(text, extensions=["tables"])


def _img(report: Report, name: str, alt: str) -> str:
    data = base64.b64encode(report.figures[name]).decode("ascii")
    return f'<img alt="{_esc(alt)}" src="data:image/png;base64,{data}">'


def _section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{_esc(title)}</h2>\n{body}\n</section>'


def _key_value_table(rows) -> str:
    cells = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(_fmt(v))}</td></tr>" for k, v in rows)
    return f"<table>{cells}</table>"


def render_html(report: Report, title: str | None = None) -> str:
    from kosimcse.evaluation.sts import markdown_table

    data = report.data
    summary = data.get("summary", {})
    title = title or f"KoSimCSE report: {report.run_dir.name}"
    sections: list[tuple[str, str, str]] = []

    rows = [(label, summary[key]) for key, label in _SUMMARY_FIELDS if summary.get(key) is not None]
    for name, info in data.get("models", {}).items():
        rows.append((f"Encoder ({name})", f"{info['path']} | pooling {info['pooling']} | prefix {info['prefix']!r} | "
                                          f"max_length {info['max_length']} | {info['dtype']}"))
    body = _key_value_table(rows) if rows else "<p>No summary.json: the run may not have finished.</p>"
    stats = data.get("corpus_stats")
    if stats:
        flat = [(k, v) for k, v in stats.items() if not isinstance(v, (dict, list))]
        body += "<h3>Training corpus (corpus/stats.json)</h3>" + _key_value_table(flat)
    sections.append(("summary", "Run summary", body))

    if "curves" in report.figures:
        sections.append(("curves", "Training curves", _img(report, "curves", "loss and dev Spearman over steps")))

    results = data.get("results") or {}
    if results:
        body = "<p class='muted'>All 8 metrics (Pearson/Spearman x100) of the exported best model, from summary.json.</p>"
        for task, metrics in results.items():
            body += f"<h3>{_esc(task)}</h3>" + markdown_to_html(markdown_table({"after (best)": metrics}))
        sections.append(("metrics", "STS metrics", body))

    sts = data.get("sts") or {}
    if len(sts) > 1:
        table_rows = dict(sts)
        table_rows["after - before"] = {key: sts["after"][key] - sts["before"][key] for key in sts["after"]}
        body = (f"<p>{_esc(data['task'])}, both models embedded with the trained model's pooling and prefix. "
                f"Before: <code>{_esc(data['models']['before']['path'])}</code>.</p>"
                + re.sub(r"<tr>(\s*<td[^>]*>after - before)", r'<tr class="delta">\1',
                         markdown_to_html(markdown_table(table_rows)))
                + f"<p class='muted'>Measured by this report ({_esc(data['models']['after']['dtype'])}); "
                "the tables above come from the run's own evaluation.</p>")
        sections.append(("before-after", "Before / after training", body))

    retrieval = data.get("domain_retrieval") or {}
    if retrieval:
        keys = ("mrr@10", "r@1", "r@10", "mrr@10_se", "queries")
        rows = {**retrieval, **({"after - before": {k: retrieval["after"][k] - retrieval["before"][k] for k in keys[:3]}}
                                if "before" in retrieval else {})}
        body = ("<p>Label-free: each held-out document gives a pseudo-query (its title, else one of its sentences) "
                f"and a passage (its body, else its other sentences); {_esc(data['domain_source'])}.</p><table><tr>"
                "<th>Model</th>" + "".join(f"<th>{k}</th>" for k in keys) + "</tr>"
                + "".join(f"<tr><td>{_esc(n)}</td>" + "".join(f"<td class='num'>{_fmt(v.get(k))}</td>" for k in keys)
                          + "</tr>" for n, v in rows.items()) + "</table>" + _img(report, "domain", "domain score"))
        sections.append(("domain", "Domain score (held-out retrieval)", body))

    if "scatter" in report.figures:
        body = (_img(report, "scatter", "gold score vs cosine") +
                "<p class='muted'>Black bars: median cosine per gold-score bucket; points jittered horizontally.</p>"
                + _img(report, "histograms", "cosine histograms by gold bucket")
                + "<p class='muted'>Random pairs: two different sentences of the set drawn at random.</p>")
        sections.append(("sts-plots", f"Predicted similarity on {data['task']}", body))

    geometry = data.get("geometry") or {}
    if geometry:
        columns = ("Model", "Data", "Alignment", "Uniformity", "Positive pairs", "Points", "Positives are")
        header = "<tr>" + "".join(f"<th>{c}</th>" for c in columns) + "</tr>"
        cells = ""
        for name, per in geometry.items():
            for dataset, v in per.items():
                cells += (f"<tr><td>{_esc(name)}</td><td>{_esc(dataset)}</td>"
                          f"<td class='num'>{_small(v['alignment'])}</td><td class='num'>{_small(v['uniformity'])}</td>"
                          f"<td class='num'>{v['positive_pairs']}</td><td class='num'>{v['points']}</td>"
                          f"<td>{_esc(v['positives'])}</td></tr>")
        body = ("<p>Wang &amp; Isola (2020) on L2-normalised embeddings; lower is better for both. Alignment: mean "
                "squared distance of positive pairs (0-4). Uniformity: log of the mean Gaussian potential "
                "exp(-2 d<sup>2</sup>) over pairs of distinct sentences (0 = collapsed).</p>"
                f"<table>{header}{cells}</table>" + _img(report, "geometry", "alignment vs uniformity"))
        source = data.get("domain_source")
        if source:
            body += f"<p class='muted'>Domain sample: {data['domain_sample']} sentences from {_esc(source)}.</p>"
        sections.append(("geometry", "Alignment and uniformity", body))

    neighbours = data.get("neighbours") or {}
    if neighbours:
        names = list(neighbours)
        body = ("<p>Queries drawn from the domain sample, searched by cosine in the same sample (the query itself "
                "left out). Each cell: cosine, then the neighbour.</p>")
        for i, example in enumerate(neighbours[names[-1]]):
            body += f"<h3>{_esc(example['query'])}</h3><table class='nn'><tr>" + "".join(f"<th>{_esc(n)}</th>" for n in names) + "</tr>"
            depth = max(len(neighbours[n][i]["neighbours"]) for n in names)
            for rank in range(depth):
                body += "<tr>"
                for n in names:
                    hits = neighbours[n][i]["neighbours"]
                    body += (f"<td>{hits[rank]['score']:.3f} &nbsp; {_esc(hits[rank]['text'])}</td>"
                             if rank < len(hits) else "<td></td>")
                body += "</tr>"
            body += "</table>"
        sections.append(("neighbours", "Nearest-neighbour examples", body))

    timings = data.get("timings") or {}
    notes = "".join(f"<p class='note'>{_esc(n)}</p>" for n in report.notes)
    nav = "<nav>" + "".join(f'<a href="#{a}">{_esc(t)}</a>' for a, t, _ in sections) + "</nav>"
    footer = ("<p class='muted'>Report encoding time: "
              + ", ".join(f"{_esc(k)} {v:.1f} s" for k, v in timings.items()) + "</p>") if timings else ""
    parts = [f"<h1>{_esc(title)}</h1>", f"<p class='muted'>Run folder: <code>{_esc(report.run_dir)}</code></p>",
             nav, notes] + [_section(a, t, b) for a, t, b in sections] + [footer]
    return ("<!DOCTYPE html>\n<html lang=\"ko\"><head><meta charset=\"utf-8\">"
            f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n")


def write_report(run_dir, out=None, before_model=None, domain_texts=None, **options) -> Path:
    """Write ``out`` (default ``RUN/report.html``): one HTML file with every plot embedded; return its path.

    ``options`` go to :func:`build_report` (task, sample, queries, k, batch_size, device, dtype, data_dir, seed).
    """
    report = build_report(run_dir, before_model=before_model, domain_texts=domain_texts, **options)
    out = Path(out) if out is not None else Path(run_dir) / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(report), encoding="utf-8")
    return out
