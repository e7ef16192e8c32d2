"""Soft training targets: pure functions of labels and teacher outputs.

Every function takes labels as integer ids of shape `(N,)` or `(N, 1)`, or as
one-hot rows `(N, K)`, and returns `(N, K)` float32 rows that sum to 1. Ids
must be whole numbers in [0, K) and rows exactly one-hot (`uniform` also takes
soft rows); anything else raises `ValueError` naming `labels` and the bad value
(inside a traced function: see `keras_smooth.losses`). They
are written in `keras.ops`, hold no state, and run on every Keras backend,
inside `tf.data` maps and inside models; `beta_smoothing` draws with NumPy and
runs eagerly.

Every smoothed target is `mix(onehot, distribution, epsilon)`, the formula
`(1 - epsilon) * onehot + epsilon * distribution` written once, with the
distribution of its method: `uniform` (LS), `ils1`, `ils2`, `ils` and
`ils_from_logits` (ILS paper), `matrix_smoothing` (LLS, LS++, cLS, the
substitute teacher), `virtual_teacher` (TF-KD) and `beta_smoothing`. The
losses and `ILSTargets` call these builders; `zipf` (rank-based soft labels)
is the one target that is not a mix.

Notation (ILS paper, Maher & Kull 2021): `t` is the true class, `p_t` the
teacher's probability of it, `K` the number of classes.
"""

import numbers

import numpy as np

from keras_smooth import _checks
from keras_smooth._ops import ops, tf_data_aware


def _real_tensor(name, value):
    """`value` as a float32 tensor; a `TypeError` naming `name` unless it holds real numbers
    (`_checks.real_tensor`: host data read by `as_real_array`, tensors by their dtype)."""
    return ops.cast(_checks.real_tensor(name, value), "float32")


def _check_rows(name, probs, num_rows):
    rows = ops.shape(probs)[0]
    if isinstance(rows, int) and isinstance(num_rows, int) and rows != num_rows:
        raise ValueError(
            f"`{name}` has {rows} rows but `labels` has {num_rows}; "
            "they must describe the same instances."
        )


def _probs(name, teacher_probs):
    held = getattr(teacher_probs, "dtype", None)  # a 16-bit softmax sums to 1 less exactly
    teacher_probs = _real_tensor(name, teacher_probs)
    shape = tuple(ops.shape(teacher_probs))
    if len(shape) != 2 or (shape[-1] is not None and shape[-1] < 2):
        raise ValueError(f"`{name}` must have shape (N, K) with K >= 2, got {shape}.")
    if _checks.is_concrete(teacher_probs):
        values = ops.convert_to_numpy(teacher_probs)
        if not np.all(np.isfinite(values)) or values.min() < 0 or values.max() > 1:
            raise ValueError(
                f"`{name}` must be probabilities in [0, 1]; got values in "
                f"[{np.nanmin(values)}, {np.nanmax(values)}] (NaN/Inf are refused)."
            )
        off = np.abs(values.sum(axis=-1, dtype="float64") - 1.0)
        atol = _checks.probability_atol(values.dtype if held is None else held)
        if off.size and not off.max() <= atol:
            row = int(off.argmax())
            raise ValueError(
                f"`{name}` must be probabilities whose rows sum to 1 (within {atol:g}); row "
                f"{row} sums to {float(values[row].sum(dtype='float64')):.6g}. Pass the "
                "teacher's softmax outputs."
            )
    return teacher_probs


def _labels(labels, num_classes):
    onehot = _checks.one_hot_labels(labels, num_classes)
    return onehot, ops.shape(onehot)[0]


