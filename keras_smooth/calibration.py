"""Calibration measures and post-hoc temperature fitting.

Conventions (stated once, used by the functions, the streaming metrics and the
plots alike):

* Bins are equal-width, `((m - 1)/M, m/M]` for m = 1..M, with a confidence of
  exactly 0 in the first bin (Guo et al. 2017; ILS paper Eq. 1). A value is
  compared with the float32 bin edges, so a confidence equal to an edge
  belongs to the bin it closes. Empty bins are skipped; bins are weighted by
  their share of the samples.
* `ece` is the top-label (confidence) ECE; `classwise_ece` is Kull et al.
  (2019) / ILS paper Eq. 2: for each class j, the binned gap between the
  frequency of class j and the mean p_j over *all* instances, averaged over
  classes.
* Binary predictions of shape `(N,)` or `(N, 1)` (Keras's sigmoid output)
  are read as P(class 1) and expanded to two columns `[1 - p, p]`; ECE is
  then the top-label ECE of those two columns, the same number in the
  functions, the metrics and the plots.
* Logits or probabilities, one rule for the whole library
  (`looks_like_probabilities`, `to_probabilities`): predictions count as
  probabilities only if every value is in [0, 1] and every row sums to 1
  within `PROBABILITY_ATOL` (binary: the range alone). With
  `from_logits=True` they always go through a softmax (sigmoid for binary);
  with `from_logits=False` a batch that is not probabilities is treated as
  logits -- per batch, eagerly and in compiled code on every backend. The
  NumPy functions here also emit a `UserWarning` naming `from_logits` when
  they do this. Predictions must be finite.
* Accuracy: the functions accumulate bin sums in float64 NumPy; the metrics
  accumulate in float64 variables where the backend has float64
  (TensorFlow; JAX with `jax_enable_x64`), else in float32.

The per-bin sums of the metrics are computed in `keras.ops` by
`confidence_bin_sums` and `classwise_bin_sums`, those of the functions by
their float64 NumPy twins with the same bins, so a metric fed in batches
equals the function on all data (to float32 rounding of the inputs).
"""

import dataclasses
import warnings

import keras
import numpy as np
from keras import ops

from keras_smooth import _checks

PROBABILITY_ATOL = 1e-3
_EPS = 1e-12


# --- input handling -------------------------------------------------------------


def check_num_bins(num_bins):
    if isinstance(num_bins, bool) or not isinstance(num_bins, (int, np.integer)):
        raise TypeError(f"`num_bins` must be an integer, got {num_bins!r}.")
    if num_bins < 1:
        raise ValueError(f"`num_bins` must be >= 1, got {num_bins}.")
    return int(num_bins)


