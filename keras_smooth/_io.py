"""Files written whole or not at all, and damaged files set aside.

Every result, cache and table keras_smooth writes goes through `atomic_open`:
the content goes to `<path>.tmp` and is renamed over `path` only once
complete, so a crash never leaves half a file that a re-run would trust.
"""

import contextlib
import json
import os
import warnings
import zipfile
import zlib

import numpy as np

# What np.load and reading an archive's members raise on truncated, empty or garbage files.
UNREADABLE = (OSError, EOFError, ValueError, KeyError, TypeError, zipfile.BadZipFile, zlib.error)


@contextlib.contextmanager
def atomic_open(path, mode="w", suffix=".tmp", **kwargs):
    """Open `<path><suffix>` for writing; rename it to `path` when the block ends without error.

    Text files are UTF-8 whatever the locale (a user's label may be any text).
    """
    tmp = f"{path}{suffix}"
    if "b" not in mode:
        kwargs.setdefault("encoding", "utf-8")
    try:
        with open(tmp, mode, **kwargs) as handle:
            yield handle
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.remove(tmp)


def write_json(path, payload):
    """`payload` as indented JSON at `path`, atomically."""
    with atomic_open(path) as handle:
        json.dump(payload, handle, indent=1)


def write_npz(path, **arrays):
    """Arrays into an `.npz` at `path`, atomically (the temporary name ends in .npz too)."""
    with atomic_open(path, "wb", suffix=".tmp.npz") as handle:
        np.savez(handle, **arrays)


def describe_error(error):
    """`Type: first line of the message`."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def read_npz(path):
    """Every array of an `.npz` file, read now; `UNREADABLE` errors for a damaged file."""
    with np.load(path, allow_pickle=False) as stored:
        if not hasattr(stored, "files"):
            raise ValueError("a single array, not an .npz archive")
        return {name: stored[name] for name in stored.files}


def set_aside(path, reason):
    """Rename a damaged cache file to `<path>.corrupt`, warn naming both; return the new path."""
    aside = f"{path}.corrupt"
    try:
        os.replace(path, aside)
    except OSError:  # cannot rename (read-only folder): it will be overwritten instead
        aside = None
    where = f"moved it to {aside}" if aside else "it will be overwritten"
    warnings.warn(f"{path} is unreadable ({reason}); {where} and recomputing", UserWarning,
                  stacklevel=3)
    return aside
