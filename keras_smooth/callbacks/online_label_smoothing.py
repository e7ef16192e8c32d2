"""The per-epoch update of online label smoothing (OLS, Zhang et al. 2021)."""

import keras
import numpy as np

from keras_smooth import _arguments, _checks, calibration
from keras_smooth.losses.online import OnlineLabelSmoothingLoss, online_soft_matrix


class OnlineLabelSmoothing(keras.callbacks.Callback):
    """Update an `OnlineLabelSmoothingLoss`'s soft matrix at the end of every epoch.

    After each epoch the model predicts the training inputs once; the row of
    class k becomes the mean prediction over the correctly classified
    examples of class k (`keras_smooth.losses.online_soft_matrix`). Also
    importable as `keras_smooth.losses.OnlineLabelSmoothing`, its old address.

    Args:
        loss: the `OnlineLabelSmoothingLoss` the model is compiled with.
        x, y: the training inputs, and their class ids (`(N,)` or `(N, 1)`) or
            one-hot rows (`(N, K)`), with as many rows as `x`.
        batch_size: prediction batch size (>= 1).

    Examples:
    >>> import keras, numpy as np
    >>> from keras_smooth.callbacks import OnlineLabelSmoothing
    >>> from keras_smooth.losses import OnlineLabelSmoothingLoss
    >>> x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    >>> y = (x[:, 0] > 0).astype(int)
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> loss = OnlineLabelSmoothingLoss(num_classes=2)
    >>> model.compile(optimizer="adam", loss=loss)
    >>> callback = OnlineLabelSmoothing(loss, x, y)
    >>> _ = model.fit(x, y, epochs=2, verbose=0, callbacks=[callback])
    >>> np.allclose(loss.matrix.sum(axis=1), 1.0)
    True
    """

    def __init__(self, loss, x, y, batch_size=1024):
        super().__init__()
        if not isinstance(loss, OnlineLabelSmoothingLoss):
            raise TypeError(
                f"`loss` must be an OnlineLabelSmoothingLoss, got {type(loss).__name__}."
            )
        if x is None or not hasattr(x, "__len__"):
            raise TypeError(f"`x` must be the training inputs (an array), got {x!r}.")
        self.loss, self.x = loss, x
        self.y = calibration._label_ids(y, loss.num_classes, name="y")
        _checks.check_same_rows("x", len(x), "y", len(self.y))
        self.batch_size = _arguments.positive_int("batch_size", batch_size)
        self.history = []

    def on_train_begin(self, logs=None):
        compiled = keras.tree.flatten(getattr(self.model, "loss", None))
        if not any(loss is self.loss for loss in compiled):
            raise ValueError(
                "`loss` is not the loss the model is compiled with, so the soft matrix the "
                "model trains on would never change. After `keras.saving.load_model`, pass "
                "the loaded model's loss: `OnlineLabelSmoothing(model.loss, x, y)`."
            )

    def on_epoch_end(self, epoch, logs=None):
        preds = self.model.predict(self.x, batch_size=self.batch_size, verbose=0)
        # the library-wide rule, as the loss reads them: non-probabilities get a softmax
        probs, _ = calibration.to_probabilities(preds, self.loss.from_logits)
        probs = np.asarray(keras.ops.convert_to_numpy(probs), dtype="float64")
        probs /= probs.sum(axis=1, keepdims=True)  # 16-bit rows sum to 1 only within ~3e-3
        updated = online_soft_matrix(self.y, probs, self.loss.matrix)
        self.loss.soft_matrix.assign(updated)
        self.history.append(updated)
        if keras.backend.backend() != "tensorflow":
            # JAX/torch trace the loss with the matrix's value: retrace the step.
            self.model.make_train_function(force=True)
