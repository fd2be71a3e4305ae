"""One self-contained HTML report for a training run: summary, curves, metric tables, STS plots, geometry, neighbours."""

from __future__ import annotations

import base64
import html
import itertools
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import markdown
import numpy as np
from markupsafe import Markup

from kosimcse.errors import KoSimCSEError
from kosimcse.evaluation import geometry
from kosimcse.evaluation.similarity import pairwise_cosine
from kosimcse.evaluation.sts import StsEvaluator, fmt_number, markdown_table, sts_metrics
from kosimcse.report import plots

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
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines() if path.is_file() else []
    for line in filter(str.strip, lines):
        try:
            record = json.loads(line)
        except ValueError:
            record = None
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
        elif (slot := int(rng.integers(0, seen))) < n:
            reservoir[slot] = (lineno, text)
    return [text for _, text in sorted(reservoir)]


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise KoSimCSEError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(value, dict):
        raise KoSimCSEError(f"{path}: expected a JSON object")
    return value


def _documents(path: Path):
    """The documents of a ``heldout.jsonl``/``documents.jsonl`` of ``kosimcse prepare``; None for a text file."""
    if path.suffix.lower() != ".jsonl" or not path.is_file():
        return None
    with open(path, encoding="utf-8", errors="replace") as fh:
        try:
            first = json.loads(fh.readline())
        except ValueError:
            return None
    if not isinstance(first, dict) or not isinstance(first.get("sentences"), list):
        return None
    from kosimcse.data.documents import load_documents

    return load_documents(path)


def _pick(texts: list[str], n: int, seed: int) -> list[str]:
    """``n`` of ``texts`` drawn without replacement, in their order."""
    return [texts[i] for i in sorted(np.random.default_rng(seed).choice(len(texts), min(n, len(texts)), replace=False))]


def _random_pair_cosines(embeddings: np.ndarray, n: int, seed: int) -> np.ndarray:
    if len(embeddings) < 2:
        return np.empty(0)
    rng = np.random.default_rng(seed)
    left = rng.integers(0, len(embeddings), size=n)
    right = (left + rng.integers(1, len(embeddings), size=n)) % len(embeddings)  # never a sentence with itself
    return np.asarray(pairwise_cosine(embeddings[left], embeddings[right]))


