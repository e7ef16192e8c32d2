"""A module imported on first use, so that reading the method registry or `--help` is quick.

`keras = lazy_module("keras")` binds a stand-in whose first attribute access
imports Keras (and with it the backend, e.g. TensorFlow); afterwards every
access reads the real module. Used where a module needs Keras only inside
functions, so that `keras-smooth --help` and `import keras_smooth` do not pay
for a framework import they never use.
"""

import importlib


class _LazyModule:
    """Stand-in for a module; attribute access imports it (`importlib.import_module`)."""

    def __init__(self, name):
        self._lazy_name = name

    def __getattr__(self, attribute):
        return getattr(importlib.import_module(self._lazy_name), attribute)

    def __repr__(self):
        return f"<module {self._lazy_name!r}, imported on first use>"


def lazy_module(name):
    """A stand-in for module `name` that imports it on first attribute access.

    Examples:
    >>> json = lazy_module("json")
    >>> json.dumps([1])
    '[1]'
    """
    return _LazyModule(name)
