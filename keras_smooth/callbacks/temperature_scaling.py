"""Fit a temperature on validation data after (or during) training."""

import warnings

import keras

from keras_smooth import _checks, calibration
from keras_smooth.callbacks.calibration_logger import put_new
from keras_smooth.callbacks._validation_data import check_validation_data, predict_with_labels
from keras_smooth.export import model_inputs
from keras_smooth.layers.temperature_scaling import TemperatureScaling


class TemperatureScalingCallback(keras.callbacks.Callback):
    """Fit the temperature T of softmax(logits / T) on validation data.

    At the end of training (and after every epoch with `every_epoch=True`) the
    callback predicts the validation set, fits T with
    `keras_smooth.calibration.fit_temperature`, and writes into `logs`:
    `val_temperature`, `val_temperature_converged`, `val_nll_before`,
    `val_nll_after`, `val_ece_before`, `val_ece_after` (all `val_`: they are
    measured on validation data, so TensorBoard shows them in the validation
    run). A key already in the logs is never replaced (one warning). Per-epoch
    values reach `History`, `CSVLogger` and `TensorBoard` when this callback
    comes before them in the list. The last values are kept in
    `callback.results` (keys `temperature`, `temperature_converged`,
    `val_nll_before`, ...), and `callback.calibrated_model()`
    returns the trained model followed by a `TemperatureScaling` layer --
    calibrated without retraining. Nothing else is stored on the callback.

    Args:
        validation_data: `(x, y)` or an iterable of `(x, y)` batches. Empty
            data, or labels that do not match the samples, raise `ValueError`.
        every_epoch: also fit after every epoch.
        from_logits: whether the model outputs logits or probabilities
            (their logarithms are then scaled). `None` (default) decides from
            the validation predictions by the library-wide rule
            (`calibration.looks_like_probabilities`), so a softmax-output model
            is never softmaxed twice.
        num_bins: bins of the ECE that is logged.
        bounds: `(T_min, T_max)` for the search.

    Examples:
    >>> import keras, numpy as np
    >>> from keras_smooth.callbacks import TemperatureScalingCallback
    >>> x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    >>> y = (x[:, 0] > 0).astype("int32")
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    >>> ts = TemperatureScalingCallback(validation_data=(x, y))
    >>> _ = model.fit(x, y, epochs=2, verbose=0, callbacks=[ts])
    >>> ts.results["temperature"] > 0
    True
    >>> calibrated = ts.calibrated_model()
    """

    def __init__(self, validation_data, every_epoch=False, from_logits=None, num_bins=15,
                 bounds=(0.01, 100.0)):
        super().__init__()
        if validation_data is None:
            raise ValueError("`validation_data` is required to fit a temperature; got None.")
        check_validation_data(validation_data)
        self.validation_data = validation_data
        self.every_epoch = _checks.check_bool("every_epoch", every_epoch)
        if from_logits is not None:
            from_logits = _checks.check_bool("from_logits", from_logits)
        self.from_logits = from_logits
        self.num_bins = calibration.check_num_bins(num_bins)
        self.bounds = calibration._check_temperature_bounds(bounds)  # checked before training
        self.results = {}
        self._kept = set()

    def _fit(self):
        labels, preds = predict_with_labels(self.model, self.validation_data)
        from_logits = self.from_logits
        if from_logits is None:
            from_logits = calibration.reads_as_logits(preds)
        self._fitted_from_logits = from_logits
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fit = calibration.fit_temperature(preds, labels, bounds=self.bounds,
                                              from_logits=from_logits)
        for w in caught:
            warnings.warn(f"TemperatureScalingCallback: {w.message}", stacklevel=2)
        scaled = calibration.apply_temperature(preds, fit.temperature, from_logits)
        self.results = {
            "temperature": float(fit.temperature),
            "val_nll_before": float(fit.nll_before),
            "val_nll_after": float(fit.nll_after),
            "val_ece_before": calibration.ece(labels, preds, self.num_bins,
                                              from_logits=from_logits),
            "val_ece_after": calibration.ece(labels, scaled, self.num_bins),
            "temperature_converged": float(fit.converged),
        }
        return self.results

    def _log(self, logs, results):
        if logs is None:
            return
        renamed = {("val_" + k if k.startswith("temperature") else k): v
                   for k, v in results.items()}
        put_new(logs, renamed, "TemperatureScalingCallback", self._kept)

    def on_epoch_end(self, epoch, logs=None):
        if self.every_epoch:
            self._log(logs, self._fit())

    def on_train_end(self, logs=None):
        self._log(logs, self._fit())

    def calibrated_model(self, softmax=None):
        """The trained model followed by `TemperatureScaling(T)`; shares weights.

        For a model with known inputs (functional or `Sequential` with an
        `Input`) this is a functional model over the same inputs, so their
        names and structure (one tensor, a list or a dict) are kept and
        `export_for_serving` serves them under those names. A subclassed
        model without inputs gives `Sequential([model, TemperatureScaling])`.

        Args:
            softmax: whether the calibrated model outputs probabilities. By
                default it outputs what the model outputs: logits / T for a
                logits model, softmax(log p / T) for a probability model.

        Returns:
            a `keras.Model` named `<model name>_calibrated`.
        """
        if "temperature" not in self.results:
            raise ValueError("No temperature fitted yet: train the model with this callback first.")
        from_logits = self._fitted_from_logits
        softmax = (not from_logits) if softmax is None else bool(softmax)
        scaling = TemperatureScaling(
            self.results["temperature"], softmax=softmax, from_logits=from_logits
        )
        name = f"{self.model.name}_calibrated"
        inputs = model_inputs(self.model)
        if inputs is None:  # a subclassed model has no symbolic inputs
            return keras.Sequential([self.model, scaling], name=name)
        if len(self.model.outputs) != 1:
            raise ValueError(
                "calibrated_model() needs a model with one output, got "
                f"{len(self.model.outputs)} outputs."
            )
        return keras.Model(inputs, scaling(self.model(inputs)), name=name)
