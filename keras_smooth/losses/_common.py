"""Pieces shared by the loss families: prediction handling and cross-entropy."""

import keras
from keras import ops

from keras_smooth import _checks


def log_probabilities(y_pred, from_logits):
    """float32 log-probabilities of the predictions.

    Probabilities (`from_logits=False`) are renormalised and clipped to
    [epsilon, 1 - epsilon] exactly as `keras.losses.CategoricalCrossentropy`
    does, so the two agree where they overlap.
    """
    y_pred = ops.cast(y_pred, "float32")
    if from_logits:
        return ops.log_softmax(y_pred, axis=-1)
    eps = keras.config.epsilon()
    y_pred = y_pred / ops.sum(y_pred, axis=-1, keepdims=True)
    return ops.log(ops.clip(y_pred, eps, 1.0 - eps))


def safe_log(probs):
    """log(max(p, epsilon)): the clamp Keras uses for probabilities."""
    return ops.log(ops.maximum(probs, keras.config.epsilon()))


def cross_entropy(targets, log_probs):
    """H(targets, p) = -sum_k targets_k * log p_k, per sample."""
    return -ops.sum(targets * log_probs, axis=-1)


def prepare(y_true, y_pred, num_classes, from_logits):
    """Validate widths; return (one-hot/soft labels, log-probabilities)."""
    _checks.check_width("y_pred", y_pred, num_classes)
    onehot = _checks.one_hot_labels(y_true, num_classes, name="y_true")
    return onehot, log_probabilities(y_pred, from_logits)


def infer_num_classes(y_pred, num_classes):
    """`num_classes` if given, else the static width of `y_pred`."""
    if num_classes is not None:
        return num_classes
    width = _checks.static_dim(y_pred)
    if width is None or width < 2:
        raise ValueError(
            "Cannot infer the number of classes from predictions of shape "
            f"{tuple(ops.shape(y_pred))}; pass `num_classes`."
        )
    return width
