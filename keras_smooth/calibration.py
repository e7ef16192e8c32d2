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

import collections.abc
import dataclasses
import math
import warnings

import keras
import numpy as np
from keras import ops

from keras_smooth import _checks, _ops, _temperature_model

PROBABILITY_ATOL = _checks.PROBABILITY_ATOL
looks_like_probabilities = _checks.looks_like_probabilities
_EPS = 1e-12


# --- input handling -------------------------------------------------------------


MAX_BINS = 2**20  # far beyond any useful histogram; keeps (K x) bins accumulators allocatable


def check_num_bins(num_bins):
    return _checks.check_bounded_count("num_bins", num_bins, 1, MAX_BINS)


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
    from_logits = _checks.check_bool("from_logits", from_logits)
    try:
        y = ops.convert_to_tensor(predictions)
    except (TypeError, ValueError) as error:  # ragged lists, None
        raise TypeError(f"`predictions` must be an array of real numbers: {error}") from None
    held = ops.dtype(y)  # float16/bfloat16 probabilities get their own row-sum tolerance
    _checks.check_real_dtype("predictions", held)  # e.g. strings
    y = ops.cast(y, "float64" if held == "float64" else "float32")
    binary = is_binary_shape(tuple(y.shape))
    if binary:
        y = ops.reshape(y, (-1,))
    squash = ops.sigmoid if binary else (lambda z: ops.softmax(z, axis=-1))
    if from_logits:
        converted = ops.convert_to_tensor(True)
        probs = squash(y)
    else:  # `cond`, not `where`: the softmax is computed only when needed
        converted = ops.logical_not(looks_like_probabilities(y, binary, dtype=held))
        if _checks.is_concrete(converted):  # eager: JAX would retrace `cond` on every call
            probs = squash(y) if bool(converted) else y
        else:
            probs = ops.cond(converted, lambda: squash(y), lambda: y)
    if binary:
        probs = ops.stack([1.0 - probs, probs], axis=-1)
    return probs, converted


def _as_numpy_probabilities(p, from_logits, held=None):
    """NumPy float64 twin of `to_probabilities` (same rule), warning on a switch.

    Returns `(probs (N, K), logits (N, K) or None)`; `logits` is set when the
    predictions were read as logits (binary logits z become `[0, z]`).
    """
    binary = is_binary_shape(p.shape)
    if binary:
        p = p.reshape(-1)
    converted = from_logits or not bool(looks_like_probabilities(p, binary, dtype=held))
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


def reads_as_logits(predictions):
    """Whether the library-wide rule reads `predictions` (NumPy, eager) as logits.

    Tested with the row-sum tolerance of the predictions' own dtype, so 16-bit
    probabilities count as probabilities. For callbacks whose `from_logits`
    is None (decide from the predictions).
    """
    raw = _checks.as_real_array("predictions", predictions, dtype=None)
    values = np.asarray(raw, dtype="float64")
    binary = is_binary_shape(values.shape)
    return not bool(looks_like_probabilities(values.reshape(-1) if binary else values, binary,
                                             dtype=raw.dtype))


def _prepare(labels, probs, from_logits):
    """`prepare` that also returns the logits it used (None for probabilities)."""
    from_logits = _checks.check_bool("from_logits", from_logits)
    raw = _checks.as_real_array("probs", probs, dtype=None)
    p = np.asarray(raw, dtype="float64")
    if not (p.ndim == 1 or (p.ndim == 2 and p.shape[1] >= 1)):
        raise ValueError(
            f"`probs` must have shape (N, K), (N, 1) or (N,), got {p.shape}."
        )
    if p.shape[0] == 0:
        raise ValueError("`probs` is empty: calibration needs at least one sample.")
    if not np.all(np.isfinite(p)):
        bad = p[~np.isfinite(p)][0]
        raise ValueError(f"`probs` must be finite, got {bad} (contains NaN or Inf).")
    p, logits = _as_numpy_probabilities(p, from_logits, held=raw.dtype)
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


