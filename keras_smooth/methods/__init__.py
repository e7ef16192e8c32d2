"""One registry of label-regularization methods, read by `compare`, the tuner and the CLI.

Every method, built-in or your own, is a `Method`: its name and label, the
values of each hyperparameter `compare` tries, the range the tuner searches,
and how to build its training targets, loss and callbacks for one setting.

Examples:
>>> from keras_smooth import methods
>>> methods.get("ls").label
'LS'
>>> methods.get("ils").settings("quick")
[{'p1': 0.9, 'p2': 1.5, 'temperature': 2.0}]
>>> "double_ls" in methods.names()
False
"""

from keras_smooth.methods._registry import (
    GRID_NAMES,
    Context,
    Method,
    Recipe,
    get,
    names,
    parse,
    register,
    resolve,
    tags,
)
from keras_smooth.methods import paper  # noqa: F401  (registers the papers' methods)
from keras_smooth.methods import baselines  # noqa: F401  (registers the baselines)

__all__ = ["GRID_NAMES", "Context", "Method", "Recipe", "get", "names", "parse", "register",
           "resolve", "tags"]
