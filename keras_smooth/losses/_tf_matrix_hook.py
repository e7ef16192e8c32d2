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
  `TrainableTargetsModel` has the model's optimizer train the matrix;
* a plain Keras `Adam` (the default `matrix_optimizer`) takes its step in one
  fused kernel (`tf.raw_ops.ResourceApplyAdam`, the same update rule and the
  optimizer's own slots and step count), not in the half-dozen full-size
  passes of its generic update: for a dense K x K matrix this update of every
  entry is the part of a step that grows as K^2 (`_fused_adam_step`);
* with that fused step, LLS and LS++ on a dense matrix give their gradients by
  formula (`LearnableTargetLoss.dense_step`, held to finite differences of the
  equations in `tests/test_dense_step_gradients.py`) instead of a second,
  recorded tape: about a dozen fewer `(B, K)` passes per step.
"""

import keras
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
    # The fused Adam step sums the gradient's slices into a dense one itself, so a
    # dense matrix's rows are gathered once per sample (no de-duplicating pass).
    slices_summed = (loss.neighbors is None and not loss.attached
                     and _fused_adam_slots(loss.matrix_optimizer, layer.logits) is not None)

    if slices_summed and loss.dense_step_applies():
        return _dense_step_values(loss, onehot, ids, log_probs, table)

    @tf.custom_gradient
    def values_of(log_probs, table):
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch([log_probs, table])
            probs = tf.exp(log_probs)
            values = loss.values(onehot, ids, log_probs, probs, table,
                                 each_row_once=not slices_summed)

        def backward(upstream):
            d_log_probs, d_matrix = tape.gradient(
                values, [log_probs, table], output_gradients=upstream
            )
            updates = []
            if not loss.attached:
                updates.append(_matrix_step(loss, d_matrix, tf.reduce_sum(upstream)))
            if rechoose:
                with tf.control_dependencies(updates):
                    swapped = layer.rechoose(ids, tf.stop_gradient(probs))
                if loss.attached:  # the model's optimizer steps after the swap
                    d_matrix = _without_swapped(d_matrix, swapped)
                else:
                    _reset_momentum(loss.matrix_optimizer, layer.logits, swapped)
            return d_log_probs, (d_matrix if loss.attached else None)

        return values, backward

    return values_of(log_probs, table)


def _dense_step_values(loss, onehot, ids, log_probs, table):
    """`loss_with_matrix_step` for a dense matrix whose loss writes its gradients out
    (`LearnableTargetLoss.dense_step`): the batch's rows are gathered once per sample
    (the labels' one-hot is the zero diagonal's mask) and the backward pass records
    no second tape."""
    ids = tf.cast(ids, tf.int32)

    @tf.custom_gradient
    def values_of(log_probs, table):
        rows = loss.matrix_layer.rows(ids, table, each_row_once=False, own=onehot)
        values, gradients = loss.dense_step(onehot, log_probs, tf.exp(log_probs), rows)

        def backward(upstream):
            d_log_probs, d_rows = gradients(upstream)
            d_matrix = tf.IndexedSlices(d_rows, ids, tf.shape(table, out_type=tf.int32))
            _matrix_step(loss, d_matrix, tf.reduce_sum(upstream))
            return d_log_probs, None

        return values, backward

    return values_of(log_probs, table)


def _without_swapped(d_matrix, swapped):
    """`d_matrix` with zeros at the logits `rechoose` just gave to newcomers: their
    gradient was computed for the predecessor, so the newcomer starts at the tail."""
    keep = 1.0 - swapped
    if isinstance(d_matrix, tf.IndexedSlices):
        values = d_matrix.values * tf.gather(keep, d_matrix.indices)
        return tf.IndexedSlices(values, d_matrix.indices, d_matrix.dense_shape)
    return d_matrix * keep


def _reset_momentum(optimizer, variable, swapped):
    """Zero a plain Adam's first moment at the entries `rechoose` gave to newcomers,
    so a newcomer does not carry its predecessor's momentum (which had pushed that
    entry below the tail). The second moment is a scale and stays: zeroed at a
    late step, whose bias correction is about 1, it would make the newcomer's
    next steps several times Adam's usual size. Other optimizers keep their state."""
    slots = _fused_adam_slots(optimizer, variable)
    if slots is not None:
        slots[0].assign(slots[0] * (1.0 - swapped))


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
    return apply_matrix_gradient(loss.matrix_optimizer, grad, layer.logits)


