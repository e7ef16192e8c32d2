"""Holes found by reviewing the trust work: each test failed before its fix."""

import warnings

import keras
import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from keras_smooth import calibration, losses
from keras_smooth.callbacks import CalibrationLogger, TemperatureScalingCallback
from keras_smooth.metrics import ExpectedCalibrationError
from test_trust_metrics import ref_ece

ON_TF = keras.backend.backend() == "tensorflow"


def np_sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))


@pytest.mark.parametrize("shape", ["flat", "column"])
def test_apply_temperature_scales_binary_logits_as_sigmoid(shape, rng):
    z = rng.normal(size=50) * 3
    inputs = z if shape == "flat" else z[:, None]
    got = calibration.apply_temperature(inputs, 1.7)
    expected = np_sigmoid(z / 1.7)
    np.testing.assert_allclose(got[:, 1], expected, rtol=1e-12)
    np.testing.assert_allclose(got[:, 0], 1.0 - expected, rtol=1e-12, atol=1e-15)
    probs = np_sigmoid(z)  # binary probabilities: softmax(log[1-p, p] / T)
    scaled = calibration.apply_temperature(probs[:, None], 2.0, from_logits=False)
    want = probs ** 0.5 / (probs ** 0.5 + (1 - probs) ** 0.5)
    np.testing.assert_allclose(scaled[:, 1], want, rtol=1e-9)


def test_apply_temperature_reads_logits_given_as_probabilities_by_the_rule(rng):
    z = rng.normal(size=(20, 4)) * 40
    with pytest.warns(UserWarning, match="from_logits"):
        got = calibration.apply_temperature(z, 2.0, from_logits=False)
    e = np.exp((z - z.max(1, keepdims=True)) / 2.0)
    np.testing.assert_allclose(got, e / e.sum(1, keepdims=True), rtol=1e-9, atol=1e-300)


def test_fit_temperature_of_logits_marked_as_probabilities_is_the_logit_fit(rng):
    z = rng.normal(size=(300, 4)) * 30  # gaps far above the log(1e-12) clamp
    y = np.array([rng.choice(4, p=np.exp(r / 20 - (r / 20).max()) / np.exp(r / 20 - (r / 20).max()).sum())
                  for r in z])

    def nll(log_t):
        s = z / np.exp(log_t)
        s = s - s.max(1, keepdims=True)
        return np.mean(np.log(np.exp(s).sum(1)) - s[np.arange(len(y)), y])

    best = np.exp(minimize_scalar(nll, bounds=(np.log(0.01), np.log(100)), method="bounded",
                                  options={"xatol": 1e-10}).x)
    with pytest.warns(UserWarning, match="from_logits"):
        marked = calibration.fit_temperature(z, y, from_logits=False)
    assert marked.temperature == pytest.approx(best, rel=1e-4)


@pytest.mark.skipif(not ON_TF, reason="tf.function")
@pytest.mark.parametrize("labels", [np.zeros((0,), "int32"), np.zeros((0, 3), "float32")])
def test_losses_accept_an_empty_batch_in_graph_mode(labels):
    import tensorflow as tf

    loss = losses.LabelSmoothingLoss(epsilon=0.1)
    value = tf.function(lambda y, p: loss(y, p))(tf.constant(labels), tf.zeros((0, 3)))
    expected = keras.losses.CategoricalCrossentropy(from_logits=True)(np.zeros((0, 3)), np.zeros((0, 3)))
    np.testing.assert_allclose(np.asarray(value), np.asarray(expected))


def test_compiled_metrics_refuse_fractional_labels_instead_of_rounding_them(rng):
    probs = np.full((4, 2), 0.5, "float32")
    metric = ExpectedCalibrationError()
    model = keras.Sequential([keras.Input((2,)), keras.layers.Identity()])
    model.compile(metrics=[metric], loss=lambda y, p: keras.ops.zeros_like(p[:, 0]))
    try:
        result = model.evaluate(probs, np.array([0.4, 0.6, 0.0, 1.0], "float32"), verbose=0,
                                return_dict=True)
    except Exception as error:  # TensorFlow asserts; that is a refusal too
        assert "y_true" in str(error) or "class ids" in str(error)
        return
    assert np.isnan(result["ece"]), result  # never a finite number from rounded labels


def _softmax_model(policy_dtype):
    return keras.Sequential([keras.Input((3,)),
                             keras.layers.Dense(4, activation="softmax", dtype=policy_dtype)])


def test_calibration_logger_keeps_bfloat16_probabilities_as_probabilities(rng):
    x = rng.normal(size=(200, 3)).astype("float32")
    y = rng.integers(0, 4, 200)
    model = _softmax_model("bfloat16")
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="sparse_categorical_crossentropy")
    probs = np.asarray(model.predict(x, verbose=0)).astype("float64")
    assert np.abs(probs.sum(1) - 1).max() > 1e-3  # bfloat16 rows miss the float32 tolerance
    logger = CalibrationLogger(validation_data=(x, y))
    logs = {}
    logger.set_model(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "treated as logits" warning either
        logger.on_epoch_end(0, logs)
    assert logs["val_calibration/ece"] == pytest.approx(
        ref_ece(y, probs / probs.sum(1, keepdims=True)), abs=2e-3)


def test_temperature_callback_detects_a_softmax_model_and_a_binary_logit_model(rng):
    x = rng.normal(size=(400, 3)).astype("float32")
    y = rng.integers(0, 4, 400)
    model = _softmax_model("float32")
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="sparse_categorical_crossentropy")
    callback = TemperatureScalingCallback(validation_data=(x, y))
    callback.set_model(model)
    callback.on_train_end()
    probs = np.asarray(model.predict(x, verbose=0), "float64")
    # the default reads probabilities as probabilities: softmax(log p / T), not softmax(p / T)
    t = callback.results["temperature"]
    logp = np.log(probs) / t
    scaled = np.exp(logp - logp.max(1, keepdims=True))
    scaled /= scaled.sum(1, keepdims=True)
    assert callback.results["val_ece_after"] == pytest.approx(ref_ece(y, scaled), abs=1e-9)
    assert callback.results["val_ece_before"] == pytest.approx(ref_ece(y, probs), abs=1e-9)

    z = rng.normal(size=(400, 3)).astype("float32")
    binary = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    yb = (rng.random(400) < np_sigmoid(np.asarray(binary.predict(z, verbose=0))[:, 0] / 2)).astype(int)
    callback = TemperatureScalingCallback(validation_data=(z, yb))
    callback.set_model(binary)
    callback.on_train_end()
    logits = np.asarray(binary.predict(z, verbose=0), "float64")[:, 0]
    q = np_sigmoid(logits / callback.results["temperature"])
    two = np.stack([1 - q, q], axis=1)
    assert callback.results["val_ece_after"] == pytest.approx(ref_ece(yb, two), abs=1e-9)
