"""Saving and loading keep every loss's state (issue 11, items A-D).

Backend-agnostic: runs under TensorFlow and again under JAX (`tests/test_backends.py`).
Expected values come from the objects before saving, or from NumPy written from the
loss formulas, never from the loaded objects themselves.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_smooth import TrainableTargetsModel, losses

K = 3
LEARNABLE = [losses.LLSLoss, losses.LSPlusPlusLoss]
ON_TF = keras.backend.backend() == "tensorflow"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _data(n=16, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2)).astype("float32")
    return x, np.arange(n) % K


def _net(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((2,)), keras.layers.Dense(K)])


def _save_load(model, tmp_path, name="m.keras"):
    path = str(tmp_path / name)
    model.save(path)
    return keras.saving.load_model(path)


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def _random_logits(seed=1):
    return np.random.default_rng(seed).normal(size=(K, K)).astype("float32")


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _fit(model, x, y, epochs=1):
    model.fit(x, y, epochs=epochs, batch_size=8, shuffle=False, verbose=0)


def _is_trained_by(model, loss):
    return any(v is loss.matrix_layer.logits for v in model.trainable_weights)


# --- A: TrainableTargetsModel through .keras ---------------------------------------------


@pytest.mark.parametrize("cls", LEARNABLE)
def test_loaded_wrapper_has_its_loss_matrix_and_optimizer_and_trains_on(cls, tmp_path):
    x, y = _data()
    model = TrainableTargetsModel(_net())
    loss = cls(K, alpha=0.3)
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=loss)
    initial = loss.matrix
    _fit(model, x, y, epochs=2)
    assert np.abs(loss.matrix - initial).max() > 1e-3  # the matrix trained
    loaded = _save_load(model, tmp_path)

    assert type(loaded.loss) is cls and loaded.loss.alpha == 0.3
    np.testing.assert_array_equal(loaded.loss.matrix, loss.matrix)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert _is_trained_by(loaded, loaded.loss)
    assert type(loaded.optimizer) is keras.optimizers.Adam
    saved_slots = [_np(v) for v in model.optimizer.variables]
    assert len(loaded.optimizer.variables) == len(saved_slots)
    for slot, restored in zip(saved_slots, loaded.optimizer.variables):
        np.testing.assert_array_equal(_np(restored), slot)

    # Same weights and optimizer state: one more epoch moves both the same way.
    before = loaded.loss.matrix
    _fit(model, x, y)
    _fit(loaded, x, y)
    assert np.abs(loaded.loss.matrix - before).max() > 1e-4
    np.testing.assert_allclose(loaded.loss.matrix, loss.matrix, atol=1e-6)
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("cls", LEARNABLE)
def test_plain_model_keeps_the_matrix_and_its_training_rule(cls, tmp_path):
    x, y = _data()
    loss = cls(K, alpha=0.3)
    loss.matrix_layer.logits.assign(_random_logits())  # as after training
    model = _net()
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=loss)
    if ON_TF:
        _fit(model, x, y, epochs=2)  # the TF hook trains the matrix
    else:
        model.optimizer.build(model.trainable_variables)  # saved as after a fit
    loaded = _save_load(model, tmp_path)
    assert type(loaded.loss) is cls
    np.testing.assert_array_equal(loaded.loss.matrix, loss.matrix)
    logits = model.predict(x, verbose=0)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), logits)
    np.testing.assert_array_equal(_np(loaded.loss(y, logits)), _np(loss(y, logits)))
    if ON_TF:  # matrix optimizer state restored: both continue identically
        before = loaded.loss.matrix
        _fit(model, x, y)
        _fit(loaded, x, y)
        assert np.abs(loaded.loss.matrix - before).max() > 1e-4
        np.testing.assert_allclose(loaded.loss.matrix, loss.matrix, atol=1e-6)
    else:  # still refuses to leave the matrix untrained
        with pytest.raises(ValueError, match="TrainableTargetsModel"):
            _fit(loaded, x, y)


@pytest.mark.parametrize("cls", LEARNABLE)
@pytest.mark.parametrize("trainable", [True, False])
def test_learnable_losses_serialize_their_arguments_and_weights_copy_the_matrix(cls, trainable):
    labels = np.array([0, 1, 2, 1])
    logits = np.random.default_rng(2).normal(size=(4, K)).astype("float32")
    loss = cls(K, alpha=0.3)
    loss.matrix_layer.logits.assign(_random_logits())  # as after training
    loss.matrix_layer.trainable = trainable
    expected = loss.matrix
    value = _np(loss(labels, logits))
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(loss)))
    for revived in (keras.saving.deserialize_keras_object(config),
                    keras.losses.deserialize(keras.losses.serialize(loss)),
                    cls.from_config(json.loads(json.dumps(loss.get_config())))):
        assert type(revived) is cls
        assert revived.alpha == pytest.approx(0.3)
        assert revived.matrix_layer.trainable is trainable
        # As for a Keras layer, the config holds no learned weights: they copy separately.
        np.testing.assert_allclose(revived.matrix, np.full((K, K), 1.0 / (K - cls.zero_diagonal))
                                   * (1 - cls.zero_diagonal * np.eye(K)), rtol=1e-6)
        revived.matrix_layer.set_weights(loss.matrix_layer.get_weights())
        np.testing.assert_array_equal(revived.matrix, expected)
        np.testing.assert_array_equal(_np(revived(labels, logits)), value)
        np.testing.assert_array_equal(_np(revived.targets(labels)), _np(loss.targets(labels)))


@pytest.mark.parametrize("cls", LEARNABLE)
def test_learnable_loss_config_does_not_grow_with_k_squared(cls):
    size = len(json.dumps(keras.saving.serialize_keras_object(cls(2000))))
    assert size < 5000, size   # a K x K list here would be ~40 MB


def test_matrix_arguments_are_checked():
    with pytest.raises(ValueError, match=r"`matrix_logits` must have shape \(3, 3\)"):
        losses.LLSLoss(K, matrix_logits=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="`matrix_logits` must be finite"):
        losses.LSPlusPlusLoss(K, matrix_logits=np.full((K, K), np.nan))
    with pytest.raises(TypeError, match="`matrix_trainable` must be True or False"):
        losses.LLSLoss(K, matrix_trainable="no")
    with pytest.raises(ValueError, match=r"`soft_matrix` must have shape \(3, 3\)"):
        losses.OnlineLabelSmoothingLoss(K, soft_matrix=np.eye(2))
    with pytest.raises(ValueError, match="Every row of `soft_matrix` must sum to 1"):
        losses.OnlineLabelSmoothingLoss(K, soft_matrix=np.full((K, K), 0.5))
    with pytest.raises(ValueError, match="`soft_matrix` must hold finite, non-negative"):
        losses.OnlineLabelSmoothingLoss(K, soft_matrix=[[2, -1, 0], [0, 1, 0], [0, 0, 1]])


# --- B: a frozen matrix stays frozen -----------------------------------------------------


@pytest.mark.parametrize("cls, wrapped", [(losses.LLSLoss, False), (losses.LSPlusPlusLoss, True)])
def test_frozen_matrix_stays_frozen_after_loading(cls, wrapped, tmp_path):
    x, y = _data()
    loss = cls(K, alpha=0.3)
    loss.matrix_layer.logits.assign(_random_logits())  # as after training
    loss.matrix_layer.trainable = False
    model = TrainableTargetsModel(_net()) if wrapped else _net()
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=loss)
    _fit(model, x, y)
    loaded = _save_load(model, tmp_path)
    assert loaded.loss.matrix_layer.trainable is False
    assert not _is_trained_by(loaded, loaded.loss)
    np.testing.assert_array_equal(loaded.loss.matrix, loss.matrix)
    weights = loaded.get_weights()
    _fit(loaded, x, y, epochs=2)
    np.testing.assert_array_equal(loaded.loss.matrix, loss.matrix)
    assert any(np.abs(a - b).max() > 0 for a, b in zip(loaded.get_weights(), weights))


# --- C: every loss keeps its state --------------------------------------------------------


def test_ols_keeps_its_soft_matrix_through_keras_saving(tmp_path):
    x, y = _data(48)
    loss = losses.OnlineLabelSmoothingLoss(K, alpha=0.5)
    model = _net()
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=loss)
    model.fit(x, y, epochs=2, verbose=0, callbacks=[losses.OnlineLabelSmoothing(loss, x, y)])
    soft = loss.matrix
    assert np.abs(soft - np.eye(K)).max() > 1e-2  # the callback moved it
    before = model.evaluate(x, y, batch_size=48, verbose=0)
    loaded = _save_load(model, tmp_path)
    np.testing.assert_array_equal(loaded.loss.matrix, soft)
    after = loaded.evaluate(x, y, batch_size=48, verbose=0)
    assert abs(after - before) <= 1e-6
    log_q = np.log(_softmax(model.predict(x, verbose=0).astype("float64")))
    ce = -log_q[np.arange(len(y)), y]
    expected = np.mean(0.5 * ce - 0.5 * (soft[y] * log_q).sum(axis=1))  # Zhang et al. Eq. 7
    assert after == pytest.approx(expected, rel=1e-5)
    # Training goes on with the loaded loss; the stale one is refused.
    with pytest.raises(ValueError, match="not the loss the model is compiled with"):
        loaded.fit(x, y, epochs=1, verbose=0, callbacks=[losses.OnlineLabelSmoothing(loss, x, y)])
    callback = losses.OnlineLabelSmoothing(loaded.loss, x, y)
    loaded.fit(x, y, epochs=1, verbose=0, callbacks=[callback])
    assert len(callback.history) == 1


def _similarity():
    rng = np.random.default_rng(3)
    return losses.class_similarity_matrix(rng.normal(size=(30, 2)), np.arange(30) % K, K)


def _rows(seed=4):
    return np.random.default_rng(seed).dirichlet(np.ones(K), size=K).astype("float32")


# Every public loss with non-default arguments (and, where it has one, a non-default state).
PUBLIC_LOSSES = {
    "LabelSmoothingLoss": lambda: losses.LabelSmoothingLoss(epsilon=0.2, num_classes=K),
    "LLSLoss": lambda: losses.LLSLoss(
        K, alpha=0.3, matrix_logits=_random_logits(), matrix_trainable=False,
        matrix_optimizer=keras.optimizers.SGD(0.5),
        matrix_regularizer=keras.regularizers.L2(1e-3)),
    "LSPlusPlusLoss": lambda: losses.LSPlusPlusLoss(
        K, alpha=0.3, from_logits=False, matrix_logits=_random_logits(),
        matrix_initializer=keras.initializers.RandomNormal(seed=1)),
    "SubstituteTeacherLoss": lambda: losses.SubstituteTeacherLoss(
        _rows(), alpha=0.3, beta=0.7, temperature=2.0),
    "DistillationLoss": lambda: losses.DistillationLoss(beta=0.3, temperature=2.0),
    "ClassSimilarityLSLoss": lambda: losses.ClassSimilarityLSLoss(_similarity(), epsilon=0.3),
    "OnlineLabelSmoothingLoss": lambda: losses.OnlineLabelSmoothingLoss(
        K, alpha=0.3, soft_matrix=_rows()),
    "SoftBootstrappingLoss": lambda: losses.SoftBootstrappingLoss(beta=0.8),
    "AdaptiveFocalLoss": lambda: losses.AdaptiveFocalLoss(
        gamma_low=4.0, gamma_high=2.0, threshold=0.3),
    "MarginLSLoss": lambda: losses.MarginLSLoss(margin=1.0, weight=0.3),
    "TFKDRegularizationLoss": lambda: losses.TFKDRegularizationLoss(
        alpha=0.3, temperature=5.0, correct_probability=0.8),
    "ZipfLSLoss": lambda: losses.ZipfLSLoss(weight=0.5, power=2.0),
}
STATEFUL = ["LLSLoss", "LSPlusPlusLoss", "OnlineLabelSmoothingLoss", "SubstituteTeacherLoss",
            "ClassSimilarityLSLoss"]


def _make(name):
    loss = PUBLIC_LOSSES[name]()
    config = loss.get_config()
    config.update(reduction="sum", name=f"my_{name}", dtype="float16")
    return type(loss).from_config(config)


def _batch(loss):
    labels = np.array([0, 1, 2, 1])
    logits = np.random.default_rng(5).normal(size=(4, K)).astype("float32")
    if getattr(loss, "from_logits", True) is False:
        logits = _softmax(logits).astype("float32")
    if isinstance(loss, losses.DistillationLoss):
        return _np(losses.distillation_targets(labels, logits[::-1])), logits
    return labels, logits


def test_round_trip_list_covers_every_public_loss():
    public = {name for name in losses.__all__
              if isinstance(getattr(losses, name), type)
              and issubclass(getattr(losses, name), keras.losses.Loss)}
    assert public - {"LearnableTargetLoss"} == set(PUBLIC_LOSSES)  # the base is abstract


@pytest.mark.parametrize("name", sorted(PUBLIC_LOSSES))
def test_every_public_loss_round_trips_through_serialization(name):
    loss = _make(name)
    y, logits = _batch(loss)
    value = _np(loss(y, logits))
    config = loss.get_config()
    payload = json.dumps(keras.saving.serialize_keras_object(loss))
    for revived in (type(loss).from_config(json.loads(json.dumps(config))),
                    keras.saving.deserialize_keras_object(json.loads(payload))):
        assert type(revived) is type(loss)
        assert (revived.name, revived.reduction) == (f"my_{name}", "sum")
        assert revived.get_config()["dtype"] == "float16"  # computed in float32, returned as float16
        assert json.dumps(revived.get_config()) == json.dumps(config)
        np.testing.assert_array_equal(_np(revived(y, logits)), value)


@pytest.mark.parametrize("name", STATEFUL)
def test_stateful_losses_come_back_from_a_keras_file(name, tmp_path):
    loss = PUBLIC_LOSSES[name]()
    x, y = _data(8)
    # JAX refuses a trainable matrix in a plain model even in `evaluate`.
    learnable = isinstance(loss, losses.LearnableTargetLoss)
    model = TrainableTargetsModel(_net()) if learnable else _net()
    model.compile(optimizer="adam", loss=loss)
    before = model.evaluate(x, y, batch_size=8, verbose=0)
    model.optimizer.build(model.trainable_variables)  # saved as after a fit
    loaded = _save_load(model, tmp_path)
    assert type(loaded.loss) is type(loss)
    assert json.dumps(loaded.loss.get_config()) == json.dumps(loss.get_config())
    assert abs(loaded.evaluate(x, y, batch_size=8, verbose=0) - before) <= 1e-6


# --- D: other set-ups ---------------------------------------------------------------------


def _two_input_net():
    a, b = keras.Input((2,), name="a"), keras.Input((3,), name="b")
    keras.utils.set_random_seed(0)
    out = keras.layers.Dense(K)(keras.layers.Concatenate()([a, b]))
    return keras.Model({"a": a, "b": b}, out)


def test_wrapper_of_a_two_input_model_saves_and_trains_on(tmp_path):
    x, y = _data()
    inputs = {"a": x, "b": np.random.default_rng(6).normal(size=(16, 3)).astype("float32")}
    model = TrainableTargetsModel(_two_input_net())
    loss = losses.LLSLoss(K, alpha=0.3)
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=loss)
    _fit(model, inputs, y)
    loaded = _save_load(model, tmp_path)
    np.testing.assert_array_equal(loaded.loss.matrix, loss.matrix)
    np.testing.assert_array_equal(
        loaded.predict(inputs, verbose=0), model.predict(inputs, verbose=0)
    )
    _fit(loaded, inputs, y)
    assert np.abs(loaded.loss.matrix - loss.matrix).max() > 1e-4


def test_wrapper_config_round_trip_and_clone():
    x, _ = _data(4)
    model = TrainableTargetsModel(_net(), name="wrapped")
    model(x)
    for copy in (TrainableTargetsModel.from_config(model.get_config()),
                 keras.models.clone_model(model)):
        assert type(copy) is TrainableTargetsModel and copy.name == "wrapped"
        assert copy.model is not model.model
        copy(x)
        copy.set_weights(model.get_weights())
        np.testing.assert_array_equal(copy.predict(x, verbose=0), model.predict(x, verbose=0))


def test_wrapper_compiles_after_a_call_and_recompiles_with_another_loss(tmp_path):
    x, y = _data()
    model = TrainableTargetsModel(_net())
    model(x)  # built (Keras locks a built layer's state) before compile
    first = losses.LLSLoss(K)
    model.compile(optimizer="adam", loss=first)
    assert _is_trained_by(model, first)
    _fit(model, x, y)
    second = losses.LSPlusPlusLoss(K)
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=second)
    assert _is_trained_by(model, second) and not _is_trained_by(model, first)
    assert not first.attached and second.attached  # `first` trains itself again on TF
    _fit(model, x, y)
    loaded = _save_load(model, tmp_path)
    assert type(loaded.loss) is losses.LSPlusPlusLoss
    np.testing.assert_array_equal(loaded.loss.matrix, second.matrix)
    assert len(loaded.weights) == len(model.weights)


def test_wrapper_rejects_what_is_not_a_model():
    with pytest.raises(TypeError, match="`model` must be a Keras model or layer, got function"):
        TrainableTargetsModel(lambda x: x)


_OTHER_BACKEND = """
import sys
import keras
import numpy as np
import keras_smooth  # registers the classes

