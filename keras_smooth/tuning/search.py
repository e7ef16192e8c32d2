"""A resumable KerasTuner search for one method of the registry, from data to a served model.

`run_search` does, in order:

1. validate every argument and the search folder (nothing is written before);
2. if the method needs the teacher (`Method.needs_teacher`: ILS, Dis, Beta,
   ...): train it without smoothing, fit its temperature T* and compute its
   logits **once** (cached in `directory/cache`, shared by every trial, every
   re-run and every tuner process using the folder);
3. run the KerasTuner search (`directory/search/`): each trial builds the
   user's model, trains it with the trial's hyperparameters under the chosen
   strategy (`tf.distribute` on TensorFlow, `keras.distribution` on JAX) and is
   scored by validation NLL (or ECE);
4. on the chief (or a lone process): reload the best trial's weights (or
   refit them), fit a temperature on the validation split, evaluate on the
   test split, export a SavedModel for TF Serving and write `best.json` and
   `trials.csv`.

Re-running with the same folder resumes: KerasTuner keeps completed trials and
reruns the trial that was in flight when the process stopped. A folder holding
a search with other settings (another method, a changed definition of your
own method, another data set, tuner, ...) is refused.
"""

import collections
import csv
import dataclasses
import glob
import json
import os
import time
import warnings

import keras
import keras_tuner
import numpy as np

from keras_smooth import _io, calibration, methods
from keras_smooth import datasets as datasets_module
from keras_smooth.models import default_model
from keras_smooth.tuning import distribute
from keras_smooth.tuning.hypermodels import MethodHyperModel, resolve_ranges
from keras_smooth.tuning.hypermodels import objective as make_objective
from keras_smooth import _arguments as check
from keras_smooth._io import describe_error
from keras_smooth.training.protocol import resolve as resolve_protocol
from keras_smooth.training.teacher import teacher_trainings, train_teacher

TUNERS = {
    "random": keras_tuner.RandomSearch,
    "grid": keras_tuner.GridSearch,
    "bayesian": keras_tuner.BayesianOptimization,
    "hyperband": keras_tuner.Hyperband,
}
PROJECT = "search"


def tunable_methods():
    """Names of the registered methods with something to tune (`Method.tunable`)."""
    return tuple(name for name in methods.names() if methods.get(name).tunable)


def _why_not_tunable(method):
    if method.temperature_of is not None:
        return (f"it adds a fitted temperature to {method.temperature_of!r}; "
                f"tune {method.temperature_of!r} instead")
    if not method.params:
        return "it defines none"
    return "each one has a single value"


def resolve_tunable(method):
    """The Method to search, from a Method, a registered name or `module:attribute`.

    Raises:
        ValueError: for an unknown name (listing the tunable ones) or a method
            with no hyperparameter to tune (No LS, the "+ TempS" rows).
    """
    if isinstance(method, str) and ":" not in method and method not in methods.names():
        raise ValueError(f"Unknown method {method!r}; tunable methods: "
                         f"{', '.join(tunable_methods())} (or module:attribute for your own).")
    found = methods.resolve(method)
    if not found.tunable:
        raise ValueError(f"method {found.name!r} ({found.label}) has no hyperparameters to tune "
                         f"({_why_not_tunable(found)}).")
    return found


class _EpochReport(keras.callbacks.Callback):
    """Reports `{"event": "epoch", ...}` of the running trial to the tuner's `report`.

    KerasTuner deep-copies the callbacks of every trial; this one holds no state
    of its own and is shared instead (a copy would copy the report's stream).
    """

    def __init__(self, tuner):
        super().__init__()
        self.tuner = tuner

    def __deepcopy__(self, memo):
        return self

    def on_epoch_end(self, epoch, logs=None):
        self.tuner.report({"event": "epoch", "trial_id": self.tuner.current_trial,
                           "epoch": epoch + 1, "epochs": self.params.get("epochs", 0)})


