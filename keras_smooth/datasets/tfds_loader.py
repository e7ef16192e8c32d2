"""Any TensorFlow Datasets image/feature classification data set by name."""

import numpy as np

from keras_smooth.datasets.base import ClassificationData, stratified_split


def load_tfds(name, seed=0, validation_fraction=0.2, data_dir=None, download=True):
    """Load `name` from TFDS as NumPy arrays with train/validation/test splits.

    Uses the `train` split (with a per-class validation split from `seed`) and
    `test` (or `validation` when there is no `test`). Images are scaled to
    [0, 1]. Needs the data locally or internet access for the first download.
    """
    import tensorflow_datasets as tfds

    builder = tfds.builder(name, data_dir=data_dir)
    if download:
        builder.download_and_prepare()
    splits = builder.info.splits
    test_split = "test" if "test" in splits else "validation"
    supervised = builder.info.supervised_keys
    if not supervised:
        raise ValueError(f"TFDS data set {name!r} has no (input, label) supervised keys.")
    def arrays(split):
        batches = list(tfds.as_numpy(builder.as_dataset(split=split, as_supervised=True).batch(1024)))
        return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])

    train, test = arrays("train"), arrays(test_split)

    def scale(x):
        x = np.asarray(x)
        return (x.astype("float32") / 255.0) if x.dtype == np.uint8 else x.astype("float32")

    label_feature = builder.info.features[supervised[1]]
    names = list(getattr(label_feature, "names", None) or range(label_feature.num_classes))
    x_train, y_train, x_val, y_val = stratified_split(scale(train[0]), np.asarray(train[1], "int32"),
                                                      validation_fraction, seed)
    return ClassificationData(
        name, x_train, y_train, x_val, y_val, scale(test[0]), np.asarray(test[1], "int32"),
        [str(n) for n in names], {"source": "tfds"},
    )
