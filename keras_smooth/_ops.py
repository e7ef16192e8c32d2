"""The array operations of the target math: `keras.ops`, or TensorFlow inside `tf.data`.

A `tf.data` map traces its function into a TensorFlow graph whatever the Keras
backend, so its inputs are symbolic `tf.Tensor`s. On the TensorFlow backend
`keras.ops` is TensorFlow and traces with them. On JAX and torch, `keras.ops`
cannot take them ("Cannot convert a symbolic tf.Tensor to a numpy array"),
but TensorFlow itself -- a dependency of keras_smooth -- is always there.

So the target builders (`keras_smooth.targets`) and the label checks
(`keras_smooth._checks`) call their operations through `ops` below, which is
`keras.ops` except while a function wrapped with `tf_data_aware` runs on
symbolic `tf.Tensor` arguments under another backend: then it is
`_TensorFlowOps`, the few operations the targets use, with the semantics of
`keras.ops` (what Keras's own preprocessing layers do inside `tf.data`, with
public TensorFlow only). The choice is per thread and lasts for one call of
the outermost wrapped function.
"""

import functools
import numbers
import sys
import threading

import numpy as np

from keras_smooth._lazy import lazy_module

keras = lazy_module("keras")  # imported on first use: `import keras_smooth` stays quick

_STATE = threading.local()


def tf_graph_active():
    """True while a `tf_data_aware` function runs in TensorFlow on another backend."""
    return getattr(_STATE, "tensorflow", False)


def is_symbolic_tf(x):
    """True for a symbolic (graph) `tf.Tensor`, e.g. an input of a `tf.data` map."""
    tf = sys.modules.get("tensorflow")  # no tf.Tensor can exist before TF is imported
    return tf is not None and isinstance(x, tf.Tensor) and tf.is_symbolic_tensor(x)


def tf_xla_active():
    """True while TensorFlow traces for XLA (`jit_compile=True`, which Keras's "auto" turns
    on for TensorFlow on a GPU): ops with data-dependent sizes, such as a weighted
    `bincount`, cannot be compiled there."""
    tf = sys.modules.get("tensorflow")
    if tf is None or tf.executing_eagerly():
        return False
    try:  # the context `tf.function(jit_compile=True)` traces in (not public API)
        from tensorflow.python.framework import ops as tf_ops
        from tensorflow.python.ops import control_flow_util
    except ImportError:  # moved: assume any traced code may be compiled
        return True
    return bool(control_flow_util.GraphOrParentsInXlaContext(tf_ops.get_default_graph()))


def _needs_tensorflow(args, kwargs):
    if tf_graph_active() or keras.backend.backend() == "tensorflow":
        return False
    return any(is_symbolic_tf(value) for value in (*args, *kwargs.values()))


def tf_data_aware(function):
    """Run `function` in TensorFlow when a non-TF backend hands it symbolic `tf.Tensor`s."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        if not _needs_tensorflow(args, kwargs):
            return function(*args, **kwargs)
        _STATE.tensorflow = True
        try:
            return function(*args, **kwargs)
        finally:
            _STATE.tensorflow = False

    return wrapper


class _TensorFlowOps:
    """The `keras.ops` functions the targets use, in TensorFlow (same semantics)."""

    def __init__(self):
        import tensorflow as tf

        self.tf = tf

    def _tensors(self, *values):
        """Python numbers take the dtype of the tensors beside them, as in `keras.ops`."""
        tf = self.tf
        dtype = next((v.dtype for v in values if tf.is_tensor(v)), None)
        return [tf.convert_to_tensor(v, dtype=dtype if isinstance(v, numbers.Number) else None)
                for v in values]

    def convert_to_tensor(self, x, dtype=None):
        if isinstance(x, np.ndarray) and dtype is None and x.dtype == np.float64:
            dtype = "float32"  # keras.ops's floatx, as on JAX and torch
        return self.tf.convert_to_tensor(x, dtype=dtype)

    def convert_to_numpy(self, x):
        return np.asarray(x)  # only reached for eager values

    def cast(self, x, dtype):
        return self.tf.cast(x, dtype)

    def shape(self, x):
        static = self.tf.convert_to_tensor(x).shape.as_list()
        dynamic = self.tf.shape(x)
        return tuple(dynamic[i] if dim is None else dim for i, dim in enumerate(static))

    def where(self, condition, x1, x2):
        return self.tf.where(condition, *self._tensors(x1, x2))

    def minimum(self, x1, x2):
        return self.tf.minimum(*self._tensors(x1, x2))

    def power(self, x1, x2):
        return self.tf.pow(*self._tensors(x1, x2))

    def equal(self, x1, x2):
        return self.tf.equal(*self._tensors(x1, x2))

    def sum(self, x, axis=None, keepdims=False):
        return self.tf.reduce_sum(x, axis=axis, keepdims=keepdims)

    def all(self, x, axis=None, keepdims=False):
        return self.tf.reduce_all(self.tf.cast(x, "bool"), axis=axis, keepdims=keepdims)

    def max(self, x, axis=None, keepdims=False, initial=None):
        out = self.tf.reduce_max(x, axis=axis, keepdims=keepdims)
        return out if initial is None else self.tf.maximum(*self._tensors(out, initial))

    def softmax(self, x, axis=-1):
        return self.tf.nn.softmax(x, axis=axis)

    def one_hot(self, x, num_classes, axis=-1, dtype=None):
        return self.tf.one_hot(x, num_classes, axis=axis, dtype=dtype or "float32")

    def argsort(self, x, axis=-1):
        return self.tf.argsort(x, axis=axis, stable=True)

    def squeeze(self, x, axis=None):
        return self.tf.squeeze(x, axis=axis)

    def expand_dims(self, x, axis):
        return self.tf.expand_dims(x, axis)

    def matmul(self, x1, x2):
        return self.tf.matmul(x1, x2)

    def isfinite(self, x):
        return self.tf.math.is_finite(x)

    def __getattr__(self, name):  # one-argument functions with the same meaning
        aliases = {"square": "square", "ones_like": "ones_like", "abs": "abs",
                   "round": "round", "logical_and": "logical_and",
                   "logical_or": "logical_or", "stop_gradient": "stop_gradient"}
        if name not in aliases:
            raise AttributeError(
                f"keras_smooth's TensorFlow operations (used inside tf.data on the "
                f"{keras.backend.backend()} backend) have no {name!r}."
            )
        return getattr(self.tf, aliases[name])


class _Operations:
    """`keras.ops`, or `_TensorFlowOps` while `tf_graph_active()`."""

    _tensorflow = None

    def __getattr__(self, name):
        if not tf_graph_active():
            return getattr(keras.ops, name)
        if _Operations._tensorflow is None:
            _Operations._tensorflow = _TensorFlowOps()
        return getattr(_Operations._tensorflow, name)


ops = _Operations()
