"""Workflows: teacher training with a disk cache, method training, the method comparison.

The names below are loaded on first use, so importing one submodule (the
tuner imports `workflows.teacher`) does not import the comparison.
`METHODS`, `BASELINE_METHODS`, `ALL_METHODS`, `LABELS`, `GRIDS` and
`parse_methods` are kept for code written against earlier versions; they are
derived from the method registry, `keras_smooth.methods`, which new code reads.
"""

import importlib

_WHERE = {
    "run_comparison": "compare",
    "train_method": "methods",
    "ALL_METHODS": "_derived",
    "BASELINE_METHODS": "_derived",
    "GRIDS": "_derived",
    "LABELS": "_derived",
    "METHODS": "_derived",
    "parse_methods": "_derived",
    "Teacher": "teacher",
    "teacher_cache_key": "teacher",
    "train_teacher": "teacher",
    "BestValidationNLL": "training",
    "fit_classifier": "training",
}

__all__ = sorted(_WHERE)


_SUBMODULES = ("compare", "methods", "teacher", "training")


def __getattr__(name):
    if name in _SUBMODULES:  # `workflows.compare` after a plain `import keras_smooth.workflows`
        return importlib.import_module(f"{__name__}.{name}")
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)


def __dir__():
    return sorted(set(globals()) | set(_WHERE))
