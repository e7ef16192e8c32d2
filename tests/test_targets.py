"""Target functions and the ILSTargets layer against the ILS paper's equations."""

import keras
import numpy as np
import pytest
from keras import ops

import reference as ref
from keras_smooth import targets
from keras_smooth.layers import ILSTargets

K = 4


def _np(x):
    return np.asarray(ops.convert_to_numpy(x), dtype="float64")


@pytest.fixture
def batch(rng):
    labels = rng.integers(0, K, size=16)
    probs = ref.softmax(rng.normal(scale=2.0, size=(16, K)))
    return labels, probs


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.5])
def test_uniform_matches_reference_for_every_label_format(batch, eps):
    labels, _ = batch
    expected = ref.uniform_ls(labels, K, eps)
    for form in (labels, labels[:, None], ref.one_hot(labels, K)):
        np.testing.assert_allclose(_np(targets.uniform(form, K, eps)), expected, atol=1e-6)


@pytest.mark.parametrize("p1,p2", [(0.975, 0.75), (0.85, 2.0), (0.9, 1.25)])
def test_ils1_matches_eq3(batch, p1, p2):
    labels, probs = batch
    np.testing.assert_allclose(
        _np(targets.ils1(labels, probs, p1, p2)), ref.ils1(labels, probs, p1, p2), atol=1e-6
    )


def test_ils1_cap_binds():
    probs = np.array([[0.0, 0.5, 0.5]])
    out = _np(targets.ils1([0], probs, p1=0.9, p2=2.0, cap=0.2))
    np.testing.assert_allclose(out, [[0.8 + 0.2 / 3, 0.2 / 3, 0.2 / 3]], atol=1e-6)


@pytest.mark.parametrize("eps", [0.01, 0.1, 0.2])
def test_ils2_matches_eq4(batch, eps):
    labels, probs = batch
    np.testing.assert_allclose(
        _np(targets.ils2(labels, probs, eps)), ref.ils2(labels, probs, eps), atol=1e-5
    )


def test_ils_combines_eq3_epsilon_with_eq4_shape(batch, rng):
    labels, calibrated = batch
    at_t = ref.softmax(rng.normal(size=(16, K)))
    np.testing.assert_allclose(
        _np(targets.ils(labels, calibrated, at_t, 0.9, 1.5)),
        ref.ils(labels, calibrated, at_t, 0.9, 1.5),
        atol=1e-5,
    )


def _random_problem(rng, case):
    """Labels and teacher probabilities of one random problem; every 4th kind is degenerate:
    ties (equal logits), a saturated teacher (p_t = 1 exactly) or a teacher giving the true
    class nothing (p_t = 0)."""
    k = int(rng.choice([2, 3, 5, 8]))
    n = int(rng.choice([1, 7, 16]))
    labels = rng.integers(0, k, n)
    logits = rng.normal(scale=float(rng.choice([0.1, 1.0, 4.0])), size=(n, k))
    kind = case % 4
    if kind == 1:
        logits = np.round(logits)  # many ties, some rows all equal
        logits[0] = 0.0
    probs = ref.softmax(logits)
    if kind == 2:
        probs[0] = 0.0
        probs[0, labels[0]] = 1.0
    if kind == 3:
        probs[0, labels[0]] = 0.0  # the other entries of a softmax row are > 0
        probs[0] /= probs[0].sum()
    return labels, probs


def _ils2_ref(labels, probs, eps):
    """Eq. 4; where p_t = 1 exactly (0/0) the documented limit 1 / (K - 1) per wrong class."""
    k = probs.shape[1]
    out = []
    for i, t in enumerate(labels):
        e = eps[i] if np.ndim(eps) else eps
        if probs[i, t] == 1.0:
            row = np.full(k, e / (k - 1))
            row[t] = 1 - e
        else:
            row = ref.ils2_row(t, probs[i], e)
        out.append(row)
    return np.stack(out)


