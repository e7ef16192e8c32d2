"""Losses of keras_smooth: one family per module, each class with a function twin."""

from keras_smooth.losses._learnable import LearnableTargetLoss
from keras_smooth.losses.baselines import (
    AdaptiveFocalLoss,
    ClassSimilarityLSLoss,
    MarginLSLoss,
    OnlineLabelSmoothing,
    OnlineLabelSmoothingLoss,
    SoftBootstrappingLoss,
    TFKDRegularizationLoss,
    ZipfLSLoss,
    adaptive_focal_loss,
    beta_smoothing_targets,
    class_similarity_matrix,
    margin_ls_loss,
    online_soft_matrix,
    soft_bootstrapping_loss,
    tf_kd_regularization_loss,
    zipf_ls_loss,
    zipf_targets,
)
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
    "AdaptiveFocalLoss",
    "ClassSimilarityLSLoss",
    "MarginLSLoss",
    "OnlineLabelSmoothing",
    "OnlineLabelSmoothingLoss",
    "SoftBootstrappingLoss",
    "TFKDRegularizationLoss",
    "ZipfLSLoss",
    "adaptive_focal_loss",
    "beta_smoothing_targets",
    "class_similarity_matrix",
    "margin_ls_loss",
    "online_soft_matrix",
    "soft_bootstrapping_loss",
    "tf_kd_regularization_loss",
    "zipf_ls_loss",
    "zipf_targets",
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