@tf_data_aware
def mix(onehot, distribution, epsilon):
    """The one smoothing formula: move a share `epsilon` of the label onto a distribution.

    The targets of the package are this mix, each with its own `distribution`:
    uniform LS and ILS1 (1 / K), ILS2 and ILS (the teacher's wrong-class
    shape), LLS, LS++, cLS and the substitute teacher (a row of a class
    matrix), soft bootstrapping (the prediction), OLS (last epoch's class
    means), TF-KD's virtual teacher (uniform over the wrong classes) and Beta
    smoothing (1 / K, with a per-row share). Zipf's rank-based labels are
    the one target built otherwise.

    Formula:
        t = (1 - epsilon) * onehot + epsilon * distribution

    Args:
        onehot: `(N, K)` label rows (one-hot, or soft rows for `uniform`).
        distribution: `(N, K)` rows to mix in, the same shape as `onehot`
            (no broadcasting).
        epsilon: a number or an `(N,)` array of per-row shares; eager values
            must be in [0, 1].

    Returns:
        `(N, K)` float32 targets.

    Raises:
        ValueError: for different shapes or an eager `epsilon` outside [0, 1].

    Examples:
    >>> import numpy as np
    >>> from keras_smooth import targets
    >>> onehot = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], "float32")
    >>> spread = np.array([[0.0, 0.5, 0.5], [0.2, 0.0, 0.8]], "float32")
    >>> np.round(np.asarray(targets.mix(onehot, spread, [0.1, 0.5])), 4)
    array([[0.9 , 0.05, 0.05],
           [0.1 , 0.5 , 0.4 ]], dtype=float32)
    """
    onehot, distribution = _real_tensor("onehot", onehot), _real_tensor("distribution",
                                                                       distribution)
    _check_mix(onehot, distribution, epsilon)
    if not isinstance(epsilon, numbers.Real):  # a Python number stays one: 1 - eps in float64
        epsilon = _real_tensor("epsilon", epsilon)
        if len(ops.shape(epsilon)) == 1:
            epsilon = epsilon[:, None]
    return onehot * (1.0 - epsilon) + epsilon * distribution


def _check_mix(onehot, distribution, epsilon):
    one_shape, dist_shape = tuple(ops.shape(onehot)), tuple(ops.shape(distribution))
    static = [(a, b) for a, b in zip(one_shape, dist_shape)
              if isinstance(a, int) and isinstance(b, int)]
    if len(one_shape) != len(dist_shape) or any(a != b for a, b in static):
        raise ValueError(
            f"`onehot` {one_shape} and `distribution` {dist_shape} must have the same shape."
        )
    eps_shape = tuple(ops.shape(epsilon)) if hasattr(epsilon, "shape") else np.shape(epsilon)
    rows = one_shape[0] if one_shape else None
    if len(eps_shape) == 1 and isinstance(eps_shape[0], int) and isinstance(rows, int) \
            and eps_shape[0] != rows:
        raise ValueError(
            f"`epsilon` has shape {eps_shape} but `onehot` has shape {one_shape}: give one "
            "share per row, or one number."
        )
    if _checks.is_concrete(epsilon):
        values = _checks.as_real_array("epsilon", epsilon)
        bad = ~((values >= 0) & (values <= 1))  # NaN is bad too
        if values.ndim > 1 or np.any(bad):
            raise ValueError(
                "`epsilon` must be a number or an (N,) array of numbers in [0, 1], got "
                f"{values[bad][0] if np.any(bad) else values.shape}."
            )


@tf_data_aware
def uniform(labels, num_classes, epsilon):
    """Uniform label smoothing (Szegedy et al., 2016; ILS paper §II).

    Formula:
        y_LS = (1 - epsilon) * y + epsilon / K

    Args:
        labels: class ids `(N,)`/`(N, 1)`, one-hot rows `(N, K)`, or soft
            label rows `(N, K)` (non-negative, summing to 1; smoothing a
            distribution is well defined). The other target functions need
            hard labels.
        num_classes: `K`, at least 2.
        epsilon: smoothing factor in [0, 1).

    Returns:
        `(N, K)` float32 targets.

    Examples:
    >>> import numpy as np
    >>> from keras_smooth import targets
    >>> np.round(np.asarray(targets.uniform([0, 2], 3, 0.1)), 4)
    array([[0.9333, 0.0333, 0.0333],
           [0.0333, 0.0333, 0.9333]], dtype=float32)
    """
    num_classes = _checks.check_num_classes(num_classes)
    epsilon = _checks.check_fraction("epsilon", epsilon)
    onehot = _checks.one_hot_labels(labels, num_classes, soft=True)
    return mix(onehot, _uniform_like(onehot, num_classes), epsilon)


