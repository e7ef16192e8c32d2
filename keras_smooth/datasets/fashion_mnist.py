"""Fashion-MNIST from IDX files (user folder, Debian package, or Keras download)."""

import gzip
import os
import zlib

import numpy as np

from keras_smooth.datasets.base import ClassificationData, stratified_split

DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
CLASS_NAMES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class DatasetUnavailable(ValueError):
    """Raised when a data set cannot be found or read; the message is one line."""


def read_idx(path):
    """Read an IDX file (optionally gzipped) into a NumPy array.

    The format: two zero bytes, a type byte (0x08 = uint8, ...), a byte with
    the number of dimensions, one big-endian uint32 per dimension, then the
    data. Anything else raises `DatasetUnavailable` naming the file.
    """
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as error:  # missing, unreadable, corrupt or cut-off gzip
        raise DatasetUnavailable(f"cannot read IDX file {path}: {error}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise DatasetUnavailable(f"{path} is not an IDX file (bad magic number)")
    dtype, ndim = np.dtype(_IDX_TYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetUnavailable(f"{path} is truncated (header of {ndim} dimensions incomplete)")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DatasetUnavailable(
            f"{path} holds {len(raw) - header} data bytes, but its header promises "
            f"{expected} for shape {shape}"
        )
    return np.frombuffer(raw, dtype, offset=header).reshape(shape)


def _find(directory, stem):
    for name in (stem, stem + ".gz"):
        candidate = os.path.join(directory, name)
        if os.path.exists(candidate):
            return candidate
    return None


def _read_directory(directory):
    paths = {key: _find(directory, stem) for key, stem in FILES.items()}
    missing = [FILES[key] for key, path in paths.items() if path is None]
    if missing:
        raise DatasetUnavailable(
            f"{directory} lacks Fashion-MNIST file(s): {', '.join(missing)}[.gz]"
        )
    arrays = {key: read_idx(path) for key, path in paths.items()}
    for key, path in paths.items():
        _check_array(key, arrays[key], path)
    for split in ("train", "test"):
        if len(arrays[f"x_{split}"]) != len(arrays[f"y_{split}"]):
            raise DatasetUnavailable(
                f"{directory}: {split} images and labels differ in count "
                f"({len(arrays[f'x_{split}'])} and {len(arrays[f'y_{split}'])})"
            )
    return arrays


def _check_array(key, array, path):
    """Fashion-MNIST images are `(N, 28, 28)` uint8; labels `(N,)` integers in 0..9."""
    if key.startswith("x"):
        if (array.ndim != 3 or array.shape[1:] != (28, 28) or array.dtype != np.uint8
                or not len(array)):
            raise DatasetUnavailable(f"{path} does not hold 28 x 28 uint8 images "
                                     f"(shape {array.shape}, type {array.dtype})")
    elif (array.ndim != 1 or not len(array) or array.dtype.kind not in "iu"
          or array.min() < 0 or array.max() > 9):
        raise DatasetUnavailable(
            f"{path} does not hold labels 0..9 (shape {array.shape}, type {array.dtype})")


def fashion_mnist_arrays(directory=None):
    """Raw `(x_train, y_train, x_test, y_test)` uint8 arrays and where they came from.

    Search order: `directory` if given (an error if it lacks the files); the
    Debian package `dataset-fashion-mnist` in `/usr/share/datasets/fashion-mnist`;
    Keras's downloader (needs internet).
    """
    if directory is not None:
        if not os.path.isdir(directory):
            raise DatasetUnavailable(f"Fashion-MNIST directory {directory} does not exist")
        arrays, source = _read_directory(directory), directory
    elif os.path.isdir(DEBIAN_DIR):
        arrays, source = _read_directory(DEBIAN_DIR), DEBIAN_DIR
    else:
        try:
            import keras

            (xa, ya), (xb, yb) = keras.datasets.fashion_mnist.load_data()
        except Exception as error:  # any download failure ends in one clear line
            raise DatasetUnavailable(
                "Fashion-MNIST not found: pass a directory with the IDX files, install the "
                f"Debian package dataset-fashion-mnist, or go online (download failed: {error})"
            ) from None
        arrays = {"x_train": xa, "y_train": ya, "x_test": xb, "y_test": yb}
        source = "keras download"
    return arrays, source


def load_fashion_mnist(directory=None, seed=0, validation_fraction=1 / 6, train_limit=None):
    """Fashion-MNIST as `(N, 28, 28, 1)` float32 in [0, 1] with a validation split.

    Args:
        directory: folder with the four IDX files (gzipped or not).
        seed: seed of the per-class validation split (and of `train_limit`).
        validation_fraction: share of the 60,000 training images held out.
        train_limit: keep at most this many training images (quick runs);
            at least 20 (two images per class on average).

    Raises:
        DatasetUnavailable: when the files are missing, unreadable, truncated
            or hold anything but Fashion-MNIST-shaped images and labels 0..9;
            the message names the file.
    """
    if train_limit is not None and (isinstance(train_limit, bool)
                                    or not isinstance(train_limit, (int, np.integer))
                                    or train_limit < 20):
        raise ValueError(f"`train_limit` must be an integer >= 20, got {train_limit!r}.")
    arrays, source = fashion_mnist_arrays(directory)
    x = (arrays["x_train"].astype("float32") / 255.0)[..., None]
    y = arrays["y_train"].astype("int32")
    if train_limit is not None and train_limit < len(y):
        pick = np.sort(np.random.default_rng(seed).choice(len(y), int(train_limit), replace=False))
        x, y = x[pick], y[pick]
    x_train, y_train, x_val, y_val = stratified_split(x, y, validation_fraction, seed)
    return ClassificationData(
        "fashion_mnist", x_train, y_train, x_val, y_val,
        (arrays["x_test"].astype("float32") / 255.0)[..., None], arrays["y_test"].astype("int32"),
        list(CLASS_NAMES), {"source": source},
    )