def apply_matrix_gradient(optimizer, grad, variable):
    """`optimizer.apply_gradients([(grad, variable)])`, fused where that is exact.

    Returns the optimizer's step counter (after the step).
    """
    slots = _fused_adam_slots(optimizer, variable)
    if slots is None:
        optimizer.apply_gradients([(grad, variable)])
        return optimizer.iterations
    return _fused_adam_step(optimizer, slots, grad, variable)


def _plain_adam(optimizer):
    """Whether `optimizer` is a Keras `Adam` whose step is Adam's rule and nothing else."""
    if type(optimizer) is not keras.optimizers.Adam or optimizer.amsgrad:
        return False
    hyper = (optimizer.beta_1, optimizer.beta_2, optimizer.epsilon)
    return (all(isinstance(h, (int, float)) for h in hyper)
            and optimizer.clipnorm is None and optimizer.clipvalue is None
            and optimizer.global_clipnorm is None and not optimizer.weight_decay
            and not optimizer.use_ema and not optimizer.gradient_accumulation_steps
            and optimizer.loss_scale_factor is None)


def _fused_adam_slots(optimizer, variable):
    """The `(m, v)` slots of `variable` when `_fused_adam_step` reproduces the step of
    `optimizer`; None otherwise (another optimizer or option, a constraint, a
    distribution strategy, or Keras internals that are not as expected)."""
    if (tf.distribute.has_strategy() or variable.constraint is not None
            or getattr(variable, "overwrite_with_gradient", False)
            or variable.dtype != "float32" or not _plain_adam(optimizer)):
        return None
    try:
        index = optimizer._get_variable_index(variable)
        slots = optimizer._momentums[index], optimizer._velocities[index]
    except (AttributeError, KeyError, IndexError, TypeError):
        return None
    if any(slot is None or tuple(slot.shape) != tuple(variable.shape) for slot in slots):
        return None
    return slots


def _fused_adam_step(optimizer, slots, grad, variable):
    """Keras Adam's step (Kingma & Ba 2015, Algorithm 1 with the bias corrections
    folded into the step size, as `keras.optimizers.Adam` writes it) as one kernel:

        alpha = lr sqrt(1 - beta_2^t) / (1 - beta_1^t),
        m += (1 - beta_1)(g - m),  v += (1 - beta_2)(g^2 - v),
        variable -= alpha m / (sqrt(v) + epsilon),

    at t = iterations + 1, then iterations += 1. Rows absent from an
    `IndexedSlices` gradient have g = 0 (their slots decay, as in Keras);
    slices naming the same row add up, as in the dense gradient.
    """
    m, v = slots
    step = tf.cast(optimizer.iterations + 1, tf.float32)
    beta_1, beta_2 = float(optimizer.beta_1), float(optimizer.beta_2)
    if isinstance(grad, tf.IndexedSlices):
        grad = tf.math.unsorted_segment_sum(grad.values, grad.indices, variable.shape[0])
    tf.raw_ops.ResourceApplyAdam(
        var=variable.value.handle, m=m.value.handle, v=v.value.handle,
        beta1_power=tf.pow(tf.constant(beta_1, tf.float32), step),
        beta2_power=tf.pow(tf.constant(beta_2, tf.float32), step),
        lr=tf.cast(optimizer.learning_rate, tf.float32),
        beta1=tf.constant(beta_1, tf.float32), beta2=tf.constant(beta_2, tf.float32),
        epsilon=tf.constant(float(optimizer.epsilon), tf.float32),
        grad=tf.convert_to_tensor(grad, tf.float32),
    )
    return optimizer.iterations.assign_add(1)
