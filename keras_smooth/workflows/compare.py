"""Compare label-regularization methods over replicates, resumably.

`run_comparison` trains, per replicate, the teacher (= the No LS model, cached
on disk) and every requested method, evaluates each selected model on the
test split, and appends one record per (method, replicate) to
`output/results.json` (rewritten atomically after each record). Predictions
needed for plots go to `output/predictions/<method>-<replicate>.npz`. A
re-run with the same output folder and settings skips finished
(method, replicate) pairs; different settings in the same folder are refused.
Nothing here prints: progress goes to the `progress` callable.
"""

import hashlib
import json
import os
import time
import warnings

import numpy as np

from keras_smooth import _io, calibration
from keras_smooth import datasets as datasets_module
from keras_smooth.workflows import methods as methods_module
from keras_smooth.workflows import _arguments as check
from keras_smooth._io import UNREADABLE, read_npz, set_aside
from keras_smooth.models import default_model
from keras_smooth.workflows.teacher import describe_error, train_teacher


def decision_grid(data, size=120):
    """Points covering 2-D inputs (for decision-region plots), else None."""
    if data.input_shape != (2,):
        return None
    lo = data.x_test.min(0) - 0.5
    hi = data.x_test.max(0) + 0.5
    xs, ys = np.meshgrid(np.linspace(lo[0], hi[0], size), np.linspace(lo[1], hi[1], size))
    return np.stack([xs.ravel(), ys.ravel()], 1).astype("float32")


def evaluate(data, logits, temperature=1.0):
    """Test metrics of logits (optionally at a temperature), with the data's test groups."""
    return calibration.evaluate(data.y_test, logits, temperature, groups=data.test_groups)


PREDICTION_KEYS = ("val_logits", "test_logits", "meta", "settings_key")
META_KEYS = ("params", "val_nll", "best_epoch", "students", "seconds")


def _settings_key(settings):
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _is_results(stored):
    """Whether a parsed results.json has the shape `ResultStore` writes."""
    if not isinstance(stored, dict) or not isinstance(stored.get("settings"), dict):
        return False
    records = stored.get("records")
    return isinstance(records, list) and all(
        isinstance(r, dict) and isinstance(r.get("method"), str)
        and isinstance(r.get("replicate"), int) for r in records)


class ResultStore:
    """results.json + predictions/ in one output folder.

    Nothing is written until `prepare` (called once the data has loaded). A
    damaged `results.json` is refused with a one-line `ValueError` saying how
    to recover; a damaged or stale predictions file is set aside or ignored
    and recomputed (see `load_predictions`).
    """

    def __init__(self, output, settings):
        self.output = output
        self.path = os.path.join(output, "results.json")
        self.settings = settings
        self.key = _settings_key(settings)
        self.records = []
        self.prepared = False
        if os.path.lexists(self.path):
            self.records = self._read()

    def _read(self):
        recover = ("move it away to rebuild the results from the stored predictions (they are "
                   "reused only for the same settings), or use another --output")
        try:
            with open(self.path) as f:
                stored = json.load(f)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            reason = getattr(error, "strerror", None) or str(error).splitlines()[0]
            raise ValueError(f"{self.path} cannot be read ({reason}); {recover}") from None
        if not _is_results(stored):
            raise ValueError(f"{self.path} is not a keras-smooth results file (no settings and "
                             f"records); {recover}")
        if stored["settings"] != self.settings:
            changed = sorted(k for k in self.settings
                             if stored["settings"].get(k) != self.settings[k])
            raise ValueError(
                f"{self.path} holds a run with other settings ({', '.join(changed)}); "
                "use another --output or remove it"
            )
        return stored["records"]

    def prepare(self):
        """Create the output folders (once)."""
        if self.prepared:
            return
        try:
            os.makedirs(os.path.join(self.output, "predictions"), exist_ok=True)
        except OSError as error:
            raise ValueError(f"cannot create output folder {self.output}: "
                             f"{error.strerror}") from None
        if not os.access(self.output, os.W_OK):
            raise ValueError(f"output folder {self.output} is not writable")
        self.prepared = True

    def done(self, method, replicate):
        return any(r["method"] == method and r["replicate"] == replicate for r in self.records)

    def discard(self, base, replicate):
        """Forget the records built on `base`'s predictions of `replicate` (they are recomputed)."""
        self.records = [r for r in self.records
                        if not (r["replicate"] == replicate
                                and methods_module.TEMPS_OF.get(r["method"], r["method"]) == base)]

    def add(self, record):
        from keras_smooth import __version__

        self.prepare()
        self.records.append(record)
        _io.write_json(self.path, {"version": __version__, "settings": self.settings, "records": self.records})

    def prediction_path(self, method, replicate):
        return os.path.join(self.output, "predictions", f"{method}-{replicate}.npz")

    def save_predictions(self, method, replicate, **arrays):
        """Write the non-None arrays atomically; return them as `load_predictions` would."""
        self.prepare()
        path = self.prediction_path(method, replicate)
        kept = {k: np.asarray(v) for k, v in arrays.items() if v is not None}
        kept["settings_key"] = np.asarray(self.key)
        _io.write_npz(path, **kept)
        return kept

    def load_predictions(self, method, replicate):
        """The stored arrays, or None when absent, damaged (set aside with a warning) or stale.

        Stale: written for other settings (a results.json was removed or
        replaced); it is left in place, warned about and overwritten.
        """
        path = self.prediction_path(method, replicate)
        if not os.path.lexists(path):
            return None
        try:
            stored = read_npz(path)
            missing = [k for k in PREDICTION_KEYS if k not in stored]
            if missing:
                raise KeyError(f"no {', '.join(missing)}")
            meta = json.loads(str(stored["meta"]))
            if not isinstance(meta, dict) or any(k not in meta for k in META_KEYS):
                raise ValueError("its meta record lacks " + ", ".join(META_KEYS))
            val, test = stored["val_logits"], stored["test_logits"]
            if (val.ndim != 2 or test.ndim != 2 or val.shape[1] != test.shape[1]
                    or val.dtype.kind != "f"):
                raise ValueError(f"logits of shapes {val.shape} and {test.shape}")
        except (*UNREADABLE, json.JSONDecodeError) as error:
            set_aside(path, describe_error(error))
            return None
        if str(stored["settings_key"]) != self.key:
            warnings.warn(f"{path} was written for other settings; recomputing it", UserWarning,
                          stacklevel=2)
            return None
        return stored


