"""Run the same grid search with one replica and with two; print both trial tables as JSON.

Run as a separate process: `two_cpus` splits the CPU into two logical
devices before TensorFlow initialises.
"""

import json
import sys

import two_cpus  # noqa: F401  (first: splits the CPU before TensorFlow starts)

import keras  # noqa: E402

from keras_smooth import datasets, tuning  # noqa: E402


def tiny(input_shape, num_classes):
    return keras.Sequential([keras.Input(input_shape), keras.layers.Dense(8, activation="relu"),
                             keras.layers.Dense(num_classes)])


data = datasets.load("gaussian", seed=0)
out = {}
for name in ("none", "mirrored"):
    result = tuning.run_search(sys.argv[2], data=data, build_model=tiny, tuner="grid", max_trials=None,
                               ranges={"alpha": [0.05, 0.3]} if sys.argv[2] != "ils" else {"p1": [0.75, 0.85],
                               "p2": 1.0, "temperature": 2.0}, epochs=6, batch_size=30, strategy=name,
                               directory=f"{sys.argv[1]}/{name}", export=False)
    strategy = result.tuner.distribution_strategy
    out[name] = {"replicas": 1 if strategy is None else strategy.num_replicas_in_sync,
                 "trials": result.trials, "best": result.best}
print(json.dumps(out))
