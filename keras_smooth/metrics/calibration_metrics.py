"""Streaming calibration metrics: state is per-bin sums, never the predictions."""

import keras
from keras import ops

from keras_smooth import _checks
from keras_smooth import calibration


class _BinnedCalibrationMetric(keras.metrics.Metric):
    """Shared state handling: a float32 sum tensor updated with bin sums."""

    def __init__(self, num_bins, from_logits, state_shape, name, dtype):
        super().__init__(name=name, dtype=dtype)
        self.num_bins = calibration.check_num_bins(num_bins)
        self.from_logits = _checks.check_bool("from_logits", from_logits)
        self._direction = "down"  # lower is better, for EarlyStopping & co.
        self.sums = self.add_variable(
            shape=state_shape, initializer="zeros", dtype="float32", aggregation="sum", name="sums"
        )

    def _inputs(self, y_true, y_pred):
        y_pred = ops.cast(y_pred, "float32")
        probs = ops.softmax(y_pred, axis=-1) if self.from_logits else y_pred
        num_classes = _checks.static_dim(probs)
        onehot = _checks.one_hot_labels(y_true, num_classes, name="y_true")
        return onehot, probs, num_classes

    def reset_state(self):
        self.sums.assign(ops.zeros(self.sums.shape, dtype="float32"))

    def get_config(self):
        config = super().get_config()
        config.update(num_bins=self.num_bins, from_logits=self.from_logits)
        return config


@keras.saving.register_keras_serializable(package="keras_smooth")
class ExpectedCalibrationError(_BinnedCalibrationMetric):
    """Streaming top-label ECE with equal-width bins (see `calibration.ece`).

    State: a `(3, num_bins)` tensor of per-bin counts, confidence sums and
    correctness sums, summed across batches and replicas. Fed in any batches,
    `result()` equals `keras_smooth.calibration.ece` on all the data at once.

    Args:
        num_bins: number of equal-width bins, default 15.
        from_logits: whether predictions are logits (default: probabilities).
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
        super().__init__(num_bins, from_logits, (3, calibration.check_num_bins(num_bins)), name, dtype)

    def update_state(self, y_true, y_pred, sample_weight=None):
        onehot, probs, _ = self._inputs(y_true, y_pred)
        self.sums.assign_add(
            calibration.confidence_bin_sums(onehot, probs, self.num_bins, sample_weight)
        )

    def result(self):
        return calibration.ece_from_sums(self.sums)


@keras.saving.register_keras_serializable(package="keras_smooth")
class ClasswiseECE(_BinnedCalibrationMetric):
    """Streaming classwise ECE (Kull et al. 2019; see `calibration.classwise_ece`).

    State: a `(3, num_classes, num_bins)` tensor -- memory O(K * bins)
    whatever the number of predictions.

    Args:
        num_classes: K, at least 2.
        num_bins: number of equal-width bins, default 15.
        from_logits: whether predictions are logits (default: probabilities).
        name, dtype: as for `keras.metrics.Metric`.

    Examples:
    >>> from keras_smooth.metrics import ClasswiseECE
    >>> metric = ClasswiseECE(num_classes=2, num_bins=10)
    >>> metric.update_state([0, 1, 1], [[0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
    >>> round(float(metric.result()), 4)
    0.3333
    """

    def __init__(self, num_classes, num_bins=15, from_logits=False, name="classwise_ece", dtype=None):
        self.num_classes = _checks.check_num_classes(num_classes)
        bins = calibration.check_num_bins(num_bins)
        super().__init__(bins, from_logits, (3, self.num_classes, bins), name, dtype)

    def update_state(self, y_true, y_pred, sample_weight=None):
        onehot, probs, _ = self._inputs(y_true, y_pred)
        _checks.check_width("y_pred", probs, self.num_classes)
        self.sums.assign_add(
            calibration.classwise_bin_sums(onehot, probs, self.num_bins, sample_weight)
        )

    def result(self):
        return calibration.classwise_ece_from_sums(self.sums)

    def get_config(self):
        config = super().get_config()
        config["num_classes"] = self.num_classes
        return config
