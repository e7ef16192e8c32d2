"""Streaming calibration metrics: state is per-bin sums, never the predictions.

Inputs follow `keras_smooth.calibration` (see its module docstring): the same
logits-or-probabilities rule (`calibration.to_probabilities`), `(N,)` and
`(N, 1)` predictions read as binary P(class 1), the same bins.
"""

import keras
import numpy as np
from keras import ops

from keras_smooth import _checks
from keras_smooth import calibration

_NOTES = """
    Predictions: with `from_logits=False` (the default) a batch that is not
    probabilities (a value outside [0, 1], or a row not summing to 1 within
    1e-3) is treated as logits and passed through a softmax -- per batch,
    eagerly, in `fit`/`evaluate` and under `jax.jit` (the rule of
    `calibration.to_probabilities`). With `from_logits=True` a softmax is
    always applied. `(N,)` and `(N, 1)` predictions are binary P(class 1)
    (or logits, through a sigmoid).

    Eagerly, each `update_state` checks the shapes in Python and runs the rest
    as one compiled call (`tf.function` on TensorFlow, `jax.jit` on JAX, shared
    by metrics of the same configuration; JAX compiles once per batch shape).

    Bad input raises a `ValueError` in eager mode: non-finite predictions,
    labels out of range or with another number of rows, and sample weights
    that are negative, non-finite or not of shape `()`, `(N,)` or `(N, 1)`.
    Compiled code cannot raise, so there a batch with non-finite predictions,
    labels out of range or negative/non-finite weights makes the result NaN
    until `reset_state()`. An empty batch changes nothing; with no data the
    result is 0.

    Precision: sums are accumulated in float64 where the backend has it
    (TensorFlow; JAX with `jax_enable_x64`), else in float32; predictions are
    processed in float32 at least (also under a `mixed_float16` policy). The
    result is returned in the metric's `dtype` (float64 needs x64 on JAX).
"""


def _rows(x):
    return int(np.shape(x)[0]) if np.ndim(x) else None


def _check_eager(y_true, y_pred, sample_weight, num_classes):
    """Raise clear errors for bad concrete input (the compiled path poisons instead)."""
    pred = np.asarray(ops.convert_to_numpy(y_pred))
    if pred.ndim not in (1, 2):
        raise ValueError(f"`y_pred` must have shape (N, K), (N, 1) or (N,), got {pred.shape}.")
    if not np.all(np.isfinite(pred)):
        raise ValueError(f"`y_pred` must be finite, got {pred[~np.isfinite(pred)][0]}.")
    width = 2 if calibration.is_binary_shape(pred.shape) else pred.shape[-1]
    if num_classes is not None and width != num_classes:
        raise ValueError(
            f"`y_pred` must have {num_classes} columns (num_classes) or be binary (N,)/(N, 1) "
            f"with num_classes=2, got shape {pred.shape}."
        )
    labels = np.asarray(ops.convert_to_numpy(y_true))
    if _rows(labels) != pred.shape[0]:
        raise ValueError(
            f"`y_true` has shape {labels.shape} but `y_pred` has {pred.shape[0]} rows."
        )
    if labels.size:  # the NumPy functions' label rules: ids in [0, K) or one-hot rows
        calibration._label_ids(labels, width, pred.shape[0], "y_true", "y_pred")
    if sample_weight is None:
        return
    weight = np.asarray(ops.convert_to_numpy(sample_weight), dtype="float64")
    if weight.ndim > 2 or (weight.ndim >= 1 and weight.shape[0] != pred.shape[0]) or (
        weight.ndim == 2 and weight.shape[1] != 1
    ):
        raise ValueError(
            f"`sample_weight` must have shape (), ({pred.shape[0]},) or ({pred.shape[0]}, 1), "
            f"got {weight.shape}."
        )
    if not np.all(np.isfinite(weight) & (weight >= 0)):
        bad = weight[~(np.isfinite(weight) & (weight >= 0))][0]
        raise ValueError(f"`sample_weight` must be finite and >= 0, got {bad}.")


