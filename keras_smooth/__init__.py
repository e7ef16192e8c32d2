"""keras_smooth: label-regularization losses and calibration tools for Keras 3.

Data flows one way: `targets` (pure functions) -> `layers`/`losses` (thin Keras
objects) -> workflows and entry points.
"""

from keras_smooth import analysis
from keras_smooth import calibration
from keras_smooth import callbacks
from keras_smooth import datasets
from keras_smooth import layers
from keras_smooth import losses
from keras_smooth import metrics
from keras_smooth import plots
from keras_smooth import targets
from keras_smooth.callbacks import CalibrationLogger, TemperatureScalingCallback
from keras_smooth.export import export_for_serving
from keras_smooth.layers import ILSTargets, QMatrix, TemperatureScaling
from keras_smooth.losses import (
    DistillationLoss,
    LabelSmoothingLoss,
    LLSLoss,
    LSPlusPlusLoss,
    SubstituteTeacherLoss,
    distillation_targets,
)
from keras_smooth.metrics import ClasswiseECE, ExpectedCalibrationError
from keras_smooth.models import TrainableTargetsModel

# The OLS callback moved up from `losses` to `callbacks`; its old address keeps
# working. Set here, above both, so that `losses` never imports `callbacks`.
losses.OnlineLabelSmoothing = callbacks.OnlineLabelSmoothing

__version__ = "0.1.0"

__all__ = [
    "CalibrationLogger",
    "ClasswiseECE",
    "DistillationLoss",
    "ExpectedCalibrationError",
    "ILSTargets",
    "LLSLoss",
    "LSPlusPlusLoss",
    "LabelSmoothingLoss",
    "QMatrix",
    "SubstituteTeacherLoss",
    "TemperatureScaling",
    "TemperatureScalingCallback",
    "TrainableTargetsModel",
    "analysis",
    "calibration",
    "callbacks",
    "datasets",
    "distillation_targets",
    "export_for_serving",
    "layers",
    "losses",
    "metrics",
    "plots",
    "targets",
]
