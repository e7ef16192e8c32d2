"""One KerasTuner hypermodel for every method of the registry, and your own.

`MethodHyperModel(method, build_model, input_shape, num_classes)` builds the
user's network (`build_model(input_shape, num_classes)` returning an
uncompiled model with logit outputs), compiles it with the method's loss at
the trial's hyperparameters, and trains it with `fit(hp, model, x, y,
validation_data=(x_val, y_val), ...)` on the method's targets with the
method's callbacks (`keras_smooth.methods.Method.build`). Every epoch it writes
the validation cross-entropy against the hard labels (`val_nll`) and the
15-bin ECE (`val_ece`) into the Keras logs, where KerasTuner's best-epoch
checkpoint reads them, and it returns both for the epoch of lowest `val_nll`
(the ILS paper selects by validation cross-entropy, §VI-a).

The search space of each hyperparameter is, by default, the method's tuning
range (`Method.search_space()`: `hp.Float` between its min and max, on a log
scale where the method says so; `hp.Fixed` if the range is one value); with
`grid="paper"` (or another grid name) the values of that grid
(`Method.grid`, `hp.Choice`). `ranges` overrides single hyperparameters:

- a list or tuple of values: `hp.Choice`;
- a dict `{"min": a, "max": b}` with optional `"sampling"` ("linear" or
  "log") and `"step"`: `hp.Float`;
- a single number: `hp.Fixed`.
"""

import contextlib

import keras
import keras_tuner
import numpy as np

from keras_smooth import _arguments, _checks, methods
from keras_smooth.models import adam_for_loss, for_loss
from keras_smooth.training.fitting import BestValidationNLL, EpochShuffle, training_failure
from keras_smooth.training.protocol import check_fit_settings

OBJECTIVES = ("val_nll", "val_ece")


def objective(name="val_nll"):
    """The `keras_tuner.Objective` for "val_nll" (default) or "val_ece"; both are minimised."""
    if name not in OBJECTIVES:
        raise ValueError(f"`objective` must be one of {OBJECTIVES}, got {name!r}.")
    return keras_tuner.Objective(name, direction="min")


# --- search space ------------------------------------------------------------------------


def _owner(param):
    """The first registered method with a hyperparameter called `param`."""
    for name in methods.names():
        if param in methods.get(name).params:
            return methods.get(name)
    known = sorted({p for n in methods.names() for p in methods.get(n).params})
    raise ValueError(f"unknown hyperparameter {param!r} in `ranges`; known: {', '.join(known)}.")


def _checked_value(method, param, value):
    """`value` checked against `method`'s domain of `param`; errors name `ranges[param]`."""
    try:
        return method.check(param, value)
    except (TypeError, ValueError) as error:
        raise type(error)(f"`ranges[{param!r}]`: {error}") from None


def _check_interval(method, param, spec):
    where = f"`ranges[{param!r}]`"
    unknown = set(spec) - {"min", "max", "sampling", "step"}
    if unknown or "min" not in spec or "max" not in spec:
        raise ValueError(f"{where} must have keys min and max (optionally sampling, step), "
                         f"got {spec!r}.")
    low = _checked_value(method, param, spec["min"])
    high = _checked_value(method, param, spec["max"])
    if not low < high:
        raise ValueError(f"{where} needs min < max, got min={low}, max={high}.")
    sampling = spec.get("sampling", "linear")
    if sampling not in ("linear", "log"):
        raise ValueError(f"{where}['sampling'] must be 'linear' or 'log', got {sampling!r}.")
    if sampling == "log" and low <= 0:
        raise ValueError(f"{where}: log sampling needs min > 0, got {low}.")
    out = {"min": low, "max": high, "sampling": sampling}
    if spec.get("step") is not None:
        out["step"] = _checks.check_positive(f"ranges[{param!r}]['step']", spec["step"])
        if sampling == "log" and not out["step"] > 1:  # KerasTuner's rule: a factor
            raise ValueError(f"{where}['step'] with log sampling is a factor and must be "
                             f"> 1, got {out['step']}.")
    return out


