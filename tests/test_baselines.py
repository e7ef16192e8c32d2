"""Baseline regularizers against NumPy written from their papers' formulas, and invariances."""

import json

import keras
import numpy as np
import pytest

import reference as ref
from keras_smooth import losses

K = 5


@pytest.fixture
def batch(rng):
    return rng.integers(0, K, 12), rng.normal(scale=3.0, size=(12, K)).astype("float32")


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x), dtype="float64")


def test_soft_bootstrapping_matches_reed_et_al(batch):
    labels, logits = batch
    np.testing.assert_allclose(_np(losses.soft_bootstrapping_loss(labels, logits, 0.95)),
                               ref.soft_bootstrapping(labels, logits, 0.95), rtol=1e-5)
    # beta = 1 is cross-entropy; integer labels equal one-hot labels
    np.testing.assert_allclose(_np(losses.soft_bootstrapping_loss(labels, logits, 1.0)),
                               -np.log(ref.softmax(logits)[np.arange(12), labels]), rtol=1e-5)
    np.testing.assert_allclose(_np(losses.soft_bootstrapping_loss(ref.one_hot(labels, K), logits)),
                               _np(losses.soft_bootstrapping_loss(labels, logits)), rtol=1e-6)


def test_flsd53_matches_mukhoti_et_al_on_both_sides_of_the_threshold(rng):
    labels = np.array([0, 0, 1])
    # p_t: high, < 0.2, mid
    logits = np.array([[3.0, 0.0, 0.0], [-2.0, 1.0, 1.0], [0.0, 0.2, 0.0]], "float32")
    got = _np(losses.adaptive_focal_loss(labels, logits))
    np.testing.assert_allclose(got, ref.flsd53(labels, logits), rtol=1e-5)
    assert ref.softmax(logits)[1, 0] < 0.2 < ref.softmax(logits)[0, 0]
    np.testing.assert_allclose(_np(losses.adaptive_focal_loss(labels, logits, 0.0, 0.0)),
                               -np.log(ref.softmax(logits)[np.arange(3), labels]), rtol=1e-5)


def test_mbls_matches_liu_et_al_and_is_cross_entropy_within_the_margin(batch):
    labels, logits = batch
    wide = logits * 6.0  # some distances beyond the margin
    np.testing.assert_allclose(_np(losses.margin_ls_loss(labels, wide, 10.0, 0.1)),
                               ref.mbls(labels, wide, 10.0, 0.1), rtol=1e-5)
    assert (ref.mbls(labels, wide, 10.0, 0.1) > ref.mbls(labels, wide, 10.0, 0.0)).any()
    np.testing.assert_allclose(_np(losses.margin_ls_loss(labels, logits, 100.0, 0.1)),
                               ref.mbls(labels, logits, 100.0, 0.0), rtol=1e-5)


def test_tf_kd_reg_matches_yuan_et_al(batch):
    labels, logits = batch
    np.testing.assert_allclose(_np(losses.tf_kd_regularization_loss(labels, logits, 0.3, 4.0, 0.9)),
                               ref.tf_kd_reg(labels, logits, 0.3, 4.0, 0.9), rtol=1e-4)
    np.testing.assert_allclose(_np(losses.tf_kd_regularization_loss(labels, logits, 0.0)),
                               -np.log(ref.softmax(logits)[np.arange(12), labels]), rtol=1e-5)


def test_zipf_matches_liang_et_al(batch):
    labels, logits = batch
    expected, targets = ref.zipf(labels, logits, 1.0, 1.0)
    np.testing.assert_allclose(_np(losses.zipf_targets(labels, logits)), targets, rtol=1e-6)
    np.testing.assert_allclose(_np(losses.zipf_ls_loss(labels, logits)), expected, rtol=1e-5)
    expected, _ = ref.zipf(labels, logits, 0.5, 2.0)
    np.testing.assert_allclose(_np(losses.zipf_ls_loss(labels, logits, 0.5, 2.0)), expected,
                               rtol=1e-5)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="uses tf.GradientTape")
def test_zipf_ranking_gets_no_gradient():
    import tensorflow as tf

    logits = tf.Variable([[1.0, 3.0, 2.0]])
    with tf.GradientTape() as tape:
        targets = losses.zipf_targets(np.array([0]), logits)
    assert tape.gradient(targets, logits) is None


