"""Bad arguments to the calibration functions, metrics and callbacks get an error naming
the argument (an adversarial sweep found raw casts, truthy strings, consumed iterators,
row indices read as truth values and a tolerance that skipped the search)."""

import numpy as np
import pytest

from keras_smooth import calibration, callbacks, metrics

Y = np.array([0, 2, 1, 1])
P = np.array([[0.7, 0.2, 0.1], [0.1, 0.2, 0.7], [0.2, 0.6, 0.2], [0.3, 0.4, 0.3]])


@pytest.mark.parametrize("tol", [1.0, 10.0])
def test_a_relative_tol_of_one_or_more_is_refused(tol):
    # before: tol=10 returned T = 1, converged=True, after zero iterations
    logits = np.array([[4.0, 0, 0], [0, 4.0, 0], [0, 0, 4.0], [4.0, 0, 0]])
    with pytest.raises(ValueError, match=r"`tol` is relative to T and must be < 1"):
        calibration.fit_temperature(logits, [0, 1, 2, 1], tol=tol)


@pytest.mark.parametrize("bounds", ["12", (True, 5.0), {0.1: 1, 10.0: 2}, {0.1, 10.0},
                                    (0.1, "10"), (0.1, 1.0, 10.0), 5.0])
def test_bounds_must_be_a_pair_of_numbers(bounds):
    logits = np.random.default_rng(0).normal(size=(20, 3))
    with pytest.raises(ValueError, match="`bounds` must be a pair of numbers"):
        calibration.fit_temperature(logits, np.arange(20) % 3, bounds=bounds)
    with pytest.raises(ValueError, match="`bounds` must be a pair of numbers"):
        callbacks.TemperatureScalingCallback((P, Y), bounds=bounds)


@pytest.mark.parametrize("bounds", [[0.5, np.float32(3.0)], iter([0.5, 3.0]), range(1, 3),
                                    np.array([0.5, 3.0]), (np.array(0.5), np.array(3.0))])
def test_callback_bounds_are_stored_as_floats_from_any_ordered_pair(bounds):
    # before: an iterator was consumed by the check and stored as ()
    cb = callbacks.TemperatureScalingCallback((P, Y), bounds=bounds)
    assert len(cb.bounds) == 2 and all(type(b) is float for b in cb.bounds)
    assert cb.bounds == tuple(float(b) for b in (bounds if not isinstance(bounds, type(iter(
        []))) else [0.5, 3.0]))


def test_fit_temperature_takes_bounds_as_a_tensor_too():
    import keras

    logits = np.random.default_rng(1).normal(size=(30, 3)) * 4
    labels = np.arange(30) % 3
    expected = calibration.fit_temperature(logits, labels, bounds=(0.05, 20.0))
    got = calibration.fit_temperature(logits, labels,
                                      bounds=keras.ops.convert_to_tensor([0.05, 20.0]))
    assert float(got) == float(expected)


@pytest.mark.parametrize("make", [lambda: callbacks.TemperatureScalingCallback(5),
                                  lambda: callbacks.CalibrationLogger(5),
                                  lambda: callbacks.CalibrationLogger("ab")])
def test_callbacks_refuse_validation_data_that_is_neither_a_pair_nor_batches(make):
    with pytest.raises(TypeError, match="`validation_data` must be a tuple"):
        make()


@pytest.mark.parametrize("function", [calibration.ece, calibration.classwise_ece,
                                      calibration.nll, calibration.brier,
                                      calibration.accuracy, calibration.summary,
                                      calibration.bin_statistics, calibration.prepare])
@pytest.mark.parametrize("bad", ["abc", [[0.5, 0.5], [1.0]], None])
def test_non_numeric_predictions_name_probs(function, bad):
    with pytest.raises(TypeError, match="`probs` must be an array of real numbers"):
        function([0, 1], bad)


def test_other_entry_points_name_their_predictions():
    with pytest.raises(TypeError, match="`predictions` must be an array of real numbers"):
        calibration.apply_temperature("abc", 1.0)
    with pytest.raises(TypeError, match="`predictions` must be an array of real numbers"):
        calibration.reads_as_logits(None)
    with pytest.raises(TypeError, match="`predictions` must be an array of real numbers"):
        calibration.to_probabilities([["a", "b"]], False)
    with pytest.raises(TypeError, match="`from_logits` must be True or False, got 'no'"):
        calibration.to_probabilities(P, "no")  # before: truthy, probabilities softmaxed


