"""Edge cases found by adversarial testing: each test failed before its fix.

Expected values come from NumPy written from the definitions here, never from
the code under test.
"""

import warnings

import keras
import numpy as np
import pytest

import keras_smooth as ks
from keras_smooth import calibration


def np_sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def np_softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def np_ece(ids, probs, num_bins=15):
    """Top-label ECE with bins ((m-1)/M, m/M], from the definition."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == ids
    edges = np.linspace(0, 1, num_bins + 1)
    total = 0.0
    for m in range(num_bins):
        inside = (conf > edges[m]) & (conf <= edges[m + 1]) if m else (conf <= edges[1])
        if inside.any():
            total += abs(correct[inside].sum() - conf[inside].sum())
    return total / len(ids)


# --- apply_temperature follows the module's binary and logits conventions --------


@pytest.mark.parametrize("shape", [(7,), (7, 1)])
def test_apply_temperature_binary_logits_are_sigmoid(shape):
    rng = np.random.default_rng(1)
    z = rng.normal(size=7) * 3
    got = calibration.apply_temperature(z.reshape(shape), 2.5)
    p = np_sigmoid(z / 2.5)
    np.testing.assert_allclose(got, np.stack([1 - p, p], axis=1), rtol=1e-12, atol=1e-15)


def test_apply_temperature_binary_probabilities():
    p = np.array([[0.1], [0.5], [0.9]])
    got = calibration.apply_temperature(p, 2.0, from_logits=False)
    logit = np.log(p[:, 0] / (1 - p[:, 0]))
    expected = np_sigmoid(logit / 2.0)
    np.testing.assert_allclose(got[:, 1], expected, rtol=1e-12)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-12)


def test_apply_temperature_logits_passed_as_probabilities_are_read_as_logits():
    z = np.array([[3.0, -2.0, 0.5], [0.0, 1.0, 4.0]])
    with pytest.warns(UserWarning, match="from_logits"):
        got = calibration.apply_temperature(z, 2.0, from_logits=False)
    np.testing.assert_allclose(got, np_softmax(z / 2.0), rtol=1e-12)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_apply_temperature_refuses_non_finite(bad):
    with pytest.raises(ValueError, match="`predictions` must be finite"):
        calibration.apply_temperature(np.array([[bad, 1.0]]), 2.0)


def test_apply_temperature_refuses_bad_shape_and_flag():
    with pytest.raises(ValueError, match="`predictions` must have shape"):
        calibration.apply_temperature(np.zeros((2, 2, 2)), 2.0)
    with pytest.raises(TypeError, match="`from_logits`"):
        calibration.apply_temperature(np.zeros((2, 2)), 2.0, from_logits="no")


def test_fit_temperature_refuses_non_boolean_from_logits():
    with pytest.raises(TypeError, match="`from_logits`"):
        calibration.fit_temperature(np.array([[1.0, 2.0], [2.0, 0.0]]), [0, 1], from_logits="no")


# --- TemperatureScalingCallback -----------------------------------------------------


def test_temperature_callback_refuses_bad_arguments_before_training():
    data = (np.zeros((4, 2), "float32"), np.array([0, 1, 0, 1]))
    with pytest.raises(ValueError, match="`bounds`"):
        ks.TemperatureScalingCallback(validation_data=data, bounds=(5.0, 1.0))
    with pytest.raises(TypeError, match="`from_logits`"):
        ks.TemperatureScalingCallback(validation_data=data, from_logits="False")


def test_temperature_callback_binary_logits_model_reports_true_ece_after():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 3)).astype("float32")
    y = (x[:, 0] + 0.5 * rng.normal(size=120) > 0).astype("int32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile("adam", keras.losses.BinaryCrossentropy(from_logits=True))
    callback = ks.TemperatureScalingCallback(validation_data=(x, y))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(x, y, epochs=1, verbose=0, callbacks=[callback])
    z = np.asarray(model.predict(x, verbose=0), "float64")[:, 0]
    p = np_sigmoid(z / callback.results["temperature"])
    expected = np_ece(y, np.stack([1 - p, p], axis=1))
    assert callback.results["val_ece_after"] == pytest.approx(expected, abs=1e-6)


# --- streaming metrics in compiled code ---------------------------------------------


@pytest.mark.parametrize("metric", [lambda: ks.ExpectedCalibrationError(),
                                    lambda: ks.ClasswiseECE(num_classes=3)])
def test_metric_in_compiled_evaluate_refuses_fractional_ids(metric):
    """Eagerly 0.4 raises; compiled code cannot raise, so the result must be NaN, not a number."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 4)).astype("float32")
    labels = (rng.integers(0, 3, 16) + 0.4).astype("float32").reshape(-1, 1)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(loss="mse", metrics=[metric()])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logs = model.evaluate(x, labels, verbose=0, return_dict=True, batch_size=8)
    name = "ece" if "ece" in logs else "classwise_ece"
    assert np.isnan(logs[name]), logs
    with pytest.raises(ValueError, match=r"`y_true` must be class ids in \[0, 3\), got 2\.4 "
                                         r"\(position 0; class ids must be whole numbers\)"):
        metric().update_state(labels, model.predict(x, verbose=0))


