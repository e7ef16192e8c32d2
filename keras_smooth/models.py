"""A model wrapper that lets the model's optimizer train loss-owned matrices."""

import keras

from keras_smooth.losses._learnable import LearnableTargetLoss


@keras.saving.register_keras_serializable(package="keras_smooth")
class TrainableTargetsModel(keras.Model):
    """Wrap a model so learnable-target losses train with its optimizer.

    Keras 3 trains only `model.trainable_weights`; the Q/C matrix of
    `LLSLoss`/`LSPlusPlusLoss` belongs to the loss. Wrapping the model adds
    each compiled loss's matrix layer to the wrapper's weights, so the model's
    optimizer trains it with the model's gradient step. This works on every
    backend (JAX and torch need it; on TensorFlow a plain model also works).
    Wrap before the first `fit`, then `compile` the wrapper.

    Args:
        model: the Keras model to train.

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
        super().__init__(**kwargs)
        self.model = model
        self.matrix_layers = []

    def call(self, inputs, training=None):
        return self.model(inputs, training=training)

    def compile(self, *args, **kwargs):
        super().compile(*args, **kwargs)
        for loss in keras.tree.flatten(self.loss):
            if isinstance(loss, LearnableTargetLoss):
                loss.attached = True
                if not any(layer is loss.matrix_layer for layer in self.matrix_layers):
                    self.matrix_layers.append(loss.matrix_layer)

    def get_config(self):
        config = super().get_config()
        config["model"] = keras.saving.serialize_keras_object(self.model)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["model"] = keras.saving.deserialize_keras_object(config["model"])
        return cls(**config)
