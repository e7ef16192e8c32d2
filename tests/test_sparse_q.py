"""Sparse class matrices (`neighbors=N`) and the gathered dense step (issue 14, part 1).

Expected values come from NumPy written from the papers' equations: LLS Eq. 4-5
(t = (1 - a) onehot + a softmax(Q)[y], loss = (KL(t||p) + KL(p||t)) / 2) and LS++
§3.2 (zero diagonal, loss = (H(t, p) + H(p, t)) / 2), with the sparse matrix
written as the K x K logits it stands for: N free logits at the row's
neighbours, the diagonal (LLS), and one tail logit shared by all other classes.
"""

import keras
import numpy as np
import pytest

from keras_smooth import TrainableTargetsModel, losses
from keras_smooth.layers import SparseQMatrix

BACKEND = keras.backend.backend()
EPS = 1e-7  # keras.config.epsilon(): the clamp of log t


def _softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _np_dense_logits(logits, ids, zero_diagonal):
    """The K x K logits a sparse matrix stands for (paper's Q restricted to the support)."""
    k, n = ids.shape
    dense = np.repeat(logits[:, n + 1 :], k, axis=1).astype("float64")
    for y in range(k):
        for j in range(n):
            dense[y, ids[y, j]] = logits[y, 1 + j]
        dense[y, y] = -np.inf if zero_diagonal else logits[y, 0]
    return dense


def _np_loss(kind, labels, z, matrix, alpha):
    """Per-sample LLS / LS++ values from the papers' equations (float64)."""
    k = matrix.shape[0]
    t = (1 - alpha) * np.eye(k)[labels] + alpha * matrix[labels]
    log_p = z - z.max(axis=1, keepdims=True)
    log_p = log_p - np.log(np.exp(log_p).sum(axis=1, keepdims=True))
    p = np.exp(log_p)
    log_t = np.log(np.maximum(t, EPS))
    if kind == "lls":
        return 0.5 * ((t * (log_t - log_p)).sum(1) + (p * (log_p - log_t)).sum(1))
    return 0.5 * (-(t * log_p).sum(1) - (p * log_t).sum(1))


CLASSES = {"lls": losses.LLSLoss, "lspp": losses.LSPlusPlusLoss}


# JAX compiles every primitive per shape: one shape family keeps its rerun fast.
TF = BACKEND == "tensorflow"
PROBLEMS = 50 if TF else 8


def _random_problem(rng):
    k = int(rng.choice([2, 3, 6])) if TF else 6
    n = int(rng.integers(1, k)) if TF else int(rng.choice([2, 5]))
    ids = np.stack([rng.permutation(np.delete(np.arange(k), y))[:n] for y in range(k)])
    scale = rng.choice([0.0, 1.0, 5.0, 40.0])  # 0: ties everywhere; 40: saturated rows
    logits = (rng.normal(size=(k, n + 2)) * scale).astype("float32")
    b = int(rng.choice([1, 8])) if TF else 8
    labels = rng.integers(0, k, size=b)
    if rng.random() < 0.3:
        labels[:] = labels[0]  # one class only, repeated
    z = (rng.normal(size=(b, k)) * rng.choice([1.0, 30.0])).astype("float32")
    return k, n, ids, logits, labels, z


def _frozen_sparse(kind, k, n, ids, logits, alpha, rechoose=True):
    loss = CLASSES[kind](k, alpha=alpha, neighbors=n, neighbor_ids=ids, matrix_trainable=False,
                         rechoose_neighbors=rechoose)
    loss.matrix_layer.logits.assign(logits)
    return loss


@pytest.mark.parametrize("kind", ["lls", "lspp"])
def test_sparse_targets_and_values_match_the_papers_equation_on_the_support(kind):
    rng = np.random.default_rng(0 if kind == "lls" else 1)
    for _ in range(PROBLEMS):
        k, n, ids, logits, labels, z = _random_problem(rng)
        alpha = float(rng.choice([0.0, 0.1, 0.4, 0.9]))
        loss = _frozen_sparse(kind, k, n, ids, logits, alpha)
        matrix = _softmax(_np_dense_logits(logits.astype("float64"), ids, kind == "lspp"))
        np.testing.assert_allclose(loss.matrix, matrix, rtol=1e-5, atol=1e-6)
        expected_t = (1 - alpha) * np.eye(k)[labels] + alpha * matrix[labels]
        np.testing.assert_allclose(np.asarray(loss.targets(labels)), expected_t,
                                   rtol=1e-5, atol=1e-6)
        expected = _np_loss(kind, labels, z.astype("float64"), matrix, alpha)
        got = np.asarray(keras.ops.convert_to_numpy(loss.call(labels, z)), "float64")
        np.testing.assert_allclose(got, expected, rtol=2e-5, atol=2e-4)