# --- losses: labels and predictions with different numbers of rows -------------------


def _all_losses():
    k = 3
    matrix = np.full((k, k), 0.5, "float32") - 0.5 * np.eye(k, dtype="float32")
    return {
        "LabelSmoothingLoss": ks.LabelSmoothingLoss(),
        "LLSLoss": ks.LLSLoss(k),
        "LSPlusPlusLoss": ks.LSPlusPlusLoss(k),
        "SubstituteTeacherLoss": ks.SubstituteTeacherLoss(matrix),
        "DistillationLoss": ks.DistillationLoss(),
        "MarginLSLoss": ks.losses.MarginLSLoss(),
        "ZipfLSLoss": ks.losses.ZipfLSLoss(),
    }


@pytest.mark.parametrize("name", sorted(_all_losses()))
def test_losses_name_both_row_counts_when_labels_and_predictions_differ(name):
    loss = _all_losses()[name]
    labels = np.array([0, 1, 2, 1])
    logits = np.random.default_rng(0).normal(size=(3, 3)).astype("float32")
    y_true = labels
    if name == "DistillationLoss":
        y_true = ks.distillation_targets(labels, np.zeros((4, 3), "float32"))
    with pytest.raises(ValueError, match=r"`y_true` has 4 rows but `y_pred` has 3"):
        loss(y_true, logits)


# --- layers and targets building blocks ----------------------------------------------


@pytest.mark.parametrize("temperature", [1e-50, 1e39, 1e300])
def test_temperature_scaling_refuses_temperatures_float32_cannot_hold(temperature):
    with pytest.raises(ValueError, match="`temperature` must be within the float32 range"):
        ks.TemperatureScaling(temperature, softmax=True)
    layer = ks.TemperatureScaling(2.0, softmax=True)
    with pytest.raises(ValueError, match="`temperature` must be within the float32 range"):
        layer.set_temperature(temperature)


def test_temperature_scaling_small_but_representable_temperature_stays_finite():
    z = np.array([[1.0, 2.0, -3.0]], "float32")
    out = np.asarray(ks.TemperatureScaling(1e-30, softmax=True)(z))
    np.testing.assert_array_equal(out, [[0.0, 1.0, 0.0]])


@pytest.mark.parametrize("labels", [np.array([0, 1]), np.eye(4, dtype="float32")[:2],
                                    np.zeros((2, 1), "float32")])
def test_q_matrix_names_labels_of_the_wrong_shape(labels):
    with pytest.raises(ValueError, match=r"`labels` must be one-hot or soft rows of shape \(N, 3\)"):
        ks.QMatrix(3)(labels)


