"""One self-contained HTML report for a training run: summary, curves, STS plots, geometry, neighbours."""

from __future__ import annotations

import base64
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import numpy as np

from kosimcse.errors import KoSimCSEError
from kosimcse.evaluation import geometry
from kosimcse.evaluation.similarity import pairwise_cosine
from kosimcse.evaluation.sts import METRIC_KEYS, StsEvaluator, fmt_number, sts_metrics
from kosimcse.report import plots

DEFAULT_SAMPLE = 300
# Dropout views cost two more passes per model; alignment is a plain mean over pairs, and a few hundred pin it down.
DEFAULT_ALIGN_SAMPLE = 128
MAX_SAMPLE = 2000

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
    """``n`` non-empty lines drawn uniformly from a text file of any size (two streaming passes), file order kept."""
    from kosimcse.data.readers import read_text_lines

    def texts():
        return (text for _, line in read_text_lines(path) if (text := line.strip()))

    count = sum(1 for _ in texts())
    keep = set(np.random.default_rng(seed).choice(count, min(n, count), replace=False).tolist())
    return [text for i, text in enumerate(texts()) if i in keep]


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


def _default_domain(run_dir: Path, summary: dict, notes: list[str]) -> Path | None:
    """The run's own ``eval_domain`` held-out file (so the report shows the domain score the run was selected on),
    else the corpus it trained on."""
    recorded = (summary.get("domain") or {}).get("file")
    if recorded:
        if Path(recorded).is_file():
            return Path(recorded)
        # the path is as the run was given it, relative to the folder training ran from
        notes.append(f"summary.json names the held-out file {recorded}, not found from here: pass --domain for the "
                     "domain score")
    sentences = run_dir / "corpus" / "sentences.txt"
    return sentences if sentences.is_file() else None


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
    """Read a run folder and measure its exported model (and ``before_model``; ``"base"``: the run's start) on the
    ``task`` STS set and ``sample`` lines of ``domain_texts`` (default: the run's ``eval_domain`` file, else
    ``RUN/corpus/sentences.txt``), ``align_sample`` of them embedded twice more with dropout on, for alignment."""
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
    report = Report(run_dir, data=dict(run_dir=str(run_dir), summary=summary, results=summary.get("results", {})))
    data = report.data
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

    after = KoSimCSE.from_pretrained(exported, device=device, dtype=dtype)
    models = {"after": after}
    if before_model is not None:
        # Same pooling, prefix and length as the trained model: the comparison is about the weights.
        models = {"before": KoSimCSE.from_pretrained(
            before_model, pooling=after.pooling, prefix=after.prefix, max_length=after.max_length, device=device,
            dtype=dtype, prompt_template=after.module.config.prompt_template or None), **models}
    data["models"] = {name: {"path": str(exported if name == "after" else before_model), "pooling": enc.pooling,
                             "prefix": enc.prefix, "max_length": enc.max_length, "dtype": enc.dtype}
                      for name, enc in models.items()}

    sts = StsEvaluator.from_task(task, data_dir=data_dir)
    if domain_texts is None:
        domain_texts = _default_domain(run_dir, summary, report.notes)
    domain, scored = [], None
    if domain_texts is not None:
        data["domain_source"] = str(domain_texts)
        if (docs := _documents(Path(domain_texts))) is None:
            domain = sample_lines(Path(domain_texts), sample, seed=seed)
        else:  # held-out documents: the domain score, and their sentences for geometry and neighbours
            domain = _pick(list(dict.fromkeys(s for d in docs for s in d.sentences)), sample, seed)
            if sum(bool(d.title) or len(d.sentences) > 1 for d in docs) >= 2:
                scored = docs
            else:  # single-sentence documents (NSMC reviews) give no pseudo-query
                report.notes.append(f"{domain_texts}: fewer than 2 held-out documents with a title or a second "
                                    "sentence, so there is no domain score; domain geometry and neighbours use their "
                                    "sentences")
        if len(domain) < 2:
            report.notes.append(f"domain sample has {len(domain)} sentence(s): domain geometry left out")
            domain = []
    data["domain_sample"] = len(domain)
    align_texts = _pick(domain, align_sample, seed + 2)

    histograms, domain_embeddings = {}, {}
    data.update(task=task, sts={}, geometry={})
    for name, encoder in models.items():
        say(f"{name}: embedding {len(sts.sentences)} {task} sentences")
        embeddings = encoder.encode(sts.sentences, batch_size=batch_size, show_progress=False)
        left, right = embeddings[sts.left], embeddings[sts.right]
        data["sts"][name] = sts_metrics(left, right, sts.gold)
        cosine = np.asarray(pairwise_cosine(left, right))
        histograms[name] = (sts.gold, cosine, _random_pair_cosines(embeddings, random_pairs, seed))
        data["geometry"][name] = {task: geometry.sts_geometry(
            sts.pairs, embeddings=dict(zip(sts.sentences, embeddings)), max_points=MAX_SAMPLE, seed=seed)}
        if domain:
            say(f"{name}: embedding {len(domain)} domain sentences (+ 2 dropout views of {len(align_texts)})")
            domain_embeddings[name] = encoder.encode(domain, batch_size=batch_size, show_progress=False)
            view1, view2 = geometry.dropout_views(encoder, align_texts, batch_size=batch_size, seed=seed)
            data["geometry"][name]["domain"] = geometry.corpus_geometry(
                view1, view2, domain_embeddings[name], max_points=MAX_SAMPLE, seed=seed)
        if scored:
            from kosimcse.evaluation.domain import domain_scores, kosimcse_encoder

            say(f"{name}: domain retrieval over {len(scored)} held-out documents")
            data.setdefault("domain_retrieval", {})[name] = domain_scores(kosimcse_encoder(encoder, batch_size), scored)
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


