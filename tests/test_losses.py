"""Loss values against NumPy references and invariances (every backend)."""

import keras
import numpy as np
import pytest
from keras import ops

import reference as ref
from keras_smooth import losses

K = 5
N = 12


def _np(x):
    return np.asarray(ops.convert_to_numpy(ops.cast(x, "float32")), dtype="float64")


@pytest.fixture
def data(rng):
    labels = rng.integers(0, K, size=N)
    logits = rng.normal(scale=2.0, size=(N, K)).astype("float32")
    weights = rng.random(N).astype("float32")
    return labels, logits, weights


def _one_hot(labels):
    return ref.one_hot(labels, K).astype("float32")


# --- uniform label smoothing -------------------------------------------------


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_label_smoothing_matches_reference(data, eps):
    labels, logits, _ = data
    expected = ref.cross_entropy(ref.uniform_ls(labels, K, eps), ref.log_softmax(logits))
    loss = losses.LabelSmoothingLoss(epsilon=eps, reduction=None)
    np.testing.assert_allclose(_np(loss(labels, logits)), expected, rtol=1e-5)


def test_label_smoothing_integer_labels_equal_one_hot(data):
    labels, logits, _ = data
    loss = losses.LabelSmoothingLoss(epsilon=0.2)
    a = _np(loss(labels, logits))
    np.testing.assert_allclose(_np(loss(labels[:, None], logits)), a, rtol=1e-6)
    np.testing.assert_allclose(_np(loss(_one_hot(labels), logits)), a, rtol=1e-6)


def test_label_smoothing_equals_keras_categorical_crossentropy(data):
    labels, logits, weights = data
    for from_logits in (True, False):
        pred = logits if from_logits else _np(ops.softmax(logits)).astype("float32")
        ours = losses.LabelSmoothingLoss(epsilon=0.1, from_logits=from_logits)
        theirs = keras.losses.CategoricalCrossentropy(label_smoothing=0.1, from_logits=from_logits)
        np.testing.assert_allclose(
            _np(ours(labels, pred, sample_weight=weights)),
            _np(theirs(_one_hot(labels), pred, sample_weight=weights)),
            rtol=1e-5,
        )


def test_epsilon_zero_is_sparse_cross_entropy(data):
    labels, logits, _ = data
    np.testing.assert_allclose(
        _np(losses.LabelSmoothingLoss(epsilon=0.0)(labels, logits)),
        _np(keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, logits)),
        rtol=1e-5,
    )


def test_reductions_and_sample_weights(data):
    labels, logits, weights = data
    per = ref.cross_entropy(ref.uniform_ls(labels, K, 0.1), ref.log_softmax(logits))
    make = lambda r: losses.LabelSmoothingLoss(epsilon=0.1, reduction=r)  # noqa: E731
    np.testing.assert_allclose(_np(make("sum")(labels, logits, sample_weight=weights)), (per * weights).sum(), rtol=1e-5)
    np.testing.assert_allclose(_np(make("sum_over_batch_size")(labels, logits, sample_weight=weights)), (per * weights).mean(), rtol=1e-5)
    np.testing.assert_allclose(_np(make("none")(labels, logits)), per, rtol=1e-5)
    zero = make("sum_over_batch_size")(labels, logits, sample_weight=np.zeros(N, "float32"))
    assert float(_np(zero)) == 0.0


# --- LLS -----------------------------------------------------------------------


def test_lls_function_matches_eq4_5_for_any_matrix(data, rng):
    labels, logits, _ = data
    q = ref.random_stochastic(K, rng)
    np.testing.assert_allclose(
        _np(losses.lls_loss(labels, logits, q, alpha=0.3)), ref.lls(labels, logits, q, 0.3), rtol=1e-5
    )


def test_lls_at_initialisation_is_symmetric_kl_against_uniform_ls(data):
    labels, logits, _ = data
    loss = losses.LLSLoss(K, alpha=0.2, reduction=None)
    np.testing.assert_allclose(loss.q_matrix, np.full((K, K), 1 / K), atol=1e-7)
    t = ref.uniform_ls(labels, K, 0.2)
    lp = ref.log_softmax(logits)
    expected = 0.5 * ((t * (np.log(t) - lp)).sum(1) + (np.exp(lp) * (lp - np.log(t))).sum(1))
    np.testing.assert_allclose(_np(loss(labels, logits)), expected, rtol=1e-5)


def test_lls_integer_labels_equal_one_hot_and_probabilities_equal_logits(data):
    labels, logits, _ = data
    loss = losses.LLSLoss(K, alpha=0.1)
    a = _np(loss(labels, logits))
    np.testing.assert_allclose(_np(loss(_one_hot(labels), logits)), a, rtol=1e-6)
    probs_loss = losses.LLSLoss(K, alpha=0.1, from_logits=False)
    np.testing.assert_allclose(_np(probs_loss(labels, ops.softmax(logits))), a, rtol=1e-4)


# --- LS++ ----------------------------------------------------------------------


