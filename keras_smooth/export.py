"""Export a calibrated classifier as a TensorFlow SavedModel for TF Serving.

TensorFlow Serving loads `<model_base_path>/<version>/saved_model.pb`: export
to a numbered folder, e.g. `export_for_serving(model, "serving/my_model/1")`
and start the server with `--model_name=my_model
--model_base_path=/abs/path/serving/my_model`. A new version is a new folder
(`.../2`); the server picks the highest number. The REST request
`POST /v1/models/my_model:predict` with `{"instances": [...]}` then answers
with `logits`, calibrated `probabilities` and `temperature` for every
instance.

The export folder is replaced whole: the SavedModel is written next to it and
moved in place, so no file of an earlier export survives. Refused (ValueError)
are: a non-empty folder that is not a SavedModel; a SavedModel folder holding
anything else (e.g. `assets.extra/`, which replacing would delete); a symbolic
link; the working directory or one of its parents; a file; an earlier export
with `overwrite=False`. Remote paths (`gs://...`) are written directly by
TensorFlow, without these checks.

Backends: TensorFlow, and JAX with TensorFlow installed (Keras converts the
JAX model with jax2tf; the SavedModel is the same kind and is served the same
way). torch is refused with a clear `ValueError`: Keras writes SavedModels
from torch only through `torch_xla`.
"""

import errno
import os
import re
import shutil
import tempfile

import keras
from keras import ops

from keras_smooth import _checks
from keras_smooth.layers.temperature_scaling import (
    TemperatureScaling,
    check_temperature,
    log_probabilities,
    tempered_softmax,
)

_AUTOMATIC_NAME = re.compile(r"keras_tensor(_\d+)?")  # Keras's name for an unnamed Input
_SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")


def model_inputs(model):
    """The symbolic inputs of `model` in their structure, or None when it has none.

    A single tensor, a list or a dict, as the model is called; None for a
    subclassed or unbuilt model.
    """
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        return None
    if not inputs:
        return None
    if isinstance(model, keras.Sequential):
        return inputs[0]  # `Sequential.input` is that of its first call, not its own Input
    return model.input  # a functional model's inputs as it was built (e.g. a dict)


def _split_temperature(model, temperature, from_logits):
    """(base model, temperature, whether the base outputs logits) for `model`."""
    layers = list(getattr(model, "layers", None) or [])
    if any(isinstance(layer, TemperatureScaling) for layer in layers[:-1]):
        raise ValueError(
            "`model` has a TemperatureScaling layer that is not its last layer; export "
            "the model without it and pass `temperature=` instead."
        )
    if not layers or not isinstance(layers[-1], TemperatureScaling):
        return model, 1.0 if temperature is None else temperature, from_logits
    last = layers[-1]
    inputs = model_inputs(model)
    if inputs is not None:
        base = keras.Model(inputs, last.input, name=f"{model.name}_logits")
    elif len(layers) == 2:  # Sequential([subclassed model, TemperatureScaling])
        base = layers[0]
    else:
        base = keras.Sequential(layers[:-1], name=f"{model.name}_logits")
    if temperature is None:
        try:
            temperature = check_temperature(keras.ops.convert_to_numpy(last.temperature))
        except ValueError as error:
            raise ValueError(
                f"the TemperatureScaling layer {last.name!r} of `model` holds a bad "
                f"temperature: {error} Set it with `set_temperature` or pass `temperature=`."
            ) from error
    return base, temperature, last.from_logits


def _serving_names(inputs):
    """One signature name per flattened input: dict keys, else the tensors' own names.

    Keras names an unnamed `Input` `keras_tensor_<N>` with N changing from run
    to run; such inputs are served as `inputs` (or `inputs_<i>`), stable names.
    """
    paths_and_tensors = keras.tree.flatten_with_path(inputs)
    names = []
    for i, (path, tensor) in enumerate(paths_and_tensors):
        name = path[-1] if path and isinstance(path[-1], str) else tensor.name
        if _AUTOMATIC_NAME.fullmatch(name):
            name = "inputs" if len(paths_and_tensors) == 1 else f"inputs_{i}"
        names.append(name)
    if len(set(names)) != len(names):
        raise ValueError(
            f"`model` has inputs with the same name: {names}; give them distinct names."
        )
    return names


def _signature(base, input_signature):
    """(list of named `tf.TensorSpec`, input structure to rebuild or None)."""
    import tensorflow as tf

    if not getattr(base, "built", False):
        raise ValueError(
            "`model` is not built: call it on a batch, or start it with `keras.Input`, "
            "before exporting."
        )
    if input_signature is not None:
        if hasattr(input_signature, "shape"):  # one spec
            input_signature = [input_signature]
        if not isinstance(input_signature, (list, tuple)) or not input_signature or not all(
                hasattr(s, "shape") and hasattr(s, "dtype") for s in input_signature):
            raise TypeError("`input_signature` must be a list of specs with a shape and a dtype "
                            f"(`tf.TensorSpec`, `keras.InputSpec`), got {input_signature!r}.")
        specs = list(input_signature)
        default = ["inputs"] if len(specs) == 1 else [f"inputs_{i}" for i in range(len(specs))]
        specs = [tf.TensorSpec(s.shape, s.dtype, name=getattr(s, "name", None) or d)
                 for s, d in zip(specs, default)]
        return specs, None
    inputs = model_inputs(base)
    if inputs is None:
        raise ValueError(
            "`model` has no known inputs (a subclassed model?): pass "
            "`input_signature=[tf.TensorSpec((None, ...), dtype)]`."
        )
    outputs = base.outputs
    _check_outputs(outputs[0] if len(outputs) == 1 else outputs)
    tensors = keras.tree.flatten(inputs)
    specs = [
        tf.TensorSpec((None,) + tuple(t.shape[1:]), t.dtype, name=name)
        for t, name in zip(tensors, _serving_names(inputs))
    ]
    return specs, inputs


