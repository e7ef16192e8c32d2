"""Calibration functions, metrics, logger and plots never report a number from the wrong input.

Issue 11 items A-G. Backend-agnostic (also run under JAX from tests/test_backends.py).
Every expected value comes from the NumPy references below, written from the equations
in float64 (bins ((m - 1)/M, m/M], 0 in the first bin).
"""

import warnings

import keras
import numpy as np
import pytest

from keras_smooth import calibration
from keras_smooth.callbacks import CalibrationLogger
from keras_smooth.metrics import ClasswiseECE, ExpectedCalibrationError

JAX = keras.backend.backend() == "jax"
HAS_FLOAT64 = not JAX or __import__("jax").config.jax_enable_x64


# --- NumPy references (float64) ---------------------------------------------------------


def np_softmax(z):
    z = np.asarray(z, "float64")
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def np_sigmoid(z):
    return 1.0 / (1.0 + np.exp(-np.asarray(z, "float64")))


def ref_bins(values, m_bins):
    return np.maximum(np.ceil(np.asarray(values, "float64") * m_bins).astype(int) - 1, 0)


def ref_ece(labels, probs, m_bins=15, weights=None):
    probs = np.asarray(probs, "float64")
    w = np.ones(len(probs)) if weights is None else np.asarray(weights, "float64")
    conf, correct = probs.max(1), (probs.argmax(1) == np.asarray(labels)).astype(float)
    bins = ref_bins(conf, m_bins)
    gap = sum(abs((w * correct)[bins == m].sum() - (w * conf)[bins == m].sum())
              for m in range(m_bins))
    return gap / w.sum()


def ref_classwise(labels, probs, m_bins=15, weights=None):
    probs = np.asarray(probs, "float64")
    w = np.ones(len(probs)) if weights is None else np.asarray(weights, "float64")
    total = 0.0
    for j in range(probs.shape[1]):
        bins, hit = ref_bins(probs[:, j], m_bins), (np.asarray(labels) == j).astype(float)
        total += sum(
            abs((w * hit)[bins == m].sum() - (w * probs[:, j])[bins == m].sum())
            for m in range(m_bins)
        )
    return total / (probs.shape[1] * w.sum())


def two_columns(p1):
    p1 = np.asarray(p1, "float64").reshape(-1)
    return np.stack([1.0 - p1, p1], axis=1)


def draw(rng, n, k, scale=3.0):
    logits = (rng.normal(size=(n, k)) * scale).astype("float32")
    labels = rng.integers(0, k, size=n)
    return logits, labels


def stream(metric, labels, preds, weights=None, pieces=3):
    for part in np.array_split(np.arange(len(labels)), pieces):
        w = weights if weights is None or not np.ndim(weights) else weights[part]
        metric.update_state(labels[part], preds[part], sample_weight=w)
    return float(metric.result())


# --- A: one logits-or-probabilities rule ----------------------------------------------------


def test_functions_read_non_probabilities_as_logits_with_a_warning(rng):
    logits, labels = draw(rng, 200, 4)
    probs = np_softmax(logits)
    for name, ref in (("ece", ref_ece), ("classwise_ece", ref_classwise)):
        fn = getattr(calibration, name)
        with pytest.warns(UserWarning, match="from_logits"):
            got = fn(labels, logits)
        np.testing.assert_allclose(got, ref(labels, probs), atol=1e-9)
        assert got == pytest.approx(fn(labels, logits, from_logits=True), abs=1e-12)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # real probabilities: no warning
            np.testing.assert_allclose(fn(labels, probs), ref(labels, probs), atol=1e-9)
    with pytest.warns(UserWarning, match="from_logits"):
        s = calibration.summary(labels, logits)
    rows = np.arange(len(labels))
    np.testing.assert_allclose(s["nll"], -np.log(probs[rows, labels]).mean(), rtol=1e-9)
    brier = ((probs - np.eye(4)[labels]) ** 2).sum(1).mean()
    np.testing.assert_allclose(s["brier"], brier, rtol=1e-9)
    with pytest.warns(UserWarning, match="from_logits"):
        stats = calibration.bin_statistics(labels, logits)
    np.testing.assert_allclose(stats["ece"], ref_ece(labels, probs), atol=1e-9)


