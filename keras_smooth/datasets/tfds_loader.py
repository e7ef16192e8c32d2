"""Any TensorFlow Datasets image/feature classification data set by name, from prepared
data."""

import contextlib
import logging
import os

import numpy as np

from keras_smooth.datasets.base import ClassificationData, stratified_split
from keras_smooth.datasets.fashion_mnist import DatasetUnavailable

HOW_TO_PREPARE = (
    "prepare it once on a machine with internet (`tfds build {name} --data_dir DIR`, or "
    "`tensorflow_datasets.builder({name!r}, data_dir=DIR).download_and_prepare()`), then "
    "pass DIR as --tfds-data-dir (Python: data_dir=DIR)"
)


@contextlib.contextmanager
def _quiet_absl():
    """Silence TFDS's absl warnings (e.g. "Variant folder ... has no dataset_info.json")."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _first_line(error):
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _builder(name, data_dir, download):
    """The TFDS builder of `name`, with its data prepared; `DatasetUnavailable` otherwise."""
    import tensorflow_datasets as tfds

    where = data_dir or "TFDS's default folder ($TFDS_DATA_DIR or ~/tensorflow_datasets)"
    with _quiet_absl():
        try:
            builder = tfds.builder(name, data_dir=data_dir)
        except tfds.core.registered.DatasetNotFoundError:
            raise DatasetUnavailable(
                f"TFDS data set {name!r} is neither a TFDS name nor prepared in {where}"
            ) from None
        except Exception as error:  # a malformed name, config or version: one line
            raise DatasetUnavailable(f"TFDS data set {name!r}: {_first_line(error)}") from None
        if builder.is_prepared():
            return builder
        if not download:
            raise DatasetUnavailable(
                f"TFDS data set {name!r} is not prepared in {builder.data_dir} and nothing is "
                f"downloaded at run time: " + HOW_TO_PREPARE.format(name=name)
            )
        try:
            builder.download_and_prepare()
        except Exception as error:  # network or disk failure: one line
            raise DatasetUnavailable(
                f"TFDS data set {name!r} could not be downloaded and prepared in "
                f"{builder.data_dir} ({_first_line(error)}); " + HOW_TO_PREPARE.format(name=name)
            ) from None
    return builder


def _arrays(tfds, builder, name, split):
    try:
        dataset = builder.as_dataset(split=split, as_supervised=True)
        batches = list(tfds.as_numpy(dataset.batch(1024)))
    except Exception as error:  # a missing split, unreadable or truncated record files
        raise DatasetUnavailable(
            f"cannot read split {split!r} of TFDS data set {name!r} from {builder.data_dir} "
            f"(it needs 'train' and 'test' or 'validation'): "
            f"{_first_line(error)}"
        ) from None
    if not batches:
        raise DatasetUnavailable(f"split {split!r} of TFDS data set {name!r} is empty")
    try:
        return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])
    except ValueError:
        raise DatasetUnavailable(
            f"the inputs of TFDS data set {name!r} differ in shape; "
            "keras-smooth needs fixed-size inputs"
        ) from None


def _scale(x):
    x = np.asarray(x)
    return (x.astype("float32") / 255.0) if x.dtype == np.uint8 else x.astype("float32")


def _check_request(name, data_dir):
    if not isinstance(name, str) or not name:
        raise ValueError(f"`name` must be a TFDS data set name, got {name!r}.")
    if data_dir is not None and not os.path.isdir(data_dir):
        raise DatasetUnavailable(
            f"TFDS data folder {data_dir} does not exist (data_dir / --tfds-data-dir)"
        )


def _class_names(builder, name):
    """The class names of a builder's supervised label; `DatasetUnavailable` if it has none."""
    supervised = builder.info.supervised_keys
    if not supervised:
        raise DatasetUnavailable(f"TFDS data set {name!r} has no (input, label) supervised keys.")
    label_feature = builder.info.features[supervised[1]]
    if getattr(label_feature, "num_classes", None) is None:
        raise DatasetUnavailable(f"the labels of TFDS data set {name!r} are not class labels")
    names = getattr(label_feature, "names", None) or range(label_feature.num_classes)
    return [str(n) for n in names]


def load_tfds(name, seed=0, validation_fraction=0.2, data_dir=None, download=False):
    """Load `name` from TFDS as NumPy arrays with train/validation/test splits.

    Uses the `train` split (with a per-class validation split from `seed`) and
    `test` (or `validation` when there is no `test`). Images are scaled to
    [0, 1].

    Args:
        name: a TFDS name, optionally with a config and version
            (`"mnist"`, `"cifar10:3.*.*"`); or the name of a data set
            prepared in `data_dir` by any builder.
        seed: seed of the validation split.
        validation_fraction: share of `train` held out for validation.
        data_dir: the folder holding prepared TFDS data (default: TFDS's,
            `$TFDS_DATA_DIR` or `~/tensorflow_datasets`).
        download: download and prepare the data when it is not prepared.
            Off by default: nothing is fetched or written at run time, and
            missing data fails at once with one line saying how to provide it.

    Raises:
        DatasetUnavailable: (a `ValueError`) when the name is unknown, the
            data is not prepared (and `download` is off) or cannot be read.
    """
    _check_request(name, data_dir)
    import tensorflow_datasets as tfds

    builder = _builder(name, data_dir, download)
    splits = builder.info.splits
    test_split = "validation" if "test" not in splits and "validation" in splits else "test"
    class_names = _class_names(builder, name)
    train, test = _arrays(tfds, builder, name, "train"), _arrays(tfds, builder, name, test_split)
    x_train, y_train, x_val, y_val = stratified_split(
        _scale(train[0]), np.asarray(train[1], "int32"), validation_fraction, seed
    )
    return ClassificationData(name, x_train, y_train, x_val, y_val, _scale(test[0]),
                              np.asarray(test[1], "int32"), class_names, {"source": "tfds"})