def build_report(run_dir, before_model=None, domain_texts=None, *, task: str = "korsts-test",
                 sample: int = DEFAULT_SAMPLE, align_sample: int = DEFAULT_ALIGN_SAMPLE, queries: int = 5, k: int = 3,
                 random_pairs: int = 2000, batch_size: int = 64, device: str | None = None, dtype: str = "auto",
                 data_dir=None, seed: int = 0, progress=None) -> Report:
    """Read a run folder, embed a bounded amount of text with its exported model (and ``before_model``), measure.

    Per model: the ``task`` STS set once, ``sample`` (<= 2000) lines of the ``domain_texts`` file (default
    ``RUN/corpus/sentences.txt``) once, and ``align_sample`` of them twice more with dropout on, for alignment.
    ``before_model`` is a model folder/id, or ``"base"`` for the model the run started from.
    """
    say = progress or (lambda message: None)
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise KoSimCSEError(f"run folder not found: {run_dir}")
    if not 2 <= sample <= MAX_SAMPLE:
        raise KoSimCSEError(f"sample must be between 2 and {MAX_SAMPLE}, not {sample}")
    if align_sample < 1:
        raise KoSimCSEError(f"align_sample must be at least 1, not {align_sample}")
    summary = _read_json(run_dir / "summary.json") if (run_dir / "summary.json").is_file() else {}
    records, bad_lines = read_metrics(run_dir / "metrics.jsonl")
    if not summary and not records:
        raise KoSimCSEError(f"{run_dir} has neither summary.json nor metrics.jsonl: is it a `kosimcse train` output_dir?")
    report = Report(run_dir=run_dir)
    timings: dict[str, float] = {}
    data = report.data
    data.update(run_dir=str(run_dir), summary=summary, results=summary.get("results", {}), timings=timings)
    if bad_lines:
        report.notes.append(f"metrics.jsonl: {bad_lines} unreadable line(s) skipped")
    if (run_dir / "corpus" / "stats.json").is_file():
        try:
            data["corpus_stats"] = _read_json(run_dir / "corpus" / "stats.json")
        except KoSimCSEError:
            report.notes.append("corpus/stats.json is not valid JSON; left out")
    data["evaluations"] = [{k: v for k, v in r.items() if k == "step" or k.startswith("eval_")}
                           for r in records if "eval_cosine_spearman" in r]
    if records:
        report.figures["curves"] = plots.png_bytes(plots.training_curves(records))

    candidates = [Path(summary["exported"])] if summary.get("exported") else []
    exported = next((p for p in candidates + [run_dir / "best"] if p.is_dir()), None)
    if exported is None:
        report.notes.append("no exported model (best/) in the run folder: embedding sections left out")
        return report
    if before_model == "base" and not Path("base").exists():
        before_model = summary.get("resolved_model") or summary.get("model")
        if not before_model:
            raise KoSimCSEError(f"--before base: {run_dir}/summary.json does not name the model training started from")

    from kosimcse.inference.encoder import KoSimCSE

    start = time.perf_counter()
    after = KoSimCSE.from_pretrained(exported, device=device, dtype=dtype)
    models = {"after": after}
    if before_model is not None:
        # Same pooling, prefix and length as the trained model: the comparison is about the weights.
        models = {"before": KoSimCSE.from_pretrained(
            before_model, pooling=after.pooling, prefix=after.prefix, max_length=after.max_length, device=device,
            dtype=dtype, prompt_template=after.module.config.prompt_template or None), **models}
    timings["load_models_s"] = time.perf_counter() - start
    data["models"] = {name: {"path": str(exported if name == "after" else before_model), "pooling": enc.pooling,
                             "prefix": enc.prefix, "max_length": enc.max_length, "dtype": enc.dtype}
                      for name, enc in models.items()}

    sts = StsEvaluator.from_task(task, data_dir=data_dir)
    if domain_texts is None and (run_dir / "corpus" / "sentences.txt").is_file():
        domain_texts = run_dir / "corpus" / "sentences.txt"
    docs = _documents(Path(domain_texts)) if domain_texts is not None else None
    scored = docs
    if docs is not None and sum(bool(d.title) or len(d.sentences) > 1 for d in docs) < 2:
        # single-sentence documents (NSMC reviews) give no pseudo-query: geometry and neighbours still use them
        report.notes.append(f"{domain_texts}: fewer than 2 held-out documents with a title or a second sentence, "
                            "so there is no domain score; domain geometry and neighbours use their sentences")
        scored = None
    if docs is not None:  # held-out documents: the domain score, and their sentences for geometry and neighbours
        domain = _pick(list(dict.fromkeys(s for d in docs for s in d.sentences)), sample, seed)
    else:
        domain = sample_lines(Path(domain_texts), sample, seed=seed) if domain_texts is not None else []
    if domain_texts is not None:
        data["domain_source"] = str(domain_texts)
        if len(domain) < 2:
            report.notes.append(f"domain sample has {len(domain)} sentence(s): domain geometry left out")
            domain = []
    data["domain_sample"] = len(domain)
    align_texts = _pick(domain, align_sample, seed + 2)

    histograms, domain_embeddings = {}, {}
    data.update(task=task, sts={}, geometry={})
    for name, encoder in models.items():
        say(f"{name}: embedding {len(sts.sentences)} {task} sentences")
        start = time.perf_counter()
        embeddings = encoder.encode(sts.sentences, batch_size=batch_size, show_progress=False)
        timings[f"{name}_{task}_s"] = time.perf_counter() - start
        left, right = embeddings[sts.left], embeddings[sts.right]
        data["sts"][name] = sts_metrics(left, right, sts.gold)
        cosine = np.asarray(pairwise_cosine(left, right))
        histograms[name] = (sts.gold, cosine, _random_pair_cosines(embeddings, random_pairs, seed))
        data["geometry"][name] = {task: geometry.sts_geometry(
            sts.pairs, embeddings=dict(zip(sts.sentences, embeddings)), max_points=MAX_SAMPLE, seed=seed)}
        if domain:
            say(f"{name}: embedding {len(domain)} domain sentences (+ 2 dropout views of {len(align_texts)})")
            start = time.perf_counter()
            domain_embeddings[name] = encoder.encode(domain, batch_size=batch_size, show_progress=False)
            view1, view2 = geometry.dropout_views(encoder, align_texts, batch_size=batch_size, seed=seed)
            timings[f"{name}_domain_s"] = time.perf_counter() - start
            data["geometry"][name]["domain"] = geometry.corpus_geometry(
                view1, view2, domain_embeddings[name], max_points=MAX_SAMPLE, seed=seed)
        if scored:
            from kosimcse.evaluation.domain import domain_scores, kosimcse_encoder

            say(f"{name}: domain retrieval over {len(scored)} held-out documents")
            start = time.perf_counter()
            data.setdefault("domain_retrieval", {})[name] = domain_scores(kosimcse_encoder(encoder, batch_size), scored)
            timings[f"{name}_domain_retrieval_s"] = time.perf_counter() - start
    if scored:
        report.figures["domain"] = plots.png_bytes(plots.domain_plot(data["domain_retrieval"]))
    report.figures["scatter"] = plots.png_bytes(plots.score_scatter({n: h[:2] for n, h in histograms.items()}, task=task))
    report.figures["histograms"] = plots.png_bytes(plots.similarity_histograms(histograms))
    report.figures["geometry"] = plots.png_bytes(plots.geometry_plot(data["geometry"]))

    if domain and queries > 0:
        query_texts = _pick(domain, queries, seed + 1)
        data["neighbours"] = {}
        for name, embeddings in domain_embeddings.items():
            rows = dict(zip(domain, embeddings))
            data["neighbours"][name] = geometry.nearest_neighbours(
                lambda texts: np.stack([rows[t] for t in texts]), domain, query_texts, k=k, text_embeddings=embeddings)
    return report


