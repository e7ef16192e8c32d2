"""Target builders inside a `tf.data` pipeline on the backend of this process (issue 17, item 2).

Backend-agnostic: the default suite runs it under TensorFlow, and
`test_backends.py` reruns it under JAX (and torch, where installed). A
`tf.data` map traces its function into a TensorFlow graph whatever the
backend; the targets it produces must equal NumPy float64 targets written here
from the equations:

    ILS paper (Maher & Kull 2021), Eq. 3:  eps_x = min(cap, P2 * (p*_t - P1)^2),
        p* = softmax(z / T*) (the temperature-scaled teacher);
        ILS1:  y_j (1 - eps_x) + eps_x / K
    Eq. 4 (ILS2):  y_t = 1 - eps,  y_j = eps * q_j / (1 - q_t) for j != t,  q = softmax(z / T)
    Sec. IV-C (ILS):  Eq. 4 with eps replaced by eps_x of Eq. 3
    LS:  y (1 - eps) + eps / K;  class matrix (LLS Eq. 4):  (1 - a) y + a M[y]

Problems include the degenerate ones: K = 2, batches of one row, ties (equal
logits), zero logits, and saturated teachers (logits of +-1e4, where
1 - q_t is 0 in float64 and Eq. 4 is read as its limit p_j / sum_{i != t} p_i).
"""

import keras
import numpy as np
import pytest

from keras_smooth import ILSTargets, targets

tf = pytest.importorskip("tensorflow")

P1, P2, CAP, T_STAR, T, EPS = 0.9, 1.5, 0.2, 1.3, 4.0, 0.1


def _softmax(z):
    z = np.asarray(z, "float64")
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _wrong_class_shape(z, y):
    """q_j / (1 - q_t) of Eq. 4 for j != t, 0 at t, from logits z at temperature 1.

    q_j / (1 - q_t) = exp(z_j) / sum_{i != t} exp(z_i): the same quotient with the
    true-class term cancelled, which stays defined where 1 - q_t rounds to 0.
    """
    onehot = np.eye(z.shape[1])[y]
    masked = np.where(onehot > 0, -np.inf, np.asarray(z, "float64"))
    return _softmax(masked)


def _ils_numpy(method, z, y):
    k = z.shape[1]
    onehot = np.eye(k)[y]
    p_t = _softmax(z / T_STAR)[np.arange(len(y)), y]
    eps_x = np.minimum(CAP, P2 * (p_t - P1) ** 2)[:, None]  # Eq. 3
    if method == "ils1":
        return onehot * (1 - eps_x) + eps_x / k
    eps = EPS if method == "ils2" else eps_x
    return onehot * (1 - eps) + eps * _wrong_class_shape(z / T, y)  # Eq. 4 / Sec. IV-C


def _problems(seed=0):
    """(labels, teacher logits) of many random problems with degenerate rows mixed in."""
    rng = np.random.default_rng(seed)
    for k in (2, 3, 10):
        n = 97  # batches of 32 end with one row
        z = rng.normal(scale=rng.choice([0.1, 1.0, 5.0], size=(n, 1)), size=(n, k))
        y = rng.integers(0, k, size=n)
        z[:8] = 0.0  # ties: all logits equal
        z[8:16] = np.where(np.eye(k)[y[8:16]] > 0, 1e4, 0.0)  # saturated teacher
        z[16:24] = np.where(np.eye(k)[y[16:24]] > 0, -1e4, 0.0)  # surely wrong teacher
        z[24:28, 1:] = z[24:28, :1]  # ties among some classes
        yield y.astype("int32"), z.astype("float32")


def _through_tf_data(function, *arrays, batch=32):
    """`function`'s outputs (a tuple) over a batched `tf.data` map, concatenated."""
    ds = tf.data.Dataset.from_tensor_slices(arrays).batch(batch).map(function)
    batches = [tuple(outputs) for outputs in ds]
    assert all(isinstance(t, tf.Tensor) for t in batches[0])  # TF ops ran, on any backend
    return [np.concatenate([np.asarray(b[i]) for b in batches]) for i in range(len(batches[0]))]


def test_ils_targets_layer_in_tf_data_equals_the_papers_equations():
    layers = [ILSTargets(method, epsilon=EPS, p1=P1, p2=P2, cap=CAP, temperature=T,
                         calibration_temperature=T_STAR) for method in ("ils1", "ils2", "ils")]

    def all_forms(y, column, onehot, z):  # labels as (N,) ids, (N, 1) ids and one-hot rows
        return tuple(layer(labels, z) for layer in layers for labels in (y, column, onehot))

    for y, z in _problems():
        onehot = np.eye(z.shape[1], dtype="float32")[y]
        got = _through_tf_data(all_forms, y, y[:, None], onehot, z)
        for i, method in enumerate(("ils1", "ils2", "ils")):
            want = _ils_numpy(method, z, y)
            for form in got[3 * i:3 * i + 3]:
                assert np.isfinite(form).all()
                np.testing.assert_allclose(form, want, atol=2e-6, err_msg=method)


