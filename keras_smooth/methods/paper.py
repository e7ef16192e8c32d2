"""The methods of the three papers: No LS, LS, ILS1/ILS2/ILS, LLS, LS++ and "+ TempS" rows.

Grids: "paper" is the ILS paper's appendix C (real data); "synthetic" is the
grid its appendix gives for the synthetic task; "synthetic-small" has fewer
points over that grid's span (P1 around 0.8); "small" keeps a default run to a few
minutes; "quick" is one setting. LLS and LS++ use alpha = 0.1 in every grid
(LS++ paper §4; LLS paper appendix C), and the tuner searches alpha in
[0.05, 0.5], the range the LLS paper's Figure 7 studies.
"""

import numpy as np

from keras_smooth import _checks
from keras_smooth._lazy import lazy_module
from keras_smooth.methods._registry import Method, register

# Keras objects are built by the hooks only: reading the registry (`--help`) imports no framework.
keras = lazy_module("keras")
losses = lazy_module("keras_smooth.losses")
layers = lazy_module("keras_smooth.layers")

EPSILON = {
    "paper": (0.01, 0.05, 0.1, 0.15, 0.2),
    "synthetic": (0.001, 0.005, 0.01, 0.03, 0.05, 0.07, 0.09, 0.11, 0.13, 0.15, 0.17, 0.19),
    "synthetic-small": (0.01, 0.05, 0.1, 0.15),
    "small": (0.05, 0.1, 0.2),
    "quick": (0.1,),
}
P1 = {
    "paper": (0.975, 0.95, 0.925, 0.9, 0.85),
    "synthetic": (0.75, 0.775, 0.8, 0.825, 0.85),
    "synthetic-small": (0.75, 0.8, 0.85),
    "small": (0.95, 0.9, 0.85),
    "quick": (0.9,),
}
P2 = {
    "paper": (0.75, 1.0, 1.25, 1.5, 2.0),
    "synthetic": (0.75, 1.0, 1.25, 1.5, 1.75, 2.0),
    "synthetic-small": (1.0, 2.0),
    "small": (1.0, 2.0),
    "quick": (1.5,),
}
TEMPERATURE = {
    "paper": (1.0, 2.0, 4.0, 8.0, 16.0),
    "synthetic": (1.0, 2.0, 4.0, 6.0),
    "synthetic-small": (1.0, 4.0),
    "small": (1.0, 4.0),
    "quick": (2.0,),
}
COLUMNS = {"epsilon": EPSILON, "p1": P1, "p2": P2, "temperature": TEMPERATURE}

# What each hyperparameter may be (the target builders and losses refuse the rest).
DOMAINS = {
    "epsilon": _checks.check_fraction,
    "alpha": _checks.check_fraction,
    "p1": _checks.check_unit_interval,
    "p2": _checks.check_non_negative,
    "temperature": _checks.check_positive,
}


def domains_of(*params):
    """The `domains` of a method with hyperparameters `params`, from `DOMAINS`."""
    return {p: DOMAINS[p] for p in params}


def grids_of(*params):
    """`Method` keywords (`params`, `grids`) of a method tuning `params`, from the columns above."""
    grids = {g: {p: COLUMNS[p][g] for p in params} for g in EPSILON}
    return {"params": grids["small"], "grids": grids}


def cross_entropy(params, num_classes):
    """Cross-entropy on (soft) target rows, from logits."""
    return keras.losses.CategoricalCrossentropy(from_logits=True)


def sparse_cross_entropy(params, num_classes):
    """Cross-entropy on class ids, from logits (No LS)."""
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


NO_LS = register(Method(
    "no_ls", "No LS", loss=sparse_cross_entropy, uses_teacher_model=True, tags=("default",),
    description="cross-entropy on one-hot labels; the teacher of ILS"))
NO_LS_TEMPS = register(Method(
    "no_ls_temps", "No LS + TempS", temperature_of="no_ls", tags=("default",),
    description="No LS with a temperature fitted on the validation split"))


def _ls_loss(params, num_classes):
    return losses.LabelSmoothingLoss(params["epsilon"], num_classes=num_classes)


LS = register(Method(
    "ls", "LS", **grids_of("epsilon"), loss=_ls_loss, log_scale=("epsilon",),
    domains=domains_of("epsilon"),
    tags=("default",), description="uniform label smoothing, target (1 - eps) y + eps / K"))
LS_TEMPS = register(Method(
    "ls_temps", "LS + TempS", temperature_of="ls", tags=("default",),
    description="LS with a temperature fitted on the validation split"))


def _ils_targets(variant):
    def targets(params, context):
        layer = layers.ILSTargets(
            variant,
            epsilon=params.get("epsilon", 0.1),
            p1=params.get("p1", 0.9),
            p2=params.get("p2", 1.0),
            temperature=params.get("temperature", 1.0),
            calibration_temperature=context.teacher_temperature,
        )
        soft = layer(np.asarray(context.y_train), np.asarray(context.teacher_logits, "float32"))
        return np.asarray(keras.ops.convert_to_numpy(soft), dtype="float32")

    targets.__qualname__ = f"ils_targets_{variant}"
    return targets


def _ils(name, label, params, description, tags=("default",)):
    return register(Method(
        name, label, **grids_of(*params), loss=cross_entropy,
        log_scale=[p for p in params if p in ("epsilon", "temperature")],
        domains=domains_of(*params), needs_teacher=True, targets=_ils_targets(name), same_loss=True,
        tags=tags, description=description))


ILS1 = _ils("ils1", "ILS1", ("p1", "p2"),
            "instance-based eps_x = min(0.2, P2 (p_t - P1)^2) from the teacher, spread uniformly")
ILS2 = _ils("ils2", "ILS2", ("epsilon", "temperature"),
            "fixed eps spread over wrong classes by the teacher's probabilities at T")
ILS = _ils("ils", "ILS", ("p1", "p2", "temperature"),
           "eps_x of ILS1 spread like ILS2 (ILS paper §IV-C)")
ILS_TEMPS = register(Method(
    "ils_temps", "ILS + TempS", temperature_of="ils", tags=("default",),
    description="ILS with a temperature fitted on the validation split"))

ALPHA = {"params": {"alpha": (0.1,)}, "ranges": {"alpha": (0.05, 0.5)}}


def _lls_loss(params, num_classes):
    return losses.LLSLoss(num_classes, alpha=params["alpha"])


def _lspp_loss(params, num_classes):
    return losses.LSPlusPlusLoss(num_classes, alpha=params["alpha"])


LLS = register(Method(
    "lls", "LLS", loss=_lls_loss, domains=domains_of("alpha"), tags=("default",),
    description="learnable K x K Q-matrix of targets, symmetric KL (LLS paper Eq. 4-5)", **ALPHA))
LSPP = register(Method(
    "lspp", "LS++", loss=_lspp_loss, domains=domains_of("alpha"), tags=("default",),
    description="learnable zero-diagonal C-matrix, split gradients (LS++ paper Eq. 3)", **ALPHA))