def _uniform_like(onehot, num_classes):
    """1 / K everywhere: the distribution uniform smoothing spreads its mass over."""
    return ops.ones_like(onehot) / num_classes


@tf_data_aware
def ils1_epsilon(true_class_probs, p1, p2, cap=0.2):
    """Per-instance smoothing factor of ILS1 (ILS paper, Eq. 3).

    Formula:
        epsilon_x = min(cap, p2 * (p_t - p1) ** 2)

    Args:
        true_class_probs: `(N,)` teacher probabilities of the true class
            (from the temperature-scaled teacher trained without LS).
        p1: centre of the parabola, a probability in [0, 1] (the paper's grid:
            0.975 ... 0.85).
        p2: curvature, >= 0 (the paper's grid: 0.75 ... 2).
        cap: upper bound on epsilon, in [0, 1). The paper uses 0.2.

    Returns:
        `(N,)` float32 smoothing factors in [0, cap].

    Examples:
    >>> import numpy as np
    >>> from keras_smooth import targets
    >>> np.round(np.asarray(targets.ils1_epsilon([0.9, 0.5, 0.0], 0.8, 2.0)), 4)
    array([0.02, 0.18, 0.2 ], dtype=float32)
    """
    p1 = _checks.check_unit_interval("p1", p1)
    p2 = _checks.check_non_negative("p2", p2)
    cap = _checks.check_fraction("cap", cap)
    p_t = _real_tensor("true_class_probs", true_class_probs)
    if _checks.is_concrete(p_t):
        values = ops.convert_to_numpy(p_t)
        if values.size and not (np.all(values >= 0) and np.all(values <= 1)):
            bad = values[~((values >= 0) & (values <= 1))][0]
            raise ValueError(f"`true_class_probs` must be probabilities in [0, 1], got {bad}.")
    return ops.minimum(cap, p2 * ops.square(p_t - p1))


@tf_data_aware
def ils1(labels, teacher_probs, p1, p2, cap=0.2):
    """ILS1: uniform smoothing with a per-instance factor (ILS paper, Eq. 3).

    Formula:
        epsilon_x = min(cap, p2 * (p_t - p1) ** 2)
        y_ILS1 = (1 - epsilon_x) * y + epsilon_x / K

    Args:
        labels: class ids `(N,)`/`(N, 1)` or one-hot rows `(N, K)`.
        teacher_probs: `(N, K)` probabilities of the temperature-scaled teacher.
        p1, p2, cap: see `ils1_epsilon`.

    Returns:
        `(N, K)` float32 targets.

    Examples:
    >>> import numpy as np
    >>> from keras_smooth import targets
    >>> teacher = np.array([[0.5, 0.3, 0.2]])
    >>> np.round(np.asarray(targets.ils1([0], teacher, p1=0.8, p2=2.0)), 4)
    array([[0.88, 0.06, 0.06]], dtype=float32)
    """
    teacher_probs = _probs("teacher_probs", teacher_probs)
    num_classes = _checks.static_dim(teacher_probs)
    onehot, n = _labels(labels, num_classes)
    _check_rows("teacher_probs", teacher_probs, n)
    eps = ils1_epsilon(ops.sum(onehot * teacher_probs, axis=-1), p1, p2, cap)
    return mix(onehot, _uniform_like(onehot, num_classes), eps)


