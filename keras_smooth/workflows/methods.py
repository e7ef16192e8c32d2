"""The methods `keras-smooth compare` runs, their grids, and how each is trained.

Every method ends in validation and test logits of one selected model, chosen
by validation cross-entropy against the hard labels (ILS paper §VI-a). The
"+ TempS" variants reuse the selected model of their base method and add a
temperature fitted on the validation set; they train nothing.
"""

import itertools

import keras
import numpy as np

from keras_smooth import calibration, losses
from keras_smooth.layers import ILSTargets
from keras_smooth.workflows.training import ReusableModel, fit_classifier

# "paper": ILS paper appendix C (real data). "synthetic": the grids its
# appendix gives for the synthetic task. "synthetic-small" keeps that grid's
# centre (P1 around 0.8) with fewer points; "small" keeps the default run to a
# few minutes.
GRIDS = {
    "synthetic": {
        "epsilon": (0.001, 0.005, 0.01, 0.03, 0.05, 0.07, 0.09, 0.11, 0.13, 0.15, 0.17, 0.19),
        "p1": (0.75, 0.775, 0.8, 0.825, 0.85),
        "p2": (0.75, 1.0, 1.25, 1.5, 1.75, 2.0),
        "temperature": (1.0, 2.0, 4.0, 6.0),
        "alpha": (0.1,),
    },
    "synthetic-small": {
        "epsilon": (0.01, 0.05, 0.1, 0.15),
        "p1": (0.75, 0.8, 0.85),
        "p2": (1.0, 2.0),
        "temperature": (1.0, 4.0),
        "alpha": (0.1,),
    },
    "paper": {
        "epsilon": (0.01, 0.05, 0.1, 0.15, 0.2),
        "p1": (0.975, 0.95, 0.925, 0.9, 0.85),
        "p2": (0.75, 1.0, 1.25, 1.5, 2.0),
        "temperature": (1.0, 2.0, 4.0, 8.0, 16.0),
        "alpha": (0.1,),
    },
    "small": {
        "epsilon": (0.05, 0.1, 0.2),
        "p1": (0.95, 0.9, 0.85),
        "p2": (1.0, 2.0),
        "temperature": (1.0, 4.0),
        "alpha": (0.1,),
    },
    "quick": {
        "epsilon": (0.1,),
        "p1": (0.9,),
        "p2": (1.5,),
        "temperature": (2.0,),
        "alpha": (0.1,),
    },
}

# The baselines the papers compare against (ILS Table III; LLS and LS++ §4),
# each at its paper's recommended setting; Beta and cLS tune epsilon like LS.
BASELINE_METHODS = ("dis", "bs_soft", "beta", "cls", "ols", "tfkd", "zipf", "mbls", "flsd")
BASE_METHODS = ("no_ls", "ls", "ils1", "ils2", "ils", "lls", "lspp") + BASELINE_METHODS
TEMPS_OF = {"no_ls_temps": "no_ls", "ls_temps": "ls", "ils_temps": "ils"}
METHODS = ("no_ls", "no_ls_temps", "ls", "ls_temps", "ils1", "ils2", "ils", "ils_temps", "lls", "lspp")
ALL_METHODS = METHODS + BASELINE_METHODS
LABELS = {
    "no_ls": "No LS", "no_ls_temps": "No LS + TempS", "ls": "LS", "ls_temps": "LS + TempS",
    "ils1": "ILS1", "ils2": "ILS2", "ils": "ILS", "ils_temps": "ILS + TempS", "lls": "LLS", "lspp": "LS++",
    "dis": "Dis", "bs_soft": "BS_Soft", "beta": "Beta", "cls": "cLS", "ols": "OLS", "tfkd": "TF-KD reg",
    "zipf": "Zipf's LS", "mbls": "MbLS", "flsd": "FLSD-53",
}
GROUPS = {"default": METHODS, "all": ALL_METHODS, "baselines": BASELINE_METHODS}


def parse_methods(text):
    """Comma-separated method names or groups -> tuple; unknown names list the valid ones.

    Groups: "default" (No LS, LS, ILS family, LLS, LS++ with the TempS rows),
    "baselines" (Dis, BS_Soft, Beta, cLS, OLS, TF-KD reg, Zipf's LS, MbLS,
    FLSD-53) and "all".
    """
    if text in (None, ""):
        return METHODS
    names = []
    for name in (n.strip() for n in text.split(",") if n.strip()):
        names += list(GROUPS.get(name, (name,)))
    names = tuple(dict.fromkeys(names))
    unknown = [n for n in names if n not in ALL_METHODS]
    if unknown or not names:
        raise ValueError(f"Unknown method(s) {', '.join(unknown) or text!r}; choose from: "
                         f"{', '.join(ALL_METHODS)} (or default, baselines, all).")
    return names


def grid_points(method, grid):
    """The hyperparameter settings a base method tries."""
    g = GRIDS[grid] if isinstance(grid, str) else grid
    if method == "no_ls":
        return [{}]
    if method == "ls":
        return [{"epsilon": e} for e in g["epsilon"]]
    if method == "ils1":
        return [{"p1": a, "p2": b} for a, b in itertools.product(g["p1"], g["p2"])]
    if method == "ils2":
        return [{"epsilon": e, "temperature": t} for e, t in itertools.product(g["epsilon"], g["temperature"])]
    if method == "ils":
        return [{"p1": a, "p2": b, "temperature": t}
                for a, b, t in itertools.product(g["p1"], g["p2"], g["temperature"])]
    if method in ("lls", "lspp"):
        return [{"alpha": a} for a in g["alpha"]]
    if method in ("beta", "cls"):
        return [{"epsilon": e} for e in g["epsilon"]]
    if method in BASELINE_METHODS:
        return [{}]
    raise ValueError(f"{method!r} is not a base method.")


