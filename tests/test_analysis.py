"""Analyses against NumPy constructions from the papers, and their plots."""

import os

import keras
import numpy as np
import pytest

import reference as ref
from keras_smooth import analysis, datasets, plots


@pytest.fixture
def model():
    keras.utils.set_random_seed(3)
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(6, activation="relu"),
                             keras.layers.Dense(5)])


def test_penultimate_projection_matches_the_re_papers_construction(model, rng):
    x = rng.normal(size=(40, 4)).astype("float32")
    labels = rng.integers(0, 5, 40)
    w1, b1 = model.layers[0].get_weights()
    features = np.maximum(x @ w1 + b1, 0.0)
    np.testing.assert_allclose(analysis.penultimate_features(model, x), features, atol=1e-5)

    result = analysis.penultimate_projection(model, x, labels, classes=(2, 0, 4))
    templates = model.layers[1].get_weights()[0].T[[2, 0, 4]]
    # [Re] Appendix A.1: normalised (w2 - w1), (w3 - w1) as columns, QR -> orthonormal basis
    d21, d31 = templates[1] - templates[0], templates[2] - templates[0]
    a = np.stack([d21 / np.linalg.norm(d21), d31 / np.linalg.norm(d31)], axis=1)
    q, _ = np.linalg.qr(a)
    keep = np.isin(labels, (2, 0, 4))
    # Same plane: the orthogonal projections onto it agree, whichever basis is used.
    np.testing.assert_allclose(result["coords"] @ result["basis"].T, features[keep] @ q @ q.T,
                               atol=1e-5)
    np.testing.assert_allclose(result["basis"].T @ result["basis"], np.eye(2), atol=1e-10)
    # The text's construction: u along w1 - w3.
    d1 = templates[0] - templates[2]
    np.testing.assert_allclose(result["basis"][:, 0], d1 / np.linalg.norm(d1), atol=1e-10)
    np.testing.assert_array_equal(result["labels"], labels[keep])
    # distances between templates survive the projection (they lie in the plane, up to a shift)
    shifted = result["templates"] - result["templates"][2]
    np.testing.assert_allclose(np.linalg.norm(shifted, axis=1)[:2],
                               np.linalg.norm(templates[:2] - templates[2], axis=1), rtol=1e-6)


def test_projection_needs_a_dense_last_layer_and_three_classes(model, rng):
    x, y = rng.normal(size=(8, 4)), rng.integers(0, 5, 8)
    with pytest.raises(TypeError, match="Dense"):
        analysis.penultimate_projection(keras.Sequential([keras.Input((4,)), keras.layers.Dense(5),
                                                          keras.layers.Softmax()]), x, y)
    with pytest.raises(ValueError, match="three different classes"):
        analysis.penultimate_projection(model, x, y, classes=(0, 0, 1))
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        analysis.penultimate_projection(model, x, y, classes=(0, 1, 7))


