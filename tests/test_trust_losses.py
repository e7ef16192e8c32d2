"""No silent wrong answers from the losses, targets and target layers (issue 11).

Bad labels, empty batches, extreme and NaN logits, low-precision dtypes, bad
hyperparameters: each gives a clear error or the right number. Expected values
come from NumPy written from the papers' equations (`reference.py` and below).
Backend-agnostic: also run under JAX.
"""

import json

import keras
import numpy as np
import pytest
from keras import ops

import reference as ref
from keras_smooth import losses
from keras_smooth import targets
from keras_smooth.layers import ILSTargets, QMatrix

K = 4
N = 6
BACKEND = keras.backend.backend()
_RNG = np.random.default_rng(7)
MATRIX = ref.random_stochastic(K, _RNG, zero_diagonal=True).astype("float32")
SIMILARITY = ref.random_stochastic(K, _RNG, zero_diagonal=True).astype("float32")
LABELS = np.array([0, 1, 2, 3, 1, 0])
LOGITS = _RNG.normal(scale=2.0, size=(N, K)).astype("float32")
# One teacher of 2N rows: batches of N and 2N rows share shapes (fewer JAX compiles).
TEACHER12 = _RNG.normal(scale=2.0, size=(2 * N, K)).astype("float32")
TEACHER = TEACHER12[:N]


def _dtype(x):
    return keras.backend.standardize_dtype(x.dtype)


def _np(x):
    return np.asarray(ops.convert_to_numpy(ops.cast(x, "float32")), dtype="float64")


def _frozen(loss):
    loss.matrix_layer.trainable = False  # a bare gradient call must not need the model wrapper
    return loss


LOSSES = {
    "LabelSmoothingLoss": lambda **kw: losses.LabelSmoothingLoss(epsilon=0.1, **kw),
    "LLSLoss": lambda **kw: _frozen(losses.LLSLoss(K, alpha=0.1, **kw)),
    "LSPlusPlusLoss": lambda **kw: _frozen(losses.LSPlusPlusLoss(K, alpha=0.1, **kw)),
    "DistillationLoss": lambda **kw: losses.DistillationLoss(beta=0.5, temperature=2.0, **kw),
    "SubstituteTeacherLoss": lambda **kw: losses.SubstituteTeacherLoss(
        MATRIX, alpha=0.1, beta=0.7, temperature=2.0, **kw),
    "ClassSimilarityLSLoss": lambda **kw: losses.ClassSimilarityLSLoss(SIMILARITY, 0.2, **kw),
    "SoftBootstrappingLoss": lambda **kw: losses.SoftBootstrappingLoss(beta=0.95, **kw),
    "AdaptiveFocalLoss": lambda **kw: losses.AdaptiveFocalLoss(**kw),
    "MarginLSLoss": lambda **kw: losses.MarginLSLoss(margin=5.0, weight=0.2, **kw),
    "TFKDRegularizationLoss": lambda **kw: losses.TFKDRegularizationLoss(alpha=0.5, **kw),
    "ZipfLSLoss": lambda **kw: losses.ZipfLSLoss(weight=0.5, **kw),
    "OnlineLabelSmoothingLoss": lambda **kw: losses.OnlineLabelSmoothingLoss(K, alpha=0.5, **kw),
}
SOFT_LABELS = {"LabelSmoothingLoss", "DistillationLoss"}  # documented to take label distributions
LOGITS_ONLY = {"MarginLSLoss", "TFKDRegularizationLoss", "ZipfLSLoss"}  # no `from_logits` argument


def _y(name, labels, teacher=None):
    """`y_true` for a loss: the labels, or labels + teacher logits for distillation."""
    if name != "DistillationLoss":
        return labels
    teacher = TEACHER12[: len(np.asarray(labels))] if teacher is None else teacher
    return losses.distillation_targets(labels, teacher)


def test_the_table_covers_every_public_loss():
    public = {
        name for name in losses.__all__
        if isinstance(getattr(losses, name), type)
        and issubclass(getattr(losses, name), keras.losses.Loss)
        and name != "LearnableTargetLoss"
    }
    assert public == set(LOSSES)


# --- A. labels ----------------------------------------------------------------------------

BAD_IDS = {
    "fractional": (np.array([0, 1.5, 2, 3, 1, 0], "float32"), r"class ids in \[0, 4\), got 1\.5"),
    "negative": (np.array([0, 1, -1, 3, 1, 0]), r"class ids in \[0, 4\), got -1"),
    "too large": (np.array([0, 1, 2, 4, 1, 0]), r"class ids in \[0, 4\), got 4"),
    "nan": (np.array([0, np.nan, 2, 3, 1, 0], "float32"), r"class ids in \[0, 4\), got nan"),
}
_ONEHOT = ref.one_hot(LABELS, K).astype("float32")


