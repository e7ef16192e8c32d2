"""Data sets: the ILS synthetic task (embedded), digits (scikit-learn),
Fashion-MNIST (IDX files) and TFDS by name, all as `ClassificationData`."""

import functools
import inspect
import re

from keras_smooth.datasets.base import ClassificationData, stratified_split
from keras_smooth.datasets.digits import load_digits
from keras_smooth.datasets.fashion_mnist import (
    DatasetUnavailable,
    fashion_mnist_arrays,
    load_fashion_mnist,
    read_idx,
)
from keras_smooth.datasets.synthetic import (
    CLASS_MEANS,
    gaussian_task,
    gaussian_task_posterior,
    load_gaussian_task,
)
from keras_smooth.datasets.tfds_loader import load_tfds

NAMES = ("gaussian", "digits", "fashion_mnist", "tfds:NAME")
_TFDS_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*([/:][A-Za-z0-9_.*=,-]+)*")


def check_name(name):
    """Return `name` if `load` knows it, else raise `ValueError` listing the names; loads nothing.

    Examples:
    >>> from keras_smooth import datasets
    >>> datasets.check_name("tfds:mnist")
    'tfds:mnist'
    """
    if name in ("gaussian", "digits", "fashion_mnist"):
        return name
    if isinstance(name, str) and name.startswith("tfds:") and _TFDS_NAME.fullmatch(name[5:]):
        return name
    raise ValueError(f"Unknown dataset {name!r}; choose one of: {', '.join(NAMES)}.")


def load(name, seed=0, **kwargs):
    """Load a data set by name: one of `NAMES` (`tfds:` followed by a TFDS name).

    Examples:
    >>> from keras_smooth import datasets
    >>> data = datasets.load("gaussian", seed=0)
    >>> len(data.y_train), len(data.y_val), len(data.y_test)
    (150, 150, 15000)
    """
    loader = {"gaussian": load_gaussian_task, "digits": load_digits,
              "fashion_mnist": load_fashion_mnist}.get(name)
    if loader is None:
        loader = functools.partial(load_tfds, check_name(name)[5:])
        accepted = inspect.signature(load_tfds).parameters
    else:
        accepted = inspect.signature(loader).parameters
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        options = sorted(p for p in accepted if p not in ("name", "seed"))
        raise TypeError(f"data set {name!r} takes no option {unknown[0]!r}; its options: "
                        f"{', '.join(options) or 'none'}.")
    return loader(seed=seed, **kwargs)


__all__ = [
    "CLASS_MEANS",
    "ClassificationData",
    "DatasetUnavailable",
    "NAMES",
    "check_name",
    "fashion_mnist_arrays",
    "gaussian_task",
    "gaussian_task_posterior",
    "load",
    "load_digits",
    "load_fashion_mnist",
    "load_gaussian_task",
    "load_tfds",
    "read_idx",
    "stratified_split",
]
