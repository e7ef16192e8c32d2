"""Checks of run settings shared by `run_comparison`, `run_search` and the `keras-smooth` CLI.

Each check returns the normalised value or raises `ValueError` naming the
argument and quoting the bad value. None writes anything that stays: an output
folder is tried with a probe directory, created and removed at once.
"""

import math
import numbers
import os
import tempfile

MAX_SEED = 2**32 - 1  # NumPy's global seed (set by keras.utils.set_random_seed) is a uint32


def positive_int(name, value, allow_none=False):
    """An integer >= 1 (not a bool, float or string)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"`{name}` must be an integer >= 1, got {value!r}.")
    if value > MAX_COUNT:
        raise ValueError(f"`{name}` must be an integer in [1, {MAX_COUNT}], got {value!r}.")
    return int(value)


MAX_COUNT = 2**31 - 1  # counts beyond this overflow the frameworks' 32-bit integers


def seed(name, value, count=1):
    """A seed in [0, 2**32 - count], so that `value + count - 1` is a seed too."""
    largest = MAX_SEED - count + 1
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or not 0 <= value <= largest
    ):
        raise ValueError(f"`{name}` must be an integer in [0, {largest}], got {value!r}.")
    return int(value)


def positive_seconds(name, value):
    """A finite number of seconds > 0."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"`{name}` must be a finite number of seconds > 0, got {value!r}.")
    return float(value)


def _nearest_existing(path):
    path = os.path.abspath(path)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def folder_problem(path):
    """Why `path` cannot be used as an output folder (exists as a file, ...), or None."""
    if os.path.exists(path) and not os.path.isdir(path):
        return f"{path} is a file, not a folder"
    existing = _nearest_existing(path)
    if not os.path.isdir(existing):
        return f"{path} cannot be created: {existing} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{path} cannot be written: {existing} is not writable"
    try:  # os.access says yes to root everywhere: a read-only or virtual file system says no
        os.rmdir(tempfile.mkdtemp(prefix=".keras-smooth-probe-", dir=existing))
    except OSError as error:
        return f"{path} cannot be created in {existing}: {error.strerror or error}"
    return None


def output_folder(name, path):
    """A folder that exists or can be created and written; it is not created here (a
    probe directory in its nearest existing parent is created and removed).

    Returns:
        `path` as a string.
    """
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise ValueError(f"`{name}` must be a folder path, got {path!r}.")
    path = os.fspath(path)
    problem = folder_problem(path)
    if problem:
        raise ValueError(f"`{name}`: {problem}.")
    return path


def callable_or_none(name, value):
    if value is not None and not callable(value):
        raise TypeError(f"`{name}` must be callable or None, got {value!r}.")
    return value
