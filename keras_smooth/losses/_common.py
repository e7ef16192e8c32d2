"""Pieces shared by the loss families: the base class, prediction handling, cross-entropy."""

import keras
import numpy as np
from keras import ops

from keras_smooth import _checks


def log_probabilities(y_pred, from_logits):
    """float32 log-probabilities of the predictions.

    With `from_logits=True`: `log_softmax(y_pred)`. With `from_logits=False` a
    batch counts as probabilities only if every value is in [0, 1] and every
    row sums to 1 within 1e-3; such rows are renormalised and clipped to
    [epsilon, 1 - epsilon] exactly as `keras.losses.CategoricalCrossentropy`
    does. Any other batch is treated as logits (softmax), decided per batch
    with `ops.where`, so eager and traced calls agree on every backend.
    16-bit probabilities (whose rows sum to 1 only within about 3e-3) are
    first renormalised in float32, see `renormalize_16bit_probabilities`.
    """
    from_logits = _checks.check_bool("from_logits", from_logits)
    if not from_logits:
        y_pred = renormalize_16bit_probabilities(y_pred)
    y_pred = ops.cast(y_pred, "float32")
    from_softmax = ops.log_softmax(y_pred, axis=-1)
    if from_logits:
        return from_softmax
    eps = keras.config.epsilon()
    sums = ops.sum(y_pred, axis=-1, keepdims=True)
    are_probs = _checks.looks_like_probabilities(y_pred)
    safe = ops.where(are_probs, y_pred / ops.where(are_probs, sums, 1.0), 0.5)
    from_probs = ops.log(ops.clip(safe, eps, 1.0 - eps))
    return ops.where(are_probs, from_probs, from_softmax)


def renormalize_16bit_probabilities(y_pred):
    """float16/bfloat16 probabilities -> float32 rows that sum to 1; other inputs unchanged.

    A bfloat16 softmax output sums to 1 only within about 3e-3, so once cast to
    float32 it would fail the 1e-3 test of `log_probabilities` and be taken
    for logits. A 16-bit batch that passes the library-wide test with its own
    dtype's tolerance (`_checks.looks_like_probabilities`) is divided by its
    row sums in float32 first.
    """
    if not hasattr(y_pred, "dtype"):
        return y_pred
    if keras.backend.standardize_dtype(y_pred.dtype) not in ("float16", "bfloat16"):
        return y_pred
    close = _checks.looks_like_probabilities(y_pred)
    probs = ops.cast(y_pred, "float32")
    sums = ops.sum(probs, axis=-1, keepdims=True)
    return ops.where(close, probs / ops.where(close, sums, 1.0), probs)


def safe_log(probs):
    """log(max(p, epsilon)): the clamp Keras uses for probabilities."""
    return ops.log(ops.maximum(probs, keras.config.epsilon()))


def take_columns(x, columns):
    """`x[b, columns[b, j]]` for `(B, K)` x and `(B, J)` int columns, as a flat gather.

    Cheaper than `take_along_axis`, whose TensorFlow gradient runs a slow
    segment sum over `(B, K)`.
    """
    width = ops.shape(x)[-1]
    rows = ops.expand_dims(ops.arange(ops.shape(columns)[0], dtype="int32") * width, -1)
    return ops.take(ops.reshape(x, (-1,)), rows + ops.cast(columns, "int32"), axis=0)


def cross_entropy(targets, log_probs):
    """H(targets, p) = -sum_k targets_k * log p_k, per sample."""
    return -ops.sum(targets * log_probs, axis=-1)


def sparse_cross_entropy(targets, log_probs):
    """-sum_k targets_k * log p_k over the entries with targets_k != 0 (0 * log 0 = 0, so an
    entry at -inf -- masked, or far below at a tiny temperature -- adds nothing where it
    has no mass). A NaN target still gives NaN."""
    masked = targets == 0
    return -ops.sum(ops.where(masked, 0.0, targets * ops.where(masked, 0.0, log_probs)), axis=-1)


def prepare(y_true, y_pred, num_classes, from_logits, soft=False):
    """Validate widths, rows and labels; return (one-hot/soft labels, log-probabilities).

    `soft=True` accepts `(N, K)` label distributions, else rows must be one-hot.
    """
    _check_rank(y_pred)
    _checks.check_width("y_pred", y_pred, num_classes)
    onehot = _checks.one_hot_labels(y_true, num_classes, name="y_true", soft=soft)
    check_rows(onehot, y_pred)
    return onehot, log_probabilities(y_pred, from_logits)


def prepare_ids(y_true, y_pred, num_classes, from_logits):
    """As `prepare` for `(N,)`/`(N, 1)` class ids, without `(N, K)` rows.

    Returns `(ids, poison, log_probs)`: int32 ids, an `(N, 1)` column that is 0
    for valid rows and NaN for rows whose traced check failed (add
    `0 * poison[:, 0]` to keep a bad label from giving a number), and the
    log-probabilities.
    """
    _check_rank(y_pred)
    _checks.check_width("y_pred", y_pred, num_classes)
    labels = ops.reshape(ops.convert_to_tensor(y_true), (-1,))
    check_rows(labels, y_pred)
    if not keras.backend.is_int_dtype(labels.dtype):
        _checks.check_exact_ids(labels, num_classes, "y_true")
    ok = _checks.check_labels(labels, num_classes, "y_true", "ids")
    ids = ops.cast(labels, "int32")
    poison = ops.zeros((ops.shape(ids)[0], 1), "float32")
    if ok is not None:
        ids = ops.where(ok, ids, 0)
        poison = ops.where(ops.expand_dims(ok, -1), 0.0, float("nan"))
    return ids, poison, log_probabilities(y_pred, from_logits)


