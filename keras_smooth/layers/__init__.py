"""Keras layers of keras_smooth."""

from keras_smooth.layers.ils_targets import ILSTargets
from keras_smooth.layers.q_matrix import QMatrix
from keras_smooth.layers.sparse_q_matrix import SparseQMatrix
from keras_smooth.layers.temperature_scaling import TemperatureScaling

__all__ = ["ILSTargets", "QMatrix", "SparseQMatrix", "TemperatureScaling"]