path, out = sys.argv[1], sys.argv[2]
ref = np.load(path + ".npz")
model = keras.saving.load_model(path)
q_loaded = model.loss.matrix
logits_loaded = keras.ops.convert_to_numpy(model.loss.matrix_layer.logits)
p_loaded = np.asarray(model.predict(ref["x"], verbose=0))
trained = any(v is model.loss.matrix_layer.logits for v in model.trainable_weights)
model.fit(ref["x"], ref["y"], epochs=1, batch_size=8, shuffle=False, verbose=0)
model.save(out)
np.savez(out + ".npz", name=type(model.loss).__name__, q_loaded=q_loaded, p_loaded=p_loaded,
         logits_loaded=logits_loaded,
         trained=trained, iterations=int(model.optimizer.iterations.numpy()),
         q_after=model.loss.matrix, p_after=np.asarray(model.predict(ref["x"], verbose=0)))
"""


@pytest.mark.skipif(not ON_TF, reason="the TF run loads in a JAX process, both ways")
def test_wrapper_saved_on_tensorflow_loads_and_trains_on_jax_and_back(tmp_path):
    pytest.importorskip("jax")
    x, y = _data()
    model = TrainableTargetsModel(_net())
    loss = losses.LSPlusPlusLoss(K, alpha=0.3)
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=loss)
    _fit(model, x, y, epochs=2)
    path, out = str(tmp_path / "tf.keras"), str(tmp_path / "jax.keras")
    model.save(path)
    np.savez(path + ".npz", x=x, y=y)
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": ROOT}
    result = subprocess.run([sys.executable, "-c", _OTHER_BACKEND, path, out], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    jax = np.load(out + ".npz")
    assert str(jax["name"]) == "LSPlusPlusLoss" and bool(jax["trained"])
    assert int(jax["iterations"]) == 2 * 2 + 2  # the TF steps, then one JAX epoch
    np.testing.assert_array_equal(jax["logits_loaded"], _np(loss.matrix_layer.logits))
    np.testing.assert_allclose(jax["q_loaded"], loss.matrix, atol=1e-7)  # softmax: 1 ulp
    np.testing.assert_allclose(jax["p_loaded"], model.predict(x, verbose=0), atol=1e-6)
    assert np.abs(jax["q_after"] - jax["q_loaded"]).max() > 1e-4
    back = keras.saving.load_model(out)
    np.testing.assert_allclose(back.loss.matrix, jax["q_after"], atol=1e-7)
    np.testing.assert_allclose(back.predict(x, verbose=0), jax["p_after"], atol=1e-6)
    _fit(back, x, y)
    assert np.abs(back.loss.matrix - jax["q_after"]).max() > 1e-4
