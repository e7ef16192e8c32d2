"""Load SavedModels with plain TensorFlow and run their serving signatures.

It never imports keras_smooth (checked and reported), as a serving client
would not. Two ways to call it:

- `serving_client.py PATH`: stdin is `{"batch name": batch}`; stdout is
  `{"batch name": outputs, "signature": ..., "imports_keras_smooth": bool}`.
- `serving_client.py` (no argument): stdin is `{"path": {"batch name": batch}}`,
  one entry per SavedModel, all loaded in this one process; stdout is
  `{"path": {"batch name": outputs, "signature": ...}, "imports_keras_smooth": bool}`.

A batch is a nested list for a single-input signature, or `{"input name":
nested list}` to send inputs by name, as a REST or gRPC client does; it is
cast to the dtype the signature declares. `outputs` maps each output name to
its values as nested lists, and `dtypes` to its dtype name. `signature`
gives the input names with their shape and dtype, and the output dtypes.
"""

import json
import sys

import numpy as np
import tensorflow as tf


def _signature(serve):
    inputs = {
        name: {"shape": spec.shape.as_list(), "dtype": spec.dtype.name}
        for name, spec in serve.structured_input_signature[1].items()
    }
    outputs = {name: spec.dtype.name for name, spec in serve.structured_outputs.items()}
    return {"inputs": inputs, "outputs": outputs}


def _run(path, batches):
    serve = tf.saved_model.load(path).signatures["serving_default"]
    specs = serve.structured_input_signature[1]
    out = {"signature": _signature(serve)}
    for name, batch in batches.items():
        if not isinstance(batch, dict):
            (input_name,) = specs.keys()
            batch = {input_name: batch}
        feed = {key: tf.constant(np.asarray(value), specs[key].dtype)
                for key, value in batch.items()}
        result = serve(**feed)
        out[name] = {key: value.numpy().tolist() for key, value in result.items()}
        out[name]["dtypes"] = {key: value.dtype.name for key, value in result.items()}
    return out


def main():
    request = json.loads(sys.stdin.read())
    if len(sys.argv) > 1:
        out = _run(sys.argv[1], request)
    else:
        out = {path: _run(path, batches) for path, batches in request.items()}
    out["imports_keras_smooth"] = "keras_smooth" in sys.modules
    print(json.dumps(out))


main()
