"""The container every loader returns, and a reproducible validation split."""

import dataclasses

import numpy as np

from keras_smooth import _checks
from keras_smooth._checks import check_count, check_seed  # noqa: F401  (used by the loaders)

SPLITS = ("train", "val", "test")


@dataclasses.dataclass
class ClassificationData:
    """Train / validation / test splits of a classification data set.

    `x_*` are float32 arrays, `y_*` int32 class ids. `extras` holds per-split
    extras, e.g. `{"dense_test": mask}` for the synthetic task.

    The splits are checked when the object is made (`ValueError`/`TypeError`
    naming the split): every `x_*` is a NumPy array of examples shaped like
    `x_train`'s, every `y_*` holds one class id in [0, K) per row of its `x_*`,
    the training and validation splits are not empty, and `class_names` names
    K >= 2 distinct classes.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list
    extras: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"`name` must be a non-empty string, got {self.name!r}.")
        names = _checks.check_names("class_names", self.class_names)  # distinct strings
        if len(names) < 2:
            raise ValueError(f"`class_names` must name at least 2 classes, got {names!r}.")
        if not isinstance(self.extras, dict):
            raise TypeError(f"`extras` must be a dict, got {self.extras!r}.")
        for split in SPLITS:
            self._check_split(split)

    def _check_split(self, split):
        x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
        if not isinstance(x, np.ndarray) or x.ndim < 2:
            raise TypeError(f"`x_{split}` must be a NumPy array of shape (N, ...) with one row "
                            f"per example, got {type(x).__name__} of shape {np.shape(x)}.")
        if x.shape[1:] != self.x_train.shape[1:]:
            raise ValueError(f"`x_{split}` holds examples of shape {x.shape[1:]} but `x_train` "
                             f"holds {self.x_train.shape[1:]}.")
        labels = _checks.as_real_array(f"y_{split}", y)
        if labels.ndim != 1 and labels.shape[1:] != (1,):
            raise ValueError(f"`y_{split}` must be class ids of shape (N,), got shape "
                             f"{labels.shape}.")
        _checks.check_same_rows(f"x_{split}", len(x), f"y_{split}", len(labels))
        if split != "test" and not len(x):
            raise ValueError(f"`x_{split}` has no rows; at least one is needed.")
        _checks.class_ids(labels, len(self.class_names), f"y_{split}")

    @property
    def num_classes(self):
        return len(self.class_names)

    @property
    def input_shape(self):
        return tuple(self.x_train.shape[1:])

    @property
    def test_groups(self):
        """Named boolean masks of test rows reported separately (dense/sparse modes), or {}."""
        if "dense_test" not in self.extras:
            return {}
        dense = np.asarray(self.extras["dense_test"], dtype=bool)
        return {"dense": dense, "sparse": ~dense}

    def fingerprint(self):
        """A short hash of the arrays, for cache keys."""
        import hashlib

        digest = hashlib.sha256()
        for array in (self.x_train, self.y_train, self.x_val, self.y_val):
            digest.update(str(array.shape).encode())
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()[:16]


def check_split_fraction(name, fraction):
    """A share of the rows to hold out: a real number in (0, 1); errors name `name`."""
    fraction = _checks.check_positive(name, fraction)
    if not fraction < 1.0:
        raise ValueError(f"`{name}` must be in (0, 1), got {fraction}.")
    return fraction


def stratified_split(x, y, fraction, seed, name="validation_fraction"):
    """Split off `fraction` of (x, y) per class, reproducibly from `seed`.

    `name` is the argument `fraction` came from, for error messages.
    """
    fraction = check_split_fraction(name, fraction)
    seed = check_seed(seed)
    if len(x) != len(y):
        raise ValueError(f"`x` has {len(x)} rows but `y` has {len(y)}.")
    rng = np.random.default_rng(seed)
    held = []
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        rng.shuffle(members)
        held.append(members[: max(1, int(round(fraction * len(members))))])
    held = np.sort(np.concatenate(held))
    keep = np.setdiff1d(np.arange(len(y)), held)
    return x[keep], y[keep], x[held], y[held]
