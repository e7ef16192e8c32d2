"""Streaming Keras metrics of keras_smooth."""

from keras_smooth.metrics.calibration_metrics import ClasswiseECE, ExpectedCalibrationError

__all__ = ["ClasswiseECE", "ExpectedCalibrationError"]