def test_lspp_function_matches_reference(data, rng):
    labels, logits, _ = data
    c = ref.random_stochastic(K, rng, zero_diagonal=True)
    np.testing.assert_allclose(
        _np(losses.lspp_loss(labels, logits, c, alpha=0.1)), ref.lspp(labels, logits, c, 0.1), rtol=1e-5
    )


def test_lspp_at_initialisation_spreads_alpha_over_wrong_classes(data):
    labels, logits, _ = data
    loss = losses.LSPlusPlusLoss(K, alpha=0.1, reduction=None)
    c = loss.c_matrix
    np.testing.assert_array_equal(np.diag(c), 0.0)
    np.testing.assert_allclose(c + np.eye(K) / (K - 1), np.full((K, K), 1 / (K - 1)), atol=1e-7)
    t = _np(loss.targets(labels))
    expected_t = ref.one_hot(labels, K) * 0.9 + (1 - ref.one_hot(labels, K)) * 0.1 / (K - 1)
    np.testing.assert_allclose(t, expected_t, atol=1e-7)
    np.testing.assert_allclose(_np(loss(labels, logits)), ref.lspp(labels, logits, c, 0.1), rtol=1e-5)


# --- distillation ----------------------------------------------------------------


@pytest.mark.parametrize("beta,tau", [(0.0, 1.0), (0.5, 2.0), (1.0, 4.0)])
def test_distillation_matches_eq2(data, rng, beta, tau):
    labels, logits, _ = data
    teacher = rng.normal(scale=3.0, size=(N, K)).astype("float32")
    y = losses.distillation_targets(labels, teacher)
    loss = losses.DistillationLoss(beta=beta, temperature=tau, reduction=None)
    np.testing.assert_allclose(
        _np(loss(y, logits)), ref.distillation(labels, logits, teacher, beta, tau), rtol=1e-5
    )


def test_distillation_beta_zero_is_cross_entropy(data, rng):
    labels, logits, _ = data
    y = losses.distillation_targets(labels, rng.normal(size=(N, K)).astype("float32"))
    np.testing.assert_allclose(
        _np(losses.DistillationLoss(beta=0.0)(y, logits)),
        _np(keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, logits)),
        rtol=1e-5,
    )


def test_substitute_teacher_matches_reference(data, rng):
    labels, logits, _ = data
    c = ref.random_stochastic(K, rng, zero_diagonal=True)
    loss = losses.SubstituteTeacherLoss(c, alpha=0.1, beta=0.7, temperature=2.0, reduction=None)
    rows = 0.9 * ref.one_hot(labels, K) + 0.1 * c[labels]
    rows_tau = rows ** 0.5 / (rows ** 0.5).sum(1, keepdims=True)
    expected = 0.3 * ref.cross_entropy(ref.one_hot(labels, K), ref.log_softmax(logits)) + 0.7 * ref.cross_entropy(
        rows_tau, ref.log_softmax(logits / 2.0)
    )
    np.testing.assert_allclose(_np(loss(labels, logits)), expected, rtol=1e-5)


def test_substitute_teacher_from_lls_uses_the_teachers_target(data):
    labels, logits, _ = data
    teacher = losses.LLSLoss(K, alpha=0.2)
    student = losses.SubstituteTeacherLoss.from_loss(teacher)
    expected = ref.cross_entropy(ref.uniform_ls(labels, K, 0.2), ref.log_softmax(logits))
    np.testing.assert_allclose(_np(student(labels, logits)), expected.mean(), rtol=1e-5)


# --- shared behaviour ---------------------------------------------------------


def _all_losses(rng):
    c = ref.random_stochastic(K, rng, zero_diagonal=True)
    return [
        losses.LabelSmoothingLoss(epsilon=0.1),
        losses.LLSLoss(K, alpha=0.1),
        losses.LSPlusPlusLoss(K, alpha=0.1),
        losses.SubstituteTeacherLoss(c, alpha=0.1),
    ]


def test_config_round_trip_and_serialization(data, rng):
    labels, logits, _ = data
    for loss in _all_losses(rng) + [losses.DistillationLoss(beta=0.3, temperature=2.0)]:
        y = losses.distillation_targets(labels, logits) if isinstance(loss, losses.DistillationLoss) else labels
        value = _np(loss(y, logits))
        clone = type(loss).from_config(loss.get_config())
        np.testing.assert_allclose(_np(clone(y, logits)), value, rtol=1e-6)
        revived = keras.losses.deserialize(keras.losses.serialize(loss))
        assert type(revived) is type(loss)
        np.testing.assert_allclose(_np(revived(y, logits)), value, rtol=1e-6)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16", "float16"])
def test_low_precision_dtypes_stay_finite_at_extreme_logits(rng, policy):
    labels = np.array([0, 1, 2, 3])
    logits = np.array([[1e4, -1e4, 0, 0, 0], [-1e4, 1e4, 0, 0, 0], [0, 0, 1e4, 0, 0], [0, 0, 0, -1e4, 0]], "float32")
    for loss in _all_losses(rng):
        config = loss.get_config()
        config["dtype"] = policy
        low = type(loss).from_config(config)
        value = _np(low(labels, ops.cast(logits, "float16" if "16" in policy and "b" not in policy else "bfloat16")))
        assert np.isfinite(value), (type(loss).__name__, policy, value)


