"""A trainable K x K class matrix stored as logits (LLS's Q, LS++'s C)."""

import os

import keras
from keras import ops

from keras_smooth import _checks


def dense_matrix_error(k, where, copies=1):
    """A MemoryError naming `num_classes` for `copies` K x K float32 arrays that do not fit."""
    what = "a dense K x K float32 matrix" + (" with its optimizer's state" if copies > 1 else "")
    return MemoryError(
        f"`num_classes`={k}: {what} needs {4 * copies * k * k / 2**30:.1f} GiB, more than "
        f"{where} has. Pass `neighbors=N` to LLSLoss / LSPlusPlusLoss (or use `SparseQMatrix`) "
        "for N learnable entries per row, O(K N) memory.")


def check_dense_fits(k, copies=1):
    """Refuses at once `copies` K x K float32 arrays larger than the machine's physical
    memory (a backend would first try, which can take seconds, then fail in its own words)."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not a POSIX system: the backend decides
        return
    if 4 * copies * k * k > memory > 0:
        raise dense_matrix_error(k, "this machine's memory", copies)


def is_out_of_memory(error):
    """Whether a backend's exception says an allocation failed (each words it its own way)."""
    text = str(error)
    return isinstance(error, MemoryError) or any(
        mark in text for mark in ("RESOURCE_EXHAUSTED", "OOM when allocating", "out of memory",
                                  "Out of memory", "can't allocate memory"))


def take_rows(table, ids, each_row_once=True):
    """`table[ids]` whose gradient names each row once.

    On TensorFlow a gather's gradient is `IndexedSlices` with one slice per
    id, repeats included, and Keras optimizers with slots (Adam) then
    mis-scale the rows that occur twice. Gathering the unique ids and
    expanding afterwards gives the same values and one slice per row, so a
    step equals the step on the dense gradient. With more than one replica
    the strategy would concatenate the replicas' slices (repeats again), so
    there the gradient is a dense sum. Other backends differentiate a gather
    into a dense scatter-add, which sums repeats correctly.

    `each_row_once=False` keeps the plain gather (one slice per id), for a
    caller that sums the slices into a dense gradient itself.
    """
    ids = ops.cast(ids, "int32")
    if keras.backend.backend() != "tensorflow" or not each_row_once:
        return ops.take(table, ids, axis=0)
    import tensorflow as tf

    if tf.distribute.get_strategy().num_replicas_in_sync > 1:
        return _take_with_dense_gradient(table, tf.reshape(ids, [-1]))
    unique, position = tf.unique(tf.reshape(ids, [-1]))
    return tf.gather(tf.gather(table, unique), position)


def _take_with_dense_gradient(table, ids):
    import tensorflow as tf

    @tf.custom_gradient
    def take(table):
        def backward(upstream):
            return tf.math.unsorted_segment_sum(upstream, ids, tf.shape(table)[0])

        return tf.gather(table, ids), backward

    return take(table)


