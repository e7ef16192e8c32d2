"""Keras layers of keras_smooth."""

from keras_smooth.layers.ils_targets import ILSTargets
from keras_smooth.layers.q_matrix import QMatrix

__all__ = ["ILSTargets", "QMatrix"]
