"""The container every loader returns, and a reproducible validation split."""

import dataclasses

import numpy as np

from keras_smooth._checks import check_count, check_seed  # noqa: F401  (used by the loaders)


@dataclasses.dataclass
class ClassificationData:
    """Train / validation / test splits of a classification data set.

    `x_*` are float32 arrays, `y_*` int32 class ids. `extras` holds per-split
    extras, e.g. `{"dense_test": mask}` for the synthetic task.
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


def stratified_split(x, y, fraction, seed):
    """Split off `fraction` of (x, y) per class, reproducibly from `seed`."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"`validation_fraction` must be in (0, 1), got {fraction}.")
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