def test_evaluate_groups_are_boolean_masks_in_a_mapping():
    logits = np.log(P)
    with pytest.raises(TypeError, match="`groups` must be a mapping"):
        calibration.evaluate(Y, logits, groups=5)
    with pytest.raises(TypeError, match=r"`groups\['a'\]` must be a boolean mask"):
        calibration.evaluate(Y, logits, groups={"a": [0, 2, 3]})  # before: read as truthy
    with pytest.raises(TypeError, match=r"`groups\['a'\]` must be a boolean mask.*astype"):
        calibration.evaluate(Y, logits, groups={"a": np.array([1.0, 0.0, 1.0, 0.0])})
    mask = np.array([True, False, True, True])
    out = calibration.evaluate(Y, logits, groups={"a": mask})
    assert out["accuracy_a"] == pytest.approx(np.mean(P.argmax(1)[mask] == Y[mask]))


def test_bin_counts_are_bounded_before_anything_is_allocated():
    # before: MemoryError (7 TiB) from NumPy, or the process was killed
    with pytest.raises(ValueError, match="`num_bins` must be <= 1048576, got 1000000000000"):
        calibration.ece(Y, P, num_bins=10**12)
    with pytest.raises(ValueError, match="`num_bins` must be <= 1048576"):
        metrics.ExpectedCalibrationError(num_bins=10**9)
    with pytest.raises(ValueError, match="`num_classes` x `num_bins` = 1000 x 1000000 exceeds"):
        metrics.ClasswiseECE(1000, num_bins=10**6)
    assert calibration.ece(Y, P, num_bins=2**20) >= 0.0  # the largest count still works


# --- analysis and plots ---------------------------------------------------------------

def test_related_classes_refuse_repeated_or_string_names():
    from keras_smooth import analysis

    q = np.array([[0.1, 0.6, 0.3], [0.2, 0.1, 0.7], [0.5, 0.4, 0.1]])
    with pytest.raises(ValueError, match="`class_names` must be distinct, got 'a' twice"):
        analysis.top_related_classes(q, ["a", "a", "b"])  # before: a class vanished
    with pytest.raises(TypeError, match="`class_names` must be a list of class names"):
        analysis.top_related_classes(q, "abc")  # before: three one-letter names
    assert list(analysis.top_related_classes(q, ["a", "b", "c"])) == ["a", "b", "c"]