@tf_data_aware
def wrong_class_distribution(labels, teacher_probs):
    """The teacher's distribution over the wrong classes, p_j / (1 - p_t), j != t.

    The denominator is computed as the sum of the wrong-class probabilities
    (equal to `1 - p_t` in exact arithmetic, without its cancellation error), so
    a teacher whose `p_t` rounds to 1 keeps the exact shape of its wrong-class
    mass however small that mass is: eager inputs are divided in float64 NumPy,
    so masses down to the smallest float32 subnormal (1.4e-45) count, and the
    result equals `wrong_class_distribution_from_logits` on the logits the
    probabilities came from. Only when the wrong-class mass is exactly 0 --
    all of it underflowed, where the ratio is 0/0 -- is the limit under a
    vanishing uniform floor used: `1 / (K - 1)` for every wrong class. Inside
    traced functions the division is float32 and TensorFlow/XLA flush float32
    subnormals (below 1.2e-38) to 0; pass logits (`ILSTargets`) if a teacher's
    wrong-class mass can be that small. The output never holds NaN.

    Args:
        labels: class ids or one-hot rows.
        teacher_probs: `(N, K)` teacher probabilities.

    Returns:
        `(N, K)` float32 rows, 0 at the true class, summing to 1.

    Examples:
    >>> import numpy as np
    >>> from keras_smooth import targets
    >>> probs = np.array([[0.6, 0.3, 0.1], [1.0, 0.0, 0.0]])
    >>> np.round(np.asarray(targets.wrong_class_distribution([0, 0], probs)), 4)
    array([[0.  , 0.75, 0.25],
           [0.  , 0.5 , 0.5 ]], dtype=float32)
    """
    probs = _probs("teacher_probs", teacher_probs)
    num_classes = _checks.static_dim(probs)
    onehot, n = _labels(labels, num_classes)
    _check_rows("teacher_probs", probs, n)
    if _checks.is_concrete(probs) and _checks.is_concrete(onehot):
        exact = np.asarray(ops.convert_to_numpy(teacher_probs), dtype="float64")
        return ops.convert_to_tensor(
            _wrong_share(ops.convert_to_numpy(onehot), exact, np).astype("float32")
        )
    return _wrong_share(onehot, probs, ops)


def _wrong_share(onehot, probs, xp):
    """wrong / sum(wrong), or the uniform limit where that sum is 0 (`xp`: np or ops)."""
    wrong = probs * (1.0 - onehot)
    total = xp.sum(wrong, axis=-1, keepdims=True)
    fallback = (1.0 - onehot) / (onehot.shape[-1] - 1)
    return xp.where(total > 0, wrong / xp.where(total > 0, total, 1.0), fallback)


@tf_data_aware
def wrong_class_distribution_from_logits(labels, teacher_logits, temperature=1.0):
    """Like `wrong_class_distribution`, from logits at a temperature.

    Computed as a softmax over the K - 1 wrong-class logits divided by
    `temperature`, which equals `p_j^T / (1 - p_t^T)` exactly and stays finite
    even where `p_t^T` rounds to 1.

    Args:
        labels: class ids or one-hot rows.
        teacher_logits: `(N, K)` teacher logits.
        temperature: > 0.

    Returns:
        `(N, K)` float32 rows, 0 at the true class, summing to 1.
    """
    temperature = _checks.check_float32_positive("temperature", temperature)
    onehot, logits, _ = _teacher_logits(labels, teacher_logits)
    return _wrong_share_from_logits(onehot, logits, temperature)


def _teacher_logits(labels, teacher_logits):
    """(one-hot labels, float32 logits, K) once shapes, rows and finite values are checked."""
    logits = _real_tensor("teacher_logits", teacher_logits)
    num_classes = _checks.static_dim(logits)
    if len(ops.shape(logits)) != 2 or num_classes is None or num_classes < 2:
        raise ValueError(
            "`teacher_logits` must have shape (N, K) with a known K >= 2, "
            f"got {tuple(ops.shape(logits))}."
        )
    _checks.check_finite("teacher_logits", logits)
    onehot, n = _labels(labels, num_classes)
    _check_rows("teacher_logits", logits, n)
    return onehot, logits, num_classes


