"""Defects found by an adversarial sweep of the losses and targets, and their fixes.

Covers: TF-KD reg at every float32 temperature (it was negative, huge or NaN for large
and tiny T), tempered softmaxes of `DistillationLoss` and `SubstituteTeacherLoss` at
tiny T, Zipf's LS at large powers, class-matrix checks of `targets.matrix_smoothing` /
`matrix_rows`, string inputs (a `TypeError` naming the argument), shape errors of
`targets.mix` / `targets.zipf`, and a scale-safe `class_similarity_matrix`.

Expected values come from float64 NumPy/SciPy written from the equations (and, where
float64 itself cancels, from mpmath at 120 digits), never from the code under test. The
property tests run a few hundred random problems each, with ties, zero and huge logits,
N = 1, and tiny and huge temperatures.
"""

import keras
import numpy as np
import pytest
from keras import ops
from scipy import special

from keras_smooth import losses
from keras_smooth import targets

Y = np.array([0, 2])
P = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]], "float32")
Q = (np.ones((3, 3)) - np.eye(3)) / 2
FLOAT32_MAX = float(np.finfo("float32").max)


def _np(x):
    return np.asarray(ops.convert_to_numpy(x), dtype="float64")


def _problem(rng, trial):
    """Labels and float32 logits: random scales, ties, zeros, huge values, N = 1."""
    k, n = int(rng.integers(2, 7)), int(rng.integers(1, 5)) if trial % 4 else 1
    logits = rng.normal(size=(n, k)) * 10.0 ** rng.uniform(-3, 3)
    kind = trial % 6
    if kind == 1:
        logits[:] = 0.0  # every class tied
    elif kind == 2:
        logits[:, 1:] = logits[:, :1]  # ties with the first class
    elif kind == 3:
        logits = np.round(logits)  # some ties
    return rng.integers(0, k, n), logits.astype("float32")


def _close(got, expected, rtol, atol):
    """float32 results against float64 references; a reference beyond float32 is inf."""
    expected = np.where(np.abs(expected) > FLOAT32_MAX, np.copysign(np.inf, expected), expected)
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol)


# --- 1. TF-KD reg (Yuan et al. 2020, §4) -----------------------------------------------


def _tf_kd_reference(labels, logits, alpha, tau, a):
    """(1 - alpha) H(y, q) + alpha tau^2 KL(softmax(p^d / tau) || softmax(z / tau)), float64."""
    k = logits.shape[1]
    onehot = np.eye(k)[labels]
    virtual = np.where(onehot > 0, a, (1 - a) / (k - 1))
    log_p = special.log_softmax(virtual / tau, axis=1)
    log_q = special.log_softmax(logits.astype("float64") / tau, axis=1)
    kl = np.sum(special.xlogy(np.exp(log_p), np.exp(log_p)) - np.exp(log_p) * log_q, axis=1)
    ce = -np.sum(onehot * special.log_softmax(logits.astype("float64"), axis=1), axis=1)
    return (1 - alpha) * ce + alpha * tau**2 * kl


def test_tf_kd_reg_matches_a_float64_reference_for_t_from_1e_3_to_1e6():
    rng = np.random.default_rng(11)
    for trial in range(300):
        labels, logits = _problem(rng, trial)
        tau = float(10.0 ** rng.uniform(-3, 6))
        alpha, a = float(rng.uniform(0.1, 1.0)), float(rng.uniform(0.0, 1.0))
        got = _np(losses.tf_kd_regularization_loss(labels, logits, alpha, tau, a))
        # float64's own rounding of tau^2 KL grows as tau^2 * 1e-16 (about 1e-4 at 1e6).
        atol = 1e-5 + 1e-15 * tau**2 * (1.0 + np.abs(logits).max()) ** 2
        _close(got, _tf_kd_reference(labels, logits, alpha, tau, a), 2e-4, atol)


