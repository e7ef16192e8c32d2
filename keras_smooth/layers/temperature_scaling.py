"""Post-hoc temperature scaling as a layer."""

import keras
from keras import ops

from keras_smooth import _checks


@keras.saving.register_keras_serializable(package="keras_smooth")
class TemperatureScaling(keras.layers.Layer):
    """Divide logits by a positive temperature held in a weight.

    The temperature is a non-trainable weight, so it is saved, loaded and
    exported with the model. Fit it with
    `keras_smooth.calibration.fit_temperature` (or the
    `keras_smooth.callbacks.TemperatureScalingCallback`) and set it with
    `set_temperature`.

    Formula:
        z = inputs                     (from_logits=True)
        z = log(max(inputs, 1e-12))    (from_logits=False: inputs are probabilities)
        output = z / T                 (softmax=False)
        output = softmax(z / T)        (softmax=True)

    Args:
        temperature: initial T > 0. Default 1.
        softmax: apply a softmax after scaling.
        from_logits: whether the inputs are logits (default) or probabilities.

    Examples:
    >>> import numpy as np
    >>> from keras_smooth.layers import TemperatureScaling
    >>> layer = TemperatureScaling(temperature=2.0)
    >>> np.asarray(layer(np.array([[2.0, -4.0]], "float32"))).tolist()
    [[1.0, -2.0]]
    """

    def __init__(self, temperature=1.0, softmax=False, from_logits=True, **kwargs):
        super().__init__(**kwargs)
        self.initial_temperature = _checks.check_positive("temperature", temperature)
        self.softmax = _checks.check_bool("softmax", softmax)
        self.from_logits = _checks.check_bool("from_logits", from_logits)
        self.temperature = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(self.initial_temperature),
            trainable=False,
            name="temperature",
        )
        self.built = True  # the only weight exists; any input shape works

    def set_temperature(self, temperature):
        """Set T (> 0)."""
        self.temperature.assign(_checks.check_positive("temperature", float(temperature)))

    def call(self, inputs):
        logits = inputs if self.from_logits else ops.log(ops.maximum(inputs, 1e-12))
        scaled = logits / ops.cast(self.temperature, logits.dtype)
        return ops.softmax(scaled, axis=-1) if self.softmax else scaled

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            temperature=float(ops.convert_to_numpy(self.temperature)),
            softmax=self.softmax,
            from_logits=self.from_logits,
        )
        return config