# The page and its sections are the template; here, which sections the report has, in page order.
SECTIONS = [
    ("summary", "Run summary", lambda report: True),
    ("curves", "Training curves", lambda report: "curves" in report.figures),
    ("metrics", "STS metrics", lambda report: report.data.get("results")),
    ("before-after", "Before / after training", lambda report: len(report.data.get("sts") or {}) >= 2),
    ("sts-plots", "Predicted similarity on {task}", lambda report: "scatter" in report.figures),
    ("domain", "Domain score (held-out retrieval)", lambda report: report.data.get("domain_retrieval")),
    ("geometry", "Alignment and uniformity", lambda report: report.data.get("geometry")),
    ("neighbours", "Nearest-neighbour examples", lambda report: report.data.get("neighbours")),
]
_ENV = jinja2.Environment(loader=jinja2.PackageLoader("kosimcse", "resources/report"), autoescape=True,
                          trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
# Table numbers: 4 significant digits (a collapsed model's values near 0 keep theirs), large counts as integers.
_ENV.filters.update(repr=repr, num=lambda v, spec=None: fmt_number(v, spec or (".4g" if abs(v) < 1e4 else ",.0f")))
_ENV.globals.update(zip=zip, zip_longest=itertools.zip_longest, metric_keys=METRIC_KEYS)


def render_html(report: Report, title: str | None = None) -> str:
    sections = [(anchor, heading.format_map(report.data)) for anchor, heading, shown in SECTIONS if shown(report)]
    figures = {name: base64.b64encode(png).decode("ascii") for name, png in report.figures.items()}
    return _ENV.get_template("page.html").render(
        title=title or f"KoSimCSE report: {report.run_dir.name}", run_dir=report.run_dir, notes=report.notes,
        sections=sections, data=report.data, figures=figures)


def write_report(run_dir, out=None, before_model=None, domain_texts=None, **options) -> Path:
    """Write ``out`` (default ``RUN/report.html``), one HTML file with every plot embedded; ``options`` go to
    :func:`build_report`. Returns the path."""
    report = build_report(run_dir, before_model=before_model, domain_texts=domain_texts, **options)
    out = Path(out) if out is not None else Path(run_dir) / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(report), encoding="utf-8")
    return out