def _label_ids(labels, num_classes, num_rows=None, name="labels", pred_name="probs"):
    """Checked class ids `(N,)` int64 from ids `(N,)`/`(N, 1)` or one-hot rows `(N, K)`
    (K > 1); errors name `name`, and `pred_name` when the rows differ from `num_rows`."""
    y = _checks.as_real_array(name, labels, dtype=None)
    if y.ndim == 2 and y.shape[1] == num_classes and num_classes > 1:
        problem = _checks.label_problem(y, num_classes, name, "onehot")
        if problem is not None:
            raise ValueError(problem)
        y = y.argmax(axis=1)
    elif y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(
            f"`{name}` must be class ids of shape (N,) or (N, 1), or one-hot rows of shape "
            f"(N, {num_classes}); got shape {y.shape}."
        )
    if num_rows is not None and y.shape[0] != num_rows:
        raise ValueError(f"`{name}` has {y.shape[0]} rows but `{pred_name}` has {num_rows}.")
    return _checks.class_ids(y, num_classes, name).astype("int64", copy=False)


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
    `bincount` cannot be traced), and TensorFlow under XLA (`jit_compile`,
    where its size is not a compile-time constant), use `segment_sum`. Every
    index is in range.
    """
    if keras.backend.backend() != "tensorflow" or _ops.tf_xla_active():
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
    if keras.backend.standardize_dtype(labels.dtype) == "bool":  # ids 1/0, as `ece` reads them
        labels = ops.cast(labels, "int32")
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


def _sparse_classwise_sums(ids, probs, num_bins, weight):
    """`classwise_bin_sums` from the entries above the first bin edge only (TensorFlow, eager).

    Rows of probabilities have at most `num_bins` entries above 1/M, so for
    large K nearly every entry is in bin 0. The entries above the first edge
    are found with `tf.where` (a dynamic shape: only for the metrics' own
    eager `tf.function`, never under XLA) and binned; bin 0 of class j gets
    the weighted column total minus the other bins. Float64 sums.
    """
    import tensorflow as tf

    num_classes = probs.shape[-1]
    segments = num_classes * num_bins
    first_edge = tf.constant(bin_edges(num_bins)[1], "float32")
    # compared in float32, as `bin_index` compares (probabilities of any float dtype)
    where = tf.where(tf.cast(probs, "float32") > first_edge)  # (E, 2) coordinates
    values = tf.gather_nd(probs, where)
    row_weight = tf.gather(weight, where[:, 0])
    index = tf.cast(where[:, 1], "int32") * num_bins + bin_index(values, num_bins)
    counts = tf.math.bincount(index, weights=row_weight, minlength=segments)
    mass = tf.math.bincount(index, weights=row_weight * tf.cast(values, "float64"),
                            minlength=segments)
    totals = [tf.reduce_sum(weight) + tf.zeros((num_classes,), "float64"),
              tf.linalg.matvec(tf.cast(probs, "float64"), weight, transpose_a=True)]
    first_bin = tf.one_hot(tf.zeros((num_classes,), "int32"), num_bins, dtype="float64")
    sums = []
    for binned, total in zip((counts, mass), totals):
        binned = tf.reshape(binned, (num_classes, num_bins))
        rest = total - tf.reduce_sum(binned, axis=1)
        sums.append(binned + rest[:, None] * first_bin)
    true_p = tf.gather(probs, ids, axis=1, batch_dims=1)
    true_index = ids * num_bins + bin_index(true_p, num_bins)
    hits = tf.math.bincount(true_index, weights=weight, minlength=segments)
    return tf.stack([*sums, tf.reshape(hits, (num_classes, num_bins))])


def classwise_bin_sums(labels, probs, num_bins, sample_weight=None, dtype="float32",
                       sparse=False):
    """Per class and bin (count, sum of p_j, sum of 1[y = j]), shape `(3, K, M)`.

    Counts and sums of p_j need all N x K entries; the hits only the N
    true-class entries. `sparse=True` (TensorFlow, float64, outside XLA) bins
    only the entries above the first edge (`_sparse_classwise_sums`).
    """
    probs = ops.convert_to_tensor(probs)
    num_classes = probs.shape[-1]
    ids = ops.clip(label_ids(labels, num_classes), 0, num_classes - 1)
    if sparse and num_bins > 1 and dtype == "float64":
        return _sparse_classwise_sums(ids, probs, num_bins, _weights(sample_weight, probs[:, 0],
                                                                     dtype))
    index = bin_index(probs, num_bins) + ops.arange(num_classes, dtype="int32")[None, :] * num_bins
    segments = num_classes * num_bins
    flat = ops.reshape(index, (-1,))
    weight = _weights(sample_weight, probs[:, 0], dtype)
    mass = ops.cast(probs, dtype)
    if (sample_weight is None and keras.backend.backend() == "tensorflow"
            and not _ops.tf_xla_active()):
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
    # the subsets' sums directly: `ece` would test the (already read) rows again, with
    # the float64 tolerance, and softmax 16-bit probabilities whose rows are off by > 1e-3
    values = [
        _ece_value(_numpy_confidence_sums(ids[ids == j], p[ids == j], num_bins))
        for j in range(p.shape[1])
        if np.any(ids == j)
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


def evaluate(labels, logits, temperature=1.0, groups=None):
    """`summary` of softmax(logits / T), plus the accuracy on named subsets of the rows.

    Args:
        labels: `(N,)` class ids or one-hot rows.
        logits: `(N, K)` logits.
        temperature: T > 0 applied before the softmax.
        groups: optional `{name: boolean mask (N,)}`; each adds
            `accuracy_<name>`, the accuracy on the rows of the mask (NaN for
            an empty mask).

    Returns:
        dict of floats: accuracy, nll, ece, classwise_ece, brier and one
        `accuracy_<name>` per group.
    """
    probs = apply_temperature(logits, temperature)
    out = summary(labels, probs)
    correct = probs.argmax(axis=1) == _label_ids(labels, probs.shape[1], len(probs),
                                                 pred_name="logits")
    for name, mask in _check_groups(groups):
        mask = mask.reshape(-1)
        if mask.shape != correct.shape:
            raise ValueError(f"`groups[{name!r}]` has {mask.size} entries for {correct.size} rows.")
        out[f"accuracy_{name}"] = float(correct[mask].mean()) if mask.any() else float("nan")
    return out


def _check_groups(groups):
    """The `(name, boolean mask)` pairs of `evaluate`'s `groups` (a mapping of masks)."""
    if groups is None:
        return []
    if not isinstance(groups, collections.abc.Mapping):
        raise TypeError(f"`groups` must be a mapping {{name: boolean mask (N,)}}, got {groups!r}.")
    pairs = []
    for name, mask in groups.items():
        mask = np.asarray(ops.convert_to_numpy(mask) if hasattr(mask, "shape") else mask)
        if mask.dtype != bool and mask.size:  # row indices would be read as truth values
            raise TypeError(f"`groups[{name!r}]` must be a boolean mask with one entry per row, "
                            f"got values of dtype {mask.dtype}: turn a 0/1 mask m into "
                            "`m.astype(bool)`, row indices i into `np.isin(np.arange(N), i)`.")
        pairs.append((name, mask))
    return pairs


# --- temperature scaling ----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TemperatureFit:
    """Result of `fit_temperature`; `float(result)` is the temperature.

    Attributes:
        temperature: the fitted T, always within the `bounds` of the fit.
        nll_before: mean NLL of softmax(logits), i.e. at T = 1.
        nll_after: mean NLL of softmax(logits / temperature), never above
            `nll_before` when T = 1 lies within the bounds. Both are float64
            values, within 5e-11 relative (a proven bound) when the one-pass
            fit certified the result, else to float64 rounding.
        converged: True only when `temperature` is within `tol` (relative) of
            the minimiser over the bounds, or `nll_after` is the minimum there
            to float64 rounding. False, with a `UserWarning` carrying
            `message`, when the minimum lies at or beyond a bound or the
            search ran out of iterations.
        iterations: search steps after the starting point on all rows,
            float32 first steps included (one pass of moments for a Taylor
            model counts as one; a warm start on a row sample is not counted).
        message: what happened, in words.
    """

    temperature: float
    nll_before: float
    nll_after: float
    converged: bool
    iterations: int
    message: str

    def __float__(self):
        return float(self.temperature)


def _numpy_logits(p, from_logits, held=None):
    """`(N, K)` float64 logits of checked predictions, by the library-wide rule.

    Probabilities give log(max(p, 1e-12)); binary predictions give two columns
    (logits z become [0, z]).
    """
    probs, logits = _as_numpy_probabilities(p, from_logits, held=held)
    return logits if logits is not None else np.log(np.maximum(probs, _EPS))


def apply_temperature(predictions, temperature, from_logits=True):
    """Probabilities softmax(z / T) as a float64 NumPy array `(N, K)`.

    z are the logits, or log p for probabilities; predictions are read by the
    library-wide rule (`looks_like_probabilities`), so with `from_logits=False`
    a batch that is not probabilities is taken for logits, with a warning.
    Binary `(N,)`/`(N, 1)` predictions give the two columns [1 - q, q].
    """
    temperature = _checks.check_positive("temperature", temperature)
    from_logits = _checks.check_bool("from_logits", from_logits)
    raw = _checks.as_real_array("predictions", predictions, dtype=None)
    p = np.asarray(raw, dtype="float64")
    if p.ndim not in (1, 2) or p.shape[0] == 0 or (p.ndim == 2 and p.shape[1] == 0):
        raise ValueError(f"`predictions` must have shape (N, K), (N, 1) or (N,), got {p.shape}.")
    if not np.all(np.isfinite(p)):
        raise ValueError(f"`predictions` must be finite, got {p[~np.isfinite(p)][0]}.")
    with np.errstate(over="ignore"):
        z = _numpy_logits(p, from_logits, held=raw.dtype)
        # shifted by the row maximum before dividing (softmax does not change): each row
        # keeps a 0, and a tiny T sends the others to -inf, the limit, never to inf - inf.
        # Halved first, so that a span beyond the float64 range (1e308 to -1e308) stays
        # finite; the halving and doubling are exact.
        half = z / 2 - z.max(axis=-1, keepdims=True) / 2
        return _softmax(half / temperature * 2)