def _broadcast_weight(sample_weight, probs, dtype):
    """Scalar, `(N,)` or `(N, 1)` weights as `(N,)` (as Keras metrics accept them)."""
    if sample_weight is None:
        return None
    weight = ops.cast(ops.convert_to_tensor(sample_weight), dtype)
    if len(weight.shape) == 2 and weight.shape[-1] == 1:
        weight = ops.squeeze(weight, axis=-1)
    if len(weight.shape) > 1:
        raise ValueError(
            f"`sample_weight` must have shape (), (N,) or (N, 1), got {tuple(weight.shape)}."
        )
    return weight + ops.zeros_like(probs[:, 0], dtype=dtype)


def _labels_ok(y_true, num_classes):
    """Boolean scalar: whole-number ids in [0, K), or one-hot rows (the losses' check)."""
    labels = ops.convert_to_tensor(y_true)
    if len(labels.shape) == 2 and labels.shape[-1] == num_classes:
        return ops.all(_checks.label_rows_ok(labels, num_classes, "onehot"))
    return ops.all(_checks.label_rows_ok(ops.reshape(labels, (-1,)), num_classes, "ids"))


def _check_shapes(y_true, y_pred, sample_weight, num_classes):
    """Raise clear errors for bad concrete shapes (values are checked in the compiled step)."""
    shape = tuple(ops.shape(y_pred))
    if len(shape) not in (1, 2):
        raise ValueError(f"`y_pred` must have shape (N, K), (N, 1) or (N,), got {shape}.")
    width = 2 if calibration.is_binary_shape(shape) else shape[-1]
    if width is not None and width < 2:  # (N, 0): no class to be confident in
        raise ValueError(f"`y_pred` must have K >= 2 columns (or one, binary), got shape {shape}.")
    if num_classes is not None and width != num_classes:
        raise ValueError(
            f"`y_pred` must have {num_classes} columns (num_classes) or be binary (N,)/(N, 1) "
            f"with num_classes=2, got shape {shape}."
        )
    labels = tuple(ops.shape(y_true))
    if not labels or labels[0] != shape[0]:
        raise ValueError(f"`y_true` has shape {labels} but `y_pred` has {shape[0]} rows.")
    if len(labels) > 2 or (len(labels) == 2 and labels[1] not in (1, width)):
        raise ValueError(
            f"`y_true` must be class ids (N,) or one-hot (N, {width}), got shape {labels}."
        )
    if sample_weight is None:
        return
    weight = tuple(ops.shape(sample_weight))
    if len(weight) > 2 or (len(weight) >= 1 and weight[0] != shape[0]) or (
        len(weight) == 2 and weight[1] != 1
    ):
        raise ValueError(
            f"`sample_weight` must have shape (), ({shape[0]},) or ({shape[0]}, 1), got {weight}."
        )


def _batch_sums(spec, y_true, y_pred, sample_weight):
    """`(sums, ok)` of one batch: the metric's per-bin sums and whether the batch is valid.

    `spec` is `(kind, num_bins, from_logits, num_classes, accumulator dtype,
    layout)`; `layout` (eager calls) holds the static trailing dimensions of
    `y_true` and `y_pred`, restored here because a trace shared by batches
    of several sizes may have lost them. `ok` is False for invalid labels or
    weights, non-finite predictions or sums. Pure `keras.ops`, so it runs traced
    in `fit`/`evaluate` or compiled once by `_compiled_sums`.
    """
    kind, num_bins, from_logits, num_classes, accumulator, layout = spec
    y_true = ops.convert_to_tensor(y_true)
    if keras.backend.standardize_dtype(y_true.dtype) == "bool":  # ids 1/0, as `ece` reads them
        y_true = ops.cast(y_true, "int32")
    if layout is not None:
        y_true = ops.reshape(y_true, (-1, *layout[0]))
        y_pred = ops.reshape(y_pred, (-1, *layout[1]))
        if sample_weight is not None:
            sample_weight = ops.reshape(sample_weight, (-1,))
    finite = ops.all(ops.isfinite(y_pred))
    probs, _ = calibration.to_probabilities(y_pred, from_logits)
    width = _checks.static_dim(probs)
    if num_classes is not None:
        _checks.check_width("y_pred", probs, num_classes)
    weight = _broadcast_weight(sample_weight, probs, accumulator)
    ids = calibration.label_ids(y_true, width)
    ok = ops.logical_and(_labels_ok(y_true, width), finite)
    if weight is not None:
        ok = ops.logical_and(ok, ops.all(ops.logical_and(ops.isfinite(weight), weight >= 0)))
    if kind == "ece":
        sums = calibration.confidence_bin_sums(ids, probs, num_bins, weight, dtype=accumulator)
    else:
        sparse = layout is not None and keras.backend.backend() == "tensorflow"  # not XLA
        sums = calibration.classwise_bin_sums(ids, probs, num_bins, weight, dtype=accumulator,
                                              sparse=sparse)
    return sums, ops.logical_and(ok, ops.all(ops.isfinite(sums)))


