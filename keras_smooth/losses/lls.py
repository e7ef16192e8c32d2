"""Learnable Label Smoothing (LLS)."""

import keras
from keras import ops

from keras_smooth import targets
from keras_smooth.losses import _common
from keras_smooth.losses._learnable import LearnableTargetLoss, matrix_loss_inputs


def _symmetric_kl(soft, log_probs, probs):
    # KL(t || p) + KL(p || t) = sum_k (t_k - p_k) (log t_k - log p_k): one pass.
    log_targets = _common.safe_log(soft)
    return 0.5 * ops.sum((soft - probs) * (log_targets - log_probs), axis=-1)


def lls_loss(y_true, y_pred, matrix, alpha=0.1, from_logits=True):
    """Per-sample LLS loss for a given row-stochastic K x K matrix.

    Formula:
        t = (1 - alpha) * onehot(y) + alpha * matrix[y]
        loss = 0.5 * (KL(t || p) + KL(p || t))

    (LLS paper, Eq. 4-5 and the pseudo code of Appendix A.) Logarithms of
    target entries are clamped at `keras.config.epsilon()`, so `alpha = 0`
    stays finite (its reverse term is then a clipped KL, not cross-entropy).

    Args:
        y_true: class ids `(N,)`/`(N, 1)` or one-hot `(N, K)`.
        y_pred: `(N, K)` logits (or probabilities with `from_logits=False`).
        matrix: `(K, K)` row-stochastic matrix (e.g. `LLSLoss(...).q_matrix`).
        alpha: mixing weight in [0, 1).
        from_logits: whether `y_pred` are logits.

    Returns:
        `(N,)` float32 losses.

    Examples:
    >>> import numpy as np
    >>> from keras_smooth.losses import lls_loss
    >>> q = np.full((3, 3), 1 / 3, "float32")
    >>> logits = np.array([[2.0, 0.0, -1.0]], "float32")
    >>> np.round(np.asarray(lls_loss([0], logits, q, alpha=0.1)), 4)
    array([0.0553], dtype=float32)
    """
    return _symmetric_kl(*matrix_loss_inputs(y_true, y_pred, matrix, alpha, from_logits))


