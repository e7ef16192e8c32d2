"""Losses of keras_smooth: one family per module, each class with a function twin."""

from keras_smooth.losses._learnable import LearnableTargetLoss
from keras_smooth.losses.distillation import (
    DistillationLoss,
    SubstituteTeacherLoss,
    distillation_loss,
    distillation_targets,
    substitute_teacher_loss,
)
from keras_smooth.losses.lls import LLSLoss, lls_loss
from keras_smooth.losses.lspp import LSPlusPlusLoss, lspp_loss
from keras_smooth.losses.smoothing import LabelSmoothingLoss, label_smoothing_loss

__all__ = [
    "DistillationLoss",
    "LLSLoss",
    "LSPlusPlusLoss",
    "LabelSmoothingLoss",
    "LearnableTargetLoss",
    "SubstituteTeacherLoss",
    "distillation_loss",
    "distillation_targets",
    "label_smoothing_loss",
    "lls_loss",
    "lspp_loss",
    "substitute_teacher_loss",
]
