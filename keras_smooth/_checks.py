"""Argument validation and label handling shared by every public object.

All checks raise `ValueError`/`TypeError` that name the argument and quote the
offending value. Backend-specific questions ("is this value concrete?") are
answered in one place, `is_concrete`, so the rest of the package stays in
`keras.ops`.
"""

import collections.abc
import math
import numbers

import numpy as np

from keras_smooth import _ops
from keras_smooth._lazy import lazy_module
from keras_smooth._ops import ops

keras = lazy_module("keras")  # imported when a check needs it: the CLI's --help stays quick


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


def check_float32_positive(name, value, held="the math is in float32"):
    """A real T > 0 inside the normal float32 range: where the math is float32, a smaller
    T becomes 0 (denormals flushed) or a larger one Inf, and the output NaN."""
    value = check_positive(name, value)
    low, high = float(np.finfo("float32").tiny), float(np.finfo("float32").max)
    if not low <= value <= high:
        raise ValueError(f"`{name}` must be within the float32 range [{low:.3g}, {high:.3g}] "
                         f"({held}), got {value:g}.")
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


def check_count(name, value, minimum=0):
    """`value` as an int >= `minimum`; `TypeError`/`ValueError` naming `name` otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be an integer, got {value!r}.")
    if value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}, got {value}.")
    return int(value)


def check_seed(seed):
    """A NumPy seed: an integer >= 0."""
    return check_count("seed", seed)


def check_bounded_count(name, value, minimum=1, maximum=2**31 - 1):
    """`check_count` with an upper limit too (sizes a backend holds in int32)."""
    value = check_count(name, value, minimum)
    if value > maximum:
        raise ValueError(f"`{name}` must be <= {maximum}, got {value}.")
    return value


def check_shape(name, shape):
    """An example shape: a tuple of integers >= 1 (a list or tuple; not an int or a str)."""
    if isinstance(shape, (str, bytes)) or not isinstance(shape, (tuple, list)):
        raise TypeError(f"`{name}` must be a tuple of integers such as (2,) or (28, 28, 1), "
                        f"got {shape!r}.")
    for dim in shape:
        if isinstance(dim, bool) or not isinstance(dim, numbers.Integral) or dim < 1:
            raise ValueError(f"`{name}` must hold integers >= 1, got {tuple(shape)!r}.")
    return tuple(int(d) for d in shape)


def _values(x):
    """NumPy values of a tensor or array (anything with a shape), else `x` itself."""
    return np.asarray(ops.convert_to_numpy(x)) if hasattr(x, "shape") else x


def real_number(value):
    """`value` as a float if it is a real number or a 0-d real array or tensor, else None
    (bools and strings are not numbers here)."""
    value = _values(value)
    if isinstance(value, np.ndarray):
        if value.ndim or value.dtype.kind not in "iuf":
            return None
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        return None
    return float(value)


def _whole(value):
    """`value` as an int if it is a finite whole `real_number`, else None."""
    value = real_number(value)
    return int(value) if value is not None and math.isfinite(value) and value.is_integer() \
        else None


def check_class_list(name, classes, num_classes):
    """Class ids as a list of ints in [0, K), from any iterable of whole numbers (a list,
    range, array, tensor; a set is sorted), not a string or a mapping."""
    values = _values(classes)
    if isinstance(values, (str, bytes, collections.abc.Mapping)) or not isinstance(
            values, collections.abc.Iterable):
        raise TypeError(f"`{name}` must be a sequence of class ids, got {classes!r}.")
    values = values.reshape(-1) if isinstance(values, np.ndarray) else values
    if isinstance(values, (set, frozenset)):
        values = sorted(values, key=repr)
    out = []
    for c in values:
        whole = _whole(c)
        if whole is None:
            raise ValueError(f"`{name}` must hold whole-number class ids, got {c!r}.")
        if not 0 <= whole < num_classes:
            raise ValueError(f"`{name}` must be in [0, {num_classes}), got {whole}.")
        out.append(whole)
    return out


def check_names(name, names, count=None, distinct=True):
    """`count` (None: any number of) names as strings (bytes decoded), from any iterable
    but a string or a mapping; with `distinct`, each once (when they become keys)."""
    values = _values(names)
    if isinstance(values, (str, bytes, collections.abc.Mapping)) or not isinstance(
            values, collections.abc.Iterable):
        raise TypeError(f"`{name}` must be a list of class names, got {names!r}.")
    values = values.reshape(-1).tolist() if isinstance(values, np.ndarray) else values
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in values]
    count = len(names) if count is None else count
    if len(names) != count:
        raise ValueError(f"`{name}` must name all {count} classes, got {len(names)}.")
    if distinct and len(set(names)) != count:
        twice = next(n for n in names if names.count(n) > 1)
        raise ValueError(f"`{name}` must be distinct, got {twice!r} twice.")
    return names


def check_same_rows(name_a, rows_a, name_b, rows_b):
    if rows_a != rows_b:
        raise ValueError(f"`{name_a}` has {rows_a} rows but `{name_b}` has {rows_b}.")


def check_real_dtype(name, dtype):
    """TypeError naming `name` unless `dtype` (of a tensor, eager or traced) is a float, an
    integer or bool: a string tensor never reaches a raw cast error."""
    dtype = keras.backend.standardize_dtype(dtype)
    if not (keras.backend.is_float_dtype(dtype) or keras.backend.is_int_dtype(dtype)
            or dtype == "bool"):
        raise TypeError(f"`{name}` must be an array of real numbers, got dtype {dtype}.")


def as_real_array(name, value, dtype="float64"):
    """`value` as a NumPy array of `dtype` (None: its own); a TypeError naming `name` if it
    holds no numbers (strings, ragged lists, None)."""
    try:
        array = np.asarray(ops.convert_to_numpy(value) if not isinstance(
            value, (np.ndarray, list, tuple, numbers.Number)) else value)
        if array.dtype.kind == "O":  # Python numbers of other kinds (Fraction); not None
            if not all(isinstance(v, numbers.Real) for v in array.reshape(-1).tolist()):
                raise TypeError(f"got {type(value).__name__} holding non-numbers")
            array = array.astype("float64")
        if array.dtype.kind not in "biuf" and not any(
                kind in array.dtype.name for kind in ("float", "int")):  # ml_dtypes' own
            raise TypeError(f"got {type(value).__name__} of dtype {array.dtype}")
        return array if dtype is None else array.astype(dtype, copy=False)
    except (TypeError, ValueError) as error:
        raise TypeError(f"`{name}` must be an array of real numbers: {error}") from None


def real_tensor(name, value):
    """`value` as a backend tensor of real numbers (or bools), else a TypeError naming
    `name`. Tensors (and lists holding tensors, which may be traced) go to the backend as
    they are; any other value is read by `as_real_array` first, so that strings, None or
    mappings never reach a backend's own conversion (JAX's fails deep inside even for a
    string); a string tensor is refused by its dtype."""
    if isinstance(value, (list, tuple)):
        host = not _holds_tensor(value)
    else:
        host = not _is_tensor(value)
    tensor = ops.convert_to_tensor(as_real_array(name, value, dtype=None) if host else value)
    check_real_dtype(name, tensor.dtype)
    return tensor


def _is_tensor(value):
    """A backend tensor, variable or symbolic value: it has a dtype and a shape, and is not
    NumPy's (pandas objects count as tensors: the backends read them)."""
    return (hasattr(value, "dtype") and hasattr(value, "shape")
            and not isinstance(value, (np.ndarray, np.generic)))