def test_cosine_distances_are_the_lls_papers_l1_normalised_distances(rng):
    features = rng.normal(size=(60, 7))
    labels = np.arange(60) % 4
    centres = analysis.class_centres(features, labels, 4)
    np.testing.assert_allclose(centres[1], features[labels == 1].mean(0))
    expected = np.zeros((4, 4))
    for i in range(4):
        for j in range(4):
            norms = np.linalg.norm(centres[i]) * np.linalg.norm(centres[j])
            expected[i, j] = 1 - centres[i] @ centres[j] / norms
    np.fill_diagonal(expected, 0.0)
    expected /= expected.sum(1, keepdims=True)
    got = analysis.cosine_distances(centres)
    np.testing.assert_allclose(got, expected, atol=1e-12)
    np.testing.assert_allclose(got.sum(1), 1.0)
    simplex = np.eye(4)  # equidistant centres: perfectly uniform off-diagonal distances
    assert analysis.offdiagonal_spread(analysis.cosine_distances(simplex)) == pytest.approx(
        0.0, abs=1e-12)
    assert analysis.offdiagonal_spread(got) > 0
    with pytest.raises(ValueError, match="no examples"):
        analysis.class_centres(features, labels, 5)
    # Parallel centres are at distance 0 (not rounding noise blown up by the row
    # normalisation), and their spread is undefined: refused, not reported as uniform.
    parallel = np.array([[0.1, 0.2, 0.3]]) * np.array([[1.0], [3.0], [7.0]])
    np.testing.assert_array_equal(analysis.cosine_distances(parallel), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="spread is undefined"):
        analysis.offdiagonal_spread(analysis.cosine_distances(np.ones((3, 2))))
    # one pair parallel, the third centre apart: the pair's distance is exactly 0
    mixed = analysis.cosine_distances(np.array([[1.0, 1.0], [2.0, 2.0], [1.0, -1.0]]),
                                      normalise=False)
    np.testing.assert_allclose(mixed, [[0, 0, 1], [0, 0, 1], [1, 1, 0]], atol=1e-15)
    assert mixed[0, 1] == 0.0


def test_smoothness_index_by_hand_and_for_a_label_smoothed_teacher():
    probs = np.array([[0.8, 0.1, 0.1], [0.25, 0.5, 0.25]])
    # wrong-class masses 0.2 and 0.5, times K / (K - 1) = 1.5, averaged
    assert analysis.smoothness_index([0, 1], np.log(probs)) == pytest.approx((0.3 + 0.75) / 2)
    # a teacher whose outputs are exactly LS targets with alpha has gamma = alpha
    alpha, k = 0.3, 6
    ls = ref.uniform_ls(np.arange(k), k, alpha)
    assert analysis.smoothness_index(np.arange(k), np.log(ls)) == pytest.approx(alpha)
    # a higher temperature smooths: gamma grows towards 1
    assert (analysis.smoothness_index([0, 1], np.log(probs), 4.0)
            > analysis.smoothness_index([0, 1], np.log(probs)))
    assert analysis.smoothness_index([0], np.zeros((1, 3)), 1.0) == pytest.approx(1.0)