def test_metrics_fed_logits_equal_the_metric_fed_softmax_eagerly(rng):
    logits, labels = draw(rng, 48, 4)
    probs = np_softmax(logits)
    for from_logits in (False, True):
        ece = stream(ExpectedCalibrationError(from_logits=from_logits), labels, logits)
        cw = stream(ClasswiseECE(4, from_logits=from_logits), labels, logits)
        np.testing.assert_allclose(ece, ref_ece(labels, probs), atol=1e-6)
        np.testing.assert_allclose(cw, ref_classwise(labels, probs), atol=1e-6)
    # The same metric object switches per batch: probabilities then logits.
    metric = ExpectedCalibrationError()
    metric.update_state(labels[:16], probs[:16].astype("float32"))
    metric.update_state(labels[16:32], logits[16:32])
    metric.update_state(labels[32:], probs[32:].astype("float32"))
    np.testing.assert_allclose(float(metric.result()), ref_ece(labels, probs), atol=1e-6)


def _zero_loss(y_true, y_pred):
    return keras.ops.zeros_like(y_pred[:, 0])  # the metrics alone see the labels


def _identity_model(width):
    model = keras.Sequential([keras.Input((width,)), keras.layers.Identity()])
    model.compile(loss=_zero_loss, metrics=[ExpectedCalibrationError(), ClasswiseECE(3)])
    return model


def test_metrics_decide_per_batch_inside_compiled_evaluate(rng):
    # The model returns its input: batch 1 holds probabilities, batch 2 logits.
    logits, labels = draw(rng, 128, 3)
    x = np.concatenate([np_softmax(logits[:64]), logits[64:]]).astype("float32")
    result = _identity_model(3).evaluate(x, labels, batch_size=64, verbose=0, return_dict=True)
    probs = np_softmax(logits)
    np.testing.assert_allclose(result["ece"], ref_ece(labels, probs), atol=1e-6)
    np.testing.assert_allclose(result["classwise_ece"], ref_classwise(labels, probs), atol=1e-6)


def test_metrics_on_a_logit_model_in_fit_and_evaluate(rng):
    x = rng.normal(size=(96, 4)).astype("float32")
    labels = rng.integers(0, 3, size=96)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, kernel_initializer="ones")])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0),  # weights stay put
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[ExpectedCalibrationError(), ClasswiseECE(3)])
    history = model.fit(x, labels, batch_size=32, epochs=1, verbose=0)
    result = model.evaluate(x, labels, batch_size=40, verbose=0, return_dict=True)
    probs = np_softmax(model.predict(x, verbose=0))
    for values in (result, {k: v[-1] for k, v in history.history.items()}):
        assert values["ece"] <= 1.0
        np.testing.assert_allclose(values["ece"], ref_ece(labels, probs), atol=1e-6)
        np.testing.assert_allclose(values["classwise_ece"], ref_classwise(labels, probs), atol=1e-6)


def test_calibration_logger_default_reads_probability_and_logit_models(rng):
    x = rng.normal(size=(64, 4)).astype("float32")
    labels = rng.integers(0, 3, size=64)
    for activation in ("softmax", None):
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation=activation)])
        model.compile(optimizer=keras.optimizers.SGD(0.0), loss="sparse_categorical_crossentropy")
        logger = CalibrationLogger(validation_data=(x, labels))
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)
            history = model.fit(x, labels, epochs=1, verbose=0, callbacks=[logger])
        out = model.predict(x, verbose=0)
        probs = out if activation else np_softmax(out)
        np.testing.assert_allclose(history.history["val_calibration/ece"][-1], ref_ece(labels, probs),
                                   atol=1e-6)
        np.testing.assert_allclose(
            history.history["val_calibration/classwise_ece"][-1], ref_classwise(labels, probs), atol=1e-6
        )


