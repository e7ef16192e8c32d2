"""Workflows: the method comparison (`run_comparison`) and method training (`train_method`).

Teacher training and `fit_classifier` live in `keras_smooth.training`, which
the comparison and the tuner share; they stay importable from here.
`METHODS`, `BASELINE_METHODS`, `ALL_METHODS`, `LABELS`, `GRIDS` and
`parse_methods` are kept for code written against earlier versions; they are
derived from the method registry, `keras_smooth.methods`, which new code reads.
"""

from keras_smooth.training import BestValidationNLL, Teacher, fit_classifier
from keras_smooth.training import teacher_cache_key, train_teacher
from keras_smooth.workflows._derived import (
    ALL_METHODS,
    BASELINE_METHODS,
    GRIDS,
    LABELS,
    METHODS,
    parse_methods,
)
from keras_smooth.workflows.compare import run_comparison
from keras_smooth.workflows.methods import train_method

__all__ = [
    "ALL_METHODS",
    "BASELINE_METHODS",
    "BestValidationNLL",
    "GRIDS",
    "LABELS",
    "METHODS",
    "Teacher",
    "fit_classifier",
    "parse_methods",
    "run_comparison",
    "teacher_cache_key",
    "train_method",
    "train_teacher",
]