class _TrialLog:
    """Mixed into a KerasTuner tuner: remembers the trials this process ran and reports them."""

    current_trial = None

    def _configure_tensorboard_dir(self, callbacks, trial, execution=0):
        """KerasTuner's per-trial TensorBoard folder (TF backend; here on every backend), and the
        same folder for the CalibrationLogger that writes into that run."""
        from keras_smooth.callbacks import CalibrationLogger

        if keras.backend.backend() == "tensorflow":
            super()._configure_tensorboard_dir(callbacks, trial, execution)
        else:
            for callback in callbacks:
                if isinstance(callback, keras.callbacks.TensorBoard):
                    callback.log_dir = os.path.join(callback.log_dir, str(trial.trial_id),
                                                    f"execution{execution}")
        runs = [c.log_dir for c in callbacks if isinstance(c, keras.callbacks.TensorBoard)]
        for callback in callbacks:
            if isinstance(callback, CalibrationLogger) and callback.tensorboard_dir and runs:
                callback.tensorboard_dir = runs[0]

    def on_trial_begin(self, trial):
        super().on_trial_begin(trial)
        self.current_trial = trial.trial_id
        self.report({"event": "trial_begin", "trial_id": trial.trial_id,
                     "values": _values(trial)})

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        self.trials_run.append(trial.trial_id)
        self.report({"event": "trial_end", **_row(trial)})


def _values(trial):
    return {k: v for k, v in trial.hyperparameters.values.items() if not k.startswith("tuner/")}


def _metric(trial, name):
    try:
        value = trial.metrics.get_last_value(name)
    except (KeyError, ValueError):
        return None
    return None if value is None else float(value)


def _row(trial):
    row = {"trial_id": trial.trial_id, "status": str(trial.status), "values": _values(trial),
           "val_nll": _metric(trial, "val_nll"), "val_ece": _metric(trial, "val_ece")}
    if trial.message:  # a failed trial: the last line of its traceback says why
        row["error"] = trial.message.strip().splitlines()[-1]
    return row


def _check_budget(tuner, max_trials):
    """Refuse a trial budget the tuner cannot use."""
    if tuner == "hyperband" and max_trials is not None:
        raise ValueError("the hyperband tuner sets its own number of trials from `epochs` (its "
                         f"max_epochs) and factor 3; pass max_trials=None, not {max_trials!r}.")
    if tuner in ("random", "bayesian") and max_trials is None:
        raise ValueError(f"the {tuner} tuner needs `max_trials`.")


def _check_tuner_settings(name, objective, max_trials, executions_per_trial):
    """The tuner's own settings, checked alike by `make_tuner` and `run_search`; returns the
    normalised `(max_trials, executions_per_trial)`."""
    if not isinstance(name, str) or name not in TUNERS:
        raise ValueError(f"Unknown tuner {name!r}; choose from: {', '.join(TUNERS)}.")
    make_objective(objective)
    max_trials = check.positive_int("max_trials", max_trials, allow_none=True)
    executions_per_trial = check.positive_int("executions_per_trial", executions_per_trial)
    _check_budget(name, max_trials)
    return max_trials, executions_per_trial


def _check_distribution_strategy(strategy):
    """None or a `tf.distribute.Strategy`, what KerasTuner's `distribution_strategy` takes."""
    if strategy is None:
        return None
    import tensorflow as tf

    if not isinstance(strategy, tf.distribute.Strategy):
        raise TypeError("`distribution_strategy` must be a tf.distribute.Strategy or None (turn "
                        "a name such as 'mirrored' into one with "
                        f"keras_smooth.tuning.resolve_strategy), got {strategy!r}.")
    return strategy


def make_tuner(name, hypermodel, *, objective="val_nll", max_trials=10, epochs=60, seed=0,
               directory, distribution_strategy=None, executions_per_trial=1, progress=None):
    """A KerasTuner tuner by name ("random", "grid", "bayesian", "hyperband") over `hypermodel`.

    `max_trials` caps random, grid (None: the whole grid) and Bayesian
    searches; Hyperband sets its trials from `epochs` (its `max_epochs`) and
    factor 3, and refuses an explicit `max_trials`. Every argument is checked
    by `run_search`'s rules (a `ValueError`/`TypeError` naming it).
    """
    max_trials, executions_per_trial = _check_tuner_settings(name, objective, max_trials,
                                                             executions_per_trial)
    epochs = check.positive_int("epochs", epochs)
    seed = check.seed("seed", seed)
    directory = check.output_folder("directory", directory)
    check.callable_or_none("progress", progress)
    distribution_strategy = _check_distribution_strategy(distribution_strategy)
    base = TUNERS[name]
    cls = type(base.__name__, (_TrialLog, base), {})
    common = dict(hypermodel=hypermodel, objective=make_objective(objective), seed=seed,
                  directory=directory, project_name=PROJECT,
                  distribution_strategy=distribution_strategy,
                  executions_per_trial=executions_per_trial, overwrite=False)
    if name == "hyperband":
        tuner = cls(max_epochs=epochs, factor=3, **common)
    else:
        tuner = cls(max_trials=max_trials, **common)
    tuner.trials_run = []
    tuner.report = progress or (lambda event: None)
    return tuner


