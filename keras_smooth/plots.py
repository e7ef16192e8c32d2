"""Matplotlib figures for calibration and for the analyses of `keras_smooth.analysis`.

Figures are built with `matplotlib.figure.Figure` directly (no pyplot, no
global backend change), so they work headless and inside notebooks alike.
Save them with `save_figure`.
"""

import io
import os
from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure

from keras_smooth import _checks, calibration

_GAP_COLOR = "#d62728"
_BAR_COLOR = "#1f77b4"
_CLASS_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                 "#7f7f7f", "#bcbd22", "#17becf"]


def _names(name, value, what):
    """The keys of the non-empty mapping `value` (a TypeError / ValueError naming `name`)."""
    if not isinstance(value, Mapping):
        raise TypeError(f"`{name}` must be a mapping {what}, got {type(value).__name__}.")
    if not value:
        raise ValueError(f"`{name}` is empty.")
    return list(value)


def _class_names(class_names, k=None, shown=None):
    """Names for classes 0 .. k-1 (or at least those in `shown`) as a list or, from a mapping
    {class id: name}, a dict; repeated names are allowed in a figure."""
    if class_names is None:
        return None
    if isinstance(class_names, Mapping):
        needed = range(k) if shown is None else shown
        missing = [c for c in needed if c not in class_names]
        if missing:
            raise ValueError(f"`class_names` has no name for class {missing[0]}.")
        return {c: str(n) for c, n in class_names.items()}
    names = _checks.check_names("class_names", class_names, None if shown else k,
                                distinct=False)
    if shown and len(names) <= max(shown):
        raise ValueError(f"`class_names` must name classes 0 .. {max(shown)}, got "
                         f"{len(names)} names.")
    return names


def _suptitle(fig, title, fontsize=12):
    """A figure title wrapped to the figure's width, so it is never cut at the edges."""
    import textwrap

    width_points = fig.get_figwidth() * 72
    chars = max(20, int(width_points / (0.6 * fontsize)))  # a wide average glyph
    fig.suptitle("\n".join(textwrap.wrap(title, chars)), fontsize=fontsize)


def _figure_legend(fig, axes, columns=None):
    """One legend for the whole figure, below the panels, from the first panel's entries."""
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", fontsize="small",
                   ncols=columns or min(len(labels), 4), frameon=False, markerscale=2)


