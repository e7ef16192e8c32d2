"""Knowledge distillation from cached teacher logits, and from a class matrix.

For a live teacher model run at every step, Keras already provides
`keras.distillation.Distiller` with `keras.distillation.LogitsDistillation`;
use it. The losses here cover what it does not: a teacher whose logits were
computed once and travel with the labels (`distillation_targets`), and a
*substitute teacher* that is only a learned K x K class matrix (LLS-ST of the
LLS paper §5.3, PT-LS++ of the LS++ paper §5.3).
"""

import keras
import numpy as np
from keras import ops

from keras_smooth import _checks
from keras_smooth import targets
from keras_smooth.layers.temperature_scaling import tempered_softmax
from keras_smooth.losses import _common


def distillation_targets(labels, teacher_logits, num_classes=None):
    """Pack labels and teacher logits into one `y_true` of shape (N, 2K).

    The first K columns hold one-hot (or soft) labels, the last K the
    teacher's logits. `DistillationLoss` splits them again.

    Args:
        labels: class ids `(N,)`/`(N, 1)`, one-hot `(N, K)` or soft label
            rows `(N, K)` (non-negative, summing to 1).
        teacher_logits: `(N, K)` finite teacher logits.
        num_classes: `K`; taken from the teacher's width when omitted. A
            teacher of another width raises `ValueError` naming both widths.

    Returns:
        `(N, 2K)` float32.

    Examples:
    >>> import numpy as np
    >>> from keras_smooth.losses import distillation_targets
    >>> y = distillation_targets([1], np.array([[0.5, 2.0, -1.0]], "float32"))
    >>> np.asarray(y).tolist()
    [[0.0, 1.0, 0.0, 0.5, 2.0, -1.0]]
    """
    if not hasattr(teacher_logits, "dtype") or isinstance(teacher_logits, np.ndarray):
        teacher_logits = _checks.as_real_array("teacher_logits", teacher_logits)
    teacher_logits = ops.cast(ops.convert_to_tensor(teacher_logits), "float32")
    _check_teacher(labels, teacher_logits, num_classes)
    num_classes = _common.infer_num_classes(teacher_logits, num_classes)
    onehot = _checks.one_hot_labels(labels, num_classes, soft=True)
    return ops.concatenate([onehot, teacher_logits], axis=-1)


def _check_teacher(labels, teacher_logits, num_classes):
    """The teacher's width against `num_classes` and one-hot labels; finite values."""
    shape = tuple(ops.shape(teacher_logits))
    if len(shape) != 2:
        raise ValueError(f"`teacher_logits` must have shape (N, K), got {shape}.")
    width = shape[-1]
    if num_classes is not None and width is not None and width != num_classes:
        raise ValueError(
            f"`teacher_logits` has {width} columns but `num_classes` is {num_classes}: "
            "the teacher must score the same classes as the labels."
        )
    labels = _checks.real_tensor("labels", labels)
    label_shape = tuple(ops.shape(labels))
    if not label_shape:
        value = ops.convert_to_numpy(labels) if _checks.is_concrete(labels) else None
        value = "tensor" if value is None else _checks.label_value(value, value.dtype)
        raise ValueError(
            f"`labels` must be class ids of shape (N,) or (N, 1), or label rows (N, K), "
            f"one per row of `teacher_logits`; got a scalar {value}."
        )
    label_width = label_shape[-1] if len(label_shape) == 2 else 1
    if label_width not in (1, None) and width is not None and label_width != width:
        raise ValueError(
            f"`teacher_logits` has {width} columns but the one-hot `labels` have "
            f"{label_width}: the teacher must score the same classes as the labels."
        )
    if label_shape[0] is not None and shape[0] is not None and label_shape[0] != shape[0]:
        raise ValueError(
            f"`teacher_logits` has {shape[0]} rows but `labels` has {label_shape[0]}."
        )
    if _checks.is_concrete(teacher_logits):
        values = ops.convert_to_numpy(teacher_logits)
        if not np.all(np.isfinite(values)):
            row = int(np.argmin(np.all(np.isfinite(values), axis=-1)))
            raise ValueError(
                f"`teacher_logits` must be finite; row {row} is {values[row].tolist()}."
            )


def _tempered_cross_entropy(teacher, y_pred, log_probs, from_logits, temperature):
    """H(teacher, q^tau), q^tau = softmax(z / tau), with s = z - max(z) <= 0:

        H = sum_k p_k (-s_k) / tau + sum_k p_k * logsumexp(s / tau)

    From the raw logits (log q would lose the low bits of close logits that a tiny tau
    magnifies); the first sum is divided by tau last, so it overflows only where the
    loss does, and the second is finite (s has a 0 in every row)."""
    if temperature == 1.0:
        return _common.sparse_cross_entropy(teacher, log_probs)
    base = ops.cast(y_pred, "float32") if from_logits else log_probs
    shifted = base - _common.row_max(base)
    spread = ops.logsumexp(shifted / temperature, axis=-1)
    first = _common.sparse_cross_entropy(teacher, shifted) / temperature
    return first + ops.sum(teacher, axis=-1) * spread


