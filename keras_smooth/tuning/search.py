"""A resumable KerasTuner search for one smoothing method, from data to a served model.

`run_search` does, in order:

1. validate every argument and the search folder (nothing is written before);
2. for ILS: train the teacher without smoothing, fit its temperature T* and
   compute its logits **once** (cached in `directory/cache`, shared by every
   trial, every re-run and every tuner process using the folder);
3. run the KerasTuner search (`directory/search/`): each trial builds the
   user's model, trains it with the trial's hyperparameters under the chosen
   `tf.distribute` strategy and is scored by validation NLL (or ECE);
4. on the chief (or a lone process): reload the best trial's weights (or
   refit them), fit a temperature on the validation split, evaluate on the
   test split, export a SavedModel for TF Serving and write `best.json` and
   `trials.csv`.

Re-running with the same folder resumes: KerasTuner keeps completed trials and
reruns the trial that was in flight when the process stopped. A folder holding
a search with other settings (another method, data set, tuner, ...) is refused.
"""

import collections
import csv
import dataclasses
import glob
import json
import numbers
import os
import time
import warnings

import keras
import keras_tuner
import numpy as np

from keras_smooth import _io, calibration
from keras_smooth.models import default_model
from keras_smooth import datasets as datasets_module
from keras_smooth.tuning import distribute
from keras_smooth.tuning.hypermodels import HYPERMODELS, ILSHyperModel, objective as make_objective, resolve_ranges
from keras_smooth.workflows import _arguments as check
from keras_smooth.workflows.teacher import describe_error, teacher_trainings, train_teacher

TUNERS = {
    "random": keras_tuner.RandomSearch,
    "grid": keras_tuner.GridSearch,
    "bayesian": keras_tuner.BayesianOptimization,
    "hyperband": keras_tuner.Hyperband,
}
METHODS = ("ils", "ils1", "ils2", "ls", "lls", "lspp")
PARAMS = {"ls": ("epsilon",), "lls": ("alpha",), "lspp": ("alpha",), **ILSHyperModel.VARIANTS}
PROJECT = "search"


class _TrialLog:
    """Mixed into a KerasTuner tuner: remembers the trials this process ran and reports them."""

    def on_trial_begin(self, trial):
        super().on_trial_begin(trial)
        self.report({"event": "trial_begin", "trial_id": trial.trial_id, "values": _values(trial)})

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
        raise ValueError("the hyperband tuner sets its own number of trials from `epochs` (its max_epochs) "
                         f"and factor 3; pass max_trials=None, not {max_trials!r}.")
    if tuner in ("random", "bayesian") and max_trials is None:
        raise ValueError(f"the {tuner} tuner needs `max_trials`.")


def make_tuner(name, hypermodel, *, objective="val_nll", max_trials=10, epochs=60, seed=0, directory,
               distribution_strategy=None, executions_per_trial=1, progress=None):
    """A KerasTuner tuner by name ("random", "grid", "bayesian", "hyperband") over `hypermodel`.

    `max_trials` caps random, grid (None: the whole grid) and Bayesian
    searches; Hyperband sets its trials from `epochs` (its `max_epochs`) and
    factor 3, and refuses an explicit `max_trials`.
    """
    if name not in TUNERS:
        raise ValueError(f"Unknown tuner {name!r}; choose from: {', '.join(TUNERS)}.")
    _check_budget(name, max_trials)
    base = TUNERS[name]
    cls = type(base.__name__, (_TrialLog, base), {})
    common = dict(hypermodel=hypermodel, objective=make_objective(objective), seed=int(seed), directory=directory,
                  project_name=PROJECT, distribution_strategy=distribution_strategy,
                  executions_per_trial=int(executions_per_trial), overwrite=False)
    if name == "hyperband":
        tuner = cls(max_epochs=int(epochs), factor=3, **common)
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