@keras.saving.register_keras_serializable(package="keras_smooth")
class QMatrix(keras.layers.Layer):
    """Row-stochastic K x K matrix held as trainable logits.

    Row `y` is `softmax(logits[y])` (LLS paper, Eq. 4). With
    `zero_diagonal=True` the softmax runs over the K - 1 off-diagonal logits of
    each row and the diagonal is exactly 0 (the C-matrix of LS++, §3.2). Logits
    start at zero by default, so every row starts uniform.

    Calling the layer on `(N, K)` one-hot (or soft) labels returns
    `labels @ matrix`, i.e. row `y` for each sample, as a matrix product so the
    gradient stays dense. The losses call `rows(ids)` instead, which gathers
    the batch's rows of the logits and normalises only those (cost O(N K),
    not O(K^2)). The matrix and the output are float32 under every dtype
    policy (`compute_output_spec` agrees).

    Args:
        num_classes: `K`, at least 2.
        zero_diagonal: force a zero diagonal (LS++).
        initializer, regularizer, constraint: for the logits, as in
            `keras.layers.Dense`.

    Examples:
    >>> import numpy as np
    >>> from keras_smooth.layers import QMatrix
    >>> q = QMatrix(3, zero_diagonal=True)
    >>> np.round(q.matrix(), 3)
    array([[0. , 0.5, 0.5],
           [0.5, 0. , 0.5],
           [0.5, 0.5, 0. ]], dtype=float32)
    """

    def __init__(
        self,
        num_classes,
        zero_diagonal=False,
        initializer="zeros",
        regularizer=None,
        constraint=None,
        **kwargs,
    ):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.num_classes = _checks.check_num_classes(num_classes)
        self.zero_diagonal = _checks.check_bool("zero_diagonal", zero_diagonal)
        self.initializer = keras.initializers.get(initializer)
        self.regularizer = keras.regularizers.get(regularizer)
        self.constraint = keras.constraints.get(constraint)
        self.build()

    def build(self, input_shape=None):
        if self.built:
            return
        k = self.num_classes
        check_dense_fits(k)
        try:
            self.logits = self.add_weight(
                shape=(k, k),
                initializer=self.initializer,
                regularizer=self.regularizer,
                constraint=self.constraint,
                name="logits",
            )
        except Exception as error:  # each backend words (and types) running out differently
            if not is_out_of_memory(error):
                raise
            raise dense_matrix_error(k, "the device") from None
        self.built = True

    def probabilities(self):
        """The K x K matrix as a backend tensor (differentiable in the logits)."""
        logits = ops.cast(self.logits, "float32")
        if not self.zero_diagonal:
            return ops.softmax(logits, axis=-1)
        eye = ops.eye(self.num_classes, dtype="bool")
        probs = ops.softmax(ops.where(eye, -1e30, logits), axis=-1)
        return ops.where(eye, 0.0, probs)

    def rows(self, ids, table=None, each_row_once=True, own=None):
        """Rows `ids` of the matrix, `(N, K)`, from the gathered logits only.

        Row `y` is `softmax(logits[y])` (LLS Eq. 4; over the off-diagonal
        entries for LS++, §3.2), computed for the batch's rows alone: no K x K
        temporary. The gradient reaches only those rows of the logits (on
        TensorFlow as `IndexedSlices` with each row once, see `take_rows`;
        one slice per id with `each_row_once=False`). `own`: the `(N, K)` one-hot
        rows of `ids` where the caller has them (the zero diagonal's mask, not
        built again).
        """
        table = self.logits if table is None else table
        logits = take_rows(ops.cast(table, "float32"), ids, each_row_once)
        if not self.zero_diagonal:
            return ops.softmax(logits, axis=-1)
        # The own class's logit pushed to -1e30: its exp is exactly 0 in float32, so the
        # softmax runs over the off-diagonal entries (arithmetic, not selects: cheaper
        # to differentiate, and that entry's gradient is exactly 0 too).
        own = ops.one_hot(ids, self.num_classes) if own is None else ops.cast(own, "float32")
        return ops.softmax(logits - 1e30 * own, axis=-1)

    def matrix(self):
        """The current K x K matrix as a NumPy array."""
        return ops.convert_to_numpy(self.probabilities())

    def call(self, labels):
        shape = tuple(labels.shape)
        if len(shape) != 2 or shape[-1] not in (None, self.num_classes):
            raise ValueError(
                f"`labels` must be one-hot or soft rows of shape (N, {self.num_classes}) "
                f"(num_classes), got shape {shape}; turn class ids into rows with "
                "`keras.ops.one_hot`."
            )
        return ops.matmul(ops.cast(labels, "float32"), self.probabilities())

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.num_classes,)

    def compute_output_spec(self, labels):
        # `call` computes in float32 under every dtype policy; say so.
        return keras.KerasTensor(self.compute_output_shape(labels.shape), dtype="float32")

    def get_config(self):
        config = super().get_config()
        config.update(
            num_classes=self.num_classes,
            zero_diagonal=self.zero_diagonal,
            initializer=keras.initializers.serialize(self.initializer),
            regularizer=keras.regularizers.serialize(self.regularizer),
            constraint=keras.constraints.serialize(self.constraint),
        )
        return config