def test_targets_match_eq3_and_eq4_over_200_random_problems():
    # Before: "rows are distributions of shape (16, K)" on one batch. Now every function
    # against the paper's equations on 200 random problems, degenerate ones included.
    rng = np.random.default_rng(42)
    for case in range(200):
        labels, probs = _random_problem(rng, case)
        p1, p2 = rng.uniform(0.7, 0.99), rng.uniform(0.0, 10.0)
        eps = float(rng.uniform(0.0, 0.99))
        at_t = ref.softmax(rng.normal(size=probs.shape))
        eps_x = np.minimum(0.2, p2 * (probs[np.arange(len(labels)), labels] - p1) ** 2)
        cases = {
            "ils1": (targets.ils1(labels, probs, p1, p2), ref.ils1(labels, probs, p1, p2)),
            "ils2": (targets.ils2(labels, probs, eps), _ils2_ref(labels, probs, eps)),
            "ils": (targets.ils(labels, probs, at_t, p1, p2), _ils2_ref(labels, at_t, eps_x)),
        }
        for name, (got, expected) in cases.items():
            got = _np(got)
            message = f"{name}, case {case}: K={probs.shape[1]}, N={len(labels)}"
            np.testing.assert_allclose(got, expected, atol=2e-6, err_msg=message)
            assert got.min() >= 0, message
            np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-6, err_msg=message)


def test_saturated_teacher_gives_finite_uniform_wrong_class_mass():
    # p_t == 1 exactly: the paper's Eq. 4 is 0/0; the documented limit is 1/(K-1).
    probs = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    out = _np(targets.ils2([0, 1], probs, 0.1))
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out[0], [0.9, 0.1 / 3, 0.1 / 3, 0.1 / 3], atol=1e-6)
    out = _np(targets.ils([0], probs[:1], probs[:1], 0.9, 1.0))
    np.testing.assert_allclose(out[0], [0.99, 0.01 / 3, 0.01 / 3, 0.01 / 3], atol=1e-6)


def test_from_logits_distribution_is_exact_even_when_p_t_rounds_to_one():
    logits = np.array([[200.0, 1.0, 0.0, -1.0]], "float32")
    out = _np(targets.wrong_class_distribution_from_logits([0], logits, temperature=2.0))
    expected = ref.softmax(np.array([1.0, 0.0, -1.0]) / 2.0)
    np.testing.assert_allclose(out[0], np.r_[0.0, expected], atol=1e-6)


def test_ils_targets_layer_matches_references(batch, rng):
    labels, _ = batch
    logits = rng.normal(scale=3.0, size=(16, K)).astype("float32")
    t_star, t = 1.7, 4.0
    calibrated = ref.softmax(logits / t_star)
    at_t = ref.softmax(logits / t)
    cases = {
        "ils1": ref.ils1(labels, calibrated, 0.9, 1.5),
        "ils2": ref.ils2(labels, at_t, 0.1),
        "ils": ref.ils(labels, calibrated, at_t, 0.9, 1.5),
    }
    for method, expected in cases.items():
        layer = ILSTargets(
            method, epsilon=0.1, p1=0.9, p2=1.5, temperature=t, calibration_temperature=t_star
        )
        np.testing.assert_allclose(_np(layer(labels, logits)), expected, atol=1e-5)
        clone = ILSTargets.from_config(layer.get_config())
        np.testing.assert_allclose(_np(clone(labels, logits)), expected, atol=1e-5)


def test_ils_targets_layer_inside_a_functional_model(batch, rng):
    labels, _ = batch
    logits = rng.normal(size=(16, K)).astype("float32")
    label_in = keras.Input((), dtype="int32")
    logit_in = keras.Input((K,))
    out = ILSTargets("ils2", epsilon=0.2, temperature=2.0)(label_in, logit_in)
    model = keras.Model([label_in, logit_in], out)
    got = model.predict([labels.astype("int32"), logits], verbose=0)
    np.testing.assert_allclose(got, ref.ils2(labels, ref.softmax(logits / 2.0), 0.2), atol=1e-5)


