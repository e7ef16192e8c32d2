"""Compare label-regularization methods over replicates, resumably.

`run_comparison` trains, per replicate, the teacher (= the No LS model, cached
on disk) and every requested method of the registry (`keras_smooth.methods`,
or a user's own `Method`), evaluates each selected model on the test split,
and appends one record per (method, replicate) to `output/results.json`
(rewritten atomically after each record). Predictions (logits of the selected model on the
training, validation and test splits) go to
`output/predictions/<method>-<replicate>.npz`, with the method's fingerprint
(`Method.fingerprint`). A re-run with the same output folder and settings
skips finished (method, replicate) pairs; different settings in the same
folder are refused; a method changed between runs is recomputed with a
warning. Nothing here prints: progress goes to the `progress` callable.
"""

import dataclasses
import hashlib
import json
import os
import time
import warnings

import keras
import numpy as np

from keras_smooth import _io, calibration
from keras_smooth import datasets as datasets_module
from keras_smooth import methods as registry
from keras_smooth.workflows import methods as methods_module
from keras_smooth import _arguments as check
from keras_smooth._io import UNREADABLE, describe_error, read_npz, set_aside
from keras_smooth.models import default_model
from keras_smooth.training.protocol import TrainingProtocol
from keras_smooth.training.protocol import resolve as resolve_protocol
from keras_smooth.training.teacher import train_teacher


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


def _as_json(value):
    """`value` as it reads back from JSON (tuples become lists)."""
    return json.loads(json.dumps(value, sort_keys=True))


def _is_results(stored):
    """Whether a parsed results.json has the shape `ResultStore` writes."""
    if not isinstance(stored, dict) or not isinstance(stored.get("settings"), dict):
        return False
    records = stored.get("records")
    return isinstance(records, list) and all(
        isinstance(r, dict) and isinstance(r.get("method"), str)
        and isinstance(r.get("replicate"), int) for r in records)


def _record_base(record):
    """The method whose predictions a record evaluates (itself, or the one it rescales)."""
    if "base" in record:
        return record["base"]
    if record["method"] in registry.names():  # a record written before records named their base
        return registry.get(record["method"]).temperature_of or record["method"]
    return record["method"]


def _check_stored(stored):
    """Raise if a read predictions archive lacks a key or holds malformed logits."""
    missing = [k for k in PREDICTION_KEYS if k not in stored]
    if missing:
        raise KeyError(f"no {', '.join(missing)}")
    meta = json.loads(str(stored["meta"]))
    if not isinstance(meta, dict) or any(k not in meta for k in META_KEYS):
        raise ValueError("its meta record lacks " + ", ".join(META_KEYS))
    val, test = stored["val_logits"], stored["test_logits"]
    if val.ndim != 2 or test.ndim != 2 or val.shape[1] != test.shape[1] or val.dtype.kind != "f":
        raise ValueError(f"logits of shapes {val.shape} and {test.shape}")
    return meta