# ---- HTML: each section is (anchor, title, body function); a body of None leaves the section out ----------------
# The page skeleton and CSS are a template; section bodies are built here and escaped with _esc.
_PAGE = jinja2.Environment(loader=jinja2.PackageLoader("kosimcse", "resources/report"), autoescape=True,
                           trim_blocks=True, keep_trailing_newline=True).get_template("page.html")


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def _cell(value) -> str:
    """A table cell: numbers right-aligned to 4 significant digits (a collapsed model's values near 0 keep theirs)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"<td class='num'>{_esc(fmt_number(value, '.4g' if abs(value) < 1e4 else ',.0f'))}</td>"
    return f"<td>{_esc(value)}</td>"


def _table(rows, header=None, css_class: str = "") -> str:
    """Rows of values; without ``header``, each row's first value is its header cell."""
    head = "<tr>" + "".join(f"<th>{_esc(h)}</th>" for h in header) + "</tr>" if header else ""
    cells = ("".join(map(_cell, row)) if header else f"<th>{_esc(row[0])}</th>" + "".join(map(_cell, row[1:]))
             for row in rows)
    tag = f"<table class='{css_class}'>" if css_class else "<table>"
    return tag + head + "".join(f"<tr>{c}</tr>" for c in cells) + "</table>"


def _metric_table(rows: dict) -> str:
    """``sts.markdown_table`` rendered by the ``markdown`` package's tables extension."""
    return markdown.markdown(markdown_table(rows), extensions=["tables"])


def _img(report: Report, name: str, alt: str) -> str:
    data = base64.b64encode(report.figures[name]).decode("ascii")
    return f'<img alt="{_esc(alt)}" src="data:image/png;base64,{data}">'


def _figures(*figures: tuple[str, str, str]):
    """A section body of ``(figure name, alt text, caption)``; left out when the run has no first figure."""
    def body(report: Report) -> str | None:
        if figures[0][0] not in report.figures:
            return None
        return "".join(_img(report, name, alt) + (f"<p class='muted'>{caption}</p>" if caption else "")
                       for name, alt, caption in figures)
    return body


def _summary_section(report: Report) -> str:
    data, summary = report.data, report.data.get("summary", {})
    rows = [(label, summary[key]) for key, label in _SUMMARY_FIELDS if summary.get(key) is not None]
    rows += [(f"Encoder ({name})", f"{m['path']} | pooling {m['pooling']} | prefix {m['prefix']!r} | "
                                   f"max_length {m['max_length']} | {m['dtype']}")
             for name, m in data.get("models", {}).items()]
    body = _table(rows) if rows else "<p>No summary.json: the run may not have finished.</p>"
    if data.get("corpus_stats"):
        body += "<h3>Training corpus (corpus/stats.json)</h3>" + _table(
            [(k, v) for k, v in data["corpus_stats"].items() if not isinstance(v, (dict, list))])
    return body


def _metrics_section(report: Report) -> str | None:
    results = report.data.get("results")
    if not results:
        return None
    return ("<p class='muted'>All 8 metrics (Pearson/Spearman x100) of the exported best model, from summary.json.</p>"
            + "".join(f"<h3>{_esc(task)}</h3>" + _metric_table({"after (best)": m}) for task, m in results.items()))


def _before_after_section(report: Report) -> str | None:
    data, sts = report.data, report.data.get("sts") or {}
    if len(sts) < 2:
        return None
    rows = {**sts, "after - before": {key: sts["after"][key] - sts["before"][key] for key in sts["after"]}}
    table = re.sub(r"<tr>(\s*<td[^>]*>after - before)", r'<tr class="delta">\1', _metric_table(rows))
    return (f"<p>{_esc(data['task'])}, both models embedded with the trained model's pooling and prefix. "
            f"Before: <code>{_esc(data['models']['before']['path'])}</code>.</p>{table}"
            f"<p class='muted'>Measured by this report ({_esc(data['models']['after']['dtype'])}); "
            "the tables above come from the run's own evaluation.</p>")


