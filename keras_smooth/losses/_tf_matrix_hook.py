"""TensorFlow mechanism that trains a loss-owned class matrix under `model.fit`.

Keras 3 builds the gradient step from `model.trainable_weights` only, so a
variable owned by a loss never receives a gradient from a plain `fit`. On the
TensorFlow backend the loss computes its per-sample values inside a custom
gradient whose *backward* function takes one optimizer step on the matrix,
from the same backward pass that gives the network its gradient (the forward
is computed once):

* it runs only when a gradient flows through the loss, i.e. in training steps
  (and custom loops that call `tape.gradient`), never in `evaluate`/`predict`;
* the step uses the gradient of the matrix objective weighted by the upstream
  gradient of each sample, normalised to sum to 1: the sample-weighted mean
  gradient, independent of the reduction, `loss_weights` and loss scaling;
* under `tf.distribute` each replica divides by the replica count and the
  Keras optimizer sums across replicas, as it does for model weights;
* a non-finite gradient (a skipped mixed-precision step) becomes zero;
* the matrix is gathered at the batch's rows only, so the gradient is
  `IndexedSlices` naming each of those rows once (`QMatrix.rows`);
* a sparse matrix (`neighbors=N`) then re-chooses the neighbours of the
  batch's classes (`SparseQMatrix.rechoose`); this also runs when
  `TrainableTargetsModel` has the model's optimizer train the matrix.
"""

import tensorflow as tf


def _check_strategy(variable):
    if not tf.distribute.has_strategy():
        return
    strategy = tf.distribute.get_strategy()
    if not strategy.extended.variable_created_in_scope(variable):
        raise ValueError(
            "The loss's class matrix was created outside the active "
            f"{type(strategy).__name__} scope, so it cannot be trained by it. "
            "Create the loss inside `strategy.scope()` together with the model."
        )


def loss_with_matrix_step(loss, onehot, ids, log_probs):
    """Per-sample values of `loss.objective`; their backward also trains the matrix.

    The partial derivative of the objective in the matrix rows is that of
    `matrix_objective` (the two differ only in which predictions they stop).
    With `TrainableTargetsModel` (`loss.attached`) the matrix gradient is
    returned to the model's tape instead of being applied here.
    """
    layer = loss.matrix_layer
    _check_strategy(layer.logits.value)
    onehot = tf.stop_gradient(onehot)
    rechoose = loss.neighbors is not None and loss.rechoose_neighbors
    if rechoose and tf.distribute.get_strategy().num_replicas_in_sync > 1:
        raise ValueError(
            "Re-choosing a sparse matrix's neighbours is not supported with more than "
            "one replica; pass `rechoose_neighbors=False` (and `neighbor_ids`)."
        )
    table = tf.convert_to_tensor(layer.logits.value)  # read once, outside the custom op

    @tf.custom_gradient
    def values_of(log_probs, table):
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch([log_probs, table])
            probs = tf.exp(log_probs)
            values = loss.values(onehot, ids, log_probs, probs, table)

        def backward(upstream):
            d_log_probs, d_matrix = tape.gradient(
                values, [log_probs, table], output_gradients=upstream
            )
            updates = []
            if not loss.attached:
                updates.append(_matrix_step(loss, d_matrix, tf.reduce_sum(upstream)))
            if rechoose:
                with tf.control_dependencies(updates):
                    layer.rechoose(ids, tf.stop_gradient(probs))
            return d_log_probs, (d_matrix if loss.attached else None)

        return values, backward

    return values_of(log_probs, table)


def _matrix_step(loss, d_matrix, total):
    """One `matrix_optimizer` step on the upstream-weighted mean gradient."""
    layer = loss.matrix_layer
    variable = layer.logits.value
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    scale = tf.math.divide_no_nan(1.0, total * tf.cast(replicas, total.dtype))
    if isinstance(d_matrix, tf.IndexedSlices):
        values = d_matrix.values * scale
        finite = tf.where(tf.math.is_finite(values), values, 0.0)
        grad = tf.IndexedSlices(finite, d_matrix.indices, d_matrix.dense_shape)
    else:
        grad = tf.where(tf.math.is_finite(d_matrix), d_matrix * scale, 0.0)
    if layer.regularizer is not None:
        with tf.GradientTape() as tape:
            tape.watch(variable)
            penalty = tf.cast(layer.regularizer(variable), variable.dtype)
        extra = tape.gradient(penalty, variable) / tf.cast(replicas, variable.dtype)
        grad = tf.convert_to_tensor(grad) + tf.where(tf.math.is_finite(extra), extra, 0.0)
    loss.matrix_optimizer.apply_gradients([(grad, layer.logits)])
    return loss.matrix_optimizer.iterations