def check_rows(labels, y_pred):
    """Raise when the static numbers of rows of labels and predictions differ."""
    rows, pred_rows = _checks.static_dim(labels, 0), _checks.static_dim(y_pred, 0)
    if rows is not None and pred_rows is not None and rows != pred_rows:
        raise ValueError(
            f"`y_true` has {rows} rows but `y_pred` has {pred_rows} (one label per prediction)."
        )


def infer_num_classes(y_pred, num_classes):
    """`num_classes` if given, else the static width of `y_pred`."""
    _check_rank(y_pred)
    if num_classes is not None:
        return _checks.check_num_classes(num_classes)
    width = _checks.static_dim(y_pred)
    if width is None or width < 2:
        raise ValueError(
            "`y_pred` must have shape (N, K) with K >= 2 classes, got shape "
            f"{tuple(ops.shape(y_pred))}; pass `num_classes` if K is not known "
            "statically."
        )
    return width


def _check_rank(y_pred):
    shape = tuple(ops.shape(y_pred)) if hasattr(y_pred, "shape") else np.shape(y_pred)
    if len(shape) != 2:
        raise ValueError(f"`y_pred` must have shape (N, K), got shape {tuple(shape)}.")


class Loss(keras.losses.Loss):
    """`keras.losses.Loss` that computes and reduces in float32, returns `dtype`.

    Keras casts `y_true`/`y_pred` to the loss dtype and sums the batch in it;
    with a float16 dtype a batch of moderate per-sample values overflows to inf
    (the sum passes 65504) and a bfloat16 `y_true` cannot hold class ids above
    256. Here, for a 16-bit dtype (`"float16"`, `"mixed_float16"`,
    `"bfloat16"`, ...), inputs are cast to float32, the per-sample values and
    the reduction are float32, and only the reduced result is cast to the
    policy's compute dtype, as Keras's own losses return it. `dtype` is kept
    by `get_config`.
    """

    def __init__(self, name=None, reduction="sum_over_batch_size", dtype=None):
        policy = _float_policy(dtype)
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self._output_dtype = policy.compute_dtype
        self._policy_name = None if dtype is None else policy.name

    @property
    def dtype(self):
        """The dtype of the computation (float32 for 16-bit policies)."""
        if self._output_dtype in ("float16", "bfloat16"):
            return "float32"
        return self._output_dtype

    def __call__(self, y_true, y_pred, sample_weight=None):
        if getattr(self, "from_logits", True) is False:  # before Keras casts to float32
            y_pred = renormalize_16bit_probabilities(y_pred)
        value = super().__call__(y_true, y_pred, sample_weight=sample_weight)
        return ops.cast(value, self._output_dtype)

    def get_config(self):
        config = super().get_config()
        config["dtype"] = self._policy_name
        return config


def _float_policy(dtype):
    """The dtype policy of `dtype` (default: floatx); a loss is a real number, so a
    policy that does not compute in floating point is refused, naming `dtype`."""
    try:
        policy = keras.dtype_policies.get(dtype or keras.config.floatx())
    except (TypeError, ValueError) as error:
        raise ValueError(f"`dtype` must be a floating-point dtype or policy, got {dtype!r} "
                         f"({error}).") from None
    if not keras.backend.is_float_dtype(policy.compute_dtype):
        raise ValueError(f"`dtype` must be a floating-point dtype or policy (a loss is a real "
                         f"number), got {dtype!r}.")
    return policy


def row_max(x):
    """Row maxima, keepdims; defined for a batch of zero rows (TF's max refuses it)."""
    return ops.max(x, axis=-1, keepdims=True, initial=-float("inf"))


class FunctionLoss(Loss):
    """A Loss whose `call` is a per-sample function of (y_true, y_pred, **settings).

    Subclasses set `function` (a staticmethod) and `settings` (the names of
    its keyword arguments, kept as attributes and returned by `get_config`).
    The settings are checked at construction by one call of `function` on a
    tiny batch, so a bad value raises where the loss is built.
    """

    function = None
    settings = ()

    def __init__(self, reduction="sum_over_batch_size", name=None, dtype=None, **settings):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        probe = (np.zeros((1,), "int32"), np.zeros((1, 2), "float32"))
        type(self).function(*probe, **settings)  # validate now
        for key, value in settings.items():
            setattr(self, key, value)

    def call(self, y_true, y_pred):
        settings = {k: getattr(self, k) for k in self.settings}
        return ops.cast(type(self).function(y_true, y_pred, **settings), self.dtype)

    def get_config(self):
        config = super().get_config()
        config.update({k: getattr(self, k) for k in self.settings})
        return config