def _holds_tensor(values):
    return any(_is_tensor(v) or (isinstance(v, (list, tuple)) and _holds_tensor(v))
               for v in values)


def is_concrete(x):
    """True when `x` holds values we can inspect now (not a graph/trace symbol)."""
    if isinstance(x, (np.ndarray, numbers.Number, list, tuple)):
        return True
    if isinstance(x, keras.KerasTensor) or _ops.is_symbolic_tf(x):  # tf.data on any backend
        return False
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.executing_eagerly() and not isinstance(x, tf.SparseTensor)
    if backend == "jax":
        import jax

        return not isinstance(x, jax.core.Tracer)
    # torch: Keras infers output shapes on the "meta" device, whose tensors hold no values.
    return not getattr(x, "is_meta", False)


def check_finite(name, x):
    """Eager values of `x` must be finite (traced values are not inspected)."""
    if not is_concrete(x):
        return
    values = np.asarray(ops.convert_to_numpy(x), dtype="float64")
    if values.size and not np.all(np.isfinite(values)):
        bad = values[~np.isfinite(values)][0]
        raise ValueError(f"`{name}` must be finite, got {bad}.")


PROBABILITY_ATOL = 1e-3
_ROUNDOFF = {"float16": 2.0**-11, "bfloat16": 2.0**-8}