def _geometry_section(report: Report) -> str | None:
    data = report.data
    if not data.get("geometry"):
        return None
    rows = [(name, dataset, v["alignment"], v["uniformity"], v["positive_pairs"], v["points"], v["positives"])
            for name, per in data["geometry"].items() for dataset, v in per.items()]
    body = ("<p>Wang &amp; Isola (2020) on L2-normalised embeddings; lower is better for both. Alignment: mean "
            "squared distance of positive pairs (0-4). Uniformity: log of the mean Gaussian potential "
            "exp(-2 d<sup>2</sup>) over pairs of distinct sentences (0 = collapsed).</p>"
            + _table(rows, ("Model", "Data", "Alignment", "Uniformity", "Positive pairs", "Points", "Positives are"))
            + _img(report, "geometry", "alignment vs uniformity"))
    if data.get("domain_source"):
        body += (f"<p class='muted'>Domain sample: {data['domain_sample']} sentences from "
                 f"{_esc(data['domain_source'])}.</p>")
    return body


def _neighbours_section(report: Report) -> str | None:
    neighbours = report.data.get("neighbours")
    if not neighbours:
        return None
    body = ("<p>Queries drawn from the domain sample, searched by cosine in the same sample (the query itself "
            "left out). Each cell: cosine, then the neighbour.</p>")
    for examples in zip(*neighbours.values()):  # one query, each model's neighbours side by side
        rows = itertools.zip_longest(*(e["neighbours"] for e in examples))
        body += f"<h3>{_esc(examples[-1]['query'])}</h3>" + _table(
            [[f"{h['score']:.3f}\u00a0\u00a0{h['text']}" if h else "" for h in row] for row in rows], neighbours, "nn")
    return body


def _domain_section(report: Report) -> str | None:
    data, retrieval = report.data, report.data.get("domain_retrieval")
    if not retrieval:
        return None
    keys = ("mrr@10", "r@1", "r@10", "mrr@10_se", "queries")
    rows = [(name, *(v.get(k) for k in keys)) for name, v in retrieval.items()]
    if "before" in retrieval:
        rows.append(("after - before", *(retrieval["after"][k] - retrieval["before"][k] for k in keys[:3])))
    return ("<p>Label-free: each held-out document gives a pseudo-query (its title, else one of its sentences) and a "
            f"passage (its body, else its other sentences), searched in the whole pool; {_esc(data['domain_source'])}"
            ".</p>" + _table(rows, ("Model", *keys)) + _img(report, "domain", "domain score"))


# In page order; a new section is one more entry (its title may use the report data's fields, e.g. {task}).
SECTIONS = [
    ("summary", "Run summary", _summary_section),
    ("curves", "Training curves", _figures(("curves", "loss and dev Spearman over steps", ""))),
    ("metrics", "STS metrics", _metrics_section),
    ("before-after", "Before / after training", _before_after_section),
    ("sts-plots", "Predicted similarity on {task}", _figures(
        ("scatter", "gold score vs cosine",
         "Black bars: median cosine per gold-score bucket; points jittered horizontally."),
        ("histograms", "cosine histograms by gold bucket",
         "Random pairs: two different sentences of the set drawn at random."))),
    ("domain", "Domain score (held-out retrieval)", _domain_section),
    ("geometry", "Alignment and uniformity", _geometry_section),
    ("neighbours", "Nearest-neighbour examples", _neighbours_section),
]


def render_html(report: Report, title: str | None = None) -> str:
    sections = [(anchor, heading.format_map(report.data), Markup(body)) for anchor, heading, render in SECTIONS
                if (body := render(report)) is not None]
    return _PAGE.render(title=title or f"KoSimCSE report: {report.run_dir.name}", run_dir=report.run_dir,
                        notes=report.notes, sections=sections, timings=report.data.get("timings"))


def write_report(run_dir, out=None, before_model=None, domain_texts=None, **options) -> Path:
    """Write ``out`` (default ``RUN/report.html``), one HTML file with every plot embedded; ``options`` go to
    :func:`build_report`. Returns the path."""
    report = build_report(run_dir, before_model=before_model, domain_texts=domain_texts, **options)
    out = Path(out) if out is not None else Path(run_dir) / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(report), encoding="utf-8")
    return out