def test_tf_kd_reg_matches_120_digit_arithmetic_at_extreme_temperatures():
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 120

    def reference(label, row, tau, a):
        k, tau = len(row), mp.mpf(tau)
        virtual = [mp.mpf(a) if j == label else mp.mpf(1 - a) / (k - 1) for j in range(k)]

        def log_softmax(u):
            top = max(u)
            lse = top + mp.log(mp.fsum(mp.exp(v - top) for v in u))
            return [v - lse for v in u]

        log_p = log_softmax([v / tau for v in virtual])
        log_q = log_softmax([mp.mpf(float(v)) / tau for v in row])
        return float(tau**2 * mp.fsum(mp.exp(lp) * (lp - lq) for lp, lq in zip(log_p, log_q)))

    rng = np.random.default_rng(12)
    for trial in range(60):
        labels, logits = _problem(rng, trial)
        tau = [1.2e-38, 1e-20, 1e-3, 1e6, 1e12, 1e20, 3e38][trial % 7]
        got = _np(losses.tf_kd_regularization_loss(labels, logits, 1.0, tau, 0.9))
        expected = np.array([reference(t, row, tau, 0.9) for t, row in zip(labels, logits)])
        _close(got, expected, 2e-4, 1e-6)


def test_tf_kd_reg_tends_to_half_the_variance_of_the_logit_gap_at_huge_t():
    # tau^2 KL(softmax(a / tau) || softmax(z / tau)) -> Var_uniform(a - z) / 2 as tau -> inf.
    rng = np.random.default_rng(13)
    for trial in range(100):
        labels, logits = _problem(rng, trial)
        k = logits.shape[1]
        virtual = np.where(np.eye(k)[labels] > 0, 0.9, 0.1 / (k - 1))
        limit = 0.5 * np.var(virtual - logits.astype("float64"), axis=1)
        for tau in (1e20, 3e38):
            got = _np(losses.tf_kd_regularization_loss(labels, logits, 1.0, tau, 0.9))
            np.testing.assert_allclose(got, limit, rtol=1e-4, atol=1e-6)


def test_tf_kd_reg_soft_term_is_never_negative_and_the_gradient_stays_finite():
    rng = np.random.default_rng(14)
    for trial in range(200):
        labels, logits = _problem(rng, trial)
        tau = float(10.0 ** rng.uniform(-37.9, 38.5))
        assert np.all(_np(losses.tf_kd_regularization_loss(labels, logits, 1.0, tau)) >= 0)
    logits = keras.Variable(np.array([[30.0, -30.0, 0.0], [0.0, 0.0, 0.0]], "float32"))
    for tau in (1e-3, 1.0, 1e4, 1e6, 1e20, 1e30, 3e38):  # 1e20 on: NaN under jax.jit before
        grad = _gradient(lambda z: losses.tf_kd_regularization_loss([1, 0], z, 0.5, tau), logits)
        assert np.all(np.isfinite(grad)), tau


def _gradient(function, variable):
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            value = ops.sum(function(variable))
        return _np(tape.gradient(value, variable.value))
    if backend == "jax":
        import jax

        gradient = jax.jit(jax.grad(lambda z: ops.sum(function(z))))  # compiled, as in fit
        return _np(gradient(ops.convert_to_tensor(variable)))
    pytest.skip("gradient helper covers TensorFlow and JAX")


def test_tf_kd_reg_issue_examples_and_the_float32_range_of_t():
    expected = _tf_kd_reference(Y, P, 0.1, 1e4, 0.9).mean()
    assert float(losses.TFKDRegularizationLoss(temperature=1e4)(Y, P)) == pytest.approx(
        expected, rel=1e-4)
    for tau in (1e-3, 1e5, 1e6, 1e20):
        value = float(losses.TFKDRegularizationLoss(temperature=tau)(Y, P))
        assert np.isfinite(value) and value > 0, tau
    for tau in (1e300, 1e-40):
        with pytest.raises(ValueError, match=r"`temperature` must be within the float32 range"):
            losses.TFKDRegularizationLoss(temperature=tau)


# --- 2. tempered softmaxes of distillation and the substitute teacher -------------------