def _changed(stored, settings, prefix=""):
    """The keys whose values differ, nested ones as `training.max_epochs`."""
    changed = []
    for key in sorted(set(stored) | set(settings)):
        old, new = stored.get(key), settings.get(key)
        if isinstance(old, dict) and isinstance(new, dict) and key == "training":
            changed += _changed(old, new, f"{prefix}{key}.")
        elif old != new:
            changed.append(f"{prefix}{key}")
    return changed


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
            changed = _changed(stored["settings"], self.settings)
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

    def record(self, method, replicate):
        """The stored record of (method name, replicate), or None."""
        return next((r for r in self.records
                     if r["method"] == method and r["replicate"] == replicate), None)

    def done(self, method, replicate):
        return self.record(method, replicate) is not None

    def discard(self, base, replicate):
        """Forget the records built on `base`'s predictions of `replicate` (they are recomputed)."""
        self.records = [r for r in self.records
                        if not (r["replicate"] == replicate and _record_base(r) == base)]

    def add(self, record):
        from keras_smooth import __version__

        self.prepare()
        self.records.append(record)
        _io.write_json(self.path, {"version": __version__, "settings": self.settings,
                                   "records": self.records})

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

    def load_predictions(self, method, replicate, fingerprint=None):
        """The stored arrays, or None when absent, damaged (set aside with a warning) or stale.

        Stale: written for other settings (a results.json was removed or
        replaced), or, when `fingerprint` is given, by a method whose
        fingerprint (`Method.fingerprint`) differs from it (the method was
        changed between runs); it is left in place, warned about and
        overwritten.
        """
        path = self.prediction_path(method, replicate)
        if not os.path.lexists(path):
            return None
        try:
            stored = read_npz(path)
            meta = _check_stored(stored)
        except (*UNREADABLE, json.JSONDecodeError) as error:
            set_aside(path, describe_error(error))
            return None
        if str(stored["settings_key"]) != self.key:
            warnings.warn(f"{path} was written for other settings; recomputing it", UserWarning,
                          stacklevel=2)
            return None
        if fingerprint is not None and meta.get("fingerprint") != _as_json(fingerprint):
            warnings.warn(f"{path} was written by another definition of method {method!r} "
                          "(its grid or hooks changed); recomputing it", UserWarning, stacklevel=2)
            return None
        return stored


def _resolve_methods(methods):
    """`methods` as a tuple of distinct `Method`s (names, module:attribute or Methods)."""
    if methods is None:
        return tuple(registry.get(n) for n in registry.names("default"))
    if isinstance(methods, str):
        raise TypeError(f"`methods` must be a sequence of method names, got the string "
                        f"{methods!r}; use keras_smooth.methods.parse for comma-separated text.")
    if isinstance(methods, (bytes, dict, registry.Method)) or not hasattr(methods, "__iter__"):
        raise TypeError("`methods` must be a sequence of method names, module:attribute strings "
                        f"or keras_smooth.methods.Method objects, got {methods!r}.")
    found = {}
    for item in tuple(methods):
        if not isinstance(item, (str, registry.Method)):
            raise TypeError("`methods` must hold method names, module:attribute strings or "
                            f"keras_smooth.methods.Method objects, got {item!r}.")
        method = registry.resolve(item)
        if found.setdefault(method.name, method) is not method:
            raise ValueError(f"`methods` holds two different methods named {method.name!r}.")
    if not found:
        raise ValueError("`methods` is empty; name at least one method.")
    labels = {}
    for method in found.values():  # tables and plots are keyed by label
        other = labels.setdefault(method.label, method.name)
        if other != method.name:
            raise ValueError(f"`methods` holds two methods labelled {method.label!r} ({other!r} "
                             f"and {method.name!r}); give them different labels.")
    return tuple(found.values())


def _bases(methods):
    """`{name: Method}` of what each method's record evaluates: itself, or what it rescales."""
    given = {m.name: m for m in methods}
    bases = {}
    for method in methods:
        base = method
        if method.temperature_of is not None:
            base = given.get(method.temperature_of)
            if base is None and method.temperature_of not in registry.names():
                raise ValueError(f"method {method.name!r} rescales {method.temperature_of!r}, "
                                 "which is neither in `methods` nor registered.")
            base = base or registry.get(method.temperature_of)
            if base.temperature_of is not None:
                raise ValueError(f"method {method.name!r} rescales {base.name!r}, which trains "
                                 "nothing itself.")
        bases[method.name] = base
    return bases


