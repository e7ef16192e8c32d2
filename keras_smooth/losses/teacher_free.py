"""Teacher-free regularizers that distill from targets the model makes for itself.

TF-KD reg distills from a hand-made virtual teacher; Zipf's LS from rank-based
soft labels built from the model's own logits. Both targets are built in
`keras_smooth.targets` (`virtual_teacher`, `zipf`).
"""

import math

import keras
from keras import ops

from keras_smooth import _checks
from keras_smooth import targets
from keras_smooth.losses import _common


def tf_kd_regularization_loss(y_true, y_pred, alpha=0.1, temperature=20.0,
                              correct_probability=0.9):
    """Teacher-free knowledge distillation, TF-KD_reg (Yuan et al. 2020, "Revisiting
    knowledge distillation via label smoothing regularization", §4).

    A hand-made "virtual teacher" puts `a = correct_probability` on the true
    class and (1 - a) / (K - 1) on every other class
    (`keras_smooth.targets.virtual_teacher`); it is softened at temperature
    tau and distilled:

    Formula:
        p^d_k = a if k = y else (1 - a) / (K - 1)
        p^d_tau = softmax(p^d / tau),   q_tau = softmax(z / tau)
        loss = (1 - alpha) * H(y, q) + alpha * tau**2 * KL(p^d_tau || q_tau)

    The tau**2 factor (Hinton et al.) keeps the soft term's gradient scale;
    the authors' code uses a separate multiplier instead, and compares the
    tempered teacher with the student's untempered log-softmax; this loss
    tempers both sides, as the paper's formula does. Needs logits.
    tau**2 * KL is computed without cancellation (`tempered_kl_times_t2`), so
    it is >= 0 and accurate for every tau in the normal float32 range; as
    tau grows it tends to half the variance of p^d - z under the uniform
    distribution.
    """
    alpha = _checks.check_unit_interval("alpha", alpha)
    temperature = _checks.check_float32_positive("temperature", temperature)
    a = _checks.check_unit_interval("correct_probability", correct_probability)
    num_classes = _common.infer_num_classes(y_pred, None)
    onehot, log_q = _common.prepare(y_true, y_pred, num_classes, True)
    virtual = targets.virtual_teacher(onehot, num_classes, a)
    soft = tempered_kl_times_t2(virtual, ops.cast(y_pred, "float32"), temperature)
    hard = _common.cross_entropy(onehot, log_q)
    return (1.0 - alpha) * hard + alpha * soft


def tempered_kl_times_t2(teacher_logits, student_logits, temperature):
    """T**2 * KL(softmax(a / T) || softmax(z / T)) per row, >= 0 by construction.

    Written as sum_k q_k psi(x_k) with x = log(p / q) and psi(x) = 1 + (x - 1) e^x >= 0
    (the same sum, as sum_k q_k (e^x_k - 1) = 0). While every |a_k - z_k| <= T (after
    both rows are shifted to a maximum of 0) the log-normaliser difference is taken as
    T log1p(sum_k q_k expm1((a_k - z_k) / T)), and T**2 q psi(x) = q (T x)**2 psi(x) / x**2
    by a series for |x| <= 0.5: no term cancels, and no T**2 is formed, so every
    T up to the float32 maximum stays finite. Otherwise T x = (a - z) - T (LSE(a / T) -
    LSE(z / T)), and T (T (q - p) + p T x) for |x| > 0.5 (T x, not x: a tiny T would
    overflow x).
    """
    a = teacher_logits - _common.row_max(teacher_logits)
    z = student_logits - _common.row_max(student_logits)
    d = a - z
    lse_a = ops.logsumexp(a / temperature, axis=-1, keepdims=True)
    lse_z = ops.logsumexp(z / temperature, axis=-1, keepdims=True)
    p, q = ops.exp(a / temperature - lse_a), ops.exp(z / temperature - lse_z)
    near = ops.max(ops.abs(d), axis=-1, keepdims=True, initial=0.0) <= temperature
    # T * sum q expm1(d / T), 0 in far rows: there it is unused and may overflow, and NaN
    # in an unused branch would still reach the gradient.
    d_near = ops.where(near, d, 0.0)
    s = ops.sum(q * d_near * _expm1_over(d_near / temperature), axis=-1, keepdims=True)
    # y = T x = T log(p / q), in the units of the logits: finite even for a tiny T.
    y = d - ops.where(near, s * _log1p_over(s / temperature), temperature * (lse_a - lse_z))
    small = ops.abs(y) <= 0.5 * temperature
    y_small, y_large = ops.where(small, y, 0.0), ops.where(small, 0.0, y)
    term_small = q * ops.square(y_small) * _psi_over_square(y_small / temperature)
    # the inputs of the unused branch are masked too: under XLA, T * T can fold to inf there,
    # and the zero gradient `where` sends back times inf is NaN
    q_large, p_large = ops.where(small, 0.0, q), ops.where(small, 0.0, p)
    term_large = temperature * (temperature * (q_large - p_large) + p_large * y_large)
    return ops.sum(ops.maximum(ops.where(small, term_small, term_large), 0.0), axis=-1)


