"""keras_smooth: label-regularization losses and calibration tools for Keras 3.

Data flows one way: `targets` (pure functions) -> `layers`/`losses` (thin Keras
objects) -> workflows and entry points.
"""

from keras_smooth import datasets
from keras_smooth import layers
from keras_smooth import losses
from keras_smooth import targets
from keras_smooth.layers import ILSTargets, QMatrix
from keras_smooth.losses import (
    DistillationLoss,
    LabelSmoothingLoss,
    LLSLoss,
    LSPlusPlusLoss,
    SubstituteTeacherLoss,
    distillation_targets,
)
from keras_smooth.models import TrainableTargetsModel

__version__ = "0.1.0"

__all__ = [
    "DistillationLoss",
    "ILSTargets",
    "LLSLoss",
    "LSPlusPlusLoss",
    "LabelSmoothingLoss",
    "QMatrix",
    "SubstituteTeacherLoss",
    "TrainableTargetsModel",
    "datasets",
    "distillation_targets",
    "layers",
    "losses",
    "targets",
]
