"""Evaluate the streaming calibration metrics under a two-replica MirroredStrategy.

Run as a separate process: the CPU is split into two logical devices before
TensorFlow initialises. Prints JSON with the metric results and the same
measures computed by the functions on all predictions.
"""

import json

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_smooth import calibration  # noqa: E402
from keras_smooth.metrics import ClasswiseECE, ExpectedCalibrationError  # noqa: E402

rng = np.random.default_rng(0)
x = rng.normal(size=(250, 5)).astype("float32")
y = rng.integers(0, 4, size=250).astype("int32")
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4)])
    model.compile(
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[ExpectedCalibrationError(from_logits=True), ClasswiseECE(4, from_logits=True)],
    )
results = model.evaluate(x, y, batch_size=40, verbose=0, return_dict=True)
logits = model.predict(x, verbose=0)
print(json.dumps({
    "replicas": strategy.num_replicas_in_sync,
    "metric_ece": float(results["ece"]),
    "metric_classwise_ece": float(results["classwise_ece"]),
    "ece": calibration.ece(y, logits, from_logits=True),
    "classwise_ece": calibration.classwise_ece(y, logits, from_logits=True),
}))