def probability_atol(dtype):
    """How far from 1 a row of probabilities held in `dtype` may sum.

    `PROBABILITY_ATOL` (1e-3), except for float16 and bfloat16, whose softmax
    rows sum to 1 only within a few roundoffs (about 3e-3 for bfloat16): they
    get 4 roundoffs of their dtype (2e-3 and 1.6e-2).
    """
    roundoff = _ROUNDOFF.get(keras.backend.standardize_dtype(dtype))
    return PROBABILITY_ATOL if roundoff is None else max(PROBABILITY_ATOL, 4 * roundoff)


def looks_like_probabilities(values, binary=False, dtype=None):
    """The library-wide test of whether predictions are probabilities.

    Predictions count as probabilities only if every value is in [0, 1] and,
    for `(N, K)` predictions, every row sums to 1 within
    `probability_atol(dtype)` (`binary=True`: the range test alone). Anything
    else -- including NaN -- is read as logits. NumPy arrays are tested in
    NumPy, anything else in `keras.ops`, so the test runs eagerly, in a
    `tf.function` and under `jax.jit` alike.

    Args:
        values: `(N, K)` predictions, or `(N,)` with `binary=True`.
        binary: whether `values` are binary P(class 1) values.
        dtype: the dtype the predictions were held in before any cast
            (default: `values.dtype`); it sets the row-sum tolerance.

    Returns:
        A boolean scalar (`numpy.bool_` or a backend tensor).

    Examples:
    >>> import numpy as np
    >>> from keras_smooth import calibration
    >>> bool(calibration.looks_like_probabilities(np.array([[0.2, 0.8], [0.5, 0.5]])))
    True
    >>> bool(calibration.looks_like_probabilities(np.array([[2.0, -1.0], [0.5, 0.5]])))
    False
    >>> bool(calibration.looks_like_probabilities(np.array([0.3, 0.9]), binary=True))
    True
    """
    xp = np if isinstance(values, np.ndarray) else ops
    # min(x, initial=0) >= 0 iff every x >= 0 (and empty input passes); same for max.
    in_range = xp.logical_and(xp.min(values, initial=0.0) >= 0, xp.max(values, initial=1.0) <= 1)
    if binary:
        return in_range
    atol = probability_atol(values.dtype if dtype is None else dtype)
    off = xp.max(xp.abs(xp.sum(values, axis=-1) - 1.0), initial=0.0)
    return xp.logical_and(in_range, off <= atol)


def check_class_matrix(name, value, num_classes=None, rows_sum_to_one=True, atol=1e-4):
    """A finite K x K class matrix as float64 NumPy, checked; errors quote one bad value.

    With `rows_sum_to_one`, entries must be non-negative and each row must sum
    to 1 within 1e-4 (a matrix of class distributions, like Q, C or an OLS
    soft matrix); otherwise any finite values pass (logits).
    """
    array = as_real_array(name, value)  # strings and ragged lists: a named TypeError
    k = num_classes if num_classes is not None else (array.shape[0] if array.ndim else 0)
    if array.shape != (k, k) or k < 2:
        expected = f"({k}, {k}) (num_classes)" if num_classes is not None else "K x K with K >= 2"
        raise ValueError(f"`{name}` must have shape {expected}, got shape {array.shape}.")
    bad = ~np.isfinite(array)
    if rows_sum_to_one:
        bad |= array < 0
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        what = "hold finite, non-negative probabilities" if rows_sum_to_one else "be finite"
        raise ValueError(f"`{name}` must {what}, got {array[index]} at {index}.")
    if rows_sum_to_one:
        off = np.abs(array.sum(axis=1) - 1.0)
        if off.max() > atol:
            row = int(off.argmax())
            raise ValueError(
                f"Every row of `{name}` must sum to 1 (tolerance {atol:g}); row {row} sums to "
                f"{array[row].sum()}."
            )
    return array


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