_COMPILED = {}


def _compile(function):
    """`function` compiled once per input signature: the one backend-aware choice.

    TensorFlow: `tf.function` (with `reduce_retracing`, so batches of new sizes
    share a trace); JAX: `jax.jit`; other backends: as is (eager ops).
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(function, reduce_retracing=True)
    if backend == "jax":
        import jax

        return jax.jit(function)
    return function


def _compiled_sums(spec):
    """`_batch_sums` for `spec`, compiled once per process and shared by every metric."""
    key = (keras.backend.backend(), spec)
    if key not in _COMPILED:
        _COMPILED[key] = _compile(
            lambda y_true, y_pred, weight: _batch_sums(spec, y_true, y_pred, weight)
        )
    return _COMPILED[key]


class _BinnedCalibrationMetric(keras.metrics.Metric):
    """Shared state handling: a sum tensor updated with per-batch bin sums."""

    def __init__(self, num_bins, from_logits, state_shape, name, dtype):
        super().__init__(name=name, dtype=dtype)
        self.num_bins = calibration.check_num_bins(num_bins)
        self.from_logits = _checks.check_bool("from_logits", from_logits)
        self._direction = "down"  # lower is better, for EarlyStopping & co.
        self._accumulator = calibration.accumulator_dtype()
        self.sums = self.add_variable(
            shape=state_shape, initializer="zeros", dtype=self._accumulator, aggregation="sum",
            name="sums",
        )

    def _update(self, kind, num_classes, y_true, y_pred, sample_weight):
        """Add one batch. Eagerly: shapes checked in Python, the sums and the value checks
        in one compiled call; bad input raises. In compiled code a bad batch turns the
        state NaN."""
        spec = (kind, self.num_bins, self.from_logits, num_classes, self._accumulator, None)
        given = [x for x in (y_true, y_pred, sample_weight) if x is not None]
        if not all(_checks.is_concrete(x) for x in given):
            sums, ok = _batch_sums(spec, y_true, y_pred, sample_weight)
            self.sums.assign_add(ops.where(ok, sums, ops.full_like(sums, np.nan)))
            return
        y_true = _checks.real_tensor("y_true", y_true)
        y_pred = _checks.real_tensor("y_pred", y_pred)
        if sample_weight is not None:
            sample_weight = ops.convert_to_tensor(sample_weight)
        _check_shapes(y_true, y_pred, sample_weight, num_classes)
        if y_pred.shape[0] == 0:  # an empty batch changes nothing
            return
        spec = spec[:-1] + ((tuple(y_true.shape[1:]), tuple(y_pred.shape[1:])),)
        if sample_weight is not None:  # as (N,): one trace for every weight layout
            rows = y_pred.shape[0]
            sample_weight = ops.broadcast_to(ops.reshape(sample_weight, (-1,)), (rows,))
        sums, ok = _compiled_sums(spec)(y_true, y_pred, sample_weight)
        if not bool(ok):
            _check_eager(y_true, y_pred, sample_weight, num_classes)  # raises with details
            raise ValueError("`y_true`, `y_pred` or `sample_weight` hold invalid values.")
        self.sums.assign_add(sums)

    def reset_state(self):
        self.sums.assign(ops.zeros(self.sums.shape, dtype=self.sums.dtype))

    def get_config(self):
        config = super().get_config()
        config.update(num_bins=self.num_bins, from_logits=self.from_logits)
        return config


@keras.saving.register_keras_serializable(package="keras_smooth")
class ExpectedCalibrationError(_BinnedCalibrationMetric):
    __doc__ = """Streaming top-label ECE with equal-width bins (see `calibration.ece`).

    State: a `(3, num_bins)` tensor of per-bin counts, confidence sums and
    correctness sums, summed across batches and replicas. Fed in any batches,
    `result()` equals `keras_smooth.calibration.ece` on all the data at once.