def _with_row(i, row):
    return np.where(np.arange(N)[:, None] == i, [row], _ONEHOT).astype("float32")


BAD_ROWS = {
    "two ones": (_with_row(1, [1, 1, 0, 0]), r"row 1 is \[1\.0, 1\.0"),
    "not summing to 1": (_with_row(2, [0.5, 0.2, 0, 0]), r"row 2 is"),
    "negative entry": (_with_row(3, [1.5, -0.5, 0, 0]), r"row 3 is"),
}


@pytest.mark.parametrize("case", sorted(BAD_IDS))
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_bad_class_ids_raise_naming_the_argument_and_value(name, case):
    labels, match = BAD_IDS[case]
    argument = "labels" if name == "DistillationLoss" else "y_true"  # ids meet distillation_targets
    with pytest.raises(ValueError, match=rf"`{argument}` must be {match}"):
        LOSSES[name]()(_y(name, labels), LOGITS)


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_bad_label_rows_raise_naming_y_true_and_the_row(name, case):
    rows, match = BAD_ROWS[case]
    what = "label distributions" if name in SOFT_LABELS else "one-hot rows"
    y = np.concatenate([rows, TEACHER], axis=1) if name == "DistillationLoss" else rows
    with pytest.raises(ValueError, match=rf"`y_true` must be {what}.*{match}"):
        LOSSES[name]()(y, LOGITS)


@pytest.mark.parametrize("name", sorted(set(LOSSES) - SOFT_LABELS))
def test_hard_label_losses_refuse_soft_rows(name):
    soft = np.full((N, K), 1.0 / K, "float32")
    with pytest.raises(ValueError, match=r"`y_true` must be one-hot rows .*row 0 is \[0\.25"):
        LOSSES[name]()(soft, LOGITS)


def test_label_smoothing_and_distillation_take_soft_labels_as_documented():
    soft = ref.softmax(_RNG.normal(size=(N, K))).astype("float32")
    log_q = ref.log_softmax(LOGITS)
    expected = ref.cross_entropy(0.9 * soft + 0.1 / K, log_q)
    got = _np(losses.LabelSmoothingLoss(epsilon=0.1, reduction=None)(soft, LOGITS))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    keras_ce = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)
    np.testing.assert_allclose(_np(losses.LabelSmoothingLoss(0.1)(soft, LOGITS)),
                               _np(keras_ce(soft, LOGITS)), rtol=1e-5)
    y = losses.distillation_targets(soft, TEACHER)
    got = _np(losses.DistillationLoss(beta=0.3, temperature=2.0, reduction=None)(y, LOGITS))
    soft_term = ref.cross_entropy(ref.softmax(TEACHER / 2.0), ref.log_softmax(LOGITS / 2.0))
    expected = 0.7 * ref.cross_entropy(soft, log_q) + 0.3 * soft_term
    np.testing.assert_allclose(got, expected, rtol=1e-5)


TARGET_CALLS = {
    "uniform": lambda y: targets.uniform(y, K, 0.1),
    "ils1": lambda y: targets.ils1(y, ref.softmax(TEACHER), 0.9, 1.0),
    "ils2": lambda y: targets.ils2(y, ref.softmax(TEACHER), 0.1),
    "ils": lambda y: targets.ils(y, ref.softmax(TEACHER), ref.softmax(TEACHER), 0.9, 1.0),
    "wrong_class_distribution": lambda y: targets.wrong_class_distribution(y, ref.softmax(TEACHER)),
    "from_logits": lambda y: targets.wrong_class_distribution_from_logits(y, TEACHER),
    "matrix_rows": lambda y: targets.matrix_rows(y, MATRIX),
    "ILSTargets": lambda y: ILSTargets("ils")(y, TEACHER),
    "LLSLoss.targets": lambda y: losses.LLSLoss(K).targets(y),
    "distillation_targets": lambda y: losses.distillation_targets(y, TEACHER),
    "class_similarity_matrix": lambda y: losses.class_similarity_matrix(np.eye(N), y, K),
    "online_soft_matrix": lambda y: losses.online_soft_matrix(y, ref.softmax(TEACHER), np.eye(K)),
    "beta_smoothing_targets": lambda y: losses.beta_smoothing_targets(y, np.ones(N), K, 0.1),
}
NUMPY_IDS_ONLY = {"class_similarity_matrix", "online_soft_matrix", "beta_smoothing_targets"}


