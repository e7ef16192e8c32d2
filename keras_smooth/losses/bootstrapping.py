"""Soft bootstrapping, BS_Soft (Reed et al. 2015): the target mixes in the prediction."""

import keras
from keras import ops

from keras_smooth import _checks
from keras_smooth import targets
from keras_smooth.losses import _common


def soft_bootstrapping_loss(y_true, y_pred, beta=0.95, from_logits=True):
    """Soft bootstrapping (Reed et al. 2015, "Training deep neural networks on noisy
    labels with bootstrapping", §3.2).

    Formula:
        t = beta * y + (1 - beta) * q  = targets.mix(y, q, 1 - beta)
        loss = -sum_k t_k * log q_k
             = beta * H(y, q) + (1 - beta) * H(q)

    The target contains the prediction q itself and is not detached: the
    second term is the entropy of q, the "minimum entropy regularization"
    the paper and ILS paper §V describe. beta = 0.95 as recommended.
    """
    beta = _checks.check_unit_interval("beta", beta)
    num_classes = _common.infer_num_classes(y_pred, None)
    onehot, log_q = _common.prepare(y_true, y_pred, num_classes, from_logits)
    return _common.cross_entropy(targets.mix(onehot, ops.exp(log_q), 1.0 - beta), log_q)


@keras.saving.register_keras_serializable(package="keras_smooth")
class SoftBootstrappingLoss(_common.FunctionLoss):
    """Soft bootstrapping, BS_Soft (Reed et al. 2015): see `soft_bootstrapping_loss`.

    Examples:
    >>> import numpy as np
    >>> from keras_smooth.losses import SoftBootstrappingLoss
    >>> loss = SoftBootstrappingLoss(beta=0.95)
    >>> round(float(loss(np.array([0]), np.array([[2.0, 0.0]], "float32"))), 4)
    0.1388
    """

    function = staticmethod(soft_bootstrapping_loss)
    settings = ("beta", "from_logits")

    def __init__(self, beta=0.95, from_logits=True, name="soft_bootstrapping_loss", **kwargs):
        super().__init__(name=name, beta=beta, from_logits=from_logits, **kwargs)
