"""Base class for losses whose targets mix one-hot labels with a learned matrix."""

import keras
import numpy as np
from keras import ops

from keras_smooth import _checks
from keras_smooth import targets
from keras_smooth.layers import q_matrix
from keras_smooth.layers.q_matrix import QMatrix
from keras_smooth.layers.sparse_q_matrix import SparseQMatrix
from keras_smooth.losses import _common

DEFAULT_MATRIX_LEARNING_RATE = 1e-2


def matrix_loss_inputs(y_true, y_pred, matrix, alpha, from_logits):
    """For the function twins: (targets, log-probabilities, probabilities)."""
    alpha = _checks.check_fraction("alpha", alpha)
    if _checks.is_concrete(matrix):
        from keras_smooth.losses.distillation import _check_matrix

        matrix = _check_matrix(ops.convert_to_numpy(matrix), alpha)
    num_classes = _checks.static_dim(matrix)
    onehot, log_probs = _common.prepare(y_true, y_pred, num_classes, from_logits)
    rows = ops.matmul(onehot, ops.cast(matrix, "float32"))
    return targets.mix(onehot, rows, alpha), log_probs, ops.exp(log_probs)


def _refuse_gradient(values, message):
    """`values` unchanged, but taking a gradient through them raises `ValueError(message)`.

    The check of a plain model on JAX and torch. Only a training step takes a
    gradient of the loss: `evaluate`, `predict` and calling the loss never
    do, so they work, and `fit` / `train_on_batch` fail at their first step,
    before any weight changes (JAX: while the train step is traced; torch:
    in the first backward pass). The loss itself cannot tell a traced train
    step from a traced evaluation step; the gradient can.
    """
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        @jax.custom_vjp
        def guard(v):
            return v

        def backward(_, upstream):
            raise ValueError(message)

        guard.defvjp(lambda v: (v, None), backward)
        return guard(values)
    if backend == "torch":
        import torch

        if not (torch.is_grad_enabled() and values.requires_grad):
            return values

        class Guard(torch.autograd.Function):
            @staticmethod
            def forward(ctx, v):
                return v.view_as(v)

            @staticmethod
            def backward(ctx, upstream):
                raise ValueError(message)

        return Guard.apply(values)
    return values


