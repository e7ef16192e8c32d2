"""TensorFlow mechanism that trains a loss-owned class matrix under `model.fit`.

Keras 3 builds the gradient step from `model.trainable_weights` only, so a
variable owned by a loss never receives a gradient from a plain `fit`. On the
TensorFlow backend the loss therefore passes its per-sample values through an
identity op whose *backward* function takes one optimizer step on the matrix:

* it runs only when a gradient flows through the loss, i.e. in training steps
  (and custom loops that call `tape.gradient`), never in `evaluate`/`predict`;
* the step uses the gradient of the matrix objective weighted by the upstream
  gradient of each sample, normalised to sum to 1: the sample-weighted mean
  gradient, independent of the reduction, `loss_weights` and loss scaling;
* under `tf.distribute` each replica divides by the replica count and the
  Keras optimizer sums across replicas, as it does for model weights;
* a non-finite gradient (a skipped mixed-precision step) becomes zero.
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


def update_matrix_on_backward(loss, values, onehot, log_probs, probs):
    layer = loss.matrix_layer
    variable = layer.logits.value
    _check_strategy(variable)
    onehot, log_probs, probs = (tf.stop_gradient(t) for t in (onehot, log_probs, probs))

    @tf.custom_gradient
    def identity(per_sample):
        def backward(upstream):
            total = tf.reduce_sum(upstream)
            weights = tf.math.divide_no_nan(upstream, total)
            with tf.GradientTape() as tape:
                tape.watch(variable)
                rows = tf.matmul(onehot, layer.probabilities())
                objective = tf.reduce_sum(
                    weights * loss.matrix_objective(onehot, log_probs, probs, rows)
                )
                if layer.regularizer is not None:
                    objective += tf.cast(layer.regularizer(variable), objective.dtype)
            grad = tape.gradient(objective, variable)
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            grad = grad / tf.cast(replicas, grad.dtype)
            grad = tf.where(tf.math.is_finite(grad), grad, tf.zeros_like(grad))
            loss.matrix_optimizer.apply_gradients([(grad, layer.logits)])
            return upstream

        return tf.identity(per_sample), backward

    return identity(values)