def test_extreme_logits_give_finite_values(rng):
    labels = np.array([0, 1])
    logits = np.array([[1e4, -1e4, 0, 0, 0], [1e4, -1e4, -1e4, 1e4, 0]], "float32")
    for loss in _all_losses(rng):
        assert np.all(np.isfinite(_np(loss(labels, logits)))), type(loss).__name__


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: losses.LLSLoss(K, alpha=1.0), r"`alpha` must be in \[0, 1\), got 1.0"),
        (lambda: losses.LSPlusPlusLoss(K, alpha=-0.5), r"`alpha` must be in \[0, 1\), got -0.5"),
        (lambda: losses.LLSLoss(1), r"`num_classes` must be >= 2, got 1"),
        (lambda: losses.LabelSmoothingLoss(epsilon=1.5), r"`epsilon` must be in \[0, 1\), got 1.5"),
        (lambda: losses.LabelSmoothingLoss(num_classes=0), r"`num_classes` must be >= 2, got 0"),
        (lambda: losses.DistillationLoss(temperature=0.0), r"`temperature` must be > 0, got 0.0"),
        (lambda: losses.DistillationLoss(beta=2.0), r"`beta` must be in \[0, 1\], got 2.0"),
        (lambda: losses.SubstituteTeacherLoss(np.ones((3, 3)) / 2), r"Every row of `matrix` must sum to 1"),
        (lambda: losses.SubstituteTeacherLoss((np.ones((3, 3)) - np.eye(3)) / 2, alpha=1.0), r"gives the true\s+class no mass"),
    ],
)
def test_bad_constructor_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_call_arguments(data):
    labels, logits, _ = data
    with pytest.raises(ValueError, match=r"`y_pred` must have 3 columns \(num_classes\), got shape \(12, 5\)"):
        losses.LLSLoss(3)(labels, logits)
    with pytest.raises(ValueError, match=r"`y_true` must be class ids in \[0, 5\), got 7"):
        losses.LSPlusPlusLoss(K)(np.array([7] * N), logits)
    with pytest.raises(ValueError, match=r"`y_true` must be class ids in \[0, 5\), got -1"):
        losses.LabelSmoothingLoss()(np.array([-1] * N), logits)
    with pytest.raises(ValueError, match=r"`y_true` must have 2 \* num_classes = 10 columns"):
        losses.DistillationLoss()(_one_hot(labels), logits)
    with pytest.raises(TypeError, match="`num_classes` must be an integer, got 2.5"):
        losses.LLSLoss(2.5)


def test_every_loss_probabilities_equal_logits(data, rng):
    labels, logits, _ = data
    probs = _np(ops.softmax(logits)).astype("float32")
    for loss in _all_losses(rng):  # all take labels, not packed teacher logits
        config = loss.get_config()
        config["from_logits"] = False
        from_probs = type(loss).from_config(config)
        np.testing.assert_allclose(
            _np(from_probs(labels, probs)), _np(loss(labels, logits)), rtol=1e-4,
            err_msg=type(loss).__name__,
        )


def test_every_loss_label_formats_and_sample_weights(data, rng):
    labels, logits, weights = data
    for loss in _all_losses(rng):  # all take labels, not packed teacher logits
        config = loss.get_config()
        config["reduction"] = "none"
        per_sample = _np(type(loss).from_config(config)(labels, logits))
        name = type(loss).__name__
        for form in (labels[:, None], _one_hot(labels)):
            np.testing.assert_allclose(_np(loss(form, logits)), per_sample.mean(), rtol=1e-5, err_msg=name)
        np.testing.assert_allclose(
            _np(loss(labels, logits, sample_weight=weights)), (per_sample * weights).mean(), rtol=1e-5, err_msg=name
        )
        zero = _np(loss(labels, logits, sample_weight=np.zeros(N, "float32")))
        assert zero == 0.0, name


def test_lspp_alpha_zero_network_term_is_half_cross_entropy(data):
    labels, logits, _ = data
    loss = losses.LSPlusPlusLoss(K, alpha=0.0, reduction=None)
    value = _np(loss(labels, logits))
    ce = ref.cross_entropy(ref.one_hot(labels, K), ref.log_softmax(logits))
    # The reverse term is a clipped cross-entropy against a one-hot target.
    reverse = -(ref.softmax(logits) * np.log(np.maximum(ref.one_hot(labels, K), ref.EPS))).sum(1)
    np.testing.assert_allclose(value, 0.5 * (ce + reverse), rtol=1e-5)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TF graph mode")
def test_out_of_range_label_fails_in_graph_mode(data):
    import tensorflow as tf

    _, logits, _ = data
    loss = losses.LLSLoss(K)
    loss.matrix_layer.trainable = False
    fn = tf.function(lambda y, p: loss(y, p))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"`y_true` must be class ids in \[0, 5\)"):
        fn(tf.constant([9] * N), tf.constant(logits))
