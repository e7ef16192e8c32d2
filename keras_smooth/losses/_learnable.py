"""Base class for losses whose targets mix one-hot labels with a learned matrix."""

import keras
from keras import ops

from keras_smooth import _checks
from keras_smooth import targets
from keras_smooth.layers.q_matrix import QMatrix
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
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.num_classes = _checks.check_num_classes(num_classes)
        self.alpha = _checks.check_fraction("alpha", alpha)
        self.from_logits = _checks.check_bool("from_logits", from_logits)
        self.matrix_layer = QMatrix(
            self.num_classes,
            zero_diagonal=self.zero_diagonal,
            initializer=matrix_initializer,
            regularizer=matrix_regularizer,
            trainable=_checks.check_bool("matrix_trainable", matrix_trainable),
            name=f"{self.name}_matrix",
        )
        if matrix_logits is not None:
            self.matrix_layer.logits.assign(
                _checks.check_class_matrix(
                    "matrix_logits", matrix_logits, self.num_classes, rows_sum_to_one=False
                ).astype("float32")
            )
        if matrix_optimizer is None:
            matrix_optimizer = keras.optimizers.Adam(DEFAULT_MATRIX_LEARNING_RATE)
        self.matrix_optimizer = keras.optimizers.get(matrix_optimizer)
        self.matrix_optimizer.build([self.matrix_layer.logits])
        # Set by TrainableTargetsModel: the model's optimizer trains the matrix.
        self.attached = False

    @property
    def matrix(self):
        """The current K x K class matrix as a NumPy array."""
        return self.matrix_layer.matrix()

    def targets(self, labels):
        """The current training targets for `labels`, as a backend tensor."""
        return targets.matrix_smoothing(labels, self.matrix_layer.probabilities(), self.alpha)

    def objective(self, onehot, log_probs, probs, rows):
        """Per-sample loss with the gradient routing of the method."""
        raise NotImplementedError

    def matrix_objective(self, onehot, log_probs, probs, rows):
        """The part of `objective` that trains the matrix (predictions fixed)."""
        return self.objective(onehot, log_probs, probs, rows)

    def call(self, y_true, y_pred):
        onehot, log_probs = _common.prepare(
            y_true, y_pred, self.num_classes, self.from_logits
        )
        probs = ops.exp(log_probs)
        rows = ops.matmul(onehot, self.matrix_layer.probabilities())
        values = self.objective(onehot, log_probs, probs, rows)
        if not self.attached and self.matrix_layer.trainable:
            values = self._train_matrix(values, onehot, log_probs, probs)
        return ops.cast(values, self.dtype)

    def _train_matrix(self, values, onehot, log_probs, probs):
        if keras.backend.backend() == "tensorflow":
            from keras_smooth.losses import _tf_matrix_hook

            return _tf_matrix_hook.update_matrix_on_backward(
                self, values, onehot, log_probs, probs
            )
        return _refuse_gradient(
            values,
            f"{type(self).__name__}'s class matrix cannot be trained by a plain "
            f"model on the {keras.backend.backend()} backend: Keras only trains "
            "`model.trainable_weights`. Wrap the model: "
            "`model = keras_smooth.TrainableTargetsModel(model)` before "
            "`compile`, or freeze the matrix with "
            "`loss.matrix_layer.trainable = False`. (`evaluate` and `predict` "
            "of a plain model work: they take no gradient.)",
        )

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
        return config
