"""KerasTuner searches over the smoothing hyperparameters (ε, P1, P2, T, α).

Import explicitly (`from keras_smooth import tuning`): it needs keras-tuner.

- `hypermodels`: `LSHyperModel`, `ILSHyperModel`, `LLSHyperModel`,
  `LSPlusPlusHyperModel` for your own KerasTuner tuner and model function.
- `run_search`: the whole workflow (shared teacher, search, calibrated export).
- `distribute`: strategy names and the chief/worker role of a process.

Examples:
>>> import keras, keras_tuner, tempfile
>>> from keras_smooth import datasets, tuning
>>> data = datasets.load("gaussian", seed=0)
>>> def build(input_shape, num_classes):
...     return keras.Sequential([keras.Input(input_shape, name="features"),
...                              keras.layers.Dense(16, activation="relu"),
...                              keras.layers.Dense(num_classes)])
>>> hypermodel = tuning.LSHyperModel(build, data.input_shape, data.num_classes, ranges={"epsilon": [0.05, 0.1]})
>>> tuner = keras_tuner.GridSearch(hypermodel, objective=tuning.objective("val_nll"),
...                                directory=tempfile.mkdtemp(), project_name="ls")
>>> tuner.search(data.x_train, data.y_train, validation_data=(data.x_val, data.y_val), epochs=2, verbose=0)
>>> len(tuner.oracle.trials)
2
"""

from keras_smooth.tuning.distribute import STRATEGIES, resolve_strategy, tuner_role, wait_for_chief
from keras_smooth.tuning.hypermodels import (
    HYPERMODELS,
    ILSHyperModel,
    LLSHyperModel,
    LSHyperModel,
    LSPlusPlusHyperModel,
    SmoothingHyperModel,
    check_range,
    objective,
    resolve_ranges,
)
from keras_smooth.tuning.search import (
    METHODS,
    TUNERS,
    SearchResult,
    format_trials,
    make_tuner,
    run_search,
    trial_rows,
)

__all__ = [
    "HYPERMODELS",
    "ILSHyperModel",
    "LLSHyperModel",
    "LSHyperModel",
    "LSPlusPlusHyperModel",
    "METHODS",
    "STRATEGIES",
    "SearchResult",
    "SmoothingHyperModel",
    "TUNERS",
    "check_range",
    "format_trials",
    "make_tuner",
    "objective",
    "resolve_ranges",
    "resolve_strategy",
    "run_search",
    "trial_rows",
    "tuner_role",
    "wait_for_chief",
]