def _cross_entropy(p, log_q):
    """H(p, q) with 0 * log 0 = 0."""
    return -np.sum(np.where(p > 0, p * np.where(p > 0, log_q, 0.0), 0.0), axis=1)


def _distillation_reference(labels, student, teacher, beta, tau):
    """[Re] Eq. 2: (1 - beta) H(y, q) + beta H(softmax(z_t / tau), softmax(z / tau))."""
    onehot = np.eye(student.shape[1])[labels]
    p_tau = special.softmax(teacher.astype("float64") / tau, axis=1)
    log_q_tau = special.log_softmax(student.astype("float64") / tau, axis=1)
    hard = -np.sum(onehot * special.log_softmax(student.astype("float64"), axis=1), axis=1)
    return (1 - beta) * hard + beta * _cross_entropy(p_tau, log_q_tau)


def _substitute_reference(labels, student, matrix, alpha, beta, tau):
    """r = (1 - alpha) y + alpha M[y]; r^tau = r^(1/tau) / sum r^(1/tau) (= softmax(log r / tau))."""
    onehot = np.eye(student.shape[1])[labels]
    rows = (1 - alpha) * onehot + alpha * matrix[labels]
    with np.errstate(divide="ignore"):
        r_tau = special.softmax(np.log(rows) / tau, axis=1)
    log_q_tau = special.log_softmax(student.astype("float64") / tau, axis=1)
    hard = -np.sum(onehot * special.log_softmax(student.astype("float64"), axis=1), axis=1)
    return (1 - beta) * hard + beta * _cross_entropy(r_tau, log_q_tau)


TEMPERATURES = (2e-38, 1e-30, 1e-10, 1e-3, 0.3, 1.0, 4.0, 1e3)


def _huge_or_close(got, expected):
    """Beyond 1e37 (where float32 rounding of the scaled logits decides) only 'huge' counts."""
    huge = expected > 1e37
    assert np.all(got[huge] > 1e37)
    _close(got[~huge], expected[~huge], 1e-4, 1e-5)


def test_distillation_matches_scipy_for_every_temperature_down_to_float32_tiny():
    rng = np.random.default_rng(21)
    for trial in range(300):
        labels, student = _problem(rng, trial)
        scale = 10.0 ** rng.uniform(-2, 2)
        teacher = (rng.normal(size=student.shape) * scale).astype("float32")
        if trial % 5 == 0:
            teacher[:, 1:] = teacher[:, :1]  # a teacher with tied classes
        tau, beta = TEMPERATURES[trial % len(TEMPERATURES)], float(rng.uniform())
        y = losses.distillation_targets(labels, teacher)
        got = _np(losses.distillation_loss(y, student, beta, tau))
        _huge_or_close(got, _distillation_reference(labels, student, teacher, beta, tau))


def test_substitute_teacher_matches_scipy_for_every_temperature_down_to_float32_tiny():
    rng = np.random.default_rng(22)
    for trial in range(300):
        labels, student = _problem(rng, trial)
        k = student.shape[1]
        matrix = rng.dirichlet(np.ones(k) * 0.5, size=k)
        if trial % 3 == 0:
            matrix[:, 0] = 0.0  # exact zeros in the target rows
            matrix /= matrix.sum(1, keepdims=True)
        tau, beta = TEMPERATURES[trial % len(TEMPERATURES)], float(rng.uniform())
        got = _np(losses.substitute_teacher_loss(labels, student, matrix, 0.3, beta, tau))
        _huge_or_close(got, _substitute_reference(labels, student, matrix, 0.3, beta, tau))