def _matrix_grad(loss, labels, z):
    """d(sum of per-sample values)/d(sparse logits), and the rows that got a gradient."""
    variable = loss.matrix_layer.logits
    if BACKEND == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            value = tf.reduce_sum(loss.call(labels, z))
        grad = tape.gradient(value, variable.value)
        assert isinstance(grad, tf.IndexedSlices)  # only the batch's rows, each once
        rows = np.sort(grad.indices.numpy())
        assert len(rows) == len(np.unique(rows))
        return tf.convert_to_tensor(grad).numpy().astype("float64"), rows
    import jax

    def total(value):
        with keras.StatelessScope(state_mapping=[(variable, value)]):
            return keras.ops.sum(loss.call(labels, z))

    grad = np.asarray(jax.grad(total)(variable.value), "float64")
    return grad, np.flatnonzero(np.abs(grad).sum(1) > 0)


@pytest.mark.parametrize("kind", ["lls", "lspp"])
def test_sparse_matrix_gradient_matches_finite_differences_of_the_reference(kind):
    rng = np.random.default_rng(2)
    for _ in range(12 if BACKEND == "tensorflow" else 4):
        k, n, ids, logits, labels, z = _random_problem(rng)
        logits = logits.clip(-3, 3)
        # No re-choosing: a swap zeroes the returned gradient at the swapped entries
        # (tests/test_matrix_step_fused.py), and this checks the gradient's math.
        loss = _frozen_sparse(kind, k, n, ids, logits, 0.3, rechoose=False)
        loss.matrix_layer.trainable = True
        loss.attached = True  # no own optimizer step: read the raw gradient
        grad, rows = _matrix_grad(loss, labels, z)
        assert set(rows) <= set(labels.tolist())

        def reference(theta):
            m = _softmax(_np_dense_logits(theta, ids, kind == "lspp"))
            if kind == "lls":  # LLS: Q learns from the whole symmetric KL
                return _np_loss(kind, labels, z.astype("float64"), m, 0.3).sum()
            # LS++: C learns only from H(sg(p), t) / 2
            t = 0.7 * np.eye(k)[labels] + 0.3 * m[labels]
            p = _softmax(z.astype("float64"))
            return -0.5 * (p * np.log(np.maximum(t, EPS))).sum()

        numeric = np.zeros_like(grad)
        base = logits.astype("float64")
        for index in np.ndindex(*base.shape):
            up, down = base.copy(), base.copy()
            up[index] += 1e-5
            down[index] -= 1e-5
            numeric[index] = (reference(up) - reference(down)) / 2e-5
        if kind == "lspp":
            numeric[:, 0] = 0.0  # the unused diagonal column
        np.testing.assert_allclose(grad, numeric, atol=2e-4)


@pytest.mark.parametrize("kind", ["lls", "lspp"])
def test_sparse_with_all_other_classes_as_neighbours_is_the_dense_loss(kind):
    rng = np.random.default_rng(3)
    for _ in range(15 if BACKEND == "tensorflow" else 4):
        k = int(rng.choice([2, 5])) if TF else 5
        ids = np.stack([rng.permutation(np.delete(np.arange(k), y)) for y in range(k)])
        logits = rng.normal(size=(k, k + 1)).astype("float32") * 3
        sparse = _frozen_sparse(kind, k, k - 1, ids, logits, 0.2)
        dense = CLASSES[kind](k, alpha=0.2, matrix_trainable=False,
                              matrix_logits=np.nan_to_num(sparse.matrix_layer.dense_logits(),
                                                          neginf=0.0))
        labels = rng.integers(0, k, size=5)
        z = rng.normal(size=(5, k)).astype("float32")
        np.testing.assert_allclose(sparse.matrix, dense.matrix, atol=1e-6)
        np.testing.assert_allclose(np.asarray(sparse(labels, z)), np.asarray(dense(labels, z)),
                                   rtol=1e-5)


@pytest.mark.parametrize("kind", ["lls", "lspp"])
def test_sparse_equals_dense_when_the_neighbours_cover_the_support(kind):
    # A dense matrix whose rows put no mass outside {y} + neighbours equals the
    # sparse one with the same logits and a tail logit of -inf (here -200).
    rng = np.random.default_rng(4)
    k, n = 9, 3
    ids = np.stack([rng.permutation(np.delete(np.arange(k), y))[:n] for y in range(k)])
    logits = rng.normal(size=(k, n + 2)).astype("float32")
    logits[:, -1] = -200.0
    sparse = _frozen_sparse(kind, k, n, ids, logits, 0.2)
    dense_logits = sparse.matrix_layer.dense_logits()
    dense_logits[~np.isfinite(dense_logits)] = 0.0
    dense = CLASSES[kind](k, alpha=0.2, matrix_trainable=False, matrix_logits=dense_logits)
    labels = rng.integers(0, k, size=16)
    z = rng.normal(size=(16, k)).astype("float32")
    assert (sparse.matrix > 0).sum(1).max() == n + (kind == "lls")
    np.testing.assert_allclose(np.asarray(sparse(labels, z)), np.asarray(dense(labels, z)),
                               rtol=1e-5)


