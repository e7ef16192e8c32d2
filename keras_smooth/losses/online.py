"""Online label smoothing, OLS (Zhang et al. 2021): the loss and its per-epoch update.

The soft matrix changes once per epoch; the callback that updates it during
`fit` is `keras_smooth.callbacks.OnlineLabelSmoothing`.
"""

import keras
import numpy as np
from keras import ops

from keras_smooth import _checks
from keras_smooth import targets
from keras_smooth.losses import _common


@keras.saving.register_keras_serializable(package="keras_smooth")
class OnlineLabelSmoothingLoss(_common.Loss):
    """Online label smoothing, OLS (Zhang et al. 2021, "Delving deep into label smoothing",
    Eq. 5-7).

    Formula:
        S^t[k] = mean of q(x_i) over the training examples of class k that
                 the model classifies correctly after epoch t
        loss at epoch t+1 = alpha * H(y, q) + (1 - alpha) * H(S^t[y], q)
                          = H(targets.mix(y, S^t[y], 1 - alpha), q)

    The soft matrix is held in `soft_matrix` (not trained by gradients) and
    updated by the `keras_smooth.callbacks.OnlineLabelSmoothing` callback at the
    end of every epoch.
    Choices made here: S^0 is the identity, so the first epoch is plain
    cross-entropy (no predictions exist yet); a class with no correctly
    classified example keeps its previous row; the statistics come from one
    inference pass over the training data with the weights at the end of the
    epoch (the paper accumulates them during the epoch's training steps).

    Args:
        num_classes: K >= 2.
        alpha: weight of the hard-label term in [0, 1]. Default 0.5 (paper).
        from_logits: whether predictions are logits.
        soft_matrix: the starting `(K, K)` soft matrix, rows of
            probabilities; default the identity. `get_config()` holds the
            current matrix here, so serialization and `.keras` save/load keep it.
        reduction, name, dtype: as in `keras.losses.Loss`.
    """

    def __init__(self, num_classes, alpha=0.5, from_logits=True,
                 reduction="sum_over_batch_size", name="online_label_smoothing_loss",
                 dtype=None, soft_matrix=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.num_classes = _checks.check_num_classes(num_classes)
        self.alpha = _checks.check_unit_interval("alpha", alpha)
        self.from_logits = _checks.check_bool("from_logits", from_logits)
        initial = np.eye(self.num_classes) if soft_matrix is None else soft_matrix
        initial = _checks.check_class_matrix("soft_matrix", initial, self.num_classes)
        self.soft_matrix = keras.Variable(
            initial.astype("float32"), trainable=False, name="ols_soft_matrix"
        )

    def call(self, y_true, y_pred):
        onehot, log_q = _common.prepare(y_true, y_pred, self.num_classes, self.from_logits)
        rows = ops.matmul(onehot, ops.convert_to_tensor(self.soft_matrix))
        soft = targets.mix(onehot, rows, 1.0 - self.alpha)
        return ops.cast(_common.cross_entropy(soft, log_q), self.dtype)

    @property
    def matrix(self):
        """The current K x K soft matrix as a NumPy array."""
        return np.asarray(keras.ops.convert_to_numpy(self.soft_matrix))

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes, alpha=self.alpha,
                      from_logits=self.from_logits, soft_matrix=self.matrix.tolist())
        return config


def online_soft_matrix(labels, probs, previous):
    """One OLS update: per-class mean of the probabilities of correctly classified
    examples.

    Rows of classes without a correct example are copied from `previous`.
    `probs` must be probabilities (`_checks.looks_like_probabilities`; pass
    the softmax of logits) and `previous` a K x K matrix of probability rows.
    """
    held = np.asarray(probs).dtype  # 16-bit probabilities get their dtype's tolerance
    probs = _checks.as_real_array("probs", probs)
    _checks.check_finite("probs", probs)
    previous = _checks.as_real_array("previous", previous)
    size = previous.shape[0] if previous.ndim else 2
    updated = _checks.check_class_matrix("previous", previous, size).copy()
    labels = _checks.class_ids(labels, updated.shape[0])
    if probs.shape != (len(labels), updated.shape[0]):
        raise ValueError(
            f"`probs` must have shape ({len(labels)}, {updated.shape[0]}) for "
            f"{len(labels)} labels and a {updated.shape[0]}-class matrix, got {probs.shape}."
        )
    if not _checks.looks_like_probabilities(probs, dtype=held):
        raise ValueError(
            "`probs` must be probabilities (values in [0, 1], rows summing to 1); got "
            f"values in [{probs.min():g}, {probs.max():g}]. Pass the softmax of logits."
        )
    correct = probs.argmax(axis=1) == labels
    for k in range(updated.shape[0]):
        rows = correct & (labels == k)
        if rows.any():
            updated[k] = probs[rows].mean(axis=0)
    return updated.astype("float32")