@pytest.mark.parametrize("name", sorted(TARGET_CALLS))
def test_target_functions_refuse_bad_labels_naming_labels(name):
    call = TARGET_CALLS[name]
    for case in ("fractional", "negative", "too large", "nan"):
        labels, match = BAD_IDS[case]
        with pytest.raises(ValueError, match=rf"`labels` must be {match}"):
            call(labels)
    if name not in NUMPY_IDS_ONLY:
        rows, _ = BAD_ROWS["two ones"]
        what = "label distributions" if name in ("uniform", "distillation_targets") else "one-hot"
        with pytest.raises(ValueError, match=rf"`labels` must be {what}.*row 1 is"):
            call(rows)


def test_zipf_targets_refuse_fractional_ids():
    with pytest.raises(ValueError, match=r"`y_true` must be class ids in \[0, 4\), got 1\.5"):
        losses.zipf_targets(BAD_IDS["fractional"][0], LOGITS)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow graphs")
def test_bad_labels_fail_inside_tf_function_and_become_nan_under_xla():
    import tensorflow as tf

    loss = losses.LabelSmoothingLoss()
    labels = tf.constant(BAD_IDS["fractional"][0])
    graph = tf.function(lambda y, z: loss(y, z))
    bad_ids = r"`y_true` must be class ids in \[0, 4\)"
    with pytest.raises(tf.errors.InvalidArgumentError, match=bad_ids):
        graph(labels, tf.constant(LOGITS))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"`y_true` must be one-hot rows"):
        tf.function(lambda y, z: losses.MarginLSLoss()(y, z))(tf.constant(BAD_ROWS["two ones"][0]),
                                                             tf.constant(LOGITS))
    # XLA drops asserts: the bad row turns the loss into NaN instead of a silent number.
    per_sample = losses.LabelSmoothingLoss(reduction=None)
    xla = tf.function(lambda y, z: per_sample(y, z), jit_compile=True)
    values = xla(labels, tf.constant(LOGITS)).numpy()
    assert np.isnan(values[1]) and np.all(np.isfinite(np.delete(values, 1)))


@pytest.mark.skipif(BACKEND != "jax", reason="jax.jit")
def test_bad_labels_fail_inside_jax_jit():
    import jax

    jitted = jax.jit(lambda y, z: losses.LabelSmoothingLoss()(y, z))
    with pytest.raises(Exception, match=r"`y_true` must be class ids in \[0, 4\), got 1\.5"):
        jax.block_until_ready(jitted(BAD_IDS["fractional"][0], LOGITS))
    expected = ref.cross_entropy(ref.uniform_ls(LABELS, K, 0.1), ref.log_softmax(LOGITS)).mean()
    got = float(jitted(LABELS.astype("float32"), LOGITS))  # good labels are unaffected
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_fit_stops_on_the_first_batch_with_a_fractional_label():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(K)])
    model.compile(optimizer="sgd", loss=losses.LabelSmoothingLoss())
    x = np.zeros((8, 3), "float32")
    y = np.array([0, 1, 2, 3, 0, 1, 2.5, 0], "float32")
    with pytest.raises(Exception, match=r"`y_true` must be class ids in \[0, 4\)"):
        model.fit(x, y, batch_size=8, epochs=1, verbose=0)


# --- B. empty batches ---------------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", None])
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_an_empty_batch_gives_what_keras_gives(name, reduction):
    empty_logits = np.zeros((0, K), "float32")
    theirs = keras.losses.CategoricalCrossentropy(from_logits=True, reduction=reduction)
    expected = _np(theirs(np.zeros((0, K), "float32"), empty_logits))
    got = _np(LOSSES[name](reduction=reduction)(_y(name, np.zeros((0,), "int32"),
                                                   np.zeros((0, K), "float32")), empty_logits))
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


# --- C. distillation widths ---------------------------------------------------------------