# --- B: long sums ---------------------------------------------------------------------------


def _million(rng):
    n = 1_000_000
    probs = rng.dirichlet([0.3, 0.3, 0.3], size=n).astype("float32")
    labels = (rng.random(n)[:, None] > np.cumsum(probs, 1)).sum(1).clip(0, 2)
    edges = np.linspace(0, 1, 16)[1:-1].astype("float32")
    assert not np.isin(probs, edges).any()  # the ceil reference and float32 edges agree
    return labels, probs


def test_functions_and_metrics_are_accurate_at_a_million_samples(rng):
    labels, probs = _million(rng)
    expected = ref_ece(labels, probs)
    assert abs(calibration.ece(labels, probs) - expected) < 1e-12
    assert abs(calibration.classwise_ece(labels, probs) - ref_classwise(labels, probs)) < 1e-12
    streamed = stream(ExpectedCalibrationError(dtype="float64" if HAS_FLOAT64 else None),
                      labels, probs, pieces=10)
    # float64 state: exact to rounding; float32 state (JAX without x64): documented ~1e-7.
    assert abs(streamed - expected) < (1e-10 if HAS_FLOAT64 else 1e-6), streamed - expected


# --- C: sample weights ----------------------------------------------------------------------


def test_metrics_accept_scalar_vector_and_column_weights(rng):
    logits, labels = draw(rng, 48, 4)
    probs = np_softmax(logits).astype("float32")
    w = rng.uniform(0.0, 3.0, size=48).astype("float32")
    w[::7] = 0.0  # zero weights drop the row
    for metric, ref in ((ExpectedCalibrationError(), ref_ece), (ClasswiseECE(4), ref_classwise)):
        for weight in (w, w[:, None]):
            metric.reset_state()
            value = stream(metric, labels, probs, weights=weight)
            np.testing.assert_allclose(value, ref(labels, probs, 15, w), atol=1e-6)
        metric.reset_state()  # a scalar weight scales every row alike
        value = stream(metric, labels, probs, weights=np.float32(2.5), pieces=1)
        np.testing.assert_allclose(value, ref(labels, probs), atol=1e-6)


def test_weighted_metrics_in_evaluate_with_column_weights(rng):
    logits, labels = draw(rng, 90, 3)
    w = rng.uniform(0.5, 2.0, size=90).astype("float32")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Identity()])
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  weighted_metrics=[ExpectedCalibrationError(), ClasswiseECE(3)])
    result = model.evaluate(logits, labels, sample_weight=w[:, None], batch_size=32, verbose=0,
                            return_dict=True)
    probs = np_softmax(logits)
    np.testing.assert_allclose(result["ece"], ref_ece(labels, probs, 15, w), atol=1e-6)
    np.testing.assert_allclose(result["classwise_ece"], ref_classwise(labels, probs, 15, w),
                               atol=1e-6)


@pytest.mark.parametrize("bad", [-1.0, np.nan])
def test_negative_or_nan_weights_are_an_error(bad):
    weights = np.array([1.0, bad], "float32")
    for metric in (ExpectedCalibrationError(), ClasswiseECE(2)):
        with pytest.raises(ValueError, match=r"`sample_weight` must be finite and >= 0"):
            metric.update_state([0, 1], [[0.8, 0.2], [0.3, 0.7]], sample_weight=weights)
    with pytest.raises(ValueError, match=r"`sample_weight` must have shape"):
        ExpectedCalibrationError().update_state([0, 1], [[0.8, 0.2], [0.3, 0.7]],
                                                sample_weight=np.ones((2, 2)))


# --- D: empty input -------------------------------------------------------------------------


