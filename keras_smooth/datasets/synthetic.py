"""The 3-class synthetic task of the ILS paper (§III), with exact posteriors.

Each class is a mixture of two unit-covariance 2-D Gaussians: a dense
component (80 % of the class) and a sparse one (20 %). Means (ILS paper §III):
class 0 (-4, 1) dense, (2, 1) sparse; class 1 (-4, -1), (2, -1);
class 2 (-1, 0), (5, 0). Most of class 0 lies nearer class 1 than class 2,
which is what makes uniform smoothing of the wrong classes a poor fit.
"""

import numpy as np

CLASS_MEANS = np.array(
    [
        [[-4.0, 1.0], [2.0, 1.0]],
        [[-4.0, -1.0], [2.0, -1.0]],
        [[-1.0, 0.0], [5.0, 0.0]],
    ]
)
DENSE_WEIGHT = 0.8


def gaussian_task(n_per_class=50, seed=0):
    """Sample `n_per_class` points of every class.

    Args:
        n_per_class: points per class (the paper: 50 train, 50 validation,
            5000 test).
        seed: NumPy seed; the same seed gives the same sample.

    Returns:
        `(x, y, dense)`: float32 inputs `(3n, 2)`, int32 labels `(3n,)`, and a
        boolean mask marking points drawn from the dense component.

    Examples:
    >>> from keras_smooth.datasets import gaussian_task
    >>> x, y, dense = gaussian_task(4, seed=1)
    >>> x.shape, y.tolist()
    ((12, 2), [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
    """
    from keras_smooth.datasets.base import check_count, check_seed

    n = check_count("n_per_class", n_per_class, minimum=1)
    rng = np.random.default_rng(check_seed(seed))
    xs, ys, dense = [], [], []
    for label, means in enumerate(CLASS_MEANS):
        is_dense = rng.random(n) < DENSE_WEIGHT
        centre = np.where(is_dense[:, None], means[0], means[1])
        xs.append(centre + rng.standard_normal((n, 2)))
        ys.append(np.full(n, label))
        dense.append(is_dense)
    return (
        np.concatenate(xs).astype("float32"),
        np.concatenate(ys).astype("int32"),
        np.concatenate(dense),
    )


def gaussian_task_posterior(x):
    """Exact Bayes-optimal class probabilities for equal class priors, `(N, 3)`.

    `x` must be finite points of shape `(N, 2)`; else `ValueError`.
    """
    x = np.asarray(x, dtype="float64")
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"`x` must be points of shape (N, 2), got shape {x.shape}.")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"`x` must be finite, got {x[~np.isfinite(x)][0]}.")
    sq = ((x[:, None, None, :] - CLASS_MEANS[None]) ** 2).sum(-1)  # (N, 3, 2)
    weights = np.array([DENSE_WEIGHT, 1.0 - DENSE_WEIGHT])
    log_comp = np.log(weights)[None, None] - 0.5 * sq
    peak = log_comp.max(axis=(1, 2), keepdims=True)
    density = np.exp(log_comp - peak).sum(-1)  # (N, 3), common factors cancel
    return density / density.sum(-1, keepdims=True)


def load_gaussian_task(seed=0, n_train=50, n_val=50, n_test=5000):
    """The synthetic task with the paper's split sizes per class (50/50/5000).

    Each split is drawn independently from `seed`; `extras` holds the dense
    masks (`dense_train`, `dense_val`, `dense_test`) and the Bayes-optimal test
    probabilities (`bayes_test`).
    """
    from keras_smooth.datasets.base import ClassificationData, check_count, check_seed

    for name, value in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
        check_count(name, value, minimum=1)
    rng = np.random.default_rng(check_seed(seed))
    seeds = rng.integers(0, 2**31 - 1, size=3)
    (xa, ya, da), (xb, yb, db), (xc, yc, dc) = (
        gaussian_task(n, int(s)) for n, s in zip((n_train, n_val, n_test), seeds)
    )
    return ClassificationData(
        "gaussian", xa, ya, xb, yb, xc, yc, ["class 1", "class 2", "class 3"],
        {"dense_train": da, "dense_val": db, "dense_test": dc,
         "bayes_test": gaussian_task_posterior(xc)},
    )