def test_tempered_losses_reach_the_small_temperature_limit():
    # tau -> 0: both tempered distributions become one-hot at their argmax; when the argmaxes
    # agree the soft term vanishes and only (1 - beta) H(y, q) remains.
    student = np.array([[3.0, 1.0, -2.0], [0.0, 5.0, 1.0]], "float32")
    hard = -special.log_softmax(student.astype("float64"), axis=1)[[0, 1], [0, 1]]
    y = losses.distillation_targets([0, 1], student * 2.0)
    for tau in (1e-3, 1e-20, 2e-38):
        np.testing.assert_allclose(_np(losses.distillation_loss(y, student, 0.4, tau)),
                                   0.6 * hard, rtol=1e-5)
        np.testing.assert_allclose(
            _np(losses.substitute_teacher_loss([0, 1], student, Q, 0.1, 0.4, tau)),
            0.6 * hard, rtol=1e-5)


def test_issue_examples_of_tiny_temperatures():
    assert float(losses.SubstituteTeacherLoss(Q, temperature=1e-3)(Y, P)) == pytest.approx(
        _substitute_reference(Y, P, Q, 0.1, 1.0, 1e-3).mean(), abs=1e-6)
    packed = np.c_[np.eye(3)[Y], P]
    assert float(losses.DistillationLoss(temperature=2e-38)(packed, P)) == pytest.approx(
        _distillation_reference(Y, P, P, 0.5, 2e-38).mean(), rel=1e-5)
    for build in (lambda t: losses.SubstituteTeacherLoss(Q, temperature=t),
                  lambda t: losses.DistillationLoss(temperature=t),
                  lambda t: losses.distillation_loss(packed, P, temperature=t),
                  lambda t: losses.substitute_teacher_loss(Y, P, Q, temperature=t)):
        for tau in (1e-40, 1e-38, 1e39):
            with pytest.raises(ValueError, match=r"`temperature` must be within the float32"):
                build(tau)


# --- 3. Zipf's LS (Liang et al. 2022) -----------------------------------------------------


def _zipf_reference(label, row, power):
    """Rank 1 for the label, ranks 2..K by descending logit; mass r^-power, normalised."""
    others = [k for k in np.argsort(-row.astype("float64"), kind="stable") if k != label]
    ranks = np.empty(len(row))
    ranks[label] = 1
    ranks[others] = np.arange(2, len(row) + 1)
    with np.errstate(over="ignore"):
        mass = np.power(ranks, -power)
    return mass / mass.sum()


def _zipf_loss_reference(labels, logits, weight, power):
    out = []
    for label, row in zip(labels, logits):
        z, log_q = _zipf_reference(label, row, power), special.log_softmax(row.astype("float64"))
        kl = np.sum(special.xlogy(z, z) - z * log_q)
        out.append(-log_q[label] + weight * kl)
    return np.array(out)


POWERS = (0.0, 1.0, 2.5, 50.0, 80.0, 200.0, 1e4, 1e38, 1e300)


def test_zipf_ls_matches_numpy_for_every_power():
    rng = np.random.default_rng(31)
    for trial in range(300):
        labels, logits = _problem(rng, trial)
        logits = np.where(logits == logits.max(1, keepdims=True), logits, logits - 1e-3)
        power, weight = POWERS[trial % len(POWERS)], float(rng.uniform(0, 2))
        got = _np(losses.zipf_ls_loss(labels, logits, weight, power))
        _close(got, _zipf_loss_reference(labels, logits, weight, power), 1e-4, 1e-5)
        rows = _np(targets.zipf(labels, logits, power))
        expected = np.array([_zipf_reference(t, row, power) for t, row in zip(labels, logits)])
        np.testing.assert_allclose(rows, expected, rtol=1e-5, atol=1e-30)


def test_zipf_label_keeps_rank_one_beside_a_huge_logit():
    logits = np.array([[1e30, 0.0, -1.0]], "float32")  # `max + 1` rounds back to 1e30
    # the label (class 2) has rank 1, class 0 rank 2, class 1 rank 3: [1/2, 1/3, 1] / (11/6)
    np.testing.assert_allclose(_np(targets.zipf([2], logits)), [[3 / 11, 2 / 11, 6 / 11]],
                               rtol=1e-6)
    assert float(losses.ZipfLSLoss(power=80)(Y, P)) == pytest.approx(
        _zipf_loss_reference(Y, P, 1.0, 80.0).mean(), rel=1e-5)