def _check_arguments(dataset, methods, replicates, seed, grid, output,
                     dataset_options, build_model, build_student, progress):
    """Validate `run_comparison`'s arguments, touching no file; return the normalised ones."""
    methods = _resolve_methods(methods)
    bases = _bases(methods)
    if not isinstance(grid, str) or grid not in registry.GRID_NAMES:
        raise ValueError(f"Unknown grid {grid!r}; choose from: {', '.join(registry.GRID_NAMES)}.")
    replicates = check.positive_int("replicates", replicates)
    seed = check.seed("seed", seed, replicates)
    datasets_module.check_name(dataset)
    if dataset_options is not None and not isinstance(dataset_options, dict):
        raise TypeError(f"`dataset_options` must be a dict or None, got {dataset_options!r}.")
    check.output_folder("output", output)
    if not callable(build_model):
        raise TypeError(f"`build_model` must be callable, got {build_model!r}.")
    check.callable_or_none("build_student", build_student)
    check.callable_or_none("progress", progress)
    return methods, bases, replicates, seed


@dataclasses.dataclass
class _Run:
    """One comparison's checked settings, its methods and its result store."""

    dataset: str
    methods: tuple
    bases: dict
    replicates: int
    seed: int
    protocol: TrainingProtocol
    grid: str
    dataset_options: dict
    build_model: object
    build_student: object
    report: object
    store: ResultStore
    tensorboard: str = None

    def tensorboard_dir(self, method, replicate):
        """The TensorBoard folder of `method` in `replicate` (None without --tensorboard)."""
        if self.tensorboard is None:
            return None
        return os.path.join(self.tensorboard, method, f"replicate_{replicate}")

    @property
    def cache_dir(self):
        return os.path.join(self.store.output, "cache")

    def phase(self, replicate, method, started):
        """A `progress(student, students, epoch, epochs)` that reports "epoch" events."""
        return lambda i, n, e, total: self.report({
            "event": "epoch", "replicate": replicate, "replicates": self.replicates,
            "method": method, "student": i, "students": n, "epoch": e, "epochs": total,
            "seconds": time.perf_counter() - started,
        })


def _todo(run, replicate):
    """The methods of `replicate` to compute, and the stored predictions already read.

    A method is recomputed when it has no record, when its record was built on
    another method than its base now, or when its base's stored predictions
    are unusable (missing, damaged, other settings, another fingerprint).
    """
    store, loaded = run.store, {}
    for method in run.methods:
        found = store.record(method.name, replicate)
        if found is not None:  # a label edited since the record was written: show the new one
            found["label"] = method.label
        if found is not None and _record_base(found) != run.bases[method.name].name:
            store.records.remove(found)
    finished = {run.bases[m.name].name: run.bases[m.name] for m in run.methods
                if store.done(m.name, replicate)}
    for name in sorted(finished):
        loaded[name] = store.load_predictions(name, replicate,
                                              finished[name].fingerprint(run.grid))
        if loaded[name] is None:
            store.discard(name, replicate)
    return [m for m in run.methods if not store.done(m.name, replicate)], loaded


def _train_base(run, base, replicate, data, teacher, grid_inputs):
    """The result of training `base` (or taking the teacher, for No LS)."""
    if base.uses_teacher_model:
        return {"train_logits": teacher.logits["train"],
                "val_logits": teacher.logits["val"], "test_logits": teacher.logits["test"],
                "params": {}, "val_nll": teacher.val_nll, "best_epoch": teacher.best_epoch,
                "students": 1, "matrix": None, "extra_logits": teacher.logits.get("extra"),
                "seconds": teacher.seconds}
    started = time.perf_counter()
    result = methods_module.train_method(
        base, data, teacher, run.build_student or run.build_model, grid=run.grid,
        seed=run.seed + replicate, **run.protocol.fit_arguments(), extra_inputs=grid_inputs,
        progress=run.phase(replicate, base.name, started),
        tensorboard=run.tensorboard_dir(base.name, replicate))
    result["seconds"] = time.perf_counter() - started
    return result