def _wrong_share_from_logits(onehot, logits, temperature):
    # The true class at -inf (a finite mask loses to wrong-class logits below it), the
    # rest shifted by their maximum before dividing: a tiny T then sends them to 0 or
    # -inf, never to inf - inf.
    wrong = ops.where(onehot > 0.5, float("-inf"), logits)
    shifted = wrong - ops.max(wrong, axis=-1, keepdims=True)
    return ops.softmax(shifted / temperature, axis=-1) * (1.0 - onehot)


@tf_data_aware
def ils2(labels, teacher_probs, epsilon):
    """ILS2: the teacher shapes the wrong-class mass (ILS paper, Eq. 4).

    Formula:
        y_j = epsilon * p_j / (1 - p_t)   for j != t
        y_t = 1 - epsilon

    `teacher_probs` are the teacher's probabilities at the temperature T being
    tuned (the paper's grid is T in {1, 2, 4, 8, 16}). For a saturated teacher
    (`p_t` numerically 1) see `wrong_class_distribution` for the limit used.

    Args:
        labels: class ids `(N,)`/`(N, 1)` or one-hot rows `(N, K)`.
        teacher_probs: `(N, K)` teacher probabilities.
        epsilon: smoothing factor in [0, 1).

    Returns:
        `(N, K)` float32 targets.

    Examples:
    >>> import numpy as np
    >>> from keras_smooth import targets
    >>> teacher = np.array([[0.6, 0.3, 0.1]])
    >>> np.round(np.asarray(targets.ils2([0], teacher, epsilon=0.1)), 4)
    array([[0.9  , 0.075, 0.025]], dtype=float32)
    """
    epsilon = _checks.check_fraction("epsilon", epsilon)
    num_classes = _checks.static_dim(_probs("teacher_probs", teacher_probs))
    onehot = _checks.one_hot_labels(labels, num_classes)
    # The unconverted probabilities: a float32 cast would flush subnormal masses.
    return mix(onehot, wrong_class_distribution(onehot, teacher_probs), epsilon)


@tf_data_aware
def ils(labels, epsilon_probs, distribution_probs, p1, p2, cap=0.2):
    """ILS: ILS2 with its epsilon replaced by ILS1's epsilon_x (ILS paper §IV-C).

    Formula:
        epsilon_x = min(cap, p2 * (p_t - p1) ** 2)      p_t from `epsilon_probs`
        y_j = epsilon_x * q_j / (1 - q_t)   for j != t  q from `distribution_probs`
        y_t = 1 - epsilon_x

    Args:
        labels: class ids `(N,)`/`(N, 1)` or one-hot rows `(N, K)`.
        epsilon_probs: `(N, K)` probabilities of the temperature-scaled
            (calibrated) teacher, used for epsilon_x.
        distribution_probs: `(N, K)` probabilities of the same teacher at the
            tuned temperature T, used for the wrong-class distribution.
        p1, p2, cap: see `ils1_epsilon`.

    Returns:
        `(N, K)` float32 targets.

    Examples:
    >>> import numpy as np
    >>> from keras_smooth import targets
    >>> calibrated = np.array([[0.5, 0.3, 0.2]])
    >>> at_t = np.array([[0.4, 0.45, 0.15]])
    >>> np.round(np.asarray(targets.ils([0], calibrated, at_t, 0.8, 2.0)), 4)
    array([[0.82 , 0.135, 0.045]], dtype=float32)
    """
    epsilon_probs = _probs("epsilon_probs", epsilon_probs)
    num_classes = _checks.static_dim(epsilon_probs)
    onehot, n = _labels(labels, num_classes)
    _check_rows("epsilon_probs", epsilon_probs, n)
    checked = _probs("distribution_probs", distribution_probs)
    _check_rows("distribution_probs", checked, n)
    _checks.check_width("distribution_probs", checked, num_classes)
    eps = ils1_epsilon(ops.sum(onehot * epsilon_probs, axis=-1), p1, p2, cap)
    return mix(onehot, wrong_class_distribution(onehot, distribution_probs), eps)