@dataclasses.dataclass
class SearchResult:
    """What `run_search` did: the role of this process, the trials, the best model's record."""

    role: str
    directory: str
    trials: list
    trials_run: list
    best: dict = None
    teacher: object = None
    tuner: object = None


# --- checks before anything is written -----------------------------------------------------


def _read_json(path, recover):
    """A JSON object from `path`; if damaged, a one-line `ValueError` naming it and `recover`."""
    try:
        with open(path) as f:
            stored = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        reason = getattr(error, "strerror", None) or str(error).splitlines()[0]
        raise ValueError(f"{path} cannot be read ({reason}); {recover}") from None
    if not isinstance(stored, dict):
        raise ValueError(f"{path} does not hold a JSON object; {recover}")
    return stored


_STATE_KEYS = {"trial.json": ("trial_id", "hyperparameters", "metrics", "status"),
               "oracle.json": ("ongoing_trials", "hyperparameters", "tried_so_far", "id_to_hash")}


def _check_tuner_state(directory):
    """Refuse damaged KerasTuner state (oracle.json, tuner0.json, trial.json) before reloading."""
    project = os.path.join(directory, PROJECT)
    recover = (f"the search cannot be resumed from it: remove {project} to start the search "
               "again (search.json and the teacher cache are kept), or use another --directory")
    paths = glob.glob(os.path.join(glob.escape(project), "*.json"))
    paths += glob.glob(os.path.join(glob.escape(project), "trial_*", "*.json"))
    for path in sorted(paths):
        stored = _read_json(path, recover)
        missing = [k for k in _STATE_KEYS.get(os.path.basename(path), ()) if k not in stored]
        if missing:
            raise ValueError(f"{path} lacks {', '.join(missing)}; {recover}")
    return recover


def _check_settings(directory, settings):
    """Refuse a folder that holds a search with other settings; return whether one exists."""
    path = os.path.join(directory, "search.json")
    if not os.path.exists(path):
        if os.path.isdir(os.path.join(directory, PROJECT)):
            raise ValueError(f"{directory} holds a search without search.json; use another "
                             "directory.")
        return False
    stored = _read_json(path, f"remove it and {os.path.join(directory, PROJECT)} to start the "
                              "search again, or use another directory")
    if stored.get("method") != settings["method"]:
        raise ValueError(f"{directory} holds a search of method {stored.get('method')!r}, not "
                         f"{settings['method']!r}; use another directory or remove it.")
    changed = sorted(k for k in settings if stored.get(k) != settings[k])
    if changed:
        raise ValueError(f"{directory} holds a {settings['method']} search with other settings "
                         f"({', '.join(changed)}); use another directory or remove it.")
    return True


def _function_name(fn):
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def _check_arguments(dataset, data, directory, seed, chief_timeout, build_model,
                     progress, dataset_options):
    """The checks of `run_search`'s other arguments; nothing touches the disk."""
    if dataset_options is not None and not isinstance(dataset_options, dict):
        raise TypeError(f"`dataset_options` must be a dict or None, got {dataset_options!r}.")
    if data is None:
        datasets_module.check_name(dataset)
    elif not isinstance(data, datasets_module.ClassificationData):
        raise TypeError("`data` must be a keras_smooth.datasets.ClassificationData or None, "
                        f"got {data!r}.")
    check.output_folder("directory", directory)
    check.seed("seed", seed)
    check.positive_seconds("chief_timeout", chief_timeout)
    if not callable(build_model):
        raise TypeError(f"`build_model` must be callable, got {build_model!r}.")
    check.callable_or_none("progress", progress)


