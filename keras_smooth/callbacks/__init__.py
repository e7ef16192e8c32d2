"""Keras callbacks of keras_smooth."""

from keras_smooth.callbacks.calibration_logger import CalibrationLogger, tensorboard_run
from keras_smooth.callbacks.online_label_smoothing import OnlineLabelSmoothing
from keras_smooth.callbacks.temperature_scaling import TemperatureScalingCallback

__all__ = ["CalibrationLogger", "OnlineLabelSmoothing", "TemperatureScalingCallback",
           "tensorboard_run"]
