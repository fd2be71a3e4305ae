"""Report figures, built on ``Figure`` objects (no pyplot state, no GUI backend) and rendered by ``png_bytes``."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from scipy.stats import spearmanr

from kosimcse.evaluation.domain import SCORE_KEYS

SCORE_BUCKETS = ((0.0, 1.0), (1.0, 2.0), (2.0, 3.0), (3.0, 4.0), (4.0, 5.0))
_MODEL_COLOURS = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd")  # before in red, after in blue


def png_bytes(fig: Figure, dpi: int = 100) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    fig.clear()
    return buf.getvalue()


def _panels(n: int, width: float, height: float, **subplots) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(width * n, height), layout="tight")
    return fig, np.atleast_1d(fig.subplots(1, n, **subplots))


def _label(ax, title: str, xlabel: str, ylabel: str | None = None) -> None:
    # ASCII only: matplotlib's default fonts have no Hangul and many machines no Korean font; Korean goes in the HTML.
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


def _buckets(gold: np.ndarray):
    """``(lo, hi, mask)`` per gold-score bucket that has pairs; the last bucket includes 5."""
    for lo, hi in SCORE_BUCKETS:
        inside = (gold >= lo) & ((gold < hi) if hi < 5 else (gold <= hi))
        if inside.any():
            yield lo, hi, inside


def training_curves(records: Sequence[Mapping]) -> Figure:
    """Training loss (and learning rate) and the dev metric against the global step, the best dev point marked."""
    (loss_steps, loss), (lr_steps, lr), (dev_steps, dev) = (
        tuple(zip(*[(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float)) and "step" in r]))
        or ((), ()) for key in ("loss", "learning_rate", "eval_cosine_spearman"))
    fig, (ax_loss, ax_dev) = _panels(2, 5.5, 3.8)
    if loss:
        ax_loss.plot(loss_steps, loss, color="#444444", lw=1.2, marker="." if len(loss) < 50 else None)
    if lr:
        ax_lr = ax_loss.twinx()
        ax_lr.plot(lr_steps, lr, color="#ff7f0e", lw=1, ls="--")
        ax_lr.set_ylabel("learning rate", color="#ff7f0e")
        ax_lr.tick_params(axis="y", colors="#ff7f0e")
        ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    _label(ax_loss, "Training loss" if loss else "Training loss (no records)", "step",
           "contrastive loss" if loss else None)
    if dev:
        ax_dev.plot(dev_steps, dev, color="#1f77b4", marker="o", ms=4, lw=1.5)
        finite = [i for i, v in enumerate(dev) if np.isfinite(v)]  # a collapsed model evaluates to NaN
        if finite:
            best = max(finite, key=dev.__getitem__)
            ax_dev.scatter([dev_steps[best]], [dev[best]], s=120, facecolors="none", edgecolors="#d62728", lw=2,
                           zorder=3, label=f"best {dev[best]:.2f} @ step {dev_steps[best]}")
            ax_dev.legend(loc="lower right")
    _label(ax_dev, "Dev cosine spearman " + ("(x100)" if dev else "(no evaluations)"), "step")
    return fig


def score_scatter(models: Mapping[str, tuple[np.ndarray, np.ndarray]], task: str = "korsts-test") -> Figure:
    """Per model ``{name: (gold, cosine)}``: gold score against predicted cosine, Spearman in the title."""
    fig, axes = _panels(max(len(models), 1), 5.2, 4.4)
    for i, (ax, (name, (gold, cosine))) in enumerate(zip(axes, models.items())):
        jitter = np.random.default_rng(0).uniform(-0.06, 0.06, size=len(gold))  # gold scores repeat: spread the stripes
        ax.scatter(np.asarray(gold) + jitter, cosine, s=6, alpha=0.35, color=_MODEL_COLOURS[i % len(_MODEL_COLOURS)],
                   edgecolors="none")
        for lo, hi, inside in _buckets(gold):
            ax.plot([lo, hi], [np.median(cosine[inside])] * 2, color="black", lw=2)
        _label(ax, f"{name}: {task}\nSpearman {spearmanr(gold, cosine)[0] * 100:.2f} (n={len(gold)})",
               "gold similarity score (0-5)", "cosine of the two embeddings")
        ax.set_xlim(-0.3, 5.3)
        ax.ticklabel_format(axis="y", useOffset=False)
    axes[0].plot([], [], color="black", lw=2, label="bucket median")
    axes[0].legend(loc="lower right")
    return fig


def similarity_histograms(models: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]]) -> Figure:
    """Per model ``{name: (gold, pair_cosine, random_pair_cosine)}``: cosine distributions by gold bucket. A good STS
    space separates the buckets; random pairs show the baseline (anisotropy pushes them towards 1)."""
    fig, axes = _panels(max(len(models), 1), 5.2, 4.0, sharey=True)
    colours = dict(zip(SCORE_BUCKETS, ("#313695", "#4575b4", "#74add1", "#f46d43", "#a50026")))
    for ax, (name, (gold, cosine, random_cosine)) in zip(axes, models.items()):
        # Bins over the observed range: an anisotropic model puts everything in [0.7, 1], a fixed [0, 1] grid would hide it.
        bins = np.histogram_bin_edges(np.concatenate([cosine, random_cosine]), bins=25)
        for lo, hi, inside in _buckets(gold):
            ax.hist(cosine[inside], bins=bins, density=True, histtype="step", lw=1.6, color=colours[lo, hi],
                    label=f"gold {lo:g}-{hi:g} (n={int(inside.sum())})")
        if len(random_cosine):
            ax.hist(random_cosine, bins=bins, density=True, color="#999999", alpha=0.35,
                    label=f"random pairs (n={len(random_cosine)})")
        _label(ax, f"{name}: cosine by gold bucket", "cosine")
        ax.ticklabel_format(axis="x", useOffset=False)
        ax.xaxis.set_major_locator(MaxNLocator(5))  # long labels when cosines crowd near 1
        ax.legend(fontsize=7, loc="upper left")
    axes[0].set_ylabel("density")
    return fig


def geometry_plot(points: Mapping[str, Mapping[str, Mapping[str, float]]]) -> Figure:
    """``{model: {dataset: {"alignment", "uniformity"}}}`` on the alignment-uniformity plane (lower left is better);
    an arrow joins each dataset's point from the first model to the last (before -> after)."""
    fig, (ax,) = _panels(1, 6.4, 4.8)
    datasets = list(dict.fromkeys(d for per_model in points.values() for d in per_model))
    for i, (model, per_model) in enumerate(points.items()):
        colour = _MODEL_COLOURS[i % len(_MODEL_COLOURS)]
        # The first model hollow and larger, so an unchanged point stays visible under the last one.
        style = dict(s=150, facecolors="none", edgecolors=colour, linewidths=2) if i == 0 and len(points) > 1 \
            else dict(s=60, color=colour)
        for j, dataset in enumerate(datasets):  # one marker per dataset, across models
            if dataset in per_model:
                ax.scatter(per_model[dataset]["uniformity"], per_model[dataset]["alignment"], marker="os^D"[j % 4],
                           label=f"{model} / {dataset}", zorder=3, **style)
    if len(points) > 1:
        first, last = list(points.values())[0], list(points.values())[-1]
        for dataset in (d for d in datasets if d in first and d in last):
            ax.annotate("", xy=(last[dataset]["uniformity"], last[dataset]["alignment"]),
                        xytext=(first[dataset]["uniformity"], first[dataset]["alignment"]),
                        arrowprops=dict(arrowstyle="->", color="#555555", lw=1.2))
    _label(ax, "Alignment vs uniformity", "uniformity  (log E exp(-2|f(x)-f(y)|^2), lower = more spread)",
           "alignment  (E |f(x)-f(x+)|^2, lower = closer positives)")
    ax.margins(0.15)
    ax.legend(fontsize=8, loc="best")
    return fig


def domain_plot(scores: Mapping[str, Mapping[str, float]]) -> Figure:
    """``{model: {"mrr@10", "r@1", "r@10"}}`` as grouped bars: the label-free domain score before and after."""
    fig, (ax,) = _panels(1, 6.4, 3.6)
    keys, width = SCORE_KEYS, 0.8 / max(len(scores), 1)
    for i, (model, values) in enumerate(scores.items()):
        xs = np.arange(len(keys)) + i * width
        bars = ax.bar(xs, [values[k] for k in keys], width, label=model, color=_MODEL_COLOURS[i % len(_MODEL_COLOURS)])
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.set_xticks(np.arange(len(keys)) + width * (len(scores) - 1) / 2, keys)
    ax.set_ylabel("held-out retrieval (x100)")
    ax.set_title("Domain score: pseudo-query -> own passage among all held-out passages")
    ax.legend(fontsize=8)
    return fig