def test_empty_batches_are_no_ops_and_no_data_gives_zero(rng):
    logits, labels = draw(rng, 48, 4)
    for metric, ref in ((ExpectedCalibrationError(), ref_ece), (ClasswiseECE(4), ref_classwise)):
        assert float(metric.result()) == 0.0
        metric.update_state(np.zeros((0,), "int32"), np.zeros((0, 4), "float32"))
        assert float(metric.result()) == 0.0
        stream(metric, labels, logits)
        metric.update_state(np.zeros((0,), "int32"), np.zeros((0, 4), "float32"),
                            sample_weight=np.zeros((0,), "float32"))
        np.testing.assert_allclose(float(metric.result()), ref(labels, np_softmax(logits)),
                                   atol=1e-6)
    for fn in (calibration.ece, calibration.classwise_ece, calibration.summary):
        with pytest.raises(ValueError, match=r"`probs` is empty"):
            fn(np.zeros((0,), "int32"), np.zeros((0, 4)))


# --- E: binary predictions --------------------------------------------------------------------


def test_binary_predictions_give_one_number_everywhere(rng):
    p1 = rng.uniform(0.0, 1.0, size=48).astype("float32")
    labels = (rng.random(48) < p1 ** 2).astype("int32")
    z = (rng.normal(size=48) * 3).astype("float32")
    cases = ((p1, two_columns(p1), False), (z, two_columns(np_sigmoid(z)), True))
    for preds, full, from_logits in cases:
        expected_ece, expected_cw = ref_ece(labels, full), ref_classwise(labels, full)
        for shaped in (preds, preds[:, None]):
            for y in (labels, labels[:, None]):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)  # logits detected
                    got = [calibration.ece(y, shaped), calibration.classwise_ece(y, shaped),
                           calibration.bin_statistics(y, shaped)["ece"],
                           calibration.summary(y, shaped)["ece"]]
                got += [stream(ExpectedCalibrationError(), y, shaped),
                        stream(ClasswiseECE(2), y, shaped),
                        stream(ExpectedCalibrationError(from_logits=from_logits), y, shaped)]
                np.testing.assert_allclose(got, [expected_ece, expected_cw, expected_ece,
                                                 expected_ece, expected_ece, expected_cw,
                                                 expected_ece], atol=1e-6)


def test_binary_sigmoid_model_in_evaluate(rng):
    x = rng.normal(size=(64, 3)).astype("float32")
    labels = rng.integers(0, 2, size=(64, 1)).astype("float32")  # Keras's binary labels
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(loss="binary_crossentropy", metrics=[ExpectedCalibrationError(), ClasswiseECE(2)])
    result = model.evaluate(x, labels, batch_size=16, verbose=0, return_dict=True)
    full = two_columns(model.predict(x, verbose=0))
    np.testing.assert_allclose(result["ece"], ref_ece(labels[:, 0], full), atol=1e-6)
    np.testing.assert_allclose(result["classwise_ece"], ref_classwise(labels[:, 0], full),
                               atol=1e-6)


# --- F: dtype and mixed precision -------------------------------------------------------------


@pytest.mark.skipif(not HAS_FLOAT64, reason="JAX without x64 has no float64")
def test_metric_results_have_the_metric_dtype():
    for metric in (ExpectedCalibrationError(dtype="float64"), ClasswiseECE(2, dtype="float64")):
        metric.update_state([0, 1], [[0.8, 0.2], [0.3, 0.7]])
        assert keras.backend.standardize_dtype(metric.result().dtype) == "float64"
        assert all(keras.backend.standardize_dtype(v.dtype) == "float64" for v in metric.variables)


def test_metrics_are_accurate_under_mixed_float16(rng):
    x = rng.normal(size=(80, 4)).astype("float32")
    labels = rng.integers(0, 3, size=80)
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=[ExpectedCalibrationError(), ClasswiseECE(3)])
        result = model.evaluate(x, labels, batch_size=32, verbose=0, return_dict=True)
        out = model.predict(x, verbose=0)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert out.dtype == np.float16
    probs = np_softmax(out.astype("float64"))  # the float16 logits, exactly
    np.testing.assert_allclose(result["ece"], ref_ece(labels, probs), atol=1e-6)
    np.testing.assert_allclose(result["classwise_ece"], ref_classwise(labels, probs), atol=1e-6)


