"""Train one classifier with best-validation-NLL model selection.

The ILS paper keeps the epoch with the lowest validation loss (§VI-a). Here
the validation loss is always the cross-entropy against the *hard* labels, so
models trained with different soft targets are selected by the same yardstick.
"""

import dataclasses

import keras
import numpy as np

from keras_smooth import _arguments, _checks, calibration
from keras_smooth.models import adam_for_loss, for_loss
from keras_smooth.training.protocol import check_fit_settings

LOG_NAMES = ("nll", "ece")


def training_failure(method, params, error):
    """A `ValueError` saying which method failed to train at which setting, and why.

    Keras reports a failed fit from deep inside (a graph node, a shape check);
    this names the method and its hyperparameters, keeps the first line of
    Keras' message, and says when the model's predictions stopped being
    finite (the loss diverged or returned NaN).
    """
    text = str(error).strip()
    first = text.splitlines()[0] if text else ""
    hint = (" (its training diverged: the model's predictions are not finite)"
            if "must be finite" in text else "")
    return ValueError(f"method {method.name!r} failed to train at {params}{hint}: "
                      f"{type(error).__name__}: {first}")


def replicas(model):
    """How many copies of `model` each training step runs: its devices.

    TensorFlow: the replicas of the model's `tf.distribute` strategy. JAX and
    torch models have no strategy; under a `keras.distribution` distribution
    (JAX) the devices it spreads each batch over, else 1.
    """
    strategy = getattr(model, "distribute_strategy", None)
    if strategy is not None:
        return int(strategy.num_replicas_in_sync)
    distribution = keras.distribution.distribution() if keras.backend.backend() == "jax" else None
    return 1 if distribution is None else len(distribution.device_mesh.devices.flatten())


def _check_log_names(log_names):
    """`{"nll": key}` with an optional `"ece"` key, each naming a log entry (a string)."""
    if log_names is None:
        return {"nll": "val_nll_hard"}
    if not isinstance(log_names, dict):
        raise TypeError(f"`log_names` must be a dict such as {{'nll': 'val_nll'}}, "
                        f"got {log_names!r}.")
    unknown = [k for k in log_names if k not in LOG_NAMES]
    if unknown or "nll" not in log_names:
        raise ValueError(f"`log_names` must have the key 'nll' (and optionally 'ece'), "
                         f"got {log_names!r}.")
    for key, name in log_names.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"`log_names[{key!r}]` must be a non-empty string, got {name!r}.")
    return dict(log_names)


def _rows(name, value):
    try:
        return len(value)
    except TypeError:
        raise TypeError(f"`{name}` must be an array with one row per example, "
                        f"got {value!r}.") from None


class BestValidationNLL(keras.callbacks.Callback):
    """Track validation NLL (hard labels) each epoch; restore the best weights at the end.

    Args:
        x_val, y_val: validation inputs and class ids.
        batch_size: prediction batch size.
        from_logits: whether the model outputs logits.
        log_names: the `logs` keys written each epoch: `"nll"` (always) and
            optionally `"ece"` (15-bin ECE; then `best_ece` is the ECE of the
            best-NLL epoch). Later callbacks (checkpoints, tuners) read them.
        patience: stop training once this many epochs in a row have not
            lowered the validation NLL (early stopping); None never stops.
            Either way the best epoch's weights are restored at the end.
    """

    def __init__(self, x_val, y_val, batch_size=2048, from_logits=True, log_names=None,
                 patience=None):
        super().__init__()
        _checks.check_same_rows("x_val", _rows("x_val", x_val), "y_val", _rows("y_val", y_val))
        self.patience = _arguments.positive_int("patience", patience, allow_none=True)
        self.stopped_epoch = None
        self.x_val, self.y_val = x_val, y_val
        self.batch_size = _arguments.positive_int("batch_size", batch_size)
        self.from_logits = _checks.check_bool("from_logits", from_logits)
        self.log_names = _check_log_names(log_names)
        self.best_nll = np.inf
        self.best_ece = np.nan
        self.best_epoch = -1
        self._best_weights = None

    def _predict(self):
        # One compiled call has no predict() set-up cost, but under a strategy
        # with several replicas predict_on_batch returns each replica's copy.
        if len(self.x_val) <= self.batch_size and replicas(self.model) == 1:
            return np.asarray(self.model.predict_on_batch(self.x_val))
        return self.model.predict(self.x_val, batch_size=self.batch_size, verbose=0)

    def on_epoch_end(self, epoch, logs=None):
        preds = self._predict()
        value = calibration.nll(self.y_val, preds, from_logits=self.from_logits)
        ece = None
        if "ece" in self.log_names:
            ece = calibration.ece(self.y_val, preds, from_logits=self.from_logits)
        if logs is not None:
            logs[self.log_names["nll"]] = value
            if ece is not None:
                logs[self.log_names["ece"]] = ece
        if value < self.best_nll:
            self.best_nll, self.best_epoch = value, epoch
            self.best_ece = np.nan if ece is None else ece
            self._best_weights = self.model.get_weights()
        elif self.patience is not None and epoch - self.best_epoch >= self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self._best_weights is not None:
            self.model.set_weights(self._best_weights)