def _save_trained(run, base, replicate, data, teacher, grid_inputs):
    """Train `base` for `replicate`, store its predictions; return them as stored."""
    result = _train_base(run, base, replicate, data, teacher, grid_inputs)
    meta = {k: result[k] for k in META_KEYS}
    meta["fingerprint"] = _as_json(base.fingerprint(run.grid))
    matrix = result.get("matrix")
    return run.store.save_predictions(
        base.name, replicate, train_logits=result.get("train_logits"),
        val_logits=result["val_logits"], test_logits=result["test_logits"],
        extra_logits=result.get("extra_logits"),
        matrix=None if matrix is None else np.asarray(matrix), meta=np.asarray(json.dumps(meta)))


def _predictions(run, todo, loaded, replicate, data, teacher, grid_inputs):
    """Fill `loaded` with every needed base's predictions: stored if usable, else trained.

    A base already in `loaded` was read by `_todo` (None: unusable, warned about).
    """
    for method in todo:
        base = run.bases[method.name]
        if base.name not in loaded:
            loaded[base.name] = run.store.load_predictions(base.name, replicate,
                                                           base.fingerprint(run.grid))
        if loaded[base.name] is None:
            loaded[base.name] = _save_trained(run, base, replicate, data, teacher, grid_inputs)
    return loaded


def _record(run, method, replicate, data, teacher, stored):
    """The results.json record of one (method, replicate) from its base's predictions."""
    meta = json.loads(str(stored["meta"]))
    rescales = method.temperature_of is not None
    temperature = 1.0
    if rescales:
        temperature = float(calibration.fit_temperature(stored["val_logits"], data.y_val))
    record = {
        "method": method.name, "label": method.label, "replicate": replicate,
        "seed": run.seed + replicate, "dataset": run.dataset,
        **evaluate(data, stored["test_logits"], temperature),
        "temperature": temperature,
        "hyperparameters": meta["params"],
        "val_nll": meta["val_nll"], "best_epoch": meta["best_epoch"],
        "students_trained": 0 if rescales else meta["students"],
        "seconds": 0.0 if rescales else meta["seconds"],
        "teacher_temperature": teacher.temperature,
        "base": run.bases[method.name].name,
    }
    if "matrix" in stored:
        record["matrix"] = stored["matrix"].tolist()
    if "bayes_test" in data.extras:
        bayes = np.log(np.maximum(data.extras["bayes_test"], 1e-300))
        record["bayes"] = evaluate(data, bayes)
    return record


def _teacher_tensorboard(run, replicate, data):
    """TensorBoard callbacks of the teacher's training, under the name of the method it is."""
    if run.tensorboard is None:
        return ()
    from keras_smooth.callbacks import tensorboard_run

    name = next((b.name for b in run.bases.values() if b.uses_teacher_model), "teacher")
    return tensorboard_run(run.tensorboard_dir(name, replicate), (data.x_val, data.y_val))


def _run_replicate(run, replicate):
    """Compute and record every unfinished method of one replicate."""
    todo, loaded = _todo(run, replicate)
    if not todo:
        run.report({"event": "skip", "replicate": replicate, "replicates": run.replicates})
        return
    run_seed = run.seed + replicate
    data = datasets_module.load(run.dataset, seed=run_seed, **run.dataset_options)
    run.store.prepare()  # the first write: only once the data has loaded
    grid_inputs = decision_grid(data)
    started = time.perf_counter()
    teacher_phase = run.phase(replicate, "teacher", started)
    teacher = train_teacher(run.build_model, data, **run.protocol.fit_arguments(),
                            seed=run_seed, cache_dir=run.cache_dir, extra_inputs=grid_inputs,
                            progress=lambda e, n: teacher_phase(1, 1, e, n),
                            callbacks=_teacher_tensorboard(run, replicate, data))
    _predictions(run, todo, loaded, replicate, data, teacher, grid_inputs)
    for method in todo:
        record = _record(run, method, replicate, data, teacher,
                         loaded[run.bases[method.name].name])
        run.store.add(record)
        run.report({"event": "done", "replicate": replicate, "replicates": run.replicates,
                    "method": method.name, "record": record})


