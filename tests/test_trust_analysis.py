"""Bad inputs to the analyses get a clear error naming the argument, never a silent number."""

import keras
import numpy as np
import pytest

from keras_smooth import analysis


@pytest.fixture
def model():
    keras.utils.set_random_seed(3)
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(6, activation="relu"),
                             keras.layers.Dense(5)])


def test_class_centres_refuse_fractional_out_of_range_and_misaligned_labels(rng):
    features = rng.normal(size=(12, 3))
    labels = np.arange(12) % 3
    with pytest.raises(ValueError, match=r"`labels` must be integer class ids, got 1\.5"):
        analysis.class_centres(features, np.where(labels == 1, 1.5, labels), 3)
    with pytest.raises(ValueError, match=r"`labels` must be class ids in \[0, 3\), got -1"):
        analysis.class_centres(features, np.where(labels == 2, -1, labels), 3)
    with pytest.raises(ValueError, match="`labels` has 11 rows but `features` has 12"):
        analysis.class_centres(features, labels[:11], 3)
    with pytest.raises(ValueError, match="`features` must be"):
        analysis.class_centres(features[:, 0], labels, 3)
    # a correct call still equals the per-class mean written in NumPy
    np.testing.assert_allclose(analysis.class_centres(features, labels, 3)[2],
                               features[labels == 2].mean(axis=0))


def test_offdiagonal_spread_and_distances_refuse_degenerate_matrices():
    with pytest.raises(ValueError, match="square"):
        analysis.offdiagonal_spread(np.ones((2, 3)))
    with pytest.raises(ValueError, match="square"):
        analysis.offdiagonal_spread(np.ones((1, 1)))
    with pytest.raises(ValueError, match="undefined"):
        analysis.offdiagonal_spread(np.eye(3))   # all off-diagonal zero: 0/0 before
    with pytest.raises(ValueError, match="NaN or Inf"):
        analysis.offdiagonal_spread(np.array([[0, np.nan], [1, 0]]))
    with pytest.raises(ValueError, match="`centres`"):
        analysis.cosine_distances(np.ones(4))
    m = np.array([[0, 1, 3], [2, 0, 2], [1, 1, 0]], dtype=float)
    off = np.array([1, 3, 2, 2, 1, 1], dtype=float)
    assert analysis.offdiagonal_spread(m) == pytest.approx(off.std() / off.mean())


def test_smoothness_index_refuses_bad_labels_and_widths():
    logits = np.log([[0.8, 0.1, 0.1], [0.25, 0.5, 0.25]])
    with pytest.raises(ValueError, match=r"`labels` must be integer class ids, got 0\.6"):
        analysis.smoothness_index([0.6, 1], logits)   # was rounded to 1 silently
    with pytest.raises(ValueError, match="`labels` has 3 rows"):
        analysis.smoothness_index([0, 1, 2], logits)
    with pytest.raises(ValueError, match="K >= 2"):
        analysis.smoothness_index([0, 0], np.zeros((2, 1)))
    with pytest.raises(ValueError, match="`teacher_logits`"):
        analysis.smoothness_index([0], np.zeros(3))
    with pytest.raises(ValueError, match="NaN or Inf"):
        analysis.smoothness_index([0], [[np.nan, 0.0, 0.0]])


def test_confusion_matrix_and_related_classes_refuse_bad_inputs():
    with pytest.raises(ValueError, match=r"`predictions` must be class ids in \[0, 3\), got 3"):
        analysis.confusion_matrix([0, 1, 2], [0, 1, 3], 3)   # was silently dropped by sklearn
    with pytest.raises(ValueError, match="`labels` has 2 rows"):
        analysis.confusion_matrix([0, 1], [0, 1, 2], 3)
    with pytest.raises(TypeError, match="num_classes"):
        analysis.confusion_matrix([0, 1], [0, 1], 2.5)
    q = np.array([[0.1, 0.6, 0.3], [0.2, 0.1, 0.7], [0.5, 0.4, 0.1]])
    with pytest.raises(ValueError, match="`class_names` must name all 3 classes, got 2"):
        analysis.top_related_classes(q, ["a", "b"])
    with pytest.raises(ValueError, match="`top` must be a positive integer"):
        analysis.top_related_classes(q, top=0)
    with pytest.raises(ValueError, match="square"):
        analysis.top_related_classes(q[:2])