def _check_choices(method, param, spec):
    values = tuple(_checked_value(method, param, v) for v in spec)
    if not values:
        raise ValueError(f"`ranges[{param!r}]` is empty.")
    if len(set(values)) != len(values):
        raise ValueError(f"`ranges[{param!r}]` repeats a value: {list(values)}.")
    return values


def check_range(param, spec, method=None):
    """Validate one search-space entry; return it normalised (tuple, dict or float).

    Args:
        param: the hyperparameter's name.
        spec: a list of values, a dict with min/max, or a number (see the
            module docstring).
        method: the Method (or registered name, or `module:attribute`) whose
            domain checks the values; by default the first registered method
            with a hyperparameter called `param` (e.g. LS for "epsilon").
    """
    if not isinstance(param, str):
        raise TypeError(f"`param` must be a hyperparameter name (a string), got {param!r}.")
    method = _owner(param) if method is None else methods.resolve(method)
    if param not in method.params:
        raise ValueError(f"unknown hyperparameter {param!r} in `ranges`; method "
                         f"{method.name!r} has: {', '.join(method.params) or 'none'}.")
    if isinstance(spec, dict):
        return _check_interval(method, param, spec)
    if isinstance(spec, (list, tuple, np.ndarray)):
        return _check_choices(method, param, spec)
    if isinstance(spec, (int, float, np.number)) and not isinstance(spec, bool):
        return _checked_value(method, param, spec)
    raise TypeError(f"`ranges[{param!r}]` must be a list of values, a dict with min/max, or a "
                    f"number; got {spec!r}.")


def _default_space(method, grid):
    """`{param: spec}` from the method's tuning ranges (grid None) or from a named grid."""
    if grid is None:
        space = method.search_space()
        return {p: dict(s) if isinstance(s, dict) else float(s) for p, s in space.items()}
    values = method.grid(grid)
    return {p: tuple(method.check(p, v) for v in values[p]) for p in method.params}


def resolve_ranges(method, ranges=None, grid=None):
    """The validated search space `{param: spec}` of every hyperparameter of `method`.

    Args:
        method: a Method, a registered name or `module:attribute`.
        ranges: overrides per hyperparameter (see the module docstring).
        grid: None for the method's tuning ranges, or a grid name
            (`keras_smooth.methods.GRID_NAMES`) or dict of value lists whose
            values are searched as choices.
    """
    method = methods.resolve(method)
    if ranges is not None and not isinstance(ranges, dict):
        raise TypeError(f"`ranges` must be a dict of hyperparameter -> values, got {ranges!r}.")
    ranges = dict(ranges or {})
    named = [p for p in ranges if not isinstance(p, str)]
    if named:
        raise TypeError(f"`ranges` must be keyed by hyperparameter names (strings), got the key "
                        f"{named[0]!r}.")
    extra = set(ranges) - set(method.params)
    if extra:
        raise ValueError(f"method {method.name!r} tunes {', '.join(method.params) or 'nothing'}; "
                         f"`ranges` also names {', '.join(sorted(extra))}.")
    space = _default_space(method, grid)
    for param, spec in ranges.items():
        space[param] = check_range(param, spec, method)
    return space


def _declare(hp, param, spec):
    if isinstance(spec, dict):
        return hp.Float(param, spec["min"], spec["max"], step=spec.get("step"),
                        sampling=spec["sampling"])
    if isinstance(spec, tuple):
        if len(spec) == 1:
            return hp.Fixed(param, spec[0])
        return hp.Choice(param, list(spec), ordered=True)
    return hp.Fixed(param, spec)


# --- the hypermodel ----------------------------------------------------------------------


def _check_teacher_logits(method, teacher_logits, num_classes):
    if teacher_logits is None:
        if method.needs_teacher:
            raise ValueError(f"method {method.name!r} needs the teacher's logits: pass "
                             "`teacher_logits` (its logits on the training inputs).")
        return None
    logits = np.asarray(teacher_logits, dtype="float32")
    if logits.ndim != 2 or logits.shape[1] != num_classes:
        raise ValueError(f"`teacher_logits` must have shape (N, {num_classes}), "
                         f"got {logits.shape}.")
    if not np.isfinite(logits).all():
        raise ValueError("`teacher_logits` contains NaN or infinite values.")
    return logits


