"""Train one classifier with best-validation-NLL model selection.

The ILS paper keeps the epoch with the lowest validation loss (§VI-a). Here
the validation loss is always the cross-entropy against the *hard* labels, so
models trained with different soft targets are selected by the same yardstick.
"""

import dataclasses

import keras
import numpy as np

from keras_smooth import calibration


class BestValidationNLL(keras.callbacks.Callback):
    """Track validation NLL (hard labels) each epoch; restore the best weights at the end."""

    def __init__(self, x_val, y_val, batch_size=2048, from_logits=True):
        super().__init__()
        self.x_val, self.y_val = x_val, y_val
        self.batch_size = batch_size
        self.from_logits = from_logits
        self.best_nll = np.inf
        self.best_epoch = -1
        self._best_weights = None

    def _predict(self):
        if len(self.x_val) <= self.batch_size:  # one compiled call: no predict() set-up cost
            return np.asarray(self.model.predict_on_batch(self.x_val))
        return self.model.predict(self.x_val, batch_size=self.batch_size, verbose=0)

    def on_epoch_end(self, epoch, logs=None):
        preds = self._predict()
        value = calibration.nll(self.y_val, preds, from_logits=self.from_logits)
        if logs is not None:
            logs["val_nll_hard"] = value
        if value < self.best_nll:
            self.best_nll, self.best_epoch = value, epoch
            self._best_weights = self.model.get_weights()

    def on_train_end(self, logs=None):
        if self._best_weights is not None:
            self.model.set_weights(self._best_weights)


class EpochProgress(keras.callbacks.Callback):
    """Report `(epoch, epochs)` to a function every `every` epochs (no printing here)."""

    def __init__(self, report, every=10):
        super().__init__()
        self.report, self.every = report, max(1, int(every))

    def on_epoch_end(self, epoch, logs=None):
        total = self.params.get("epochs", 0)
        if (epoch + 1) % self.every == 0 or epoch + 1 == total:
            self.report(epoch + 1, total)


@dataclasses.dataclass
class TrainedModel:
    model: keras.Model
    best_epoch: int
    best_val_nll: float


class ReusableModel:
    """A compiled model that trains again from its seeded initial state.

    Re-training with the same loss on new targets needs no new build, compile
    or trace: the weights and every optimizer variable (step count, moments,
    learning rate) go back to the values they had right after building, the
    state of a fresh model and optimizer.
    """

    def __init__(self, build_model, data, loss, seed, learning_rate):
        keras.utils.set_random_seed(seed)
        self.model = build_model(data.input_shape, data.num_classes)
        self.model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss)
        self.initial_weights = self.model.get_weights()
        self.model.optimizer.build(self.model.trainable_variables)
        self.initial_optimizer = [np.array(v.numpy()) for v in self.model.optimizer.variables]
        self.fitted = False

    def reset(self):
        if self.fitted:
            self.model.set_weights(self.initial_weights)
            for variable, value in zip(self.model.optimizer.variables, self.initial_optimizer):
                variable.assign(value)
        self.fitted = True
        return self.model


def fit_classifier(build_model, data, targets, loss, *, epochs, batch_size, seed, learning_rate=1e-3,
                   progress=None, reusable=None):
    """Build `build_model(input_shape, num_classes)` (logits out), train on `targets`.

    Args:
        build_model: callable returning an uncompiled model with logit outputs.
        data: `ClassificationData`.
        targets: training targets (class ids or `(N, K)` soft rows).
        loss: a Keras loss (from logits).
        epochs, batch_size, seed, learning_rate: training settings (Adam).
        progress: optional `report(epoch, epochs)` callable.
        reusable: optional `ReusableModel` compiled with an equivalent loss;
            it is reset and trained instead of building a new model.

    Returns:
        `TrainedModel` holding the weights of the best validation-NLL epoch.
    """
    import tensorflow as tf

    if reusable is None:
        reusable = ReusableModel(build_model, data, loss, seed, learning_rate)
    model = reusable.reset()
    best = BestValidationNLL(data.x_val, data.y_val)
    callbacks = [best] + ([EpochProgress(progress)] if progress else [])
    # A cached, reshuffled tf.data pipeline: NumPy inputs would rebuild the
    # input pipeline every epoch, which dominates on small data sets.
    train = (
        tf.data.Dataset.from_tensor_slices((data.x_train, np.asarray(targets)))
        .cache()
        .shuffle(len(data.x_train), seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
    model.fit(train, epochs=epochs, verbose=0, shuffle=False, callbacks=callbacks)  # the pipeline shuffles
    return TrainedModel(model, best.best_epoch + 1, float(best.best_nll))
