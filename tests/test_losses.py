"""Loss values against NumPy references and invariances (every backend)."""

import json

import keras
import numpy as np
import pytest
from keras import ops

import reference as ref
from keras_smooth import TrainableTargetsModel, losses

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
    np.testing.assert_allclose(_np(make("sum")(labels, logits, sample_weight=weights)),
                               (per * weights).sum(), rtol=1e-5)
    np.testing.assert_allclose(
        _np(make("sum_over_batch_size")(labels, logits, sample_weight=weights)),
        (per * weights).mean(), rtol=1e-5)
    np.testing.assert_allclose(_np(make("none")(labels, logits)), per, rtol=1e-5)
    zero = make("sum_over_batch_size")(labels, logits, sample_weight=np.zeros(N, "float32"))
    assert float(_np(zero)) == 0.0


# --- LLS -----------------------------------------------------------------------


def test_lls_function_matches_eq4_5_for_any_matrix(data, rng):
    labels, logits, _ = data
    q = ref.random_stochastic(K, rng)
    np.testing.assert_allclose(
        _np(losses.lls_loss(labels, logits, q, alpha=0.3)), ref.lls(labels, logits, q, 0.3),
        rtol=1e-5,
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
        _np(losses.lspp_loss(labels, logits, c, alpha=0.1)), ref.lspp(labels, logits, c, 0.1),
        rtol=1e-5,
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
    np.testing.assert_allclose(_np(loss(labels, logits)), ref.lspp(labels, logits, c, 0.1),
                               rtol=1e-5)


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
    expected = (0.3 * ref.cross_entropy(ref.one_hot(labels, K), ref.log_softmax(logits))
                + 0.7 * ref.cross_entropy(rows_tau, ref.log_softmax(logits / 2.0)))
    np.testing.assert_allclose(_np(loss(labels, logits)), expected, rtol=1e-5)


def test_substitute_teacher_from_lls_uses_the_teachers_target(data):
    labels, logits, _ = data
    teacher = losses.LLSLoss(K, alpha=0.2)
    student = losses.SubstituteTeacherLoss.from_loss(teacher)
    expected = ref.cross_entropy(ref.uniform_ls(labels, K, 0.2), ref.log_softmax(logits))
    np.testing.assert_allclose(_np(student(labels, logits)), expected.mean(), rtol=1e-5)


# --- shared behaviour: every public loss, the baselines included -------------------------

_RNG = np.random.default_rng(11)
_C = ref.random_stochastic(K, _RNG, zero_diagonal=True).astype("float32")
_S = ref.random_stochastic(K, _RNG, zero_diagonal=True).astype("float32")
_ROWS = ref.random_stochastic(K, _RNG).astype("float32")
# Every public loss that takes class ids, with non-default settings.
LOSSES = {
    "LabelSmoothingLoss": lambda **kw: losses.LabelSmoothingLoss(epsilon=0.1, **kw),
    "LLSLoss": lambda **kw: losses.LLSLoss(K, alpha=0.1, **kw),
    "LSPlusPlusLoss": lambda **kw: losses.LSPlusPlusLoss(K, alpha=0.1, **kw),
    "SubstituteTeacherLoss": lambda **kw: losses.SubstituteTeacherLoss(
        _C, alpha=0.1, beta=0.7, temperature=2.0, **kw),
    "SoftBootstrappingLoss": lambda **kw: losses.SoftBootstrappingLoss(beta=0.9, **kw),
    "AdaptiveFocalLoss": lambda **kw: losses.AdaptiveFocalLoss(
        gamma_low=4.0, gamma_high=2.0, threshold=0.3, **kw),
    "MarginLSLoss": lambda **kw: losses.MarginLSLoss(margin=1.0, weight=0.2, **kw),
    "TFKDRegularizationLoss": lambda **kw: losses.TFKDRegularizationLoss(
        alpha=0.3, temperature=4.0, correct_probability=0.8, **kw),
    "ZipfLSLoss": lambda **kw: losses.ZipfLSLoss(weight=0.5, power=2.0, **kw),
    "ClassSimilarityLSLoss": lambda **kw: losses.ClassSimilarityLSLoss(_S, epsilon=0.2, **kw),
    "OnlineLabelSmoothingLoss": lambda **kw: losses.OnlineLabelSmoothingLoss(
        K, alpha=0.3, soft_matrix=_ROWS, **kw),
}
ALL = sorted(LOSSES) + ["DistillationLoss"]  # distillation takes labels + teacher logits


def _make(name, **kw):
    if name == "DistillationLoss":
        return losses.DistillationLoss(beta=0.3, temperature=2.0, **kw)
    return LOSSES[name](**kw)


def _y(name, labels, logits):
    """`y_true` of a loss: class ids, or ids packed with teacher logits for distillation."""
    if name == "DistillationLoss":
        return losses.distillation_targets(labels, np.asarray(logits)[::-1] * 0.5)
    return labels


def test_the_shared_tests_cover_every_public_loss():
    public = {n for n in losses.__all__ if isinstance(getattr(losses, n), type)
              and issubclass(getattr(losses, n), keras.losses.Loss)}
    assert public - {"LearnableTargetLoss"} == set(ALL)


def _reference(loss, labels, logits):
    """Per-sample values in float64 from each paper's formula, with log-softmax throughout
    (so they hold at extreme logits too)."""
    c = loss.get_config()
    z = np.asarray(logits, dtype="float64")
    y = ref.one_hot(labels, z.shape[1])
    lq = ref.log_softmax(z)
    q = np.exp(lq)
    name = type(loss).__name__
    if name == "LabelSmoothingLoss":
        return ref.cross_entropy(ref.uniform_ls(labels, K, c["epsilon"]), lq)
    if name == "LLSLoss":
        return ref.lls(labels, z, loss.q_matrix.astype("float64"), c["alpha"])
    if name == "LSPlusPlusLoss":
        return ref.lspp(labels, z, loss.c_matrix.astype("float64"), c["alpha"])
    if name == "SubstituteTeacherLoss":  # PT-LS++: (1 - b) H(y, q) + b H(rows^(1/T), q^T)
        rows = (1 - c["alpha"]) * y + c["alpha"] * _C.astype("float64")[labels]
        rows_t = rows ** (1 / c["temperature"])
        rows_t /= rows_t.sum(1, keepdims=True)
        return ((1 - c["beta"]) * ref.cross_entropy(y, lq)
                + c["beta"] * ref.cross_entropy(rows_t, ref.log_softmax(z / c["temperature"])))
    if name == "SoftBootstrappingLoss":  # Reed et al.: -sum (b y + (1 - b) q) log q
        return ref.cross_entropy(c["beta"] * y + (1 - c["beta"]) * q, lq)
    if name == "AdaptiveFocalLoss":  # Mukhoti et al.: -(1 - p_t)^gamma log p_t
        p_t, lp_t = q[np.arange(len(z)), labels], lq[np.arange(len(z)), labels]
        gamma = np.where(p_t < c["threshold"], c["gamma_low"], c["gamma_high"])
        return -((1 - p_t) ** gamma) * lp_t
    if name == "MarginLSLoss":  # Liu et al.: CE + w sum_k max(0, max_j z_j - z_k - m)
        d = z.max(1, keepdims=True) - z
        return ref.cross_entropy(y, lq) + c["weight"] * np.maximum(d - c["margin"], 0).sum(1)
    if name == "TFKDRegularizationLoss":  # Yuan et al.: (1 - a) CE + a T^2 KL(p_d^T || q^T)
        a, t = c["alpha"], c["temperature"]
        virtual = np.where(y > 0, c["correct_probability"],
                           (1 - c["correct_probability"]) / (K - 1))
        lt = ref.log_softmax(virtual / t)
        kl = (np.exp(lt) * (lt - ref.log_softmax(z / t))).sum(1)
        return (1 - a) * ref.cross_entropy(y, lq) + a * t ** 2 * kl
    if name == "ZipfLSLoss":  # Liang et al.: true class rank 1, the rest by logit; r^-power
        out = []
        for row, lrow, t in zip(z, lq, labels):
            others = [k for k in np.argsort(-row, kind="stable") if k != t]
            rank = {t: 1, **{k: r + 2 for r, k in enumerate(others)}}
            mass = np.array([rank[k] ** -c["power"] for k in range(K)])
            zipf = mass / mass.sum()
            out.append(-lrow[t] + c["weight"] * (zipf * (np.log(zipf) - lrow)).sum())
        return np.array(out)
    if name == "ClassSimilarityLSLoss":  # Liu & JaJa: (1 - eps) y + eps S[y]
        targets = (1 - c["epsilon"]) * y + c["epsilon"] * _S.astype("float64")[labels]
        return ref.cross_entropy(targets, lq)
    if name == "OnlineLabelSmoothingLoss":  # Zhang et al. Eq. 7: a H(y, q) + (1 - a) H(S[y], q)
        return (c["alpha"] * ref.cross_entropy(y, lq)
                + (1 - c["alpha"]) * ref.cross_entropy(_ROWS.astype("float64")[labels], lq))
    raise AssertionError(name)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_matches_its_papers_formula(data, name):
    labels, logits, _ = data
    loss = _make(name, reduction=None)
    np.testing.assert_allclose(_np(loss(labels, logits)), _reference(loss, labels, logits),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ALL)
def test_config_round_trip_and_serialization(data, name):
    labels, logits, _ = data
    loss = _make(name)
    y = _y(name, labels, logits)
    value = _np(loss(y, logits))
    clone = type(loss).from_config(json.loads(json.dumps(loss.get_config())))
    np.testing.assert_allclose(_np(clone(y, logits)), value, rtol=1e-6)
    revived = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(revived) is type(loss)
    assert revived.get_config() == loss.get_config()
    np.testing.assert_allclose(_np(revived(y, logits)), value, rtol=1e-6)


@pytest.mark.parametrize("name", ALL)
def test_every_loss_gives_the_same_value_after_a_keras_file(data, name, tmp_path):
    labels, _, _ = data
    loss = _make(name)
    x = np.random.default_rng(2).normal(size=(N, 3)).astype("float32")
    keras.utils.set_random_seed(0)
    net = keras.Sequential([keras.Input((3,)), keras.layers.Dense(K)])
    learnable = isinstance(loss, losses.LearnableTargetLoss)  # JAX needs the wrapper for these
    model = TrainableTargetsModel(net) if learnable else net
    model.compile(optimizer="adam", loss=loss)
    y = _y(name, labels, net(x))
    before = model.evaluate(x, y, batch_size=N, verbose=0)
    model.optimizer.build(model.trainable_variables)  # saved as after a fit
    if name != "DistillationLoss":  # the compiled loss is the paper's formula on the logits
        expected = _reference(loss, labels, _np(net(x))).mean()
        assert before == pytest.approx(expected, rel=1e-5)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert type(loaded.loss) is type(loss)
    assert json.dumps(loaded.loss.get_config()) == json.dumps(loss.get_config())
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-6)
    assert loaded.evaluate(x, y, batch_size=N, verbose=0) == pytest.approx(before, abs=1e-6)


