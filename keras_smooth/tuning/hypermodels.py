"""KerasTuner hypermodels for the smoothing methods.

Each hypermodel builds the user's network (`build_model(input_shape,
num_classes)` returning an uncompiled model with logit outputs), compiles it
with the method's loss at the trial's hyperparameters and trains it with
`fit(hp, model, x, y, validation_data=(x_val, y_val), ...)`. Every epoch it
writes the validation cross-entropy against the hard labels (`val_nll`) and
the 15-bin ECE (`val_ece`) into the Keras logs, where KerasTuner's best-epoch
checkpoint reads them, and it returns both for the epoch of lowest `val_nll`
(the ILS paper selects by validation cross-entropy, §VI-a).

The search space of a hyperparameter is given in `ranges`:

- a list or tuple of values: `hp.Choice` (the paper's grids are lists);
- a dict `{"min": a, "max": b}` with optional `"sampling"` ("linear" or
  "log") and `"step"`: `hp.Float`;
- a single number: `hp.Fixed`.

Parameters not in `ranges` take the grid named by `grid` (see
`keras_smooth.workflows.methods.GRIDS`; "paper" is ILS paper appendix C).
"""

import keras
import keras_tuner
import numpy as np

from keras_smooth import _checks, losses
from keras_smooth.layers import ILSTargets
from keras_smooth.workflows import GRIDS  # derived from keras_smooth.methods
from keras_smooth.workflows.training import BestValidationNLL, EpochShuffle

# (checker, domain text) per hyperparameter.
DOMAINS = {
    "epsilon": (_checks.check_fraction, "[0, 1)"),
    "alpha": (_checks.check_fraction, "[0, 1)"),
    "p1": (_checks.check_unit_interval, "[0, 1]"),
    "p2": (_checks.check_non_negative, ">= 0"),
    "temperature": (_checks.check_positive, "> 0"),
}

OBJECTIVES = ("val_nll", "val_ece")


def objective(name="val_nll"):
    """The `keras_tuner.Objective` for "val_nll" (default) or "val_ece"; both are minimised."""
    if name not in OBJECTIVES:
        raise ValueError(f"`objective` must be one of {OBJECTIVES}, got {name!r}.")
    return keras_tuner.Objective(name, direction="min")


def _check_value(param, value):
    check, _ = DOMAINS[param]
    return check(param, value)


def check_range(param, spec):
    """Validate one search-space entry; return it normalised (tuple, dict or float)."""
    if param not in DOMAINS:
        raise ValueError(f"unknown hyperparameter {param!r} in `ranges`; known: {', '.join(DOMAINS)}.")
    if isinstance(spec, dict):
        unknown = set(spec) - {"min", "max", "sampling", "step"}
        if unknown or "min" not in spec or "max" not in spec:
            raise ValueError(
                f"`ranges[{param!r}]` must have keys min and max (optionally sampling, step), got {spec!r}."
            )
        low, high = _check_value(param, spec["min"]), _check_value(param, spec["max"])
        if not low < high:
            raise ValueError(f"`ranges[{param!r}]` needs min < max, got min={low}, max={high}.")
        sampling = spec.get("sampling", "linear")
        if sampling not in ("linear", "log"):
            raise ValueError(f"`ranges[{param!r}]['sampling']` must be 'linear' or 'log', got {sampling!r}.")
        if sampling == "log" and low <= 0:
            raise ValueError(f"`ranges[{param!r}]`: log sampling needs min > 0, got {low}.")
        out = {"min": low, "max": high, "sampling": sampling}
        if spec.get("step") is not None:
            out["step"] = _checks.check_positive(f"ranges[{param!r}]['step']", spec["step"])
        return out
    if isinstance(spec, (list, tuple, np.ndarray)):
        values = tuple(_check_value(param, v) for v in spec)
        if not values:
            raise ValueError(f"`ranges[{param!r}]` is empty.")
        if len(set(values)) != len(values):
            raise ValueError(f"`ranges[{param!r}]` repeats a value: {list(values)}.")
        return values
    if isinstance(spec, (int, float, np.number)) and not isinstance(spec, bool):
        return _check_value(param, spec)
    raise TypeError(
        f"`ranges[{param!r}]` must be a list of values, a dict with min/max, or a number; got {spec!r}."
    )


