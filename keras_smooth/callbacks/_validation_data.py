"""Predictions and labels of a model on validation data, for the callbacks."""

import numpy as np
from keras import ops


def predict_with_labels(model, validation_data, batch_size=256):
    """Return `(labels, predictions)` as NumPy arrays.

    `validation_data` is a tuple `(x, y)` or an iterable of `(x, y)` batches
    (e.g. a batched `tf.data.Dataset`); sample weights, if present, are ignored.
    """
    if isinstance(validation_data, (tuple, list)):
        if len(validation_data) < 2:
            raise ValueError("`validation_data` must be (x, y) or an iterable of (x, y) batches.")
        x, y = validation_data[0], validation_data[1]
        return np.asarray(y), np.asarray(model.predict(x, batch_size=batch_size, verbose=0))
    labels, preds = [], []
    for batch in validation_data:
        x, y = batch[0], batch[1]
        labels.append(np.asarray(ops.convert_to_numpy(y)))
        preds.append(np.asarray(ops.convert_to_numpy(model(x, training=False))))
    if not labels:
        raise ValueError("`validation_data` yielded no batches.")
    return np.concatenate(labels), np.concatenate(preds)