# --- G: bad input and degenerate cases ------------------------------------------------------


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: ExpectedCalibrationError().update_state([0, 1, 1], [[0.5, 0.5], [0.2, 0.8]]),
         r"`y_true` has shape \(3,\) but `y_pred` has 2 rows"),
        (lambda: ClasswiseECE(3).update_state([0, 1], [[0.5, 0.5], [0.2, 0.8]]),
         r"`y_pred` must have 3 columns"),
        (lambda: ClasswiseECE(3).update_state([0, 1], [[0.5], [0.2]]), r"`y_pred` must have 3"),
        (lambda: ExpectedCalibrationError().update_state([0, 1], [[np.nan, 1.0], [0.2, 0.8]]),
         r"`y_pred` must be finite, got nan"),
        (lambda: ClasswiseECE(2).update_state([0, 1], [[np.inf, 1.0], [0.2, 0.8]]),
         r"`y_pred` must be finite, got inf"),
        (lambda: ExpectedCalibrationError().update_state([0, 2], [[0.5, 0.5], [0.2, 0.8]]),
         r"`y_true` must be class ids in \[0, 2\), got 2"),
        (lambda: ExpectedCalibrationError().update_state([0], np.zeros((1, 2, 2))),
         r"`y_pred` must have shape"),
        (lambda: calibration.ece([0], [[np.inf, 0.0]], from_logits=True),
         r"`probs` must be finite"),
        (lambda: calibration.ece([0, 1], [0.5, 0.9, 0.2]),
         r"`labels` has 2 rows but `probs` has 3"),
        (lambda: calibration.ece([3], [0.5]), r"`labels` must be class ids in \[0, 2\), got 3"),
        (lambda: calibration.ece([0], [[0.5, 0.5]], num_bins=0), r"`num_bins` must be >= 1, got 0"),
        (lambda: ClasswiseECE(2, num_bins=-3), r"`num_bins` must be >= 1, got -3"),
    ],
)
def test_bad_input_is_a_clear_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("bins", [1.5, True, "15"])
def test_non_integer_bins_are_a_type_error(bins):
    for make in (lambda: ExpectedCalibrationError(num_bins=bins),
                 lambda: calibration.classwise_ece([0], [[0.5, 0.5]], num_bins=bins)):
        with pytest.raises(TypeError, match=r"`num_bins` must be an integer"):
            make()
    with pytest.raises(TypeError, match=r"`from_logits` must be True or False"):
        calibration.ece([0], [[0.5, 0.5]], from_logits="yes")


def test_compiled_metrics_never_report_a_finite_number_for_nan_predictions(rng):
    logits, labels = draw(rng, 64, 3)
    logits[40, 1] = np.nan
    result = _identity_model(3).evaluate(logits, labels, batch_size=32, verbose=0, return_dict=True)
    assert np.isnan(result["ece"]) and np.isnan(result["classwise_ece"])


def test_compiled_metrics_never_report_a_finite_number_for_bad_labels(rng):
    logits, labels = draw(rng, 64, 3)
    labels[5] = 7
    try:
        result = _identity_model(3).evaluate(logits, labels, batch_size=32, verbose=0,
                                             return_dict=True)
    except Exception as error:  # TensorFlow's graph assertion names the argument
        assert "y_true" in str(error)
    else:  # JAX cannot raise inside jit: the result is NaN instead
        assert np.isnan(result["ece"]) and np.isnan(result["classwise_ece"])


def _degenerate_problem(rng, case, n=None, k=None):
    n = (1 if case == "n1" else int(rng.integers(2, 40))) if n is None else n
    k = int(rng.integers(2, 6)) if k is None else k
    logits = rng.normal(size=(n, k)) * float(rng.choice([0.1, 1.0, 5.0]))
    labels = rng.integers(0, k, size=n)
    if case == "ties":
        logits = np.round(logits)  # tied maxima; argmax takes the first
        logits[:, 1] = logits[:, 0]
    elif case == "huge":
        logits = logits * 1e4
    elif case == "zero":
        logits = np.zeros((n, k))
    elif case == "one_class":
        labels = np.full(n, int(rng.integers(0, k)))
    return labels, logits.astype("float32")