_SOFT_TOLERANCE = 1e-3


def label_value(value, dtype=None):
    """A label value as written: whole numbers as ints, others in the shortest form of their
    own dtype (a float32 2.4 reads 2.4, not 2.4000000953674316)."""
    value = float(value)
    if value.is_integer() and abs(value) < 2.0**53:  # 1e300 stays 1e+300
        return int(value)
    if dtype is not None and np.dtype(dtype).kind == "f":
        return str(np.asarray(value, dtype)[()])
    return value


def label_problem(values, num_classes, name, kind):
    """The first problem with concrete labels as a message, or None.

    `kind` is `"ids"` (integers in [0, K)), `"onehot"` (rows of 0/1 with exactly
    one 1) or `"soft"` (finite, non-negative rows summing to 1 within 1e-3, or
    within max(1e-3, K * 2**-8) for float16/bfloat16 labels).
    """
    dtype = np.asarray(values).dtype
    values = np.asarray(values, dtype="float64")
    if values.size == 0:
        return None
    if kind == "ids":
        bad = ~np.isfinite(values) | (values != np.round(values))
        bad |= (values < 0) | (values >= num_classes)
        if bad.any():
            return (
                f"`{name}` must be class ids in [0, {num_classes}), got "
                f"{label_value(values[bad][0], dtype)} "
                f"(position {int(np.argmax(bad))}; class ids must be whole numbers)."
            )
        return None
    finite = np.isfinite(values).all(axis=-1)
    if kind == "onehot":
        ok = finite & np.all((values == 0) | (values == 1), axis=-1) & (values.sum(-1) == 1)
        what = "one-hot rows (0/1 with exactly one 1)"
    else:
        tol = _soft_tolerance(dtype, num_classes)
        ok = finite & np.all(values >= 0, axis=-1) & (np.abs(values.sum(-1) - 1) <= tol)
        what = f"label distributions (non-negative, summing to 1 within {tol:g})"
    if ok.all():
        return None
    row = int(np.argmin(ok))
    return f"`{name}` must be {what}; row {row} is {values[row].tolist()}."


def _soft_tolerance(dtype, num_classes):
    if keras.backend.standardize_dtype(dtype) in ("float16", "bfloat16"):
        return max(_SOFT_TOLERANCE, num_classes * 2.0**-8)
    return _SOFT_TOLERANCE


def label_rows_ok(labels, num_classes, kind):
    """Per-row validity as a backend tensor (the traced counterpart of `label_problem`)."""
    if kind == "ids":
        in_range = ops.logical_and(labels >= 0, labels < num_classes)
        if keras.backend.is_int_dtype(labels.dtype):
            return in_range
        whole = ops.equal(labels, ops.round(labels))  # False for NaN; inf is out of range
        return ops.logical_and(whole, in_range)
    finite = ops.all(ops.isfinite(labels), axis=-1)
    if kind == "onehot":
        binary = ops.all(ops.logical_or(labels == 0, labels == 1), axis=-1)
        single = ops.sum(labels, axis=-1) == 1
        return ops.logical_and(finite, ops.logical_and(binary, single))
    tol = _soft_tolerance(labels.dtype, num_classes)
    non_negative = ops.all(labels >= 0, axis=-1)
    sums_to_one = ops.abs(ops.sum(labels, axis=-1) - 1) <= tol
    return ops.logical_and(finite, ops.logical_and(non_negative, sums_to_one))


