"""The ILS teacher: trained once without label smoothing, temperature-scaled, cached.

The teacher's logits on every split and its fitted temperature T* are stored
in `cache_dir/teacher-<key>.npz`. The key hashes the model architecture (layer
types and settings, not their auto-generated names), the data (a hash of the
train and validation arrays), the seed and the training settings, so a
changed model, data set or seed never reuses a stale cache. Files are written
to a temporary name and renamed, so an interrupted run never leaves a
half-written cache behind; a damaged file (truncated, empty, foreign or
inconsistent with the data) is renamed to `<name>.corrupt` with a warning
naming it, and the teacher is trained again. Processes sharing a cache folder (tuner workers)
take a lock on the entry, so the first trains and the others wait and load.
Every training appends one line to `cache_dir/teacher-log.jsonl` (key,
process id, seconds), which shows how often a teacher was actually trained.
"""

import contextlib
import dataclasses
import hashlib
import json
import os
import time
import warnings

import keras
import numpy as np

from keras_smooth import _arguments, _io, calibration
from keras_smooth._io import UNREADABLE, describe_error, read_npz, set_aside  # noqa: F401
from keras_smooth.training.fitting import fit_classifier
from keras_smooth.training.protocol import check_fit_settings

SPLITS = ("train", "val", "test")


@dataclasses.dataclass
class Teacher:
    logits: dict
    temperature: float
    best_epoch: int
    val_nll: float
    key: str
    seconds: float = 0.0
    from_cache: bool = False
    model: object = None  # the trained Keras model when it was trained in this process


def _strip_names(config):
    if isinstance(config, dict):
        return {k: _strip_names(v) for k, v in config.items() if k not in ("name", "build_config")}
    if isinstance(config, list):
        return [_strip_names(v) for v in config]
    return config


