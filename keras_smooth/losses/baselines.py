"""Baseline label regularizers the ILS, LLS and LS++ papers compare against.

Each has a per-sample function and a `keras.losses.Loss` class. Online label
smoothing also needs per-epoch state: `OnlineLabelSmoothing` is its callback.
Self-distillation (Dis) is `DistillationLoss(beta=1.0, temperature=1.0)` on a
teacher of the same architecture (ILS paper §VI, Appendix D).

The formulas are those of the original papers named in each docstring; where
a paper leaves a choice open, the docstring says what is done here.
"""

import keras
import numpy as np
from keras import ops

from keras_smooth import _checks
from keras_smooth import calibration
from keras_smooth.losses import _common
from keras_smooth.losses.distillation import SubstituteTeacherLoss


class _FunctionLoss(_common.Loss):
    """A Loss whose `call` is a per-sample function of (y_true, y_pred, **settings)."""

    function = None
    settings = ()

    def __init__(self, reduction="sum_over_batch_size", name=None, dtype=None, **settings):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        type(self).function(np.zeros((1,), "int32"), np.zeros((1, 2), "float32"), **settings)  # validate now
        for key, value in settings.items():
            setattr(self, key, value)

    def call(self, y_true, y_pred):
        values = type(self).function(y_true, y_pred, **{k: getattr(self, k) for k in self.settings})
        return ops.cast(values, self.dtype)

    def get_config(self):
        config = super().get_config()
        config.update({k: getattr(self, k) for k in self.settings})
        return config


def _numpy_ids(labels, num_classes):
    """Flat integer class ids from NumPy-like labels; ValueError for anything else."""
    labels = np.asarray(labels).reshape(-1)
    message = _checks.label_problem(labels, num_classes, "labels", "ids")
    if message is not None:
        raise ValueError(message)
    return labels.astype(int)


def _row_max(x):
    """Row maxima, keepdims; defined for a batch of zero rows (TF's max refuses it)."""
    return ops.max(x, axis=-1, keepdims=True, initial=-float("inf"))


# --- soft bootstrapping ----------------------------------------------------------------


def soft_bootstrapping_loss(y_true, y_pred, beta=0.95, from_logits=True):
    """Soft bootstrapping (Reed et al. 2015, "Training deep neural networks on noisy labels
    with bootstrapping", §3.2).

    Formula:
        loss = -sum_k (beta * y_k + (1 - beta) * q_k) * log q_k
             = beta * H(y, q) + (1 - beta) * H(q)

    The target contains the prediction q itself and is not detached: the
    second term is the entropy of q, the "minimum entropy regularization"
    the paper and ILS paper §V describe. beta = 0.95 as recommended.
    """
    beta = _checks.check_unit_interval("beta", beta)
    num_classes = _common.infer_num_classes(y_pred, None)
    onehot, log_q = _common.prepare(y_true, y_pred, num_classes, from_logits)
    q = ops.exp(log_q)
    return _common.cross_entropy(beta * onehot + (1.0 - beta) * q, log_q)


@keras.saving.register_keras_serializable(package="keras_smooth")
class SoftBootstrappingLoss(_FunctionLoss):
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


# --- focal loss with adaptive gamma -----------------------------------------------------


def adaptive_focal_loss(y_true, y_pred, gamma_low=5.0, gamma_high=3.0, threshold=0.2, from_logits=True):
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
class AdaptiveFocalLoss(_FunctionLoss):
    """FLSD-53: focal loss with gamma 5 where p_t < 0.2, else 3 (Mukhoti et al. 2020).

    See `adaptive_focal_loss`. With `gamma_low = gamma_high = 0` it is
    cross-entropy.
    """

    function = staticmethod(adaptive_focal_loss)
    settings = ("gamma_low", "gamma_high", "threshold", "from_logits")

    def __init__(self, gamma_low=5.0, gamma_high=3.0, threshold=0.2, from_logits=True,
                 name="adaptive_focal_loss", **kwargs):
        super().__init__(name=name, gamma_low=gamma_low, gamma_high=gamma_high, threshold=threshold,
                         from_logits=from_logits, **kwargs)


# --- margin-based label smoothing -------------------------------------------------------


