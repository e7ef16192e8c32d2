"""Predictions and labels of a model on validation data, for the callbacks."""

import numpy as np
from keras import ops


def _rows(array):
    return int(np.shape(array)[0]) if np.ndim(array) else 0


def check_validation_data(validation_data):
    """Refuse what is neither an `(x, y)` tuple or list (checked as such) nor an iterable
    of batches (a `tf.data.Dataset`, a `PyDataset`, a generator), and a `tf.data.Dataset`
    known to be infinite: the callbacks read their data to the end (a generator that
    never ends cannot be told apart; it must end)."""
    if isinstance(validation_data, (tuple, list)):
        check_validation_tuple(validation_data)
    elif isinstance(validation_data, (str, bytes, np.ndarray, dict)) or not hasattr(
            validation_data, "__iter__"):  # an array or a dict would be read as batches
        raise TypeError("`validation_data` must be a tuple (x, y) or an iterable of (x, y) "
                        f"batches, got {validation_data!r}.")
    elif _cardinality(validation_data) == _INFINITE:
        raise ValueError(
            "`validation_data` is an infinite dataset (a `repeat()` without a count), and "
            "the callback reads its validation data to the end: pass a finite one, e.g. "
            "`dataset.take(steps)`."
        )


def _cardinality(dataset):
    """A `tf.data.Dataset`'s cardinality as an int, or None for anything else."""
    cardinality = getattr(dataset, "cardinality", None)
    if not callable(cardinality) or not hasattr(dataset, "element_spec"):
        return None
    try:
        return int(cardinality())
    except (TypeError, ValueError):
        return None


_INFINITE = -1  # tf.data.INFINITE_CARDINALITY (without importing TensorFlow here)


def check_validation_tuple(validation_data):
    """Refuse an `(x, y)` tuple with no samples or with x and y of different lengths."""
    if len(validation_data) < 2:
        raise ValueError("`validation_data` must be (x, y) or an iterable of (x, y) batches.")
    x, y = validation_data[0], validation_data[1]
    if isinstance(x, dict):
        parts = list(x.values())
    elif isinstance(x, (list, tuple)) and x and all(hasattr(part, "shape") for part in x):
        parts = list(x)  # one array per model input
    else:
        parts = [x]
    rows = {_rows(part) for part in parts}
    labels = _rows(y)
    if len(rows) > 1 or rows != {labels}:
        raise ValueError(
            "`validation_data` must hold as many labels as samples in every input, got "
            f"{sorted(rows)} samples and {labels} labels."
        )
    if labels == 0:
        raise ValueError("`validation_data` has no samples; at least one is needed.")


def predict_with_labels(model, validation_data, batch_size=256):
    """Return `(labels, predictions)` as NumPy arrays.

    `validation_data` is a tuple `(x, y)` or an iterable of `(x, y)` batches
    (e.g. a batched `tf.data.Dataset`); sample weights, if present, are ignored.
    Empty data and labels that do not match the samples raise `ValueError`.
    """
    check_validation_data(validation_data)  # also set after construction: checked here
    if isinstance(validation_data, (tuple, list)):
        x, y = validation_data[0], validation_data[1]
        return np.asarray(y), np.asarray(model.predict(x, batch_size=batch_size, verbose=0))
    labels, preds = [], []
    for batch in validation_data:
        x, y = batch[0], batch[1]
        labels.append(np.asarray(ops.convert_to_numpy(y)))
        preds.append(np.asarray(ops.convert_to_numpy(model(x, training=False))))
    if not labels:
        raise ValueError("`validation_data` yielded no batches.")
    labels, preds = np.concatenate(labels), np.concatenate(preds)
    if len(labels) == 0 or len(labels) != len(preds):
        raise ValueError(
            f"`validation_data` yielded {len(preds)} predictions and {len(labels)} labels; "
            "at least one sample is needed, with one label each."
        )
    return labels, preds