def test_class_similarity_masses_sum_to_epsilon_nearer_classes_get_more(rng):
    centres = np.array([[0.0, 0.0], [1.0, 0.0], [5.0, 0.0]])
    labels = np.repeat(np.arange(3), 20)
    x = centres[labels] + rng.normal(scale=0.01, size=(60, 2))
    x -= np.stack([x[labels == k].mean(0) - centres[k] for k in range(3)])[labels]  # exact centres
    sim = losses.class_similarity_matrix(x, labels, 3)
    d = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
    expected = np.where(np.eye(3) > 0, 0.0, 1.0 / np.where(np.eye(3) > 0, 1.0, d))
    np.testing.assert_allclose(sim, expected / expected.sum(1, keepdims=True), rtol=1e-5)
    assert sim[0, 1] > sim[0, 2] and sim[2, 1] > sim[2, 0]
    np.testing.assert_allclose(losses.class_similarity_matrix(x * 7.0, labels, 3), sim, rtol=1e-5)
    loss = losses.ClassSimilarityLSLoss(sim, epsilon=0.2)
    logits = rng.normal(size=(4, 3)).astype("float32")
    y = np.array([0, 1, 2, 0])
    targets = 0.8 * ref.one_hot(y, 3) + 0.2 * sim[y]
    np.testing.assert_allclose(targets.sum(1), 1.0)
    np.testing.assert_allclose((targets * (1 - ref.one_hot(y, 3))).sum(1), 0.2, rtol=1e-6)
    expected_loss = -(targets * np.log(ref.softmax(logits))).sum(1).mean()
    assert float(loss(y, logits)) == pytest.approx(expected_loss, rel=1e-5)
    clone = losses.ClassSimilarityLSLoss.from_config(json.loads(json.dumps(loss.get_config())))
    assert float(clone(y, logits)) == pytest.approx(expected_loss, rel=1e-5)
    with pytest.raises(ValueError, match="no examples"):
        losses.class_similarity_matrix(x[:40], labels[:40], 3)


def test_beta_smoothing_mean_factor_is_epsilon_and_confident_instances_are_smoothed_less(rng):
    n = 20000
    labels = rng.integers(0, 4, n)
    confidences = rng.uniform(size=n)
    targets, eps = losses.beta_smoothing_targets(labels, confidences, 4, epsilon=0.1, alpha=0.4,
                                                 seed=1)
    # alpha / (a + 1) with a = alpha / epsilon - 1
    assert eps.mean() == pytest.approx(0.1, abs=0.003)
    assert eps.min() >= 0 and eps.max() <= 0.4
    order = np.argsort(confidences)
    assert np.all(np.diff(eps[order]) <= 1e-7)  # more confident -> less smoothing
    expected = (1 - eps)[:, None] * ref.one_hot(labels, 4) + eps[:, None] / 4
    np.testing.assert_allclose(targets, expected, rtol=1e-5)
    with pytest.raises(ValueError, match="epsilon"):
        losses.beta_smoothing_targets(labels, confidences, 4, epsilon=0.5, alpha=0.4)


def test_ols_update_is_the_mean_of_correct_predictions_and_keeps_empty_rows():
    labels = np.array([0, 0, 0, 1, 2])
    probs = np.array([[0.7, 0.2, 0.1], [0.5, 0.4, 0.1], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1],
                      [0.1, 0.1, 0.8]])
    updated = losses.online_soft_matrix(labels, probs, np.eye(3))
    # the two correct class-0 rows
    np.testing.assert_allclose(updated[0], [0.6, 0.3, 0.1], rtol=1e-6)
    np.testing.assert_allclose(updated[1], [0.0, 1.0, 0.0])  # no correct class-1 example: kept
    np.testing.assert_allclose(updated[2], [0.1, 0.1, 0.8], rtol=1e-6)


def test_ols_first_epoch_is_cross_entropy_and_the_matrix_follows_the_predictions(rng):
    x = rng.normal(size=(96, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int32") + (x[:, 1] > 1).astype("int32")
    loss = losses.OnlineLabelSmoothingLoss(num_classes=3, alpha=0.5)
    logits = rng.normal(size=(5, 3)).astype("float32")
    ce = -np.log(ref.softmax(logits)[np.arange(5), y[:5]]).mean()
    assert float(loss(y[:5], logits)) == pytest.approx(ce, rel=1e-5)  # S^0 = I
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=loss)
    callback = losses.OnlineLabelSmoothing(loss, x, y)
    snapshots = []
    record = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: snapshots.append(
        (loss.matrix.copy(), np.asarray(model.predict(x, verbose=0)))))
    model.fit(x, y, epochs=3, batch_size=32, verbose=0, callbacks=[callback, record])
    assert len(callback.history) == 3
    # after each epoch: S is the update from that epoch's predictions
    for matrix, preds in snapshots:
        probs = ref.softmax(preds)
        correct = probs.argmax(1) == y
        for k in range(3):
            if (correct & (y == k)).any():
                np.testing.assert_allclose(matrix[k], probs[correct & (y == k)].mean(0), atol=1e-5)
    # the next epoch trains on the updated matrix: the loss value uses it
    soft = loss.matrix[y[:5]]
    expected = (0.5 * -np.log(ref.softmax(logits)[np.arange(5), y[:5]])
                - 0.5 * (soft * np.log(ref.softmax(logits))).sum(1)).mean()
    assert float(loss(y[:5], logits)) == pytest.approx(expected, rel=1e-5)


