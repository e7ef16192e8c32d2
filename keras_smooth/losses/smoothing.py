"""Uniform label smoothing for integer and one-hot labels."""

import keras

from keras_smooth import _checks
from keras_smooth import targets
from keras_smooth.losses import _common


def label_smoothing_loss(y_true, y_pred, epsilon=0.1, from_logits=True, num_classes=None):
    """Per-sample cross-entropy against uniformly smoothed labels.

    Formula:
        t = (1 - epsilon) * onehot(y) + epsilon / K
        loss = -sum_k t_k * log p_k

    Args:
        y_true: class ids `(N,)`/`(N, 1)`, one-hot `(N, K)`, or soft labels
            `(N, K)` (non-negative rows summing to 1), as
            `keras.losses.CategoricalCrossentropy` accepts them. Ids must be
            whole numbers in [0, K); anything else raises `ValueError`.
        y_pred: `(N, K)` logits (or probabilities with `from_logits=False`).
        epsilon: smoothing factor in [0, 1).
        from_logits: whether `y_pred` are logits.
        num_classes: `K`; inferred from `y_pred` when omitted.

    Returns:
        `(N,)` float32 losses.

    Examples:
    >>> import numpy as np
    >>> from keras_smooth.losses import label_smoothing_loss
    >>> logits = np.array([[2.0, 0.0, -1.0]], "float32")
    >>> np.round(np.asarray(label_smoothing_loss([0], logits, epsilon=0.1)), 4)
    array([0.3365], dtype=float32)
    """
    num_classes = _common.infer_num_classes(y_pred, num_classes)
    onehot, log_probs = _common.prepare(y_true, y_pred, num_classes, from_logits, soft=True)
    smoothed = targets.uniform(onehot, num_classes, epsilon)
    return _common.cross_entropy(smoothed, log_probs)


@keras.saving.register_keras_serializable(package="keras_smooth")
class LabelSmoothingLoss(_common.Loss):
    """Cross-entropy with uniform label smoothing, for integer or one-hot labels.

    `keras.losses.SparseCategoricalCrossentropy` has no `label_smoothing`; this
    loss accepts class ids `(N,)`/`(N, 1)` and one-hot `(N, K)` alike and gives
    the same value for both; soft label rows (non-negative, summing to 1) are
    smoothed the same way. With `epsilon=0` it is plain cross-entropy.

    Formula:
        t = (1 - epsilon) * onehot(y) + epsilon / K
        loss = -sum_k t_k * log p_k

    Args:
        epsilon: smoothing factor in [0, 1). Default 0.1.
        from_logits: whether predictions are logits (default) or probabilities.
        num_classes: `K`; inferred from the predictions' width when omitted.
        reduction, name, dtype: as in `keras.losses.Loss`.

    Examples:
    >>> import keras
    >>> from keras_smooth.losses import LabelSmoothingLoss
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> model.compile(optimizer="adam", loss=LabelSmoothingLoss(epsilon=0.1))

    References:
        Szegedy et al., 2016, "Rethinking the Inception Architecture"; ILS
        paper (Maher & Kull), §II.
    """

    def __init__(
        self,
        epsilon=0.1,
        from_logits=True,
        num_classes=None,
        reduction="sum_over_batch_size",
        name="label_smoothing_loss",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.epsilon = _checks.check_fraction("epsilon", epsilon)
        self.from_logits = _checks.check_bool("from_logits", from_logits)
        self.num_classes = (
            None if num_classes is None else _checks.check_num_classes(num_classes)
        )

    def call(self, y_true, y_pred):
        values = label_smoothing_loss(
            y_true, y_pred, self.epsilon, self.from_logits, self.num_classes
        )
        return keras.ops.cast(values, self.dtype)

    def get_config(self):
        config = super().get_config()
        config.update(
            epsilon=self.epsilon,
            from_logits=self.from_logits,
            num_classes=self.num_classes,
        )
        return config