def test_mix_refuses_broadcasting_and_epsilon_outside_unit_interval():
    onehot = np.eye(3, dtype="float32")[[0, 1]]
    teacher = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]], "float32")
    with pytest.raises(ValueError, match="must have the same shape"):
        ks.targets.mix(onehot, teacher[:1], 0.1)
    for bad in (2.0, -0.1, np.nan, np.array([0.1, 1.5])):
        with pytest.raises(ValueError, match="`epsilon` must be"):
            ks.targets.mix(onehot, teacher, bad)
    got = np.asarray(ks.targets.mix(onehot, teacher, np.array([0.1, 0.5])))
    np.testing.assert_allclose(got, [[0.97, 0.02, 0.01], [0.05, 0.9, 0.05]], rtol=1e-6)


def test_matrix_rows_refuses_a_non_square_matrix():
    with pytest.raises(ValueError, match=r"`matrix` must be a square K x K matrix, got shape \(3, 2\)"):
        ks.targets.matrix_rows([0, 1], np.full((3, 2), 0.5))


# --- datasets ------------------------------------------------------------------------


def test_stratified_split_refuses_x_and_y_of_different_lengths():
    with pytest.raises(ValueError, match="`x` has 10 rows but `y` has 8"):
        ks.datasets.stratified_split(np.zeros((10, 2)), np.array([0, 1] * 4), 0.5, seed=0)


@pytest.mark.parametrize("seed, error", [(-1, ValueError), (1.5, TypeError), ("a", TypeError)])
def test_dataset_seeds_are_checked_by_name(seed, error):
    with pytest.raises(error, match="`seed` must be"):
        ks.datasets.load("gaussian", seed=seed)
    with pytest.raises(error, match="`seed` must be"):
        ks.datasets.gaussian_task(3, seed=seed)


@pytest.mark.parametrize("name", ["n_train", "n_val", "n_test"])
def test_gaussian_split_sizes_must_be_whole_numbers(name):
    with pytest.raises(TypeError, match=f"`{name}` must be an integer, got 2.5"):
        ks.datasets.load_gaussian_task(**{name: 2.5})
    with pytest.raises(TypeError, match="`n_per_class` must be an integer"):
        ks.datasets.gaussian_task(1.5)


@pytest.mark.parametrize("x", [np.zeros(2), np.zeros((2, 5)), np.array([[np.nan, 0.0]])])
def test_gaussian_posterior_refuses_bad_points(x):
    with pytest.raises(ValueError, match="`x` must be"):
        ks.datasets.gaussian_task_posterior(x)


# --- online label smoothing -------------------------------------------------------------


def test_online_soft_matrix_refuses_logits_and_a_bad_previous_matrix():
    with pytest.raises(ValueError, match="`probs` must be probabilities"):
        ks.losses.online_soft_matrix([0, 1], [[2.0, -1.0], [0.5, 3.0]], np.eye(2))
    with pytest.raises(ValueError, match=r"`previous` must have shape \(2, 2\)"):
        ks.losses.online_soft_matrix([0, 1], [[0.9, 0.1], [0.2, 0.8]], np.eye(3)[:2])
    with pytest.raises(ValueError, match="Every row of `previous` must sum to 1"):
        ks.losses.online_soft_matrix([0, 1], [[0.9, 0.1], [0.2, 0.8]], np.ones((2, 2)))


