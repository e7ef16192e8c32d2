"""KerasTuner searches over the hyperparameters of any method of the registry.

Import explicitly (`from keras_smooth import tuning`): it needs keras-tuner.

- `MethodHyperModel(method, build_model, input_shape, num_classes)`: one
  hypermodel for every method with something to tune
  (`tunable_methods()`), built-in or your own `keras_smooth.methods.Method`,
  for your own KerasTuner tuner. `LSHyperModel`, `ILSHyperModel`,
  `LLSHyperModel` and `LSPlusPlusHyperModel` are kept for existing code.
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
>>> hypermodel = tuning.MethodHyperModel("ls", build, data.input_shape, data.num_classes,
...                                      ranges={"epsilon": [0.05, 0.1]})
>>> tuner = keras_tuner.GridSearch(hypermodel, objective=tuning.objective("val_nll"),
...                                directory=tempfile.mkdtemp(), project_name="ls")
>>> tuner.search(data.x_train, data.y_train, validation_data=(data.x_val, data.y_val),
...              epochs=2, verbose=0)
>>> sorted(t.hyperparameters.get("epsilon") for t in tuner.oracle.trials.values())
[0.05, 0.1]
"""

from keras_smooth.tuning.distribute import (
    STRATEGIES,
    resolve_strategy,
    tuner_role,
    wait_for_chief,
)
from keras_smooth.tuning.hypermodels import (
    ILSHyperModel,
    LLSHyperModel,
    LSHyperModel,
    LSPlusPlusHyperModel,
    MethodHyperModel,
    SmoothingHyperModel,
    check_range,
    objective,
    resolve_ranges,
)
from keras_smooth.tuning.search import (
    TUNERS,
    SearchResult,
    format_trials,
    make_tuner,
    resolve_tunable,
    run_search,
    trial_rows,
    tunable_methods,
)

__all__ = [
    "ILSHyperModel",
    "LLSHyperModel",
    "LSHyperModel",
    "LSPlusPlusHyperModel",
    "MethodHyperModel",
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
    "resolve_tunable",
    "run_search",
    "trial_rows",
    "tunable_methods",
    "tuner_role",
    "wait_for_chief",
]