def _ce(labels, logits):
    return -ref.log_softmax(logits)[np.arange(len(labels)), labels]


@pytest.mark.parametrize("cls, kwargs, reference", [
    (losses.SoftBootstrappingLoss, {"beta": 0.9},
     lambda y, z: ref.soft_bootstrapping(y, z, 0.9)),
    (losses.AdaptiveFocalLoss, {}, ref.flsd53),
    (losses.MarginLSLoss, {"margin": 1.0, "weight": 0.2}, lambda y, z: ref.mbls(y, z, 1.0, 0.2)),
    (losses.TFKDRegularizationLoss, {"alpha": 0.2, "temperature": 10.0},
     lambda y, z: ref.tf_kd_reg(y, z, 0.2, 10.0, 0.9)),
    (losses.ZipfLSLoss, {"weight": 0.5}, lambda y, z: ref.zipf(y, z, 0.5, 1.0)[0]),
    (losses.OnlineLabelSmoothingLoss, {"num_classes": K, "alpha": 0.3}, _ce),  # S^0 = I
])
def test_baseline_losses_round_trip_and_train_a_model(batch, cls, kwargs, reference):
    # Before: "the loss of a 2-epoch fit is finite". Now: the value a compiled training step
    # reports is the paper's formula on the model's logits, and training lowers it.
    labels, logits = batch
    loss = cls(**kwargs)
    clone = cls.from_config(json.loads(json.dumps(loss.get_config())))
    assert float(clone(labels, logits)) == pytest.approx(float(loss(labels, logits)), rel=1e-6)
    x = np.random.default_rng(0).normal(size=(24, 3)).astype("float32")
    y = np.tile(labels, 2)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(K)])
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss=loss)
    frozen = model.fit(x, y, epochs=1, batch_size=24, shuffle=False, verbose=0)
    expected = reference(y, np.asarray(model.predict(x, verbose=0), "float64")).mean()
    assert frozen.history["loss"][0] == pytest.approx(expected, rel=1e-5)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss)
    history = model.fit(x, y, epochs=5, batch_size=24, shuffle=False, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]


@pytest.mark.parametrize("call, error, message", [
    # Before: only the argument's name was matched; now the whole message, value included.
    (lambda: losses.SoftBootstrappingLoss(beta=1.5), ValueError,
     r"`beta` must be in \[0, 1\], got 1.5"),
    (lambda: losses.AdaptiveFocalLoss(gamma_low=-1.0), ValueError,
     r"`gamma_low` must be >= 0, got -1.0"),
    (lambda: losses.MarginLSLoss(margin=-1.0), ValueError, r"`margin` must be >= 0, got -1.0"),
    (lambda: losses.TFKDRegularizationLoss(temperature=0.0), ValueError,
     r"`temperature` must be > 0, got 0.0"),
    (lambda: losses.ZipfLSLoss(power=-2.0), ValueError, r"`power` must be >= 0, got -2.0"),
    (lambda: losses.OnlineLabelSmoothingLoss(num_classes=1), ValueError,
     r"`num_classes` must be >= 2, got 1"),
    (lambda: losses.ClassSimilarityLSLoss(np.eye(3), epsilon=1.0), ValueError,
     r"`epsilon` must be in \[0, 1\), got 1.0"),
    (lambda: losses.OnlineLabelSmoothing(keras.losses.CategoricalCrossentropy(), np.zeros((2, 2)),
                                         [0, 1]),
     TypeError, r"`loss` must be an OnlineLabelSmoothingLoss, got CategoricalCrossentropy"),
])
def test_baselines_refuse_bad_settings(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_ols_training_steps_use_the_updated_matrix_on_every_backend(rng):
    # With a zero learning rate the weights stay put: epoch 1 trains on S^0 = I (cross-entropy),
    # epoch 2 on the matrix measured after epoch 1. A step that kept the old matrix would repeat
    # epoch 1.
    x = rng.normal(size=(64, 3)).astype("float32")
    y = (x[:, 0] < 0).astype("int32") * 2  # the fixed weights classify every example correctly
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(3)])
    model.layers[0].set_weights([np.array([[3.0, 0.5, -3.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]],
                                          "float32"),
                                 np.zeros(3, "float32")])
    loss = losses.OnlineLabelSmoothingLoss(num_classes=3, alpha=0.5)
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss=loss)
    history = model.fit(x, y, epochs=2, batch_size=64, shuffle=False, verbose=0,
                        callbacks=[losses.OnlineLabelSmoothing(loss, x, y)])
    logits = np.asarray(model.predict(x, verbose=0))
    log_q = np.log(ref.softmax(logits))
    ce = -log_q[np.arange(64), y].mean()
    soft = loss.matrix[y]
    expected_second = 0.5 * ce - 0.5 * (soft * log_q).sum(1).mean()
    assert not np.allclose(loss.matrix, np.eye(3))
    np.testing.assert_allclose(history.history["loss"], [ce, expected_second], rtol=1e-4)