def _check_outputs(outputs):
    """Refuse outputs that are not one `(batch, classes >= 2)` tensor."""
    if isinstance(outputs, (list, tuple, dict)):
        raise ValueError(
            f"`model` must have one output (logits or probabilities), got {len(outputs)}."
        )
    shape = tuple(d if isinstance(d, int) else None for d in outputs.shape)  # JAX: symbols
    if len(shape) != 2 or (shape[-1] is not None and shape[-1] < 2):
        raise ValueError(
            "`model` must output one value per class, shape (batch, classes >= 2), got "
            f"{shape}; a softmax over one class is always 1, and the served temperature "
            "is one per example."
        )


def _serving_function(base, structure, temperature, from_logits):
    """The `serve` function: float32 logits, probabilities and temperature.

    Written in `keras.ops`: on JAX, `ExportArchive` converts it to TensorFlow
    (jax2tf), so it must not call TensorFlow itself.
    """

    def serve(*args):
        if structure is None:
            inputs = args[0] if len(args) == 1 else list(args)
        else:
            inputs = keras.tree.pack_sequence_as(structure, list(args))
        outputs = base(inputs, training=False)
        _check_outputs(outputs)
        held = keras.backend.standardize_dtype(outputs.dtype)
        outputs = ops.cast(outputs, "float32")  # float16 under mixed precision
        logits = outputs if from_logits else log_probabilities(outputs, held)
        t = ops.cast(temperature, "float32")
        return {
            "logits": logits,
            "probabilities": tempered_softmax(logits, t),
            "temperature": ops.ones_like(logits[:, 0]) * t,
        }

    return serve


# What `tf.saved_model.save` writes; a folder holding only these may be replaced whole.
_SAVED_MODEL_ENTRIES = {"saved_model.pb", "saved_model.pbtxt", "variables", "assets",
                        "fingerprint.pb"}


def _is_saved_model(folder):
    return any(os.path.isfile(os.path.join(folder, name)) for name in _SAVED_MODEL_FILES)


def _check_path(path):
    try:
        path = os.fspath(path)
    except TypeError:
        raise TypeError(
            f"`path` must be a folder path (str or os.PathLike), got {path!r}."
        ) from None
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not path:
        raise ValueError("`path` must name a folder, got ''.")
    return path


def _check_not_working_directory(path):
    """The export replaces `path` whole: never the working directory or a folder above it."""
    cwd = os.getcwd()
    if os.path.commonpath([path, cwd]) == path:
        raise ValueError(
            f"`path` {path!r} is the working directory or holds it; the export replaces "
            "`path` whole, so give it a folder of its own, e.g. 'my_model/1'."
        )


def _check_target(path, overwrite):
    """Refuse a target that is a file or a folder we must not replace."""
    if not os.path.exists(path):
        return
    if not os.path.isdir(path):
        raise ValueError(
            f"`path` must be a folder to write the SavedModel into, got a file: {path!r}."
        )
    if os.path.islink(path):
        raise ValueError(f"`path` {path!r} is a symbolic link; export to the folder it names.")
    try:
        entries = os.listdir(path)
    except PermissionError as error:
        raise PermissionError(
            error.errno, f"cannot write the SavedModel to `path` {path!r}: it is not writable "
            f"({error.strerror})") from error
    if not entries:
        return
    if not _is_saved_model(path):
        raise ValueError(
            f"`path` {path!r} is a non-empty folder that is not a SavedModel; refusing to "
            "write into it. Export to a new or empty folder."
        )
    extra = sorted(set(entries) - _SAVED_MODEL_ENTRIES)
    if extra:  # e.g. assets.extra/ warm-up requests, notes: replacing would delete them
        raise ValueError(
            f"`path` {path!r} holds a SavedModel and other files ({', '.join(extra[:3])}"
            f"{', ...' if len(extra) > 3 else ''}) that replacing it would delete; move them "
            "or export to a new version folder."
        )
    if not overwrite:
        raise ValueError(
            f"`path` {path!r} already holds a SavedModel; pass `overwrite=True` to replace it."
        )