def _default_grid(dataset):
    """The grid the grid tuner searches when none is given: the ILS paper's for the task."""
    return "synthetic" if dataset == "gaussian" else "paper"


def _search_space(method, tuner, grid, ranges, dataset):
    """(grid, validated space): the method's ranges, or a grid's values for the grid tuner."""
    if grid is None and tuner == "grid":
        grid = _default_grid(dataset)
    space = resolve_ranges(method, ranges, grid)
    if tuner == "grid" and any(isinstance(s, dict) and "step" not in s for s in space.values()):
        raise ValueError("the grid tuner needs listed values (or min/max with a step) for every "
                         "hyperparameter.")
    return grid, space


@dataclasses.dataclass
class _Plan:
    """A search whose every argument was checked; nothing was written yet."""

    method: object
    data: object
    build_model: object
    tuner: str
    max_trials: object
    strategy: object
    directory: str
    space: dict
    settings: dict
    role: str
    recover: str
    resuming: bool
    chief_timeout: float
    export: bool
    report: object
    tensorboard: str = None


def _settings(method, grid, space, data, dataset, build_model, **fixed):
    """What search.json records: a folder with other settings is refused."""
    return {
        "method": method.name, "fingerprint": method.fingerprint(grid or "small"),
        "dataset": dataset, "data": data.fingerprint(),
        "ranges": {k: list(v) if isinstance(v, tuple) else v for k, v in space.items()},
        **fixed, "model": _function_name(build_model), "backend": keras.backend.backend(),
    }


def _check_divisible(strategy, data, batch_size):
    """JAX data parallelism splits every batch evenly between the devices: refuse sizes it cannot.

    Keras's `DataParallel` fails deep inside `fit`/`predict` on a batch whose rows do not
    divide among the devices; a batch size and split sizes that are multiples of the device
    count leave no such batch.
    """
    if strategy is None or _tf_strategy(strategy) is not None:
        return
    devices = len(strategy.device_mesh.devices.flatten())
    sizes = {"batch_size": batch_size, "training rows": len(data.x_train),
             "validation rows": len(data.x_val), "test rows": len(data.x_test)}
    bad = {name: size for name, size in sizes.items() if size % devices}
    if bad:
        raise ValueError(f"data parallelism over {devices} devices (keras.distribution."
                         f"{type(strategy).__name__}, JAX) splits every batch evenly between "
                         "them, so the batch size and the split sizes must be multiples of "
                         f"{devices}; got " + ", ".join(f"{k} {v}" for k, v in bad.items())
                         + ". Change --batch-size or the data, or use strategy 'none'.")


def _plan(method, *, dataset, data, build_model, tuner, max_trials, strategy, directory,
          objective, grid, ranges, epochs, batch_size, seed, learning_rate,
          executions_per_trial, dataset_options, chief_timeout, export, progress, protocol,
          tensorboard=None):
    """Check every argument of `run_search` and the folder, and load the data; write nothing."""
    method = resolve_tunable(method)
    max_trials, executions_per_trial = _check_tuner_settings(tuner, objective, max_trials,
                                                             executions_per_trial)
    _check_arguments(dataset, data, directory, seed, chief_timeout, build_model,
                     progress, dataset_options)
    if tensorboard is not None:
        tensorboard = check.output_folder("tensorboard", tensorboard)
    dataset = dataset if data is None else data.name
    protocol = resolve_protocol(dataset, protocol, epochs=epochs, batch_size=batch_size,
                                learning_rate=learning_rate)
    grid, space = _search_space(method, tuner, grid, ranges, dataset)
    role = distribute.tuner_role()
    resolved_strategy = distribute.resolve_strategy(strategy)
    if data is None:
        data = datasets_module.load(dataset, seed=seed, **(dataset_options or {}))
    settings = _settings(method, grid, space, data, dataset, build_model, tuner=tuner,
                         objective=objective, epochs=protocol.max_epochs,
                         batch_size=protocol.batch_rows(len(data.x_train)),
                         executions_per_trial=executions_per_trial, seed=int(seed),
                         learning_rate=protocol.learning_rate, patience=protocol.patience,
                         training=protocol.as_dict())
    _check_divisible(resolved_strategy, data, settings["batch_size"])
    resuming = _check_settings(directory, settings)
    # The chief (or a lone process) reloads the search state; a worker asks the chief's oracle
    # and must not read files the chief may be writing.
    recover = _check_tuner_state(directory) if role != "worker" else "use another --directory"
    return _Plan(method, data, build_model, tuner, max_trials, resolved_strategy, directory,
                 space, settings, role, recover, resuming, float(chief_timeout), bool(export),
                 progress or (lambda event: None), tensorboard)