def test_a_teacher_of_the_wrong_width_is_named_with_both_widths():
    wide = np.zeros((N, K + 1), "float32")
    with pytest.raises(ValueError, match=r"`teacher_logits` has 5 columns but `num_classes` is 4"):
        losses.distillation_targets(LABELS, wide, num_classes=K)
    with pytest.raises(ValueError, match=r"has 5 columns but the one-hot `labels` have 4"):
        losses.distillation_targets(_ONEHOT, wide)
    with pytest.raises(ValueError, match=r"teacher logits packed in it .* score 5 classes, but the "
                                         r"student's `y_pred` scores 4"):
        losses.DistillationLoss()(losses.distillation_targets(LABELS, wide), LOGITS)
    with pytest.raises(ValueError, match=r"`teacher_logits` has 5 rows but `labels` has 6"):
        losses.distillation_targets(LABELS, TEACHER[:5])
    with pytest.raises(ValueError, match=r"`teacher_logits` must be finite; row 2"):
        losses.distillation_targets(LABELS, np.where(np.arange(N)[:, None] == 2, np.nan, TEACHER))


# --- D. ILS2 on saturated teachers and tiny wrong-class masses ------------------------------


def _ils2_reference(labels, logits, eps, temperature=1.0):
    """ILS Eq. 4 in float64: y_j = eps * p_j / (1 - p_t), with 1 - p_t = sum_{k != t} p_k."""
    z = np.asarray(logits, "float64") / temperature
    out = np.zeros_like(z)
    for i, t in enumerate(labels):
        wrong = np.delete(np.arange(z.shape[1]), t)
        w = np.exp(z[i, wrong] - z[i, wrong].max())
        out[i, wrong] = eps * w / w.sum()
        out[i, t] = 1.0 - eps
    return out


# Wrong-class masses about 1.8e-35 and 8e-40 (a float32 subnormal), 8.7e-27, 3.7e-42;
# p_t = 1 in float32 in every row but the fourth.
ILS_LOGITS = np.array([[100.0, 20.0, 21.0, 10.0], [0.0, -80.0, -81.0, -92.0], [60.0, 0.0, 0.0, 1.0],
                       [1.0, 0.0, -1.0, 2.0], [0.0, -95.0, -93.0, -94.0]], "float32")
ILS_LABELS = np.array([0, 0, 0, 2, 0])


