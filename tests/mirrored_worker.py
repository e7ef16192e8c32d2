"""Train the same model with 1 and 2 replicas; print the learned matrices as JSON.

Run as a separate process: `two_cpus` splits the CPU into two logical
devices before TensorFlow initialises.
"""

import json

import two_cpus  # noqa: F401  (first: splits the CPU before TensorFlow starts)
import tensorflow as tf  # noqa: E402

import keras  # noqa: E402

from keras_smooth import losses  # noqa: E402
from keras_smooth.datasets import gaussian_task  # noqa: E402


def train(strategy, cls):
    x, y, _ = gaussian_task(64, seed=0)
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = keras.Sequential(
            [keras.Input((2,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(3)]
        )
        loss = cls(3, alpha=0.2)
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss)
    initial = loss.matrix.tolist()
    model.fit(x, y, epochs=2, batch_size=32, shuffle=False, verbose=0)
    return initial, loss.matrix.tolist()


two = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
out = {"replicas": two.num_replicas_in_sync}
for name, cls in (("lls", losses.LLSLoss), ("lspp", losses.LSPlusPlusLoss)):
    initial, one = train(tf.distribute.get_strategy(), cls)
    _, both = train(two, cls)
    out[name] = {"initial": initial, "one": one, "two": both}
print(json.dumps(out))