def distillation_loss(y_true, y_pred, beta=0.5, temperature=1.0, from_logits=True):
    """Per-sample distillation loss from packed labels + teacher logits.

    Formula:
        q = softmax(z),  q^tau = softmax(z / tau),  p^tau = softmax(z_teacher / tau)
        loss = (1 - beta) * H(y, q) + beta * H(p^tau, q^tau)

    (Hinton et al., 2015; `[Re]` When Does Label Smoothing Help, Eq. 2.) Hinton
    et al. also multiply the soft term by tau**2; fold that into `beta` if you
    want it.

    Args:
        y_true: `(N, 2K)` from `distillation_targets`.
        y_pred: `(N, K)` student logits (or probabilities).
        beta: weight of the teacher term in [0, 1].
        temperature: tau > 0.
        from_logits: whether `y_pred` are logits.

    Returns:
        `(N,)` float32 losses.
    """
    beta = _checks.check_unit_interval("beta", beta)
    temperature = _checks.check_float32_positive("temperature", temperature)
    num_classes = _common.infer_num_classes(y_pred, None)
    y_true = ops.cast(y_true, "float32")
    width = _checks.static_dim(y_true)
    if width is not None and width != 2 * num_classes:
        raise ValueError(
            f"`y_true` must have 2 * num_classes = {2 * num_classes} columns "
            f"(labels, then teacher logits; see `distillation_targets`), got shape "
            f"{tuple(ops.shape(y_true))}: the teacher logits packed in it by "
            f"`distillation_targets` score {width / 2:g} classes, but the student's "
            f"`y_pred` scores {num_classes}. Teacher and student must score the "
            "same classes."
        )
    labels, teacher_logits = y_true[:, :num_classes], y_true[:, num_classes:]
    labels = _checks.one_hot_labels(labels, num_classes, name="y_true", soft=True)
    _common.check_rows(labels, y_pred)
    teacher = tempered_softmax(teacher_logits, temperature)
    log_q = _common.log_probabilities(y_pred, from_logits)
    hard = _common.sparse_cross_entropy(labels, log_q)  # a -inf logit off the label: 0 log 0
    soft = _tempered_cross_entropy(teacher, y_pred, log_q, from_logits, temperature)
    return (1.0 - beta) * hard + beta * soft


