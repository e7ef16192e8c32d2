"""A class matrix with N learnable neighbours per row, for very many classes."""

import math

import keras
import numpy as np
from keras import ops

from keras_smooth import _checks
from keras_smooth.layers.q_matrix import take_rows


def check_neighbors(neighbors, num_classes):
    """`neighbors` as an int in [1, K - 1]; `ValueError` naming it otherwise."""
    if isinstance(neighbors, bool) or not isinstance(neighbors, (int, np.integer)):
        raise TypeError(f"`neighbors` must be an integer, got {neighbors!r}.")
    if not 1 <= neighbors <= num_classes - 1:
        raise ValueError(
            f"`neighbors` must be in [1, {num_classes - 1}] (num_classes - 1), got {neighbors}."
        )
    return int(neighbors)


def check_neighbor_ids(ids, num_classes, neighbors):
    """A `(K, N)` int array of distinct other classes per row; errors name `neighbor_ids`."""
    array = np.asarray(ids)
    expected = (num_classes, neighbors)
    if array.shape != expected:
        raise ValueError(
            f"`neighbor_ids` must have shape {expected} (num_classes, neighbors), "
            f"got shape {array.shape}."
        )
    if not (np.issubdtype(array.dtype, np.integer) or array.size == 0):
        if not np.issubdtype(array.dtype, np.floating) or np.any(array != np.round(array)):
            raise ValueError(f"`neighbor_ids` must hold integer class ids, got {array.dtype}.")
    bad = (array < 0) | (array >= num_classes)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"`neighbor_ids` must hold class ids in [0, {num_classes}), got {array[index]} "
            f"at {index}."
        )
    array = array.astype("int32")
    own = array == np.arange(num_classes)[:, None]
    if own.any():
        row = int(np.argwhere(own)[0][0])
        raise ValueError(f"`neighbor_ids` row {row} names its own class {row}.")
    ordered = np.sort(array, axis=1)
    repeated = np.argwhere(ordered[:, 1:] == ordered[:, :-1])
    if len(repeated):
        row, col = (int(i) for i in repeated[0])
        raise ValueError(
            f"`neighbor_ids` row {row} names class {ordered[row, col]} twice; "
            "neighbours of a class must be distinct."
        )
    return array


def default_neighbor_ids(num_classes, neighbors):
    """Placeholders `(y + 1, ..., y + N) mod K`: any choice gives the same zero-logit start."""
    return ((np.arange(num_classes)[:, None] + np.arange(1, neighbors + 1)) % num_classes).astype(
        "int32"
    )