@tf_data_aware
def matrix_rows(labels, matrix):
    """Row `y` of a K x K class matrix for each label, as `onehot @ matrix`.

    A matrix product (not a gather) keeps gradients dense, so optimizers such as
    Adam scale repeated rows correctly.
    """
    matrix = _square_matrix(matrix)
    onehot = _checks.one_hot_labels(labels, _checks.static_dim(matrix))
    return ops.matmul(onehot, matrix)


ILS_METHODS = ("ils1", "ils2", "ils")


@tf_data_aware
def ils_from_logits(labels, teacher_logits, method="ils", epsilon=0.1, p1=0.9, p2=1.0,
                    cap=0.2, temperature=1.0, calibration_temperature=1.0):
    """ILS1, ILS2 or ILS targets from the teacher's logits (what `ILSTargets` computes).

    Formula:
        epsilon_x = min(cap, p2 * (p*_t - p1) ** 2),  p* = softmax(z / calibration_temperature)
        ils1: mix(onehot, 1 / K, epsilon_x)                          (ILS paper, Eq. 3)
        ils2: mix(onehot, wrong-class shape of softmax(z / T), epsilon)          (Eq. 4)
        ils:  mix(onehot, wrong-class shape of softmax(z / T), epsilon_x)       (§IV-C)

    The wrong-class shape is a softmax over the K - 1 wrong-class logits, so a
    teacher whose true-class probability rounds to 1 still gives finite
    targets.

    Args:
        labels: class ids `(N,)`/`(N, 1)` or one-hot rows `(N, K)`.
        teacher_logits: `(N, K)` finite teacher logits.
        method: `"ils1"`, `"ils2"` or `"ils"`.
        epsilon: smoothing factor of `ils2`, in [0, 1).
        p1, p2, cap: see `ils1_epsilon`.
        temperature: teacher temperature T of the wrong-class shape (> 0).
        calibration_temperature: the teacher's fitted temperature T* (> 0).

    Returns:
        `(N, K)` float32 targets.

    Examples:
    >>> import numpy as np
    >>> from keras_smooth import targets
    >>> logits = np.log(np.array([[0.6, 0.3, 0.1]], "float32"))
    >>> np.round(np.asarray(targets.ils_from_logits([0], logits, "ils2", epsilon=0.1)), 4)
    array([[0.9  , 0.075, 0.025]], dtype=float32)
    """
    if method not in ILS_METHODS:
        raise ValueError(f"`method` must be one of {ILS_METHODS}, got {method!r}.")
    temperature = _checks.check_float32_positive("temperature", temperature)
    calibration_temperature = _checks.check_float32_positive(
            "calibration_temperature", calibration_temperature)
    onehot, logits, num_classes = _teacher_logits(labels, teacher_logits)
    if method == "ils2":
        eps = _checks.check_fraction("epsilon", epsilon)
    else:
        shifted = logits - ops.max(logits, axis=-1, keepdims=True)  # tiny T: no inf - inf
        calibrated = ops.softmax(shifted / calibration_temperature, axis=-1)
        eps = ils1_epsilon(ops.sum(onehot * calibrated, axis=-1), p1, p2, cap)
    if method == "ils1":
        return mix(onehot, _uniform_like(onehot, num_classes), eps)
    return mix(onehot, _wrong_share_from_logits(onehot, logits, temperature), eps)


@tf_data_aware
def matrix_smoothing(labels, matrix, alpha):
    """Targets from a K x K class matrix: LLS (Eq. 4), LS++ (Eq. 3), cLS, substitute teacher.

    Formula:
        t = (1 - alpha) * onehot(y) + alpha * M[y]

    Args:
        labels: class ids `(N,)`/`(N, 1)` or one-hot rows `(N, K)`.
        matrix: `(K, K)` matrix of class distributions (Q of LLS, C of LS++
            with a zero diagonal, cLS's similarities).
        alpha: mixing weight in [0, 1].

    Returns:
        `(N, K)` float32 targets.

    Examples:
    >>> import numpy as np
    >>> from keras_smooth import targets
    >>> c = (np.ones((3, 3)) - np.eye(3)) / 2
    >>> np.round(np.asarray(targets.matrix_smoothing([1], c, alpha=0.1)), 4)
    array([[0.05, 0.9 , 0.05]], dtype=float32)
    """
    alpha = _checks.check_unit_interval("alpha", alpha)
    matrix = _square_matrix(matrix)
    onehot = _checks.one_hot_labels(labels, _checks.static_dim(matrix))
    return mix(onehot, ops.matmul(onehot, matrix), alpha)


