"""Losses of keras_smooth: one family per module, each class with a function twin.

Modules: `smoothing` (LS), `lls`, `lspp`, `distillation` (cached teacher
logits, substitute teacher), and the papers' baselines by family:
`bootstrapping` (BS_Soft), `focal` (FLSD-53), `margin` (MbLS),
`teacher_free` (TF-KD reg, Zipf's LS), `class_similarity` (cLS) and
`online` (OLS). Self-distillation (Dis) is `DistillationLoss(beta=1.0,
temperature=1.0)` on a teacher of the same architecture (ILS paper §VI,
Appendix D). The targets they train on are built in `keras_smooth.targets`.

What every loss checks (and what it does not):

* Labels. Class ids must be whole numbers in [0, K) (`Loss.__call__` hands
  them over as floats; 1.5 is refused, never rounded); `(N, K)` rows must be
  one-hot (0/1 with exactly one 1). `LabelSmoothingLoss` and
  `DistillationLoss` also take soft label rows (non-negative, summing to 1
  within 1e-3). Eager calls raise `ValueError` naming `y_true` and the bad
  value. Inside `model.fit` (traced): TensorFlow graphs raise
  `InvalidArgumentError` with the same wording on the first bad batch; JAX
  raises `JaxRuntimeError` wrapping the `ValueError` (through
  `jax.debug.callback`); where neither can raise (TensorFlow with
  `jit_compile=True`, which drops asserts) the bad samples' losses are NaN.
* Predictions. `y_pred` must be `(N, K)` with K >= 2 matching `num_classes`
  (`ValueError` naming both shapes). With `from_logits=False` a batch counts
  as probabilities only if every value is in [0, 1] and every row sums to 1
  within 1e-3; any other batch is treated as logits (softmax). A NaN in a row
  of `y_pred` makes that sample's loss NaN; nothing is replaced silently.
* Hyperparameters are checked when the loss is built (`TypeError` for
  non-numbers, `ValueError` naming the argument and value for NaN, inf or
  out-of-range values).
* An empty batch returns what Keras's own losses return (an empty tensor).
* Precision. Per-sample values and the reduction are float32 even for a
  16-bit `dtype` (`"mixed_float16"`, `"mixed_bfloat16"`, ...); only the result
  is cast, so a batch sum cannot overflow float16 before the mean. Gradients
  stay finite at saturated (margin 50) and +-1e4 logits.
"""

from keras_smooth.losses._learnable import LearnableTargetLoss
from keras_smooth.losses.bootstrapping import SoftBootstrappingLoss, soft_bootstrapping_loss
from keras_smooth.losses.class_similarity import ClassSimilarityLSLoss, class_similarity_matrix
from keras_smooth.losses.distillation import (
    DistillationLoss,
    SubstituteTeacherLoss,
    distillation_loss,
    distillation_targets,
    substitute_teacher_loss,
)
from keras_smooth.losses.focal import AdaptiveFocalLoss, adaptive_focal_loss
from keras_smooth.losses.lls import LLSLoss, lls_loss
from keras_smooth.losses.lspp import LSPlusPlusLoss, lspp_loss
from keras_smooth.losses.margin import MarginLSLoss, margin_ls_loss
from keras_smooth.losses.online import OnlineLabelSmoothingLoss, online_soft_matrix
from keras_smooth.losses.smoothing import LabelSmoothingLoss, label_smoothing_loss
from keras_smooth.losses.teacher_free import (
    TFKDRegularizationLoss,
    ZipfLSLoss,
    tf_kd_regularization_loss,
    zipf_ls_loss,
    zipf_targets,
)
from keras_smooth.targets import beta_smoothing as beta_smoothing_targets

# `OnlineLabelSmoothing`, the callback of OLS, lives in `keras_smooth.callbacks`
# (callbacks sit above losses). `keras_smooth/__init__.py` hands it to this module
# once Keras is imported; `__getattr__` answers the old address before that.


def __getattr__(name):
    if name == "OnlineLabelSmoothing":  # the old address of the callback, kept working
        import importlib

        return importlib.import_module("keras_smooth.callbacks").OnlineLabelSmoothing
    raise AttributeError(f"module 'keras_smooth.losses' has no attribute {name!r}")

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
