"""Training shared by the comparison and the tuner: one classifier, and the cached teacher.

`fit_classifier` trains a model with best-validation-NLL selection
(`BestValidationNLL`); `train_teacher` trains the No LS teacher once, fits
its temperature T* and caches its logits on disk; `protocol_for` gives a data
set's `TrainingProtocol` (optimiser, learning rate, batch, epochs, early
stopping). `keras_smooth.workflows` (the comparison) and `keras_smooth.tuning`
(the KerasTuner search) both build on these, and neither imports the other.
"""

from keras_smooth.training.fitting import (
    BestValidationNLL,
    EpochProgress,
    EpochShuffle,
    ReusableModel,
    TrainedModel,
    fit_classifier,
)
from keras_smooth.training.protocol import TrainingProtocol, protocol_for
from keras_smooth.training.teacher import Teacher, teacher_cache_key, train_teacher

__all__ = [
    "BestValidationNLL",
    "EpochProgress",
    "EpochShuffle",
    "ReusableModel",
    "Teacher",
    "TrainedModel",
    "TrainingProtocol",
    "fit_classifier",
    "protocol_for",
    "teacher_cache_key",
    "train_teacher",
]