def _check_arguments(dataset, methods, replicates, seed, epochs, batch_size, grid, output,
                     dataset_options, build_model, build_student, progress):
    """Validate `run_comparison`'s arguments, touching no file; return the normalised ones."""
    if isinstance(methods, str):
        raise TypeError(f"`methods` must be a sequence of method names, got the string "
                        f"{methods!r}; use keras_smooth.workflows.parse_methods for "
                        "comma-separated text.")
    methods = tuple(methods)
    if not methods:
        raise ValueError("`methods` is empty; name at least one method.")
    for m in methods:
        if m not in methods_module.ALL_METHODS:
            raise ValueError(f"Unknown method {m!r}; choose from: "
                             f"{', '.join(methods_module.ALL_METHODS)}.")
    if not isinstance(grid, str) or grid not in methods_module.GRIDS:
        raise ValueError(f"Unknown grid {grid!r}; choose from: {', '.join(methods_module.GRIDS)}.")
    replicates = check.positive_int("replicates", replicates)
    seed = check.seed("seed", seed, replicates)
    epochs = check.positive_int("epochs", epochs)
    batch_size = check.positive_int("batch_size", batch_size)
    datasets_module.check_name(dataset)
    if dataset_options is not None and not isinstance(dataset_options, dict):
        raise TypeError(f"`dataset_options` must be a dict or None, got {dataset_options!r}.")
    check.output_folder("output", output)
    if not callable(build_model):
        raise TypeError(f"`build_model` must be callable, got {build_model!r}.")
    check.callable_or_none("build_student", build_student)
    check.callable_or_none("progress", progress)
    return methods, replicates, seed, epochs, batch_size


def _todo(store, methods, replicate):
    """The methods of `replicate` to compute: no record, or unusable stored predictions."""
    finished = {methods_module.TEMPS_OF.get(m, m) for m in methods if store.done(m, replicate)}
    for base in sorted(finished):
        if store.load_predictions(base, replicate) is None:  # damaged or missing: redo it
            store.discard(base, replicate)
    return [m for m in methods if not store.done(m, replicate)]


