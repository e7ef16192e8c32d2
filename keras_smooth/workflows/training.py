"""Kept for code written against earlier versions: see `keras_smooth.training.fitting`."""

from keras_smooth.training.fitting import *  # noqa: F401,F403
from keras_smooth.training.fitting import ReusableModel, TrainedModel  # noqa: F401