CASES = ["plain", "ties", "huge", "zero", "one_class", "n1"]


@pytest.mark.parametrize("case", CASES)
def test_property_functions_equal_the_reference(rng, case):
    for trial in range(60):
        labels, logits = _degenerate_problem(rng, case)
        probs = np_softmax(logits)
        m_bins = int(rng.integers(1, 20))
        expected = ref_ece(labels, probs, m_bins), ref_classwise(labels, probs, m_bins)
        got = (calibration.ece(labels, logits, m_bins, from_logits=True),
               calibration.classwise_ece(labels, logits, m_bins, from_logits=True))
        np.testing.assert_allclose(got, expected, atol=1e-9, err_msg=f"{case} {trial}")
        assert all(0.0 <= value <= 1.0 for value in got)


def test_property_metrics_equal_the_reference(rng):
    # Fixed shapes (one compilation per shape under JAX), every degenerate case.
    metrics = ExpectedCalibrationError(10), ClasswiseECE(4, 10)
    for case in CASES * 6:
        labels, logits = _degenerate_problem(rng, case, n=2 if case == "n1" else 32, k=4)
        probs = np_softmax(logits)
        expected = ref_ece(labels, probs, 10), ref_classwise(labels, probs, 10)
        for metric in metrics:
            metric.reset_state()
        pieces = 2  # n1: two batches of one sample
        streamed = [stream(metric, labels, logits, pieces=pieces) for metric in metrics]
        np.testing.assert_allclose(streamed, expected, atol=2e-6, err_msg=case)


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
@pytest.mark.parametrize("k", [4, 200])
def test_streaming_metrics_take_probabilities_and_logits_of_every_float_dtype(rng, dtype, k):
    """NumPy's default float64 (and float16) reach the same bins as float32: the metrics
    equal the float64 references on the values as given, eagerly and for logits too."""
    logits, labels = draw(rng, 90, k)
    probs = np_softmax(logits).astype(dtype)
    expected = np.asarray(probs, "float64")
    expected /= expected.sum(axis=1, keepdims=True)  # what the metrics read (renormalised)
    for preds, from_logits in ((probs, False), (logits.astype(dtype), True)):
        ref_probs = expected if not from_logits else np_softmax(preds)
        ece = stream(ExpectedCalibrationError(from_logits=from_logits), labels, preds)
        cw = stream(ClasswiseECE(k, from_logits=from_logits), labels, preds)
        tol = 2e-3 if dtype == "float16" else 1e-6
        np.testing.assert_allclose(ece, ref_ece(labels, ref_probs), atol=tol)
        np.testing.assert_allclose(cw, ref_classwise(labels, ref_probs), atol=tol)


@pytest.mark.parametrize("weighted", [False, True])
def test_metrics_compile_under_xla_and_equal_the_references(rng, weighted):
    """`jit_compile=True` (what Keras's "auto" picks for TensorFlow on a GPU): the binning
    has no op of data-dependent size there, and `evaluate` equals the references."""
    x = rng.normal(size=(96, 5)).astype("float32")
    labels = rng.integers(0, 4, size=96)
    weights = rng.uniform(0.0, 2.0, size=96).astype("float32") if weighted else None
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4)])
    metrics = [ExpectedCalibrationError(from_logits=True), ClasswiseECE(4, from_logits=True)]
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  **{"weighted_metrics" if weighted else "metrics": metrics}, jit_compile=True)
    model.fit(x, labels, sample_weight=weights, batch_size=32, epochs=1, verbose=0)
    got = model.evaluate(x, labels, sample_weight=weights, batch_size=32, verbose=0,
                         return_dict=True)
    probs = np_softmax(model.predict(x, batch_size=32, verbose=0))
    np.testing.assert_allclose(got["ece"], ref_ece(labels, probs, 15, weights), atol=1e-5)
    np.testing.assert_allclose(got["classwise_ece"], ref_classwise(labels, probs, 15, weights),
                               atol=1e-5)