@keras.saving.register_keras_serializable(package="keras_smooth")
class SparseQMatrix(keras.layers.Layer):
    """A K x K class matrix with N learnable entries per row (memory O(K N)).

    Row `y` is the paper's softmax row (LLS Eq. 4; LS++'s off-diagonal
    softmax, §3.2) of a K-vector of logits in which only `N` entries, at the
    row's neighbour classes `neighbor_ids[y]`, and (LLS) the diagonal are
    free; the logits of the other `M = K - N - 1` classes are tied to one
    shared tail logit `r_y`. `logits` has shape `(K, N + 2)`: column 0 the
    diagonal (unused with `zero_diagonal`), columns 1..N the neighbours,
    column N + 1 the tail.

    Formula:
        Z_y = exp(s_y) [not for LS++] + sum_n exp(theta_yn) + M exp(r_y)
        Q[y, y] = exp(s_y) / Z_y  (0 for LS++)
        Q[y, neighbor_ids[y, n]] = exp(theta_yn) / Z_y
        Q[y, j] = exp(r_y) / Z_y  for every other class j

    With all logits zero every row is uniform (over the other classes for
    LS++): training starts as uniform label smoothing, as with the dense
    matrix, whatever the neighbours. With `N = K - 1` there is no tail and
    the matrix is the dense one.

    Args:
        num_classes: `K`, at least 2.
        neighbors: `N` in [1, K - 1].
        neighbor_ids: optional `(K, N)` class ids (distinct, never the row's
            own class); default placeholders `(y + 1, ..., y + N) mod K`.
        zero_diagonal: LS++'s zero diagonal.
        initializer, regularizer: for the `(K, N + 2)` logits.
    """

    def __init__(
        self,
        num_classes,
        neighbors,
        neighbor_ids=None,
        zero_diagonal=False,
        initializer="zeros",
        regularizer=None,
        **kwargs,
    ):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.num_classes = _checks.check_num_classes(num_classes)
        self.neighbors = check_neighbors(neighbors, self.num_classes)
        self.zero_diagonal = _checks.check_bool("zero_diagonal", zero_diagonal)
        self.initializer = keras.initializers.get(initializer)
        self.regularizer = keras.regularizers.get(regularizer)
        if neighbor_ids is None:
            start = default_neighbor_ids(self.num_classes, self.neighbors)
        else:
            start = check_neighbor_ids(neighbor_ids, self.num_classes, self.neighbors)
        self.logits = self.add_weight(
            shape=(self.num_classes, self.neighbors + 2),
            initializer=self.initializer,
            regularizer=self.regularizer,
            name="logits",
        )
        self.neighbor_ids = self.add_weight(
            shape=(self.num_classes, self.neighbors),
            initializer="zeros",
            dtype="int32",
            trainable=False,
            name="neighbor_ids",
        )
        self.neighbor_ids.assign(start)
        self.built = True

    @property
    def tail_size(self):
        """`M = K - N - 1`, the classes of each row that share the tail logit."""
        return self.num_classes - self.neighbors - 1

    def _row_parts(self, logits):
        """(own, neighbour, tail) probabilities of gathered `(B, N + 2)` logits."""
        n = self.neighbors
        own, near, tail = logits[:, :1], logits[:, 1 : n + 1], logits[:, n + 1 :]
        parts = [near]
        if not self.zero_diagonal:
            parts.insert(0, own)
        if self.tail_size:
            parts.append(tail + math.log(self.tail_size))
        log_z = ops.logsumexp(ops.concatenate(parts, axis=-1), axis=-1, keepdims=True)
        own_p = ops.zeros_like(own) if self.zero_diagonal else ops.exp(own - log_z)
        tail_p = ops.exp(tail - log_z) if self.tail_size else ops.zeros_like(tail)
        return own_p, ops.exp(near - log_z), tail_p

    def support(self, ids, table=None):
        """Each sample's row on its support, without building `(B, K)` rows.

        Returns `(columns, probs, tail)`: `(B, N + 1)` class ids (the own class
        first, then the neighbours), their probabilities in row `ids`
        (Formula above; 0 for the own class with `zero_diagonal`), and the
        `(B, 1)` probability of each other class. Costs O(B N); gradients
        reach only the batch's rows of the logits. `table` stands in for the
        logits (a tensor read from them).
        """
        ids = ops.cast(ids, "int32")
        table = self.logits if table is None else table
        own_p, near_p, tail_p = self._row_parts(take_rows(ops.cast(table, "float32"), ids))
        columns = ops.concatenate(
            [ops.expand_dims(ids, -1), ops.cast(ops.take(self.neighbor_ids, ids, axis=0), "int32")],
            axis=-1,
        )
        return columns, ops.concatenate([own_p, near_p], axis=-1), tail_p

    def rows(self, ids, table=None):
        """Rows `ids` of the matrix as dense `(B, K)` float32 rows, in O(B K).

        The tail value everywhere, then the own and neighbour probabilities
        written at their columns (see `support`).
        """
        _, values, tail_p = self.support(ids, table)
        tail = ops.broadcast_to(tail_p, (ops.shape(values)[0], self.num_classes))
        return ops.scatter_update(tail, self._support(ids), ops.reshape(values, (-1,)))

    def _support(self, ids):
        """`(B (N + 1), 2)` indices of each sample's own class and neighbours in a (B, K) array."""
        columns = ops.concatenate(
            [ops.expand_dims(ids, -1), ops.take(self.neighbor_ids, ids, axis=0)], axis=-1
        )
        rows = ops.repeat(
            ops.expand_dims(ops.arange(ops.shape(ids)[0], dtype="int32"), -1),
            self.neighbors + 1,
            axis=1,
        )
        return ops.reshape(ops.stack([rows, ops.cast(columns, "int32")], axis=-1), (-1, 2))

    def dense_logits(self):
        """The equivalent K x K logits as NumPy (tail entries = `r_y`; -inf diagonal for LS++)."""
        logits = ops.convert_to_numpy(self.logits).astype("float64")
        ids = ops.convert_to_numpy(self.neighbor_ids)
        k, n = self.num_classes, self.neighbors
        dense = np.repeat(logits[:, n + 1 :], k, axis=1)
        rows = np.arange(k)[:, None]
        dense[rows, ids] = logits[:, 1 : n + 1]
        dense[np.arange(k), np.arange(k)] = -np.inf if self.zero_diagonal else logits[:, 0]
        return dense

    def matrix(self):
        """The current matrix as dense K x K NumPy (K^2 memory: for inspection)."""
        dense = self.dense_logits()
        dense = np.exp(dense - dense.max(axis=1, keepdims=True))
        return (dense / dense.sum(axis=1, keepdims=True)).astype("float32")

    def probabilities(self):
        """The dense K x K matrix as a backend tensor (K^2 memory: for inspection)."""
        return ops.convert_to_tensor(self.matrix())

    def rechoose(self, ids, probs):
        """Re-choose neighbours of the classes `ids` from predictions `probs` (B, K).

        For each sample, the weakest neighbour of its class (smallest logit)
        is replaced by the sample's most probable class outside the row's
        support, if and only if that neighbour's logit has fallen below the
        tail logit, i.e. training found it *less* related than an average
        unlisted class. The newcomer starts at the tail logit, so its
        probability is unchanged at the swap; kept neighbours keep their
        learned logits. Nothing changes while the row's logits are all equal.

        Returns:
            A float32 `(K, N + 2)` mask, 1 at the logits whose entry was given
            to a newcomer, else 0 (all 0 when nothing can be re-chosen). A
            gradient computed before the swap belongs to the predecessor there:
            on TensorFlow it is zeroed (under `TrainableTargetsModel`) or was
            applied before the swap, and the loss's own plain `Adam` also
            zeroes its momentum there. The optimizer of a `TrainableTargetsModel`
            keeps its moments at those entries: with momentum the newcomer
            still drifts with its predecessor's last steps, fading in a few.
        """
        if not self.tail_size:
            return ops.zeros(ops.shape(self.logits), "float32")
        n = self.neighbors
        ids = ops.cast(ids, "int32")
        near_ids = ops.take(self.neighbor_ids, ids, axis=0)
        logits = ops.take(self.logits, ids, axis=0)
        near, tail = logits[:, 1 : n + 1], logits[:, n + 1]
        marks = -ops.ones((ops.shape(ids)[0] * (n + 1),), "float32")
        outside = ops.scatter_update(ops.cast(probs, "float32"), self._support(ids), marks)
        newcomer = ops.cast(ops.top_k(outside, k=1)[1][:, 0], "int32")  # cheaper than argmax
        slot = ops.cast(ops.argmin(near, axis=-1), "int32")
        weakest = ops.take_along_axis(near, ops.expand_dims(slot, -1), axis=-1)[:, 0]
        old_id = ops.take_along_axis(near_ids, ops.expand_dims(slot, -1), axis=-1)[:, 0]
        swap = weakest < tail
        where = ops.stack([ids, slot], axis=-1)
        self.neighbor_ids.assign(
            ops.scatter_update(self.neighbor_ids, where, ops.where(swap, newcomer, old_id))
        )
        where = ops.stack([ids, slot + 1], axis=-1)
        self.logits.assign(
            ops.scatter_update(self.logits, where, ops.where(swap, tail, weakest))
        )
        # Duplicate classes in a batch pick the same slot from the same logits, so
        # they agree on `swap`; scatter_update keeps one of the equal values.
        return ops.scatter_update(ops.zeros(ops.shape(self.logits), "float32"), where,
                                  ops.cast(swap, "float32"))

    def get_config(self):
        config = super().get_config()
        config.update(
            num_classes=self.num_classes,
            neighbors=self.neighbors,
            zero_diagonal=self.zero_diagonal,
            initializer=keras.initializers.serialize(self.initializer),
            regularizer=keras.regularizers.serialize(self.regularizer),
        )
        return config