def test_ils_targets_layer_in_a_tf_data_map(batch, rng):
    # Every backend since issue 17: on JAX and torch the layer computes in TensorFlow there.
    import tensorflow as tf

    labels, _ = batch
    logits = rng.normal(size=(16, K)).astype("float32")
    layer = ILSTargets("ils", p1=0.85, p2=2.0, temperature=2.0, calibration_temperature=1.5)
    ds = tf.data.Dataset.from_tensor_slices((labels, logits)).batch(5)
    got = np.concatenate([t.numpy() for t in ds.map(layer)])
    expected = ref.ils(labels, ref.softmax(logits / 1.5), ref.softmax(logits / 2.0), 0.85, 2.0)
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: targets.uniform([0], 3, 1.0), r"`epsilon` must be in \[0, 1\), got 1.0"),
        (lambda: targets.uniform([0], 3, -0.1), r"`epsilon` must be in \[0, 1\), got -0.1"),
        (lambda: targets.uniform([0], 1, 0.1), r"`num_classes` must be >= 2, got 1"),
        (lambda: targets.uniform([3], 3, 0.1), r"`labels` must be class ids in \[0, 3\), got 3"),
        (lambda: targets.uniform([-1], 3, 0.1), r"got -1"),
        (lambda: targets.ils1([0], [[0.5, 0.5]], 0.9, -1.0), r"`p2` must be >= 0, got -1.0"),
        (lambda: targets.ils1([0], [[0.5, 0.5]], 1.5, 1.0), r"`p1` must be in \[0, 1\], got 1.5"),
        (lambda: targets.ils([0], [[0.5, 0.5]], [[0.5, 0.5]], -0.5, 1.0),
         r"`p1` must be in \[0, 1\], got -0.5"),
        (lambda: ILSTargets(p1=1.5), r"`p1` must be in \[0, 1\], got 1.5"),
        (lambda: targets.ils2([0], [0.5, 0.5], 0.1), r"`teacher_probs` must have shape \(N, K\)"),
        (lambda: targets.ils2([0, 1], [[0.5, 0.5]], 0.1),
         r"`teacher_probs` has 1 rows but `labels` has 2"),
        (lambda: targets.ils2([0], [[np.nan, 0.5]], 0.1), r"NaN/Inf are refused"),
        (lambda: targets.ils2([0], [[1.5, -0.5]], 0.1), r"probabilities in \[0, 1\]"),
        (lambda: targets.wrong_class_distribution_from_logits([0], [[1.0, 0.0]], 0.0),
         r"`temperature` must be > 0, got 0.0"),
        (lambda: ILSTargets("ils3"), r"`method` must be one of"),
        (lambda: ILSTargets(temperature=-2.0), r"`temperature` must be > 0, got -2.0"),
        (lambda: ILSTargets(calibration_temperature=0.0), r"`calibration_temperature` must be > 0"),
    ],
)
def test_bad_input_names_argument_and_value(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_non_numeric_argument_is_a_type_error():
    with pytest.raises(TypeError, match="`epsilon` must be a real number, got 'a'"):
        targets.uniform([0], 3, "a")


def test_ils_targets_at_extreme_teacher_logits_and_temperatures_stay_distributions(rng):
    """Rows sum to 1 with 0 at the true class, never NaN: logits far below any finite mask,
    and the smallest normal float32 T (the limit: the largest wrong-class logit takes the
    mass, ties share it); a T below the float32 range is refused."""
    tiny = float(np.finfo("float32").tiny)
    for _ in range(100):
        k = int(rng.integers(2, 6))
        logits = rng.normal(size=(8, k)).astype("float32") * float(rng.choice([1.0, 1e30]))
        if rng.random() < 0.5:
            logits = np.round(logits)  # ties among the wrong classes
        labels = rng.integers(0, k, size=8)
        onehot = np.eye(k)[labels]
        for t in (tiny, 1.0):
            got = np.asarray(targets.wrong_class_distribution_from_logits(labels, logits, t))
            assert np.all(np.isfinite(got)) and np.all(got[onehot > 0] == 0)
            np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-6)
            if t == tiny:  # the limit, from NumPy
                wrong = np.where(onehot > 0, -np.inf, logits.astype("float64"))
                top = wrong == wrong.max(axis=1, keepdims=True)
                np.testing.assert_allclose(got, top / top.sum(axis=1, keepdims=True), atol=1e-6)
        for method in ("ils1", "ils2", "ils"):
            layer = ILSTargets(method, temperature=tiny, calibration_temperature=tiny)
            got = np.asarray(layer(labels, logits))
            assert np.all(np.isfinite(got)), (method, got)
            np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match=r"`temperature` must be within the float32 range"):
        ILSTargets("ils2", temperature=1e-38)
    with pytest.raises(ValueError, match=r"`calibration_temperature` must be within the float32"):
        targets.ils_from_logits([0], [[1.0, 0.0]], "ils", calibration_temperature=1e39)