# --- 4. class matrices of the target builders ----------------------------------------------


@pytest.mark.parametrize("builder", [
    lambda m: targets.matrix_smoothing(Y, m, 0.5),
    lambda m: targets.matrix_rows(Y, m),
])
@pytest.mark.parametrize("matrix, message", [
    (-np.ones((3, 3)), r"`matrix` must hold finite, non-negative probabilities, got -1\.0"),
    (np.full((3, 3), np.nan), r"`matrix` must hold finite, non-negative probabilities, got nan"),
    (np.ones((3, 3)), r"Every row of `matrix` must sum to 1 .* row 0 sums to 3\.0"),
])
def test_matrix_targets_refuse_matrices_that_are_not_class_distributions(builder, matrix,
                                                                        message):
    with pytest.raises(ValueError, match=message):
        builder(matrix)


def test_matrix_targets_still_follow_the_formula():
    rows = (1 - 0.3) * np.eye(3)[Y] + 0.3 * Q[Y]  # LLS Eq. 4 / LS++ Eq. 3
    np.testing.assert_allclose(_np(targets.matrix_smoothing(Y, Q, 0.3)), rows, atol=1e-7)
    np.testing.assert_allclose(_np(targets.matrix_rows(Y, Q)), Q[Y], atol=1e-7)


# --- 5. strings get a TypeError naming the argument -------------------------------------------


STRING_CASES = {
    "SubstituteTeacherLoss": ("matrix", lambda s: losses.SubstituteTeacherLoss(s)),
    "substitute_teacher_loss": ("matrix", lambda s: losses.substitute_teacher_loss(Y, P, s)),
    "ClassSimilarityLSLoss": ("similarity", lambda s: losses.ClassSimilarityLSLoss(s)),
    "OnlineLabelSmoothingLoss": ("soft_matrix",
                                 lambda s: losses.OnlineLabelSmoothingLoss(3, soft_matrix=s)),
    "LLSLoss": ("matrix_logits", lambda s: losses.LLSLoss(3, matrix_logits=s)),
    "LSPlusPlusLoss": ("matrix_logits", lambda s: losses.LSPlusPlusLoss(3, matrix_logits=s)),
    "lls_loss": ("matrix", lambda s: losses.lls_loss(Y, P, s)),
    "distillation_targets": ("teacher_logits", lambda s: losses.distillation_targets(Y, s)),
    "distillation_targets labels": ("labels", lambda s: losses.distillation_targets(s, P)),
    "online_soft_matrix": ("probs", lambda s: losses.online_soft_matrix(Y, s, np.eye(3))),
    "matrix_smoothing": ("matrix", lambda s: targets.matrix_smoothing(Y, s, 0.1)),
    "matrix_rows": ("matrix", lambda s: targets.matrix_rows(Y, s)),
    "ils1": ("teacher_probs", lambda s: targets.ils1(Y, s, 0.9, 1.0)),
    "ils2": ("teacher_probs", lambda s: targets.ils2(Y, s, 0.1)),
    "ils": ("epsilon_probs", lambda s: targets.ils(Y, s, s, 0.9, 1.0)),
    "wrong_class_distribution": ("teacher_probs",
                                 lambda s: targets.wrong_class_distribution(Y, s)),
    "ils_from_logits": ("teacher_logits", lambda s: targets.ils_from_logits(Y, s)),
    "zipf": ("logits", lambda s: targets.zipf(Y, s)),
    "mix": ("distribution", lambda s: targets.mix(np.eye(3)[Y], s, 0.1)),
    "mix epsilon": ("epsilon", lambda s: targets.mix(np.eye(3)[Y], np.eye(3)[Y], s)),
}


@pytest.mark.parametrize("value", ["abc", [["a", "b", "c"]] * 3], ids=["str", "nested"])
@pytest.mark.parametrize("case", sorted(STRING_CASES))
def test_string_inputs_raise_a_type_error_naming_the_argument(case, value):
    name, call = STRING_CASES[case]
    with pytest.raises(TypeError, match=rf"`{name}` must be an array of real numbers"):
        call(value)