@keras.saving.register_keras_serializable(package="keras_smooth")
class DistillationLoss(_common.Loss):
    """Distillation from teacher logits that travel with the labels.

    Formula:
        loss = (1 - beta) * H(y, q) + beta * H(p_teacher^tau, q^tau)

    Build `y_true` with `distillation_targets(labels, teacher_logits)`; the
    teacher is then run once, not at every step. For a live teacher model use
    `keras.distillation.Distiller`.

    Args:
        beta: weight of the teacher term in [0, 1]. Default 0.5.
        temperature: tau > 0. Default 1.
        from_logits: whether the student's predictions are logits.
        reduction, name, dtype: as in `keras.losses.Loss`.

    Examples:
    >>> import numpy as np
    >>> from keras_smooth.losses import DistillationLoss, distillation_targets
    >>> y = distillation_targets([0], np.array([[2.0, 1.0, 0.0]], "float32"))
    >>> loss = DistillationLoss(beta=0.0)
    >>> round(float(loss(y, np.array([[0.0, 0.0, 0.0]], "float32"))), 4)
    1.0986

    References:
        Hinton, Vinyals and Dean, 2015; `[Re]` When Does Label Smoothing Help, Eq. 2.
    """

    def __init__(
        self,
        beta=0.5,
        temperature=1.0,
        from_logits=True,
        reduction="sum_over_batch_size",
        name="distillation_loss",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.beta = _checks.check_unit_interval("beta", beta)
        self.temperature = _checks.check_float32_positive("temperature", temperature)
        self.from_logits = _checks.check_bool("from_logits", from_logits)

    def call(self, y_true, y_pred):
        values = distillation_loss(
            y_true, y_pred, self.beta, self.temperature, self.from_logits
        )
        return ops.cast(values, self.dtype)

    def get_config(self):
        config = super().get_config()
        config.update(
            beta=self.beta, temperature=self.temperature, from_logits=self.from_logits
        )
        return config


def _check_matrix(matrix, alpha, name="matrix"):
    array = _checks.check_class_matrix(name, matrix)
    if alpha == 1.0 and np.any(np.diag(array) == 0):
        raise ValueError(
            f"`alpha` = 1 with a zero on the diagonal of `{name}` gives the true "
            "class no mass; use the teacher's alpha (e.g. 0.1 for an LS++ C-matrix)."
        )
    return array.astype("float32")


def substitute_teacher_loss(
    y_true, y_pred, matrix, alpha=0.1, beta=1.0, temperature=1.0, from_logits=True
):
    """Per-sample distillation from a class matrix used as the teacher.

    Formula:
        r = (1 - alpha) * onehot(y) + alpha * M[y]      the frozen teacher's target
        r^tau = r ** (1 / tau) / sum(r ** (1 / tau))
        loss = (1 - beta) * H(y, q) + beta * H(r^tau, q^tau)

    Args:
        y_true: class ids or one-hot `(N, K)`.
        y_pred: `(N, K)` student logits (or probabilities).
        matrix: `(K, K)` row-stochastic matrix (Q of LLS or C of LS++).
        alpha: the mixing weight the matrix was learned with, in [0, 1].
        beta: weight of the teacher term in [0, 1]; 1 trains on the matrix alone.
        temperature: tau > 0.
        from_logits: whether `y_pred` are logits.

    Returns:
        `(N,)` float32 losses.
    """
    alpha = _checks.check_unit_interval("alpha", alpha)
    beta = _checks.check_unit_interval("beta", beta)
    temperature = _checks.check_float32_positive("temperature", temperature)
    matrix = _check_matrix(matrix, alpha)
    num_classes = matrix.shape[0]
    onehot, log_q = _common.prepare(y_true, y_pred, num_classes, from_logits)
    rows = targets.mix(onehot, ops.matmul(onehot, matrix), alpha)
    if temperature != 1.0:
        rows = _power_rows(rows, temperature)
    hard = _common.sparse_cross_entropy(onehot, log_q)
    soft = _tempered_cross_entropy(rows, y_pred, log_q, from_logits, temperature)
    return (1.0 - beta) * hard + beta * soft


def _power_rows(rows, temperature):
    """r ** (1 / T) / sum(r ** (1 / T)) as softmax(log r / T): zeros stay zeros (log 0 =
    -inf, a mask), and the row's largest entry is shifted to 1 first, so no T underflows
    the whole row to 0 / 0."""
    positive = rows > 0
    log_rows = ops.where(positive, ops.log(ops.where(positive, rows, 1.0)), -float("inf"))
    return tempered_softmax(log_rows, temperature)


@keras.saving.register_keras_serializable(package="keras_smooth")
class SubstituteTeacherLoss(_common.Loss):
    """Train a student on class-level targets from a learned Q or C matrix.

    The teacher is reduced to its learned matrix: the student's target for
    class `y` is the target the teacher itself trained on, with the matrix
    frozen, `(1 - alpha) * onehot(y) + alpha * M[y]`. This is LLS-ST (LLS paper
    §5.3, with their beta = 0, i.e. our `beta=1`: teacher targets only, tau = 1)
    and PT-LS++ (LS++ paper §5.3). A learned Q row puts little mass on its own
    class (LLS §3), so the teacher's one-hot part is what keeps the true
    class on top; build it with `from_loss` to take alpha from the teacher.

    Formula:
        r = (1 - alpha) * onehot(y) + alpha * M[y]
        loss = (1 - beta) * H(y, q) + beta * H(r^tau, q^tau)

    Args:
        matrix: `(K, K)` row-stochastic matrix (NumPy or nested lists).
        alpha: mixing weight the matrix was learned with, in [0, 1].
        beta: weight of the matrix-teacher term in [0, 1]. Default 1.
        temperature: tau > 0 applied to both target rows and student.
        from_logits: whether predictions are logits.
        reduction, name, dtype: as in `keras.losses.Loss`.

    Examples:
    >>> from keras_smooth.losses import LLSLoss, SubstituteTeacherLoss
    >>> teacher_loss = LLSLoss(num_classes=3, alpha=0.2)
    >>> student_loss = SubstituteTeacherLoss.from_loss(teacher_loss)
    >>> student_loss.alpha, student_loss.matrix.shape
    (0.2, (3, 3))
    """

    _matrix_name = "matrix"  # the argument that holds it (`similarity` for cLS)

    def __init__(
        self,
        matrix,
        alpha=0.1,
        beta=1.0,
        temperature=1.0,
        from_logits=True,
        reduction="sum_over_batch_size",
        name="substitute_teacher_loss",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.alpha = _checks.check_unit_interval("alpha", alpha)
        self.beta = _checks.check_unit_interval("beta", beta)
        self.temperature = _checks.check_float32_positive("temperature", temperature)
        self.from_logits = _checks.check_bool("from_logits", from_logits)
        self.matrix = _check_matrix(matrix, self.alpha, self._matrix_name)

    @classmethod
    def from_loss(cls, loss, beta=1.0, temperature=1.0, **kwargs):
        """From a trained `LLSLoss` / `LSPlusPlusLoss`: its matrix and alpha."""
        return cls(loss.matrix, alpha=loss.alpha, beta=beta, temperature=temperature, **kwargs)

    def call(self, y_true, y_pred):
        values = substitute_teacher_loss(
            y_true, y_pred, self.matrix, self.alpha, self.beta,
            self.temperature, self.from_logits,
        )
        return ops.cast(values, self.dtype)

    def get_config(self):
        config = super().get_config()
        config.update(
            matrix=self.matrix.tolist(),
            alpha=self.alpha,
            beta=self.beta,
            temperature=self.temperature,
            from_logits=self.from_logits,
        )
        return config