@keras.saving.register_keras_serializable(package="keras_smooth")
class LLSLoss(LearnableTargetLoss):
    """Learnable Label Smoothing with a trainable K x K Q-matrix.

    Q is held as K x K logits in a `QMatrix` layer (`loss.matrix_layer`),
    initialised to zeros, so training starts as uniform label smoothing. Row
    `y` of `softmax(Q)` replaces the uniform vector of LS; both the network and
    Q learn from the symmetric KL (LLS paper, Eq. 4-5, Appendix A).

    Formula:
        t = (1 - alpha) * onehot(y) + alpha * softmax(Q)[y]
        loss = 0.5 * (KL(t || p) + KL(p || t))

    Training Q: on the TensorFlow backend a plain `compile`/`fit` trains Q with
    `matrix_optimizer` (default Adam, learning rate 1e-2), one step per
    training batch; `evaluate` never changes it. On any backend,
    `keras_smooth.TrainableTargetsModel(model)` makes the model's own optimizer
    train Q instead. Under `tf.distribute`, create the loss inside
    `strategy.scope()`. Unsupported set-ups raise instead of leaving Q untrained.

    Args:
        num_classes: `K`, at least 2.
        alpha: mixing weight in [0, 1); the paper's default is 0.1.
        from_logits: whether predictions are logits (default) or probabilities.
        matrix_optimizer: optimizer (or identifier) for Q on the TensorFlow path.
        matrix_initializer, matrix_regularizer: for Q's logits.
        reduction, name, dtype: as in `keras.losses.Loss`.
        matrix_trainable: whether Q trains (the same as setting
            `loss.matrix_layer.trainable`); kept by saving.
        matrix_logits: `(K, K)` starting logits of Q, overriding
            `matrix_initializer`. `get_config()` does not hold the learned
            logits (a `.keras` file does); pass them here to copy a matrix.
        neighbors: `N` in [1, K - 1] for a sparse Q of N learnable entries
            per row (memory O(K N)), for very many classes; None (default)
            keeps the dense K x K matrix. How neighbours are chosen and
            re-chosen: see `LearnableTargetLoss`.
        neighbor_ids: optional `(K, N)` int starting neighbours (distinct,
            never the row's own class), e.g. a teacher's most confused classes.
        rechoose_neighbors: whether training re-chooses the neighbours
            (TensorFlow; default True); kept by saving.

    Examples:
    >>> import keras
    >>> from keras_smooth.losses import LLSLoss
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> loss = LLSLoss(num_classes=3, alpha=0.1)
    >>> model.compile(optimizer="adam", loss=loss)
    >>> loss.q_matrix.shape
    (3, 3)
    >>> sparse = LLSLoss(num_classes=1000, neighbors=16)  # O(K N) for many classes
    >>> tuple(sparse.matrix_layer.logits.shape)
    (1000, 18)

    References:
        Chhabra et al., "Learnable Label Smoothing", Eq. 4-5 and Appendix A.
    """

    zero_diagonal = False

    def __init__(self, num_classes, alpha=0.1, from_logits=True, name="lls_loss", **kwargs):
        super().__init__(num_classes, alpha=alpha, from_logits=from_logits, name=name, **kwargs)

    @property
    def q_matrix(self):
        """The current K x K row-stochastic Q-matrix, as a NumPy array."""
        return self.matrix

    def objective(self, onehot, log_probs, probs, rows):
        return _symmetric_kl(targets.mix(onehot, rows, self.alpha), log_probs, probs)

    def dense_step(self, onehot, log_probs, probs, rows):
        # t = `targets.mix(onehot, softmax(Q[y]), alpha)` and the values of `objective`,
        # 0.5 sum_k (t_k - p_k) (log max(t_k, eps) - log p_k) (Eq. 5).
        soft = targets.mix(onehot, rows, self.alpha)
        eps = keras.config.epsilon()
        clamped = ops.maximum(soft, eps)
        gap, log_gap = soft - probs, ops.log(clamped) - log_probs
        values = 0.5 * ops.sum(gap * log_gap, axis=-1)

        def backward(upstream):
            # Both the network and Q learn (no stopped gradient): with p = exp(log p),
            # d/d(log p_j) = -(p_j log_gap_j + gap_j) / 2 and d/d t_j = (log_gap_j +
            # gap_j m_j / t_j) / 2, m_j = [t_j >= eps] (the clamp's gradient); Q's
            # logits through t = ... + alpha softmax(Q[y]) and the softmax's chain rule.
            half = 0.5 * upstream[:, None]
            d_log_probs = -half * (probs * log_gap + gap)
            d_soft = log_gap + ops.where(soft >= eps, gap / clamped, 0.0)
            centred = d_soft - ops.sum(rows * d_soft, axis=-1, keepdims=True)
            return d_log_probs, (self.alpha * half) * rows * centred

        return values, backward

    def support_objective(self, log_probs, probs, columns, support, tail):
        # sum_k (t_k - p_k)(log t_k - log p_k) with t_k = `tail` off the support:
        # the sum over all k in closed form (sum_k p_k = 1), corrected on the support.
        lp_s = _common.take_columns(log_probs, columns)
        p_s = ops.exp(lp_s)
        log_tail, log_support = _common.safe_log(tail), _common.safe_log(support)
        s1 = ops.sum(log_probs, axis=-1, keepdims=True)
        s2 = ops.sum(probs * log_probs, axis=-1, keepdims=True)
        everywhere = self.num_classes * tail * log_tail - tail * s1 - log_tail + s2
        on_support = (support - p_s) * (log_support - lp_s) - (tail - p_s) * (log_tail - lp_s)
        return 0.5 * (everywhere[:, 0] + ops.sum(on_support, axis=-1))