def test_ils2_probability_and_logit_paths_agree_with_eq4_for_tiny_masses():
    expected = _ils2_reference(ILS_LABELS, ILS_LOGITS, 0.1)
    probs64 = ref.softmax(ILS_LOGITS.astype("float64"))
    assert np.all(probs64.astype("float32")[[0, 1, 2, 4], 0] == 1.0)  # saturated in float32
    from_logits = _np(ILSTargets("ils2", epsilon=0.1)(ILS_LABELS, ILS_LOGITS))
    from_probs64 = _np(targets.ils2(ILS_LABELS, probs64, 0.1))
    from_probs32 = _np(targets.ils2(ILS_LABELS, probs64.astype("float32"), 0.1))
    np.testing.assert_allclose(from_logits, expected, rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(from_probs64, expected, rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(from_probs32, expected, rtol=1e-3, atol=1e-12)  # subnormal inputs
    np.testing.assert_allclose(from_probs64, from_logits, rtol=1e-5, atol=1e-12)


def test_ils_probability_and_logit_paths_agree_at_a_temperature():
    t, t_star = 2.0, 1.5
    calibrated = ref.softmax(ILS_LOGITS.astype("float64") / t_star)
    eps = np.minimum(0.2, 1.0 * (calibrated[np.arange(5), ILS_LABELS] - 0.9) ** 2)
    shape = _ils2_reference(ILS_LABELS, ILS_LOGITS, 1.0, t)
    expected = shape * eps[:, None] + ref.one_hot(ILS_LABELS, K) * (1 - eps)[:, None]
    layer = ILSTargets("ils", p1=0.9, p2=1.0, temperature=t, calibration_temperature=t_star)
    at_t = ref.softmax(ILS_LOGITS.astype("float64") / t)
    from_probs = targets.ils(ILS_LABELS, calibrated, at_t, 0.9, 1.0)
    np.testing.assert_allclose(_np(layer(ILS_LABELS, ILS_LOGITS)), expected, rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(_np(from_probs), expected, rtol=1e-5, atol=1e-12)


def test_ils2_rows_with_no_wrong_mass_at_all_use_the_documented_uniform_limit():
    probs = np.array([[1.0, 0.0, 0.0, 0.0]], "float32")
    got = _np(targets.ils2([0], probs, 0.3))
    np.testing.assert_allclose(got, [[0.7, 0.1, 0.1, 0.1]], atol=1e-7)


# --- E. gradients at saturated, huge and zero logits ---------------------------------------

GRAD_CASES = {  # three rows each: correct and saturated, wrong and saturated, correct
    "margin 20": [[20.0, 0, 0, 0], [0, 20.0, 0, 0], [0, 0, 0, 20.0]],
    "margin 50": [[50.0, 0, 0, 0], [0, 50.0, 0, 0], [0, 0, 50.0, 0]],
    "+-1e4": [[1e4, -1e4, 0, 0], [-1e4, 1e4, 0, 0], [0, 0, -1e4, 1e4]],
    "zeros": [[0.0] * K] * 3,
}
GRAD_LOGITS = np.concatenate([np.array(v, "float32") for v in GRAD_CASES.values()])  # (12, K)
GRAD_LABELS = np.tile([0, 0, 3], 4)


def _value_and_grad(loss, y, z):
    if BACKEND == "tensorflow":
        import tensorflow as tf

        variable = tf.Variable(z)
        with tf.GradientTape() as tape:
            value = loss(y, variable)
        return float(value), tape.gradient(value, variable).numpy().astype("float64")
    import jax

    value, grad = jax.value_and_grad(lambda x: loss(y, x))(z)
    return float(value), np.asarray(grad, dtype="float64")


def _q(z, tau=1.0):
    return ref.softmax(np.asarray(z, "float64") / tau)


def _closed_form_gradient(name, z, labels):
    """d mean-loss / d logits from the papers' formulas, float64."""
    y, q, n = ref.one_hot(labels, K), _q(z), len(labels)
    if name == "LabelSmoothingLoss":
        return (q - ref.uniform_ls(labels, K, 0.1)) / n
    if name == "DistillationLoss":  # (1 - b)(q - y) + b / tau (q^tau - p^tau)
        return (0.5 * (q - y) + 0.25 * (_q(z, 2.0) - _q(TEACHER12[:n], 2.0))) / n
    if name == "SubstituteTeacherLoss":
        rows = 0.9 * y + 0.1 * MATRIX[labels]
        rows_tau = np.sqrt(rows) / np.sqrt(rows).sum(1, keepdims=True)
        return (0.3 * (q - y) + 0.35 * (_q(z, 2.0) - rows_tau)) / n
    if name == "ClassSimilarityLSLoss":
        return (q - (0.8 * y + 0.2 * SIMILARITY[labels])) / n
    if name == "OnlineLabelSmoothingLoss":  # S^0 = I: cross-entropy
        return (q - y) / n
    if name == "TFKDRegularizationLoss":  # (1 - a)(q - y) + a tau (q_tau - p^d_tau), tau = 20
        virtual = np.where(y > 0, 0.9, 0.1 / (K - 1))
        return (0.5 * (q - y) + 0.5 * 20.0 * (_q(z, 20.0) - _q(virtual, 20.0))) / n
    if name == "ZipfLSLoss":  # targets carry no gradient: (q - y) + w (q - zipf)
        with np.errstate(divide="ignore"):  # the reference's loss value, unused here, is inf
            _, zipf = ref.zipf(labels, z, 0.5, 1.0)
        return ((q - y) + 0.5 * (q - zipf)) / n
    if name == "MarginLSLoss":  # hinge on d_k = max z - z_k beyond m = 5, weight 0.2
        beyond = (z.max(1, keepdims=True) - z) > 5.0
        hinge = -beyond.astype("float64")
        hinge[np.arange(n), z.argmax(1)] += beyond.sum(1)
        return ((q - y) + 0.2 * hinge) / n
    if name == "SoftBootstrappingLoss":  # 0.95 H(y, q) + 0.05 H(q); dH/dz_k = -q_k (log q_k + H)
        log_q = ref.log_softmax(z)
        entropy = -(q * log_q).sum(1, keepdims=True)
        return (0.95 * (q - y) - 0.05 * q * (log_q + entropy)) / n
    if name == "LSPlusPlusLoss":  # only H(sg(t), p) reaches the logits, halved
        c = np.where(np.eye(K) > 0, 0.0, 1.0 / (K - 1))
        return 0.5 * (q - (0.9 * y + 0.1 * c[labels])) / n
    if name == "LLSLoss":
        # 0.5 (KL(t||p) + KL(p||t)); d KL(p||t)/dz = q (r - sum q r), r = log q - log t
        t = ref.uniform_ls(labels, K, 0.1)
        r = ref.log_softmax(z) - np.log(t)
        return 0.5 * ((q - t) + q * (r - (q * r).sum(1, keepdims=True))) / n
    return None  # AdaptiveFocalLoss: see the gamma = 0 test below


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_has_finite_gradients_equal_to_the_closed_form(name):
    value, grad = _value_and_grad(LOSSES[name](), _y(name, GRAD_LABELS), GRAD_LOGITS)
    assert np.isfinite(value) and np.all(np.isfinite(grad)), (value, grad)
    expected = _closed_form_gradient(name, GRAD_LOGITS, GRAD_LABELS)
    if expected is not None:
        np.testing.assert_allclose(grad, expected, atol=2e-7)


@pytest.mark.parametrize("gammas", [(0.0, 0.0), (0.5, 0.5), (5.0, 3.0)])
def test_focal_loss_gradient_is_finite_and_gamma_zero_is_cross_entropy(gammas):
    z = GRAD_LOGITS
    value, grad = _value_and_grad(losses.AdaptiveFocalLoss(*gammas), GRAD_LABELS, z)
    assert np.isfinite(value) and np.all(np.isfinite(grad)), (value, grad)
    if gammas == (0.0, 0.0):
        y = ref.one_hot(GRAD_LABELS, K)
        ce = ref.cross_entropy(y, ref.log_softmax(z)).mean()
        np.testing.assert_allclose(value, ce, rtol=1e-5)
        np.testing.assert_allclose(grad, (_q(z) - y) / len(z), atol=2e-7)


def test_focal_loss_issue_repro_and_one_sgd_step_stay_finite():
    _, grad = _value_and_grad(losses.AdaptiveFocalLoss(0.0, 0.0), np.array([0]),
                              np.array([[20.0, 0.0, 0.0]], "float32"))
    assert np.all(np.isfinite(grad))
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)])
    kernel = np.array([[30.0, 0, 0], [0, 0, 0]], "float32")  # logit margin 30: p_t = 1 in float32
    model.layers[0].set_weights([kernel, np.zeros(3, "float32")])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=losses.AdaptiveFocalLoss(0.5, 0.5))
    model.fit(np.array([[1.0, 0.0]], "float32"), np.array([0]), epochs=1, verbose=0)
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())