_EXTREME_LABELS = np.array([0, 1, 2, 3])
_EXTREME = np.array([[1e4, -1e4, 0, 0, 0], [1e4, -1e4, -1e4, 1e4, 0], [0, 0, 1e4, 0, 0],
                     [0, 0, 0, -1e4, 0]], "float32")


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_extreme_logits_give_the_float64_value(name):
    # Before: only "finite". Saturated softmax rows must still give the exact log-softmax
    # value (e.g. -log p_t = 2e4), not a clamped log(1e-7) or NaN.
    loss = _make(name, reduction=None)
    expected = _reference(loss, _EXTREME_LABELS, _EXTREME)
    np.testing.assert_allclose(_np(loss(_EXTREME_LABELS, _EXTREME)), expected, rtol=1e-5,
                               atol=1e-3)
    assert expected.max() > 1e3  # the batch does saturate


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16", "float16"])
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_low_precision_dtypes_give_the_value_at_extreme_logits(name, policy):
    # Before: only "finite". Now the value of the rounded logits to 16-bit precision.
    low_dtype = "bfloat16" if "bfloat16" in policy else "float16"
    low = _make(name, reduction=None, dtype=policy)
    logits = ops.cast(_EXTREME, low_dtype)
    expected = _reference(low, _EXTREME_LABELS, _np(logits))
    np.testing.assert_allclose(_np(low(_EXTREME_LABELS, logits)), expected, rtol=1e-2, atol=1e-2)


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
        (lambda: losses.SubstituteTeacherLoss(np.ones((3, 3)) / 2),
         r"Every row of `matrix` must sum to 1"),
        (lambda: losses.SubstituteTeacherLoss((np.ones((3, 3)) - np.eye(3)) / 2, alpha=1.0),
         r"gives the true\s+class no mass"),
    ],
)
def test_bad_constructor_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_call_arguments(data):
    labels, logits, _ = data
    with pytest.raises(ValueError,
                       match=r"`y_pred` must have 3 columns \(num_classes\), got shape \(12, 5\)"):
        losses.LLSLoss(3)(labels, logits)
    with pytest.raises(ValueError, match=r"`y_true` must be class ids in \[0, 5\), got 7"):
        losses.LSPlusPlusLoss(K)(np.array([7] * N), logits)
    with pytest.raises(ValueError, match=r"`y_true` must be class ids in \[0, 5\), got -1"):
        losses.LabelSmoothingLoss()(np.array([-1] * N), logits)
    with pytest.raises(ValueError, match=r"`y_true` must have 2 \* num_classes = 10 columns"):
        losses.DistillationLoss()(_one_hot(labels), logits)
    with pytest.raises(TypeError, match="`num_classes` must be an integer, got 2.5"):
        losses.LLSLoss(2.5)


