"""Margin-based label smoothing, MbLS (Liu et al. 2022)."""

import keras
from keras import ops

from keras_smooth import _checks
from keras_smooth.losses import _common


def margin_ls_loss(y_true, y_pred, margin=10.0, weight=0.1):
    """Margin-based label smoothing, MbLS (Liu et al. 2022, "The devil is in the margin",
    Eq. 7).

    Formula (z = logits):
        d_k = max_j z_j - z_k
        loss = H(y, softmax(z)) + weight * sum_k max(0, d_k - margin)

    Only logit distances larger than `margin` are penalised (LS penalises
    every distance towards 0). Defaults m = 10, lambda = 0.1 from the paper.
    Needs logits.
    """
    margin = _checks.check_non_negative("margin", margin)
    weight = _checks.check_non_negative("weight", weight)
    num_classes = _common.infer_num_classes(y_pred, None)
    onehot, log_q = _common.prepare(y_true, y_pred, num_classes, True)
    logits = ops.cast(y_pred, "float32")
    distances = _common.row_max(logits) - logits
    penalty = ops.sum(ops.relu(distances - margin), axis=-1)
    return _common.cross_entropy(onehot, log_q) + weight * penalty


@keras.saving.register_keras_serializable(package="keras_smooth")
class MarginLSLoss(_common.FunctionLoss):
    """MbLS: cross-entropy plus a hinge on logit distances beyond a margin.

    See `margin_ls_loss`.
    """

    function = staticmethod(margin_ls_loss)
    settings = ("margin", "weight")

    def __init__(self, margin=10.0, weight=0.1, name="margin_ls_loss", **kwargs):
        super().__init__(name=name, margin=margin, weight=weight, **kwargs)