def _traced_label_check(labels, num_classes, name, kind):
    """Raise at run time where the backend can; return per-row validity."""
    ok = label_rows_ok(labels, num_classes, kind)
    backend = "tensorflow" if _ops.tf_graph_active() else keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        first_bad = tf.boolean_mask(labels, tf.logical_not(ok))[:1]  # empty batches pass
        what = {"ids": f"class ids in [0, {num_classes}) (whole numbers)",
                "onehot": "one-hot rows (0/1 with exactly one 1)",
                "soft": "label distributions (non-negative, summing to 1)"}[kind]
        check = tf.debugging.Assert(
            tf.reduce_all(ok), [f"`{name}` must be {what}; got", first_bad],
            summarize=num_classes,
        )
        with tf.control_dependencies([check]):
            ok = tf.identity(ok)
    elif backend == "jax":
        import jax

        def raise_on_problem(values):
            message = label_problem(values, num_classes, name, kind)
            if message is not None:
                raise ValueError(message)

        jax.debug.callback(raise_on_problem, labels)
    return ok


def check_labels(labels, num_classes, name, kind):
    """Validate labels; returns None (eager) or per-row validity (traced).

    Eager values raise `ValueError` naming `name` and the bad value. Traced
    values are checked at run time: TensorFlow graphs raise
    `InvalidArgumentError` (except under XLA, which drops asserts), JAX raises
    `JaxRuntimeError` wrapping the same message through `jax.debug.callback`.
    The returned validity lets callers turn bad rows into NaN as a last resort.
    """
    if is_concrete(labels):
        message = label_problem(ops.convert_to_numpy(labels), num_classes, name, kind)
        if message is not None:
            raise ValueError(message)
        return None
    return _traced_label_check(labels, num_classes, name, kind)


def _poison(onehot, ok):
    """Rows whose labels failed a traced check become NaN, so no silent number results."""
    if ok is None:
        return onehot
    return onehot + ops.where(ops.expand_dims(ok, -1), 0.0, float("nan"))


def check_exact_ids(labels, num_classes, name):
    dtype = keras.backend.standardize_dtype(labels.dtype)
    limit = {"float16": 2048, "bfloat16": 256}.get(dtype)
    if limit is not None and num_classes > limit + 1:
        raise ValueError(
            f"`{name}` arrived as {dtype}, which cannot hold class ids above {limit} "
            f"exactly, but num_classes = {num_classes}. Pass integer labels to a "
            "float32 loss (the default dtype)."
        )


def one_hot_labels(labels, num_classes, name="labels", dtype="float32", soft=False):
    """Integer ids of shape (N,) or (N, 1), or one-hot rows (N, K) -> (N, K).

    Ids must be whole numbers in [0, K) (Keras casts `y_true` to the loss
    dtype, so integer-valued floats are accepted; 0.4 is refused, not rounded).
    `(N, K)` rows must be one-hot, or, with `soft=True`, label distributions
    (non-negative, summing to 1). Bad labels raise `ValueError` in eager calls;
    for traced calls see `check_labels`.
    """
    labels = real_tensor(name, labels)
    rank = len(ops.shape(labels))
    width = static_dim(labels) if rank else None
    if rank == 2 and width == num_classes:
        ok = check_labels(labels, num_classes, name, "soft" if soft else "onehot")
        return _poison(ops.cast(labels, dtype), ok)
    if rank == 2 and width == 1:
        labels = ops.squeeze(labels, axis=-1)
    elif rank != 1:
        raise ValueError(
            f"`{name}` must be class ids of shape (N,) or (N, 1), or one-hot rows "
            f"of shape (N, {num_classes}) for num_classes = {num_classes} (the "
            f"predictions' width); got shape {tuple(ops.shape(labels))}."
        )
    if not keras.backend.is_int_dtype(labels.dtype):
        check_exact_ids(labels, num_classes, name)
    ok = check_labels(labels, num_classes, name, "ids")
    ids = ops.cast(labels, "int32")
    if ok is not None:
        ids = ops.where(ok, ids, 0)
    return _poison(ops.one_hot(ids, num_classes, dtype=dtype), ok)


def class_ids(labels, num_classes, name="labels"):
    """Flat integer class ids from NumPy-like labels; `ValueError` naming `name` otherwise."""
    labels = np.asarray(labels).reshape(-1)
    message = label_problem(labels, num_classes, name, "ids")
    if message is not None:
        raise ValueError(message)
    return labels.astype(int)
