"""Post-hoc temperature scaling as a layer."""

import numbers

import keras
import numpy as np
from keras import ops

from keras_smooth import _checks

_EPS = 1e-12  # floor of the probabilities before the logarithm (float32 keeps it)


def check_temperature(value, name="temperature"):
    """`value` as a float T > 0; a 0-d array or tensor is accepted.

    Raises `TypeError` for non-numbers and arrays of more than one value,
    `ValueError` for NaN, Inf, T <= 0 and T outside the normal float32 range
    (the temperature is held in a float32 weight, where such a T would become
    0 or Inf and the output NaN); both name the argument.
    """
    if not isinstance(value, (numbers.Number, str, bytes)) and hasattr(value, "shape"):
        array = np.asarray(ops.convert_to_numpy(value))
        if array.shape != ():
            raise TypeError(f"`{name}` must be a scalar, got an array of shape {array.shape}.")
        value = array.item()
    return _checks.check_float32_positive(name, value, "it is held in a float32 weight")


def log_probabilities(inputs, held_dtype=None):
    """log(max(p, 1e-12)) of a batch of probabilities; log_softmax of a batch that is not.

    The batch is tested by the library-wide rule
    (`keras_smooth._checks.looks_like_probabilities`, with the row-sum tolerance
    of `held_dtype`, the dtype the predictions had before any cast); a batch
    that is not probabilities is taken for logits (per batch, in eager and
    graph mode). Either way softmax(result / T) is the tempered distribution.
    """
    is_probability = _checks.looks_like_probabilities(inputs, dtype=held_dtype)
    from_probabilities = ops.log(ops.maximum(inputs, _EPS))
    return ops.where(is_probability, from_probabilities, ops.log_softmax(inputs, axis=-1))


def tempered_softmax(logits, temperature):
    """softmax(logits / T), with the logits shifted by their row maximum before the
    division (the softmax does not change): a small T sends the others to -inf, their
    limit, instead of overflowing to inf - inf = NaN. -inf entries (masked classes) stay
    out of the division: XLA may multiply by 1 / T instead, which flushes to 0 above
    1 / float32-tiny, and -inf * 0 is NaN."""
    shifted = logits - ops.max(logits, axis=-1, keepdims=True, initial=-float("inf"))
    keep = shifted > -float("inf")
    scaled = ops.where(keep, ops.where(keep, shifted, 0.0) / temperature, -float("inf"))
    return ops.softmax(scaled, axis=-1)


def binary_logits(inputs):
    """log(max(p, 1e-12)) - log(max(1 - p, 1e-12)) of binary probabilities of class 1; a
    batch with a value outside [0, 1] (judged by the range alone) is logits already."""
    is_probability = _checks.looks_like_probabilities(inputs, binary=True)
    from_probabilities = (ops.log(ops.maximum(inputs, _EPS))
                          - ops.log(ops.maximum(1.0 - inputs, _EPS)))
    return ops.where(is_probability, from_probabilities, inputs)


def _is_binary(shape):
    """(N,) or (..., 1): one logit or probability of class 1 per row. A shape of unknown
    rank (a traced tensor without one) is read as (N, K)."""
    try:
        rank = len(shape)
    except (TypeError, ValueError):  # TensorFlow's shape of unknown rank has no length
        return False
    return rank < 2 or shape[-1] == 1


@keras.saving.register_keras_serializable(package="keras_smooth")
class TemperatureScaling(keras.layers.Layer):
    """Divide logits by a positive temperature held in a weight.

    The temperature is a non-trainable weight, so it is saved, loaded and
    exported with the model. Fit it with
    `keras_smooth.calibration.fit_temperature` (or the
    `keras_smooth.callbacks.TemperatureScalingCallback`) and set it with
    `set_temperature`.

    The arithmetic is done in float32 (float64 for float64 inputs), also under
    a `mixed_float16` or `mixed_bfloat16` policy: there the layer's dtype
    defaults to float32 (as for the final softmax of a mixed-precision model),
    so huge logits, small T and zero probabilities stay finite. Pass `dtype=`
    to choose the output dtype yourself.

    Formula:
        z = inputs                     (from_logits=True)
        z = log(max(inputs, 1e-12))    (from_logits=False: inputs are probabilities)
        output = z / T                 (softmax=False)
        output = softmax(z / T)        (softmax=True)

    With `from_logits=False`, a batch that is not probabilities (a value
    outside [0, 1], or a row not summing to 1 within 1e-3; within 4 roundoffs,
    2e-3 and 1.6e-2, for float16 and bfloat16 inputs) is taken for logits:
    z = log_softmax(inputs).

    Inputs of shape `(N,)` or with a last dimension of 1 are binary, as everywhere
    in the library: the logit or the probability of class 1, one per row (never a
    softmax across the batch). Then z is the logit (from
    probabilities, log(max(p, 1e-12)) - log(max(1 - p, 1e-12)); a batch with a
    value outside [0, 1] is taken for logits), and `softmax=True` gives
    sigmoid(z / T), the tempered probability of class 1 (the softmax of the
    two classes' logits [0, z] / T).

    Args:
        temperature: initial T > 0. Default 1.
        softmax: apply a softmax after scaling.
        from_logits: whether the inputs are logits (default) or probabilities.
        **kwargs: base layer arguments (`name`, `dtype`).

    Examples:
    >>> import numpy as np
    >>> from keras_smooth.layers import TemperatureScaling
    >>> layer = TemperatureScaling(temperature=2.0)
    >>> np.asarray(layer(np.array([[2.0, -4.0]], "float32"))).tolist()
    [[1.0, -2.0]]
    """

    def __init__(self, temperature=1.0, softmax=False, from_logits=True, **kwargs):
        if keras.config.dtype_policy().compute_dtype in ("float16", "bfloat16"):
            kwargs.setdefault("dtype", "float32")
        kwargs.setdefault("autocast", False)  # see the inputs' own dtype in `call`
        super().__init__(**kwargs)
        self.initial_temperature = check_temperature(temperature)
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
        self.temperature.assign(check_temperature(temperature))

    def call(self, inputs):
        input_dtype = keras.backend.standardize_dtype(inputs.dtype)
        dtype = "float64" if input_dtype == "float64" else "float32"
        x = ops.cast(inputs, dtype)
        binary = _is_binary(inputs.shape)
        if self.from_logits:
            logits = x
        elif binary:
            logits = binary_logits(x)
        else:
            logits = log_probabilities(x, input_dtype)
        t = ops.cast(self.temperature, dtype)
        if not self.softmax:
            outputs = logits / t
        elif binary:
            outputs = ops.sigmoid(logits / t)  # sigmoid(+-inf) is 1 or 0: no NaN
        else:
            outputs = tempered_softmax(logits, t)
        return ops.cast(outputs, self.compute_dtype)

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