@tf_data_aware
def virtual_teacher(labels, num_classes, correct_probability=0.9):
    """TF-KD's hand-made teacher (Yuan et al. 2020, §4): `a` on the label, the rest uniform.

    Formula:
        p_k = a if k = y else (1 - a) / (K - 1)
            = mix(onehot(y), (1 - onehot(y)) / (K - 1), 1 - a)

    Args:
        labels: class ids `(N,)`/`(N, 1)` or one-hot rows `(N, K)`.
        num_classes: `K`, at least 2.
        correct_probability: `a`, in [0, 1].

    Returns:
        `(N, K)` float32 rows.

    Examples:
    >>> import numpy as np
    >>> from keras_smooth import targets
    >>> np.round(np.asarray(targets.virtual_teacher([2], 3, 0.9)), 4)
    array([[0.05, 0.05, 0.9 ]], dtype=float32)
    """
    num_classes = _checks.check_num_classes(num_classes)
    a = _checks.check_unit_interval("correct_probability", correct_probability)
    onehot = _checks.one_hot_labels(labels, num_classes)
    return mix(onehot, (1.0 - onehot) / (num_classes - 1), 1.0 - a)


@tf_data_aware
def zipf(labels, logits, power=1.0):
    """Zipf soft labels (Liang et al. 2022, "Efficient one pass self-distillation with
    Zipf's label smoothing", §3.2).

    The true class gets rank 1; the other classes are ranked 2..K by `logits`
    (the network's own current outputs, largest first); the class of rank r
    gets mass proportional to r ** -power. No gradient flows through the
    ranking.

    Args:
        labels: class ids `(N,)`/`(N, 1)` or one-hot rows `(N, K)`.
        logits: `(N, K)` predictions that rank the wrong classes.
        power: exponent, >= 0 (0 gives uniform rows).

    Returns:
        `(N, K)` float32 rows summing to 1.

    Examples:
    >>> import numpy as np
    >>> from keras_smooth import targets
    >>> np.round(np.asarray(targets.zipf([0], np.array([[0.0, 1.0, 2.0]]))), 4)
    array([[0.5455, 0.1818, 0.2727]], dtype=float32)
    """
    power = _checks.check_non_negative("power", power)
    logits = ops.stop_gradient(_real_tensor("logits", logits))
    num_classes = _checks.static_dim(logits)
    if len(ops.shape(logits)) != 2 or num_classes is None or num_classes < 2:
        raise ValueError(
            f"`logits` must have shape (N, K) with a known K >= 2, got {tuple(ops.shape(logits))}."
        )
    onehot, n = _labels(labels, num_classes)
    _check_rows("logits", logits, n)
    # The true class first (at +inf, above every wrong-class logit, which is capped at the
    # float32 maximum: `max + 1` would round back to the max for a logit of 1e30), then the
    # others by descending logit.
    wrong = ops.minimum(logits, float(np.finfo("float32").max))
    keyed = ops.where(onehot > 0.5, float("inf"), wrong)
    order = ops.argsort(-keyed, axis=-1)
    ranks = ops.cast(ops.argsort(order, axis=-1), "float32") + 1.0
    # r ** -power is at most 1 and exactly 1 at rank 1, so the row sum is >= 1 for every
    # power (a float32 overflow of `power` gives r ** -inf = 0 for r > 1: the one-hot limit).
    mass = ops.power(ranks, -power)
    return mass / ops.sum(mass, axis=-1, keepdims=True)