@pytest.mark.parametrize("name", sorted(n for n in LOSSES
                                        if "from_logits" in _make(n).get_config()))
def test_every_loss_probabilities_equal_logits(data, name):
    labels, logits, _ = data
    probs = _np(ops.softmax(logits)).astype("float32")
    from_probs = _make(name, from_logits=False)
    np.testing.assert_allclose(_np(from_probs(labels, probs)), _np(_make(name)(labels, logits)),
                               rtol=1e-4)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_label_formats_and_sample_weights(data, name):
    labels, logits, weights = data
    per_sample = _np(_make(name, reduction="none")(labels, logits))
    loss = _make(name)
    forms = {"(N, 1)": labels[:, None], "int32": labels.astype("int32"),
             "float ids": labels.astype("float32"), "one-hot": _one_hot(labels)}
    for form, y in forms.items():  # class ids in any layout == one-hot rows
        np.testing.assert_allclose(_np(loss(y, logits)), per_sample.mean(), rtol=1e-5,
                                   err_msg=form)
    np.testing.assert_allclose(_np(loss(labels, logits, sample_weight=weights)),
                               (per_sample * weights).mean(), rtol=1e-5)
    assert _np(loss(labels, logits, sample_weight=np.zeros(N, "float32"))) == 0.0


def test_label_smoothing_takes_soft_label_rows(data, rng):
    labels, logits, _ = data
    soft = rng.dirichlet(np.ones(K), size=N).astype("float32")  # the one loss documented to
    expected = ref.cross_entropy(0.9 * soft + 0.1 / K, ref.log_softmax(logits))  # take them
    got = losses.LabelSmoothingLoss(epsilon=0.1, reduction=None)(soft, logits)
    np.testing.assert_allclose(_np(got), expected, rtol=1e-5)


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
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"`y_true` must be class ids in \[0, 5\)"):
        fn(tf.constant([9] * N), tf.constant(logits))