def run_comparison(*, dataset="gaussian", methods=methods_module.METHODS, replicates=3, seed=0, epochs=100,
                   batch_size=32, grid="small", output="runs/compare", dataset_options=None,
                   build_model=default_model, build_student=None, progress=None):
    """Run the comparison; return the list of records (finished and resumed).

    Args:
        dataset: a name accepted by `keras_smooth.datasets.load`.
        methods: names from `ALL_METHODS` (the default set: `METHODS`).
        replicates: number of replicates (replicate r uses seed + r for data
            sampling or splitting and for model initialisation).
        seed, epochs, batch_size: training settings (Adam, learning rate 1e-3).
        grid: "paper", "small" or "quick" (see `methods.GRIDS`).
        output: folder for results, predictions and the teacher cache.
        dataset_options: extra keyword arguments for the loader.
        build_model: `build_model(input_shape, num_classes)` -> uncompiled
            model with logit outputs; the teacher (= No LS) and, by default,
            every student.
        build_student: a different architecture for the students, if wanted.
        progress: optional callable `progress(event: dict)`.

    Every argument is checked before anything is read or written (a
    `ValueError`/`TypeError` naming it); the output folder is created only
    once the data has loaded. Damaged cache or predictions files are set
    aside with a warning and recomputed; a damaged results.json is refused
    with a `ValueError` saying how to recover.
    """
    methods, replicates, seed, epochs, batch_size = _check_arguments(
        dataset, methods, replicates, seed, epochs, batch_size, grid, output, dataset_options,
        build_model, build_student, progress)

    def name(fn):
        return None if fn is None else f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"

    settings = {"dataset": dataset, "seed": seed, "epochs": epochs, "batch_size": batch_size,
                "grid": grid, "dataset_options": dataset_options or {},
                "model": name(build_model), "student_model": name(build_student)}
    store = ResultStore(output, settings)
    report = progress or (lambda event: None)
    cache_dir = os.path.join(output, "cache")

    for replicate in range(replicates):
        todo = _todo(store, methods, replicate)
        if not todo:
            report({"event": "skip", "replicate": replicate, "replicates": replicates})
            continue
        run_seed = seed + replicate
        data = datasets_module.load(dataset, seed=run_seed, **(dataset_options or {}))
        store.prepare()  # the first write: only once the data has loaded
        grid_inputs = decision_grid(data)
        needed = {methods_module.TEMPS_OF.get(m, m) for m in todo}

        def phase(method, started):
            return lambda i, n, e, total: report({
                "event": "epoch", "replicate": replicate, "replicates": replicates, "method": method,
                "student": i, "students": n, "epoch": e, "epochs": total,
                "seconds": time.perf_counter() - started,
            })

        started = time.perf_counter()
        teacher = train_teacher(build_model, data, epochs=epochs, batch_size=batch_size, seed=run_seed,
                                cache_dir=cache_dir, extra_inputs=grid_inputs,
                                progress=lambda e, n: phase("teacher", started)(1, 1, e, n))
        base_results = {}
        for base in methods_module.BASE_METHODS:
            if base not in needed:
                continue
            stored = store.load_predictions(base, replicate)
            if stored is not None:
                base_results[base] = stored
                continue
            started = time.perf_counter()
            if base == "no_ls":
                result = {"val_logits": teacher.logits["val"], "test_logits": teacher.logits["test"],
                          "params": {}, "val_nll": teacher.val_nll, "best_epoch": teacher.best_epoch,
                          "students": 1, "matrix": None, "extra_logits": teacher.logits.get("extra"),
                          "seconds": teacher.seconds}
            else:
                result = methods_module.train_method(
                    base, data, teacher, build_student or build_model, grid=grid, epochs=epochs, batch_size=batch_size,
                    seed=run_seed, extra_inputs=grid_inputs, progress=phase(base, started),
                )
                result["seconds"] = time.perf_counter() - started
            base_results[base] = store.save_predictions(
                base, replicate, val_logits=result["val_logits"], test_logits=result["test_logits"],
                extra_logits=result.get("extra_logits"),
                matrix=None if result.get("matrix") is None else np.asarray(result["matrix"]),
                meta=np.asarray(json.dumps({k: result[k] for k in ("params", "val_nll", "best_epoch",
                                                                    "students", "seconds")})),
            )
        for method in todo:
            base = methods_module.TEMPS_OF.get(method, method)
            stored = base_results[base]
            meta = json.loads(str(stored["meta"]))
            temperature = 1.0
            if method in methods_module.TEMPS_OF:
                temperature = float(calibration.fit_temperature(stored["val_logits"], data.y_val))
            record = {
                "method": method, "label": methods_module.LABELS[method], "replicate": replicate,
                "seed": run_seed, "dataset": dataset,
                **evaluate(data, stored["test_logits"], temperature),
                "temperature": temperature,
                "hyperparameters": meta["params"],
                "val_nll": meta["val_nll"], "best_epoch": meta["best_epoch"],
                "students_trained": 0 if method in methods_module.TEMPS_OF else meta["students"],
                "seconds": 0.0 if method in methods_module.TEMPS_OF else meta["seconds"],
                "teacher_temperature": teacher.temperature,
            }
            if base in ("ils", "ils1", "ils2"):
                record["hyperparameters"] = {**meta["params"], "teacher_temperature_fitted": teacher.temperature}
            if "matrix" in stored:
                record["matrix"] = stored["matrix"].tolist()
            if "bayes_test" in data.extras:
                record["bayes"] = evaluate(data, np.log(np.maximum(data.extras["bayes_test"], 1e-300)))
            store.add(record)
            report({"event": "done", "replicate": replicate, "replicates": replicates, "method": method,
                    "record": record})
    return store.records
