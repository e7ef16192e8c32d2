"""The baselines the papers compare against (ILS paper Table III; LLS and LS++ §4).

Each runs in `compare` at its paper's recommended setting (one grid point),
except Beta and cLS, which take LS's epsilon grid. Every hyperparameter has a
tuning range around that setting, so `keras-smooth tune --method NAME` searches it.
"""

from keras_smooth import _checks
from keras_smooth._lazy import lazy_module
from keras_smooth.methods._registry import Method, register
from keras_smooth.methods.paper import cross_entropy, grids_of

calibration = lazy_module("keras_smooth.calibration")  # used by the hooks only
losses = lazy_module("keras_smooth.losses")

import numpy as np

_UNIT = _checks.check_unit_interval
_FRACTION = _checks.check_fraction
_POSITIVE = _checks.check_positive


def _dis_targets(params, context):
    return losses.distillation_targets(context.y_train, context.teacher_logits,
                                       num_classes=context.num_classes)


def _dis_loss(params, num_classes):
    return losses.DistillationLoss(beta=params["beta"], temperature=params["temperature"])


DIS = register(Method(
    "dis", "Dis", params={"beta": (1.0,), "temperature": (1.0,)}, loss=_dis_loss,
    ranges={"beta": (0.1, 1.0), "temperature": (1.0, 16.0)}, log_scale=("temperature",),
    domains={"beta": _UNIT, "temperature": _POSITIVE}, needs_teacher=True, targets=_dis_targets,
    tags=("baselines",),
    description="self-distillation from the No LS teacher (Hinton et al.; beta = 1, T = 1)"))


def _bs_soft_loss(params, num_classes):
    return losses.SoftBootstrappingLoss(beta=params["beta"])


BS_SOFT = register(Method(
    "bs_soft", "BS_Soft", params={"beta": (0.95,)}, loss=_bs_soft_loss,
    ranges={"beta": (0.8, 1.0)}, domains={"beta": _UNIT}, tags=("baselines",),
    description="soft bootstrapping, target beta y + (1 - beta) q (Reed et al.; beta = 0.95)"))


def _beta_targets(params, context):
    labels = np.asarray(context.y_train)
    probs = calibration.apply_temperature(context.teacher_logits, context.teacher_temperature)
    soft, _ = losses.beta_smoothing_targets(labels, probs[np.arange(len(labels)), labels],
                                            context.num_classes, epsilon=params["epsilon"],
                                            seed=context.seed)
    return soft


def _check_beta_epsilon(name, value):
    value = _FRACTION(name, value)
    if not 0 < value < 0.4:
        raise ValueError(f"`{name}` of Beta smoothing must be in (0, 0.4), got {value}.")
    return value


BETA = register(Method(
    "beta", "Beta", **grids_of("epsilon"), loss=cross_entropy, log_scale=("epsilon",),
    domains={"epsilon": _check_beta_epsilon}, needs_teacher=True, targets=_beta_targets,
    tags=("baselines",),
    description="Beta smoothing ranked by the calibrated teacher (Zhang & Sabuncu; mean eps)"))


def _cls_loss(params, context):
    similarity = losses.class_similarity_matrix(context.x_train, context.y_train,
                                                context.num_classes)
    return losses.ClassSimilarityLSLoss(similarity, params["epsilon"])


CLS = register(Method(
    "cls", "cLS", **grids_of("epsilon"), loss_from_data=_cls_loss, log_scale=("epsilon",),
    domains={"epsilon": _FRACTION}, tags=("baselines",),
    description="class-based LS: eps spread by class-centre similarity (Liu & JaJa)"))


def _ols_loss(params, num_classes):
    return losses.OnlineLabelSmoothingLoss(num_classes, alpha=params["alpha"])


def _ols_callbacks(params, loss, context):
    return [losses.OnlineLabelSmoothing(loss, context.x_train, context.y_train)]


OLS = register(Method(
    "ols", "OLS", params={"alpha": (0.5,)}, loss=_ols_loss, callbacks=_ols_callbacks,
    ranges={"alpha": (0.1, 0.9)}, domains={"alpha": _UNIT}, tags=("baselines",),
    description="online LS: per-class mean of last epoch's correct predictions (Zhang et al.)"))


def _tfkd_loss(params, num_classes):
    return losses.TFKDRegularizationLoss(alpha=params["alpha"], temperature=params["temperature"])


TFKD = register(Method(
    "tfkd", "TF-KD reg", params={"alpha": (0.1,), "temperature": (20.0,)}, loss=_tfkd_loss,
    ranges={"alpha": (0.01, 0.5), "temperature": (1.0, 40.0)}, log_scale=("alpha", "temperature"),
    domains={"alpha": _UNIT, "temperature": _POSITIVE}, tags=("baselines",),
    description="teacher-free KD regularisation with a hand-made teacher (Yuan et al.)"))


def _zipf_loss(params, num_classes):
    return losses.ZipfLSLoss(weight=params["weight"])


ZIPF = register(Method(
    "zipf", "Zipf's LS", params={"weight": (1.0,)}, loss=_zipf_loss,
    ranges={"weight": (0.1, 10.0)}, log_scale=("weight",), domains={"weight": _POSITIVE},
    tags=("baselines",),
    description="Zipf's label smoothing from the model's own ranking (Liang et al.)"))


def _mbls_loss(params, num_classes):
    return losses.MarginLSLoss(margin=params["margin"], weight=params["weight"])


MBLS = register(Method(
    "mbls", "MbLS", params={"margin": (10.0,), "weight": (0.1,)}, loss=_mbls_loss,
    ranges={"margin": (1.0, 20.0), "weight": (0.01, 1.0)}, log_scale=("weight",),
    domains={"margin": _POSITIVE, "weight": _POSITIVE}, tags=("baselines",),
    description="margin-based LS: logit distances above a margin penalised (Liu et al.)"))


def _flsd_loss(params, num_classes):
    return losses.AdaptiveFocalLoss(gamma_low=params["gamma_low"], gamma_high=params["gamma_high"])


FLSD = register(Method(
    "flsd", "FLSD-53", params={"gamma_low": (5.0,), "gamma_high": (3.0,)}, loss=_flsd_loss,
    ranges={"gamma_low": (1.0, 8.0), "gamma_high": (1.0, 8.0)},
    domains={"gamma_low": _checks.check_non_negative, "gamma_high": _checks.check_non_negative},
    tags=("baselines",),
    description="focal loss, gamma 5 below p = 0.2 and 3 above (Mukhoti et al.)"))


