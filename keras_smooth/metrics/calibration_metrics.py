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
    """Boolean scalar: whole-number ids in [0, K), or one-hot rows (exactly one 1 per row)."""
    labels = ops.convert_to_tensor(y_true)
    if len(labels.shape) == 2 and labels.shape[-1] == num_classes:
        one_hot = ops.logical_and(ops.all(ops.logical_or(labels == 0, labels == 1), axis=-1),
                                  ops.sum(labels, axis=-1) == 1)
        return ops.all(one_hot)
    if len(labels.shape) == 2:
        labels = ops.reshape(labels, (-1,))
    # whole numbers in [0, K): 0.4 is refused, not rounded (as eagerly)
    return ops.all(_checks._rows_ok(labels, num_classes, "ids"))


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

    def _inputs(self, y_true, y_pred, sample_weight, num_classes=None):
        """`(ids, probs, weight, ok)`. Eagerly, bad input raises and `ok` is None;
        in compiled code `ok` is False for a batch with invalid labels, weights or
        non-finite predictions."""
        eager = all(
            _checks.is_concrete(x) for x in (y_true, y_pred, sample_weight) if x is not None
        )
        if eager:
            _check_eager(y_true, y_pred, sample_weight, num_classes)
        probs, _ = calibration.to_probabilities(y_pred, self.from_logits)
        width = _checks.static_dim(probs)
        if num_classes is not None:
            _checks.check_width("y_pred", probs, num_classes)
        weight = _broadcast_weight(sample_weight, probs, self._accumulator)
        ids = calibration.label_ids(y_true, width)
        if eager:
            return ids, probs, weight, None
        ok = ops.logical_and(_labels_ok(y_true, width), ops.all(ops.isfinite(probs)))
        if weight is not None:
            ok = ops.logical_and(ok, ops.all(ops.logical_and(ops.isfinite(weight), weight >= 0)))
        return ids, probs, weight, ok

    def _add(self, sums, ok):
        """Add the batch sums; in compiled code a bad batch turns the state NaN."""
        if ok is None:  # checked eagerly
            self.sums.assign_add(sums)
            return
        ok = ops.logical_and(ok, ops.all(ops.isfinite(sums)))
        self.sums.assign_add(ops.where(ok, sums, ops.full_like(sums, np.nan)))

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
        ids, probs, weight, ok = self._inputs(y_true, y_pred, sample_weight)
        sums = calibration.confidence_bin_sums(
            ids, probs, self.num_bins, weight, dtype=self._accumulator
        )
        self._add(sums, ok)

    def result(self):
        return ops.cast(calibration.ece_from_sums(self.sums), self.dtype)


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
        super().__init__(bins, from_logits, (3, self.num_classes, bins), name, dtype)

    def update_state(self, y_true, y_pred, sample_weight=None):
        ids, probs, weight, ok = self._inputs(y_true, y_pred, sample_weight, self.num_classes)
        sums = calibration.classwise_bin_sums(
            ids, probs, self.num_bins, weight, dtype=self._accumulator
        )
        self._add(sums, ok)

    def result(self):
        return ops.cast(calibration.classwise_ece_from_sums(self.sums), self.dtype)

    def get_config(self):
        config = super().get_config()
        config["num_classes"] = self.num_classes
        return config
