"""Kept for code written against earlier versions: see `keras_smooth.training.teacher`."""

from keras_smooth.training.teacher import *  # noqa: F401,F403
from keras_smooth.training.teacher import describe_error, teacher_trainings  # noqa: F401