def _name(fn):
    if fn is None:
        return None
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def run_comparison(*, dataset="gaussian", methods=None, replicates=3, seed=0, epochs=None,
                   batch_size=None, grid="small", output="runs/compare", dataset_options=None,
                   build_model=default_model, build_student=None, progress=None, protocol=None,
                   tensorboard=None):
    """Run the comparison; return the list of records (finished and resumed).

    A record holds the method's `method` name, `label`, test metrics, chosen
    `hyperparameters` and `base` (the method whose predictions it evaluates).

    Args:
        dataset: a name accepted by `keras_smooth.datasets.load`.
        methods: a sequence of registered names, `module:attribute` strings
            and `keras_smooth.methods.Method` objects (default None: the
            registry's "default" group). Records carry each method's name and
            label; a method whose name clashes with a registered one is refused.
        replicates: number of replicates (replicate r uses seed + r for data
            sampling or splitting and for model initialisation).
        seed: base seed.
        epochs, batch_size: when given, replace the protocol's maximum
            epochs and batch size (an integer or `"full"`).
        protocol: the `keras_smooth.training.TrainingProtocol` of the teacher
            and every student (default None: the data set's,
            `keras_smooth.training.protocol_for(dataset)`; on "gaussian" the
            ILS paper's appendix A protocol, with early stopping). The whole
            protocol is recorded in results.json under `settings["training"]`.
        grid: a grid name of `keras_smooth.methods.GRID_NAMES`.
        output: folder for results, predictions and the teacher cache.
        dataset_options: extra keyword arguments for the loader.
        build_model: `build_model(input_shape, num_classes)` -> uncompiled
            model with logit outputs; the teacher (= No LS) and, by default,
            every student.
        build_student: a different architecture for the students, if wanted.
        progress: optional callable `progress(event: dict)`.
        tensorboard: optional folder for TensorBoard: one run per method and
            replicate, `tensorboard/METHOD/replicate_R` (a subfolder per
            setting when a method's grid has several; the teacher's run, No
            LS, only when it is trained, not read from the cache), with the
            training loss, the validation ECE, classwise ECE, NLL, Brier,
            accuracy and fitted temperature, and the reliability diagram
            (`keras_smooth.callbacks.tensorboard_run`).

    Every argument is checked before anything is read or written (a
    `ValueError`/`TypeError` naming it); the output folder is created only
    once the data has loaded. Damaged cache or predictions files are set
    aside with a warning and recomputed, and so are predictions of a method
    whose definition changed; a damaged results.json is refused with a
    `ValueError` saying how to recover.
    """
    methods, bases, replicates, seed = _check_arguments(
        dataset, methods, replicates, seed, grid, output, dataset_options,
        build_model, build_student, progress)
    run = _open_run(dataset, methods, bases, replicates, seed, grid, output, dataset_options or {},
                    build_model, build_student, progress,
                    resolve_protocol(dataset, protocol, epochs=epochs, batch_size=batch_size),
                    tensorboard)
    for replicate in range(replicates):
        _run_replicate(run, replicate)
    return run.store.records


def _open_run(dataset, methods, bases, replicates, seed, grid, output, dataset_options,
              build_model, build_student, progress, protocol, tensorboard):
    """The `_Run` of checked arguments, over the result store of their settings."""
    if tensorboard is not None:
        tensorboard = check.output_folder("tensorboard", tensorboard)
    settings = {"dataset": dataset, "seed": seed, "training": protocol.as_dict(),
                "grid": grid, "dataset_options": dataset_options,
                "model": _name(build_model), "student_model": _name(build_student),
                "backend": keras.backend.backend()}
    run = _Run(dataset, methods, bases, replicates, seed, protocol, grid, dataset_options,
               build_model, build_student, progress or (lambda event: None),
               ResultStore(output, settings), tensorboard)
    labels = {m.name: m.label for m in methods}
    for record in run.store.records:  # a label edited since the stored run shows as edited
        record["label"] = labels.get(record["method"], record["label"])
    return run