# --- the search ------------------------------------------------------------------------------


def _open_folder(plan):
    """Wait for the chief (on a worker), then create the folder and write search.json."""
    if plan.role == "worker":
        plan.report({"event": "waiting_for_chief"})
        distribute.wait_for_chief(plan.chief_timeout)
    # Everything is valid: from here on the folder is written.
    try:
        os.makedirs(plan.directory, exist_ok=True)
    except OSError as error:
        raise ValueError(f"cannot create the search directory {plan.directory}: "
                         f"{error.strerror}") from None
    if not os.access(plan.directory, os.W_OK):
        raise ValueError(f"the search directory {plan.directory} is not writable")
    path = os.path.join(plan.directory, "search.json")
    if plan.role != "worker" or not os.path.exists(path):
        _io.write_json(path, plan.settings)
    plan.report({"event": "start", "role": plan.role, "resuming": plan.resuming,
                 "settings": plan.settings})


def _shared_teacher(plan):
    """The teacher of a method that needs one, trained once and cached in the folder."""
    if not plan.method.needs_teacher:
        return None
    settings = plan.settings
    started = time.perf_counter()
    teacher = train_teacher(plan.build_model, plan.data, epochs=settings["epochs"],
                            batch_size=settings["batch_size"], seed=settings["seed"],
                            learning_rate=settings["learning_rate"],
                            patience=settings["patience"],
                            cache_dir=os.path.join(plan.directory, "cache"))
    plan.report({"event": "teacher", "from_cache": teacher.from_cache,
                 "temperature": teacher.temperature, "val_nll": teacher.val_nll,
                 "seconds": time.perf_counter() - started})
    return teacher


def _hypermodel(plan, teacher):
    data = plan.data
    return MethodHyperModel(
        plan.method, plan.build_model, data.input_shape, data.num_classes, ranges=plan.space,
        teacher_logits=None if teacher is None else teacher.logits["train"],
        calibration_temperature=1.0 if teacher is None else teacher.temperature,
        x_train=data.x_train, y_train=data.y_train,
        learning_rate=plan.settings["learning_rate"], seed=plan.settings["seed"],
        patience=plan.settings["patience"],
        distribution=None if _tf_strategy(plan.strategy) is not None else plan.strategy)


def _open_tuner(plan, hypermodel):
    """The tuner over the folder; one clear error if KerasTuner cannot reload its state."""
    settings = plan.settings
    project = os.path.join(plan.directory, PROJECT)
    reloading = os.path.isdir(project) and bool(os.listdir(project))  # before KerasTuner writes
    try:
        return make_tuner(plan.tuner, hypermodel, objective=settings["objective"],
                          max_trials=plan.max_trials, epochs=settings["epochs"],
                          seed=settings["seed"], directory=plan.directory,
                          distribution_strategy=_tf_strategy(plan.strategy),
                          executions_per_trial=settings["executions_per_trial"],
                          progress=plan.report)
    except (KeyError, RuntimeError, TypeError, ValueError) as error:  # state it cannot reload
        if not reloading:  # a new search: the error is the method's or the settings', not state
            raise
        raise ValueError(f"KerasTuner cannot reload the search in {project} "
                         f"({describe_error(error)}); {plan.recover}") from None


def _tf_strategy(strategy):
    """The strategy KerasTuner applies itself: a `tf.distribute` one (TensorFlow only)."""
    jax_kinds = (keras.distribution.DataParallel, keras.distribution.ModelParallel)
    return None if isinstance(strategy, jax_kinds) else strategy