def resolve_ranges(method, params, ranges=None, grid="paper"):
    """The validated search space `{param: spec}` of a method's `params`."""
    if isinstance(grid, str):
        if grid not in GRIDS:
            raise ValueError(f"Unknown grid {grid!r}; choose from: {', '.join(GRIDS)}.")
        grid = GRIDS[grid]
    if ranges is not None and not isinstance(ranges, dict):
        raise TypeError(f"`ranges` must be a dict of hyperparameter -> values, got {ranges!r}.")
    ranges = dict(ranges or {})
    extra = set(ranges) - set(params)
    if extra:
        raise ValueError(f"method {method!r} tunes {', '.join(params)}; `ranges` also names "
                         f"{', '.join(sorted(extra))}.")
    return {p: check_range(p, ranges[p] if p in ranges else tuple(grid[p])) for p in params}


def _declare(hp, param, spec):
    if isinstance(spec, dict):
        return hp.Float(param, spec["min"], spec["max"], step=spec.get("step"), sampling=spec["sampling"])
    if isinstance(spec, tuple):
        return hp.Choice(param, list(spec), ordered=True) if len(spec) > 1 else hp.Fixed(param, spec[0])
    return hp.Fixed(param, spec)


class SmoothingHyperModel(keras_tuner.HyperModel):
    """Base class: a network, a method's loss, and the search space of its hyperparameters.

    Args:
        build_model: `build_model(input_shape, num_classes)` -> uncompiled
            Keras model with logit outputs (a fresh model per call).
        input_shape: shape of one example, e.g. `(2,)` or `(28, 28, 1)`.
        num_classes: K >= 2.
        ranges: search space per hyperparameter (see the module docstring);
            missing ones come from `grid`.
        grid: name of a grid in `keras_smooth.workflows.methods.GRIDS`
            ("paper" by default) or a dict of value lists.
        learning_rate: Adam learning rate.
        seed: seeds the weights of every trial's model, so trials differ only
            in their hyperparameters.
    """

    method = None
    params = ()

    def __init__(self, build_model, input_shape, num_classes, *, ranges=None, grid="paper", learning_rate=1e-3,
                 seed=0, name=None):
        super().__init__(name=name or self.method, tunable=True)
        if not callable(build_model):
            raise TypeError(f"`build_model` must be callable(input_shape, num_classes), got {build_model!r}.")
        self.build_model = build_model
        self.input_shape = tuple(int(d) for d in input_shape)
        self.num_classes = _checks.check_num_classes(num_classes)
        self.learning_rate = _checks.check_positive("learning_rate", learning_rate)
        self.seed = int(seed)
        self.ranges = resolve_ranges(self.method, self.params, ranges, grid)

    # --- search space and model -----------------------------------------------------

    def declare_hyperparameters(self, hp):
        for param, spec in self.ranges.items():
            _declare(hp, param, spec)

    def values(self, hp):
        """The trial's hyperparameters as a dict of floats."""
        return {p: float(_declare(hp, p, spec)) for p, spec in self.ranges.items()}

    def make_loss(self, values):
        """The Keras loss for one setting (from logits)."""
        raise NotImplementedError

    def build(self, hp):
        values = self.values(hp)
        keras.utils.set_random_seed(self.seed)
        model = self.build_model(self.input_shape, self.num_classes)
        if not isinstance(model, keras.Model):
            raise TypeError(f"`build_model` must return a keras.Model, got {type(model).__name__}.")
        model.compile(optimizer=keras.optimizers.Adam(self.learning_rate), loss=self.make_loss(values))
        return model

    # --- training -------------------------------------------------------------------

    def training_targets(self, values, y):
        """Targets the loss is trained on (class ids unless overridden)."""
        return np.asarray(y)

    def fit(self, hp, model, x, y, validation_data=None, epochs=1, batch_size=32, callbacks=None,
            initial_epoch=0, shuffle_seed=None, verbose=0, **kwargs):
        """Train one trial; return `{"val_nll": ..., "val_ece": ...}` of its best epoch.

        Batches are shuffled as a function of (seed, epoch) only (`EpochShuffle`),
        so a trial sees the same batches on one device and on several replicas.
        """
        if validation_data is None or len(validation_data) != 2:
            raise ValueError("`validation_data=(x_val, y_val)` is required: trials are scored on it.")
        x_val, y_val = validation_data
        targets = self.training_targets(self.values(hp), y)
        tracker = BestValidationNLL(x_val, np.asarray(y_val), log_names={"nll": "val_nll", "ece": "val_ece"})
        shuffle = EpochShuffle(x, targets, batch_size, self.seed if shuffle_seed is None else shuffle_seed)
        # The tracker goes first: the tuner's callbacks read the logs it writes.
        model.fit(shuffle.dataset, epochs=int(epochs), initial_epoch=int(initial_epoch), verbose=verbose,
                  shuffle=False, callbacks=[shuffle, tracker, *(callbacks or [])], **kwargs)
        return {"val_nll": float(tracker.best_nll), "val_ece": float(tracker.best_ece)}


