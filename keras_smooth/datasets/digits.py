"""scikit-learn's digits: 1,797 real 8x8 images of 10 digits, shipped with the package."""

from keras_smooth.datasets.base import (
    ClassificationData,
    check_seed,
    check_split_fraction,
    stratified_split,
)


def load_digits(seed=0, test_fraction=0.2, validation_fraction=0.2):
    """Digits as `(N, 8, 8, 1)` float32 in [0, 1], split per class from `seed`.

    Examples:
    >>> from keras_smooth.datasets import load_digits
    >>> data = load_digits(seed=0)
    >>> data.input_shape, data.num_classes, len(data.y_train) + len(data.y_val) + len(data.y_test)
    ((8, 8, 1), 10, 1797)
    """
    seed = check_seed(seed)
    test_fraction = check_split_fraction("test_fraction", test_fraction)
    validation_fraction = check_split_fraction("validation_fraction", validation_fraction)
    from sklearn.datasets import load_digits as sklearn_digits

    raw = sklearn_digits()
    x = (raw.images / 16.0).astype("float32")[..., None]
    y = raw.target.astype("int32")
    x_rest, y_rest, x_test, y_test = stratified_split(x, y, test_fraction, seed, "test_fraction")
    x_train, y_train, x_val, y_val = stratified_split(x_rest, y_rest, validation_fraction, seed + 1)
    return ClassificationData(
        "digits", x_train, y_train, x_val, y_val, x_test, y_test, [str(d) for d in range(10)]
    )
