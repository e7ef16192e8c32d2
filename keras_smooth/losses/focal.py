"""Focal loss with a sample-dependent gamma, FLSD-53 (Mukhoti et al. 2020)."""

import keras
from keras import ops

from keras_smooth import _checks
from keras_smooth.losses import _common


def adaptive_focal_loss(y_true, y_pred, gamma_low=5.0, gamma_high=3.0, threshold=0.2,
                        from_logits=True):
    """Focal loss with sample-dependent gamma, FLSD-53 (Mukhoti et al. 2020, §5).

    Formula:
        p_t = sum_k y_k q_k
        gamma = gamma_low if p_t < threshold else gamma_high     (5 and 3 below 0.2)
        loss = -(1 - p_t) ** gamma * log p_t

    gamma is chosen per sample from the current prediction and is not
    differentiated through. The factor is computed as
    `exp(gamma * log(sum_{k != t} q_k))` with the log-mass of the wrong classes
    from a log-sum-exp, so it is exact where `p_t` rounds to 1 and its
    gradient stays finite for every gamma >= 0 (0 ** 0 = 1: gamma = 0 is
    cross-entropy, gradient included). Labels must be hard (ids or one-hot).
    """
    gamma_low = _checks.check_non_negative("gamma_low", gamma_low)
    gamma_high = _checks.check_non_negative("gamma_high", gamma_high)
    threshold = _checks.check_unit_interval("threshold", threshold)
    num_classes = _common.infer_num_classes(y_pred, None)
    onehot, log_q = _common.prepare(y_true, y_pred, num_classes, from_logits)
    log_p_t = ops.sum(onehot * log_q, axis=-1)
    p_t = ops.exp(log_p_t)
    gamma = ops.stop_gradient(ops.where(p_t < threshold, gamma_low, gamma_high))
    # log(1 - p_t) as the log-sum-exp of the wrong classes' log-probabilities.
    log_wrong = ops.logsumexp(ops.where(onehot > 0.5, -float("inf"), log_q), axis=-1)
    return -ops.exp(gamma * log_wrong) * log_p_t


@keras.saving.register_keras_serializable(package="keras_smooth")
class AdaptiveFocalLoss(_common.FunctionLoss):
    """FLSD-53: focal loss with gamma 5 where p_t < 0.2, else 3 (Mukhoti et al. 2020).

    See `adaptive_focal_loss`. With `gamma_low = gamma_high = 0` it is
    cross-entropy.
    """

    function = staticmethod(adaptive_focal_loss)
    settings = ("gamma_low", "gamma_high", "threshold", "from_logits")

    def __init__(self, gamma_low=5.0, gamma_high=3.0, threshold=0.2, from_logits=True,
                 name="adaptive_focal_loss", **kwargs):
        super().__init__(name=name, gamma_low=gamma_low, gamma_high=gamma_high,
                         threshold=threshold, from_logits=from_logits, **kwargs)