@pytest.mark.parametrize("labels", [1, 0.0, np.int64(2)])
def test_distillation_targets_refuse_a_scalar_label_naming_it(labels):
    with pytest.raises(ValueError, match=r"`labels` must be class ids .* got a scalar"):
        losses.distillation_targets(labels, P)


# --- 6. shape errors name the arguments ---------------------------------------------------


def test_mix_and_zipf_name_the_arguments_of_mismatched_shapes():
    with pytest.raises(ValueError, match=r"`epsilon` has shape \(3,\) but `onehot` has shape "
                                         r"\(2, 3\)"):
        targets.mix(np.eye(3)[:2], np.ones((2, 3)) / 3, [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match=r"`logits` has 2 rows but `labels` has 3"):
        targets.zipf([0, 1, 2], P)


# --- 7. class similarities (cLS) --------------------------------------------------------------


def _similarity_reference(x, labels, k):
    """S[i, j] = (1 / ||mu_i - mu_j||) / sum_{l != i} 1 / ||mu_i - mu_l||, S[i, i] = 0."""
    centres = np.stack([x[labels == c].mean(0) for c in range(k)])
    inverse = np.zeros((k, k))
    for i in range(k):
        for j in range(k):
            if i != j:
                inverse[i, j] = 1.0 / np.sqrt(np.sum((centres[i] - centres[j]) ** 2))
    return inverse / inverse.sum(1, keepdims=True)


@pytest.mark.parametrize("scale", [1e-300, 1.0, 1e200, 1e305])
def test_class_similarity_matrix_does_not_depend_on_the_scale_of_the_inputs(scale):
    x = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    got = losses.class_similarity_matrix(x * scale, [0, 1, 2], 3)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, _similarity_reference(x, np.arange(3), 3), rtol=1e-6)


def test_class_similarity_loss_names_the_similarity_argument():
    with pytest.raises(ValueError, match=r"`similarity` must hold finite, non-negative"):
        losses.ClassSimilarityLSLoss(-np.ones((3, 3)))
    with pytest.raises(ValueError, match=r"Every row of `similarity` must sum to 1"):
        losses.ClassSimilarityLSLoss(np.ones((3, 3)))


def test_class_similarity_issue_example_is_finite_and_right():
    x = np.array([[1e200, 0], [0, 1e200], [1e200, 1e200]])
    np.testing.assert_allclose(losses.class_similarity_matrix(x, [0, 1, 2], 3),
                               _similarity_reference(x / 1e200, np.arange(3), 3), rtol=1e-6)
    with pytest.raises(TypeError, match=r"`x` must be an array of real numbers"):
        losses.class_similarity_matrix("abc", [0], 3)


def test_tempered_teachers_with_zero_mass_stay_exact_at_the_top_of_the_float32_range():
    """Above 1 / float32-tiny, 1 / T is subnormal: XLA's x * (1 / T) flushed it to 0 and a
    zero teacher entry (-inf) became -inf * 0 = NaN (JAX). Reference: the T -> inf limit,
    the teacher uniform over its non-zero entries, for both losses."""
    matrix = np.array([[0.5, 0.0, 0.5], [0.0, 1.0, 0.0], [0.25, 0.25, 0.5]])
    z = np.array([[1.0, -2.0, 0.5], [0.3, 0.2, -0.1]], "float32")
    labels = np.array([0, 1])
    for tau in (9e37, 3e38):
        got = _np(losses.substitute_teacher_loss(labels, z, matrix, 0.0, 1.0, tau))
        # targets at alpha = 0: the label's row of the matrix, tempered to uniform over its
        # support S; the student tempered to uniform over 3: H = log 3 whatever S is
        rows = matrix[labels] > 0
        want = np.full(len(labels), np.log(3.0))
        np.testing.assert_allclose(got, want, rtol=1e-5)
        teacher = np.where(rows, 0.0, -np.inf)
        got = _np(losses.distillation_loss(np.c_[np.eye(3)[labels], teacher], z, 1.0, tau))
        np.testing.assert_allclose(got, want, rtol=1e-5)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_16_bit_class_matrices_are_taken_within_their_roundoff(dtype):
    # a softmax held in 16 bits sums to 1 only within a few roundoffs (1e-4 refused them)
    rng = np.random.default_rng(5)
    exact = special.softmax(rng.normal(size=(8, 8)) * 2, axis=1)
    matrix = ops.cast(ops.convert_to_tensor(exact), dtype)
    held = _np(ops.cast(matrix, "float32")).astype("float64")
    got = _np(targets.matrix_smoothing([0, 3], matrix, 0.1))
    want = 0.9 * np.eye(8)[[0, 3]] + 0.1 * held[[0, 3]]
    np.testing.assert_allclose(got, want, atol=1e-6)
    with pytest.raises(ValueError, match="`matrix`"):  # a row far from 1 is still refused
        targets.matrix_smoothing([0], ops.cast(ops.convert_to_tensor(exact * 1.1), dtype), 0.1)


