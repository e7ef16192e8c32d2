"""Models: the wrapper that trains loss-owned matrices, and the workflows' default network."""

import keras

from keras_smooth import _checks
from keras_smooth.losses._learnable import LearnableTargetLoss


@keras.saving.register_keras_serializable(package="keras_smooth")
class TrainableTargetsModel(keras.Model):
    """Wrap a model so learnable-target losses train with its optimizer.

    Keras 3 trains only `model.trainable_weights`; the Q/C matrix of
    `LLSLoss`/`LSPlusPlusLoss` belongs to the loss. Wrapping the model adds
    each compiled loss's matrix layer to the wrapper's weights, so the model's
    optimizer trains it with the model's gradient step. This works on every
    backend (JAX and torch need it; on TensorFlow a plain model also works).
    Wrap before the first `fit`, then `compile` the wrapper; compiling again
    with other losses replaces the matrices it trains.

    Saving: `model.save("m.keras")` and `keras.saving.load_model` give back
    the wrapper compiled as it was (loss with its matrix, frozen or not,
    optimizer state), on any backend; `fit` goes on training the matrix.

    Args:
        model: the Keras model (or layer) to train; it may take any inputs
            (a tensor, a list or a dict of tensors).

    Examples:
    >>> import keras
    >>> import keras_smooth
    >>> net = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> model = keras_smooth.TrainableTargetsModel(net)
    >>> loss = keras_smooth.LLSLoss(num_classes=3)
    >>> model.compile(optimizer="adam", loss=loss)
    >>> any(v is loss.matrix_layer.logits for v in model.trainable_weights)
    True
    """

    def __init__(self, model, **kwargs):
        if not isinstance(model, keras.layers.Layer):
            raise TypeError(
                f"`model` must be a Keras model or layer, got {type(model).__name__}: {model!r}."
            )
        super().__init__(**kwargs)
        self.model = model
        self.matrix_layers = []

    def call(self, inputs, training=None):
        return self.model(inputs, training=training)

    def compile(self, *args, **kwargs):
        previous = _learnable_losses(getattr(self, "loss", None))
        super().compile(*args, **kwargs)
        current = _learnable_losses(self.loss)
        for loss in previous:
            if not any(loss is other for other in current):
                loss.attached = False  # back to training its matrix itself (TF)
        layers = []
        for loss in current:
            loss.attached = True
            if not any(layer is loss.matrix_layer for layer in layers):
                layers.append(loss.matrix_layer)
        self._track_matrix_layers(layers)

    def _track_matrix_layers(self, layers):
        """Make `layers` the wrapper's matrix sub-layers, also once it is built.

        Keras locks the sub-layer tracker of a built layer (`_tracker`); like
        Keras's own `quantize`, this unlocks it for the change and locks it
        again. Without this, compiling a wrapper that was already called would
        fail with "You cannot add new elements of state".
        """
        tracker = self._tracker
        locked = tracker.locked
        tracker.unlock()
        try:
            self.matrix_layers.clear()
            self.matrix_layers.extend(layers)
        finally:
            if locked:
                tracker.lock()

    def compile_from_config(self, config):
        """Compile from `get_compile_config()`, as `keras.Model` does.

        Called by `keras.saving.load_model`: Keras skips models that override
        `compile`, which would leave the loaded wrapper without its loss and
        its matrix outside the trainable weights.
        """
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if getattr(self, "optimizer", None) is not None and self.built:
            self.optimizer.build(self.trainable_variables)

    def get_config(self):
        config = super().get_config()
        config["model"] = keras.saving.serialize_keras_object(self.model)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["model"] = keras.saving.deserialize_keras_object(config["model"])
        return cls(**config)


def _learnable_losses(losses):
    """The `LearnableTargetLoss` objects in a compiled loss structure."""
    return [loss for loss in keras.tree.flatten(losses) if isinstance(loss, LearnableTargetLoss)]