def _draw_reliability(ax, hist_ax, stats, label, bar_color=_BAR_COLOR, legend=True,
                      with_ece=True):
    edges = stats["edges"]
    width = np.diff(edges)
    centres = edges[:-1] + width / 2
    filled = stats["counts"] > 0
    acc = np.where(filled, stats["accuracy"], 0.0)
    conf = np.where(filled, stats["confidence"], 0.0)
    ax.bar(edges[:-1][filled], acc[filled], width=width[filled], align="edge",
           color=bar_color, edgecolor="white", linewidth=0.8,
           label=f"{label} (ECE {100 * stats['ece']:.2f}%)" if with_ece else label)
    # Gap between accuracy and mean confidence in each non-empty bin.
    bottom = np.minimum(acc, conf)[filled]
    ax.bar(edges[:-1][filled], np.abs(conf - acc)[filled], bottom=bottom, width=width[filled],
           align="edge", color=_GAP_COLOR, alpha=0.35, hatch="//", edgecolor=_GAP_COLOR,
           linewidth=0.0, label="gap to mean confidence")
    ax.plot([0, 1], [0, 1], linestyle="--", color="0.3", linewidth=1.0, label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    if legend:
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
    Predictions are read as in `keras_smooth.calibration` (`(N, K)`, or binary
    `(N,)`/`(N, 1)` P(class 1); non-probabilities are treated as logits with a
    warning unless `from_logits=True`).

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
    fig = Figure(figsize=(4.8, 6.0), layout="constrained")
    ax, hist_ax = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    _draw_reliability(ax, hist_ax, stats, label, legend=False)
    _figure_legend(fig, [ax], columns=2)  # below the panels: never over the bars
    ax.set_title(title or "Reliability diagram")
    return fig


def reliability_diagrams(results, labels, num_bins=15, from_logits=False, title=None, columns=5):
    """Reliability diagrams of several models, side by side (wrapping after `columns`).

    Args:
        results: mapping name -> `(N, K)` predictions of the same samples.
        labels: the shared labels.
    """
    names = _names("results", results, "name -> (N, K) predictions")
    if isinstance(columns, bool) or not isinstance(columns, (int, np.integer)) or columns < 1:
        raise ValueError(f"`columns` must be a positive integer, got {columns!r}.")
    cols = min(len(names), columns)
    rows = int(np.ceil(len(names) / cols))
    fig = Figure(figsize=(3.4 * cols, 4.6 * rows), layout="constrained")
    axes = fig.subplots(2 * rows, cols, squeeze=False, gridspec_kw={"height_ratios": [3, 1] * rows})
    for i in range(rows * cols):
        row, col = divmod(i, cols)
        ax, hist_ax = axes[2 * row, col], axes[2 * row + 1, col]
        if i >= len(names):
            ax.set_visible(False)
            hist_ax.set_visible(False)
            continue
        stats = calibration.bin_statistics(labels, results[names[i]], num_bins, from_logits)
        _draw_reliability(ax, hist_ax, stats, "accuracy of the bin", legend=False,
                          with_ece=False)  # each panel's ECE is in its title
        ax.set_title(f"{names[i]}\nECE {100 * stats['ece']:.2f}%", fontsize="medium")
        if col:
            ax.set_ylabel("")
            hist_ax.set_ylabel("")
    _figure_legend(fig, [axes[0, 0]], columns=3)
    if title:
        _suptitle(fig, title)
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
    classes = (list(range(min(k, 10))) if classes is None
               else _checks.check_class_list("classes", classes, k))
    if not classes:
        raise ValueError("`classes` is empty: name at least one class to show.")
    class_names = _class_names(class_names, k)
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
        ax.bar(edges[:-1][filled], (freq / np.maximum(counts, 1))[filled],
               width=np.diff(edges)[filled], align="edge", color=_BAR_COLOR, edgecolor="white",
               label="frequency of the class in the bin")
        ax.plot((mean_p / np.maximum(counts, 1))[filled], (freq / np.maximum(counts, 1))[filled],
                "o", color=_GAP_COLOR, markersize=3, label="(mean p, frequency) per bin")
        ax.plot([0, 1], [0, 1], "--", color="0.3", linewidth=1.0, label="perfect calibration")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        name = class_names[c] if class_names is not None else f"class {c}"
        ax.set_title(f"{name}: cal. error {100 * gap:.2f}%", fontsize="medium")
        ax.set_xlabel(f"p({name})")
        if axes.tolist().index(ax) % cols == 0:
            ax.set_ylabel("frequency")
        ax.grid(alpha=0.25)
    for ax in axes[len(classes):]:
        ax.set_visible(False)
    _figure_legend(fig, axes, columns=3 if cols >= 3 else 1)  # narrower figures: stacked
    if title:
        _suptitle(fig, title)
    return fig


def save_figure(fig, path, dpi=120):
    """Write `fig` to `path` (format from the extension) and return the path."""
    if not isinstance(path, (str, bytes, os.PathLike)) and not hasattr(path, "write"):
        raise TypeError(f"`path` must be a file name or a writable file, got {path!r}.")
    if dpi is not None and not (isinstance(dpi, str) and dpi == "figure"):  # matplotlib's own
        dpi = _checks.check_positive("dpi", dpi)
    fig.savefig(path, dpi=dpi)
    return path


def figure_to_array(fig, dpi=100):
    """RGBA uint8 image `(H, W, 4)` of a figure (for TensorBoard)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    buffer.seek(0)
    from matplotlib.image import imread

    return (imread(buffer) * 255).astype("uint8")


def matrix_heatmap(matrix, class_names=None, title=None, ax=None, xlabel="class receiving mass",
                   ylabel="true class"):
    """Heat map of a K x K class matrix (a learned Q or C, a confusion or distance matrix).

    Rows and columns are labelled with the class names (axis titles
    `ylabel`, `xlabel`); values are printed in the cells when K <= 12.
    """
    m = np.asarray(matrix, dtype="float64")
    if m.ndim != 2 or m.shape[0] != m.shape[1] or not m.size:
        raise ValueError(f"`matrix` must be square and not empty, got shape {m.shape}.")
    if not np.all(np.isfinite(m)):
        raise ValueError("`matrix` contains NaN or Inf; a heat map of it would hide them.")
    k = m.shape[0]
    names = _class_names(class_names, k) or [str(i) for i in range(k)]
    names = [names[i] for i in range(k)]  # from a mapping too
    fig = None
    if ax is None:
        size = 2.2 + 0.45 * k
        fig = Figure(figsize=(size + 1.0, size), layout="constrained")
        ax = fig.subplots()
    low = min(m.min(), 0.0)  # negative entries (differences, logs) get colours of their own
    image = ax.imshow(m, cmap="viridis", vmin=low, vmax=max(m.max(), low + 1e-12))
    ax.set_xticks(range(k), names, rotation=45, ha="right", fontsize="small")
    ax.set_yticks(range(k), names, fontsize="small")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if k <= 12:
        for i in range(k):
            for j in range(k):
                ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize="x-small",
                        color="white" if image.norm(m[i, j]) < 0.6 else "black")
    ax.figure.colorbar(image, ax=ax, shrink=0.8)
    if title:
        ax.set_title(title)
    return fig if fig is not None else ax.figure


def matrix_heatmaps(matrices, class_names=None, title=None, **labels):
    """Side-by-side heat maps: mapping name -> K x K matrix (`labels`: xlabel, ylabel)."""
    names = _names("matrices", matrices, "name -> K x K matrix")
    k = np.asarray(matrices[names[0]]).shape[0]
    size = 2.2 + 0.45 * k
    fig = Figure(figsize=((size + 1.0) * len(names), size), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(names)))
    for ax, name in zip(axes, names):
        matrix_heatmap(matrices[name], class_names, title=name, ax=ax, **labels)
    if title:
        _suptitle(fig, title)
    return fig


def smoothing_curves(curves, cap=0.2, title=None):
    """ILS1 smoothing factor epsilon_x against the teacher's p_t (ILS paper Eq. 3, Fig. 4).

    Args:
        curves: mapping label -> (p1, p2).
    """
    from keras import ops

    from keras_smooth import targets

    p = np.linspace(0.0, 1.0, 201)
    fig = Figure(figsize=(5.2, 3.8), layout="constrained")
    ax = fig.subplots()
    settings = {}  # one curve per setting: equal settings would hide each other
    for label in _names("curves", curves, "label -> (P1, P2)"):
        pair = _checks.as_real_array(f"curves[{label!r}]", curves[label])
        if pair.shape != (2,) or not np.all(np.isfinite(pair)):
            raise ValueError(f"`curves[{label!r}]` must be a pair of finite numbers (P1, P2), "
                             f"got {curves[label]!r}.")
        settings.setdefault((float(pair[0]), float(pair[1])), []).append(label)
    for (p1, p2), labels in settings.items():
        eps = np.asarray(ops.convert_to_numpy(targets.ils1_epsilon(p, p1, p2, cap)))
        ax.plot(p, eps, label=f"{', '.join(labels)}: P1={p1:g}, P2={p2:g}")
    ax.set_xlabel("teacher's probability of the true class (after temperature scaling)")
    ax.set_ylabel("smoothing factor")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, cap * 1.05)
    ax.grid(alpha=0.25)
    ax.legend(fontsize="small", frameon=False)
    ax.set_title(title or f"ILS1 smoothing factor: min({cap:g}, P2 (p_t - P1)^2)")
    return fig


def _check_regions(x, y, grid, grid_predictions, class_names):
    """(model names, grid side, K, x, y, grid) for `decision_regions`; ValueError if not
    consistent (class_names included)."""
    names = _names("grid_predictions", grid_predictions, "name -> (G, K) predictions")
    side = int(round(np.sqrt(len(grid))))
    if side * side != len(grid):
        raise ValueError("`grid` must hold a square number of points.")
    x, grid = _checks.as_real_array("x", x), _checks.as_real_array("grid", grid)
    y = _checks.as_real_array("y", y).reshape(-1)
    if len(x) != len(y):
        raise ValueError(f"`x` has {len(x)} points but `y` has {len(y)} labels.")
    if x.ndim != 2 or x.shape[1] != 2 or grid.ndim != 2 or grid.shape[1] != 2:
        raise ValueError(f"`x` and `grid` must be 2-D points (N, 2), got {x.shape} and "
                         f"{grid.shape}.")
    shapes = {name: np.shape(grid_predictions[name]) for name in names}
    for name, shape in shapes.items():
        if len(shape) != 2 or shape[0] != len(grid) or shape[1] != shapes[names[0]][1]:
            raise ValueError(
                f"`grid_predictions[{name!r}]` must have shape ({len(grid)}, K), one row per "
                f"grid point and the same K for every model, got {shape}."
            )
    k = shapes[names[0]][1]
    if k > len(_CLASS_COLORS):
        raise ValueError(f"decision_regions draws at most {len(_CLASS_COLORS)} classes, got "
                         f"{k}.")
    outside = y[(y < 0) | (y >= k) | (y != np.round(y))] if y.size else y
    if outside.size:
        raise ValueError(f"`y` must be class ids in [0, {k}) (K from `grid_predictions`), "
                         f"got {outside[0]}.")
    return names, side, k, x, y, grid


def decision_regions(x, y, grid, grid_predictions, class_names=None, title=None):
    """2-D data over the predicted-class regions of several models.

    Args:
        x, y: points `(N, 2)` and their labels, drawn on every panel.
        grid: `(G, 2)` points on a regular grid (row-major, square).
        grid_predictions: mapping name -> `(G, K)` predictions on `grid`.
    """
    names, side, k, x, y, grid = _check_regions(x, y, grid, grid_predictions, class_names)
    class_names = _class_names(class_names, k)
    gx = grid[:, 0].reshape(side, side)
    gy = grid[:, 1].reshape(side, side)
    cols = min(len(names), 4)
    rows = int(np.ceil(len(names) / cols))
    fig = Figure(figsize=(max(3.6 * cols, 4.8), 3.4 * rows + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False, sharex=True,
                                      sharey=True)).ravel()
    colors = _CLASS_COLORS
    from matplotlib.colors import ListedColormap

    cmap = ListedColormap(colors[:k])
    for ax, name in zip(axes, names):
        pred = np.asarray(grid_predictions[name])
        ax.contourf(gx, gy, pred.argmax(1).reshape(side, side), levels=np.arange(k + 1) - 0.5,
                    cmap=cmap, alpha=0.25)
        ax.contour(gx, gy, pred.max(1).reshape(side, side), levels=[0.5, 0.7, 0.9],
                   colors="0.35", linewidths=0.6)
        for c in range(k):
            label = class_names[c] if class_names is not None else f"class {c}"
            ax.scatter(*x[y == c].T, s=6, color=colors[c], label=label)
        ax.set_title(name, fontsize="medium")
        index = axes.tolist().index(ax)
        if index % cols == 0:
            ax.set_ylabel("feature 2")
        if index + cols >= len(names):  # the lowest panel of its column
            ax.set_xlabel("feature 1")
            ax.xaxis.set_tick_params(labelbottom=True)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    _figure_legend(fig, axes)
    _suptitle(fig, title or "Predicted class regions (contours: confidence 0.5 / 0.7 / 0.9)")
    return fig


def confusion_heatmap(labels, predictions, class_names=None, title=None):
    """Row-normalised confusion matrix (rows: true class, columns: predicted class)."""
    from keras_smooth import analysis

    predictions = np.asarray(predictions)
    _checks.check_finite("predictions", predictions)
    binary = predictions.ndim == 2 and predictions.shape[1] == 1
    if predictions.ndim == 1 and predictions.dtype.kind == "f" and predictions.size:
        binary = bool(np.all((predictions >= 0) & (predictions <= 1))
                      and np.any(predictions != np.round(predictions)))
    if binary:  # P(class 1), as everywhere in the library: the two columns [1 - p, p]
        p = predictions.reshape(-1).astype("float64")
        predictions = np.stack([1.0 - p, p], axis=1)
    if predictions.ndim == 2:
        k = predictions.shape[1]
    elif class_names is not None:
        k = len(class_names if isinstance(class_names, Mapping) else  # one name per class
                _checks.check_names("class_names", class_names, distinct=False))
    else:
        k = int(max(predictions.max(), np.max(labels))) + 1
    matrix = analysis.confusion_matrix(labels, predictions, k)
    return matrix_heatmap(matrix, class_names, title=title or "Confusion matrix (rows sum to 1)",
                          xlabel="predicted class", ylabel="true class")


def distance_heatmaps(distances, class_names=None, title=None):
    """Side-by-side class-centre distance matrices (mapping name -> K x K)."""
    title = title or "L1-normalised cosine distances between class centres"
    return matrix_heatmaps(distances, class_names, title=title, xlabel="class", ylabel="class")


def penultimate_projections(projections, class_names=None, title=None):
    """Scatter plots of `analysis.penultimate_projection` results (mapping name -> result).

    Each panel shows the examples of the three classes in the plane of their
    templates, with the templates' own positions as black crosses.
    """
    names = _names("projections", projections, "name -> penultimate_projection result")
    class_names = _class_names(  # only the classes shown need names
        class_names, shown=sorted({c for n in names for c in projections[n]["classes"]}))
    colors = ["#d62728", "#2ca02c", "#1f77b4"]  # as in Müller et al.: red, green, blue
    fig = Figure(figsize=(max(3.6 * len(names), 4.8), 4.2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(names)))
    for ax, name in zip(axes, names):
        result = projections[name]
        for color, c in zip(colors, result["classes"]):
            points = result["coords"][result["labels"] == c]
            label = class_names[c] if class_names is not None else f"class {c}"
            ax.scatter(points[:, 0], points[:, 1], s=4, alpha=0.5, color=color, label=label)
        ax.scatter(*result["templates"].T, marker="x", s=40, color="black",
                   label="class templates")
        ax.set_title(name, fontsize="medium")
        ax.set_xlabel("u (template plane)")
        ax.set_ylabel("v (template plane)" if ax is axes[0] else "")
    _figure_legend(fig, axes)
    _suptitle(fig, title or "Penultimate-layer activations in the plane of three class templates")
    return fig