# --- F. low-precision dtypes ---------------------------------------------------------------

DTYPE_LOGITS = np.concatenate([LOGITS, GRAD_LOGITS[3:9]])  # moderate, margin 50, +-1e4
DTYPE_LABELS = np.concatenate([LABELS, GRAD_LABELS[3:9]])


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_under_a_16_bit_policy_matches_float32(name, policy):
    y = _y(name, DTYPE_LABELS)
    expected = float(LOSSES[name]()(y, DTYPE_LOGITS))
    low = LOSSES[name](dtype=policy)
    value = low(y, ops.cast(DTYPE_LOGITS, policy.split("_")[1]))
    assert _dtype(value) == policy.split("_")[1]
    rtol = 1e-3 if policy == "mixed_float16" else 8e-3
    np.testing.assert_allclose(float(value), expected, rtol=rtol)
    keras.config.set_dtype_policy(policy)
    try:  # the global policy leaves the loss in float32; the model's logits arrive 16-bit
        value = LOSSES[name]()(y, ops.cast(DTYPE_LOGITS, policy.split("_")[1]))
    finally:
        keras.config.set_dtype_policy("float32")
    np.testing.assert_allclose(float(value), expected, rtol=rtol)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_target_layers_declare_the_float32_they_return(policy):
    keras.config.set_dtype_policy(policy)
    try:
        layers = [(QMatrix(K, dtype=policy), (keras.KerasTensor((None, K)),), (_ONEHOT,)),
                  (ILSTargets("ils2"), (keras.KerasTensor((None,), dtype="int32"),
                                        keras.KerasTensor((None, K))), (LABELS, LOGITS))]
        for layer, specs, values in layers:
            assert layer.compute_output_spec(*specs).dtype == "float32"
            assert _dtype(layer(*values)) == "float32"
        label_in, logit_in = keras.Input((), dtype="int32"), keras.Input((K,))
        model = keras.Model([label_in, logit_in], ILSTargets("ils2")(label_in, logit_in))
        assert model.outputs[0].dtype == "float32"
        got = model.predict([LABELS.astype("int32"), LOGITS], verbose=0)
    finally:
        keras.config.set_dtype_policy("float32")
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, _ils2_reference(LABELS, LOGITS, 0.1), rtol=1e-5, atol=1e-7)