class LearnableTargetLoss(_common.Loss):
    """Targets `(1 - alpha) * onehot + alpha * M[y]` with a trainable matrix M.

    Subclasses define `zero_diagonal` and `objective`/`matrix_objective`.

    How the matrix trains:
        * TensorFlow backend, any model (Sequential, functional, subclassed):
          each backward pass through the loss takes one step of
          `matrix_optimizer` on the matrix (see `_tf_matrix_hook`). `evaluate`
          and `predict` never change it.
        * Any backend: wrap the model in
          `keras_smooth.TrainableTargetsModel`; the matrix then joins the
          model's trainable weights and the model's optimizer trains it.
        * A plain model on JAX or torch would leave the matrix untrained:
          its first training step (`fit`, `train_on_batch`, any gradient
          taken through the loss) raises a `ValueError` instead, before any
          weight changes. `evaluate` and `predict` take no gradient, so they
          work on every backend (see `_refuse_gradient`).

    Cost: a step gathers the batch's rows of the matrix logits and normalises
    only those (O(B K) for a batch of B), and the matrix's gradient names only
    those rows. The optimizer's update of a dense K x K matrix (and its slots)
    is the remaining O(K^2) per step (on TensorFlow a plain `Adam`, the
    default, takes it in one fused kernel: same rule, about 0.4 of the time
    of Keras's generic step, `benchmarks/matrix_step.py`, and the loss then
    writes its gradients out, `dense_step`); `neighbors=N`
    keeps N learnable entries per row instead (`SparseQMatrix`, O(K N)).

    Many classes (`neighbors=N`): the matrix keeps, per row, N learnable
    logits at its neighbour classes (plus the diagonal for LLS) and one tail
    logit shared by every other class (`SparseQMatrix`): memory O(K N), a
    step O(B K) for the loss over predictions and O(B N) for the matrix.
    With all logits zero every row is uniform, so training starts as uniform
    LS, exactly like the dense matrix, whichever neighbours are listed; with
    N = K - 1 it is the dense matrix. Neighbours:

        * start: `neighbor_ids` if given (a `(K, N)` array, e.g. each class's
          most confused classes in a teacher's confusion matrix), else the
          placeholders `(y + 1, ..., y + N) mod K`. The placeholders cost
          nothing: they only decide which entries may later move away from
          the tail, and the rule below replaces those that do not earn it.
        * re-choose (every TensorFlow training step unless
          `rechoose_neighbors=False`): for each sample, if the weakest
          neighbour of its class has a logit *below the tail logit*, i.e.
          training found that class less related than an average unlisted
          class, it is replaced by the sample's most probable class outside
          the row's support. The newcomer starts at the tail logit, so the
          row's probabilities do not jump; kept neighbours keep their learned
          logits. Evidence comes from the network's own confusions (the
          classes it predicts instead of the label), which is what the
          matrix would learn to put mass on; a learned neighbour survives as
          long as the matrix rates it above the tail. It costs one `(B, K)`
          top-1 per step and needs no K x K statistics. A newcomer gets no
          gradient from its predecessor; the loss's own plain `Adam` also
          zeroes its momentum there (not its second moment, a scale), while
          other optimizers (and the model's under `TrainableTargetsModel`)
          keep that entry's momentum, which fades in a few steps.
        * JAX and torch run the training step inside a traced function that
          cannot change the ids; there the ids stay as given unless you call
          `loss.update_neighbors(y, model.predict(x))` between epochs (same
          rule, eager). Re-choosing is refused under a multi-replica
          `tf.distribute` strategy (pass ids and `rechoose_neighbors=False`).

    Saving: as for a Keras layer, `get_config()` holds the construction
    arguments, including whether the matrix is trainable (`matrix_trainable`),
    but not its learned logits, so its size does not grow with K^2. The
    learned matrix (and the state of `matrix_optimizer`) travels in a `.keras`
    file, which restores it exactly; to copy it between loss objects use
    `matrix_layer.get_weights()` / `set_weights()`, or pass it as
    `matrix_logits=` to a new loss.
    """

    zero_diagonal = False

    def __init__(
        self,
        num_classes,
        alpha=0.1,
        from_logits=True,
        matrix_optimizer=None,
        matrix_initializer="zeros",
        matrix_regularizer=None,
        reduction="sum_over_batch_size",
        name=None,
        dtype=None,
        matrix_trainable=True,
        matrix_logits=None,
        neighbors=None,
        neighbor_ids=None,
        rechoose_neighbors=True,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.num_classes = _checks.check_num_classes(num_classes)
        self.alpha = _checks.check_fraction("alpha", alpha)
        self.from_logits = _checks.check_bool("from_logits", from_logits)
        trainable = _checks.check_bool("matrix_trainable", matrix_trainable)
        self.rechoose_neighbors = _checks.check_bool("rechoose_neighbors", rechoose_neighbors)
        if matrix_optimizer is None:
            matrix_optimizer = keras.optimizers.Adam(DEFAULT_MATRIX_LEARNING_RATE)
        self.matrix_optimizer = keras.optimizers.get(matrix_optimizer)
        # K x K copies of a dense matrix: its logits, and Adam's two moments (an optimizer
        # of another kind that runs out is named below, after the backend tried)
        copies = 3 if isinstance(self.matrix_optimizer, keras.optimizers.Adam) else 1
        if neighbors is None:
            q_matrix.check_dense_fits(self.num_classes, copies=copies)
        self.matrix_layer = self._build_matrix(
            neighbors, neighbor_ids, matrix_logits, initializer=matrix_initializer,
            regularizer=matrix_regularizer, trainable=trainable)
        try:
            self.matrix_optimizer.build([self.matrix_layer.logits])
        except Exception as error:  # see QMatrix.build
            if neighbors is not None or not q_matrix.is_out_of_memory(error):
                raise
            raise q_matrix.dense_matrix_error(self.num_classes, "the device", copies) from None
        # Set by TrainableTargetsModel: the model's optimizer trains the matrix.
        self.attached = False

    def _build_matrix(self, neighbors, neighbor_ids, matrix_logits, **options):
        """The loss's `QMatrix` (dense) or `SparseQMatrix` (`neighbors` set), with
        `matrix_logits` as its starting logits when given (dense only)."""
        options.update(zero_diagonal=self.zero_diagonal, name=f"{self.name}_matrix")
        if neighbors is None:
            if neighbor_ids is not None:
                raise ValueError("`neighbor_ids` needs `neighbors` (the N of its shape (K, N)).")
            layer = QMatrix(self.num_classes, **options)
        elif matrix_logits is not None:
            raise ValueError(
                "`matrix_logits` sets a dense K x K matrix; with `neighbors` set the "
                "matrix is sparse. Copy one with `matrix_layer.set_weights` instead."
            )
        else:
            layer = SparseQMatrix(self.num_classes, neighbors, neighbor_ids=neighbor_ids,
                                  **options)
        if matrix_logits is not None:
            logits = _checks.check_class_matrix("matrix_logits", matrix_logits, self.num_classes,
                                                rows_sum_to_one=False)
            if np.abs(logits).max() > np.finfo("float32").max:  # inf in the float32 matrix
                raise ValueError("`matrix_logits` must be within the float32 range, got "
                                 f"{logits.flat[np.abs(logits).argmax()]:g}.")
            layer.logits.assign(logits.astype("float32"))
        return layer

    @property
    def neighbors(self):
        """N learnable entries per row of a sparse matrix, or None (dense)."""
        return getattr(self.matrix_layer, "neighbors", None)

    @property
    def matrix(self):
        """The current K x K class matrix as a NumPy array."""
        return self.matrix_layer.matrix()

    def targets(self, labels):
        """The current training targets for `labels`, as a backend tensor."""
        onehot = _checks.one_hot_labels(labels, self.num_classes)
        return targets.mix(onehot, self.matrix_layer.rows(class_ids(onehot)), self.alpha)

    def update_neighbors(self, y_true, y_pred):
        """Re-choose a sparse matrix's neighbours from labels and predictions.

        The rule of `SparseQMatrix.rechoose`, applied eagerly: the TensorFlow
        training step applies it by itself; on JAX and torch call this (for
        example from a callback) to let neighbours change during training.
        """
        if self.neighbors is None:
            raise ValueError("`update_neighbors` needs a sparse matrix (`neighbors=N`).")
        onehot, log_probs = _common.prepare(y_true, y_pred, self.num_classes, self.from_logits)
        self.matrix_layer.rechoose(class_ids(onehot), ops.exp(log_probs))

    def objective(self, onehot, log_probs, probs, rows):
        """Per-sample loss with the gradient routing of the method."""
        raise NotImplementedError

    def support_objective(self, log_probs, probs, columns, support, tail):
        """`objective` for a sparse matrix from the support alone (see subclasses)."""
        raise NotImplementedError

    def values(self, onehot, ids, log_probs, probs, table=None, each_row_once=True):
        """Per-sample values; `table` stands in for the matrix logits (`each_row_once`:
        see `QMatrix.rows`)."""
        layer = self.matrix_layer
        if self.neighbors is None:
            rows = layer.rows(ids, table, each_row_once=each_row_once)
            return self.objective(onehot, log_probs, probs, rows)
        columns, support, tail = layer.support(ids, table)
        own = ops.one_hot(ops.zeros_like(ids), self.neighbors + 1)  # column 0: the label
        support = targets.mix(own, support, self.alpha)
        values = self.support_objective(log_probs, probs, columns, support, self.alpha * tail)
        return values + 0.0 * onehot[:, 0]  # keeps a traced bad label's NaN (see _checks)

    def dense_step(self, onehot, log_probs, probs, rows):
        """`(values, backward)` of `objective` on a dense matrix, given the batch's
        rows `(B, K)` (`QMatrix.rows`), with the gradients written out:
        `backward(upstream)` returns `(d log_probs, d row_logits)` for the `(B,)`
        upstream gradient (the row logits are the ones `rows` normalises). The
        TensorFlow training step (`_tf_matrix_hook`) uses it instead of autodiff
        where `dense_step_applies()`; subclasses that write their gradients out
        override it."""
        raise NotImplementedError

    def dense_step_applies(self):
        """Whether `dense_step` gives exactly what autodiff of `values` would: it is
        written out (not this base's) by the class that also defines the `objective`
        in effect, `values` and
        `matrix_layer.rows` are this package's own (a plain `QMatrix`), the matrix keeps
        that class's diagonal rule, and `keras.config.epsilon()` is positive (the
        formulas' clamp mask). Any subclass that changes one of these is
        differentiated by autodiff instead."""
        if keras.config.epsilon() <= 0:
            return False
        mro = type(self).__mro__

        def owner(name):
            return next(c for c in mro if name in vars(c))

        step = owner("dense_step")
        layer = self.matrix_layer
        return (step is not LearnableTargetLoss and owner("objective") is step
                and owner("values") is LearnableTargetLoss
                and type(layer).rows is QMatrix.rows
                and layer.zero_diagonal == step.zero_diagonal)

    def matrix_objective(self, onehot, log_probs, probs, rows):
        """The part of `objective` that trains the matrix (predictions fixed)."""
        return self.objective(onehot, log_probs, probs, rows)

    def call(self, y_true, y_pred):
        if self.neighbors is not None and _are_ids(y_true):
            # Sparse: no (B, K) one-hot rows; a bad traced label still gives NaN.
            ids, onehot, log_probs = _common.prepare_ids(
                y_true, y_pred, self.num_classes, self.from_logits
            )
        else:
            onehot, log_probs = _common.prepare(
                y_true, y_pred, self.num_classes, self.from_logits
            )
            ids = class_ids(onehot, y_true)
        layer = self.matrix_layer
        if layer.trainable and keras.backend.backend() == "tensorflow":
            rechoose = self.neighbors is not None and self.rechoose_neighbors
            if rechoose or not self.attached:
                from keras_smooth.losses import _tf_matrix_hook

                values = _tf_matrix_hook.loss_with_matrix_step(self, onehot, ids, log_probs)
                return ops.cast(values, self.dtype)
        values = self.values(onehot, ids, log_probs, ops.exp(log_probs))
        if layer.trainable and not self.attached:
            values = _refuse_gradient(
                values,
                f"{type(self).__name__}'s class matrix cannot be trained by a plain "
                f"model on the {keras.backend.backend()} backend: Keras only trains "
                "`model.trainable_weights`. Wrap the model: "
                "`model = keras_smooth.TrainableTargetsModel(model)` before "
                "`compile`, or freeze the matrix with "
                "`loss.matrix_layer.trainable = False`. (`evaluate` and `predict` "
                "of a plain model work: they take no gradient.)",
            )
        return ops.cast(values, self.dtype)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_classes=self.num_classes,
            alpha=self.alpha,
            from_logits=self.from_logits,
            matrix_optimizer=keras.optimizers.serialize(self.matrix_optimizer),
            matrix_initializer=keras.initializers.serialize(
                self.matrix_layer.initializer
            ),
            matrix_regularizer=keras.regularizers.serialize(
                self.matrix_layer.regularizer
            ),
            matrix_trainable=bool(self.matrix_layer.trainable),
        )
        if self.neighbors is not None:
            config.update(neighbors=self.neighbors, rechoose_neighbors=self.rechoose_neighbors)
        return config


def class_ids(onehot, y_true=None):
    """Class ids of validated labels (a NaN-poisoned row keeps its NaN in `onehot`).

    Ids given as `(B,)`/`(B, 1)` are used as they are (after validation),
    sparing an argmax over `(B, K)`.
    """
    if y_true is not None and len(ops.shape(y_true)) in (1, 2):
        if len(ops.shape(y_true)) == 1 or ops.shape(y_true)[-1] == 1:
            ids = ops.cast(ops.reshape(y_true, (-1,)), "int32")
            return ops.clip(ids, 0, ops.shape(onehot)[-1] - 1)
    return ops.cast(ops.argmax(onehot, axis=-1), "int32")


def _are_ids(y_true):
    shape = ops.shape(y_true)
    return len(shape) == 1 or (len(shape) == 2 and shape[-1] == 1)