""" + _NOTES + """
    Args:
        num_bins: number of equal-width bins, default 15.
        from_logits: whether predictions are logits (default False: detected).
        name, dtype: as for `keras.metrics.Metric`.

    Examples:
    >>> import keras
    >>> from keras_smooth.metrics import ExpectedCalibrationError
    >>> metric = ExpectedCalibrationError(num_bins=10)
    >>> metric.update_state([0, 1], [[0.9, 0.1], [0.6, 0.4]])
    >>> metric.update_state([1], [[0.3, 0.7]])
    >>> round(float(metric.result()), 4)
    0.3333
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    >>> model.compile(loss="sparse_categorical_crossentropy", metrics=[ExpectedCalibrationError()])
    """

    def __init__(self, num_bins=15, from_logits=False, name="ece", dtype=None):
        bins = calibration.check_num_bins(num_bins)
        super().__init__(bins, from_logits, (3, bins), name, dtype)

    def update_state(self, y_true, y_pred, sample_weight=None):
        self._update("ece", None, y_true, y_pred, sample_weight)

    def result(self):
        return ops.cast(calibration.ece_from_sums(self.sums), self.dtype)


_MAX_CELLS = 2**28  # 3 x 2^28 float32 accumulators are 3 GiB


@keras.saving.register_keras_serializable(package="keras_smooth")
class ClasswiseECE(_BinnedCalibrationMetric):
    __doc__ = """Streaming classwise ECE (Kull et al. 2019; see `calibration.classwise_ece`).

    State: a `(3, num_classes, num_bins)` tensor -- memory O(K * bins)
    whatever the number of predictions.
""" + _NOTES + """
    Args:
        num_classes: K, at least 2 (2 for binary `(N,)`/`(N, 1)` predictions).
        num_bins: number of equal-width bins, default 15.
        from_logits: whether predictions are logits (default False: detected).
        name, dtype: as for `keras.metrics.Metric`.

    Examples:
    >>> from keras_smooth.metrics import ClasswiseECE
    >>> metric = ClasswiseECE(num_classes=2, num_bins=10)
    >>> metric.update_state([0, 1, 1], [[0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
    >>> round(float(metric.result()), 4)
    0.3333
    """

    def __init__(self, num_classes, num_bins=15, from_logits=False, name="classwise_ece",
                 dtype=None):
        self.num_classes = _checks.check_num_classes(num_classes)
        bins = calibration.check_num_bins(num_bins)
        if self.num_classes * bins > _MAX_CELLS:  # class x bin ids are int32 in the update
            raise ValueError(
                f"`num_classes` x `num_bins` = {self.num_classes} x {bins} exceeds {_MAX_CELLS} "
                "class-bin cells (three float accumulators each); use fewer bins.")
        super().__init__(bins, from_logits, (3, self.num_classes, bins), name, dtype)

    def update_state(self, y_true, y_pred, sample_weight=None):
        self._update("classwise", self.num_classes, y_true, y_pred, sample_weight)

    def result(self):
        return ops.cast(calibration.classwise_ece_from_sums(self.sums), self.dtype)

    def get_config(self):
        config = super().get_config()
        config["num_classes"] = self.num_classes
        return config
