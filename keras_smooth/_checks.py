"""Argument validation and label handling shared by every public object.

All checks raise `ValueError`/`TypeError` that name the argument and quote the
offending value. Backend-specific questions ("is this value concrete?") are
answered in one place, `is_concrete`, so the rest of the package stays in
`keras.ops`.
"""

import numbers

import keras
import numpy as np
from keras import ops


def check_num_classes(num_classes):
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral):
        raise TypeError(f"`num_classes` must be an integer, got {num_classes!r}.")
    if num_classes < 2:
        raise ValueError(f"`num_classes` must be >= 2, got {num_classes}.")
    return int(num_classes)


def _check_real(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a real number, got {value!r}.")
    if not np.isfinite(value):
        raise ValueError(f"`{name}` must be finite, got {value}.")
    return float(value)


def check_fraction(name, value):
    """A mixing weight in [0, 1)."""
    value = _check_real(name, value)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"`{name}` must be in [0, 1), got {value}.")
    return value


def check_unit_interval(name, value):
    """A weight in [0, 1] (both ends allowed)."""
    value = _check_real(name, value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"`{name}` must be in [0, 1], got {value}.")
    return value


def check_positive(name, value):
    value = _check_real(name, value)
    if value <= 0.0:
        raise ValueError(f"`{name}` must be > 0, got {value}.")
    return value


def check_non_negative(name, value):
    value = _check_real(name, value)
    if value < 0.0:
        raise ValueError(f"`{name}` must be >= 0, got {value}.")
    return value


def check_bool(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"`{name}` must be True or False, got {value!r}.")
    return bool(value)


def is_concrete(x):
    """True when `x` holds values we can inspect now (not a graph/trace symbol)."""
    if isinstance(x, (np.ndarray, numbers.Number, list, tuple)):
        return True
    if isinstance(x, keras.KerasTensor):
        return False
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.executing_eagerly() and not isinstance(x, tf.SparseTensor)
    if backend == "jax":
        import jax

        return not isinstance(x, jax.core.Tracer)
    return True


def static_dim(x, axis=-1):
    if not hasattr(x, "shape"):
        x = np.asarray(x)
    shape = ops.shape(x)
    dim = shape[axis]
    return dim if isinstance(dim, int) else None


def check_width(name, x, num_classes):
    """Raise when the last dimension of `x` is known and differs from K."""
    width = static_dim(x)
    if width is not None and width != num_classes:
        raise ValueError(
            f"`{name}` must have {num_classes} columns (num_classes), "
            f"got shape {tuple(ops.shape(x))}."
        )


def _check_label_range(ids, num_classes, name):
    if is_concrete(ids):
        values = np.asarray(ops.convert_to_numpy(ids))
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            bad = values[(values < 0) | (values >= num_classes)][0]
            raise ValueError(
                f"`{name}` must be class ids in [0, {num_classes}), got {bad}."
            )
        return ids
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        with tf.control_dependencies(
            [
                tf.debugging.assert_greater_equal(
                    ids, tf.zeros_like(ids),
                    message=f"`{name}` must be class ids >= 0",
                ),
                tf.debugging.assert_less(
                    ids, tf.fill(tf.shape(ids), tf.cast(num_classes, ids.dtype)),
                    message=f"`{name}` must be class ids < {num_classes}",
                ),
            ]
        ):
            return tf.identity(ids)
    return ids


def one_hot_labels(labels, num_classes, name="labels", dtype="float32"):
    """Integer ids of shape (N,) or (N, 1), or one-hot/soft rows (N, K) -> (N, K).

    Rows that are already (N, K) are returned as they are (cast), so soft labels
    pass through. Integer-valued floats (Keras casts `y_true` to the loss dtype)
    are rounded before use.
    """
    labels = ops.convert_to_tensor(labels)
    rank = len(ops.shape(labels))
    width = static_dim(labels) if rank else None
    if rank == 2 and width == num_classes:
        return ops.cast(labels, dtype)
    if rank == 2 and width == 1:
        labels = ops.squeeze(labels, axis=-1)
    elif rank != 1:
        raise ValueError(
            f"`{name}` must be class ids of shape (N,) or (N, 1), or one-hot rows "
            f"of shape (N, {num_classes}); got shape {tuple(ops.shape(labels))}."
        )
    if not keras.backend.is_int_dtype(labels.dtype):
        labels = ops.round(labels)
    ids = ops.cast(labels, "int32")
    ids = _check_label_range(ids, num_classes, name)
    return ops.one_hot(ids, num_classes, dtype=dtype)
