"""Log calibration measures of the validation set after every epoch."""

import numbers
import os
import warnings

import keras

from keras_smooth import _checks
from keras_smooth import calibration
from keras_smooth.callbacks._validation_data import predict_with_labels


class CalibrationLogger(keras.callbacks.Callback):
    """Write validation ECE, classwise ECE, NLL, Brier and accuracy into `logs`.

    Keys: `val_ece`, `val_classwise_ece`, `val_nll`, `val_brier`,
    `val_accuracy_top1` (with `prefix="val_"`). Place the logger before
    `CSVLogger`/`TensorBoard` in the callback list so they see the values.
    Optionally it saves a reliability diagram per epoch
    (`reliability_dir/epoch_001.png`, ...) and writes the measures and the
    diagram to TensorBoard (`tensorboard_dir`, needs TensorFlow).

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
        tensorboard_dir: folder for TensorBoard scalars and images.
        prefix: prefix of the log keys.
    """

    def __init__(self, validation_data=None, num_bins=15, from_logits=None, every=1,
                 reliability_dir=None, tensorboard_dir=None, prefix="val_"):
        super().__init__()
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
        self.reliability_dir = reliability_dir
        self.tensorboard_dir = tensorboard_dir
        self.prefix = prefix
        self._warned = False
        self._writer = None

    def on_train_begin(self, logs=None):
        if self.validation_data is None and not self._warned:
            warnings.warn(
                "CalibrationLogger was given no `validation_data`; it will log nothing.",
                stacklevel=2,
            )
            self._warned = True

    def on_epoch_end(self, epoch, logs=None):
        if self.validation_data is None or (epoch + 1) % self.every:
            return
        labels, preds = predict_with_labels(self.model, self.validation_data)
        from_logits = self.from_logits
        if from_logits is None:  # tested in the predictions' own dtype (16-bit tolerance)
            from_logits = calibration.reads_as_logits(preds)
        measures = calibration.summary(labels, preds, self.num_bins, from_logits=from_logits)
        values = {
            f"{self.prefix}ece": measures["ece"],
            f"{self.prefix}classwise_ece": measures["classwise_ece"],
            f"{self.prefix}nll": measures["nll"],
            f"{self.prefix}brier": measures["brier"],
            f"{self.prefix}accuracy_top1": measures["accuracy"],
        }
        if logs is not None:
            logs.update(values)
        figure = None
        if self.reliability_dir or self.tensorboard_dir:
            from keras_smooth import plots

            figure = plots.reliability_diagram(
                labels, preds, num_bins=self.num_bins, from_logits=from_logits,
                title=f"epoch {epoch + 1}",
            )
        if self.reliability_dir:
            os.makedirs(self.reliability_dir, exist_ok=True)
            name = f"epoch_{epoch + 1:03d}.png"
            plots.save_figure(figure, os.path.join(self.reliability_dir, name))
        if self.tensorboard_dir:
            self._write_tensorboard(epoch, values, figure)

    def _write_tensorboard(self, epoch, values, figure):
        import tensorflow as tf

        from keras_smooth import plots

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.tensorboard_dir)
        with self._writer.as_default(step=epoch):
            for key, value in values.items():
                tf.summary.scalar(key, value)
            image = plots.figure_to_array(figure)
            tf.summary.image("reliability_diagram", image[None], max_outputs=1)
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