def _check_training_data(method, x_train, y_train):
    if (x_train is None) != (y_train is None):
        raise ValueError("pass both `x_train` and `y_train` or neither.")
    if method.loss_from_data is not None and x_train is None:
        raise ValueError(f"method {method.name!r} builds its loss from the training data: pass "
                         "`x_train` and `y_train` (the inputs and labels `fit` trains on).")
    if x_train is not None and len(x_train) != len(y_train):
        raise ValueError(f"`x_train` has {len(x_train)} rows but `y_train` has {len(y_train)}.")


class MethodHyperModel(keras_tuner.HyperModel):
    """A network, a method's loss, targets and callbacks, and the search space of its settings.

    Args:
        method: a `keras_smooth.methods.Method`, a registered name ("ls",
            "beta", ...) or `module:attribute` naming your own Method.
        build_model: `build_model(input_shape, num_classes)` -> uncompiled
            Keras model with logit outputs (a fresh model per call).
        input_shape: shape of one example, e.g. `(2,)` or `(28, 28, 1)`.
        num_classes: K >= 2.
        ranges: overrides of the search space per hyperparameter (see the
            module docstring).
        grid: None (default) to search the method's tuning ranges, or a grid
            name ("paper", "synthetic", ...) whose values are searched.
        teacher_logits: `(N, K)` teacher logits on the training inputs, in the
            order `fit` receives them; required when `method.needs_teacher`.
        calibration_temperature: the teacher's temperature-scaling T* > 0.
        x_train, y_train: the training inputs and labels, for methods whose
            loss is built from the data (`loss_from_data`, e.g. cLS).
        learning_rate: Adam learning rate.
        patience: early stopping of every trial after this many epochs
            without a lower validation NLL (None: train every epoch); the
            tuner keeps the checkpoint of the best epoch either way.
        seed: seeds the weights of every trial's model, so trials differ only
            in their hyperparameters.
        name: the hypermodel's name (default: the method's name).
        distribution: JAX only: a `keras.distribution` distribution (e.g.
            `DataParallel`) each trial's model is built and trained in. It is
            entered in `build` and `fit` themselves, because KerasTuner
            clears Keras's global state (`clear_session`) before every build.

    Examples:
    >>> from keras_smooth import tuning
    >>> hm = tuning.MethodHyperModel("ls", lambda shape, k: None, (2,), 3)
    >>> hm.ranges
    {'epsilon': {'min': 0.001, 'max': 0.2, 'sampling': 'log'}}
    >>> tuning.MethodHyperModel("ls", lambda shape, k: None, (2,), 3, grid="small").ranges
    {'epsilon': (0.05, 0.1, 0.2)}
    """

    def __init__(self, method, build_model, input_shape, num_classes, *, ranges=None, grid=None,
                 teacher_logits=None, calibration_temperature=1.0, x_train=None, y_train=None,
                 learning_rate=1e-3, seed=0, name=None, patience=None, distribution=None):
        self.method = methods.resolve(method)
        if not self.method.tunable:
            raise ValueError(f"method {self.method.name!r} has no hyperparameters to tune.")
        super().__init__(name=name or self.method.name, tunable=True)
        if not callable(build_model):
            raise TypeError("`build_model` must be callable(input_shape, num_classes), "
                            f"got {build_model!r}.")
        self.build_model = build_model
        self.input_shape = _checks.check_shape("input_shape", input_shape)
        self.num_classes = _checks.check_num_classes(num_classes)
        self.learning_rate = _checks.check_positive("learning_rate", learning_rate)
        self.patience = None if patience is None else _checks.check_count("patience", patience, 1)
        self.seed = _arguments.seed("seed", seed)
        self.ranges = resolve_ranges(self.method, ranges, grid)
        self.teacher_logits = _check_teacher_logits(self.method, teacher_logits, self.num_classes)
        self.calibration_temperature = _checks.check_float32_positive(
            "calibration_temperature", calibration_temperature)
        _check_training_data(self.method, x_train, y_train)
        self.x_train = x_train
        self.y_train = None if y_train is None else np.asarray(y_train)
        self.distribution = distribution

    def _scope(self):
        return contextlib.nullcontext() if self.distribution is None else self.distribution.scope()

    @property
    def params(self):
        """Names of the hyperparameters this hypermodel sets, in the method's order."""
        return tuple(self.ranges)

    # --- search space and model -----------------------------------------------------

    def declare_hyperparameters(self, hp):
        for param, spec in self.ranges.items():
            _declare(hp, param, spec)

    def values(self, hp):
        """The trial's hyperparameters as a dict of floats."""
        return {p: float(_declare(hp, p, spec)) for p, spec in self.ranges.items()}

    def context(self, x, y):
        """The `keras_smooth.methods.Context` of training on `(x, y)`."""
        return methods.Context(x_train=x, y_train=y, num_classes=self.num_classes, seed=self.seed,
                               teacher_logits=self.teacher_logits,
                               teacher_temperature=self.calibration_temperature)

    def make_loss(self, values):
        """The Keras loss of one setting (from logits); data-built losses use `x_train`."""
        return self.method.build_loss(values, self.context(self.x_train, self.y_train))

    def build(self, hp):
        with self._scope():
            return self._build_trial(hp)

    def _build_trial(self, hp):
        values = self.values(hp)
        keras.utils.set_random_seed(self.seed)
        model = self.build_model(self.input_shape, self.num_classes)
        if not isinstance(model, keras.Model):
            raise TypeError(f"`build_model` must return a keras.Model, got {type(model).__name__}.")
        loss = self.make_loss(values)
        model = for_loss(model, loss)  # JAX, torch: a learned Q/C matrix trains with the model
        model.compile(optimizer=adam_for_loss(self.learning_rate, loss), loss=loss)
        return model

    # --- training -------------------------------------------------------------------

    def _context_of(self, x, y):
        y = np.asarray(y)
        if (self.method.needs_teacher and self.teacher_logits is not None
                and len(y) != len(self.teacher_logits)):
            raise ValueError(f"`teacher_logits` has {len(self.teacher_logits)} rows but the "
                             f"training labels have {len(y)}: pass the teacher's logits on "
                             "exactly the training inputs.")
        return self.context(x, y)

    def recipe(self, values, x, y, loss=None):
        """The method's `Recipe` of one setting trained on `(x, y)` (`loss`: the compiled one)."""
        return self.method.build(values, self._context_of(x, y), loss=loss)

    def training_targets(self, values, y, x=None):
        """Targets the loss is trained on for labels `y` (class ids or soft rows)."""
        return self.method.build_targets(values, self._context_of(x, y))

    def fit(self, hp, model, x, y, validation_data=None, epochs=1, batch_size=32, callbacks=None,
            initial_epoch=0, shuffle_seed=None, verbose=0, **kwargs):
        """Train one trial; return `{"val_nll": ..., "val_ece": ...}` of its best epoch.

        Batches are shuffled as a function of (seed, epoch) only (`EpochShuffle`),
        so a trial sees the same batches on one device and on several replicas.
        """
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise ValueError("`validation_data=(x_val, y_val)` is required: trials are scored "
                             f"on it; got {type(validation_data).__name__}.")
        x_val, y_val = validation_data
        _checks.check_same_rows("x", len(x), "y", len(y))
        epochs, batch_size, seed, _, _ = check_fit_settings(
            epochs=epochs, batch_size=batch_size,
            seed=self.seed if shuffle_seed is None else shuffle_seed, full_batch=False)
        initial_epoch = _checks.check_count("initial_epoch", initial_epoch)
        if initial_epoch >= epochs:
            raise ValueError(f"`initial_epoch` must be < `epochs` ({epochs}), got {initial_epoch}.")
        tracker = BestValidationNLL(x_val, np.asarray(y_val),
                                    log_names={"nll": "val_nll", "ece": "val_ece"},
                                    patience=self.patience)
        values = self.values(hp)
        recipe = self.recipe(values, x, y, loss=getattr(model, "loss", None))
        shuffle = EpochShuffle(x, recipe.targets, batch_size, seed)
        # The tracker goes before the tuner's callbacks: they read the logs it writes.
        try:
            with self._scope():
                model.fit(shuffle.dataset, epochs=epochs, initial_epoch=initial_epoch,
                          verbose=verbose, shuffle=False,
                          callbacks=[shuffle, tracker, *recipe.callbacks, *(callbacks or [])],
                          **kwargs)
        except (keras_tuner.errors.FailedTrialError, keras_tuner.errors.FatalError):
            raise  # KerasTuner's own signals
        except Exception as error:  # Keras reports deep inside; name the method and setting
            raise training_failure(self.method, values, error) from error
        return {"val_nll": float(tracker.best_nll), "val_ece": float(tracker.best_ece)}


