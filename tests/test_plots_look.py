"""How the package's figures look (issue 16, item 4), checked structurally with the renderer.

Each check is one of the faults seen in the PNGs at the size they are saved:
text cut at the figure's edge (the penultimate projection's title), panels
without axes that mean something (the decision regions), a legend repeated in
every panel (reliability and classwise panels), a legend over the data (the
single reliability diagram), and curves drawn over each other (ILS1 curves of
equal settings).
"""

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.text import Text

from keras_smooth import plots


def _renderer(fig):
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def _cut_texts(fig):
    """Drawn texts that leave the figure: [] when the tight box of everything drawn fits.

    `Figure.get_tightbbox` bounds every artist as drawn (tick labels outside the
    view are not drawn and not counted); 0.01 inch of tolerance.
    """
    renderer = _renderer(fig)
    tight, page = fig.get_tightbbox(renderer), fig.bbox_inches
    if (tight.x0 >= page.x0 - 0.01 and tight.y0 >= page.y0 - 0.01
            and tight.x1 <= page.x1 + 0.01 and tight.y1 <= page.y1 + 0.01):
        return []
    cut = []
    for text in fig.findobj(Text):
        if text.get_visible() and text.get_text().strip():
            extent = text.get_window_extent(renderer).transformed(fig.dpi_scale_trans.inverted())
            if (extent.x0 < page.x0 - 0.01 or extent.x1 > page.x1 + 0.01
                    or extent.y0 < page.y0 - 0.01 or extent.y1 > page.y1 + 0.01):
                cut.append(text.get_text())
    return cut or [f"something drawn at {tight} outside {page}"]


def _legends(fig):
    return len(fig.legends) + sum(ax.get_legend() is not None for ax in fig.axes)


def _projection(rng, n=60):
    labels = rng.integers(0, 3, n)
    return {"coords": rng.normal(size=(n, 2)) + labels[:, None], "labels": labels,
            "templates": rng.normal(size=(3, 2)), "basis": np.eye(2), "classes": (0, 1, 2)}


def _probs(rng, n, k):
    logits = rng.normal(size=(n, k)) * 2
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _regions(rng, panels):
    side = 12
    axis = np.linspace(-4.0, 6.0, side)
    grid = np.stack(np.meshgrid(axis, axis), -1).reshape(-1, 2)
    x = rng.normal(size=(40, 2))
    y = rng.integers(0, 3, 40)
    preds = {f"model {i}": _probs(rng, len(grid), 3) for i in range(panels)}
    return plots.decision_regions(x, y, grid, preds)


@pytest.mark.parametrize("panels", [1, 2])
def test_projection_title_and_labels_stay_inside_the_figure(panels):
    rng = np.random.default_rng(0)
    fig = plots.penultimate_projections({f"model {i}": _projection(rng) for i in range(panels)})
    assert _cut_texts(fig) == []  # before: the one-panel title ran past both edges
    assert _legends(fig) == 1


@pytest.mark.parametrize("panels", [1, 6])
def test_decision_regions_have_feature_axes_one_legend_and_an_uncut_title(panels):
    rng = np.random.default_rng(1)
    fig = _regions(rng, panels)
    _renderer(fig)
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert len(shown) == panels
    # Every panel shows coordinates: tick labels with numbers on both axes of the data space.
    for ax in shown:
        assert len(ax.get_xticks()) >= 2 and len(ax.get_yticks()) >= 2
        lo, hi = ax.get_xlim()
        assert lo <= -4.0 + 1e-9 and hi >= 6.0 - 1e-9
    assert any(ax.get_xlabel() == "feature 1" for ax in shown)
    assert any(ax.get_ylabel() == "feature 2" for ax in shown)
    bottom = [ax for ax in shown if ax.get_xlabel()]
    assert all(any(t.get_text() for t in ax.get_xticklabels()) for ax in bottom)
    assert _legends(fig) == 1  # before: one legend, but inside the first panel over the data
    assert not fig.axes[0].get_legend()
    assert _cut_texts(fig) == []


def test_reliability_panels_share_one_legend_and_show_their_ece():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 4, 300)
    results = {f"m{i}": _probs(rng, 300, 4) for i in range(7)}
    fig = plots.reliability_diagrams(results, labels, columns=4)
    assert _legends(fig) == 1  # before: seven, one per panel
    # The shared legend names no panel's ECE (that is in each title).
    assert not any("ECE" in t.get_text() for t in fig.legends[0].get_texts())
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible() and ax.get_title()]
    assert len(titles) == 7 and all("ECE" in t for t in titles)
    from keras_smooth import calibration

    shown = {t.split("\n")[0]: t for t in titles}
    for name, probs in results.items():
        expected = 100 * calibration.ece(labels, probs)
        assert f"ECE {expected:.2f}%" in shown[name]
    assert _cut_texts(fig) == []


def test_classwise_panels_share_one_legend():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 6, 200)
    fig = plots.classwise_reliability(labels, _probs(rng, 200, 6))
    assert _legends(fig) == 1  # before: six
    assert _cut_texts(fig) == []


@pytest.mark.parametrize("shown", [1, 2, 3, 7])
def test_classwise_legend_fits_however_few_panels(shown):
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 8, 200)
    fig = plots.classwise_reliability(labels, _probs(rng, 200, 8), classes=range(shown),
                                      title="classwise")
    assert _legends(fig) == 1
    assert _cut_texts(fig) == []  # before: one or two panels cut the three-column legend


def test_single_reliability_legend_does_not_cover_the_bars():
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 3, 200)
    fig = plots.reliability_diagram(labels, _probs(rng, 200, 3))
    renderer = _renderer(fig)
    assert _legends(fig) == 1
    legend = (fig.legends or [fig.axes[0].get_legend()])[0]
    box = legend.get_window_extent(renderer)
    for ax in fig.axes:  # before: the legend sat inside the upper panel, over low-confidence bars
        assert not box.overlaps(ax.get_window_extent(renderer))
    assert _cut_texts(fig) == []


def test_equal_ils1_settings_are_one_curve_with_both_names():
    fig = plots.smoothing_curves({"ILS1": (0.9, 1.5), "ILS": (0.9, 1.5), "other": (0.8, 2.0)})
    ax = fig.axes[0]
    assert len(ax.lines) == 2  # before: three, the second hiding the first
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "ILS1, ILS: P1=0.9, P2=1.5" in texts and "other: P1=0.8, P2=2" in texts


@pytest.mark.parametrize("k", [3])
def test_heat_maps_keep_every_label_and_title_inside(k):
    """Before: the side-by-side heat maps' figure title ran past the figure's edges."""
    rng = np.random.default_rng(5)
    names = [f"digit {i}" for i in range(k)]
    matrix = rng.random((k, k))
    figures = [plots.matrix_heatmap(matrix, names, title="Q"),
               plots.matrix_heatmaps({"A": matrix, "B": matrix}, names, title="two"),
               plots.confusion_heatmap(rng.integers(0, k, 100), _probs(rng, 100, k), names),
               plots.distance_heatmaps({"A": matrix}, names)]
    for fig in figures:
        assert _cut_texts(fig) == []