def test_matrix_logits_beyond_float32_are_refused_not_turned_into_nan():
    with pytest.raises(ValueError, match="`matrix_logits` must be within the float32 range"):
        losses.LLSLoss(3, matrix_logits=np.full((3, 3), 1e39))


def test_a_minus_inf_student_logit_where_no_target_has_mass_adds_nothing():
    # 0 * log 0 in the hard term too: NaN before, even with beta = 1 ((1 - beta) * NaN)
    teacher_logits = np.array([2.0, -np.inf, 1.0])  # no teacher mass on class 1 either
    y_true = np.c_[np.eye(3)[[0]], teacher_logits[None]]
    z = np.array([1.0, -np.inf, 3.0])
    teacher = special.softmax(teacher_logits / 2.0)
    log_q_t = special.log_softmax(z / 2.0)
    soft = -(teacher[[0, 2]] * log_q_t[[0, 2]]).sum()
    hard = -special.log_softmax(z)[0]
    for beta in (0.0, 0.5, 1.0):
        got = _np(losses.distillation_loss(y_true, z[None].astype("float32"), beta, 2.0))
        np.testing.assert_allclose(got, [(1 - beta) * hard + beta * soft], rtol=1e-5)


@pytest.mark.parametrize("labels", [None, {"a": 1}, {0, 1}], ids=["None", "dict", "set"])
def test_labels_that_hold_no_numbers_are_named(labels):
    with pytest.raises(TypeError, match=r"`labels` must be an array of real numbers"):
        losses.distillation_targets(labels, P)


def test_a_traced_scalar_label_is_refused_without_reading_its_value():
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        traced = tf.function(lambda y: losses.distillation_targets(y, P[:1]))
        with pytest.raises(ValueError, match=r"got a scalar tensor"):
            traced(tf.constant(2))
    elif keras.backend.backend() == "jax":
        import jax

        with pytest.raises(ValueError, match=r"got a scalar tensor"):
            jax.jit(lambda y: losses.distillation_targets(y, P[:1]))(2)


def test_a_list_of_traced_labels_still_reaches_the_backend():
    """A list holding tensors is left to the backend (a traced one cannot become NumPy)."""
    expected = np.asarray(losses.label_smoothing_loss(Y, P))
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        loss = tf.function(lambda a, b: losses.label_smoothing_loss([a, b], P))
        targets_ = tf.function(lambda a, b: losses.distillation_targets([a, b], P))
        got, packed = loss(tf.constant(0), tf.constant(2)), targets_(tf.constant(0), tf.constant(2))
    elif keras.backend.backend() == "jax":
        import jax

        got = jax.jit(lambda a, b: losses.label_smoothing_loss([a, b], P))(0, 2)
        packed = jax.jit(lambda a, b: losses.distillation_targets([a, b], P))(0, 2)
    else:
        pytest.skip("traced calls are checked on TensorFlow and JAX")
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(packed), np.asarray(losses.distillation_targets(Y, P)))