class LSHyperModel(SmoothingHyperModel):
    """Uniform label smoothing (Szegedy et al.); tunes ε."""

    method = "ls"
    params = ("epsilon",)

    def make_loss(self, values):
        return losses.LabelSmoothingLoss(values["epsilon"])


class LLSHyperModel(SmoothingHyperModel):
    """Learnable label smoothing (LLS Eq. 4–5); tunes the mixing weight α."""

    method = "lls"
    params = ("alpha",)

    def make_loss(self, values):
        return losses.LLSLoss(self.num_classes, alpha=values["alpha"])


class LSPlusPlusHyperModel(SmoothingHyperModel):
    """Label Smoothing++ (LS++ §3.2, Eq. 3); tunes the mixing weight α."""

    method = "lspp"
    params = ("alpha",)

    def make_loss(self, values):
        return losses.LSPlusPlusLoss(self.num_classes, alpha=values["alpha"])


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
        **kwargs: see `SmoothingHyperModel`.
    """

    method = "ils"
    VARIANTS = {"ils": ("p1", "p2", "temperature"), "ils1": ("p1", "p2"), "ils2": ("epsilon", "temperature")}

    def __init__(self, build_model, input_shape, num_classes, *, teacher_logits, calibration_temperature=1.0,
                 variant="ils", **kwargs):
        if variant not in self.VARIANTS:
            raise ValueError(f"`variant` must be one of {tuple(self.VARIANTS)}, got {variant!r}.")
        self.method = variant
        self.params = self.VARIANTS[variant]
        super().__init__(build_model, input_shape, num_classes, **kwargs)
        logits = np.asarray(teacher_logits, dtype="float32")
        if logits.ndim != 2 or logits.shape[1] != self.num_classes:
            raise ValueError(
                f"`teacher_logits` must have shape (N, {self.num_classes}), got {logits.shape}."
            )
        if not np.isfinite(logits).all():
            raise ValueError("`teacher_logits` contains NaN or infinite values.")
        self.teacher_logits = logits
        self.calibration_temperature = _checks.check_positive("calibration_temperature", calibration_temperature)

    def make_loss(self, values):
        return keras.losses.CategoricalCrossentropy(from_logits=True)

    def training_targets(self, values, y):
        y = np.asarray(y)
        if len(y) != len(self.teacher_logits):
            raise ValueError(
                f"`teacher_logits` has {len(self.teacher_logits)} rows but the training labels have {len(y)}: "
                "pass the teacher's logits on exactly the training inputs."
            )
        layer = ILSTargets(
            self.method,
            epsilon=values.get("epsilon", 0.1),
            p1=values.get("p1", 0.9),
            p2=values.get("p2", 1.0),
            temperature=values.get("temperature", 1.0),
            calibration_temperature=self.calibration_temperature,
        )
        return np.asarray(keras.ops.convert_to_numpy(layer(y, self.teacher_logits)), dtype="float32")


HYPERMODELS = {"ls": LSHyperModel, "lls": LLSHyperModel, "lspp": LSPlusPlusHyperModel,
               "ils": ILSHyperModel, "ils1": ILSHyperModel, "ils2": ILSHyperModel}