@pytest.mark.parametrize("kind", ["lls", "lspp"])
def test_gathered_dense_loss_equals_the_full_matrix_computation(kind):
    # The function twins compute targets as onehot @ M with the whole matrix.
    twin = {"lls": losses.lls_loss, "lspp": losses.lspp_loss}[kind]
    rng = np.random.default_rng(5)
    for _ in range(60 if BACKEND == "tensorflow" else 10):
        k = int(rng.choice([2, 4, 7])) if TF else 4
        q = (rng.normal(size=(k, k)) * rng.choice([0.0, 2.0, 30.0])).astype("float32")
        loss = CLASSES[kind](k, alpha=0.3, matrix_logits=q, matrix_trainable=False)
        b = int(rng.choice([1, 11])) if TF else 11
        labels = rng.integers(0, k, size=b)
        z = (rng.normal(size=(b, k)) * 4).astype("float32")
        full = np.asarray(twin(labels, z, loss.matrix, alpha=0.3))
        np.testing.assert_allclose(np.asarray(loss.call(labels, z)), full, rtol=1e-5, atol=1e-6)
        reference = _np_loss(kind, labels, z.astype("float64"),
                             _softmax(np.where(np.eye(k) * (kind == "lspp"), -np.inf, q)), 0.3)
        np.testing.assert_allclose(np.asarray(loss.call(labels, z)), reference,
                                   rtol=2e-5, atol=1e-5)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="the backward hook is TensorFlow's")
