"""Old home of the papers' baseline losses, kept so existing imports keep working.

The baselines now live one family per module (`bootstrapping`, `focal`,
`margin`, `teacher_free`, `class_similarity`, `online`), Beta smoothing in
`keras_smooth.targets.beta_smoothing`, and the OLS callback in
`keras_smooth.callbacks`. Import them from `keras_smooth.losses` (or those
modules). Saved `.keras` files name the losses by their registered names
(`keras_smooth>SoftBootstrappingLoss`, ...), which did not change.
"""

from keras_smooth.losses.bootstrapping import SoftBootstrappingLoss, soft_bootstrapping_loss
from keras_smooth.losses.class_similarity import ClassSimilarityLSLoss, class_similarity_matrix
from keras_smooth.losses.focal import AdaptiveFocalLoss, adaptive_focal_loss
from keras_smooth.losses.margin import MarginLSLoss, margin_ls_loss
from keras_smooth.losses.online import OnlineLabelSmoothingLoss, online_soft_matrix
from keras_smooth.losses.teacher_free import (
    TFKDRegularizationLoss,
    ZipfLSLoss,
    tf_kd_regularization_loss,
    zipf_ls_loss,
    zipf_targets,
)
from keras_smooth.targets import beta_smoothing as beta_smoothing_targets

__all__ = [
    "AdaptiveFocalLoss",
    "ClassSimilarityLSLoss",
    "MarginLSLoss",
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
]


def __getattr__(name):
    # The callback sits above the losses, so this module does not import it; the
    # package's __init__ hands it to `keras_smooth.losses`, where it is found.
    if name == "OnlineLabelSmoothing":
        from keras_smooth import losses

        return losses.OnlineLabelSmoothing
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