def _staging_folder(path):
    """A new empty hidden folder beside `path` (parents created); TF Serving skips it."""
    parent = os.path.dirname(path)
    try:
        os.makedirs(parent, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.export-", dir=parent)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o777 & ~umask)  # mkdtemp's 0700 would hide it from a server's user
        return staging
    except OSError as error:
        if error.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        raise PermissionError(
            error.errno,
            f"cannot write the SavedModel to `path` {path!r}: {parent!r} is not writable "
            f"({error.strerror})",
        ) from error


def _move_into_place(staging, path):
    """Swap the finished export in for `path`, so no file of an earlier one survives."""
    if not os.path.isdir(path):
        os.replace(staging, path)
        return
    old = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.old-", dir=os.path.dirname(path))
    os.replace(path, old)  # a rename within the folder: replaces the empty `old`
    os.replace(staging, path)
    shutil.rmtree(old, ignore_errors=True)


def _archive(base, specs, structure, temperature, from_logits):
    archive = keras.export.ExportArchive()
    archive.track(base)
    scaler = TemperatureScaling(temperature, name="serving_temperature")
    archive.track(scaler)  # T is a variable of the SavedModel
    serve = _serving_function(base, structure, scaler.temperature, from_logits)
    archive.add_endpoint("serving_default", serve, input_signature=specs,
                         **_endpoint_options())
    return archive


_EXPORT_BACKENDS = ("tensorflow", "jax")


def _check_backend():
    """SavedModels are written from TensorFlow, or from JAX through jax2tf (TF installed)."""
    backend = keras.backend.backend()
    if backend not in _EXPORT_BACKENDS:
        raise ValueError(
            "export_for_serving needs the TensorFlow or the JAX backend (KERAS_BACKEND="
            f"tensorflow or jax), got {backend!r}: Keras writes a SavedModel from {backend} "
            "only through torch_xla. Save the model (`model.save('m.keras')`), load it "
            "under KERAS_BACKEND=jax or tensorflow and export there."
        )


def _endpoint_options():
    """JAX: the endpoint is converted with jax2tf; serving needs no gradient of it."""
    if keras.backend.backend() == "jax":
        return {"jax2tf_kwargs": {"with_gradient": False}}
    return {}


def _destination(path, overwrite):
    """`path` checked as an export target (module docstring); local paths made absolute."""
    path = _check_path(path)
    if "://" in path:  # remote: TensorFlow writes it directly, unchecked
        return path
    path = os.path.abspath(path)
    _check_not_working_directory(path)
    _check_target(path, overwrite)
    return path


def _write(archive, path):
    """Write `archive` to `path`: beside it first, then moved in place (local paths)."""
    if "://" in path:
        archive.write_out(path, verbose=False)
        return
    staging = _staging_folder(path)
    try:
        archive.write_out(staging, verbose=False)
        _move_into_place(staging, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # left only when writing failed


def export_for_serving(model, path, temperature=None, from_logits=True, input_signature=None,
                       overwrite=True):
    """Write a SavedModel whose `serving_default` returns calibrated probabilities.

    The signature takes the model's inputs under their own names (an unnamed
    `keras.Input` is served as `inputs`, or `inputs_<i>`) with a dynamic batch
    size and returns float32 `logits`, `probabilities` (`softmax(logits / T)`,
    float32 also under mixed precision) and `temperature` (T, per example; a
    variable of the SavedModel). `path` is replaced whole, and refused where
    that would destroy something (see the module docstring).

    Args:
        model: a built Keras model with one `(batch, classes)` output of
            logits (or probabilities with `from_logits=False`: their logs,
            floored at 1e-12, are the logits; a batch that is not
            probabilities is taken for logits). A last `TemperatureScaling`
            layer (`TemperatureScalingCallback.calibrated_model()`) gives its
            temperature and `from_logits`; outputs are taken before it.
        path: output folder (for TF Serving, `<base>/<version>`).
        temperature: T > 0; overrides the model's own. Default: the model's
            `TemperatureScaling` weight if present, else 1.
        from_logits: whether the model (without temperature) outputs logits.
        input_signature: list of `tf.TensorSpec` for models without
            `model.inputs` (subclassed); unnamed specs are served as `inputs`.
        overwrite: replace an earlier SavedModel export in `path`.

    Returns:
        the temperature used.

    Raises:
        ValueError: bad arguments; a model not built, without known inputs,
            with several outputs or one column; a protected `path`; a backend
            other than TensorFlow or JAX.
        PermissionError: `path` cannot be written.

    Examples:
    >>> import keras, tempfile, os
    >>> from keras_smooth import export_for_serving
    >>> model = keras.Sequential([keras.Input((4,), name="features"), keras.layers.Dense(3)])
    >>> folder = os.path.join(tempfile.mkdtemp(), "my_model", "1")
    >>> export_for_serving(model, folder, temperature=1.5)
    1.5
    """
    _check_backend()
    temperature = None if temperature is None else check_temperature(temperature)
    from_logits = _checks.check_bool("from_logits", from_logits)
    path = _destination(path, _checks.check_bool("overwrite", overwrite))
    base, temperature, from_logits = _split_temperature(model, temperature, from_logits)
    specs, structure = _signature(base, input_signature)
    _write(_archive(base, specs, structure, temperature, from_logits), path)
    return temperature