def test_spread_and_centres_of_extreme_or_nan_inputs():
    from keras_smooth import analysis

    m = np.array([[0.0, 2.0, 1.0], [3.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    off = m[~np.eye(3, dtype=bool)]
    for scale in (1.0, 1e300, 1e-300):  # the ratio std / mean is scale-free; NaN at 1e308
        assert analysis.offdiagonal_spread(m * scale) == pytest.approx(off.std() / off.mean())
    with pytest.raises(ValueError, match="`features` contains NaN or Inf"):
        analysis.class_centres(np.array([[0.0, np.nan], [1.0, 1.0]]), [0, 1], 2)
    with pytest.raises(ValueError, match="`labels` has 2 rows but `predictions` has 3"):
        analysis.confusion_matrix([0, 1], [0, 1, 1], 2)


@pytest.mark.parametrize("classes, error, match", [
    (5, TypeError, "`classes` must be a sequence of class ids"),
    ([0.7], ValueError, "`classes` must hold whole-number class ids, got 0.7"),
    ("012", TypeError, "`classes` must be a sequence of class ids")])
def test_classwise_panels_refuse_classes_that_are_not_ids(classes, error, match):
    from keras_smooth import plots

    with pytest.raises(error, match=match):  # before: raw errors, or 0.7 drew class 0
        plots.classwise_reliability(Y, P, classes=classes)


def test_plots_take_class_ids_and_names_in_every_ordinary_form(tmp_path):
    """Whole-number floats (np.unique of float labels), sets, tensors; names as a mapping
    {id: name}, with repeats, as bytes; dpi None or 'figure' (matplotlib's own values)."""
    import keras

    from keras_smooth import plots

    for classes in (np.array([0.0, 2.0]), {2, 0}, keras.ops.convert_to_tensor([0, 2])):
        fig = plots.classwise_reliability(Y, P, classes=classes,
                                          class_names={0: "a", 1: "b", 2: "c"})
        assert [ax.get_title().split(":")[0] for ax in fig.axes if ax.get_visible()] == ["a", "c"]
    fig = plots.matrix_heatmap(np.eye(3), class_names=np.array([b"x", b"x", b"y"]))
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["x", "x", "y"]
    for dpi in (None, "figure", 50):
        plots.save_figure(fig, str(tmp_path / "c.png"), dpi=dpi)
    with pytest.raises(ValueError, match="`class_names` has no name for class 1"):
        plots.classwise_reliability(Y, P, classes=[0, 1], class_names={0: "a", 2: "c"})


def test_plots_name_bad_mappings_names_paths_and_sizes(tmp_path):
    from keras_smooth import plots

    with pytest.raises(TypeError, match="`results` must be a mapping"):
        plots.reliability_diagrams([P], Y)
    with pytest.raises(TypeError, match="`curves` must be a mapping"):
        plots.smoothing_curves([1, 2])
    with pytest.raises(ValueError, match=r"`curves\['a'\]` must be a pair of finite numbers"):
        plots.smoothing_curves({"a": (0.5, 1.0, 2.0)})
    with pytest.raises(TypeError, match="`class_names` must be a list of class names, got 5"):
        plots.matrix_heatmap(np.eye(3), class_names=5)
    with pytest.raises(TypeError, match="`class_names` must be a list of class names, got 5"):
        plots.confusion_heatmap(Y, P, class_names=5)
    with pytest.raises(ValueError, match="`matrix` must be square and not empty"):
        plots.matrix_heatmap(np.zeros((0, 0)))
    with pytest.raises(TypeError, match="`grid_predictions` must be a mapping"):
        plots.decision_regions(np.zeros((4, 2)), [0, 1, 0, 1], np.zeros((4, 2)), np.ones((4, 2)))
    with pytest.raises(TypeError, match="`y` must be an array of real numbers"):
        plots.decision_regions(np.zeros((2, 2)), ["a", "b"], np.zeros((4, 2)),
                               {"m": np.full((4, 2), 0.5)})
    fig = plots.matrix_heatmap(np.eye(2))
    with pytest.raises(TypeError, match="`path` must be a file name"):
        plots.save_figure(fig, None)
    with pytest.raises(ValueError, match="`dpi` must be finite"):
        plots.save_figure(fig, str(tmp_path / "a.png"), dpi=float("nan"))
    assert plots.save_figure(fig, tmp_path / "b.png") == tmp_path / "b.png"
    assert (tmp_path / "b.png").stat().st_size > 0


@pytest.mark.parametrize("make", [metrics.ExpectedCalibrationError,
                                  lambda: metrics.ClasswiseECE(2)])
def test_metrics_read_bool_labels_as_the_functions_do(make):
    """True/False are the ids 1/0, as `calibration.ece` reads them (a raw dtype error before)."""
    p = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.1, 0.9]], "float32")
    y = np.array([True, False, True, True])
    metric, ints = make(), make()
    metric.update_state(y, p)
    ints.update_state(y.astype("int64"), p)
    assert float(metric.result()) == float(ints.result())
    function = calibration.ece if isinstance(metric, metrics.ExpectedCalibrationError) else (
        calibration.classwise_ece)
    np.testing.assert_allclose(float(metric.result()), function(y.astype("int64"), p), atol=1e-6)


@pytest.mark.parametrize("y_true", ["abc", [["a", "b"]] * 4, None, {"a": 1},
                                    np.array([1 + 2j, 0, 1, 0])],
                         ids=["str", "strings", "None", "dict", "complex"])
def test_metrics_name_y_true_when_it_holds_no_real_numbers(y_true):
    p = np.full((4, 2), 0.5, "float32")
    with pytest.raises(TypeError, match=r"`y_true` must be an array of real numbers"):
        metrics.ExpectedCalibrationError().update_state(y_true, p)


@pytest.mark.parametrize("labels", [[[0], [1, 2], [0]], None, ["a", "b", "c"]],
                         ids=["ragged", "None", "strings"])
def test_fit_temperature_names_labels_that_hold_no_real_numbers(labels):
    logits = np.array([[1.0, 0.0, -1.0], [0.5, 2.0, 0.0], [0.0, 0.0, 3.0]])
    with pytest.raises(TypeError, match=r"`labels` must be an array of real numbers"):
        calibration.fit_temperature(logits, labels)
