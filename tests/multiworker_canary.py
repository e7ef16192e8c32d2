"""One task of a two-process MultiWorkerMirroredStrategy cluster on 127.0.0.1 fitting a plain Keras model.

argv: task index, port of task 0, port of task 1. Prints "FIT OK" or the error.
"""

import json
import os
import sys

index, ports = int(sys.argv[1]), sys.argv[2:4]
os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                                      "task": {"type": "worker", "index": index}})

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

strategy = tf.distribute.MultiWorkerMirroredStrategy()
x = np.random.default_rng(0).normal(size=(128, 2)).astype("float32")
y = (x[:, 0] > 0).astype("int32")
with strategy.scope():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(4), keras.layers.Dense(2)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
print("replicas", strategy.num_replicas_in_sync, flush=True)
try:
    model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(32), epochs=1, verbose=0)
except Exception as error:  # report, do not hide: the test reads this line
    print("FIT FAILED", type(error).__name__, str(error).splitlines()[0][:200], flush=True)
else:
    print("FIT OK", flush=True)