def _check_tuner_state(directory):
    """Refuse damaged KerasTuner state (oracle.json, tuner0.json, trial.json) before reloading."""
    project = os.path.join(directory, PROJECT)
    recover = (f"the search cannot be resumed from it: remove {project} to start the search again "
               f"(search.json and the teacher cache are kept), or use another --directory")
    paths = glob.glob(os.path.join(glob.escape(project), "*.json"))
    paths += glob.glob(os.path.join(glob.escape(project), "trial_*", "*.json"))
    for path in sorted(paths):
        stored = _read_json(path, recover)
        if os.path.basename(path) == "trial.json":
            keys = ("trial_id", "hyperparameters", "metrics", "status")
        elif os.path.basename(path) == "oracle.json":
            keys = ("ongoing_trials", "hyperparameters", "tried_so_far", "id_to_hash")
        else:
            keys = ()
        missing = [k for k in keys if k not in stored]
        if missing:
            raise ValueError(f"{path} lacks {', '.join(missing)}; {recover}")
    return recover


def _check_settings(directory, settings):
    """Refuse a folder that holds a search with other settings; return whether one exists."""
    path = os.path.join(directory, "search.json")
    if not os.path.exists(path):
        if os.path.isdir(os.path.join(directory, PROJECT)):
            raise ValueError(f"{directory} holds a search without search.json; use another directory.")
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


_positive_int = check.positive_int


