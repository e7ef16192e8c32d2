"""Export a calibrated classifier as a TensorFlow SavedModel for TF Serving.

TensorFlow Serving loads `<model_base_path>/<version>/saved_model.pb`: export
to a numbered folder, e.g. `export_for_serving(model, "serving/my_model/1")`
and start the server with `--model_name=my_model
--model_base_path=/abs/path/serving/my_model`. A new version is a new folder
(`.../2`); the server picks the highest number. The REST request
`POST /v1/models/my_model:predict` with `{"instances": [...]}` then answers
with `logits` and calibrated `probabilities` for every instance.
"""

import keras

from keras_smooth import _checks
from keras_smooth.layers.temperature_scaling import TemperatureScaling


def _split_temperature(model, temperature, from_logits):
    """(base model, temperature, whether the base outputs logits) for `model`."""
    last = model.layers[-1] if getattr(model, "layers", None) else None
    inner = [layer for layer in getattr(model, "layers", [])[:-1] if isinstance(layer, TemperatureScaling)]
    if inner:
        raise ValueError(
            "`model` has a TemperatureScaling layer that is not its last layer; export "
            "the model without it and pass `temperature=` instead."
        )
    if isinstance(last, TemperatureScaling):
        base = keras.Model(model.inputs, last.input, name=f"{model.name}_logits")
        found = float(keras.ops.convert_to_numpy(last.temperature))
        return base, found if temperature is None else temperature, last.from_logits
    return model, 1.0 if temperature is None else temperature, from_logits


def export_for_serving(model, path, temperature=None, from_logits=True, input_signature=None):
    """Write a SavedModel whose `serving_default` returns calibrated probabilities.

    The signature takes the model's input with a dynamic batch size and returns
    a dict with `logits` (the model's raw logits), `probabilities`
    (`softmax(logits / T)`) and `temperature` (T, per example). T is stored
    as a variable in the SavedModel.

    Args:
        model: a built Keras model whose output is logits (or probabilities
            with `from_logits=False`; their logarithms are used as logits).
            If its last layer is a `TemperatureScaling` layer (as in
            `TemperatureScalingCallback.calibrated_model()`), that layer's
            temperature and `from_logits` are used and the outputs are taken
            before it.
        path: output folder (for TF Serving, `<base>/<version>`).
        temperature: T > 0; overrides the model's own. Default: the model's
            `TemperatureScaling` weight if present, else 1.
        from_logits: whether the model (without temperature) outputs logits.
        input_signature: optional list of `tf.TensorSpec` for models without
            `model.inputs` (subclassed models).

    Returns:
        the temperature used.

    Examples:
    >>> import keras, tempfile, os
    >>> from keras_smooth import export_for_serving
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> folder = os.path.join(tempfile.mkdtemp(), "my_model", "1")
    >>> export_for_serving(model, folder, temperature=1.5)
    1.5
    """
    import tensorflow as tf

    if keras.backend.backend() != "tensorflow":
        raise ValueError(
            "export_for_serving needs the TensorFlow backend (KERAS_BACKEND=tensorflow), "
            f"got {keras.backend.backend()!r}."
        )
    if temperature is not None:
        temperature = _checks.check_positive("temperature", temperature)
    base, temperature, from_logits = _split_temperature(model, temperature, from_logits)
    if input_signature is None:
        try:
            inputs = base.inputs
        except (AttributeError, ValueError):
            inputs = None
        if not inputs:
            raise ValueError(
                "`model` has no known inputs (a subclassed model?): pass "
                "`input_signature=[tf.TensorSpec((None, ...), dtype)]`."
            )
        input_signature = [
            tf.TensorSpec((None,) + tuple(t.shape[1:]), t.dtype, name=t.name.split(":")[0])
            for t in inputs
        ]
    scaler = TemperatureScaling(temperature, name="serving_temperature")

    def serve(*args):
        outputs = base(args[0] if len(args) == 1 else list(args), training=False)
        outputs = tf.cast(outputs, tf.float32)
        logits = outputs if from_logits else tf.math.log(tf.maximum(outputs, 1e-12))
        scaled = scaler(logits)
        return {
            "logits": logits,
            "probabilities": tf.nn.softmax(scaled, axis=-1),
            "temperature": tf.fill(tf.shape(logits)[:1], tf.cast(scaler.temperature, tf.float32)),
        }

    archive = keras.export.ExportArchive()
    archive.track(base)
    archive.track(scaler)
    archive.add_endpoint("serving_default", serve, input_signature=input_signature)
    archive.write_out(path, verbose=False)
    return temperature