# --- the hypermodels of earlier versions, kept for existing code -------------------------


class SmoothingHyperModel(MethodHyperModel):
    """`MethodHyperModel` of the class attribute `method_name`, searching the paper's grid.

    The base of `LSHyperModel`, `LLSHyperModel`, `LSPlusPlusHyperModel` and
    `ILSHyperModel`, kept so that code written for them runs unchanged: the
    method is fixed by the class and `grid` defaults to "paper" (ILS paper
    appendix C), their search space before the registry. New code:
    `MethodHyperModel(method, ...)`.
    """

    method_name = None

    def __init__(self, build_model, input_shape, num_classes, *, grid="paper", **kwargs):
        if self.method_name is None:
            raise TypeError("SmoothingHyperModel needs a method: use "
                            "MethodHyperModel(method, build_model, input_shape, num_classes).")
        super().__init__(self.method_name, build_model, input_shape, num_classes, grid=grid,
                         **kwargs)


class LSHyperModel(SmoothingHyperModel):
    """Uniform label smoothing (Szegedy et al.); tunes ε."""

    method_name = "ls"


class LLSHyperModel(SmoothingHyperModel):
    """Learnable label smoothing (LLS Eq. 4–5); tunes the mixing weight α."""

    method_name = "lls"


class LSPlusPlusHyperModel(SmoothingHyperModel):
    """Label Smoothing++ (LS++ §3.2, Eq. 3); tunes the mixing weight α."""

    method_name = "lspp"