def test_confusion_matrix_and_top_related_classes():
    labels = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    preds = np.array([0, 0, 1, 2, 1, 0, 2, 2])
    m = analysis.confusion_matrix(labels, preds, 3)
    np.testing.assert_allclose(m, [[0.5, 0.25, 0.25], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    q = np.array([[0.1, 0.6, 0.3], [0.2, 0.1, 0.7], [0.5, 0.4, 0.1]])
    related = analysis.top_related_classes(q, ["a", "b", "c"], top=1)
    assert related == {"a": [("b", 0.6)], "b": [("c", 0.7)], "c": [("a", 0.5)]}


def test_distillation_study_with_no_teacher_weight_trains_identical_students():
    data = datasets.load("gaussian", seed=0, n_test=30)

    def build(shape, k):
        return keras.Sequential([keras.Input(shape), keras.layers.Dense(8, activation="relu"),
                                 keras.layers.Dense(k)])

    rng = np.random.default_rng(0)
    teachers = {"a": rng.normal(size=(150, 3)), "b": rng.normal(size=(150, 3))}
    q = np.full((3, 3), 1 / 3)
    out = analysis.distillation_study(build, data, teachers=teachers, matrices={"Q": (q, 0.2)},
                                      epochs=3, batch_size=50, seed=0, beta=0.0)
    assert set(out) == {"a", "b", "Q"}
    assert out["a"]["nll"] == pytest.approx(out["b"]["nll"], rel=1e-6)
    assert out["a"]["nll"] == pytest.approx(out["Q"]["nll"], rel=1e-6)
    assert out["a"]["smoothness"] != out["b"]["smoothness"]
    taught = analysis.distillation_study(build, data, teachers=teachers, epochs=3, batch_size=50,
                                         seed=0)
    assert taught["a"]["nll"] != pytest.approx(taught["b"]["nll"], rel=1e-6)
    with pytest.raises(ValueError, match="shape"):
        analysis.distillation_study(build, data, teachers={"x": np.zeros((10, 3))}, epochs=1,
                                    batch_size=50, seed=0)


def test_analysis_plots_are_written_and_show_something(model, rng, tmp_path):
    from matplotlib.image import imread

    x, labels = rng.normal(size=(60, 4)).astype("float32"), np.arange(60) % 5
    names = ["T-shirt", "Trouser", "Pullover", "Dress", "Coat"]
    projections = {"one-hot": analysis.penultimate_projection(model, x, labels),
                   "LS": analysis.penultimate_projection(model, x, labels, classes=(1, 2, 3))}
    scores = rng.normal(size=(60, 5))
    distances = {"one-hot": analysis.cosine_distances(rng.normal(size=(5, 3))),
                 "LS": analysis.cosine_distances(np.eye(5))}
    figures = {
        "projection.png": plots.penultimate_projections(projections, names),
        "confusion.png": plots.confusion_heatmap(labels, scores, names),
        "distances.png": plots.distance_heatmaps(distances, names),
    }
    # Before: only "a non-blank image". Now what is drawn is the data: the heatmaps show the
    # row-normalised confusion counts and the given matrices, the scatter panels the
    # projected points of each class and the templates.
    counts = np.zeros((5, 5))
    np.add.at(counts, (labels, scores.argmax(1)), 1)
    shown = figures["confusion.png"].axes[0].images[0].get_array()
    np.testing.assert_allclose(shown, counts / counts.sum(1, keepdims=True), atol=1e-12)
    panels = [ax for ax in figures["distances.png"].axes if ax.images]
    assert len(panels) == 2
    for ax, matrix in zip(panels, distances.values()):
        np.testing.assert_allclose(ax.images[0].get_array(), matrix, atol=1e-12)
    for ax, result in zip(figures["projection.png"].axes, projections.values()):
        *classes, crosses = ax.collections
        for points, c in zip(classes, result["classes"]):
            np.testing.assert_allclose(points.get_offsets(),
                                       result["coords"][result["labels"] == c], atol=1e-6)
        np.testing.assert_allclose(crosses.get_offsets(), result["templates"], atol=1e-6)
    for name, fig in figures.items():
        path = plots.save_figure(fig, os.path.join(tmp_path, name))
        image = imread(path)
        assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 300
        assert image[..., :3].std() > 0.05  # not blank
    assert "Trouser" in [t.get_text() for t in figures["confusion.png"].axes[0].get_yticklabels()]
    assert figures["confusion.png"].axes[0].get_xlabel() == "predicted class"


def test_fashion_mnist_study_script_runs_end_to_end_on_small_idx_files(tmp_path, rng):
    import subprocess
    import sys

    from test_datasets import _write_fashion_dir

    _write_fashion_dir(tmp_path / "fm", rng, n_train=240, n_test=60)
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks",
                          "fashion_mnist_study.py")
    result = subprocess.run(
        [sys.executable, script, "--seeds", "1", "--epochs", "1", "--train-limit", "240",
         "--batch-size", "64", "--fashion-mnist-dir", str(tmp_path / "fm"),
         "--output", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
             "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))})
    assert result.returncode == 0, result.stderr[-3000:]
    report = (tmp_path / "out" / "fashion_mnist_study.md").read_text()
    for heading in ("## Test metrics", "## Claims of the papers on this data",
                    "## Distillation study", "LLS keeps the inter-class structure LS erases",
                    "| Ankle boot |"):
        assert heading in report
    assert report.count("| holds |") + report.count("| **does not hold** |") == 12
    for name in ("matrices.png", "distances.png", "projection.png", "confusion_no_ls.png"):
        assert (tmp_path / "out" / "fashion_mnist" / name).stat().st_size > 10_000
