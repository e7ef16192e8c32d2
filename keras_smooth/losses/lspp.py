"""Label Smoothing++ (LS++)."""

import keras
from keras import ops

from keras_smooth import targets
from keras_smooth.losses import _common
from keras_smooth.losses._learnable import LearnableTargetLoss, matrix_loss_inputs


def _split_symmetric_ce(soft, log_probs, probs):
    network = _common.cross_entropy(ops.stop_gradient(soft), log_probs)
    matrix = _common.cross_entropy(ops.stop_gradient(probs), _common.safe_log(soft))
    return 0.5 * (network + matrix)


def lspp_loss(y_true, y_pred, matrix, alpha=0.1, from_logits=True):
    """Per-sample LS++ loss for a given zero-diagonal K x K matrix.

    Formula:
        t = (1 - alpha) * onehot(y) + alpha * C[y]
        loss = 0.5 * (H(sg(t), p) + H(sg(p), t))

    `sg` stops the gradient: the network learns only from H(t, p), the
    C-matrix only from H(p, t) (LS++ paper, §3.2). The sum is halved as in the
    authors' code. `log t` is clamped at `keras.config.epsilon()`.

    Args:
        y_true: class ids `(N,)`/`(N, 1)` or one-hot `(N, K)`.
        y_pred: `(N, K)` logits (or probabilities with `from_logits=False`).
        matrix: `(K, K)` matrix with zero diagonal and rows summing to 1.
        alpha: mixing weight in [0, 1).
        from_logits: whether `y_pred` are logits.

    Returns:
        `(N,)` float32 losses.

    Examples:
    >>> import numpy as np
    >>> from keras_smooth.losses import lspp_loss
    >>> c = (np.ones((3, 3)) - np.eye(3)) / 2
    >>> logits = np.array([[2.0, 0.0, -1.0]], "float32")
    >>> np.round(np.asarray(lspp_loss([0], logits, c, alpha=0.1)), 4)
    array([0.4883], dtype=float32)
    """
    return _split_symmetric_ce(*matrix_loss_inputs(y_true, y_pred, matrix, alpha, from_logits))


@keras.saving.register_keras_serializable(package="keras_smooth")
class LSPlusPlusLoss(LearnableTargetLoss):
    """Label Smoothing++ with a trainable zero-diagonal C-matrix.

    Each row of C is a softmax over that row's K - 1 off-diagonal logits
    (initialised to zeros, so LS++ starts by spreading alpha / (K - 1) over the
    wrong classes); the true class keeps exactly 1 - alpha. Gradients are
    split: the network learns from H(sg(t), p) only, C from H(sg(p), t) only
    (LS++ paper, §3.2).

    Formula:
        t = (1 - alpha) * onehot(y) + alpha * C[y],   C[y, y] = 0
        loss = 0.5 * (H(sg(t), p) + H(sg(p), t))

    Training C works as for `LLSLoss`: a plain `fit` on the TensorFlow backend
    (C stepped by `matrix_optimizer`), or `keras_smooth.TrainableTargetsModel`
    on any backend. The authors apply weight decay to C; pass
    `matrix_regularizer=keras.regularizers.L2(...)` for the same effect.

    Args:
        num_classes: `K`, at least 2.
        alpha: mixing weight in [0, 1); the paper uses 0.1.
        from_logits: whether predictions are logits (default) or probabilities.
        matrix_optimizer, matrix_initializer, matrix_regularizer: for C.
        reduction, name, dtype: as in `keras.losses.Loss`.
        matrix_trainable: whether C trains (the same as setting
            `loss.matrix_layer.trainable`); kept by saving.
        matrix_logits: `(K, K)` starting logits of C, overriding
            `matrix_initializer`. `get_config()` does not hold the learned
            logits (a `.keras` file does); pass them here to copy a matrix.
        neighbors: `N` in [1, K - 1] for a sparse C of N learnable entries
            per row (memory O(K N)), for very many classes; None (default)
            keeps the dense K x K matrix. How neighbours are chosen and
            re-chosen: see `LearnableTargetLoss`.
        neighbor_ids: optional `(K, N)` int starting neighbours (distinct,
            never the row's own class), e.g. a teacher's most confused classes.
        rechoose_neighbors: whether training re-chooses the neighbours
            (TensorFlow; default True); kept by saving.

    Examples:
    >>> import keras
    >>> from keras_smooth.losses import LSPlusPlusLoss
    >>> loss = LSPlusPlusLoss(num_classes=4, alpha=0.1)
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    >>> model.compile(optimizer="adam", loss=loss)
    >>> float(loss.c_matrix[0, 1])
    0.333...

    References:
        Chhabra, Venkateswara and Li, "Label Smoothing++", §3.2 (Eq. 3).
    """

    zero_diagonal = True

    def __init__(self, num_classes, alpha=0.1, from_logits=True, name="lspp_loss", **kwargs):
        super().__init__(num_classes, alpha=alpha, from_logits=from_logits, name=name, **kwargs)

    @property
    def c_matrix(self):
        """The current K x K C-matrix (zero diagonal, rows sum to 1), NumPy."""
        return self.matrix

    def objective(self, onehot, log_probs, probs, rows):
        return _split_symmetric_ce(targets.mix(onehot, rows, self.alpha), log_probs, probs)

    def dense_step(self, onehot, log_probs, probs, rows):
        # rows = C[y] (exactly 0 at the label), t = `targets.mix(onehot, C[y], alpha)`
        # written out to keep alpha C[y], and the values of `objective`:
        # 0.5 (H(sg(t), p) + H(sg(p), log max(t, eps))).
        spread = self.alpha * rows  # = t off the label (exactly: 0 * (1 - alpha) + it)
        soft = ops.cast(onehot, "float32") * (1.0 - self.alpha) + spread
        eps = keras.config.epsilon()
        values = -0.5 * ops.sum(
            soft * log_probs + probs * ops.log(ops.maximum(soft, eps)), axis=-1)

        def backward(upstream):
            # The network: d/d(log p) of H(sg(t), p) = -t. The matrix (§3.2): with
            # r = C[y], t_j = alpha r_j off the label, m_j = [t_j >= eps] (the clamp's
            # gradient; the label's entry has r_y = 0 and no gradient), the softmax's
            # chain rule gives d/d(logit_j) of H(sg(p), log max(t, eps)) =
            # r_j sum_k p_k m_k - p_j m_j.
            half = 0.5 * upstream[:, None]
            kept = ops.where(spread >= eps, probs, 0.0)  # eps > 0: never the label
            d_rows = half * (rows * ops.sum(kept, axis=-1, keepdims=True) - kept)
            return -half * soft, d_rows

        return values, backward

    def support_objective(self, log_probs, probs, columns, support, tail):
        # H(t, p) and H(p, t) with t_k = `tail` off the support, from the sums
        # over all k (sum_k p_k = 1) and the support's entries.
        lp_s = _common.take_columns(log_probs, columns)
        p_s = ops.stop_gradient(ops.exp(lp_s))
        fixed_support, fixed_tail = ops.stop_gradient(support), ops.stop_gradient(tail)
        network = -fixed_tail[:, 0] * ops.sum(log_probs, axis=-1) - ops.sum(
            (fixed_support - fixed_tail) * lp_s, axis=-1
        )
        log_tail = _common.safe_log(tail)[:, 0]
        matrix = -log_tail * (1.0 - ops.sum(p_s, axis=-1)) - ops.sum(
            p_s * _common.safe_log(support), axis=-1
        )
        return 0.5 * (network + matrix)