def for_loss(model, loss):
    """The model to compile with `loss` so that everything the loss learns is trained.

    A learnable-target loss (`LLSLoss`, `LSPlusPlusLoss`) with a trainable
    matrix trains its matrix itself under a plain model on TensorFlow only;
    on JAX and torch `model` comes back wrapped in `TrainableTargetsModel`,
    whose optimizer trains the matrix with the model's gradient step (the
    same gradient: the mean of the matrix objective over the batch; compile
    with `adam_for_loss` for the same step size too). Any other loss, or the
    TensorFlow backend, gets `model` itself, so the workflows train the same
    models as before on TensorFlow. A built `model` gives a built wrapper, so
    saved weights (a KerasTuner checkpoint) load into it at once.

    Args:
        model: an uncompiled Keras model.
        loss: the loss (or structure of losses) it will be compiled with.

    Examples:
    >>> import keras
    >>> import keras_smooth
    >>> net = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> wrapped = for_loss(net, keras_smooth.LLSLoss(num_classes=3))
    >>> isinstance(wrapped, TrainableTargetsModel) == (keras.backend.backend() != "tensorflow")
    True
    >>> for_loss(net, "categorical_crossentropy") is net
    True
    """
    if not isinstance(model, keras.layers.Layer):
        raise TypeError(f"`model` must be a Keras model, got {type(model).__name__}: {model!r}.")
    if keras.backend.backend() == "tensorflow" or isinstance(model, TrainableTargetsModel):
        return model
    if not any(loss.matrix_layer.trainable for loss in _learnable_losses(loss)):
        return model
    wrapped = TrainableTargetsModel(model)
    if getattr(model, "built", False) and getattr(model, "inputs", None):
        # Built now like the model it wraps, so saved weights load into it at once.
        wrapped(keras.tree.map_structure(lambda t: keras.KerasTensor(t.shape, t.dtype),
                                         _input_structure(model)))
    return wrapped


def _input_structure(model):
    """The inputs of a built model as it is called: a tensor, a list or a dict."""
    try:
        return model.input  # a functional model's own structure
    except AttributeError:  # a Sequential that was never called: its one input
        return model.inputs[0] if len(model.inputs) == 1 else model.inputs


class _MatrixRateAdam(keras.optimizers.Adam):
    """Adam whose steps on some variables use their own learning rate.

    Adam is applied per variable, so the matrix's moments are the same as
    under a separate optimizer; only the step size differs.
    """

    def __init__(self, learning_rate, rates, **kwargs):
        super().__init__(learning_rate, **kwargs)
        # Keyed by id: an optimizer attribute holding the variables themselves would
        # make them optimizer state too (JAX then donates one buffer twice).
        self._rates = {id(variable): float(rate) for variable, rate in rates}

    def update_step(self, gradient, variable, learning_rate):
        learning_rate = self._rates.get(id(variable), learning_rate)
        super().update_step(gradient, variable, learning_rate)


def adam_for_loss(learning_rate, loss):
    """The Adam optimizer the workflows compile `for_loss(model, loss)` with.

    On TensorFlow, or for a loss without a trainable matrix, a plain
    `keras.optimizers.Adam(learning_rate)`. When `for_loss` wraps the model
    (JAX, torch), the model's optimizer also steps each learnable-target
    loss's matrix; this Adam takes those steps at the learning rate of the
    loss's `matrix_optimizer` (Adam 1e-2 by default), the rate the matrix
    trains at under a plain model on TensorFlow. The gradient is the same
    (the batch mean of the matrix objective) and Adam's moments are kept per
    variable, so an Adam `matrix_optimizer` (with Keras's default betas and
    epsilon) trains the matrix identically on every backend; of any other
    optimizer only the learning rate carries over.

    Args:
        learning_rate: the model's Adam learning rate (finite, > 0) or a
            `keras.optimizers.schedules.LearningRateSchedule`.
        loss: the loss (or structure of losses) the model is compiled with.
    """
    if not isinstance(learning_rate, keras.optimizers.schedules.LearningRateSchedule):
        learning_rate = _checks.check_positive("learning_rate", learning_rate)
    learnable = [loss for loss in _learnable_losses(loss) if loss.matrix_layer.trainable]
    if keras.backend.backend() == "tensorflow" or not learnable:
        return keras.optimizers.Adam(learning_rate)
    rates = [(loss.matrix_layer.logits, float(loss.matrix_optimizer.learning_rate))
             for loss in learnable]
    return _MatrixRateAdam(learning_rate, rates)


def default_model(input_shape, num_classes):
    """MLP 5 x 64 ReLU for feature vectors (ILS paper §III); a small CNN for images.

    The CNN: two 3 x 3 convolutions (32 and 64 filters), each followed by 2 x 2
    max pooling, then a 128-unit ReLU layer (the penultimate features) and
    the logits. The input is named `features` (vectors) or `images`, so an
    exported model serves it under that name.

    Args:
        input_shape: the shape of one example, a tuple of integers >= 1 such as
            `(2,)` or `(28, 28, 1)`.
        num_classes: K >= 2 logits.
    """
    input_shape = _checks.check_shape("input_shape", input_shape)
    num_classes = _checks.check_num_classes(num_classes)
    if len(input_shape) not in (1, 3):
        raise ValueError("`input_shape` must be (features,) for the MLP or (height, width, "
                         f"channels) for the CNN, got {input_shape!r}.")
    if len(input_shape) == 1:
        layers = [keras.layers.Dense(64, activation="relu") for _ in range(5)]
    else:
        layers = [
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(128, activation="relu"),
        ]
    inputs = keras.Input(input_shape, name="features" if len(input_shape) == 1 else "images")
    return keras.Sequential([inputs, *layers, keras.layers.Dense(num_classes)])