def test_online_label_smoothing_callback_reads_logits_of_a_from_logits_false_loss():
    """The loss softmaxes a batch that is not probabilities; the callback must do the same."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])  # logits
    loss = ks.losses.OnlineLabelSmoothingLoss(num_classes=2, from_logits=False)
    model.compile(optimizer="adam", loss=loss)
    callback = ks.losses.OnlineLabelSmoothing(loss, x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(x, y, epochs=1, verbose=0, callbacks=[callback])
    z = np.asarray(model.predict(x, verbose=0), "float64")
    p = np_softmax(z)
    expected = np.eye(2)
    for k in range(2):
        rows = (p.argmax(axis=1) == y) & (y == k)
        if rows.any():
            expected[k] = p[rows].mean(axis=0)
    np.testing.assert_allclose(loss.matrix, expected, rtol=1e-5, atol=1e-6)


# --- teacher rows must match label rows (no broadcasting of one teacher row) --------------


@pytest.mark.parametrize("rows", [1, 2])
def test_teacher_logits_with_other_rows_than_labels_are_refused(rows):
    logits = np.array([[2.0, 0.0, -1.0], [0.0, 1.0, 0.5]], "float32")[:rows]
    labels = np.array([0, 1, 2])
    with pytest.raises(ValueError, match=f"`teacher_logits` has {rows} rows but `labels` has 3"):
        ks.targets.wrong_class_distribution_from_logits(labels, logits)
    for method in ("ils1", "ils2", "ils"):
        with pytest.raises(ValueError, match=f"`teacher_logits` has {rows} rows"):
            ks.ILSTargets(method)(labels, logits)


def test_confusion_matrix_refuses_nan_scores():
    scores = np.array([[np.nan, 0.5], [0.1, 0.9]])
    with pytest.raises(ValueError, match="`predictions` must be finite"):
        ks.analysis.confusion_matrix([0, 1], scores, 2)


@pytest.mark.parametrize("every, error", [(1.5, TypeError), ("2", TypeError), (True, TypeError),
                                          (0, ValueError)])
def test_calibration_logger_every_must_be_a_whole_number_of_epochs(every, error):
    with pytest.raises(error, match="`every` must be"):
        ks.CalibrationLogger(validation_data=(np.zeros((2, 2)), np.array([0, 1])), every=every)


@pytest.mark.parametrize("argument", ["reliability_dir", "tensorboard_dir"])
def test_calibration_logger_refuses_an_output_folder_that_is_a_file_when_built(tmp_path,
                                                                               argument):
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    with pytest.raises(ValueError, match=f"`{argument}`: {afile} is a file, not a folder"):
        ks.CalibrationLogger(validation_data=(np.zeros((2, 2)), np.array([0, 1])),
                             **{argument: str(afile)})
    with pytest.raises(ValueError, match=f"`{argument}`: .*cannot be created"):
        ks.CalibrationLogger(validation_data=(np.zeros((2, 2)), np.array([0, 1])),
                             **{argument: str(afile / "sub")})
    data = (np.zeros((2, 2)), np.array([0, 1]))
    assert getattr(ks.CalibrationLogger(data, **{argument: ""}), argument) is None  # off
    url = "gs://bucket/run"  # TensorBoard's writers take URLs: not a local folder to check
    assert getattr(ks.CalibrationLogger(data, **{argument: url}), argument) == url


# --- plots ------------------------------------------------------------------------------


def test_plots_refuse_bad_columns_and_mismatched_grids():
    pytest.importorskip("matplotlib")
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
    with pytest.raises(ValueError, match="`columns` must be a positive integer, got 0"):
        ks.plots.reliability_diagrams({"a": probs}, [0, 1, 1], columns=0)
    grid = np.zeros((4, 2))
    with pytest.raises(ValueError, match="`x` has 3 points but `y` has 2 labels"):
        ks.plots.decision_regions(np.zeros((3, 2)), [0, 1], grid, {"a": np.zeros((4, 3))})
    with pytest.raises(ValueError, match=r"`grid_predictions\['a'\]` must have shape \(4, K\)"):
        ks.plots.decision_regions(np.zeros((2, 2)), [0, 1], grid, {"a": np.zeros((5, 3))})
    # points a K-class model cannot colour were dropped from the figure without a word
    with pytest.raises(ValueError, match=r"`y` must be class ids in \[0, 3\).*got 3"):
        ks.plots.decision_regions(np.zeros((2, 2)), [0, 3], grid, {"a": np.zeros((4, 3))})
    with pytest.raises(ValueError, match="draws at most 10 classes, got 11"):
        ks.plots.decision_regions(np.zeros((2, 2)), [0, 1], grid, {"a": np.zeros((4, 11))})
    with pytest.raises(ValueError, match=r"`x` and `grid` must be 2-D points \(N, 2\)"):
        ks.plots.decision_regions(np.zeros((2, 3)), [0, 1], grid, {"a": np.zeros((4, 3))})
    with pytest.raises(ValueError, match="`class_names` must name all 3 classes, got 2"):
        ks.plots.decision_regions(np.zeros((2, 2)), [0, 1], grid, {"a": np.zeros((4, 3))},
                                  class_names=["a", "b"])


def test_matrix_heatmap_colours_negative_entries():
    """A difference of matrices has negative entries: the colour scale reaches them."""
    pytest.importorskip("matplotlib")
    matrix = np.array([[-1.0, -0.5], [-0.2, -2.0]])
    figure = ks.plots.matrix_heatmap(matrix)
    image = figure.axes[0].images[0]
    assert image.norm.vmin == -2.0 and image.norm.vmax == -0.2
    colours = {tuple(image.cmap(image.norm(v))) for v in matrix.ravel()}
    assert len(colours) == 4  # four values, four colours (before: all the colour of 0)


# --- true_class_subset_ece reads the predictions once -----------------------------------


def test_true_class_subset_ece_keeps_bfloat16_probabilities():
    """bfloat16 softmax rows sum to 1 only within ~3e-3; the subsets must not be re-tested
    with the float64 tolerance (they were softmaxed a second time)."""
    rng = np.random.default_rng(0)
    z = rng.normal(size=(2000, 10)) * 3
    labels = rng.integers(0, 10, 2000)
    probs = keras.ops.cast(keras.ops.convert_to_tensor(np_softmax(z)), "bfloat16")
    held = np.asarray(keras.ops.convert_to_numpy(probs)).astype("float64")
    assert np.abs(held.sum(axis=1) - 1).max() > 1e-3  # the case that went wrong
    expected = np.mean([np_ece(labels[labels == j], held[labels == j]) for j in range(10)])
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no "treated as logits" warning either
        got = calibration.true_class_subset_ece(labels, probs)
    assert got == pytest.approx(expected, abs=1e-9)


# --- 16-bit probabilities keep their dtype's tolerance in fit_temperature and the logger ---


def _bfloat16_softmax(z):
    probs = keras.ops.cast(keras.ops.convert_to_tensor(np_softmax(z)), "bfloat16")
    return probs, np.asarray(keras.ops.convert_to_numpy(probs)).astype("float64")


def test_fit_temperature_reads_bfloat16_probabilities_as_probabilities():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(2000, 10)) * 3
    labels = np.array([rng.choice(10, p=np_softmax(row / 2)) for row in z])
    probs, held = _bfloat16_softmax(z)
    assert np.abs(held.sum(axis=1) - 1).max() > 1e-3  # beyond the float64 tolerance
    log_p = np.log(np.maximum(held, 1e-12))
    grid = np.exp(np.linspace(np.log(0.5), np.log(8.0), 4001))

    def nll(t):
        s = log_p / t
        s = s - s.max(axis=1, keepdims=True)
        return np.mean(np.log(np.exp(s).sum(axis=1)) - s[np.arange(len(labels)), labels])

    expected = grid[np.argmin([nll(t) for t in grid])]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # not "treated as logits"
        fit = calibration.fit_temperature(probs, labels, from_logits=False)
    assert fit.temperature == pytest.approx(expected, rel=2e-3)


def _bfloat16_softmax_model():
    """A confident 10-class model whose softmax output is bfloat16 (rows off 1 by ~3e-3)."""
    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((4,)),
        keras.layers.Dense(10, kernel_initializer=keras.initializers.RandomNormal(stddev=2.0)),
        keras.layers.Activation("softmax", dtype="bfloat16"),
    ])


def test_calibration_logger_reads_a_bfloat16_softmax_output_as_probabilities():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4)).astype("float32")
    labels = rng.integers(0, 10, 300)
    model = _bfloat16_softmax_model()
    model.compile("sgd", "sparse_categorical_crossentropy")
    logger = ks.CalibrationLogger(validation_data=(x, labels))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        history = model.fit(x, labels, epochs=1, verbose=0, callbacks=[logger])
    held = np.asarray(model.predict(x, verbose=0)).astype("float64")
    assert np.abs(held.sum(axis=1) - 1).max() > 1e-3
    assert history.history["val_calibration/ece"][-1] == pytest.approx(np_ece(labels, held), abs=1e-9)


def test_online_label_smoothing_with_a_bfloat16_softmax_model_keeps_probability_rows():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4)).astype("float32")
    y = rng.integers(0, 10, 200)
    model = _bfloat16_softmax_model()
    loss = ks.losses.OnlineLabelSmoothingLoss(num_classes=10, from_logits=False)
    model.compile(optimizer="sgd", loss=loss)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(x, y, epochs=1, verbose=0, callbacks=[ks.losses.OnlineLabelSmoothing(loss, x, y)])
    assert np.all(loss.matrix >= 0)
    np.testing.assert_allclose(loss.matrix.sum(axis=1), 1.0, atol=1e-5)


# --- export_for_serving never replaces the working directory ---------------------------


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="export needs TensorFlow")
@pytest.mark.parametrize("path", ["", ".", ".."])
def test_export_refuses_the_working_directory(path, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # empty: the export used to be written into it, replacing it
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    with pytest.raises(ValueError, match="`path`"):
        ks.export_for_serving(model, path)
    assert work.is_dir() and not any(work.iterdir())
    assert ks.export_for_serving(model, "m/1") == 1.0  # a folder of its own is fine
    assert (work / "m" / "1" / "saved_model.pb").is_file()


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="export needs TensorFlow")
def test_export_names_a_path_of_the_wrong_type():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    with pytest.raises(TypeError, match="`path` must be a folder path"):
        ks.export_for_serving(model, None)


@pytest.mark.parametrize("seed, error", [(-3, ValueError), (0.5, TypeError)])
def test_beta_smoothing_seed_is_checked_by_name(seed, error):
    with pytest.raises(error, match="`seed` must be"):
        ks.losses.beta_smoothing_targets([0, 1], [0.5, 0.9], 2, 0.1, seed=seed)


def test_analysis_and_plots_name_what_is_wrong_with_their_arguments():
    pytest.importorskip("matplotlib")
    labels, scores = np.array([0, 1]), np.array([[0.9, 0.1], [0.2, 0.8]])
    with pytest.raises(ValueError, match="`predictions` has 2 columns of scores but "
                                         "`num_classes` is 3"):
        ks.analysis.confusion_matrix(labels, scores, 3)
    with pytest.raises(TypeError, match="`normalize` must be True or False, got 'all'"):
        ks.analysis.confusion_matrix(labels, scores, 2, normalize="all")
    with pytest.raises(ValueError, match="`classes` is empty"):
        ks.plots.classwise_reliability(labels, scores, classes=[])
    with pytest.raises(TypeError, match="`matrices` must be a mapping name -> K x K matrix, "
                                        "got list"):
        ks.plots.matrix_heatmaps([np.eye(2)])
    figure = ks.plots.smoothing_curves({"a": (0.9, 2.0)}, cap=0.5)
    assert "min(0.5, P2" in figure.axes[0].get_title()


def test_confusion_heatmap_reads_binary_probabilities_and_names_nan():
    """(N,) or (N, 1) probabilities are P(class 1), as everywhere in the library."""
    pytest.importorskip("matplotlib")
    labels = np.array([0, 1, 1, 0])
    p = np.array([0.2, 0.9, 0.4, 0.6])
    expected = np.array([[0.5, 0.5], [0.5, 0.5]])  # predicted 0, 1, 0, 1
    for given in (p, p[:, None]):
        figure = ks.plots.confusion_heatmap(labels, given)
        np.testing.assert_allclose(figure.axes[0].images[0].get_array(), expected)
    with pytest.raises(ValueError, match="`predictions` must be finite, got nan"):
        ks.plots.confusion_heatmap(labels, np.array([0.0, np.nan, 1.0, 0.0]))
