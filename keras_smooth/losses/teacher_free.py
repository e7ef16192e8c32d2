"""Teacher-free regularizers that distill from targets the model makes for itself.

TF-KD reg distills from a hand-made virtual teacher; Zipf's LS from rank-based
soft labels built from the model's own logits. Both targets are built in
`keras_smooth.targets` (`virtual_teacher`, `zipf`).
"""

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
    the authors' code uses a separate multiplier instead. Needs logits.
    """
    alpha = _checks.check_unit_interval("alpha", alpha)
    temperature = _checks.check_positive("temperature", temperature)
    a = _checks.check_unit_interval("correct_probability", correct_probability)
    num_classes = _common.infer_num_classes(y_pred, None)
    onehot, log_q = _common.prepare(y_true, y_pred, num_classes, True)
    virtual = targets.virtual_teacher(onehot, num_classes, a)
    teacher = ops.softmax(virtual / temperature, axis=-1)
    log_q_tau = ops.log_softmax(ops.cast(y_pred, "float32") / temperature, axis=-1)
    kl = ops.sum(teacher * (ops.log(teacher) - log_q_tau), axis=-1)
    hard = _common.cross_entropy(onehot, log_q)
    return (1.0 - alpha) * hard + alpha * temperature**2 * kl


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
    only the final logits the ranking uses them.
    """
    weight = _checks.check_non_negative("weight", weight)
    num_classes = _common.infer_num_classes(y_pred, None)
    onehot, log_q = _common.prepare(y_true, y_pred, num_classes, True)
    z = targets.zipf(onehot, y_pred, power)
    kl = ops.sum(z * (ops.log(z) - log_q), axis=-1)
    return _common.cross_entropy(onehot, log_q) + weight * kl


@keras.saving.register_keras_serializable(package="keras_smooth")
class ZipfLSLoss(_common.FunctionLoss):
    """Zipf's LS: cross-entropy plus KL to rank-based Zipf soft labels; see `zipf_ls_loss`."""

    function = staticmethod(zipf_ls_loss)
    settings = ("weight", "power")

    def __init__(self, weight=1.0, power=1.0, name="zipf_ls_loss", **kwargs):
        super().__init__(name=name, weight=weight, power=power, **kwargs)