def test_equation_four_as_written_where_one_minus_p_t_is_not_zero():
    """The reference's wrong-class shape is Eq. 4's quotient itself where it is defined."""
    for y, z in _problems(seed=1):
        q = _softmax(z / T)
        rest = 1 - q[np.arange(len(y)), y]
        ok = rest > 1e-6
        with np.errstate(divide="ignore", invalid="ignore"):
            literal = q / rest[:, None] * (1 - np.eye(z.shape[1])[y])
        np.testing.assert_allclose(_wrong_class_shape(z / T, y)[ok], literal[ok], atol=1e-9)


def test_probability_builders_in_tf_data_equal_the_papers_equations():
    for y, z in _problems(seed=2):
        k = z.shape[1]
        calibrated = _softmax(z / T_STAR).astype("float32")
        at_t = _softmax(z / T).astype("float32")
        onehot = np.eye(k)[y]
        p_t = calibrated.astype("float64")[np.arange(len(y)), y]
        eps_x = np.minimum(CAP, P2 * (p_t - P1) ** 2)[:, None]
        # probabilities lose the saturated rows' wrong-class shape in float32; compare
        # against the shape of the probabilities handed in (p_j / sum of wrong p_i)
        wrong = at_t * (1 - onehot)
        total = wrong.sum(1, keepdims=True)
        shape = np.where(total > 0, wrong / np.where(total > 0, total, 1), (1 - onehot) / (k - 1))
        wants = {
            "uniform": onehot * (1 - EPS) + EPS / k,
            "ils1": onehot * (1 - eps_x) + eps_x / k,
            "ils2": onehot * (1 - EPS) + EPS * shape,
            "ils": onehot * (1 - eps_x) + eps_x * shape,
        }

        def builders(y, c, t):
            return (targets.uniform(y, k, EPS), targets.ils1(y, c, P1, P2, CAP),
                    targets.ils2(y, t, EPS), targets.ils(y, c, t, P1, P2, CAP))

        got = _through_tf_data(builders, y, calibrated, at_t)
        for (name, want), values in zip(wants.items(), got):
            np.testing.assert_allclose(values, want, atol=2e-6, err_msg=name)


def test_class_matrix_and_teacher_free_builders_in_tf_data():
    rng = np.random.default_rng(3)
    for y, z in _problems(seed=3):
        k = z.shape[1]
        onehot = np.eye(k)[y]
        matrix = rng.dirichlet(np.ones(k), size=k)
        # Zipf: the label has rank 1, the others ranks 2..K by descending logit
        distinct = rng.permutation(k * len(y)).reshape(len(y), k).astype("float32")
        ranks = np.empty_like(distinct)
        for i, (row, label) in enumerate(zip(distinct, y)):
            order = [label] + [j for j in np.argsort(-row) if j != label]
            ranks[i, order] = np.arange(1, k + 1)

        def builders(y, logits):
            return (targets.matrix_smoothing(y, matrix, 0.3), targets.virtual_teacher(y, k, 0.9),
                    targets.zipf(y, logits))

        smoothed, virtual, zipf = _through_tf_data(builders, y, distinct)
        np.testing.assert_allclose(smoothed, 0.7 * onehot + 0.3 * matrix[y], atol=2e-6)
        np.testing.assert_allclose(virtual, np.where(onehot > 0, 0.9, 0.1 / (k - 1)), atol=2e-6)
        np.testing.assert_allclose(zipf, (1 / ranks) / (1 / ranks).sum(1, keepdims=True),
                                   atol=2e-6)


def test_bad_labels_in_tf_data_stop_the_pipeline_with_the_labels_message():
    layer = ILSTargets("ils")
    z = np.zeros((4, 3), "float32")
    for labels, message in ((np.array([0, 1, 5, 2]), r"`labels` must be class ids in \[0, 3\)"),
                            (np.array([0.0, 1.5, 2.0, 1.0], "float32"), "whole numbers")):
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            _through_tf_data(lambda y, z: (layer(y, z),), labels, z)


def test_student_fits_on_ils_targets_from_tf_data():
    """The README's pipeline: the loss Keras reports is the cross-entropy of those targets."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(40, 5)).astype("float32")
    y = rng.integers(0, 3, size=40).astype("int32")
    z = rng.normal(scale=3.0, size=(40, 3)).astype("float32")
    layer = ILSTargets("ils", p1=P1, p2=P2, cap=CAP, temperature=T,
                       calibration_temperature=T_STAR)
    ds = tf.data.Dataset.from_tensor_slices((x, y, z)).batch(16)
    ds = ds.map(lambda x, y, z: (x, layer(y, z)))
    student = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3)])
    student.compile(optimizer="adam", loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    history = student.fit(ds, epochs=1, verbose=0, shuffle=False)
    assert np.isfinite(history.history["loss"]).all()
    logits = np.asarray(keras.ops.convert_to_numpy(student(x)), "float64")
    log_p = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True))
    log_p -= logits.max(1, keepdims=True)
    want = -(_ils_numpy("ils", z, y) * log_p).sum(1).mean()
    assert student.evaluate(ds, verbose=0) == pytest.approx(want, rel=1e-5)