def architecture_fingerprint(build_model, input_shape, num_classes, seed):
    """Hash of the model's structure and settings (names excluded)."""
    keras.utils.set_random_seed(seed)
    model = build_model(input_shape, num_classes)
    config = _strip_names(keras.saving.serialize_keras_object(model))
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def teacher_cache_key(build_model, data, *, epochs, batch_size, seed, learning_rate,
                      extra_inputs=None, patience=None):
    """The cache key: architecture, data, seed and the whole training protocol (checked as
    `fit_classifier` checks it: `ValueError` naming a bad setting)."""
    from keras_smooth import __version__

    epochs, batch_size, seed, learning_rate, patience = check_fit_settings(
        epochs=epochs, batch_size=batch_size, seed=seed, learning_rate=learning_rate,
        patience=patience)
    payload = {
        "architecture": architecture_fingerprint(build_model, data.input_shape,
                                                 data.num_classes, seed),
        "data": data.fingerprint(),
        "dataset": data.name,
        "epochs": epochs,
        "batch_size": batch_size,
        "seed": seed,
        "learning_rate": learning_rate,
        "optimizer": "adam",
        "patience": patience,
        "restored": "best validation NLL",
        "version": __version__,
        "backend": keras.backend.backend(),  # logits trained on one backend stay with it
        "extra_inputs": None if extra_inputs is None
        else hashlib.sha256(np.ascontiguousarray(extra_inputs).tobytes()).hexdigest()[:16],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


@contextlib.contextmanager
def _locked(path):
    """An exclusive advisory lock on `path` (POSIX); no lock where fcntl is missing."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _load(path, key, data, extra_inputs):
    """The cached teacher, or None after setting aside a damaged or inconsistent file."""
    try:
        stored = read_npz(path)
        logits = {s: stored[s] for s in SPLITS + (("extra",) if extra_inputs is not None else ())}
        rows = {"train": len(data.y_train), "val": len(data.y_val), "test": len(data.y_test),
                "extra": None if extra_inputs is None else len(extra_inputs)}
        for split, array in logits.items():
            if array.shape != (rows[split], data.num_classes) or not np.all(np.isfinite(array)):
                raise ValueError(f"{split} logits of shape {array.shape}, expected "
                                 f"{(rows[split], data.num_classes)}")
        teacher = Teacher(logits, float(stored["temperature"]), int(stored["best_epoch"]),
                          float(stored["val_nll"]), key, float(stored["seconds"]), from_cache=True)
        if not (np.isfinite(teacher.temperature) and teacher.temperature > 0):
            raise ValueError(f"temperature {teacher.temperature}")
        return teacher
    except UNREADABLE as error:
        set_aside(path, describe_error(error))
        return None


def teacher_trainings(cache_dir):
    """The records of `teacher-log.jsonl` in `cache_dir`: one per teacher actually trained."""
    path = os.path.join(cache_dir, "teacher-log.jsonl")
    if not os.path.exists(path):
        return []
    records = []
    with open(path, errors="replace") as f:
        for number, line in enumerate(f, 1):
            try:
                record = json.loads(line) if line.strip() else None
            except json.JSONDecodeError:
                record = None
                warnings.warn(f"{path}: line {number} is not JSON; not counted", UserWarning,
                              stacklevel=2)
            if isinstance(record, dict):
                records.append(record)
    return records


def train_teacher(build_model, data, *, epochs, batch_size, seed, learning_rate=1e-3,
                  patience=None, cache_dir=None, extra_inputs=None, progress=None, callbacks=()):
    """Train (or load from the cache) the teacher and fit its temperature T*.

    Args:
        epochs, batch_size, seed, learning_rate, patience: the training
            protocol, as `fit_classifier` takes it (`TrainingProtocol.fit_arguments`).
        extra_inputs: optional inputs whose logits are computed and cached too
            (under `logits["extra"]`), e.g. a grid for decision-region plots.
        callbacks: extra Keras callbacks of the training (e.g. TensorBoard);
            unused when the teacher comes from the cache.

    Returns:
        `Teacher` with `logits[split]` for train/val/test and `temperature`.

    Raises:
        ValueError: naming a bad training setting, or a `cache_dir` that is a file
            or cannot be created; checked before anything is trained or written.
    """
    epochs, batch_size, seed, learning_rate, patience = check_fit_settings(
        epochs=epochs, batch_size=batch_size, seed=seed, learning_rate=learning_rate,
        patience=patience)
    if cache_dir is not None:
        cache_dir = _arguments.output_folder("cache_dir", cache_dir)
    _arguments.callable_or_none("progress", progress)
    key = teacher_cache_key(build_model, data, epochs=epochs, batch_size=batch_size,
                            seed=seed, learning_rate=learning_rate, extra_inputs=extra_inputs,
                            patience=patience)
    settings = dict(epochs=epochs, batch_size=batch_size, seed=seed, learning_rate=learning_rate,
                    patience=patience, extra_inputs=extra_inputs, progress=progress,
                    callbacks=callbacks)
    if cache_dir is None:
        return _train(build_model, data, key, **settings)
    os.makedirs(cache_dir, exist_ok=True)
    path = os.path.join(cache_dir, f"teacher-{key}.npz")
    if os.path.exists(path):  # written atomically: never seen half-written
        teacher = _load(path, key, data, extra_inputs)
        if teacher is not None:
            return teacher
    with _locked(os.path.join(cache_dir, f"teacher-{key}.lock")):
        if os.path.exists(path):  # trained by another process while this one waited
            teacher = _load(path, key, data, extra_inputs)
            if teacher is not None:
                return teacher
        teacher = _train(build_model, data, key, **settings)
        _io.write_npz(path, temperature=teacher.temperature, best_epoch=teacher.best_epoch,
                     val_nll=teacher.val_nll, seconds=teacher.seconds, **teacher.logits)
        with open(os.path.join(cache_dir, "teacher-log.jsonl"), "a") as log:
            entry = {"key": key, "pid": os.getpid(), "seconds": round(teacher.seconds, 3),
                     "dataset": data.name, "seed": int(seed)}
            log.write(json.dumps(entry) + "\n")
    return teacher


def _train(build_model, data, key, *, epochs, batch_size, seed, learning_rate, patience,
           extra_inputs, progress, callbacks):
    started = time.perf_counter()
    trained = fit_classifier(
        build_model, data, data.y_train,
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        epochs=epochs, batch_size=batch_size, seed=seed, learning_rate=learning_rate,
        patience=patience, progress=progress, callbacks=callbacks,
    )
    x = {"train": data.x_train, "val": data.x_val, "test": data.x_test}
    if extra_inputs is not None:
        x["extra"] = extra_inputs
    logits = {s: trained.model.predict(v, batch_size=1024, verbose=0).astype("float32")
              for s, v in x.items()}
    fit = calibration.fit_temperature(logits["val"], data.y_val)
    return Teacher(logits, float(fit.temperature), trained.best_epoch, trained.best_val_nll, key,
                   time.perf_counter() - started, model=trained.model)