# --- H. Keras's own loss checks, hyperparameters, shapes, NaN --------------------------------


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_keras_loss_contract(name):
    y, weights = _y(name, LABELS), np.linspace(0.0, 2.0, N).astype("float32")
    loss = LOSSES[name]()
    per_sample = _np(LOSSES[name](reduction=None)(y, LOGITS))
    assert per_sample.shape == (N,) and np.all(np.isfinite(per_sample))
    np.testing.assert_allclose(_np(loss(y, LOGITS)), per_sample.mean(), rtol=1e-5)
    np.testing.assert_allclose(_np(loss(y, LOGITS, sample_weight=weights)),
                               (per_sample * weights).mean(), rtol=1e-5)
    assert float(_np(loss(y, LOGITS, sample_weight=np.zeros(N, "float32")))) == 0.0
    summed = _np(LOSSES[name](reduction="sum")(y, LOGITS))
    np.testing.assert_allclose(summed, per_sample.sum(), rtol=1e-5)
    one = _y(name, LABELS[:1])
    np.testing.assert_allclose(_np(loss(one, LOGITS[:1])), per_sample[:1].sum(), rtol=1e-5)  # N = 1
    low = LOSSES[name](dtype="mixed_float16")
    config = json.loads(json.dumps(low.get_config()))
    assert config["dtype"] == "mixed_float16"
    revived = keras.losses.deserialize(keras.losses.serialize(low))
    for clone in (type(low).from_config(config), revived):
        assert type(clone) is type(low)
        assert _dtype(clone(y, LOGITS)) == "float16"
        np.testing.assert_allclose(_np(clone(y, LOGITS)), per_sample.mean(), rtol=2e-3)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_nan_logits_give_nan_for_that_sample_only(name):
    z = LOGITS.copy()
    z[2, 1] = np.nan
    values = _np(LOSSES[name](reduction=None)(_y(name, LABELS), z))
    assert np.isnan(values[2]), values
    assert np.all(np.isfinite(np.delete(values, 2))), values


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_predictions_of_the_wrong_width_or_rank_name_both_shapes(name):
    loss = LOSSES[name]()
    wide = np.zeros((N, K + 1), "float32")
    with pytest.raises(ValueError) as error:
        loss(_y(name, _ONEHOT) if name != "DistillationLoss" else _y(name, LABELS), wide)
    message = str(error.value)
    assert "4" in message and "5" in message, message
    with pytest.raises(ValueError, match=r"`y_pred` must have"):
        loss(_y(name, LABELS), np.zeros((N, 1), "float32"))  # K = 1
    with pytest.raises(ValueError, match=r"`y_pred` must have shape \(N, K\)"):
        loss(_y(name, LABELS), np.zeros((N,), "float32"))


HYPERPARAMETERS = {
    "LabelSmoothingLoss": ["epsilon"],
    "LLSLoss": ["alpha"],
    "LSPlusPlusLoss": ["alpha"],
    "DistillationLoss": ["beta", "temperature"],
    "SubstituteTeacherLoss": ["alpha", "beta", "temperature"],
    "ClassSimilarityLSLoss": ["epsilon"],
    "SoftBootstrappingLoss": ["beta"],
    "AdaptiveFocalLoss": ["gamma_low", "gamma_high", "threshold"],
    "MarginLSLoss": ["margin", "weight"],
    "TFKDRegularizationLoss": ["alpha", "temperature", "correct_probability"],
    "ZipfLSLoss": ["weight", "power"],
    "OnlineLabelSmoothingLoss": ["alpha"],
}
BAD_VALUES = [("a", TypeError, "must be a real number, got 'a'"), (None, TypeError, "got None"),
              (float("nan"), ValueError, "must be finite, got nan"),
              (float("inf"), ValueError, "must be finite, got inf"), (-5.0, ValueError, "got -5.0")]


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_bad_hyperparameters_raise_naming_argument_and_value(name):
    cls = type(LOSSES[name]())
    positional = {"SubstituteTeacherLoss": (MATRIX,), "ClassSimilarityLSLoss": (SIMILARITY,),
                  "LLSLoss": (K,), "LSPlusPlusLoss": (K,), "OnlineLabelSmoothingLoss": (K,)}
    args = positional.get(name, ())
    for param in HYPERPARAMETERS[name]:
        for value, error, match in BAD_VALUES:
            with pytest.raises(error, match=rf"`{param}` .*{match}"):
                cls(*args, **{param: value})
    if name not in LOGITS_ONLY:
        with pytest.raises(TypeError, match=r"`from_logits` must be True or False, got 'yes'"):
            cls(*args, from_logits="yes")