@pytest.mark.parametrize("kind", ["lls", "lspp"])
def test_gathered_adam_steps_equal_adam_on_the_full_matrix_gradient(kind):
    # Old computation: rows = onehot @ softmax(Q) over the whole K x K matrix,
    # dense gradient, Adam. Repeated labels are the case a naive gather gets wrong.
    import tensorflow as tf

    rng = np.random.default_rng(6)
    k = 7
    q0 = rng.normal(size=(k, k)).astype("float32")
    loss = CLASSES[kind](k, alpha=0.3, matrix_logits=q0)
    reference = CLASSES[kind](k, alpha=0.3, matrix_logits=q0)
    variable = reference.matrix_layer.logits
    adam = keras.optimizers.Adam(1e-2)
    adam.build([variable])
    eye = np.eye(k, dtype=bool)
    for step in range(4):
        labels = rng.integers(0, 3, size=10)  # few classes: many repeats
        z = rng.normal(size=(10, k)).astype("float32")
        with tf.GradientTape() as tape:
            value = tf.reduce_sum(loss(labels, tf.Variable(z)))
        tape.gradient(value, tape.watched_variables())
        with tf.GradientTape() as tape:
            logits = tf.convert_to_tensor(variable.value)
            if kind == "lspp":
                full = tf.where(eye, 0.0, tf.nn.softmax(tf.where(eye, -1e30, logits)))
            else:
                full = tf.nn.softmax(logits)
            onehot = tf.one_hot(labels, k)
            rows = onehot @ full
            log_p = tf.nn.log_softmax(z)
            objective = tf.reduce_mean(reference.objective(onehot, log_p, tf.exp(log_p), rows))
        adam.apply_gradients([(tape.gradient(objective, variable.value), variable)])
        np.testing.assert_allclose(loss.matrix_layer.logits.numpy(), variable.numpy(), atol=2e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"neighbors": 0}, r"`neighbors` must be in \[1, 4\].*got 0"),
        ({"neighbors": -2}, r"`neighbors`.*got -2"),
        ({"neighbors": 5}, r"`neighbors` must be in \[1, 4\].*got 5"),
        ({"neighbors": 9}, r"`neighbors`.*got 9"),
        ({"neighbors": 2, "neighbor_ids": np.zeros((5, 3), int)}, r"`neighbor_ids`.*\(5, 2\)"),
        ({"neighbors": 2, "neighbor_ids": np.zeros((5,), int)}, r"`neighbor_ids`.*shape"),
        ({"neighbors": 1, "neighbor_ids": [[1], [2], [3], [4], [5]]}, r"`neighbor_ids`.*5"),
        ({"neighbors": 1, "neighbor_ids": [[1], [2], [3], [4], [-1]]}, r"`neighbor_ids`.*-1"),
        ({"neighbors": 1, "neighbor_ids": [[1], [1], [3], [4], [0]]}, r"`neighbor_ids` row 1"),
        ({"neighbors": 2, "neighbor_ids": [[1, 1], [2, 3], [3, 4], [4, 0], [0, 1]]},
         r"`neighbor_ids` row 0 names class 1 twice"),
        ({"neighbors": 1, "neighbor_ids": [[1.5], [2], [3], [4], [0]]}, r"`neighbor_ids`.*integer"),
        ({"neighbor_ids": [[1], [2], [3], [4], [0]]}, r"`neighbor_ids` needs `neighbors`"),
        ({"neighbors": 2, "matrix_logits": np.zeros((5, 5))}, r"`matrix_logits`"),
    ],
)
@pytest.mark.parametrize("cls", [losses.LLSLoss, losses.LSPlusPlusLoss])
def test_bad_sparse_arguments_raise_naming_the_argument(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(5, **kwargs)


@pytest.mark.parametrize("bad", [True, 2.0, "3"])
def test_neighbors_must_be_an_integer(bad):
    with pytest.raises((TypeError, ValueError), match=r"`neighbors`"):
        losses.LLSLoss(5, neighbors=bad)


def _confusable_data(n_per_class=60, seed=0):
    """6 classes in 3 overlapping pairs (0,1), (2,3), (4,5); pairs far apart."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0, 0], [0.6, 0], [8, 0], [8, 0.6], [0, 8], [0.6, 8]], "float32")
    y = np.repeat(np.arange(6), n_per_class)
    x = centres[y] + rng.normal(scale=0.5, size=(len(y), 2)).astype("float32")
    order = rng.permutation(len(y))
    return x[order], y[order].astype("int32")


def _net(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [keras.Input((2,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(6)]
    )


PAIR = np.array([1, 0, 3, 2, 5, 4])


@pytest.mark.parametrize("kind", ["lls", "lspp"])
def test_sparse_matrix_learns_the_confusion_structure(kind):
    # Placeholders start at (y + 1, y + 2): classes 1, 3, 5 must find their pair.
    x, y = _confusable_data()
    loss = CLASSES[kind](6, alpha=0.2, neighbors=2,
                         matrix_optimizer=keras.optimizers.Adam(5e-2))
    if BACKEND == "tensorflow":
        model = _net()
        model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=loss)
        model.fit(x, y, epochs=25, batch_size=36, verbose=0)
    else:  # the model's optimizer trains the matrix; neighbours re-chosen by the caller
        model = TrainableTargetsModel(_net())
        model.compile(optimizer=keras.optimizers.Adam(2e-2), loss=loss)
        for _ in range(25):
            model.fit(x, y, epochs=1, batch_size=36, verbose=0)
            loss.update_neighbors(y[:72], model.predict(x[:72], verbose=0))
    m = loss.matrix.copy()
    np.fill_diagonal(m, 0)
    np.testing.assert_array_equal(m.argmax(1), PAIR)
    ids = np.asarray(keras.ops.convert_to_numpy(loss.matrix_layer.neighbor_ids))
    assert all(PAIR[c] in ids[c] for c in range(6)), ids
    np.testing.assert_allclose(loss.matrix.sum(1), 1.0, atol=1e-5)


@pytest.mark.parametrize("kind", ["lls", "lspp"])
def test_sparse_loss_round_trips_config_and_keras_file(kind, tmp_path):
    x, y = _confusable_data(10)
    loss = CLASSES[kind](6, alpha=0.2, neighbors=3, rechoose_neighbors=False)
    config = loss.get_config()
    assert config["neighbors"] == 3 and config["rechoose_neighbors"] is False
    clone = type(loss).from_config(config)
    assert clone.neighbors == 3 and clone.rechoose_neighbors is False
    assert isinstance(clone.matrix_layer, SparseQMatrix)
    again = keras.losses.deserialize(keras.losses.serialize(loss))
    assert again.neighbors == 3

    loss = CLASSES[kind](6, alpha=0.2, neighbors=3)
    model = _net() if BACKEND == "tensorflow" else TrainableTargetsModel(_net())
    model.compile(optimizer="adam", loss=loss)
    model.fit(x, y, epochs=2, batch_size=12, verbose=0)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    new = loaded.loss
    assert isinstance(new.matrix_layer, SparseQMatrix) and new.neighbors == 3
    for a, b in zip(loss.matrix_layer.get_weights(), new.matrix_layer.get_weights()):
        np.testing.assert_array_equal(a, b)
    z = np.asarray(model.predict(x, verbose=0))
    np.testing.assert_allclose(np.asarray(new(y, z)), np.asarray(loss(y, z)), rtol=1e-6)
    loaded.fit(x, y, epochs=1, batch_size=12, verbose=0)  # and it trains on
    assert np.abs(new.matrix - loss.matrix).max() > 0