def _expm1_over(t):
    """expm1(t) / t, 1 at t = 0 (series below 1e-3)."""
    tiny = ops.abs(t) < 1e-3
    safe = ops.where(tiny, 1.0, t)
    return ops.where(tiny, 1.0 + t * (0.5 + t / 6.0), ops.expm1(safe) / safe)


def _log1p_over(s):
    """log1p(s) / s, 1 at s = 0 (series below 1e-3)."""
    tiny = ops.abs(s) < 1e-3
    safe = ops.where(tiny, 1.0, s)
    return ops.where(tiny, 1.0 + s * (-0.5 + s / 3.0), ops.log1p(safe) / safe)


# psi(x) / x**2 = sum_{n >= 2} (n - 1) / n! x**(n - 2); nine terms: error < 1e-9 for |x| <= 0.5.
_PSI_SERIES = [(n - 1) / math.factorial(n) for n in range(2, 11)]


def _psi_over_square(x):
    out = ops.zeros_like(x) + _PSI_SERIES[-1]
    for coefficient in reversed(_PSI_SERIES[:-1]):
        out = out * x + coefficient
    return out


@keras.saving.register_keras_serializable(package="keras_smooth")
class TFKDRegularizationLoss(_common.FunctionLoss):
    """TF-KD_reg: distillation from a hand-made virtual teacher.

    See `tf_kd_regularization_loss`.
    """

    function = staticmethod(tf_kd_regularization_loss)
    settings = ("alpha", "temperature", "correct_probability")

    def __init__(self, alpha=0.1, temperature=20.0, correct_probability=0.9,
                 name="tf_kd_regularization_loss", **kwargs):
        super().__init__(name=name, alpha=alpha, temperature=temperature,
                         correct_probability=correct_probability, **kwargs)


def zipf_targets(y_true, y_pred, power=1.0, num_classes=None):
    """Zipf soft labels of a batch, checked as a loss checks them: see `targets.zipf`.

    Args:
        y_true: class ids `(N,)`/`(N, 1)` or one-hot rows `(N, K)`.
        y_pred: `(N, K)` logits that rank the wrong classes.
        power: exponent, >= 0.
        num_classes: `K`; inferred from `y_pred` when omitted.

    Returns:
        `(N, K)` float32 rows summing to 1.
    """
    num_classes = _common.infer_num_classes(y_pred, num_classes)
    _checks.check_width("y_pred", y_pred, num_classes)
    onehot = _checks.one_hot_labels(y_true, num_classes, name="y_true")
    return targets.zipf(onehot, y_pred, power)


def zipf_ls_loss(y_true, y_pred, weight=1.0, power=1.0):
    """Zipf's label smoothing (Liang et al. 2022).

    Formula:
        z = zipf_targets(y, logits)                 (see `keras_smooth.targets.zipf`)
        loss = H(y, q) + weight * KL(z || q)

    The paper ranks by the dense (per-location) predictions of a CNN; with
    only the final logits the ranking uses them. Masses that underflow float32
    (large `power`) count as 0, with 0 * log 0 = 0.
    """
    weight = _checks.check_non_negative("weight", weight)
    num_classes = _common.infer_num_classes(y_pred, None)
    onehot, log_q = _common.prepare(y_true, y_pred, num_classes, True)
    z = targets.zipf(onehot, y_pred, power)
    # A large power underflows the masses of the last ranks to 0: 0 * log 0 = 0 there.
    positive = z > 0
    log_z = ops.where(positive, ops.log(ops.where(positive, z, 1.0)), 0.0)
    kl = ops.sum(z * log_z, axis=-1) + _common.sparse_cross_entropy(z, log_q)
    return _common.cross_entropy(onehot, log_q) + weight * kl


@keras.saving.register_keras_serializable(package="keras_smooth")
class ZipfLSLoss(_common.FunctionLoss):
    """Zipf's LS: cross-entropy plus KL to rank-based Zipf soft labels; see `zipf_ls_loss`."""

    function = staticmethod(zipf_ls_loss)
    settings = ("weight", "power")

    def __init__(self, weight=1.0, power=1.0, name="zipf_ls_loss", **kwargs):
        super().__init__(name=name, weight=weight, power=power, **kwargs)