def _run(plan):
    _open_folder(plan)
    teacher = _shared_teacher(plan)
    hypermodel = _hypermodel(plan, teacher)
    search = _open_tuner(plan, hypermodel)
    data, settings = plan.data, plan.settings
    callbacks = [_EpochReport(search)]
    if plan.tensorboard is not None:  # one run per trial: see _TrialLog._configure_tensorboard_dir
        from keras_smooth.callbacks import tensorboard_run

        callbacks += tensorboard_run(plan.tensorboard, (data.x_val, data.y_val))
    search.search(data.x_train, data.y_train, validation_data=(data.x_val, data.y_val),
                  epochs=settings["epochs"], batch_size=settings["batch_size"], verbose=0,
                  callbacks=callbacks)
    return _results(plan, search, hypermodel, teacher)


def _results(plan, search, hypermodel, teacher):
    result = SearchResult(plan.role, plan.directory, [], list(search.trials_run),
                          teacher=teacher, tuner=search)
    if plan.role != "worker":
        result.trials = trial_rows(search)
        _write_trials_csv(os.path.join(plan.directory, "trials.csv"), result.trials)
        result.best = _finish(plan, search, hypermodel, result.trials, teacher)
    return result


def run_search(method="ils", *, dataset="gaussian", data=None, build_model=default_model,
               tuner="random", max_trials=10, strategy="auto",
               directory=os.path.join("runs", "tune"), objective="val_nll", grid=None,
               ranges=None, epochs=None, batch_size=None, seed=0, learning_rate=None,
               executions_per_trial=1, dataset_options=None, chief_timeout=300.0, export=True,
               progress=None, protocol=None, tensorboard=None):
    """Search one method's hyperparameters with KerasTuner; export the calibrated best model.

    Args:
        method: a `keras_smooth.methods.Method`, a registered name with
            something to tune (`keras_smooth.tuning.tunable_methods()`) or
            `module:attribute` naming your own Method.
        dataset: a name for `keras_smooth.datasets.load` (ignored if `data`).
        data: a `ClassificationData` to use instead of `dataset`.
        build_model: `build_model(input_shape, num_classes)` -> uncompiled
            model with logit outputs; the students and (if needed) the teacher.
        tuner: "random", "grid", "bayesian" or "hyperband".
        max_trials: trials for random/grid/Bayesian (grid: None = whole grid);
            must be None for hyperband.
        strategy: "auto", "mirrored", "none" (see
            `keras_smooth.tuning.distribute.resolve_strategy`: `tf.distribute`
            on TensorFlow, `keras.distribution.DataParallel` on JAX, refused
            on torch), a `tf.distribute.Strategy` (TensorFlow) or a
            `keras.distribution.DataParallel` (JAX).
        directory: the search folder; a re-run with the same folder resumes.
        objective: "val_nll" (default) or "val_ece", both minimised.
        grid: None to search the method's tuning ranges (`Method.search_space`),
            or a grid name whose values are searched; the grid tuner defaults
            to "synthetic" on the gaussian task and "paper" otherwise.
        ranges: search-space overrides per hyperparameter (see
            `keras_smooth.tuning.hypermodels`).
        epochs, batch_size, learning_rate: when given, replace the training
            protocol's maximum epochs (Hyperband's `max_epochs`), batch size
            (an integer or "full") and Adam learning rate.
        seed: seeds the data split, the models and the tuner.
        protocol: the `keras_smooth.training.TrainingProtocol` of the teacher
            and every trial (default None: the data set's,
            `keras_smooth.training.protocol_for`; on "gaussian" the ILS
            paper's appendix A protocol with early stopping). search.json
            records it under `training`.
        chief_timeout: seconds a worker waits for its chief.
        export: write the calibrated best model as a SavedModel.
        progress: optional `progress(event: dict)` callable; besides the
            trial events it receives `{"event": "epoch", "trial_id", "epoch",
            "epochs"}` after every epoch.
        tensorboard: optional folder for TensorBoard: one run per trial,
            `tensorboard/TRIAL_ID/execution0` (KerasTuner's layout), as
            `keras_smooth.callbacks.tensorboard_run` writes it.

    Returns:
        `SearchResult`. On a worker, `best` is None (the chief writes it).
    """
    plan = _plan(method, dataset=dataset, data=data, build_model=build_model, tuner=tuner,
                 max_trials=max_trials, strategy=strategy, directory=directory,
                 objective=objective, grid=grid, ranges=ranges, epochs=epochs,
                 batch_size=batch_size, seed=seed, learning_rate=learning_rate,
                 executions_per_trial=executions_per_trial, dataset_options=dataset_options,
                 chief_timeout=chief_timeout, export=export, progress=progress, protocol=protocol,
                 tensorboard=tensorboard)
    return _run(plan)