def _check_arguments(dataset, data, directory, seed, learning_rate, chief_timeout, build_model,
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
    if (isinstance(learning_rate, bool) or not isinstance(learning_rate, numbers.Real)
            or not np.isfinite(learning_rate) or learning_rate <= 0):
        raise ValueError(f"`learning_rate` must be a finite number > 0, got {learning_rate!r}.")
    check.positive_seconds("chief_timeout", chief_timeout)
    if not callable(build_model):
        raise TypeError(f"`build_model` must be callable, got {build_model!r}.")
    check.callable_or_none("progress", progress)


def trial_rows(tuner):
    """One dict per trial (id, status, hyperparameters, val_nll, val_ece), in trial order."""
    return [_row(t) for _, t in sorted(tuner.oracle.trials.items())]


def format_trials(rows, objective="val_nll"):
    """The trial table as text; `*` marks the best trial by `objective`."""
    names = sorted({k for r in rows for k in r["values"]})
    scored = [r for r in rows if r[objective] is not None]
    best = min(scored, key=lambda r: r[objective])["trial_id"] if scored else None
    header = f"{'trial':>6s} {'status':>10s}" + "".join(f"{n:>13s}" for n in names) + f"{'val NLL':>10s}{'val ECE':>10s}"
    lines = [header, "-" * len(header)]
    for r in rows:
        cells = "".join(f"{r['values'].get(n, float('nan')):13.4g}" for n in names)
        nll = "" if r["val_nll"] is None else f"{r['val_nll']:.4f}"
        ece = "" if r["val_ece"] is None else f"{r['val_ece']:.4f}"
        mark = " *" if r["trial_id"] == best else ""
        lines.append(f"{r['trial_id']:>6s} {r['status']:>10s}{cells}{nll:>10s}{ece:>10s}{mark}")
    return "\n".join(lines)


def _write_trials_csv(path, rows):
    names = sorted({k for r in rows for k in r["values"]})
    with _io.atomic_open(path, newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["trial_id", "status", *names, "val_nll", "val_ece"])
        for r in rows:
            writer.writerow([r["trial_id"], r["status"], *(r["values"].get(n, "") for n in names),
                             r["val_nll"], r["val_ece"]])


def run_search(method="ils", *, dataset="gaussian", data=None, build_model=default_model, tuner="random",
               max_trials=10, strategy="auto", directory=os.path.join("runs", "tune"), objective="val_nll",
               grid=None, ranges=None, epochs=60, batch_size=32, seed=0, learning_rate=1e-3,
               executions_per_trial=1, dataset_options=None, chief_timeout=300.0, export=True, progress=None):
    """Search one method's hyperparameters with KerasTuner; export the calibrated best model.

    Args:
        method: "ils" (P1, P2, T), "ils1" (P1, P2), "ils2" (ε, T), "ls" (ε),
            "lls" or "lspp" (α).
        dataset: a name for `keras_smooth.datasets.load` (ignored if `data`).
        data: a `ClassificationData` to use instead of `dataset`.
        build_model: `build_model(input_shape, num_classes)` -> uncompiled
            model with logit outputs; the students and (for ILS) the teacher.
        tuner: "random", "grid", "bayesian" or "hyperband".
        max_trials: trials for random/grid/Bayesian (grid: None = whole grid);
            must be None for hyperband.
        strategy: "auto", "mirrored", "none" (see
            `keras_smooth.tuning.distribute.resolve_strategy`) or a
            `tf.distribute.Strategy`.
        directory: the search folder; a re-run with the same folder resumes.
        objective: "val_nll" (default) or "val_ece", both minimised.
        grid: grid the default ranges come from; default "synthetic" for the
            gaussian task and "paper" otherwise.
        ranges: search-space overrides per hyperparameter (see
            `keras_smooth.tuning.hypermodels`).
        epochs, batch_size, learning_rate, seed: training settings; `seed`
            also seeds the data split and the tuner.
        chief_timeout: seconds a worker waits for its chief.
        export: write the calibrated best model as a SavedModel.
        progress: optional `progress(event: dict)` callable.

    Returns:
        `SearchResult`. On a worker, `best` is None (the chief writes it).
    """
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; choose from: {', '.join(METHODS)}.")
    if tuner not in TUNERS:
        raise ValueError(f"Unknown tuner {tuner!r}; choose from: {', '.join(TUNERS)}.")
    make_objective(objective)
    max_trials = _positive_int("max_trials", max_trials, allow_none=True)
    epochs = _positive_int("epochs", epochs)
    batch_size = _positive_int("batch_size", batch_size)
    executions_per_trial = _positive_int("executions_per_trial", executions_per_trial)
    _check_budget(tuner, max_trials)
    _check_arguments(dataset, data, directory, seed, learning_rate, chief_timeout, build_model,
                     progress, dataset_options)
    if data is None:
        grid = grid or ("synthetic" if dataset == "gaussian" else "paper")
    else:
        dataset = data.name
        grid = grid or ("synthetic" if data.name == "gaussian" else "paper")
    space = resolve_ranges(method, PARAMS[method], ranges, grid)
    if tuner == "grid" and any(isinstance(spec, dict) and "step" not in spec for spec in space.values()):
        raise ValueError("the grid tuner needs listed values (or min/max with a step) for every hyperparameter.")
    role = distribute.tuner_role()
    resolved_strategy = distribute.resolve_strategy(strategy)
    report = progress or (lambda event: None)

    if data is None:
        data = datasets_module.load(dataset, seed=seed, **(dataset_options or {}))
    settings = {
        "method": method, "dataset": dataset, "data": data.fingerprint(), "tuner": tuner, "objective": objective,
        "ranges": {k: list(v) if isinstance(v, tuple) else v for k, v in space.items()},
        "epochs": epochs, "batch_size": batch_size, "seed": int(seed), "learning_rate": float(learning_rate),
        "executions_per_trial": executions_per_trial, "model": _function_name(build_model),
    }
    resuming = _check_settings(directory, settings)
    # The chief (or a lone process) reloads the search state; a worker asks the chief's oracle
    # and must not read files the chief may be writing.
    recover = _check_tuner_state(directory) if role != "worker" else "use another --directory"
    if role == "worker":
        report({"event": "waiting_for_chief"})
        distribute.wait_for_chief(chief_timeout)

    # Everything is valid: from here on the folder is written.
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as error:
        raise ValueError(f"cannot create the search directory {directory}: {error.strerror}") from None
    if not os.access(directory, os.W_OK):
        raise ValueError(f"the search directory {directory} is not writable")
    if role != "worker" or not os.path.exists(os.path.join(directory, "search.json")):
        _io.write_json(os.path.join(directory, "search.json"), settings)
    report({"event": "start", "role": role, "resuming": resuming, "settings": settings})

    teacher = None
    hyper_kwargs = dict(ranges=space, grid=grid, learning_rate=learning_rate, seed=seed)
    if method.startswith("ils"):
        started = time.perf_counter()
        teacher = train_teacher(build_model, data, epochs=epochs, batch_size=batch_size, seed=seed,
                                learning_rate=learning_rate, cache_dir=os.path.join(directory, "cache"))
        report({"event": "teacher", "from_cache": teacher.from_cache, "temperature": teacher.temperature,
                "val_nll": teacher.val_nll, "seconds": time.perf_counter() - started})
        hypermodel = ILSHyperModel(build_model, data.input_shape, data.num_classes,
                                   teacher_logits=teacher.logits["train"],
                                   calibration_temperature=teacher.temperature, variant=method, **hyper_kwargs)
    else:
        hypermodel = HYPERMODELS[method](build_model, data.input_shape, data.num_classes, **hyper_kwargs)

    try:
        search = make_tuner(tuner, hypermodel, objective=objective, max_trials=max_trials,
                            epochs=epochs, seed=seed, directory=directory,
                            distribution_strategy=resolved_strategy,
                            executions_per_trial=executions_per_trial, progress=report)
    except (KeyError, RuntimeError, TypeError, ValueError) as error:  # state it cannot reload
        if not os.path.isdir(os.path.join(directory, PROJECT)):
            raise
        raise ValueError("KerasTuner cannot reload the search in "
                         f"{os.path.join(directory, PROJECT)} "
                         f"({describe_error(error)}); {recover}") from None
    search.search(data.x_train, data.y_train, validation_data=(data.x_val, data.y_val), epochs=epochs,
                  batch_size=batch_size, verbose=0)
    result = SearchResult(role, directory, [], list(search.trials_run), teacher=teacher, tuner=search)
    if role == "worker":
        return result
    result.trials = trial_rows(search)
    _write_trials_csv(os.path.join(directory, "trials.csv"), result.trials)
    result.best = _finish(search, hypermodel, data, settings, directory, result.trials, export=export,
                          teacher=teacher, report=report)
    return result


def _best_model(search, hypermodel, data, trial, epochs, batch_size):
    """The best trial's model from its checkpoint, or refitted when the checkpoint is not here."""
    checkpoint = search._get_checkpoint_fname(trial.trial_id)
    if os.path.exists(checkpoint):
        try:
            with warnings.catch_warnings():  # the checkpoint also holds optimizer state: unused
                warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
                return search.load_model(trial), "reloaded"
        except (OSError, ValueError, KeyError, TypeError) as error:  # a damaged checkpoint
            warnings.warn(f"{checkpoint} cannot be loaded ({describe_error(error)}); "
                          "refitting trial "
                          f"{trial.trial_id} instead", UserWarning, stacklevel=2)
    model = search.hypermodel.build(trial.hyperparameters)
    hypermodel.fit(trial.hyperparameters, model, data.x_train, data.y_train,
                   validation_data=(data.x_val, data.y_val), epochs=epochs, batch_size=batch_size)
    return model, "refitted"


def _finish(search, hypermodel, data, settings, directory, rows, *, export, teacher, report):
    completed = [t for t in search.oracle.get_best_trials(len(search.oracle.trials))
                 if t.status == "COMPLETED" and _metric(t, settings["objective"]) is not None]
    if not completed:
        failed = [t for t in search.oracle.trials.values() if t.message]
        detail = f" The first failure:\n{failed[0].message}" if failed else ""
        raise RuntimeError(f"no trial of the search in {directory} completed.{detail}")
    trial = completed[0]
    model, how = _best_model(search, hypermodel, data, trial, settings["epochs"], settings["batch_size"])
    val_logits = np.asarray(model.predict(data.x_val, batch_size=1024, verbose=0))
    test_logits = np.asarray(model.predict(data.x_test, batch_size=1024, verbose=0))
    fit = calibration.fit_temperature(val_logits, data.y_val)
    row = _row(trial)
    best = {
        "method": settings["method"], "dataset": settings["dataset"], "tuner": settings["tuner"],
        "objective": settings["objective"], "trial_id": trial.trial_id, "hyperparameters": row["values"],
        "val_nll": row["val_nll"], "val_ece": row["val_ece"], "model": how,
        "temperature": float(fit.temperature),
        "test": calibration.evaluate(data.y_test, test_logits, groups=data.test_groups),
        "test_temperature_scaled": calibration.evaluate(data.y_test, test_logits, fit.temperature,
                                                        groups=data.test_groups),
        "trials": dict(sorted(collections.Counter(r["status"] for r in rows).items())),
        "teacher": None if teacher is None else {
            "temperature": teacher.temperature, "val_nll": teacher.val_nll, "key": teacher.key,
            "trainings": len([t for t in teacher_trainings(os.path.join(directory, "cache"))
                              if t["key"] == teacher.key]),
        },
        "export": None,
    }
    if export and keras.backend.backend() == "tensorflow":
        from keras_smooth.export import export_for_serving

        path = os.path.join(os.path.abspath(directory), "export", settings["method"], "1")
        export_for_serving(model, path, temperature=fit.temperature)
        best["export"] = path
    _io.write_json(os.path.join(directory, "best.json"), best)
    report({"event": "best", "best": best})
    return best