def margin_ls_loss(y_true, y_pred, margin=10.0, weight=0.1):
    """Margin-based label smoothing, MbLS (Liu et al. 2022, "The devil is in the margin", Eq. 7).

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
    distances = _row_max(logits) - logits
    penalty = ops.sum(ops.relu(distances - margin), axis=-1)
    return _common.cross_entropy(onehot, log_q) + weight * penalty


@keras.saving.register_keras_serializable(package="keras_smooth")
class MarginLSLoss(_FunctionLoss):
    """MbLS: cross-entropy plus a hinge on logit distances beyond a margin; see `margin_ls_loss`."""

    function = staticmethod(margin_ls_loss)
    settings = ("margin", "weight")

    def __init__(self, margin=10.0, weight=0.1, name="margin_ls_loss", **kwargs):
        super().__init__(name=name, margin=margin, weight=weight, **kwargs)


# --- teacher-free KD (regularization) ---------------------------------------------------


def tf_kd_regularization_loss(y_true, y_pred, alpha=0.1, temperature=20.0, correct_probability=0.9):
    """Teacher-free knowledge distillation, TF-KD_reg (Yuan et al. 2020, "Revisiting knowledge
    distillation via label smoothing regularization", §4).

    A hand-made "virtual teacher" puts `a = correct_probability` on the true
    class and (1 - a) / (K - 1) on every other class; it is softened at
    temperature tau and distilled:

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
    virtual = a * onehot + (1.0 - a) / (num_classes - 1) * (1.0 - onehot)
    teacher = ops.softmax(virtual / temperature, axis=-1)
    log_q_tau = ops.log_softmax(ops.cast(y_pred, "float32") / temperature, axis=-1)
    kl = ops.sum(teacher * (ops.log(teacher) - log_q_tau), axis=-1)
    return (1.0 - alpha) * _common.cross_entropy(onehot, log_q) + alpha * temperature**2 * kl


@keras.saving.register_keras_serializable(package="keras_smooth")
class TFKDRegularizationLoss(_FunctionLoss):
    """TF-KD_reg: distillation from a hand-made virtual teacher; see `tf_kd_regularization_loss`."""

    function = staticmethod(tf_kd_regularization_loss)
    settings = ("alpha", "temperature", "correct_probability")

    def __init__(self, alpha=0.1, temperature=20.0, correct_probability=0.9, name="tf_kd_regularization_loss",
                 **kwargs):
        super().__init__(name=name, alpha=alpha, temperature=temperature,
                         correct_probability=correct_probability, **kwargs)


# --- Zipf's label smoothing -------------------------------------------------------------


def zipf_targets(y_true, y_pred, power=1.0, num_classes=None):
    """Zipf soft labels (Liang et al. 2022, "Efficient one pass self-distillation with Zipf's
    label smoothing", §3.2).

    The true class gets rank 1; the other classes are ranked 2..K by the
    network's own current logits (largest first); class of rank r gets mass
    proportional to r ** -power. No gradient flows through the ranking.
    """
    power = _checks.check_non_negative("power", power)
    num_classes = _common.infer_num_classes(y_pred, num_classes)
    _checks.check_width("y_pred", y_pred, num_classes)
    onehot = _checks.one_hot_labels(y_true, num_classes, name="y_true")
    logits = ops.stop_gradient(ops.cast(y_pred, "float32"))
    # The true class first, then the others by descending logit.
    keyed = ops.where(onehot > 0.5, _row_max(logits) + 1.0, logits)
    order = ops.argsort(-keyed, axis=-1)
    ranks = ops.cast(ops.argsort(order, axis=-1), "float32") + 1.0
    mass = ops.power(ranks, -power)
    return mass / ops.sum(mass, axis=-1, keepdims=True)


def zipf_ls_loss(y_true, y_pred, weight=1.0, power=1.0):
    """Zipf's label smoothing.

    Formula:
        z = zipf_targets(y, logits)                 (see `zipf_targets`)
        loss = H(y, q) + weight * KL(z || q)

    The paper ranks by the dense (per-location) predictions of a CNN; with
    only the final logits the ranking uses them.
    """
    weight = _checks.check_non_negative("weight", weight)
    num_classes = _common.infer_num_classes(y_pred, None)
    onehot, log_q = _common.prepare(y_true, y_pred, num_classes, True)
    z = zipf_targets(onehot, y_pred, power, num_classes)
    kl = ops.sum(z * (ops.log(z) - log_q), axis=-1)
    return _common.cross_entropy(onehot, log_q) + weight * kl


@keras.saving.register_keras_serializable(package="keras_smooth")
class ZipfLSLoss(_FunctionLoss):
    """Zipf's LS: cross-entropy plus KL to rank-based Zipf soft labels; see `zipf_ls_loss`."""

    function = staticmethod(zipf_ls_loss)
    settings = ("weight", "power")

    def __init__(self, weight=1.0, power=1.0, name="zipf_ls_loss", **kwargs):
        super().__init__(name=name, weight=weight, power=power, **kwargs)


# --- class-similarity label smoothing ---------------------------------------------------


def class_similarity_matrix(x, labels, num_classes):
    """Row-stochastic, zero-diagonal class similarities from Euclidean distances of class means.

    Class-based LS (Liu & JaJa; ILS paper §V–VI with the Euclidean distance
    between inputs): with class centres mu_k (means of the flattened inputs),
    S[i, j] = (1 / ||mu_i - mu_j||) / sum_{l != i} (1 / ||mu_i - mu_l||) for
    j != i and S[i, i] = 0. Nearer classes get more mass; the matrix does not
    change when the inputs are scaled.

    Returns:
        `(K, K)` float32 NumPy array.
    """
    num_classes = _checks.check_num_classes(num_classes)
    x = np.asarray(x, dtype="float64").reshape(len(x), -1)
    _checks.check_finite("x", x)
    labels = _numpy_ids(labels, num_classes)
    if len(labels) != len(x):
        raise ValueError(f"`x` has {len(x)} rows but `labels` has {len(labels)}.")
    missing = sorted(set(range(num_classes)) - set(labels.tolist()))
    if missing:
        raise ValueError(f"classes {missing} have no examples: cannot place their centres.")
    centres = np.stack([x[labels == k].mean(axis=0) for k in range(num_classes)])
    distances = np.linalg.norm(centres[:, None, :] - centres[None, :, :], axis=-1)
    off = ~np.eye(num_classes, dtype=bool)
    if np.any(distances[off] == 0):
        i, j = np.argwhere((distances == 0) & off)[0]
        raise ValueError(f"classes {i} and {j} have identical centres: their similarity is undefined.")
    weights = np.where(off, 1.0 / np.where(off, distances, 1.0), 0.0)
    return (weights / weights.sum(axis=1, keepdims=True)).astype("float32")


@keras.saving.register_keras_serializable(package="keras_smooth")
class ClassSimilarityLSLoss(SubstituteTeacherLoss):
    """Class-based label smoothing, cLS (Liu & JaJa; ILS paper §VI).

    Formula:
        t = (1 - epsilon) * onehot(y) + epsilon * S[y]
        loss = H(t, q)

    with `S = class_similarity_matrix(x_train, y_train, K)`: the masses on the
    wrong classes sum to epsilon and nearer classes (by Euclidean distance of
    class centres) get more.

    Args:
        similarity: `(K, K)` row-stochastic matrix, e.g. from
            `class_similarity_matrix`.
        epsilon: smoothing factor in [0, 1).
        from_logits: whether predictions are logits.
    """

    def __init__(self, similarity, epsilon=0.1, from_logits=True, reduction="sum_over_batch_size",
                 name="class_similarity_ls_loss", dtype=None):
        epsilon = _checks.check_fraction("epsilon", epsilon)
        super().__init__(similarity, alpha=epsilon, beta=1.0, temperature=1.0, from_logits=from_logits,
                         reduction=reduction, name=name, dtype=dtype)
        self.epsilon = epsilon

    def get_config(self):
        config = super().get_config()
        for key in ("alpha", "beta", "temperature"):
            config.pop(key)
        config["similarity"] = config.pop("matrix")
        config["epsilon"] = self.epsilon
        return config


# --- online label smoothing -------------------------------------------------------------


@keras.saving.register_keras_serializable(package="keras_smooth")
class OnlineLabelSmoothingLoss(_common.Loss):
    """Online label smoothing, OLS (Zhang et al. 2021, "Delving deep into label smoothing", Eq. 5–7).

    Formula:
        S^t[k] = mean of q(x_i) over the training examples of class k that
                 the model classifies correctly after epoch t
        loss at epoch t+1 = alpha * H(y, q) + (1 - alpha) * H(S^t[y], q)

    The soft matrix is held in `soft_matrix` (not trained by gradients) and
    updated by the `OnlineLabelSmoothing` callback at the end of every epoch.
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

    def __init__(self, num_classes, alpha=0.5, from_logits=True, reduction="sum_over_batch_size",
                 name="online_label_smoothing_loss", dtype=None, soft_matrix=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.num_classes = _checks.check_num_classes(num_classes)
        self.alpha = _checks.check_unit_interval("alpha", alpha)
        self.from_logits = _checks.check_bool("from_logits", from_logits)
        initial = np.eye(self.num_classes) if soft_matrix is None else soft_matrix
        self.soft_matrix = keras.Variable(
            _checks.check_class_matrix("soft_matrix", initial, self.num_classes).astype("float32"),
            trainable=False, name="ols_soft_matrix",
        )

    def call(self, y_true, y_pred):
        onehot, log_q = _common.prepare(y_true, y_pred, self.num_classes, self.from_logits)
        soft = ops.matmul(onehot, ops.convert_to_tensor(self.soft_matrix))
        hard = _common.cross_entropy(onehot, log_q)
        values = self.alpha * hard + (1.0 - self.alpha) * _common.cross_entropy(soft, log_q)
        return ops.cast(values, self.dtype)

    @property
    def matrix(self):
        """The current K x K soft matrix as a NumPy array."""
        return np.asarray(keras.ops.convert_to_numpy(self.soft_matrix))

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes, alpha=self.alpha, from_logits=self.from_logits,
                      soft_matrix=self.matrix.tolist())
        return config




def online_soft_matrix(labels, probs, previous):
    """One OLS update: per-class mean of the probabilities of correctly classified examples.

    Rows of classes without a correct example are copied from `previous`.
    `probs` must be probabilities (`_checks.looks_like_probabilities`; pass
    the softmax of logits) and `previous` a K x K matrix of probability rows.
    """
    held = np.asarray(probs).dtype  # 16-bit probabilities get their dtype's tolerance
    probs = np.asarray(probs, dtype="float64")
    _checks.check_finite("probs", probs)
    previous = np.asarray(previous, dtype="float64")
    size = previous.shape[0] if previous.ndim else 2
    updated = _checks.check_class_matrix("previous", previous, size).copy()
    labels = _numpy_ids(labels, updated.shape[0])
    if probs.shape != (len(labels), updated.shape[0]):
        raise ValueError(
            f"`probs` must have shape ({len(labels)}, {updated.shape[0]}) for "
            f"{len(labels)} labels and a {updated.shape[0]}-class matrix, got {probs.shape}."
        )
    if not _checks.looks_like_probabilities(probs, dtype=held):
        raise ValueError(
            "`probs` must be probabilities (values in [0, 1], rows summing to 1); got values "
            f"in [{probs.min():g}, {probs.max():g}]. Pass the softmax of logits."
        )
    correct = probs.argmax(axis=1) == labels
    for k in range(updated.shape[0]):
        rows = correct & (labels == k)
        if rows.any():
            updated[k] = probs[rows].mean(axis=0)
    return updated.astype("float32")


class OnlineLabelSmoothing(keras.callbacks.Callback):
    """Update an `OnlineLabelSmoothingLoss`'s soft matrix at the end of every epoch.

    Args:
        loss: the `OnlineLabelSmoothingLoss` the model is compiled with.
        x, y: the training inputs and class ids.
        batch_size: prediction batch size.

    Examples:
    >>> import keras, numpy as np
    >>> from keras_smooth.losses import OnlineLabelSmoothing, OnlineLabelSmoothingLoss
    >>> x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32"); y = (x[:, 0] > 0).astype(int)
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> loss = OnlineLabelSmoothingLoss(num_classes=2)
    >>> model.compile(optimizer="adam", loss=loss)
    >>> _ = model.fit(x, y, epochs=2, verbose=0, callbacks=[OnlineLabelSmoothing(loss, x, y)])
    >>> np.allclose(loss.matrix.sum(axis=1), 1.0)
    True
    """

    def __init__(self, loss, x, y, batch_size=1024):
        super().__init__()
        if not isinstance(loss, OnlineLabelSmoothingLoss):
            raise TypeError(f"`loss` must be an OnlineLabelSmoothingLoss, got {type(loss).__name__}.")
        self.loss, self.x, self.y, self.batch_size = loss, x, np.asarray(y).reshape(-1), int(batch_size)
        if len(self.y) != len(x):
            raise ValueError(f"`x` has {len(x)} rows but `y` has {len(self.y)}.")
        self.history = []

    def on_train_begin(self, logs=None):
        compiled = keras.tree.flatten(getattr(self.model, "loss", None))
        if not any(loss is self.loss for loss in compiled):
            raise ValueError(
                "`loss` is not the loss the model is compiled with, so the soft matrix the "
                "model trains on would never change. After `keras.saving.load_model`, pass "
                "the loaded model's loss: `OnlineLabelSmoothing(model.loss, x, y)`."
            )

    def on_epoch_end(self, epoch, logs=None):
        preds = self.model.predict(self.x, batch_size=self.batch_size, verbose=0)
        # the library-wide rule, as the loss reads them: non-probabilities get a softmax
        probs, _ = calibration.to_probabilities(preds, self.loss.from_logits)
        probs = np.asarray(keras.ops.convert_to_numpy(probs), dtype="float64")
        probs /= probs.sum(axis=1, keepdims=True)  # 16-bit rows sum to 1 only within ~3e-3
        updated = online_soft_matrix(self.y, probs, self.loss.matrix)
        self.loss.soft_matrix.assign(updated)
        self.history.append(updated)
        if keras.backend.backend() != "tensorflow":
            # JAX/torch trace the loss with the matrix's value: retrace the step.
            self.model.make_train_function(force=True)


# --- Beta smoothing ---------------------------------------------------------------------


def beta_smoothing_targets(labels, confidences, num_classes, epsilon, alpha=0.4, seed=0):
    """Beta smoothing targets (Zhang & Sabuncu 2020, §5; set up as in ILS paper §VI).

    Every instance gets its own smoothing factor
        eps_i = alpha * (1 - b_i),   b_i ~ Beta(a, 1),   a = alpha / epsilon - 1,
    so that the mean smoothing factor E[eps_i] = alpha / (a + 1) equals the LS
    factor `epsilon` (the ILS paper ties a to the best LS epsilon and uses
    alpha = 0.4; its printed expression E[alpha + (1 - alpha) b_i] cannot
    equal an epsilon below 0.4, so the mean smoothing factor is matched). The
    sampled b are handed out by confidence: the most confident instance gets
    the largest b (least smoothing). Targets are then
        t_i = (1 - eps_i) * onehot(y_i) + eps_i / K.

    Args:
        labels: `(N,)` class ids.
        confidences: `(N,)` confidences used for the ranking (e.g. the
            predicted probability of the label by a model trained without LS).
        num_classes: K.
        epsilon: mean smoothing factor, 0 < epsilon < alpha.
        alpha: upper bound of eps_i, in (0, 1). Default 0.4.
        seed: seed of the Beta draws.

    Returns:
        `(N, K)` float32 targets and `(N,)` smoothing factors.
    """
    num_classes = _checks.check_num_classes(num_classes)
    alpha = _checks.check_fraction("alpha", alpha)
    epsilon = _checks.check_fraction("epsilon", epsilon)
    if not 0 < epsilon < alpha:
        raise ValueError(f"`epsilon` must be in (0, alpha={alpha}), got {epsilon}.")
    labels = _numpy_ids(labels, num_classes)
    confidences = np.asarray(confidences, dtype="float64").reshape(-1)
    _checks.check_finite("confidences", confidences)
    if len(confidences) != len(labels):
        raise ValueError(f"`confidences` has {len(confidences)} rows but `labels` has {len(labels)}.")
    a = alpha / epsilon - 1.0
    draws = np.sort(np.random.default_rng(_checks.check_seed(seed)).beta(a, 1.0, size=len(labels)))
    b = np.empty_like(draws)
    b[np.argsort(confidences, kind="stable")] = draws  # ascending confidence <- ascending b
    eps = alpha * (1.0 - b)
    onehot = np.eye(num_classes)[labels]
    targets = (1.0 - eps)[:, None] * onehot + eps[:, None] / num_classes
    return targets.astype("float32"), eps.astype("float32")
