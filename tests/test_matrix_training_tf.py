"""Q/C matrices: gradient routing and training with plain models (TensorFlow)."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import reference as ref
from keras_smooth import TrainableTargetsModel, losses
from keras_smooth.datasets import gaussian_task

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="TensorFlow training path"
)
if keras.backend.backend() == "tensorflow":
    import tensorflow as tf

K = 4
HERE = os.path.dirname(__file__)


def _numeric_grad(fn, x, h=1e-5):
    grad = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        up, down = x.copy(), x.copy()
        up[idx] += h
        down[idx] -= h
        grad[idx] = (fn(up) - fn(down)) / (2 * h)
    return grad


def _attached_grads(loss, labels, logits):
    """Gradients of the summed loss w.r.t. logits and matrix logits, no hook."""
    loss.attached = True
    z = tf.Variable(logits)
    with tf.GradientTape() as tape:
        value = tf.reduce_sum(loss(labels, z))
    gz, gq = tape.gradient(value, [z, loss.matrix_layer.logits.value])
    gq = tf.convert_to_tensor(gq)  # IndexedSlices: only the batch's rows are gathered
    return gz.numpy().astype("float64"), gq.numpy().astype("float64")


def _setup(rng, zero_diagonal):
    labels = np.array([0, 2, 1])
    logits = rng.normal(size=(3, K)).astype("float32")
    q_logits = rng.normal(size=(K, K)).astype("float32")
    return labels, logits, q_logits


def _matrix(q_logits, zero_diagonal):
    m = np.where(np.eye(K, dtype=bool), -np.inf, q_logits) if zero_diagonal else q_logits
    return ref.softmax(m.astype("float64"))


def test_lspp_network_gradient_is_half_p_minus_t_and_matrix_gets_only_reverse(rng):
    labels, logits, q_logits = _setup(rng, True)
    loss = losses.LSPlusPlusLoss(K, alpha=0.1, reduction="sum")
    loss.matrix_layer.logits.assign(q_logits)
    gz, gq = _attached_grads(loss, labels, logits)
    c = _matrix(q_logits, True)
    t = 0.9 * ref.one_hot(labels, K) + 0.1 * c[labels]
    np.testing.assert_allclose(gz, 0.5 * (ref.softmax(logits) - t), atol=1e-6)
    # C learns from 0.5 * H(sg(p), t) only.
    p = ref.softmax(logits)

    def reverse_only(ql):
        tt = 0.9 * ref.one_hot(labels, K) + 0.1 * _matrix(ql, True)[labels]
        return 0.5 * -(p * np.log(tt)).sum()

    np.testing.assert_allclose(gq, _numeric_grad(reverse_only, q_logits.astype("float64")),
                               atol=1e-5)
    np.testing.assert_array_equal(np.diag(gq), 0.0)


def test_lls_network_and_q_both_get_the_symmetric_kl_gradient(rng):
    labels, logits, q_logits = _setup(rng, False)
    loss = losses.LLSLoss(K, alpha=0.3, reduction="sum")
    loss.matrix_layer.logits.assign(q_logits)
    gz, gq = _attached_grads(loss, labels, logits)
    p = ref.softmax(logits)
    t = 0.7 * ref.one_hot(labels, K) + 0.3 * _matrix(q_logits, False)[labels]
    a = np.log(p) - np.log(t)
    expected_gz = 0.5 * ((p - t) + p * (a - (p * a).sum(1, keepdims=True)))
    np.testing.assert_allclose(gz, expected_gz, atol=1e-5)
    full = lambda ql: ref.lls(labels, logits, _matrix(ql, False), 0.3).sum()  # noqa: E731
    np.testing.assert_allclose(gq, _numeric_grad(full, q_logits.astype("float64")), atol=1e-4)
    assert np.abs(gq).max() > 1e-3 and np.abs(gz).max() > 1e-3


@pytest.mark.parametrize("cls", [losses.LLSLoss, losses.LSPlusPlusLoss])
def test_gradients_at_extreme_logits_are_the_closed_form(cls, rng):
    # Before: only "finite". Now the same closed forms as at moderate logits, in float64.
    labels = np.array([0, 1, 2])
    logits = np.array([[1e4, -1e4, 0, 0], [1e4, -1e4, 1e4, -1e4], [-1e4, -1e4, -1e4, 1e4]],
                      "float32")
    lspp = cls is losses.LSPlusPlusLoss
    q_logits = rng.normal(size=(K, K)).astype("float32")
    loss = cls(K, alpha=0.1, reduction="sum")
    loss.matrix_layer.logits.assign(q_logits)
    gz, gq = _attached_grads(loss, labels, logits)
    lp = ref.log_softmax(logits)
    p = np.exp(lp)
    t = 0.9 * ref.one_hot(labels, K) + 0.1 * _matrix(q_logits, lspp)[labels]
    if lspp:  # network: 0.5 (p - t); C: 0.5 H(sg(p), t) only
        expected_gz = 0.5 * (p - t)

        def objective(ql):
            tt = 0.9 * ref.one_hot(labels, K) + 0.1 * _matrix(ql, True)[labels]
            return 0.5 * -(p * np.log(tt)).sum()
    else:  # symmetric KL, both get its gradient
        a = lp - np.log(t)
        expected_gz = 0.5 * ((p - t) + p * (a - (p * a).sum(1, keepdims=True)))

        def objective(ql):
            return ref.lls(labels, logits, _matrix(ql, False), 0.1).sum()
    np.testing.assert_allclose(gz, expected_gz, atol=1e-5)
    np.testing.assert_allclose(gq, _numeric_grad(objective, q_logits.astype("float64")),
                               atol=1e-4)


@pytest.mark.parametrize("cls", [losses.LLSLoss, losses.LSPlusPlusLoss])
def test_backward_hook_takes_one_step_on_the_mean_matrix_gradient(rng, cls):
    labels, logits, q_logits = _setup(rng, cls is losses.LSPlusPlusLoss)
    weights = np.array([1.0, 3.0, 0.5], "float32")
    # Expected: gradient of the sample-weighted mean matrix objective (no hook).
    reference_loss = cls(K, alpha=0.2, reduction="sum")
    reference_loss.matrix_layer.logits.assign(q_logits)
    reference_loss.attached = True
    with tf.GradientTape() as tape:
        value = reference_loss(labels, tf.constant(logits), sample_weight=weights / weights.sum())
    expected = tf.convert_to_tensor(
        tape.gradient(value, reference_loss.matrix_layer.logits.value)).numpy()

    loss = cls(K, alpha=0.2, matrix_optimizer=keras.optimizers.SGD(learning_rate=1.0),
               reduction="sum")
    loss.matrix_layer.logits.assign(q_logits)
    z = tf.Variable(logits)
    with tf.GradientTape() as tape:
        total = loss(labels, z, sample_weight=weights) * 7.0  # scale must not matter
    tape.gradient(total, z)
    step = q_logits - loss.matrix_layer.logits.numpy()
    np.testing.assert_allclose(step, expected, atol=1e-6)
    assert int(loss.matrix_optimizer.iterations.numpy()) == 1


def _small_model(inputs=2, classes=3, seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [keras.Input((inputs,)), keras.layers.Dense(32, activation="relu"),
         keras.layers.Dense(classes)]
    )


@pytest.mark.parametrize("cls", [losses.LLSLoss, losses.LSPlusPlusLoss])
def test_plain_sequential_fit_trains_the_matrix_and_evaluate_does_not(cls):
    x, y, _ = gaussian_task(64, seed=3)
    model = _small_model()
    loss = cls(3, alpha=0.2)
    model.compile(optimizer="adam", loss=loss)
    before = loss.matrix.copy()
    model.evaluate(x, y, verbose=0)
    np.testing.assert_array_equal(loss.matrix, before)
    model.fit(x, y, epochs=2, batch_size=32, verbose=0)
    assert int(loss.matrix_optimizer.iterations.numpy()) == 2 * 6
    assert np.abs(loss.matrix - before).max() > 1e-3
    np.testing.assert_allclose(loss.matrix.sum(1), 1.0, atol=1e-6)
    if cls is losses.LSPlusPlusLoss:
        np.testing.assert_array_equal(np.diag(loss.c_matrix), 0.0)


def _functional_fit(x, y, dtype_policy="float32", jit_compile=False):
    """Q and the losses after two epochs of a small functional model (same seed every time)."""
    keras.config.set_dtype_policy(dtype_policy)
    try:
        keras.utils.set_random_seed(0)
        inputs = keras.Input((2,))
        hidden = keras.layers.Dense(16, activation="relu")(inputs)
        model = keras.Model(inputs, keras.layers.Dense(3, dtype="float32")(hidden))
        loss = losses.LLSLoss(3, alpha=0.1)
        model.compile(optimizer="adam", loss=loss, jit_compile=jit_compile)
        history = model.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0)
    finally:
        keras.config.set_dtype_policy("float32")
    return loss.q_matrix, history.history["loss"]


def test_functional_model_with_xla_trains_the_matrix_as_without():
    # Before: "Q moved". Now: under XLA, Q moves exactly as in the same fit without it.
    x, y, _ = gaussian_task(32, seed=4)
    plain, plain_loss = _functional_fit(x, y)
    xla, xla_loss = _functional_fit(x, y, jit_compile=True)
    assert np.abs(plain - 1 / 3).max() > 1e-3
    np.testing.assert_allclose(xla, plain, atol=1e-6)
    np.testing.assert_allclose(xla_loss, plain_loss, rtol=1e-5)


@pytest.mark.parametrize("cls", [losses.LLSLoss, losses.LSPlusPlusLoss])
def test_synthetic_task_class_0_is_nearer_class_1_than_class_2(cls):
    # ILS paper §III: most of class 1 (index 0) lies nearer class 2 (index 1) than class 3.
    x, y, _ = gaussian_task(300, seed=0)
    model = _small_model(seed=1)
    loss = cls(3, alpha=0.2)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=loss)
    model.fit(x, y, epochs=30, batch_size=64, verbose=0)
    m = loss.matrix
    assert m[0, 1] > m[0, 2], m
    assert m[1, 0] > m[1, 2], m


def test_save_load_keeps_the_matrix_and_training_continues(tmp_path):
    x, y, _ = gaussian_task(32, seed=5)
    model = _small_model()
    model.compile(optimizer="adam", loss=losses.LSPlusPlusLoss(3, alpha=0.1))
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    trained = model.loss.c_matrix
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.loss, losses.LSPlusPlusLoss)
    np.testing.assert_allclose(loaded.loss.c_matrix, trained, atol=1e-7)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    loaded.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert np.abs(loaded.loss.c_matrix - trained).max() > 1e-4


def test_mixed_float16_training_moves_the_matrix_as_float32_does():
    # Before: "finite and moved". Now: the matrix after mixed-precision training is the float32
    # one up to float16 rounding of the network's activations.
    x, y, _ = gaussian_task(32, seed=6)
    full, full_loss = _functional_fit(x, y)
    mixed, mixed_loss = _functional_fit(x, y, dtype_policy="mixed_float16")
    moved = np.abs(full - 1 / 3).max()
    assert moved > 1e-4
    np.testing.assert_allclose(mixed - 1 / 3, full - 1 / 3, atol=0.05 * moved)
    np.testing.assert_allclose(mixed_loss, full_loss, rtol=1e-2)


def test_loss_made_outside_the_strategy_scope_fails_loudly():
    x, y, _ = gaussian_task(8, seed=7)
    loss = losses.LLSLoss(3)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        model = _small_model()
        model.compile(optimizer="adam", loss=loss)
    with pytest.raises(ValueError, match=r"created outside the active MirroredStrategy scope"):
        model.fit(x, y, epochs=1, verbose=0)


def test_wrapper_trains_the_matrix_with_the_models_optimizer():
    x, y, _ = gaussian_task(32, seed=8)
    model = TrainableTargetsModel(_small_model())
    loss = losses.LLSLoss(3, alpha=0.1)
    model.compile(optimizer="adam", loss=loss)
    assert any(v is loss.matrix_layer.logits for v in model.trainable_weights)
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert int(loss.matrix_optimizer.iterations.numpy()) == 0  # the hook is off
    assert np.abs(loss.q_matrix - 1 / 3).max() > 1e-4


def test_two_replica_mirrored_strategy_matches_one_replica():
    script = os.path.join(HERE, "mirrored_worker.py")
    result = subprocess.run(
        [sys.executable, script], capture_output=True, text=True, timeout=300,
        # PYTHONPATH: the worker imports this checkout's keras_smooth
        env={**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3",
             "PYTHONPATH": os.path.dirname(os.path.abspath(HERE))},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["replicas"] == 2
    for name in ("lls", "lspp"):
        one, two = np.array(out[name]["one"]), np.array(out[name]["two"])
        assert np.abs(one - out[name]["initial"]).max() > 1e-3
        np.testing.assert_allclose(two, one, atol=2e-5)