class EpochProgress(keras.callbacks.Callback):
    """Report `(epoch, epochs)` to a function every `every` (>= 1) epochs (no printing here)."""

    def __init__(self, report, every=10):
        super().__init__()
        if not callable(report):
            raise TypeError(f"`report` must be callable(epoch, epochs), got {report!r}.")
        self.report, self.every = report, _arguments.positive_int("every", every)

    def on_epoch_end(self, epoch, logs=None):
        total = self.params.get("epochs", 0)
        if (epoch + 1) % self.every == 0 or epoch + 1 == total:
            self.report(epoch + 1, total)


class EpochShuffle(keras.callbacks.Callback):
    """Training batches whose order is a pure function of `(seed, epoch)`.

    `dataset` yields the batches of one epoch, in an order drawn by a
    stateless shuffle seeded with `(seed, epoch)`; pass the callback to `fit`
    so it can tell the pipeline the epoch. Unlike a seeded
    `Dataset.shuffle`, the order does not depend on how many iterators were
    made before, so one replica and several replicas (whose `fit` makes an
    extra iterator to build the model) see the same batches.

    Args:
        x, targets: training arrays with the same number of rows.
        batch_size: rows per batch (the last batch may be smaller).
        seed: integer seed of the shuffle.
    """

    def __init__(self, x, targets, batch_size, seed):
        import tensorflow as tf

        super().__init__()
        n = _rows("targets", targets)
        _checks.check_same_rows("x", _rows("x", x), "targets", n)
        batch_size = _arguments.positive_int("batch_size", batch_size)
        seed = _arguments.seed("seed", seed)
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="shuffle_epoch")
        epoch, seed = self.epoch, tf.constant(int(seed), tf.int64)

        def permutation(_):
            keys = tf.random.stateless_uniform([n], seed=tf.stack([seed, epoch.read_value()]))
            return tf.argsort(keys)

        order = tf.data.Dataset.from_tensors(0).map(permutation).unbatch().batch(int(batch_size))
        arrays = tf.data.Dataset.from_tensors((np.asarray(x), np.asarray(targets))).cache().repeat()
        self.dataset = (
            tf.data.Dataset.zip((order, arrays))
            .map(lambda rows, xy: (tf.gather(xy[0], rows), tf.gather(xy[1], rows)))
            .prefetch(tf.data.AUTOTUNE)
        )

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch.assign(epoch)


@dataclasses.dataclass
class TrainedModel:
    model: keras.Model
    best_epoch: int
    best_val_nll: float
    epochs_trained: int = 0


class ReusableModel:
    """A compiled model that trains again from its seeded initial state.

    Re-training with the same loss on new targets needs no new build, compile
    or trace: the weights and every optimizer variable (step count, moments,
    learning rate) go back to the values they had right after building, the
    state of a fresh model and optimizer.
    """

    def __init__(self, build_model, data, loss, seed, learning_rate):
        keras.utils.set_random_seed(seed)
        self.model = for_loss(build_model(data.input_shape, data.num_classes), loss)
        self.loss = loss
        self.model.compile(optimizer=adam_for_loss(learning_rate, loss), loss=loss)
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


def fit_classifier(build_model, data, targets, loss, *, epochs, batch_size, seed,
                   learning_rate=1e-3, patience=None,
                   progress=None, reusable=None, callbacks=()):
    """Build `build_model(input_shape, num_classes)` (logits out), train on `targets`.

    Args:
        build_model: callable returning an uncompiled model with logit outputs.
        data: `ClassificationData`.
        targets: training targets (class ids or `(N, K)` soft rows).
        loss: a Keras loss (from logits).
        epochs, batch_size, seed, learning_rate: training settings (Adam);
            `epochs` is the most trained, `batch_size` may be `"full"` (the
            whole training split per step). `TrainingProtocol.fit_arguments`
            gives them with `patience`.
        patience: early stopping after this many epochs without a lower
            validation NLL (None: train every epoch).
        progress: optional `report(epoch, epochs)` callable.
        reusable: optional `ReusableModel` compiled with an equivalent loss;
            it is reset and trained instead of building a new model.
        callbacks: extra Keras callbacks (e.g. `OnlineLabelSmoothing`).

    Returns:
        `TrainedModel` holding the weights of the best validation-NLL epoch.
    """
    import tensorflow as tf

    epochs, batch_size, seed, learning_rate, patience = check_fit_settings(
        epochs=epochs, batch_size=batch_size, seed=seed, learning_rate=learning_rate,
        patience=patience)
    _checks.check_same_rows("targets", _rows("targets", targets),
                            "data.x_train", len(data.x_train))
    _arguments.callable_or_none("progress", progress)
    if reusable is None:
        reusable = ReusableModel(build_model, data, loss, seed, learning_rate)
    model = reusable.reset()
    best = BestValidationNLL(data.x_val, data.y_val, patience=patience)
    if batch_size == "full":
        batch_size = len(data.x_train)
    callbacks = [*callbacks, best] + ([EpochProgress(progress)] if progress else [])
    # A cached, reshuffled tf.data pipeline: NumPy inputs would rebuild the
    # input pipeline every epoch, which dominates on small data sets.
    train = (
        tf.data.Dataset.from_tensor_slices((data.x_train, np.asarray(targets)))
        .cache()
        .shuffle(len(data.x_train), seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
    # shuffle=False: the pipeline shuffles
    history = model.fit(train, epochs=epochs, verbose=0, shuffle=False, callbacks=callbacks)
    return TrainedModel(model, best.best_epoch + 1, float(best.best_nll),
                        len(history.epoch))
