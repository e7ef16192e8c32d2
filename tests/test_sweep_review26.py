"""What an adversarial sweep found, each fixed and checked against an independent reference.

* `TemperatureScaling` (and so `TemperatureScalingCallback.calibrated_model()`) read a
  `(N,)` binary output as one row of N classes: a softmax across the batch. It is now
  binary, one tempered P(class 1) per row: sigmoid(logit / T), written here in NumPy.
* The callbacks read their validation data to the end: an infinite `tf.data` set hung
  them. It is refused where the callback is built.
* The ILS target builders took teacher "probabilities" whose rows do not sum to 1.
* A loss built with an integer or bool `dtype` truncated its value.
* Zero-width predictions and Python lists gave raw errors from deep inside.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_smooth import calibration, losses, targets
from keras_smooth.callbacks import CalibrationLogger, TemperatureScalingCallback
from keras_smooth.layers import ILSTargets, TemperatureScaling
from keras_smooth.metrics import ClasswiseECE, ExpectedCalibrationError

from test_tempfit_fast import reference_nll, reference_optimum  # noqa: E402  (float64, SciPy)


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def _logit(p):
    p = np.clip(np.asarray(p, "float64"), 1e-12, 1 - 1e-12)
    return np.log(p) - np.log1p(-p)


@pytest.mark.parametrize("from_logits", [True, False])
@pytest.mark.parametrize("softmax", [True, False])
def test_temperature_layer_reads_a_rank_one_batch_as_binary(from_logits, softmax):
    """(N,) and (N, 1) give the same per-row values: sigmoid(logit / T) or logit / T,
    whatever the batch holds (each row alone gives the same value)."""
    rng = np.random.default_rng(0)
    for _ in range(20):
        n, t = int(rng.integers(1, 40)), float(np.exp(rng.uniform(-1.5, 1.5)))
        if from_logits:
            values = (rng.normal(size=n) * 4).astype("float32")
            logit = values.astype("float64")
        else:
            values = rng.uniform(0, 1, size=n).astype("float32")
            logit = _logit(values)
        expected = _sigmoid(logit / t) if softmax else logit / t
        layer = TemperatureScaling(t, softmax=softmax, from_logits=from_logits)
        flat = np.asarray(layer(values))
        column = np.asarray(layer(values[:, None]))
        assert flat.shape == (n,) and column.shape == (n, 1)
        np.testing.assert_allclose(flat, expected, rtol=2e-5, atol=2e-6)
        np.testing.assert_allclose(column[:, 0], flat, rtol=1e-6, atol=1e-7)
        alone = np.array([float(np.asarray(layer(values[i:i + 1]))[0]) for i in range(n)])
        np.testing.assert_allclose(alone, flat, rtol=1e-6, atol=1e-7)


def test_calibrated_model_of_a_rank_one_sigmoid_model_is_per_row():
    """The callback on a model with a (N,) sigmoid output: the calibrated model gives
    sigmoid(logit(p) / T) per row with the fitted T, the same for any batch size (it
    gave a softmax over each predict batch)."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 3)).astype("float32")
    y = (x[:, 0] + 0.5 * rng.normal(size=200) > 0).astype("int32")
    inputs = keras.Input((3,))
    outputs = keras.layers.Reshape(())(keras.layers.Dense(1, activation="sigmoid")(inputs))
    model = keras.Model(inputs, outputs)
    model.compile("adam", "binary_crossentropy")
    callback = TemperatureScalingCallback((x, y))
    model.fit(x, y, epochs=3, verbose=0, callbacks=[callback])
    t = callback.results["temperature"]
    p = np.asarray(model.predict(x, verbose=0), "float64")
    expected = _sigmoid(_logit(p) / t)
    calibrated = callback.calibrated_model()
    for batch_size in (1, 32, 200):
        got = np.asarray(calibrated.predict(x, batch_size=batch_size, verbose=0))
        assert got.shape == (200,)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(expected, calibration.apply_temperature(p, t, False)[:, 1],
                               rtol=1e-9, atol=1e-12)


def _toy(n=48):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(n, 3)).astype("float32")
    return x, (x[:, 0] > 0).astype("int32")


@pytest.mark.parametrize("make", [lambda d: CalibrationLogger(validation_data=d),
                                  lambda d: TemperatureScalingCallback(d)],
                         ids=["logger", "temperature"])
def test_callbacks_refuse_an_infinite_dataset_and_read_a_finite_one(make):
    x, y = _toy()
    endless = tf.data.Dataset.from_tensor_slices((x, y)).batch(16).repeat()
    with pytest.raises(ValueError, match=r"`validation_data` is an infinite dataset.*take"):
        make(endless)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    callback = make(endless.take(3))  # 48 rows: the three batches
    history = model.fit(x, y, epochs=1, verbose=0, callbacks=[callback])
    logits = np.asarray(model.predict(x, verbose=0), "float64")  # all 48 rows
    if isinstance(callback, CalibrationLogger):
        got = history.history["val_calibration/nll"][0]
        assert got == pytest.approx(reference_nll(logits, y, 1.0), rel=1e-5)
    else:
        t_ref, _ = reference_optimum(logits, y, (0.01, 100.0))  # NumPy NLL, SciPy search
        assert callback.results["temperature"] == pytest.approx(t_ref, rel=1e-4)


