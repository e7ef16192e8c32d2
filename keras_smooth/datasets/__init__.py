"""Embedded data sets."""

from keras_smooth.datasets.synthetic import (
    CLASS_MEANS,
    gaussian_task,
    gaussian_task_posterior,
)

__all__ = ["CLASS_MEANS", "gaussian_task", "gaussian_task_posterior"]