def test_projection_refuses_labels_that_do_not_match_x(model, rng):
    x = rng.normal(size=(8, 4)).astype("float32")
    with pytest.raises(ValueError, match="`labels` has 7 rows but `x` has 8"):
        analysis.penultimate_projection(model, x, np.arange(7) % 5)
    with pytest.raises(ValueError, match=r"`labels` must be class ids in \[0, 5\), got 9"):
        analysis.penultimate_projection(model, x, np.full(8, 9))


def test_matrix_heatmap_refuses_non_finite_entries():
    from keras_smooth import plots

    with pytest.raises(ValueError, match="NaN or Inf"):
        plots.matrix_heatmap(np.array([[0.5, np.nan], [0.5, 0.5]]))
    with pytest.raises(ValueError, match="NaN or Inf"):
        plots.matrix_heatmap(np.array([[0.5, np.inf], [0.5, 0.5]]))


def test_template_plane_is_scale_free_and_names_collinear_or_non_finite_templates(rng):
    """200 random template triples at scales 1e-200 .. 1e200: the basis is orthonormal,
    spans Delta_1 and Delta_2 (they are rebuilt from their coordinates), points along
    Delta_1, and does not change with the scale; collinear triples are refused at every
    scale (the threshold was absolute before, so tiny planes were called collinear)."""
    for trial in range(200):
        n = int(rng.integers(2, 9))
        w = rng.normal(size=(3, n))
        scale = 10.0 ** rng.uniform(-200, 200)
        basis = analysis.template_plane(w * scale)
        np.testing.assert_allclose(basis.T @ basis, np.eye(2), atol=1e-12)
        delta = np.stack([w[0] - w[2], w[1] - w[2]], axis=1)
        np.testing.assert_allclose(basis @ (basis.T @ delta), delta, atol=1e-9)
        assert basis[:, 0] @ delta[:, 0] > 0
        np.testing.assert_allclose(basis, analysis.template_plane(w), atol=1e-9)
        t = rng.uniform(-3, 3)
        collinear = np.stack([w[2] + t * (w[1] - w[2]), w[1], w[2]]) * scale
        with pytest.raises(ValueError, match="collinear"):
            analysis.template_plane(collinear)
    with pytest.raises(ValueError, match="collinear"):
        analysis.template_plane(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="`templates` must be finite"):
        analysis.template_plane(np.array([[0.0, 1.0], [1.0, np.nan], [2.0, 0.0]]))


def test_projection_classes_must_be_three_integer_ids(model, rng):
    x, labels = rng.normal(size=(8, 4)).astype("float32"), np.arange(8) % 5
    with pytest.raises(TypeError, match="`classes` must be a sequence of class ids, got 5"):
        analysis.penultimate_projection(model, x, labels, classes=5)
    with pytest.raises(ValueError, match="`classes` must hold whole-number class ids, got 2.7"):
        analysis.penultimate_projection(model, x, labels, classes=(0, 1, 2.7))  # was class 2
    with pytest.raises(TypeError, match="`classes` must be a sequence of class ids"):
        analysis.penultimate_projection(model, x, labels, classes="012")


def test_template_plane_refuses_float32_templates_collinear_up_to_their_rounding():
    # a Dense kernel is float32: exactly collinear templates differ from a line by rounding
    w = np.array([[0.1, 0.2, 0.3], [0.2, 0.4, 0.6], [0.3, 0.6, 0.9]], dtype="float32")
    with pytest.raises(ValueError, match="collinear"):
        analysis.template_plane(w)
    assert analysis.template_plane(w + np.eye(3, dtype="float32")).shape == (3, 2)
