"""Class-based label smoothing, cLS (Liu & JaJa; ILS paper §V-VI).

The wrong-class mass goes to classes whose centres lie near the label's: the
similarity matrix is built once from the training inputs, and the loss is a
`SubstituteTeacherLoss` on it with beta = 1 (targets from the matrix alone).
"""

import keras
import numpy as np

from keras_smooth import _checks
from keras_smooth.losses.distillation import SubstituteTeacherLoss


def class_similarity_matrix(x, labels, num_classes):
    """Row-stochastic, zero-diagonal class similarities from Euclidean distances of class
    means.

    Class-based LS (Liu & JaJa; ILS paper §V–VI with the Euclidean distance
    between inputs): with class centres mu_k (means of the flattened inputs),
    S[i, j] = (1 / ||mu_i - mu_j||) / sum_{l != i} (1 / ||mu_i - mu_l||) for
    j != i and S[i, i] = 0. Nearer classes get more mass; the matrix does not
    change when the inputs are scaled.

    Returns:
        `(K, K)` float32 NumPy array.
    """
    num_classes = _checks.check_num_classes(num_classes)
    x = _checks.as_real_array("x", x)
    x = x.reshape(len(x), -1)
    _checks.check_finite("x", x)
    labels = _checks.class_ids(labels, num_classes)
    if len(labels) != len(x):
        raise ValueError(f"`x` has {len(x)} rows but `labels` has {len(labels)}.")
    missing = sorted(set(range(num_classes)) - set(labels.tolist()))
    if missing:
        raise ValueError(f"classes {missing} have no examples: cannot place their centres.")
    # Divided by the largest |x| first: the matrix is scale-free, and inputs near the float64
    # limit (1e200) would overflow the squared distances to inf (and the matrix to NaN).
    largest = np.abs(x).max(initial=0.0)
    x = x / largest if largest > 0 else x
    centres = np.stack([x[labels == k].mean(axis=0) for k in range(num_classes)])
    distances = np.linalg.norm(centres[:, None, :] - centres[None, :, :], axis=-1)
    off = ~np.eye(num_classes, dtype=bool)
    if np.any(distances[off] == 0):
        i, j = np.argwhere((distances == 0) & off)[0]
        raise ValueError(
            f"classes {i} and {j} have identical centres: their similarity is undefined."
        )
    weights = np.where(off, 1.0 / np.where(off, distances, 1.0), 0.0)
    return (weights / weights.sum(axis=1, keepdims=True)).astype("float32")


@keras.saving.register_keras_serializable(package="keras_smooth")
class ClassSimilarityLSLoss(SubstituteTeacherLoss):
    """Class-based label smoothing, cLS (Liu & JaJa; ILS paper §VI).

    Formula:
        t = (1 - epsilon) * onehot(y) + epsilon * S[y]     (`targets.matrix_smoothing`)
        loss = H(t, q)

    with `S = class_similarity_matrix(x_train, y_train, K)`: the masses on the
    wrong classes sum to epsilon and nearer classes (by Euclidean distance of
    class centres) get more.

    Args:
        similarity: `(K, K)` row-stochastic matrix, e.g. from
            `class_similarity_matrix`.
        epsilon: smoothing factor in [0, 1).
        from_logits: whether predictions are logits.
    """

    _matrix_name = "similarity"

    def __init__(self, similarity, epsilon=0.1, from_logits=True,
                 reduction="sum_over_batch_size", name="class_similarity_ls_loss", dtype=None):
        epsilon = _checks.check_fraction("epsilon", epsilon)
        super().__init__(similarity, alpha=epsilon, beta=1.0, temperature=1.0,
                         from_logits=from_logits, reduction=reduction, name=name, dtype=dtype)
        self.epsilon = epsilon

    def get_config(self):
        config = super().get_config()
        for key in ("alpha", "beta", "temperature"):
            config.pop(key)
        config["similarity"] = config.pop("matrix")
        config["epsilon"] = self.epsilon
        return config
