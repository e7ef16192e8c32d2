"""Log calibration measures of the validation set after every epoch."""

import numbers
import os
import warnings

import keras

from keras_smooth import _arguments, _checks
from keras_smooth import calibration
from keras_smooth.callbacks._validation_data import check_validation_data, predict_with_labels

MEASURES = ("ece", "classwise_ece", "nll", "brier", "accuracy")


def put_new(logs, values, owner, warned):
    """Add `values` to `logs` without replacing a key another callback or metric wrote.

    A key already present is left alone, with one warning per key naming `owner`
    (keys in `warned` were warned about before). Returns the keys that were added.
    """
    added = []
    for key, value in values.items():
        if key in logs:
            if key not in warned:
                warned.add(key)
                warnings.warn(f"{owner}: the logs already hold {key!r} (a compiled metric or "
                              "another callback); that value is kept and this one is not "
                              "logged.", stacklevel=3)
            continue
        logs[key] = value
        added.append(key)
    return added


def _local_folder(name, path):
    """`path` checked as an output folder when it is a local one; empty means off, and a
    URL (`gs://...`, which TensorBoard writes to) is left to its writer."""
    if not path:
        return None
    if "://" in str(path):
        return path
    return _arguments.output_folder(name, path)


class CalibrationLogger(keras.callbacks.Callback):
    """Write validation ECE, classwise ECE, NLL, Brier and accuracy into `logs`.

    Keys (with the default `prefix="val_"`): `val_calibration/ece`,
    `val_calibration/classwise_ece`, `val_calibration/nll`,
    `val_calibration/brier`, `val_calibration/accuracy`, and with
    `fit_temperature=True` `val_calibration/temperature` (the temperature T*
    minimising the validation NLL of softmax(logits / T)). The `calibration/`
    part keeps them apart from compiled metrics (`val_ece` of an
    `ExpectedCalibrationError` metric, Keras's `val_loss`, ...), and a key that
    is already in the logs is never replaced (one warning, the other value is
    kept). The `val_` prefix puts them in the validation run of
    `keras.callbacks.TensorBoard`, as tags `epoch_calibration/ece`, ...

    Place the logger before `CSVLogger`, `History` readers and
    `keras.callbacks.TensorBoard` in the callback list so they see the values
    (History always does). Optionally it saves a reliability diagram per
    epoch (`reliability_dir/epoch_001.png`, ...) and writes the measures and
    the diagram to TensorBoard itself (`tensorboard_dir`, needs TensorFlow):
    into `tensorboard_dir/validation`, the validation run of a
    `keras.callbacks.TensorBoard(log_dir=tensorboard_dir)`, under the tags
    that callback would use (`epoch_calibration/ece`, ...) plus the image
    `reliability_diagram`. When both write to one folder, put the logger
    *after* Keras's TensorBoard callback so each value is written once.

    Without validation data it warns once and logs nothing.

    Args:
        validation_data: `(x, y)` or an iterable of `(x, y)` batches.
        num_bins: bins for ECE and the diagrams. Default 15.
        from_logits: whether the model outputs logits. `None` (default)
            decides from the validation predictions by the library-wide
            rule (`calibration.looks_like_probabilities`): probabilities are
            used as they are, anything else goes through a softmax (sigmoid
            for `(N,)`/`(N, 1)` outputs). `True` always applies the softmax;
            `False` does the same detection with a warning when it fires.
        every: log every `every` epochs.
        reliability_dir: folder for per-epoch reliability-diagram PNGs.
        tensorboard_dir: a TensorBoard run folder; the values and the diagram
            go into its `validation` subfolder.
        prefix: prefix of the log keys (default `"val_"`).
        fit_temperature: also log the fitted temperature T* (Guo et al. 2017).
        image_every: draw the reliability diagram (PNG and TensorBoard image)
            every `image_every` logged epochs and at the last epoch; drawing
            costs far more than measuring. Default 1 (every epoch).

    Examples:
    >>> import keras, numpy as np
    >>> from keras_smooth.callbacks import CalibrationLogger
    >>> x = np.random.default_rng(0).normal(size=(32, 3)).astype("float32")
    >>> y = (x[:, 0] > 0).astype("int32")
    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    >>> model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    >>> history = model.fit(x, y, epochs=1, verbose=0,
    ...                     callbacks=[CalibrationLogger(validation_data=(x, y))])
    >>> sorted(k for k in history.history if k.startswith("val_calibration/"))[:2]
    ['val_calibration/accuracy', 'val_calibration/brier']
    """

    def __init__(self, validation_data=None, num_bins=15, from_logits=None, every=1,
                 reliability_dir=None, tensorboard_dir=None, prefix="val_",
                 fit_temperature=False, image_every=1):
        super().__init__()
        if validation_data is not None:  # None: warn once at training time, log nothing
            check_validation_data(validation_data)
        self.validation_data = validation_data
        self.num_bins = calibration.check_num_bins(num_bins)
        if from_logits is not None:
            from_logits = _checks.check_bool("from_logits", from_logits)
        self.from_logits = from_logits
        if isinstance(every, bool) or not isinstance(every, numbers.Integral):
            raise TypeError(f"`every` must be an integer number of epochs, got {every!r}.")
        if every < 1:
            raise ValueError(f"`every` must be >= 1, got {every}.")
        self.every = int(every)
        self.reliability_dir = _local_folder("reliability_dir", reliability_dir)
        self.tensorboard_dir = _local_folder("tensorboard_dir", tensorboard_dir)
        if not isinstance(prefix, str):
            raise TypeError(f"`prefix` must be a string, got {prefix!r}.")
        self.prefix = prefix
        self.fit_temperature = _checks.check_bool("fit_temperature", fit_temperature)
        if (isinstance(image_every, bool) or not isinstance(image_every, numbers.Integral)
                or image_every < 1):
            raise ValueError(f"`image_every` must be an integer >= 1, got {image_every!r}.")
        self.image_every = int(image_every)
        self._warned = False
        self._kept = set()
        self._writer = None

    def key(self, measure):
        """The log key of `measure` ("ece", "nll", ...): `val_calibration/ece` by default."""
        return f"{self.prefix}calibration/{measure}"

    def on_train_begin(self, logs=None):
        if self.validation_data is None and not self._warned:
            warnings.warn(
                "CalibrationLogger was given no `validation_data`; it will log nothing.",
                stacklevel=2,
            )
            self._warned = True

    def _measure(self, labels, preds, from_logits):
        measures = calibration.summary(labels, preds, self.num_bins, from_logits=from_logits)
        values = {self.key(name): measures[name] for name in MEASURES}
        if self.fit_temperature:
            fit = calibration.fit_temperature(preds, labels, from_logits=from_logits)
            values[self.key("temperature")] = float(fit.temperature)
        return values

    def on_epoch_end(self, epoch, logs=None):
        if self.validation_data is None or (epoch + 1) % self.every:
            return
        labels, preds = predict_with_labels(self.model, self.validation_data)
        from_logits = self.from_logits
        if from_logits is None:  # tested in the predictions' own dtype (16-bit tolerance)
            from_logits = calibration.reads_as_logits(preds)
        values = self._measure(labels, preds, from_logits)
        if logs is not None:
            put_new(logs, values, "CalibrationLogger", self._kept)
        figure = None
        last = epoch + 1 == (self.params or {}).get("epochs")
        draw = last or (epoch + 1) % (self.every * self.image_every) == 0
        if draw and (self.reliability_dir or self.tensorboard_dir):
            from keras_smooth import plots

            figure = plots.reliability_diagram(
                labels, preds, num_bins=self.num_bins, from_logits=from_logits,
                title=f"epoch {epoch + 1}",
            )
        if self.reliability_dir and figure is not None:
            os.makedirs(self.reliability_dir, exist_ok=True)
            name = f"epoch_{epoch + 1:03d}.png"
            plots.save_figure(figure, os.path.join(self.reliability_dir, name))
        if self.tensorboard_dir:
            self._write_tensorboard(epoch, values, figure)

    def _write_tensorboard(self, epoch, values, figure):
        import tensorflow as tf

        from keras_smooth import plots

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(
                os.path.join(self.tensorboard_dir, "validation"))
        with self._writer.as_default(step=epoch):
            for key, value in values.items():
                tag = key[len(self.prefix):] if key.startswith(self.prefix) else key
                tf.summary.scalar(f"epoch_{tag}", value)
            if figure is not None:
                image = plots.figure_to_array(figure)
                tf.summary.image("reliability_diagram", image[None], max_outputs=1)
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def tensorboard_run(log_dir, validation_data, num_bins=15, image_every=10):
    """Callbacks that write one TensorBoard run: Keras's scalars and the calibration measures.

    `keras.callbacks.TensorBoard(log_dir)` writes the training (`log_dir/train`)
    and validation (`log_dir/validation`) losses and metrics; a
    `CalibrationLogger` after it writes the validation ECE, classwise ECE,
    NLL, Brier score, accuracy, fitted temperature and the reliability
    diagram into `log_dir/validation`. Pass the list to `model.fit` after the
    callbacks whose log values should be written.

    Args:
        log_dir: the run's folder.
        validation_data: `(x, y)` the calibration measures are computed on.
        num_bins: bins of the ECEs and the diagram.
        image_every: the diagram is drawn every `image_every` epochs and at
            the last one (drawing takes longer than a small model's epoch).

    Returns:
        `[keras.callbacks.TensorBoard, CalibrationLogger]`.
    """
    if not isinstance(log_dir, (str, os.PathLike)) or not os.fspath(log_dir):
        raise ValueError(f"`log_dir` must be a folder path, got {log_dir!r}.")
    log_dir = _local_folder("log_dir", log_dir)
    return [keras.callbacks.TensorBoard(log_dir=log_dir, write_graph=False, profile_batch=0),
            CalibrationLogger(validation_data, num_bins=num_bins, tensorboard_dir=log_dir,
                              fit_temperature=True, image_every=image_every)]
