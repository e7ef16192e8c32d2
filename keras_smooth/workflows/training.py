"""Kept for code written against earlier versions: see `keras_smooth.training.fitting`."""

from keras_smooth.training.fitting import (  # noqa: F401
    BestValidationNLL,
    EpochProgress,
    EpochShuffle,
    ReusableModel,
    TrainedModel,
    fit_classifier,
)
