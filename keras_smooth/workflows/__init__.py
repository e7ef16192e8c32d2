"""Workflows: teacher training with a disk cache, ILS students, the method comparison."""

from keras_smooth.workflows.compare import run_comparison
from keras_smooth.workflows.methods import ALL_METHODS, BASELINE_METHODS, GRIDS, LABELS, METHODS, parse_methods
from keras_smooth.workflows.teacher import Teacher, teacher_cache_key, train_teacher
from keras_smooth.workflows.training import BestValidationNLL, fit_classifier

__all__ = [
    "BestValidationNLL",
    "GRIDS",
    "LABELS",
    "ALL_METHODS",
    "BASELINE_METHODS",
    "METHODS",
    "Teacher",
    "fit_classifier",
    "parse_methods",
    "run_comparison",
    "teacher_cache_key",
    "train_teacher",
]