def beta_smoothing(labels, confidences, num_classes, epsilon, alpha=0.4, seed=0):
    """Beta smoothing targets (Zhang & Sabuncu 2020, §5; set up as in ILS paper §VI).

    Formula:
        eps_i = alpha * (1 - b_i),   b_i ~ Beta(a, 1),   a = alpha / epsilon - 1
        t_i = (1 - eps_i) * onehot(y_i) + eps_i / K

    The mean smoothing factor E[eps_i] = alpha / (a + 1) equals the LS factor
    `epsilon` (the ILS paper ties a to the best LS epsilon and uses alpha =
    0.4; its printed E[alpha + (1 - alpha) b_i] cannot equal an epsilon below
    0.4, so the mean smoothing factor is matched). The sorted draws are
    handed out by confidence: the most confident instance gets the largest b
    (least smoothing). The draws use NumPy: this runs eagerly.

    Args:
        labels: `(N,)` class ids.
        confidences: `(N,)` confidences used for the ranking (e.g. the
            predicted probability of the label by a model trained without LS).
        num_classes: K.
        epsilon: mean smoothing factor, 0 < epsilon < alpha.
        alpha: upper bound of eps_i, in (0, 1). Default 0.4.
        seed: seed of the Beta draws.

    Returns:
        `(N, K)` float32 NumPy targets and `(N,)` float32 smoothing factors.

    Examples:
    >>> import numpy as np
    >>> from keras_smooth import targets
    >>> soft, eps = targets.beta_smoothing([0, 1], [0.9, 0.2], 2, epsilon=0.1)
    >>> soft.shape, bool(eps[0] < eps[1]), np.allclose(soft.sum(axis=1), 1)
    ((2, 2), True, True)
    """
    num_classes = _checks.check_num_classes(num_classes)
    alpha = _checks.check_fraction("alpha", alpha)
    epsilon = _checks.check_fraction("epsilon", epsilon)
    if not 0 < epsilon < alpha:
        raise ValueError(f"`epsilon` must be in (0, alpha={alpha}), got {epsilon}.")
    labels = _checks.class_ids(labels, num_classes)
    confidences = _checks.as_real_array("confidences", confidences).reshape(-1)
    _checks.check_finite("confidences", confidences)
    if len(confidences) != len(labels):
        raise ValueError(
            f"`confidences` has {len(confidences)} rows but `labels` has {len(labels)}."
        )
    eps = _beta_factors(confidences, epsilon, alpha, _checks.check_seed(seed))
    onehot = np.eye(num_classes, dtype="float32")[labels]
    soft = mix(onehot, _uniform_like(onehot, num_classes), eps)
    return np.asarray(ops.convert_to_numpy(soft), dtype="float32"), eps


def _beta_factors(confidences, epsilon, alpha, seed):
    """eps_i = alpha (1 - b_i), the sorted Beta(a, 1) draws b handed out by confidence."""
    rng = np.random.default_rng(seed)
    draws = np.sort(rng.beta(alpha / epsilon - 1.0, 1.0, size=len(confidences)))
    b = np.empty_like(draws)
    b[np.argsort(confidences, kind="stable")] = draws  # ascending confidence <- ascending b
    return (alpha * (1.0 - b)).astype("float32")


def _square_matrix(matrix):
    """`matrix` as float32; a concrete one must hold class distributions (finite,
    non-negative rows summing to 1), else `ValueError` naming `matrix` and the value."""
    held = getattr(matrix, "dtype", "float32")  # 16-bit rows sum to 1 within their roundoff
    matrix = _real_tensor("matrix", matrix)
    shape = tuple(ops.shape(matrix))
    if len(shape) != 2 or (isinstance(shape[0], int) and isinstance(shape[1], int)
                           and shape[0] != shape[1]):
        raise ValueError(f"`matrix` must be a square K x K matrix, got shape {shape}.")
    if _checks.is_concrete(matrix):
        _checks.check_class_matrix("matrix", ops.convert_to_numpy(matrix),
                                   atol=max(1e-4, _checks.probability_atol(held)))
    return matrix
