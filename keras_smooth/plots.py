"""Matplotlib figures for calibration.

Figures are built with `matplotlib.figure.Figure` directly (no pyplot, no
global backend change), so they work headless and inside notebooks alike.
Save them with `save_figure`.
"""

import io

import numpy as np
from matplotlib.figure import Figure

from keras_smooth import calibration

_GAP_COLOR = "#d62728"
_BAR_COLOR = "#1f77b4"


def _draw_reliability(ax, hist_ax, stats, label, bar_color=_BAR_COLOR):
    edges = stats["edges"]
    width = np.diff(edges)
    centres = edges[:-1] + width / 2
    filled = stats["counts"] > 0
    acc = np.where(filled, stats["accuracy"], 0.0)
    conf = np.where(filled, stats["confidence"], 0.0)
    ax.bar(edges[:-1][filled], acc[filled], width=width[filled], align="edge",
           color=bar_color, edgecolor="white", linewidth=0.8, label=f"{label} (ECE {100 * stats['ece']:.2f}%)")
    # Gap between accuracy and mean confidence in each non-empty bin.
    bottom = np.minimum(acc, conf)[filled]
    ax.bar(edges[:-1][filled], np.abs(conf - acc)[filled], bottom=bottom, width=width[filled],
           align="edge", color=_GAP_COLOR, alpha=0.35, hatch="//", edgecolor=_GAP_COLOR,
           linewidth=0.0, label="gap to mean confidence")
    ax.plot([0, 1], [0, 1], linestyle="--", color="0.3", linewidth=1.0, label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.legend(loc="upper left", fontsize="small", framealpha=0.85, edgecolor="none")
    ax.grid(alpha=0.25)
    if hist_ax is not None:
        total = max(stats["counts"].sum(), 1)
        hist_ax.bar(centres, stats["counts"] / total, width=width, color="0.55", edgecolor="white")
        hist_ax.set_xlim(0, 1)
        hist_ax.set_xlabel("confidence")
        hist_ax.set_ylabel("share")
        hist_ax.grid(alpha=0.25)


def reliability_diagram(labels, probs, num_bins=15, from_logits=False, title=None, label="model"):
    """Reliability diagram of top-label confidence, with a confidence histogram.

    Bars show the accuracy of each non-empty bin; hatched red marks the gap to
    the bin's mean confidence; the dashed diagonal is perfect calibration; the
    legend gives the ECE; the lower panel shows the share of samples per bin.

    Returns:
        a `matplotlib.figure.Figure`.

    Examples:
    >>> import numpy as np
    >>> from keras_smooth import plots
    >>> probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
    >>> fig = plots.reliability_diagram([0, 1, 1], probs, num_bins=10)
    >>> len(fig.axes)
    2
    """
    stats = calibration.bin_statistics(labels, probs, num_bins, from_logits)
    fig = Figure(figsize=(4.8, 5.6), layout="constrained")
    ax, hist_ax = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    _draw_reliability(ax, hist_ax, stats, label)
    ax.set_title(title or "Reliability diagram")
    return fig


def reliability_diagrams(results, labels, num_bins=15, from_logits=False, title=None):
    """Side-by-side reliability diagrams, one per entry of `results`.

    Args:
        results: mapping name -> `(N, K)` predictions of the same samples.
        labels: the shared labels.
    """
    names = list(results)
    if not names:
        raise ValueError("`results` is empty.")
    fig = Figure(figsize=(3.4 * len(names), 4.6), layout="constrained")
    axes = fig.subplots(2, len(names), sharex=True, squeeze=False,
                        gridspec_kw={"height_ratios": [3, 1]})
    for i, name in enumerate(names):
        stats = calibration.bin_statistics(labels, results[name], num_bins, from_logits)
        _draw_reliability(axes[0, i], axes[1, i], stats, "accuracy")
        axes[0, i].set_title(name)
        if i:
            axes[0, i].set_ylabel("")
            axes[1, i].set_ylabel("")
    if title:
        fig.suptitle(title)
    return fig


def classwise_reliability(labels, probs, classes=None, class_names=None, num_bins=15,
                          from_logits=False, title=None):
    """One reliability panel per chosen class: frequency of class j against p_j.

    This is the picture behind classwise ECE: every instance counts in every
    class's panel, binned by its predicted probability for that class.

    Args:
        classes: class indices to show (default: all, up to 10).
        class_names: optional names for all K classes.
    """
    ids, p = calibration.prepare(labels, probs, from_logits)
    k = p.shape[1]
    classes = list(range(min(k, 10))) if classes is None else [int(c) for c in classes]
    for c in classes:
        if not 0 <= c < k:
            raise ValueError(f"`classes` must be in [0, {k}), got {c}.")
    if class_names is not None and len(class_names) != k:
        raise ValueError(f"`class_names` must name all {k} classes, got {len(class_names)}.")
    edges = calibration.bin_edges(num_bins)
    cols = min(len(classes), 5)
    rows = int(np.ceil(len(classes) / cols))
    fig = Figure(figsize=(3.0 * cols, 3.0 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    index = np.asarray(calibration.bin_index(p, num_bins))
    for ax, c in zip(axes, classes):
        counts = np.bincount(index[:, c], minlength=num_bins)
        freq = np.bincount(index[:, c], weights=(ids == c).astype(float), minlength=num_bins)
        mean_p = np.bincount(index[:, c], weights=p[:, c], minlength=num_bins)
        filled = counts > 0
        gap = np.abs(freq - mean_p).sum() / len(ids)
        ax.bar(edges[:-1][filled], (freq / np.maximum(counts, 1))[filled], width=np.diff(edges)[filled],
               align="edge", color=_BAR_COLOR, edgecolor="white", label=f"cal. error {100 * gap:.2f}%")
        ax.plot((mean_p / np.maximum(counts, 1))[filled], (freq / np.maximum(counts, 1))[filled],
                "o", color=_GAP_COLOR, markersize=3, label="(mean p, frequency) per bin")
        ax.plot([0, 1], [0, 1], "--", color="0.3", linewidth=1.0)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        name = class_names[c] if class_names is not None else f"class {c}"
        ax.set_title(name, fontsize="medium")
        ax.set_xlabel(f"p({name})")
        ax.set_ylabel("frequency")
        ax.legend(loc="upper left", fontsize="x-small", frameon=False)
        ax.grid(alpha=0.25)
    for ax in axes[len(classes):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    return fig


def save_figure(fig, path, dpi=120):
    """Write `fig` to `path` (format from the extension) and return the path."""
    fig.savefig(path, dpi=dpi)
    return path


def figure_to_array(fig, dpi=100):
    """RGBA uint8 image `(H, W, 4)` of a figure (for TensorBoard)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    buffer.seek(0)
    from matplotlib.image import imread

    return (imread(buffer) * 255).astype("uint8")