class ILSHyperModel(SmoothingHyperModel):
    """Instance-based label smoothing from a fixed, temperature-scaled teacher.

    `variant` picks what is tuned: "ils" (P1, P2, T; ILS paper Eq. 3–5),
    "ils1" (P1, P2; Eq. 3) or "ils2" (ε, T; Eq. 4). The teacher is an input,
    not part of a trial: pass its logits on the training inputs (row i for
    `x[i]`) and its fitted calibration temperature T*. Every trial turns
    them into soft targets with `ILSTargets`; no trial trains a teacher.

    Args:
        teacher_logits: `(N, K)` teacher logits on the training inputs, in
            the order `fit` receives them.
        calibration_temperature: the teacher's temperature-scaling T* > 0.
        variant: "ils", "ils1" or "ils2".
        **kwargs: see `MethodHyperModel` (`grid` defaults to "paper").
    """

    # {variant: its hyperparameters}, from the registry.
    VARIANTS = {n: tuple(methods.get(n).params) for n in ("ils", "ils1", "ils2")}

    def __init__(self, build_model, input_shape, num_classes, *, teacher_logits,
                 calibration_temperature=1.0, variant="ils", **kwargs):
        if not isinstance(variant, str) or variant not in self.VARIANTS:
            raise ValueError(f"`variant` must be one of {tuple(self.VARIANTS)}, got {variant!r}.")
        self.method_name = variant
        super().__init__(build_model, input_shape, num_classes, teacher_logits=teacher_logits,
                         calibration_temperature=calibration_temperature, **kwargs)