_WARM_START_ROWS = 8192  # above this many rows, start from the optimum of every s-th row
_WARM_START_SAMPLE = 512
_BLOCK_ELEMENTS = 1 << 16  # rows are processed in blocks of about this many entries


def _row_dot(a, b):
    """Row-wise dot products of two `(n, k)` arrays (`np.vecdot`, NumPy >= 2, is faster)."""
    return np.vecdot(a, b) if _VECDOT else np.einsum("ij,ij->i", a, b)


_VECDOT = hasattr(np, "vecdot")


class _ShiftedNLL:
    """The NLL of softmax(beta * u) as a function of beta, on logits shifted once.

    u = z - max_j z (float64), so every entry is <= 0 with a 0 in each row:
    exp(beta * u) cannot overflow, each row sum is >= 1, and where the softmax
    saturates its mass sits at u = 0, so the variance E[u^2] - E[u]^2 does not
    cancel. T > 0 keeps the argmax, so one shift serves every beta. When the
    largest gap to a row maximum (`spread`) is outside [1e-100, 1e100], u is
    divided by it (`scale`) so that u * u stays finite; beta is then
    `scale / T`, otherwise `1 / T`. Float32 logits are neither copied nor
    shifted as a whole: u is formed per block of rows, in float64 (exact: the
    difference of two float32 numbers) here, and rounded to float32 in the
    cheaper twin that `in_float32` gives for a first search.
    """

    def __init__(self, z, ids, row_max=None, rescale=True):
        self.z, self.ids, self.dtype, self.rescale = z, ids, "float64", rescale
        self.row_max = z.max(axis=1, keepdims=True) if row_max is None else row_max
        if z.dtype == np.float32 and row_max is None:  # float64 u per block, from z
            u = self._float32_shift()
        else:
            with np.errstate(over="ignore"):  # an overflow is reported by _float64_shift
                u = self._float64_shift(z - self.row_max)
        self.shifted, rows = u, np.arange(len(ids))
        if u is None:  # float64 differences of float32 numbers are exact
            self.mean_true = float(np.mean(z[rows, ids] - self.row_max[rows, 0]))
        else:
            self.mean_true = float(u[rows, ids].mean())
        self.block = max(1, _BLOCK_ELEMENTS // z.shape[1])
        self.u_work, self.work = (np.empty((min(self.block, z.shape[0]), z.shape[1]))
                                  for _ in range(2))

    def _float32_shift(self):
        """Checks float32 logits without forming u; sets `spread` (here an upper bound:
        largest row maximum minus smallest logit), `scale` (1: float32 gaps are within
        [1e-100, 1e100]), `flat` and the float64 row maxima. Returns None (no u)."""
        z, row_max = self.z, self.row_max
        low, high = float(z.min()), float(row_max.max())
        if not (np.isfinite(low) and np.isfinite(high) and np.isfinite(row_max).all()):
            _raise_non_finite(z)  # NaN propagates to the row maxima
        self.spread, self.scale, self.row_max = high - low, 1.0, row_max.astype("float64")
        # every row constant? A non-constant first row (the usual case) settles it at once
        self.flat = self.spread == 0.0 or (
            z[0].min() == row_max[0, 0] and bool(np.all(z == row_max)))
        return None

    def _float64_shift(self, u):
        """u in float64, scaled if its spread is extreme; sets `spread`, `scale`, `flat`."""
        if not np.all(np.isfinite(self.row_max)):
            _raise_non_finite(self.z)
        self.spread = spread = float(-u.min())
        if not np.isfinite(spread):  # finite logits whose differences overflow float64
            raise ValueError(
                "`logits` within a row differ by more than the float64 range "
                f"(max |logit| = {np.abs(self.z).max():.3g}); divide them by a common factor."
            )
        self.flat = spread == 0.0
        rescale = self.rescale and not self.flat and not 1e-100 < spread < 1e100
        self.scale = spread if rescale else 1.0
        if self.scale != 1.0:
            u /= self.scale
        return u

    def in_float32(self):
        """The same objective (same beta units) in float32, u formed per block in float32
        (rounded), with float64 means. For a first search; only for float32 logits."""
        twin = object.__new__(_ShiftedNLL)
        twin.__dict__.update(self.__dict__)
        twin.dtype, twin.shifted, twin.row_max = "float32", None, self.row_max.astype("float32")
        twin.u_work, twin.work = (np.empty(self.work.shape, "float32") for _ in range(2))
        return twin

    def __call__(self, beta, order=2, also=None):
        """NLL and its derivatives in beta up to `order` (0, 1 or 2).

        With `also`, a second beta, returns `(that, NLL(also))`, both from one pass over
        the rows.

        Formula:
            NLL(beta) = mean_i [log sum_j exp(beta u_ij) - beta u_iy]
            NLL'(beta) = mean_i E_p[u_i] - mean_i u_iy
            NLL''(beta) = mean_i Var_p[u_i] >= 0 (so the NLL is convex in beta)
        """
        n, k = self.z.shape
        sums = np.empty((order + 2, n))  # per row: sum_j e_ij u_ij^m for m <= order; `also`
        ones = np.ones(k, dtype=self.dtype)  # row sums as a matrix-vector product
        for start in range(0, n, self.block):
            rows, count = slice(start, min(start + self.block, n)), min(self.block, n - start)
            if self.shifted is None:  # u of this block from the float32 logits
                block = self._block_u(rows, count)
            else:
                block = self.shifted[rows]
            work = self.work[:count]
            if also is not None:  # at also = 1 (T = 1), exp(u) as it is
                scaled = block if also == 1 else np.multiply(block, also, out=work)
                sums[-1, rows] = np.exp(scaled, out=work) @ ones
            work = np.exp(np.multiply(block, beta, out=work), out=work)
            sums[0, rows] = work @ ones
            if order == 1:
                sums[1, rows] = _row_dot(work, block)
            if order >= 2:  # e u once, then its row sums and its products with u
                weighted = np.multiply(work, block, out=work)
                sums[1, rows] = weighted @ ones
                sums[2, rows] = _row_dot(weighted, block)
        result = self._reduce(beta, order, sums)
        return result if also is None else (result, self._reduce(also, 0, sums[-1:]))

    def moments(self, beta, count):
        """Per row, sum_j exp(beta u_ij) u_ij^m for m = 0..count: a `(count + 1, N)` float64
        array (float32 sums for the float32 twin). One exp per entry, as `__call__`."""
        n, k = self.z.shape
        sums = np.empty((count + 1, n))
        ones = np.ones(k, dtype=self.dtype)
        for start in range(0, n, self.block):
            rows, size = slice(start, min(start + self.block, n)), min(self.block, n - start)
            block = self._block_u(rows, size) if self.shifted is None else self.shifted[rows]
            work = np.exp(np.multiply(block, beta, out=self.work[:size]), out=self.work[:size])
            sums[0, rows] = work @ ones
            for m in range(1, count + 1):
                sums[m, rows] = np.multiply(work, block, out=work) @ ones
        return sums

    def _block_u(self, rows, count):
        """u of a block of rows of float32 logits: exact in float64, rounded in float32."""
        block = self.u_work[:count]
        if self.dtype == "float32":
            return np.subtract(self.z[rows], self.row_max[rows], out=block)
        block[...] = self.z[rows]  # a cast copy, then a subtraction: faster than one mixed op
        block -= self.row_max[rows]
        return block

    def _reduce(self, beta, order, sums):
        """Value and derivatives from the per-row sums of `__call__`."""
        value = float(np.log(sums[0]).mean() - beta * self.mean_true)
        if order == 0:
            return value
        mean_u = sums[1] / sums[0]
        grad = float(mean_u.mean() - self.mean_true)
        if order == 1:
            return value, grad
        hess = float((sums[2] / sums[0] - mean_u * mean_u).mean())
        return value, grad, max(hess, 0.0)

    def every(self, step):
        """The same objective (same beta units and dtype) on every `step`-th row."""
        if self.shifted is None:  # float32 logits, unscaled
            sample = _ShiftedNLL(self.z[::step], self.ids[::step], rescale=False)
            return sample.in_float32() if self.dtype == "float32" else sample
        return _ShiftedNLL(self.shifted[::step], self.ids[::step], row_max=0.0, rescale=False)


def _nll_and_derivatives(beta, logits, ids):
    """NLL of softmax(beta * logits) and its first two derivatives in beta (float64)."""
    objective = _ShiftedNLL(np.asarray(logits, dtype="float64"), np.asarray(ids), rescale=False)
    return objective(beta)


def _temperature_inputs(logits, labels, from_logits):
    """Checked `(z (N, K), ids)`; z are log-probabilities if not `from_logits`."""
    try:
        z = held = _as_array(logits)  # `held`: as the caller gave it
        if z.dtype.kind not in "fc" or z.dtype.itemsize < 4:
            z = z.astype("float64")
    except (TypeError, ValueError) as error:
        raise TypeError(f"`logits` must be an array of real numbers: {error}") from None
    if z.dtype.kind == "c" or z.ndim not in (1, 2):
        raise ValueError(
            f"`logits` must be real with shape (N, K), (N, 1) or (N,), got {z.dtype} {z.shape}."
        )
    if z.shape[0] == 0 or z.size == 0:
        raise ValueError(f"`logits` is empty (shape {z.shape}): a fit needs at least one sample.")
    if z.ndim == 2 and z.shape[1] == 1:  # binary, as everywhere in this module
        z = z[:, 0]
    if z.ndim == 2 and z.shape[1] < 2:
        raise ValueError(
            f"`logits` must have K >= 2 classes, got shape {z.shape}: a temperature cannot "
            "change a one-class softmax."
        )
    deferred = from_logits and z.ndim == 2 and z.dtype == np.float32  # see _ShiftedNLL
    if not deferred and not (np.isfinite(z.max()) and np.isfinite(z.min())):
        _raise_non_finite(z)
    y = _checks.as_real_array("labels", labels, dtype=None)  # a ragged list: named
    if y.ndim >= 1 and y.shape[0] != z.shape[0]:
        raise ValueError(f"`labels` has {y.shape[0]} rows but `logits` has {z.shape[0]}.")
    if not from_logits:  # by the library-wide rule: logits stay logits, not log(softmax) clipped
        z = _numpy_logits(np.asarray(z, dtype="float64"), False, held=held.dtype)
        ids = _label_ids(y, z.shape[1], z.shape[0])
    elif z.ndim == 1:
        z = np.stack([np.zeros_like(z), z], axis=1)
        ids = _label_ids(y, 2, z.shape[0])
    else:
        ids = _label_ids(y, z.shape[1], z.shape[0])
    return z, ids


def _as_array(x):
    """A NumPy array of `x`, not copied when it is one (`ops.convert_to_numpy` copies)."""
    return x if isinstance(x, np.ndarray) else np.asarray(ops.convert_to_numpy(x))


def _raise_non_finite(z):
    bad = np.argwhere(~np.isfinite(z))[0]
    raise ValueError(
        f"`logits` must be finite, got {z[tuple(bad)]} at index {tuple(int(i) for i in bad)}."
    )


def _next_beta(beta, grad, hess, bracket, known, older_log_step):
    """`(next beta, whether it is a Newton step)`.

    Above the minimiser (grad > 0) the Newton step is taken in log beta, where
    the second derivative beta^2 NLL'' + beta NLL' is positive there too and
    the step stays finite where the softmax saturates; below it, in beta.
    A step that leaves the bracket, or whose size in log beta is not below
    half that of the step before last, is replaced by the untried bound on the
    downhill side (which settles an optimum at a bound in one evaluation) or,
    once both ends are known, by the geometric midpoint of the bracket.
    """
    a, b = bracket
    if grad == 0:  # flat because every softmax is saturated at the labels: go on to T_min
        return (beta if known[1] else b), False
    if grad > 0:
        new = beta * float(np.exp(-grad / (beta * hess + grad)))
    else:
        new = beta - grad / hess if hess > 0 else np.inf
    if a < new < b and abs(np.log(new / beta)) <= 0.5 * older_log_step:
        return new, True
    if grad < 0 and not known[1]:
        return b, False
    if grad > 0 and not known[0]:
        return a, False
    return float(np.exp(0.5 * (np.log(a) + np.log(b)))), False


def _stop_reason(beta, value, grad, hess, bracket, tol):
    """Why the search can stop at the evaluated, interior point `beta`, or None."""
    if grad == 0 and hess > 0:
        return "converged"
    if hess > 0:
        step = abs(grad) / hess
        # the quadratic model's remaining decrease is below float64 rounding of the NLL
        if step <= tol * beta or 0.5 * abs(grad) * step <= 4 * np.finfo(float).eps * value:
            return "converged"
    if bracket[1] - bracket[0] <= tol * beta:
        return "converged"
    return None


def _minimise_convex(objective, bounds, start, tol, max_iterations, start_hess=None,
                     first=None):
    """Minimise the convex `objective` over beta in `bounds` from `start`.

    Safeguarded Newton on the derivative inside a bracket [a, b] that always
    holds the minimiser: every evaluation moves one end to the evaluated
    point by the sign of the derivative, which is monotone by convexity.
    After a Newton step so small that quadratic convergence puts the next
    step below `tol`, the second derivative is not computed unless that turns
    out wrong.

    Returns a dict: `beta` and `value` of the lowest NLL evaluated, `reason`
    ("converged", "at_lo", "at_hi" or "iterations"), `iterations` and
    `start_value`, the NLL at `start`. `start_hess`, a curvature near `start`
    known from elsewhere, spares the first curvature evaluation likewise;
    `first`, the `(value, grad, None)` at `start` if already computed, spares
    that evaluation.
    """
    bracket, known = list(bounds), [False, False]
    beta, last_newton, last_hess = start, None, start_hess
    value, grad, hess = first or _evaluate(objective, beta, curvature=not start_hess)
    best = start_best = (value, beta)
    log_steps = [np.log(bounds[1] / bounds[0])] * 2  # sizes of the last two steps in log beta
    for iteration in range(max_iterations + 1):
        if grad != 0:
            side = int(grad > 0)
            bracket[side], known[side] = beta, True
        reason = _bound_reason(beta, grad, bounds)
        if reason is None and hess is None:  # evaluated without curvature
            if abs(grad) <= 0.5 * tol * beta * last_hess:
                reason = "converged"  # the Newton step from the last curvature is below tol
            else:
                value, grad, hess = objective(beta)
        if reason is None:
            reason = _stop_reason(beta, value, grad, hess, bracket, tol)
        new, newton = None, False
        if not reason:
            new, newton = _next_beta(beta, grad, hess, bracket, known, log_steps[0])
        if new == beta:  # no representable progress left
            reason = "converged"
        if reason or iteration == max_iterations:
            return {"beta": best[1], "value": best[0], "reason": reason or "iterations",
                    "iterations": iteration, "start_value": start_best[0]}
        step, log_steps = new - beta, [log_steps[1], abs(np.log(new / beta))]
        beta, below = new, newton and _next_step_below_tol(step, last_newton, new, tol)
        last_hess = hess if below else last_hess
        value, grad, hess = _evaluate(objective, beta, curvature=not below)
        last_newton = step if newton else None
        best = min(best, (value, beta))
    raise AssertionError("unreachable")


def _evaluate(objective, beta, curvature):
    """`(value, grad, hess)` at `beta`; `hess` is None without `curvature`."""
    if curvature:
        return objective(beta)
    value, grad = objective(beta, order=1)
    return value, grad, None


def _next_step_below_tol(step, previous, beta, tol):
    """Whether Newton's quadratic convergence puts the step after `step` below tol / 4.

    The steps shrink as s_k+1 ~ C s_k^2; C is estimated from `previous`, the
    Newton step before `step` (or taken as 10 / beta without one).
    """
    s = abs(step) / beta  # relative steps; products, not powers or quotients, cannot raise
    if previous:
        p = abs(previous) / beta
        return s * s * s <= 0.25 * tol * p * p
    return 10.0 * s * s <= 0.25 * tol


def _bound_reason(beta, grad, bounds):
    """Whether the minimum over `bounds` is the bound `beta` with the optimum beyond it."""
    if beta == bounds[0] and grad > 0:
        return "at_lo"
    # a zero derivative at T_min means exp underflowed: the exact NLL still falls as T shrinks
    if beta == bounds[1] and grad <= 0:
        return "at_hi"
    return None


def _warm_start(objective, bounds, start, max_iterations):
    """With many rows, the (loosely solved) optimum on about 512 of them; else `start`."""
    n = len(objective.ids)
    if n < _WARM_START_ROWS:
        return start
    sample = objective.every(n // _WARM_START_SAMPLE)
    if sample.flat:
        return start
    return _minimise_convex(sample, bounds, start, 1e-2, max_iterations)["beta"]


_TEMPERATURE_MESSAGES = {
    "converged": "converged",
    "at_hi": (
        "The NLL keeps falling as T shrinks (predictions already separate the classes): "
        "the optimum is below T_min={t_min}. {returned} Lower `bounds[0]` to go "
        "further, or check that the validation data are not the training data."
    ),
    "at_lo": (
        "The NLL keeps falling as T grows: the optimum is above T_max={t_max}. {returned} "
        "Raise `bounds[1]` to go further, or check that `labels` match the rows "
        "of `logits`."
    ),
    "iterations": (
        "No convergence in {max_iterations} iterations. {returned} "
        "Raise `max_iterations` or `tol`."
    ),
}
_RETURNED = {"at_hi": "T_min is returned.", "at_lo": "T_max is returned.",
             "iterations": "The best T found is returned."}


def _returned(reason, temperature, bounds, nll, swapped):
    """The sentence of the message that says which T is returned (the one returned)."""
    if swapped:
        return f"T = 1 is returned: its NLL, {nll!r}, is lower than where the search stopped."
    if (reason, temperature) in (("at_hi", bounds[0]), ("at_lo", bounds[1])) or (
            reason not in ("at_hi", "at_lo")):
        return _RETURNED.get(reason, "")
    return (f"T = {temperature:.6g} is returned: the NLL, {nll!r}, falls no further there "
            "in float64.")


def _check_temperature_bounds(bounds):
    """`(T_min, T_max)` as floats from an ordered pair of real numbers: a tuple, list,
    iterator, array or tensor of two (not a string, set or mapping)."""
    pair = None
    if hasattr(bounds, "shape"):  # an array or tensor: two real values
        values = np.asarray(ops.convert_to_numpy(bounds))
        if values.shape == (2,) and values.dtype.kind in "iuf":
            pair = values.tolist()
    elif not isinstance(bounds, (str, bytes, set, frozenset, collections.abc.Mapping)) and \
            isinstance(bounds, collections.abc.Iterable):
        pair = [_checks.real_number(b) for b in bounds]
    if pair is None or len(pair) != 2 or None in pair:
        raise ValueError(f"`bounds` must be a pair of numbers (T_min, T_max), got {bounds!r}.")
    t_min, t_max = pair
    if not 0.0 < t_min < t_max or not np.isfinite(t_max):
        raise ValueError(f"`bounds` must satisfy 0 < T_min < T_max < inf, got {bounds}.")
    return t_min, t_max


def _constant_logits_fit(objective, t_min, t_max):
    """Every row constant: softmax(z / T) is uniform for every T, so any T is optimal."""
    temperature = min(max(1.0, t_min), t_max)
    value = objective(1.0, order=0)  # log K
    message = (
        "Every row of `logits` is constant, so softmax(logits / T) is uniform and the NLL "
        f"does not depend on T; T={temperature} is returned. Pass the model's logits (the "
        "outputs before softmax, with `from_logits=True`), not labels or a collapsed output."
    )
    warnings.warn(message, stacklevel=4)
    return TemperatureFit(temperature, float(value), float(value), True, 0, message)


def fit_temperature(
    logits, labels, *, bounds=(0.01, 100.0), tol=1e-6, max_iterations=100, from_logits=True
):
    """The temperature T > 0 minimising the NLL of softmax(logits / T).

    The NLL is convex in beta = 1/T. With many rows of moderate logits, one
    float64 pass at a start from a row sample gives a Taylor model of the NLL
    whose minimiser is certified with rigorous error bounds (`_one_pass_search`);
    otherwise, or if that certificate fails, a bracketed, safeguarded Newton
    search on beta (`_search_temperature`) finds the minimum over `bounds`,
    certified and reported in float64. T is
    never worse than T = 1 when T = 1 is within `bounds`. `converged=True`
    means T is within `tol` of the minimiser over the bounds (or the NLL is at
    its minimum there to float64 rounding). A
    minimum at or beyond a bound returns that bound (or a T where the NLL is
    already as low in float64, as the message says) with `converged=False` and
    a warning saying why; so does running out of iterations. Constant rows everywhere
    return T = 1 (clipped to the bounds), converged, with a warning.

    Args:
        logits: `(N, K)` logits (probabilities with `from_logits=False`, whose
            logarithms are used); `(N,)` for binary logits of class 1.
        labels: class ids or one-hot rows.
        bounds: `(T_min, T_max)` with 0 < T_min < T_max.
        tol: relative tolerance on T, in (0, 1) (or the NLL within float64 rounding).
        max_iterations: iteration limit.
        from_logits: whether `logits` are logits (default) or probabilities.

    Returns:
        `TemperatureFit` (use `float(fit)` for T).

    Raises:
        ValueError: for empty, non-finite or one-class `logits`, bad `labels`,
            `bounds`, `tol` or `max_iterations`; TypeError for non-real `logits`.

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
    t_min, t_max = _check_temperature_bounds(bounds)
    tol, max_iterations = _check_search_arguments(tol, max_iterations)
    from_logits = _checks.check_bool("from_logits", from_logits)
    z, ids = _temperature_inputs(logits, labels, from_logits)
    return _fit_checked(z, ids, (t_min, t_max), tol, max_iterations)


def _fit_checked(z, ids, bounds, tol, max_iterations):
    """`fit_temperature` on checked inputs: the one-pass fit (`_one_pass_search`) where
    it certifies its result, else the full search (`_search_temperature`)."""
    search = _one_pass_search(z, ids, bounds, tol, max_iterations)
    if search is not None:
        return _temperature_result(1.0, search, bounds, max_iterations)
    objective = _ShiftedNLL(z, ids)
    if objective.flat:
        return _constant_logits_fit(objective, *bounds)
    search = _search_temperature(objective, _beta_bounds(objective, bounds), tol, max_iterations)
    return _temperature_result(objective.scale, search, bounds, max_iterations)


def _check_search_arguments(tol, max_iterations):
    tol = _checks.check_positive("tol", tol)
    if not tol < 1.0:  # relative to T: at 1 or more, every T > 0 would pass
        raise ValueError(f"`tol` is relative to T and must be < 1, got {tol}.")
    if (isinstance(max_iterations, bool) or not isinstance(max_iterations, (int, np.integer))
            or max_iterations < 1):
        raise ValueError(f"`max_iterations` must be a positive integer, got {max_iterations!r}.")
    return tol, int(max_iterations)


def _beta_bounds(objective, bounds):
    """`bounds` on T as bounds on beta = scale / T, which must stay finite and positive."""
    t_min, t_max = (float(b) for b in bounds)
    bounds_beta = (objective.scale / t_max, objective.scale / t_min)
    if not (bounds_beta[0] > 0 and np.isfinite(bounds_beta[1])):
        raise ValueError(
            f"`bounds` {bounds} are too extreme for logits whose largest gap to a row maximum "
            f"is {objective.spread:.3g}: that gap / T must stay within float64 range."
        )
    return bounds_beta


def _search_temperature(objective, bounds_beta, tol, max_iterations):
    """The search of `fit_temperature` on beta = scale / T, a `_minimise_convex` dict.

    The logits are shifted by their row maximum once (T > 0 keeps the argmax);
    the search keeps a bracket on beta that always contains the minimiser and
    takes Newton steps (in log beta above the minimiser), probing a bound or
    bisecting in log beta whenever a step would leave the bracket or stops
    shrinking. It starts from T = 1, or with more than 8192 rows from the
    optimum on an evenly spaced sample of about 512 of them.
    Float32 logits of moderate spread go through a float32 stage first
    (`_float32_stage`): one pass of per-row moments at the start and Newton
    steps on the Taylor model they give, or plain float32 Newton steps where
    that model is not trusted. The float64 search then starts there; its
    first evaluation (NLL and derivative, with the NLL at T = 1 in the same
    pass) usually ends it, its Newton step with the float32 curvature being
    below `tol`. Everything it reports is float64. The float32 stage counts
    in `iterations` (the moments pass as one step).
    """
    s = objective.scale
    one = min(max(s, bounds_beta[0]), bounds_beta[1])  # T = 1, or the nearest bound
    coarse = None
    if objective.shifted is None and objective.spread * max(bounds_beta[1], 1.0) < 1e10:
        coarse = objective.in_float32()
    start = _warm_start(coarse or objective, bounds_beta, one, max_iterations)
    steps, hess, first, before = 0, None, None, None
    if coarse is not None:
        start, steps, hess = _float32_stage(coarse, bounds_beta, start, tol)
    if hess is not None:  # the first float64 evaluation needs no curvature: T = 1 with it
        first, before = _first_evaluation(objective, start, s)
    search = _minimise_convex(objective, bounds_beta, start, tol, max_iterations, hess, first)
    search["iterations"] += steps
    search["nll_before"] = search["start_value"] if start == s else (
        before if before is not None else objective(s, order=0))
    return search


def _float32_stage(coarse, bounds, start, tol):
    """`(beta, steps, hess)` from the float32 twin: the Taylor model of one pass when it
    is trusted (moderate logits: u^6 within float32), else plain Newton steps."""
    if coarse.spread * max(start, 1.0) < 1e4:
        beta, hess, trusted = _taylor_newton(coarse, bounds, start, tol)
        if trusted:
            return beta, 1, hess
        beta, steps, hess = _newton_steps(coarse, bounds, beta, 4, tol)
        return beta, steps + 1, hess
    return _newton_steps(coarse, bounds, start, 4, tol)


def _first_evaluation(objective, beta, s):
    """`((NLL, NLL', None) at beta, NLL at s or None)`, in one pass over the rows."""
    if beta == s:
        value, grad = objective(beta, order=1)
        return (value, grad, None), None
    (value, grad), before = objective(beta, order=1, also=s)
    return (value, grad, None), before


def _newton_steps(objective, bounds, beta, count, tol):
    """Up to `count` plain Newton steps (as `_next_beta` takes them) from `beta`, in `bounds`.

    For a start close enough that the float64 search needs one evaluation: the
    steps stop once quadratic convergence puts the next one below `tol` / 4
    (`_next_step_below_tol`). Returns `(beta, steps taken, the last curvature
    or None)`.
    """
    hess, previous = None, None
    for step in range(count):
        _, grad, hess = objective(beta)
        if grad == 0 or hess <= 0:
            return beta, step, None
        if grad > 0:
            new = beta * float(np.exp(-grad / (beta * hess + grad)))
        else:
            new = beta - grad / hess
        new = min(max(new, bounds[0]), bounds[1])
        if abs(new - beta) <= 1e-9 * beta or _next_step_below_tol(new - beta, previous, new, tol):
            return new, step + 1, hess
        beta, previous = new, new - beta
    return beta, count, hess


_TAYLOR_ORDER = 6  # moments of u per row for the Taylor model of the float32 stage


def _taylor_newton(objective, bounds, beta0, tol):
    """Newton steps on a Taylor model of the NLL built from one pass at `beta0`.

    Per row, sum_j exp(beta u_j) u_j^m = sum_k (beta - beta0)^k / k! M_{m+k}, with
    M_m = sum_j exp(beta0 u_j) u_j^m computed once (`moments`); the series is cut
    after M_6. The model is trusted where dropping its last term changes the
    Newton step by less than tol / 2 (the terms fall fast: the rest is far
    smaller); else None is returned, and the caller takes plain Newton steps.
    The float64 certification that follows checks the result either way.
    Returns `(beta, hess, trusted)`: the model's minimiser, or the point of its
    last trusted Newton step (then `trusted` is False).
    """
    moments = objective.moments(beta0, _TAYLOR_ORDER)
    beta = beta0
    for _ in range(20):
        grad, hess, cut = _taylor_derivatives(objective, moments, beta - beta0)
        if not hess > 0 or abs(cut) > tol * beta * hess / 2:
            return beta, None, False
        new = beta * float(np.exp(-grad / (beta * hess + grad))) if grad > 0 else (
            beta - grad / hess)
        new = min(max(new, bounds[0]), bounds[1])
        if abs(new - beta) <= 1e-9 * beta:
            return new, hess, True
        beta = new
    return beta, None, False


def _taylor_derivatives(objective, moments, delta):
    """(NLL', NLL'', change of NLL' without the last series term) of the Taylor model."""
    order = len(moments) - 1
    coef = np.cumprod([1.0] + [delta / k for k in range(1, order + 1)])  # delta^k / k!
    s0 = coef @ moments
    s1 = coef[:order] @ moments[1:]
    s2 = coef[:order - 1] @ moments[2:]
    mean_u = s1 / s0
    grad = float(mean_u.mean() - objective.mean_true)
    hess = float((s2 / s0 - mean_u * mean_u).mean())
    cut = float((coef[order - 1] * moments[order] / s0).mean())
    return grad, hess, cut


def _temperature_result(s, search, bounds, max_iterations):
    """The `TemperatureFit` of a search on beta = s / T, never worse than T = 1 within
    the bounds."""
    t_min, t_max = bounds
    beta, nll_after, nll_before = search["beta"], search["value"], search["nll_before"]
    reason, swapped = search["reason"], False
    if s / t_max <= s <= s / t_min and nll_before < nll_after:
        beta, nll_after, swapped = s, nll_before, True  # never worse than T = 1
    temperature = min(max(s / beta, t_min), t_max)  # s / (s / t) can be off by an ulp
    if not swapped and reason in ("at_hi", "at_lo"):  # stopped at the bound: return it exactly
        bound = t_min if reason == "at_hi" else t_max
        temperature = bound if abs(temperature / bound - 1.0) <= 1e-12 else temperature
    message = _TEMPERATURE_MESSAGES[reason].format(
        t_min=t_min, t_max=t_max, max_iterations=max_iterations,
        returned=_returned(reason, temperature, bounds, nll_after, swapped))
    if reason != "converged":
        warnings.warn(message, stacklevel=4)
    return TemperatureFit(
        temperature=temperature,
        nll_before=float(nll_before),
        nll_after=float(nll_after),
        converged=search["reason"] == "converged",
        iterations=search["iterations"],
        message=message,
    )


# --- the one-pass fit: moments at a start, a certified Taylor model -----------------

_ONE_PASS_LIMIT = 300.0  # |z| and beta |z| below this: exp(x) x^6 fits float64 unshifted
_VALUE_RTOL = 5e-11  # the NLLs of the one-pass fit are trusted to this relative error


def _one_pass_search(z, ids, bounds, tol, max_iterations):
    """A certified search dict (as `_minimise_convex`'s) from one pass over the rows, or None.

    With many rows (`_WARM_START_ROWS`), moderate logits (|z| <= 300) and a start
    beta0 from a row sample (`_sample_start`), one float64 pass gives per-row
    moments at beta0 and the sums for the NLL at T = 1 (`_temperature_model`); it
    also reads the range of z and stops at the first block of rows outside it.
    Newton steps on the Taylor model they define find d* (beta = beta0 (1 + d));
    the result is kept only if the model's derivative, with its error bound, is
    certainly negative at d* - h and positive at d* + h, h = tol (1 + d*) / 2:
    the minimiser is then within tol / 2 of beta* (the derivative is increasing),
    and the reported NLLs are within `_VALUE_RTOL`. If not (a start far off), a
    second pass at the model's minimiser gets one more chance. Otherwise None:
    the caller runs the full search (which also reports bad logits). `iterations`
    counts the passes.
    """
    n = z.shape[0]
    if z.ndim != 2 or n < _WARM_START_ROWS or z.dtype not in (np.float32, np.float64):
        return None
    bounds_beta = (1.0 / bounds[1], 1.0 / bounds[0])
    beta0 = _sample_start(z, ids, bounds_beta, max_iterations)
    checked = None if beta0 is None else _temperature_model.checked_moments(
        z, beta0, _temperature_model.FIRST_ORDER, _ONE_PASS_LIMIT / max(beta0, 1.0), ids)
    if checked is None or not checked[2] > checked[1]:
        return None  # non-finite or large logits, or all equal: the full path
    sums, low, high, mean_true = checked  # high: an upper bound on max z (as good here)
    before = _one_pass_nll_before(sums[-1], mean_true, z.shape[1])
    for passes in (1, 2):  # a second pass from the first model's minimiser, if needed
        model = _temperature_model.TaylorModel(sums, beta0, mean_true, high - low,
                                               max(-low, high), z.shape[1])
        d, after = (None, None) if before is None else _certified_minimiser(
            model, bounds_beta, tol)
        if d is None:
            return None
        beta0 *= 1.0 + d
        if after is not None:
            return {"beta": beta0, "value": after, "reason": "converged",
                    "iterations": passes, "start_value": None, "nll_before": before}
        if not bounds_beta[0] < beta0 < bounds_beta[1]:  # a minimum at a bound: full search
            return None
        sums = _temperature_model.raw_moments(z, beta0, _temperature_model.SECOND_ORDER,
                                              at_one=False)
    return None


def _sample_start(z, ids, bounds_beta, max_iterations):
    """beta of the (loosely solved) optimum on about `_WARM_START_SAMPLE` evenly spaced
    rows, searched in float32; None if they are flat or not within the one-pass range."""
    step = len(ids) // _WARM_START_SAMPLE
    sample = _SampleNLL(z[::step], ids[::step])
    if sample.flat:
        return None
    beta = min(max(1.0, bounds_beta[0]), bounds_beta[1])
    for _ in range(4):  # Newton steps (as `_next_beta` takes them) while they settle
        _, grad, hess = sample(beta)
        if not hess > 0 or grad == 0:
            break
        new = beta * math.exp(-grad / (beta * hess + grad)) if grad > 0 else beta - grad / hess
        new = min(max(new, bounds_beta[0]), bounds_beta[1])
        if abs(math.log(new / beta)) <= _START_STEP:  # the next step is far smaller
            return new
        beta = new
    one = min(max(1.0, bounds_beta[0]), bounds_beta[1])
    return _minimise_convex(sample, bounds_beta, one, 1e-2, max_iterations)["beta"]


_START_STEP = 0.2  # a Newton step in log beta this small leaves an error of ~0.5 % or less


class _SampleNLL:
    """The NLL of softmax(beta * u) on a row sample, u = z - max_j z in float32.

    A lean twin of `_ShiftedNLL` for the start of the one-pass fit: the sample is
    copied once (contiguous), and `flat` is also set when the sample is not finite
    or reaches beyond `_ONE_PASS_LIMIT` (the one-pass fit is then not tried).
    """

    def __init__(self, z, ids):
        u = np.array(z, dtype="float32")
        row_max = u.max(axis=1, keepdims=True)
        low, high = float(u.min()), float(row_max.max())
        if not -_ONE_PASS_LIMIT <= low <= high <= _ONE_PASS_LIMIT:  # NaN fails too
            self.flat = True
            return
        u -= row_max
        self.flat = not u.min() < 0
        self.u, self.work, self.ones = u, np.empty_like(u), np.ones(u.shape[1], "float32")
        self.mean_true = float(u[np.arange(len(ids)), ids].mean(dtype="float64"))

    def __call__(self, beta, order=2):
        """NLL and its first `order` derivatives in beta (as `_ShiftedNLL`)."""
        e = np.exp(np.multiply(self.u, beta, out=self.work), out=self.work)
        s0 = e @ self.ones
        value = float(np.log(s0).mean(dtype="float64")) - beta * self.mean_true
        mean_u = np.multiply(e, self.u, out=e) @ self.ones / s0
        grad = float(mean_u.mean(dtype="float64")) - self.mean_true
        if order == 1:
            return value, grad
        hess = float((_row_dot(e, self.u) / s0 - mean_u * mean_u).mean(dtype="float64"))
        return value, grad, max(hess, 0.0)


def _certified_minimiser(model, bounds_beta, tol):
    """`(d, NLL)`: the model's minimiser and its certified NLL (None if not certified),
    or `(None, None)` if the model has no minimiser. Newton steps on the mean-cumulant
    polynomial of the gradient first (scalars only); if that point is not certified,
    Newton steps on the per-row model from there, and the certificate once more."""
    low = max(bounds_beta[0] / model.beta0 - 1.0, -0.5)
    high = min(bounds_beta[1] / model.beta0 - 1.0, 0.5)
    d = _polynomial_minimiser(model.gradient_coefficients(), low, high, tol)
    if d is not None:
        value = _certified_value(model, d, bounds_beta, tol)
        if value is not None:
            return d, value
    d = _model_minimiser(model, low, high, tol, d or 0.0)
    return (None, None) if d is None else (d, _certified_value(model, d, bounds_beta, tol))


def _polynomial_minimiser(coefficients, low, high, tol):
    """The root in [low, high] of sum_n g_n d^n / n! by Newton from 0, or None."""
    terms = [g / math.factorial(n) for n, g in enumerate(coefficients)]
    d = 0.0
    for _ in range(30):
        grad = hess = 0.0
        for n in range(len(terms) - 1, 0, -1):  # Horner for the value and the derivative
            grad, hess = grad * d + terms[n], hess * d + n * terms[n]
        grad, hess = grad * d + terms[0], hess
        if not hess > 0:
            return None
        new = min(max(d - grad / hess, low), high)
        if abs(new - d) <= 1e-3 * tol * (1.0 + new):
            return new
        d = new
    return None


def _model_minimiser(model, low, high, tol, d=0.0):
    """d minimising the Taylor model by Newton steps from `d` (within [low, high]), or
    None if its curvature is not positive or the steps do not settle."""
    previous = None
    for _ in range(30):
        grad, hess = model.derivatives(d)
        if not hess > 0:
            return None
        new = min(max(d - grad / hess, low), high)
        step, small = abs(new - d), 1e-3 * tol * (1.0 + new)
        # quadratic convergence: the next step is about step^2 / previous (the certificate
        # that follows checks the result either way)
        if step <= small or (previous and step * step * step <= small * previous * previous):
            return new
        d, previous = new, step
    return None


def _certified_value(model, d, bounds_beta, tol):
    """The NLL at beta0 (1 + d) if the minimiser is certainly within tol / 2 of it (and
    strictly inside the bounds) and the value within `_VALUE_RTOL`; else None."""
    h = 0.5 * tol * (1.0 + d)
    beta0 = model.beta0
    if not (bounds_beta[0] < beta0 * (1 + d - h) and beta0 * (1 + d + h) < bounds_beta[1]
            and abs(d) + h <= 0.5):
        return None
    certified = model.certify(d, h)
    if certified is None:
        return None
    (below, below_error), (above, above_error), (value, error) = certified
    if not (-below > below_error and above > above_error and error <= _VALUE_RTOL * value):
        return None
    return value


def _one_pass_nll_before(row_sums, mean_true, k):
    """The NLL at T = 1 from sum_j exp(z_ij) per row, or None if its rounding bound
    exceeds `_VALUE_RTOL` (tiny NLLs: the full path computes them shifted)."""
    logs = np.log(row_sums)
    value = float(logs.mean() - mean_true)
    error = (k + 8) * _U + 8 * _U * (float(np.abs(logs).mean()) + abs(mean_true))
    return value if error <= _VALUE_RTOL * value else None


_U = np.finfo(np.float64).eps / 2
