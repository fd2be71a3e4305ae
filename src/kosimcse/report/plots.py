"""Report figures (matplotlib, no pyplot state): training curves, STS scatter, similarity histograms, geometry.

Every function returns a ``matplotlib.figure.Figure``; ``png_bytes`` renders and frees it. Figures
are built on ``Figure`` objects directly, so no GUI backend or global pyplot state is touched.
Plot text stays ASCII: matplotlib's default DejaVu fonts have no Hangul glyphs and many machines
have no Korean font at all (``fc-list :lang=ko`` empty), so Korean examples go into the HTML instead.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from scipy.stats import spearmanr

SCORE_BUCKETS = ((0.0, 1.0), (1.0, 2.0), (2.0, 3.0), (3.0, 4.0), (4.0, 5.0))
_MODEL_COLOURS = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd")  # before in red, after in blue


def png_bytes(fig: Figure, dpi: int = 100) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    fig.clear()
    return buf.getvalue()


def training_curves(records: Sequence[Mapping], metric: str = "eval_cosine_spearman") -> Figure:
    """Training loss and the dev metric against the global step, the best dev point marked."""
    loss = [(r["step"], r["loss"]) for r in records if isinstance(r.get("loss"), (int, float)) and "step" in r]
    dev = [(r["step"], r[metric]) for r in records if isinstance(r.get(metric), (int, float)) and "step" in r]
    lr = [(r["step"], r["learning_rate"]) for r in records
          if isinstance(r.get("learning_rate"), (int, float)) and "step" in r]
    fig = Figure(figsize=(11, 3.8))
    ax_loss, ax_dev = fig.subplots(1, 2)
    if loss:
        steps, values = zip(*loss)
        ax_loss.plot(steps, values, color="#444444", lw=1.2, marker="." if len(loss) < 50 else None, label="train loss")
        ax_loss.set_ylabel("contrastive loss")
    if lr:
        ax_lr = ax_loss.twinx()
        steps, values = zip(*lr)
        ax_lr.plot(steps, values, color="#ff7f0e", lw=1, ls="--", label="learning rate")
        ax_lr.set_ylabel("learning rate", color="#ff7f0e")
        ax_lr.tick_params(axis="y", colors="#ff7f0e")
        ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    ax_loss.set_title("Training loss" if loss else "Training loss (no records)")
    ax_loss.set_xlabel("step")
    ax_loss.grid(alpha=0.3)
    if dev:
        steps, values = zip(*dev)
        ax_dev.plot(steps, values, color="#1f77b4", marker="o", ms=4, lw=1.5)
        finite = [i for i, v in enumerate(values) if np.isfinite(v)]  # a collapsed model evaluates to NaN
        if finite:
            best = max(finite, key=values.__getitem__)
            ax_dev.scatter([steps[best]], [values[best]], s=120, facecolors="none", edgecolors="#d62728", lw=2,
                           zorder=3, label=f"best {values[best]:.2f} @ step {steps[best]}")
            ax_dev.legend(loc="lower right")
    label = metric.removeprefix("eval_").replace("_", " ")
    ax_dev.set_title(f"Dev {label} (x100)" if dev else f"Dev {label} (no evaluations)")
    ax_dev.set_xlabel("step")
    ax_dev.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def score_scatter(models: Mapping[str, tuple[np.ndarray, np.ndarray]], task: str = "korsts-test") -> Figure:
    """Per model ``{name: (gold, cosine)}``: gold score against predicted cosine, Spearman in the title."""
    n = max(len(models), 1)
    fig = Figure(figsize=(5.2 * n, 4.4))
    axes = np.atleast_1d(fig.subplots(1, n))
    for i, (ax, (name, (gold, cosine))) in enumerate(zip(axes, models.items())):
        rho = spearmanr(gold, cosine)[0] * 100
        jitter = np.random.default_rng(0).uniform(-0.06, 0.06, size=len(gold))  # gold scores repeat: spread the stripes
        ax.scatter(np.asarray(gold) + jitter, cosine, s=6, alpha=0.35, color=_MODEL_COLOURS[i % len(_MODEL_COLOURS)],
                   edgecolors="none")
        for lo, hi in SCORE_BUCKETS:
            inside = (gold >= lo) & ((gold < hi) if hi < 5 else (gold <= hi))
            if inside.any():
                ax.plot([lo, hi], [np.median(cosine[inside])] * 2, color="black", lw=2)
        ax.set_title(f"{name}: {task}\nSpearman {rho:.2f} (n={len(gold)})")
        ax.set_xlabel("gold similarity score (0-5)")
        ax.set_ylabel("cosine of the two embeddings")
        ax.set_xlim(-0.3, 5.3)
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.grid(alpha=0.3)
    axes[0].plot([], [], color="black", lw=2, label="bucket median")
    axes[0].legend(loc="lower right")
    fig.tight_layout()
    return fig


def similarity_histograms(models: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]]) -> Figure:
    """Per model ``{name: (gold, pair_cosine, random_pair_cosine)}``: cosine distributions by gold bucket.

    A good STS space separates the buckets; random pairs show the baseline (anisotropy pushes
    them, and everything, towards 1).
    """
    n = max(len(models), 1)
    fig = Figure(figsize=(5.2 * n, 4.0))
    axes = np.atleast_1d(fig.subplots(1, n, sharey=True))
    colours = ("#313695", "#4575b4", "#74add1", "#f46d43", "#a50026")
    for ax, (name, (gold, cosine, random_cosine)) in zip(axes, models.items()):
        # Bins over the observed range: an anisotropic model puts everything in [0.7, 1], a fixed [0, 1] grid would hide it.
        bins = np.histogram_bin_edges(np.concatenate([cosine, random_cosine]), bins=25)
        for (lo, hi), colour in zip(SCORE_BUCKETS, colours):
            inside = (gold >= lo) & ((gold < hi) if hi < 5 else (gold <= hi))
            if inside.any():
                ax.hist(cosine[inside], bins=bins, density=True, histtype="step", lw=1.6, color=colour,
                        label=f"gold {lo:g}-{hi:g} (n={int(inside.sum())})")
        if len(random_cosine):
            ax.hist(random_cosine, bins=bins, density=True, color="#999999", alpha=0.35,
                    label=f"random pairs (n={len(random_cosine)})")
        ax.set_title(f"{name}: cosine by gold bucket")
        ax.set_xlabel("cosine")
        ax.ticklabel_format(axis="x", useOffset=False)
        ax.xaxis.set_major_locator(MaxNLocator(5))  # long labels when cosines crowd near 1
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    axes[0].set_ylabel("density")
    fig.tight_layout()
    return fig


def geometry_plot(points: Mapping[str, Mapping[str, Mapping[str, float]]]) -> Figure:
    """``{model: {dataset: {"alignment", "uniformity"}}}`` on the alignment-uniformity plane.

    Both are lower-is-better, so better models sit towards the lower left; an arrow joins the
    same dataset from the first model to the last (before -> after).
    """
    fig = Figure(figsize=(6.4, 4.8))
    ax = fig.subplots()
    markers = ("o", "s", "^", "D")
    datasets = list(dict.fromkeys(d for per_model in points.values() for d in per_model))
    for i, (model, per_model) in enumerate(points.items()):
        for j, dataset in enumerate(datasets):
            if dataset in per_model:
                value = per_model[dataset]
                colour = _MODEL_COLOURS[i % len(_MODEL_COLOURS)]
                # The first model hollow and larger, so an unchanged point stays visible under the last one.
                style = dict(s=150, facecolors="none", edgecolors=colour, linewidths=2) if i == 0 and len(points) > 1 \
                    else dict(s=60, color=colour)
                ax.scatter(value["uniformity"], value["alignment"], marker=markers[j % len(markers)],
                           label=f"{model} / {dataset}", zorder=3, **style)
    names = list(points)
    if len(names) >= 2:
        first, last = points[names[0]], points[names[-1]]
        for dataset in datasets:
            if dataset in first and dataset in last:
                ax.annotate("", xy=(last[dataset]["uniformity"], last[dataset]["alignment"]),
                            xytext=(first[dataset]["uniformity"], first[dataset]["alignment"]),
                            arrowprops=dict(arrowstyle="->", color="#555555", lw=1.2))
    ax.set_xlabel("uniformity  (log E exp(-2|f(x)-f(y)|^2), lower = more spread)")
    ax.set_ylabel("alignment  (E |f(x)-f(x+)|^2, lower = closer positives)")
    ax.set_title("Alignment vs uniformity")
    ax.grid(alpha=0.3)
    ax.margins(0.15)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def domain_plot(scores: Mapping[str, Mapping[str, float]]) -> Figure:
    """``{model: {"mrr@10", "r@1", "r@10"}}`` as grouped bars: the label-free domain score before and after."""
    fig = Figure(figsize=(6.4, 3.6))
    ax = fig.subplots()
    keys, width = ("mrr@10", "r@1", "r@10"), 0.8 / max(len(scores), 1)
    for i, (model, values) in enumerate(scores.items()):
        xs = np.arange(len(keys)) + i * width
        bars = ax.bar(xs, [values[k] for k in keys], width, label=model, color=_MODEL_COLOURS[i % len(_MODEL_COLOURS)])
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.set_xticks(np.arange(len(keys)) + width * (len(scores) - 1) / 2, keys)
    ax.set_ylabel("held-out retrieval (x100)")
    ax.set_title("Domain score: pseudo-query -> own passage among all held-out passages")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