@pytest.mark.parametrize("builder", ["ils1", "ils2", "ils", "wrong_class_distribution"])
def test_ils_targets_refuse_teacher_rows_that_are_not_distributions(builder):
    """Rows summing to 0.8, 0 or 2 are refused naming the argument; rows within the
    library's 1e-3 of 1 are accepted."""
    calls = {
        "ils1": lambda p: targets.ils1([0, 1], p, 0.9, 1.0),
        "ils2": lambda p: targets.ils2([0, 1], p, 0.1),
        "ils": lambda p: targets.ils([0, 1], p, p, 0.9, 1.0),
        "wrong_class_distribution": lambda p: targets.wrong_class_distribution([0, 1], p),
    }[builder]
    good = np.array([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3]], "float32")
    assert np.all(np.isfinite(np.asarray(calls(good))))
    near = good.copy()
    near[0, 2] += 5e-4  # sums to 1.0005: within 1e-3
    assert np.all(np.isfinite(np.asarray(calls(near))))
    for bad_row, total in (([0.5, 0.2, 0.1], "0.8"), ([0.0, 0.0, 0.0], "0"),
                           ([1.0, 1.0, 0.0], "2")):
        bad = good.copy()
        bad[1] = bad_row
        with pytest.raises(ValueError, match=rf"probs` must be probabilities whose rows sum to "
                                             rf"1 .*row 1 sums to {total}\b"):
            calls(bad)


@pytest.mark.parametrize("dtype", ["int32", "bool", "uint8", "int64", "string", "not_a_dtype"])
@pytest.mark.parametrize("make", [
    lambda d: losses.LabelSmoothingLoss(0.1, dtype=d),
    lambda d: losses.LLSLoss(num_classes=3, dtype=d),
    lambda d: losses.DistillationLoss(dtype=d),
    lambda d: losses.AdaptiveFocalLoss(dtype=d),
], ids=["ls", "lls", "distillation", "focal"])
def test_losses_refuse_a_dtype_that_is_not_floating_point(make, dtype):
    with pytest.raises(ValueError, match=r"`dtype` must be a floating-point dtype"):
        make(dtype)


def test_a_float_dtype_still_gives_the_loss_in_that_dtype():
    y, z = np.array([0, 1]), np.array([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]], "float32")
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    target = np.full((2, 3), 0.1 / 3) + 0.9 * np.eye(3)[y]
    expected = float(-(target * np.log(p)).sum(1).mean())
    for dtype, rel in (("float32", 1e-6), ("float64", 1e-6), ("mixed_float16", 1e-3),
                       (None, 1e-6)):
        value = losses.LabelSmoothingLoss(0.1, dtype=dtype)(y, z)
        assert float(value) == pytest.approx(expected, rel=rel)


@pytest.mark.parametrize("metric", [ExpectedCalibrationError, lambda: ClasswiseECE(num_classes=3)],
                         ids=["ece", "classwise"])
def test_streaming_metrics_refuse_zero_width_predictions(metric):
    with pytest.raises(ValueError, match=r"`y_pred` must have K >= 2 columns"):
        metric().update_state([0], np.zeros((1, 0), "float32"))


def test_ils_layer_takes_python_lists_like_the_functions():
    logits = [[2.0, 0.5, -1.0], [0.0, 0.0, 3.0]]
    layer = ILSTargets("ils")
    from_lists = np.asarray(layer([0, 2], logits))
    from_arrays = np.asarray(layer(np.array([0, 2]), np.array(logits, "float32")))
    np.testing.assert_array_equal(from_lists, from_arrays)
    with pytest.raises(TypeError, match=r"`labels` must be an array of real numbers"):
        layer(["a", "b"], logits)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("k", [10, 100, 1000])
def test_ils_targets_take_a_half_precision_softmax(dtype, k):
    """A teacher's softmax computed in 16 bits sums to 1 only within its own roundoffs:
    the row-sum test uses the tolerance of the dtype the probabilities came in."""
    from keras import ops

    z = np.random.default_rng(k).normal(size=(64, k)).astype("float32") * 2
    probs = ops.softmax(ops.cast(z, dtype), axis=-1)
    labels = np.zeros(64, "int64")
    for build in (lambda: targets.ils1(labels, probs, 0.9, 1.0),
                  lambda: targets.ils2(labels, probs, 0.1),
                  lambda: targets.wrong_class_distribution(labels, probs)):
        assert np.all(np.isfinite(np.asarray(build(), "float32")))


def test_temperature_layer_on_a_tensor_of_unknown_rank():
    """A traced input without a rank is read as (N, K) logits, as before."""
    layer = TemperatureScaling(2.0)
    traced = tf.function(layer, input_signature=[tf.TensorSpec(None, tf.float32)])
    np.testing.assert_allclose(np.asarray(traced(np.full((3, 4), 3.0, "float32"))), 1.5)