# --- trials and the best model --------------------------------------------------------------


def trial_rows(tuner):
    """One dict per trial (id, status, hyperparameters, val_nll, val_ece), in trial order."""
    return [_row(t) for _, t in sorted(tuner.oracle.trials.items())]


def format_trials(rows, objective="val_nll", width=None):
    """The trial table as text; `*` marks the best trial by `objective`.

    With `width` (a number of columns), hyperparameter columns are as wide as
    their names and values need; when whole names would not fit `width`, names
    longer than 10 characters are cut with a "~" (e.g. "temperatu~").
    """
    make_objective(objective)
    width = check.positive_int("width", width, allow_none=True)
    names = sorted({k for r in rows for k in r["values"]})
    if width is not None:
        return _narrow_trials(rows, objective, names, width)
    scored = [r for r in rows if r[objective] is not None]
    best = min(scored, key=lambda r: r[objective])["trial_id"] if scored else None
    header = (f"{'trial':>6s} {'status':>10s}" + "".join(f"{n:>13s}" for n in names)
              + f"{'val NLL':>10s}{'val ECE':>10s}")
    lines = [header, "-" * len(header)]
    for r in rows:
        cells = "".join(f"{r['values'].get(n, float('nan')):13.4g}" for n in names)
        nll = "" if r["val_nll"] is None else f"{r['val_nll']:.4f}"
        ece = "" if r["val_ece"] is None else f"{r['val_ece']:.4f}"
        mark = " *" if r["trial_id"] == best else ""
        lines.append(f"{r['trial_id']:>6s} {r['status']:>10s}{cells}{nll:>10s}{ece:>10s}{mark}")
    return "\n".join(lines)


def _narrow_trials(rows, objective, names, width):
    scored = [r for r in rows if r[objective] is not None]
    best = min(scored, key=lambda r: r[objective])["trial_id"] if scored else None
    status = max([len("status")] + [len(r["status"]) for r in rows]) + 1
    full = 6 + status + sum(max(len(n), 9) + 1 for n in names) + 18 + 2  # " *" of the best
    titles = {n: n if len(n) <= 10 or full <= width else n[:9] + "~" for n in names}
    sizes = {n: max(len(titles[n]), 9) + 1 for n in names}
    header = (f"{'trial':>6s}{'status':>{status}s}"
              + "".join(f"{titles[n]:>{sizes[n]}s}" for n in names) + f"{'val NLL':>9s}"
              + f"{'val ECE':>9s}")
    lines = [header, "-" * min(len(header), width)]
    for r in rows:
        cells = "".join(f"{r['values'].get(n, float('nan')):{sizes[n]}.4g}" for n in names)
        nll = "" if r["val_nll"] is None else f"{r['val_nll']:.4f}"
        ece = "" if r["val_ece"] is None else f"{r['val_ece']:.4f}"
        mark = " *" if r["trial_id"] == best else ""
        lines.append(f"{r['trial_id']:>6s}{r['status']:>{status}s}{cells}{nll:>9s}{ece:>9s}"
                     f"{mark}")
    return "\n".join(lines)


def _write_trials_csv(path, rows):
    names = sorted({k for r in rows for k in r["values"]})
    with _io.atomic_open(path, newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["trial_id", "status", *names, "val_nll", "val_ece"])
        for r in rows:
            writer.writerow([r["trial_id"], r["status"], *(r["values"].get(n, "") for n in names),
                             r["val_nll"], r["val_ece"]])