def _softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _sigmoid(z):
    """Float64 sigmoid without overflow warnings."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def is_binary_shape(shape):
    """True for `(N,)` and `(N, 1)` predictions: one P(class 1) (or logit) per row."""
    return len(shape) == 1 or (len(shape) == 2 and shape[-1] == 1)


def looks_like_probabilities(values, binary=False):
    """The library-wide test of whether predictions are probabilities.

    Predictions count as probabilities only if every value is in [0, 1] and,
    for `(N, K)` predictions, every row sums to 1 within `PROBABILITY_ATOL`
    (`binary=True`: the range test alone). Anything else -- including NaN --
    is read as logits. NumPy arrays are tested in NumPy (float64), anything
    else in `keras.ops`, so the test runs eagerly, in a `tf.function` and
    under `jax.jit` alike.

    Args:
        values: `(N, K)` predictions, or `(N,)` with `binary=True`.
        binary: whether `values` are binary P(class 1) values.

    Returns:
        A boolean scalar (`numpy.bool_` or a backend tensor).

    Examples:
    >>> import numpy as np
    >>> from keras_smooth import calibration
    >>> bool(calibration.looks_like_probabilities(np.array([[0.2, 0.8], [0.5, 0.5]])))
    True
    >>> bool(calibration.looks_like_probabilities(np.array([[2.0, -1.0], [0.5, 0.5]])))
    False
    >>> bool(calibration.looks_like_probabilities(np.array([0.3, 0.9]), binary=True))
    True
    """
    xp = np if isinstance(values, np.ndarray) else ops
    # min(x, initial=0) >= 0 iff every x >= 0 (and empty input passes); same for max.
    in_range = xp.logical_and(xp.min(values, initial=0.0) >= 0, xp.max(values, initial=1.0) <= 1)
    if binary:
        return in_range
    off = xp.max(xp.abs(xp.sum(values, axis=-1) - 1.0), initial=0.0)
    return xp.logical_and(in_range, off <= PROBABILITY_ATOL)


def to_probabilities(predictions, from_logits):
    """`(N, K)` probabilities from predictions by the library-wide rule (`keras.ops`).

    With `from_logits=True` predictions always go through a softmax (sigmoid
    for binary `(N,)`/`(N, 1)` predictions). With `from_logits=False` a batch
    that fails `looks_like_probabilities` is treated as logits all the same
    (decided per batch with `ops.cond`, so in graph mode too). Binary
    predictions become two columns `[1 - p, p]`. Computation is in float32
    (float64 inputs stay float64), whatever a mixed-precision policy says.

    Returns:
        `(probs, converted)`: probabilities `(N, K)` and a boolean scalar that
        is True when a softmax/sigmoid was applied.
    """
    y = ops.convert_to_tensor(predictions)
    y = ops.cast(y, "float64" if ops.dtype(y) == "float64" else "float32")
    binary = is_binary_shape(tuple(y.shape))
    if binary:
        y = ops.reshape(y, (-1,))
    squash = ops.sigmoid if binary else (lambda z: ops.softmax(z, axis=-1))
    if from_logits:
        converted = ops.convert_to_tensor(True)
        probs = squash(y)
    else:  # `cond`, not `where`: the softmax is computed only when needed
        converted = ops.logical_not(looks_like_probabilities(y, binary))
        if _checks.is_concrete(converted):  # eager: JAX would retrace `cond` on every call
            probs = squash(y) if bool(converted) else y
        else:
            probs = ops.cond(converted, lambda: squash(y), lambda: y)
    if binary:
        probs = ops.stack([1.0 - probs, probs], axis=-1)
    return probs, converted


def _as_numpy_probabilities(p, from_logits):
    """NumPy float64 twin of `to_probabilities` (same rule), warning on a switch.

    Returns `(probs (N, K), logits (N, K) or None)`; `logits` is set when the
    predictions were read as logits (binary logits z become `[0, z]`).
    """
    binary = is_binary_shape(p.shape)
    if binary:
        p = p.reshape(-1)
    converted = from_logits or not bool(looks_like_probabilities(p, binary))
    if converted and not from_logits:
        warnings.warn(
            "`probs` are not probabilities (values outside [0, 1] or rows not summing to 1 "
            f"within {PROBABILITY_ATOL}), so they are treated as logits and passed through a "
            f"{'sigmoid' if binary else 'softmax'}; pass `from_logits=True` to say so.",
            UserWarning,
            stacklevel=4,
        )
    if binary:
        logits = np.stack([np.zeros_like(p), p], axis=1) if converted else None
        probs = np.stack([_sigmoid(-p), _sigmoid(p)], axis=1) if converted else None
        return (np.stack([1.0 - p, p], axis=1) if probs is None else probs), logits
    return (_softmax(p), p) if converted else (p, None)


def _prepare(labels, probs, from_logits):
    """`prepare` that also returns the logits it used (None for probabilities)."""
    from_logits = _checks.check_bool("from_logits", from_logits)
    p = np.asarray(ops.convert_to_numpy(probs), dtype="float64")
    if not (p.ndim == 1 or (p.ndim == 2 and p.shape[1] >= 1)):
        raise ValueError(
            f"`probs` must have shape (N, K), (N, 1) or (N,), got {p.shape}."
        )
    if p.shape[0] == 0:
        raise ValueError("`probs` is empty: calibration needs at least one sample.")
    if not np.all(np.isfinite(p)):
        bad = p[~np.isfinite(p)][0]
        raise ValueError(f"`probs` must be finite, got {bad} (contains NaN or Inf).")
    p, logits = _as_numpy_probabilities(p, from_logits)
    ids = _label_ids(labels, p.shape[1], p.shape[0])
    return ids, p, logits


def prepare(labels, probs, from_logits=False):
    """Validate and convert to `(ids (N,) int64, probs (N, K) float64)`.

    Predictions are read by the library-wide rule (`to_probabilities`): with
    `from_logits=False`, predictions that are not probabilities are treated
    as logits, with a `UserWarning` naming `from_logits`.

    Args:
        labels: class ids `(N,)`/`(N, 1)` or one-hot rows `(N, K)`.
        probs: `(N, K)` probabilities, `(N,)` or `(N, 1)` binary P(class 1),
            or logits with `from_logits=True`.
        from_logits: whether `probs` are logits.
    """
    ids, p, _ = _prepare(labels, probs, from_logits)
    return ids, p


def _label_ids(labels, num_classes, num_rows, name="labels", pred_name="probs"):
    y = np.asarray(ops.convert_to_numpy(labels))
    if y.ndim == 2 and y.shape[1] == num_classes and num_classes > 1:
        if not (np.all((y == 0) | (y == 1)) and np.all(y.sum(axis=1) == 1)):
            raise ValueError(f"One-hot `{name}` must have exactly one 1 per row.")
        y = y.argmax(axis=1)
    elif y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(
            f"`{name}` must be class ids (N,) or one-hot (N, {num_classes}), got shape {y.shape}."
        )
    if y.shape[0] != num_rows:
        raise ValueError(f"`{name}` has {y.shape[0]} rows but `{pred_name}` has {num_rows}.")
    if y.dtype.kind not in "biuf" or not np.all(np.isfinite(y.astype("float64"))) or np.any(
        y != np.round(y)
    ):
        raise ValueError(f"`{name}` must be integer class ids.")
    y = y.astype("int64")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        bad = y[(y < 0) | (y >= num_classes)][0]
        raise ValueError(f"`{name}` must be class ids in [0, {num_classes}), got {bad}.")
    return y


# --- per-bin sums: keras.ops for the streaming metrics, NumPy float64 for functions ---


def bin_edges(num_bins):
    """The M + 1 edges 0, 1/M, ..., 1 of the equal-width bins (float64)."""
    return np.linspace(0.0, 1.0, check_num_bins(num_bins) + 1)


def bin_index(values, num_bins):
    """Bin of each value: m - 1 for values in ((m - 1)/M, m/M], 0 for 0.

    Compares float32 values with float32 inner edges, so a value equal to an
    edge falls in the bin that the edge closes. NumPy arrays give NumPy
    results (the same bins), anything else a `keras.ops` tensor.
    """
    inner = bin_edges(num_bins)[1:-1].astype("float32")
    if isinstance(values, np.ndarray):
        return np.searchsorted(inner, values.astype("float32"), side="left").astype("int64")
    values = ops.cast(values, "float32")
    if num_bins == 1:
        return ops.zeros_like(ops.cast(values, "int32"))
    flat = ops.reshape(values, (-1,))
    index = ops.searchsorted(ops.convert_to_tensor(inner), flat, side="left")
    return ops.reshape(ops.cast(index, "int32"), ops.shape(values))


def accumulator_dtype():
    """float64 where the backend has it (TensorFlow; JAX with x64 enabled), else float32."""
    if keras.backend.backend() == "jax":
        import jax

        return "float64" if jax.config.jax_enable_x64 else "float32"
    return "float64"


_ROWS_PER_CHUNK = 1024


def _scatter_sum(values, index, num_segments):
    """Sums of the columns of `values` (E, C) per index in [0, num_segments), `(S, C)`.

    TensorFlow's weighted `bincount` is several times faster than its
    `unsorted_segment_sum`; other backends (and JAX's `jit`, where
    `bincount` cannot be traced) use `segment_sum`. Every index is in range.
    """
    if keras.backend.backend() != "tensorflow":
        return ops.segment_sum(values, index, num_segments=num_segments)
    columns = [
        ops.bincount(index, weights=values[:, c], minlength=num_segments)
        for c in range(values.shape[1])
    ]
    return ops.stack(columns, axis=1)


def _bin_sum(values, index, num_segments, per_row, dtype):
    """Per-segment sums of row-major `values` (N * per_row, C); in float32, two-level.

    A float32 scatter-add accumulates sequentially, so its rounding error
    grows with the batch size. Without float64, a batch of more than
    `_ROWS_PER_CHUNK` samples (static size) is summed per chunk of that many
    samples first and the chunk sums are added after.
    """
    entries = values.shape[0]
    if dtype == "float64" or not isinstance(entries, int):
        return _scatter_sum(values, index, num_segments)
    chunk = _ROWS_PER_CHUNK * per_row
    chunks = -(-entries // chunk)
    if chunks <= 1:
        return _scatter_sum(values, index, num_segments)
    chunk_id = ops.arange(entries, dtype="int32") // chunk
    partial = _scatter_sum(values, index + chunk_id * num_segments, chunks * num_segments)
    return ops.sum(ops.reshape(partial, (chunks, num_segments, values.shape[1])), axis=0)


def label_ids(labels, num_classes):
    """Class ids `(N,)` int32 from ids `(N,)`/`(N, 1)` or one-hot rows `(N, K)` (`keras.ops`).

    Integer-valued floats (Keras casts `y_true`) are rounded; one-hot rows
    give their argmax. Nothing is checked here (see the metrics).
    """
    labels = ops.convert_to_tensor(labels)
    if len(labels.shape) == 2 and labels.shape[-1] == num_classes and num_classes > 1:
        return ops.cast(ops.argmax(labels, axis=-1), "int32")
    if len(labels.shape) == 2:
        labels = ops.reshape(labels, (-1,))
    if "int" not in ops.dtype(labels):
        labels = ops.round(labels)
    return ops.cast(labels, "int32")


def _weights(sample_weight, rows_like, dtype):
    if sample_weight is None:
        return ops.ones_like(rows_like, dtype=dtype)
    return ops.cast(sample_weight, dtype)


def confidence_bin_sums(labels, probs, num_bins, sample_weight=None, dtype="float32"):
    """Per-bin (count, sum of confidence, sum of correctness), shape `(3, M)`.

    Args:
        labels: class ids `(N,)`/`(N, 1)` or one-hot rows `(N, K)`.
        probs: `(N, K)` probabilities.
        num_bins: M.
        sample_weight: optional `(N,)` weights (counts become weight sums).
        dtype: dtype in which the sums are accumulated.
    """
    probs = ops.convert_to_tensor(probs)
    ids = label_ids(labels, probs.shape[-1])
    confidence = ops.max(probs, axis=-1, initial=0.0)  # `initial`: empty batches
    # The first index holding the maximum, i.e. argmax; an integer argmax is cheaper
    # than a float one on TensorFlow.
    predicted = ops.argmax(ops.cast(probs == confidence[:, None], "int32"), axis=-1)
    correct = ops.equal(ops.cast(predicted, "int32"), ids)
    index = bin_index(confidence, num_bins)
    weight = _weights(sample_weight, confidence, dtype)
    values = ops.stack(
        [weight, weight * ops.cast(confidence, dtype), weight * ops.cast(correct, dtype)], axis=1
    )
    return ops.transpose(_bin_sum(values, index, num_bins, 1, dtype))


def classwise_bin_sums(labels, probs, num_bins, sample_weight=None, dtype="float32"):
    """Per class and bin (count, sum of p_j, sum of 1[y = j]), shape `(3, K, M)`.

    Counts and sums of p_j need all N x K entries; the hits only the N
    true-class entries.
    """
    probs = ops.convert_to_tensor(probs)
    num_classes = probs.shape[-1]
    ids = ops.clip(label_ids(labels, num_classes), 0, num_classes - 1)
    index = bin_index(probs, num_bins) + ops.arange(num_classes, dtype="int32")[None, :] * num_bins
    segments = num_classes * num_bins
    flat = ops.reshape(index, (-1,))
    weight = _weights(sample_weight, probs[:, 0], dtype)
    mass = ops.cast(probs, dtype)
    if sample_weight is None and keras.backend.backend() == "tensorflow":
        counts = ops.cast(ops.bincount(flat, minlength=segments), dtype)  # exact integers
    else:
        full = weight[:, None] + ops.zeros_like(mass)
        counts = _bin_sum(ops.reshape(full, (-1, 1)), flat, segments, num_classes, dtype)[:, 0]
        mass = mass if sample_weight is None else full * mass
    mass = _bin_sum(ops.reshape(mass, (-1, 1)), flat, segments, num_classes, dtype)[:, 0]
    true_index = ops.take_along_axis(index, ids[:, None], axis=1)[:, 0]
    hits = _bin_sum(weight[:, None], true_index, segments, 1, dtype)[:, 0]
    return ops.reshape(ops.stack([counts, mass, hits]), (3, num_classes, num_bins))


def ece_from_sums(sums):
    """Top-label ECE from `confidence_bin_sums` (works on accumulated sums)."""
    total = ops.sum(sums[0])
    gap = ops.sum(ops.abs(sums[2] - sums[1]))
    return gap / ops.where(total > 0, total, 1.0)  # no data: 0; NaN sums stay NaN


def classwise_ece_from_sums(sums):
    """Classwise ECE from `classwise_bin_sums`: mean over classes of the binned gap."""
    total = ops.sum(sums[0][0])
    per_class = ops.sum(ops.abs(sums[2] - sums[1]), axis=-1)
    return ops.mean(per_class) / ops.where(total > 0, total, 1.0)


def _numpy_confidence_sums(ids, p, num_bins):
    """Float64 NumPy twin of `confidence_bin_sums` (same bins), shape `(3, M)`."""
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == ids).astype("float64")
    index = bin_index(confidence, num_bins)
    return np.stack(
        [np.bincount(index, w, num_bins) for w in (None, confidence, correct)]
    ).astype("float64")


def _numpy_classwise_sums(ids, p, num_bins):
    """Float64 NumPy twin of `classwise_bin_sums`, shape `(3, K, M)`.

    The class-j hits need only the N true-class entries.
    """
    n, k = p.shape
    index = bin_index(p, num_bins) + np.arange(k)[None, :] * num_bins
    size = k * num_bins
    counts = np.bincount(index.ravel(), minlength=size).astype("float64")
    mass = np.bincount(index.ravel(), p.ravel(), size)
    hits = np.bincount(index[np.arange(n), ids], minlength=size).astype("float64")
    return np.stack([counts, mass, hits]).reshape(3, k, num_bins)


def _ece_value(sums):
    return float(np.abs(sums[2] - sums[1]).sum() / sums[0].sum())


def _classwise_value(sums):
    return float(np.abs(sums[2] - sums[1]).sum(axis=-1).mean() / sums[0][0].sum())


# --- functions ----------------------------------------------------------------------


def _onehot(ids, num_classes):
    return np.eye(num_classes, dtype="float32")[ids]


def ece(labels, probs, num_bins=15, from_logits=False):
    """Top-label expected calibration error (Guo et al. 2017; ILS paper Eq. 1).

    Formula:
        ECE = sum_m |B_m| / N * |acc(B_m) - conf(B_m)|

    with confidence = max_k p_k, bins `((m-1)/M, m/M]` (0 in the first).
    Bin sums are accumulated in float64.

    Args:
        labels: class ids or one-hot rows.
        probs: `(N, K)` probabilities (or logits with `from_logits=True`),
            or `(N,)`/`(N, 1)` binary P(class 1). With `from_logits=False`,
            predictions that are not probabilities (see
            `looks_like_probabilities`) are treated as logits, with a warning.
        num_bins: M >= 1. Default 15.
        from_logits: whether `probs` are logits.

    Returns:
        A Python float in [0, 1].

    Examples:
    >>> from keras_smooth import calibration
    >>> probs = [[0.9, 0.1], [0.6, 0.4], [0.3, 0.7]]
    >>> round(calibration.ece([0, 1, 1], probs, num_bins=10), 4)
    0.3333
    """
    num_bins = check_num_bins(num_bins)
    ids, p = prepare(labels, probs, from_logits)
    return _ece_value(_numpy_confidence_sums(ids, p, num_bins))


def classwise_ece(labels, probs, num_bins=15, from_logits=False):
    """Classwise ECE (Kull et al. 2019; ILS paper Eq. 2).

    Formula:
        cwECE = 1/K sum_j sum_m |B_mj| / N * |actual(B_mj) - predicted(B_mj)|

    where B_mj holds the instances whose p_j falls in bin m, `actual` is the
    frequency of class j among them and `predicted` their mean p_j. Every
    instance counts for every class, including classes absent from the batch.
    Inputs are read as for `ece`; sums are accumulated in float64.

    Examples:
    >>> from keras_smooth import calibration
    >>> probs = [[0.9, 0.1], [0.6, 0.4], [0.3, 0.7]]
    >>> round(calibration.classwise_ece([0, 1, 1], probs, num_bins=10), 4)
    0.3333
    """
    num_bins = check_num_bins(num_bins)
    ids, p = prepare(labels, probs, from_logits)
    return _classwise_value(_numpy_classwise_sums(ids, p, num_bins))


def true_class_subset_ece(labels, probs, num_bins=15, from_logits=False):
    """Mean over classes j of the top-label ECE on the instances whose true class is j.

    This is *not* classwise ECE (Kull et al. 2019; `classwise_ece`). It is the
    quantity the ILS authors' public code computes under the name cwECE, and
    the one behind the cwECE column of the ILS paper's tables; it is offered
    only to compare with those numbers. Classes without instances are skipped.
    """
    num_bins = check_num_bins(num_bins)
    ids, p = prepare(labels, probs, from_logits)
    values = [
        ece(ids[ids == j], p[ids == j], num_bins) for j in range(p.shape[1]) if np.any(ids == j)
    ]
    return float(np.mean(values))


def adaptive_ece(labels, probs, num_bins=15, from_logits=False):
    """Top-label ECE with equal-mass bins (Nixon et al. 2019).

    The samples are sorted by confidence and split into `num_bins` groups of
    sizes differing by at most one (`numpy.array_split`); ties may straddle a
    group boundary. It needs every confidence at once, so there is no
    streaming metric for it.
    """
    num_bins = check_num_bins(num_bins)
    ids, p = prepare(labels, probs, from_logits)
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == ids).astype("float64")
    order = np.argsort(confidence, kind="stable")
    n = len(ids)
    return float(
        sum(
            abs(correct[g].sum() - confidence[g].sum()) / n
            for g in np.array_split(order, min(num_bins, n))
        )
    )


def _log_probs(labels, probs, from_logits):
    """ids, probabilities and log-probabilities (exact log-softmax for logits)."""
    ids, p, z = _prepare(labels, probs, from_logits)
    if z is None:
        return ids, p, np.log(np.maximum(p, _EPS))
    z = z - z.max(axis=1, keepdims=True)
    return ids, p, z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def nll(labels, probs, from_logits=False):
    """Mean negative log-likelihood of the true class (natural log).

    Probabilities are clamped at 1e-12 before the logarithm; with
    `from_logits=True` the log-softmax is exact.
    """
    ids, _, log_p = _log_probs(labels, probs, from_logits)
    return float(-log_p[np.arange(len(ids)), ids].mean())


def brier(labels, probs, from_logits=False):
    """Multi-class Brier score: mean over samples of sum_k (p_k - y_k)^2, in [0, 2]."""
    ids, p = prepare(labels, probs, from_logits)
    return float(((p - np.eye(p.shape[1])[ids]) ** 2).sum(axis=1).mean())


def accuracy(labels, probs, from_logits=False):
    """Top-1 accuracy (ties go to the lowest class index)."""
    ids, p = prepare(labels, probs, from_logits)
    return float((p.argmax(axis=1) == ids).mean())


def bin_statistics(labels, probs, num_bins=15, from_logits=False):
    """Per-bin statistics of top-label confidence, for reliability diagrams.

    Returns:
        dict with `edges` (M + 1), `counts` (M), `confidence` and `accuracy`
        (M; NaN for empty bins), and `ece`.
    """
    num_bins = check_num_bins(num_bins)
    ids, p = prepare(labels, probs, from_logits)
    sums = _numpy_confidence_sums(ids, p, num_bins)
    counts = sums[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.where(counts > 0, sums[1] / counts, np.nan)
        acc = np.where(counts > 0, sums[2] / counts, np.nan)
    return {
        "edges": bin_edges(num_bins),
        "counts": counts.astype("int64"),
        "confidence": confidence,
        "accuracy": acc,
        "ece": _ece_value(sums),
    }


def summary(labels, probs, num_bins=15, from_logits=False):
    """accuracy, nll, ece, classwise_ece and brier in one dict of floats."""
    num_bins = check_num_bins(num_bins)
    ids, p, log_p = _log_probs(labels, probs, from_logits)
    onehot = _onehot(ids, p.shape[1])
    return {
        "accuracy": float((p.argmax(axis=1) == ids).mean()),
        "nll": float(-log_p[np.arange(len(ids)), ids].mean()),
        "ece": _ece_value(_numpy_confidence_sums(ids, p, num_bins)),
        "classwise_ece": _classwise_value(_numpy_classwise_sums(ids, p, num_bins)),
        "brier": float(((p - onehot) ** 2).sum(axis=1).mean()),
    }


# --- temperature scaling ----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TemperatureFit:
    """Result of `fit_temperature`; `float(result)` is the temperature."""

    temperature: float
    nll_before: float
    nll_after: float
    converged: bool
    iterations: int
    message: str

    def __float__(self):
        return float(self.temperature)


def apply_temperature(predictions, temperature, from_logits=True):
    """Probabilities softmax(logits / T) as a float64 NumPy array.

    With `from_logits=False` the predictions are probabilities and
    `softmax(log p / T)` is returned.
    """
    temperature = _checks.check_positive("temperature", temperature)
    z = np.asarray(ops.convert_to_numpy(predictions), dtype="float64")
    if not from_logits:
        z = np.log(np.maximum(z, _EPS))
    return _softmax(z / temperature)


def _nll_and_derivatives(beta, logits, ids, logits_sq=None):
    """NLL of softmax(beta * z) and its first two derivatives in beta (float64)."""
    scaled = beta * logits
    scaled -= scaled.max(axis=1, keepdims=True)
    e = np.exp(scaled)
    total = e.sum(axis=1)
    rows = np.arange(len(ids))
    nll_value = (np.log(total) - scaled[rows, ids]).mean()
    e /= total[:, None]  # now the probabilities
    mean_z = np.einsum("ij,ij->i", e, logits)
    grad = (mean_z - logits[rows, ids]).mean()
    second = np.einsum("ij,ij->i", e, logits * logits if logits_sq is None else logits_sq)
    hess = (second - mean_z**2).mean()
    return nll_value, grad, max(hess, 0.0)


def fit_temperature(
    logits, labels, *, bounds=(0.01, 100.0), tol=1e-10, max_iterations=100, from_logits=True
):
    """The temperature T > 0 minimising the NLL of softmax(logits / T).

    The NLL is convex in beta = 1/T (its second derivative is the mean
    variance of the logits under the softmax), so its derivative is monotone
    in beta. The search keeps a bracket on beta in `[1/bounds[1], 1/bounds[0]]`
    and takes Newton steps, falling back to bisection in log beta whenever a
    Newton step would leave the bracket. Everything runs in float64, so float32
    logits and saturated logits are handled without stalling; the result is
    always positive.

    When the minimum lies outside `bounds` (for example, every validation
    sample already correct with a large margin, where the NLL keeps falling as
    T -> 0), the nearest bound is returned with `converged=False` and a
    warning says which bound and why; so does running out of iterations.

    Args:
        logits: `(N, K)` logits (or probabilities with `from_logits=False`,
            whose logarithms are used).
        labels: class ids or one-hot rows.
        bounds: `(T_min, T_max)` with 0 < T_min < T_max.
        tol: relative tolerance on beta.
        max_iterations: iteration limit.

    Returns:
        `TemperatureFit` (use `float(fit)` for T).

    Examples:
    >>> import numpy as np
    >>> from keras_smooth.calibration import fit_temperature
    >>> rng = np.random.default_rng(0)
    >>> logits = rng.normal(size=(500, 4)) * 3.0
    >>> labels = np.array([rng.choice(4, p=np.exp(z) / np.exp(z).sum()) for z in logits])
    >>> fit = fit_temperature(logits * 2.0, labels)   # twice over-confident
    >>> 1.7 < float(fit) < 2.3, fit.converged     # T near 2, up to sampling noise
    (True, True)
    """
    t_min, t_max = (float(b) for b in bounds)
    if not 0.0 < t_min < t_max or not np.isfinite(t_max):
        raise ValueError(f"`bounds` must satisfy 0 < T_min < T_max < inf, got {bounds}.")
    tol = _checks.check_positive("tol", tol)
    if isinstance(max_iterations, bool) or not isinstance(max_iterations, (int, np.integer)) or max_iterations < 1:
        raise ValueError(f"`max_iterations` must be a positive integer, got {max_iterations!r}.")
    z = np.asarray(ops.convert_to_numpy(logits), dtype="float64")
    if not from_logits:
        ids, p = prepare(labels, z, from_logits=False)
        z = np.log(np.maximum(p, _EPS))
    else:
        ids, _ = prepare(labels, z, from_logits=True)
        if z.ndim == 1:
            z = np.stack([np.zeros_like(z), z], axis=1)
    z_sq = z * z
    evaluate = lambda beta: _nll_and_derivatives(beta, z, ids, z_sq)  # noqa: E731
    nll_before = evaluate(1.0)[0]
    lo, hi = 1.0 / t_max, 1.0 / t_min
    _, g_lo, _ = evaluate(lo)
    _, g_hi, _ = evaluate(hi)

    def done(beta, converged, iterations, message):
        if not converged:
            warnings.warn(message, stacklevel=3)
        return TemperatureFit(
            temperature=1.0 / beta,
            nll_before=nll_before,
            nll_after=evaluate(beta)[0],
            converged=converged,
            iterations=iterations,
            message=message,
        )

    if g_lo >= 0:
        return done(lo, False, 0, f"The NLL keeps falling as T grows: the optimum is above T_max={t_max}.")
    if g_hi <= 0:
        return done(
            hi, False, 0,
            f"The NLL keeps falling as T shrinks (predictions already separate the "
            f"classes): the optimum is below T_min={t_min}.",
        )
    beta = min(max(1.0, lo), hi)
    for iteration in range(1, max_iterations + 1):
        _, grad, hess = evaluate(beta)
        if grad > 0:
            hi = beta
        else:
            lo = beta
        step = beta - grad / hess if hess > 0 else np.nan
        new = step if lo < step < hi else float(np.sqrt(lo * hi))
        if abs(new - beta) <= tol * beta or grad == 0:
            return done(new, True, iteration, "converged")
        beta = new
    return done(beta, False, max_iterations, f"No convergence in {max_iterations} iterations.")
