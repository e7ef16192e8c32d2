"""Load a SavedModel with plain TensorFlow and run its serving signature.

Reads {"name": batch} JSON on stdin, prints {"name": outputs} JSON. It never
imports keras_smooth (checked and reported), as a serving client would not.
"""

import json
import sys

import numpy as np
import tensorflow as tf

loaded = tf.saved_model.load(sys.argv[1])
serve = loaded.signatures["serving_default"]
(input_name,) = serve.structured_input_signature[1].keys()
out = {}
for name, batch in json.loads(sys.stdin.read()).items():
    result = serve(**{input_name: tf.constant(np.asarray(batch, "float32"))})
    out[name] = {key: value.numpy().tolist() for key, value in result.items()}
out["imports_keras_smooth"] = "keras_smooth" in sys.modules
print(json.dumps(out))