def _checkpoint_name(search, trial):
    """The trial's checkpoint file, for messages (the folder if it holds none or several)."""
    folder = search.get_trial_dir(trial.trial_id)
    found = glob.glob(os.path.join(glob.escape(folder), "checkpoint*"))
    return found[0] if len(found) == 1 else f"the checkpoint in {folder}"


def _best_model(search, hypermodel, data, trial, epochs, batch_size):
    """The best trial's model from its checkpoint, or refitted when it cannot be loaded here."""
    try:
        with warnings.catch_warnings():  # the checkpoint also holds optimizer state: unused
            warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
            return search.load_model(trial), "reloaded"
    except FileNotFoundError:
        pass  # trained by a worker that keeps its checkpoints elsewhere
    except (OSError, ValueError, KeyError, TypeError) as error:  # a damaged checkpoint
        warnings.warn(f"{_checkpoint_name(search, trial)} cannot be loaded "
                      f"({describe_error(error)}); refitting trial {trial.trial_id} instead",
                      UserWarning, stacklevel=2)
    model = search.hypermodel.build(trial.hyperparameters)
    hypermodel.fit(trial.hyperparameters, model, data.x_train, data.y_train,
                   validation_data=(data.x_val, data.y_val), epochs=epochs, batch_size=batch_size)
    return model, "refitted"


def _best_trial(search, objective, directory):
    completed = [t for t in search.oracle.get_best_trials(len(search.oracle.trials))
                 if t.status == "COMPLETED" and _metric(t, objective) is not None]
    if not completed:
        failed = [t for t in search.oracle.trials.values() if t.message]
        detail = ""
        if failed:  # the last line of KerasTuner's traceback is the error itself
            reason = failed[0].message.strip().splitlines()[-1]
            detail = f" The first failure ({failed[0].hyperparameters.values}): {reason}"
        raise RuntimeError(f"no trial of the search in {directory} completed.{detail}")
    return completed[0]


def _teacher_record(teacher, directory):
    if teacher is None:
        return None
    trainings = teacher_trainings(os.path.join(directory, "cache"))
    return {"temperature": teacher.temperature, "val_nll": teacher.val_nll, "key": teacher.key,
            "trainings": len([t for t in trainings if t["key"] == teacher.key])}


def _best_record(plan, trial, how, temperature, test_logits, rows, teacher):
    settings, data, row = plan.settings, plan.data, _row(trial)
    return {
        "method": settings["method"], "label": plan.method.label, "dataset": settings["dataset"],
        "tuner": settings["tuner"], "objective": settings["objective"],
        "trial_id": trial.trial_id, "hyperparameters": row["values"],
        "val_nll": row["val_nll"], "val_ece": row["val_ece"], "model": how,
        "temperature": float(temperature),
        "test": calibration.evaluate(data.y_test, test_logits, groups=data.test_groups),
        "test_temperature_scaled": calibration.evaluate(data.y_test, test_logits, temperature,
                                                        groups=data.test_groups),
        "trials": dict(sorted(collections.Counter(r["status"] for r in rows).items())),
        "teacher": _teacher_record(teacher, plan.directory),
        "export": None,
    }


def _finish(plan, search, hypermodel, rows, teacher):
    """Reload (or refit) the best trial, calibrate, evaluate, export; write best.json."""
    settings, data = plan.settings, plan.data
    trial = _best_trial(search, settings["objective"], plan.directory)
    model, how = _best_model(search, hypermodel, data, trial, settings["epochs"],
                             settings["batch_size"])
    val_logits = np.asarray(model.predict(data.x_val, batch_size=1024, verbose=0))
    test_logits = np.asarray(model.predict(data.x_test, batch_size=1024, verbose=0))
    fit = calibration.fit_temperature(val_logits, data.y_val)
    best = _best_record(plan, trial, how, fit.temperature, test_logits, rows, teacher)
    if plan.export and keras.backend.backend() == "tensorflow":
        from keras_smooth.export import export_for_serving

        path = os.path.join(os.path.abspath(plan.directory), "export", settings["method"], "1")
        export_for_serving(model, path, temperature=fit.temperature)
        best["export"] = path
    _io.write_json(os.path.join(plan.directory, "best.json"), best)
    plan.report({"event": "best", "best": best})
    return best