@pytest.mark.parametrize("make, match", [
    (lambda: losses.LLSLoss(1), r"`num_classes` must be >= 2, got 1"),
    (lambda: losses.LabelSmoothingLoss(num_classes=2.0), r"`num_classes` must be an integer"),
    (lambda: losses.OnlineLabelSmoothingLoss(True), r"`num_classes` must be an integer, got True"),
    (lambda: losses.SubstituteTeacherLoss(np.where(np.eye(3) > 0, np.nan, 0.5)),
     r"`matrix` must hold finite, non-negative probabilities, got nan"),
    (lambda: losses.lls_loss(LABELS, LOGITS, np.full((K, K), 0.5)),
     r"Every row of `matrix` must sum to 1"),
    (lambda: losses.lspp_loss(LABELS, LOGITS, -np.eye(K)), r"`matrix` must hold finite, non-neg"),
    (lambda: targets.ils1_epsilon([0.5, 1.5], 0.9, 1.0),
     r"`true_class_probs` must be probabilities .*1\.5"),
    (lambda: ILSTargets("ils")(LABELS, np.where(LOGITS > 1, np.inf, LOGITS)),
     r"`teacher_logits` must be finite, got inf"),
    (lambda: losses.online_soft_matrix(LABELS, ref.softmax(LOGITS)[:, :3], np.eye(K)),
     r"`probs` must have shape \(6, 4\)"),
    (lambda: losses.online_soft_matrix(LABELS, np.full((N, K), np.nan), np.eye(K)),
     r"`probs` must be finite"),
    (lambda: losses.beta_smoothing_targets(LABELS, [np.nan] * N, K, 0.1),
     r"`confidences` must be finite"),
    (lambda: losses.class_similarity_matrix(np.full((N, 2), np.inf), LABELS, K),
     r"`x` must be finite, got inf"),
    (lambda: losses.zipf_targets(LABELS, LOGITS, num_classes=5), r"`y_pred` must have 5 columns"),
])
def test_more_bad_arguments(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_bfloat16_labels_that_cannot_hold_the_class_ids_are_refused():
    labels = ops.cast(np.array([0, 300]), "bfloat16")
    with pytest.raises(ValueError, match=r"`y_true` arrived as bfloat16.*num_classes = 400"):
        losses.label_smoothing_loss(labels, np.zeros((2, 400), "float32"))


def test_from_logits_false_treats_a_batch_that_is_not_probabilities_as_logits():
    probs = ref.softmax(LOGITS).astype("float32")
    for name in ("LabelSmoothingLoss", "LLSLoss", "SoftBootstrappingLoss", "AdaptiveFocalLoss"):
        from_logits = _np(LOSSES[name]()(LABELS, LOGITS))
        from_probs = LOSSES[name](from_logits=False)
        np.testing.assert_allclose(_np(from_probs(LABELS, LOGITS)), from_logits, rtol=1e-5,
                                   err_msg=name)
        np.testing.assert_allclose(_np(from_probs(LABELS, probs)), from_logits, rtol=1e-4,
                                   err_msg=name)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_16_bit_softmax_outputs_still_count_as_probabilities(dtype):
    # A bfloat16 softmax sums to 1 only within ~3e-3: it must not be mistaken for logits.
    z = _RNG.normal(scale=3.0, size=(64, 10)).astype("float32")
    labels = _RNG.integers(0, 10, 64)
    probs = ops.softmax(ops.cast(z, dtype), axis=-1)
    expected = ref.cross_entropy(ref.uniform_ls(labels, 10, 0.1), ref.log_softmax(z)).mean()
    loss = losses.LabelSmoothingLoss(0.1, from_logits=False)
    np.testing.assert_allclose(float(loss(labels, probs)), expected, rtol=2e-2)
    twin = losses.label_smoothing_loss(labels, probs, 0.1, from_logits=False)
    np.testing.assert_allclose(float(ops.mean(twin)), expected, rtol=2e-2)


def test_a_dense_matrix_larger_than_the_machine_is_refused_at_once_naming_num_classes():
    """K = 10^6 needs 4 TB for a dense Q: a MemoryError naming `num_classes` and the sparse
    option, before any backend tries (TensorFlow spent seconds, then raised its own OOM)."""
    for make in (lambda: losses.LLSLoss(num_classes=10**6),
                 lambda: losses.LSPlusPlusLoss(num_classes=10**6), lambda: QMatrix(10**6)):
        with pytest.raises(MemoryError, match=r"`num_classes`=1000000: .* GiB.*neighbors=N"):
            make()
    sparse = losses.LLSLoss(num_classes=10**6, neighbors=2)  # O(K N): fine
    assert sparse.matrix_layer.logits.shape[0] == 10**6  # (K, N + 2): the row's own entry, N, a tail