def _baseline_setup(method, params, data, teacher, seed):
    """(targets, loss factory, callbacks factory) of a baseline at one grid point."""
    k = data.num_classes
    cce = lambda: keras.losses.CategoricalCrossentropy(from_logits=True)  # noqa: E731
    no_callbacks = lambda loss: []  # noqa: E731
    if method == "dis":  # one-level self-distillation: the No LS teacher's probabilities, T = 1
        return (losses.distillation_targets(data.y_train, teacher.logits["train"]),
                lambda: losses.DistillationLoss(beta=1.0, temperature=1.0), no_callbacks)
    if method == "beta":  # ranked by the calibrated teacher's probability of the label
        probs = calibration.apply_temperature(teacher.logits["train"], teacher.temperature)
        soft, _ = losses.beta_smoothing_targets(data.y_train, probs[np.arange(len(data.y_train)), data.y_train],
                                                k, epsilon=params["epsilon"], seed=seed)
        return soft, cce, no_callbacks
    if method == "cls":
        similarity = losses.class_similarity_matrix(data.x_train, data.y_train, k)
        return data.y_train, lambda: losses.ClassSimilarityLSLoss(similarity, params["epsilon"]), no_callbacks
    if method == "ols":
        return (data.y_train, lambda: losses.OnlineLabelSmoothingLoss(k),
                lambda loss: [losses.OnlineLabelSmoothing(loss, data.x_train, data.y_train)])
    factories = {"bs_soft": losses.SoftBootstrappingLoss, "tfkd": losses.TFKDRegularizationLoss,
                 "zipf": losses.ZipfLSLoss, "mbls": losses.MarginLSLoss, "flsd": losses.AdaptiveFocalLoss}
    return data.y_train, factories[method], no_callbacks


def _training_setup(method, params, data, teacher):
    """(targets, loss factory) for one grid point."""
    k = data.num_classes
    if method == "ls":
        return data.y_train, lambda: losses.LabelSmoothingLoss(params["epsilon"])
    if method in ("ils1", "ils2", "ils"):
        layer = ILSTargets(
            method,
            epsilon=params.get("epsilon", 0.1),
            p1=params.get("p1", 0.9),
            p2=params.get("p2", 1.0),
            temperature=params.get("temperature", 1.0),
            calibration_temperature=teacher.temperature,
        )
        soft = np.asarray(keras.ops.convert_to_numpy(layer(data.y_train, teacher.logits["train"])))
        return soft, lambda: keras.losses.CategoricalCrossentropy(from_logits=True)
    if method == "lls":
        return data.y_train, lambda: losses.LLSLoss(k, alpha=params["alpha"])
    if method == "lspp":
        return data.y_train, lambda: losses.LSPlusPlusLoss(k, alpha=params["alpha"])
    raise ValueError(f"{method!r} is not trained by a grid.")


def train_method(method, data, teacher, build_model, *, grid, epochs, batch_size, seed, extra_inputs=None,
                 progress=None):
    """Train every grid point of `method`; keep the best by validation NLL.

    Returns:
        dict with `val_logits`, `test_logits`, `params`, `val_nll`,
        `best_epoch`, `students` (number trained), optional `matrix` (LLS/LS++,
        and the class matrices of OLS and cLS), `extra_logits` (logits on
        `extra_inputs`, e.g. a plotting grid) and `model` (the selected model;
        None for ILS, whose grid points share and retrain one model).
    """
    if method == "no_ls":
        raise ValueError("No LS is the teacher; take it from `train_teacher`.")
    points = grid_points(method, grid)
    best = None
    shared = None  # ILS students share one loss: one compiled model serves every grid point
    for i, params in enumerate(points):
        make_callbacks = lambda loss: []  # noqa: E731
        if method in BASELINE_METHODS:
            targets, make_loss, make_callbacks = _baseline_setup(method, params, data, teacher, seed)
        else:
            targets, make_loss = _training_setup(method, params, data, teacher)
        loss = make_loss()
        if method in ("ils1", "ils2", "ils") and shared is None:
            shared = ReusableModel(build_model, data, loss, seed, 1e-3)
        report = None
        if progress is not None:
            report = lambda e, n, i=i: progress(i + 1, len(points), e, n)  # noqa: E731
        trained = fit_classifier(build_model, data, targets, loss, epochs=epochs, batch_size=batch_size,
                                 seed=seed, progress=report, reusable=shared, callbacks=make_callbacks(loss))
        if best is None or trained.best_val_nll < best["val_nll"]:
            model = trained.model
            best = {
                "params": dict(params),
                "val_nll": trained.best_val_nll,
                "best_epoch": trained.best_epoch,
                "val_logits": model.predict(data.x_val, batch_size=1024, verbose=0),
                "test_logits": model.predict(data.x_test, batch_size=1024, verbose=0),
                "extra_logits": None if extra_inputs is None else model.predict(extra_inputs, batch_size=4096, verbose=0),
                "matrix": loss.matrix.tolist() if hasattr(loss, "matrix") else None,
                "model": model if shared is None else None,  # a shared model is retrained next
            }
    best["students"] = len(points)
    return best
