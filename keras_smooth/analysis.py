"""Why a method behaves as it does: penultimate features, class relations, teacher smoothness.

- `penultimate_projection`: activations of the layer before the last `Dense`
  projected onto the plane through three class templates (Müller et al. 2019;
  construction of the `[Re]` paper, §4 and Appendix A.1).
- `class_centres`, `cosine_distances`, `offdiagonal_spread`: L1-normalised
  cosine distances between class centres of penultimate features (LLS paper
  §5.2) and how uniform they are (label smoothing makes them equal).
- `smoothness_index`: gamma of a teacher at temperature tau (`[Re]` Eq. 3).
- `confusion_matrix`, `top_related_classes`: class relations from
  predictions or from a learned Q / C matrix.
- `distillation_study`: one student architecture distilled from several
  teachers, and from learned matrices alone (LLS-ST / PT-LS++).

Plots of these are in `keras_smooth.plots`.
"""

import keras
import numpy as np

from keras_smooth import _checks
from keras_smooth.models import TrainableTargetsModel


def _class_ids(labels, num_classes, num_rows=None, name="labels", rows_of="the data"):
    """`labels` as int64 class ids in [0, K), checked: integral, in range, one per row
    (`num_rows`, the rows of what `rows_of` names)."""
    y = np.asarray(keras.ops.convert_to_numpy(labels))
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"`{name}` must be class ids of shape (N,), got shape {y.shape}.")
    if num_rows is not None and len(y) != num_rows:
        raise ValueError(f"`{name}` has {len(y)} rows but {rows_of} has {num_rows}.")
    if y.dtype.kind not in "iub":
        finite = np.isfinite(y.astype("float64"))
        if not finite.all() or np.any(y != np.round(y)):
            bad = y[~finite | (y != np.round(np.where(finite, y, 0)))][0]
            raise ValueError(f"`{name}` must be integer class ids, got {bad}.")
    y = y.astype("int64")
    out = (y < 0) | (y >= num_classes)
    if out.any():
        raise ValueError(f"`{name}` must be class ids in [0, {num_classes}), got {y[out][0]}.")
    return y


def _finite_matrix(name, value, square=False, min_rows=2):
    m = np.asarray(value, dtype="float64")
    if m.ndim != 2 or m.shape[0] < min_rows or (square and m.shape[0] != m.shape[1]):
        kind = "a square K x K matrix (K >= 2)" if square else f"2-D with >= {min_rows} rows"
        raise ValueError(f"`{name}` must be {kind}, got shape {m.shape}.")
    if not np.all(np.isfinite(m)):
        raise ValueError(f"`{name}` contains NaN or Inf.")
    return m


def _network(model):
    """The classifier itself: a `TrainableTargetsModel` is looked through to the model it wraps
    (its own last layers are the loss's matrices, not the network's)."""
    while isinstance(model, TrainableTargetsModel):
        model = model.model
    return model


def _last_dense(model):
    layers = getattr(_network(model), "layers", None)
    if not layers or not isinstance(layers[-1], keras.layers.Dense):
        last = type(layers[-1]).__name__ if layers else type(model).__name__
        raise TypeError(
            "the model's last layer must be a keras.layers.Dense (the class templates), "
            f"got {last}."
        )
    return layers[-1]


def penultimate_model(model):
    """A model from `model`'s inputs to the input of its last `Dense` layer."""
    dense = _last_dense(model)
    return keras.Model(_network(model).inputs, dense.input)


def penultimate_features(model, x, batch_size=1024):
    """`(N, n)` activations feeding the last `Dense` layer."""
    features = penultimate_model(model).predict(x, batch_size=batch_size, verbose=0)
    return np.asarray(features, dtype="float64")


def class_templates(model):
    """`(K, n)` templates w_k: the columns of the last `Dense` layer's kernel."""
    return np.asarray(keras.ops.convert_to_numpy(_last_dense(model).kernel), dtype="float64").T


def template_plane(templates):
    """Orthonormal basis `(n, 2)` of the plane through three templates w1, w2, w3.

    `[Re]` §4: Delta_1 = w1 - w3, Delta_2 = w2 - w3, A = [Delta_1 Delta_2],
    A = QR; the columns u, v of Q span the plane. Signs are fixed so that R
    has a positive diagonal (u points along Delta_1).
    """
    held = np.asarray(templates)
    w = held.astype("float64")
    if w.ndim != 2 or w.shape[0] != 3:
        raise ValueError(f"`templates` must be 3 x n (three classes), got shape {w.shape}.")
    if not np.all(np.isfinite(w)):
        raise ValueError("`templates` must be finite.")
    a = np.stack([w[0] - w[2], w[1] - w[2]], axis=1)
    top = np.abs(a).max()
    if not np.isfinite(top):  # finite templates whose differences overflow float64
        a = np.stack([w[0] / 2 - w[2] / 2, w[1] / 2 - w[2] / 2], axis=1)
        top = np.abs(a).max()
    q, r = np.linalg.qr(a / top if top > 0 else a)
    # |r11 r22| / (|Delta_1| |Delta_2|) is the sine of the angle between the differences:
    # scale-free, so tiny and huge templates are judged alike
    norms = np.linalg.norm(a / top, axis=0) if top > 0 else np.zeros(2)
    # below this sine the plane is rounding: 64 roundoffs of float32 templates (a Dense
    # kernel), 1e-10 for float64 ones
    limit = max(1e-10, 64 * float(np.finfo(held.dtype).eps)) if held.dtype.kind == "f" else 1e-10
    if not (norms.min() > 0 and abs(r[0, 0] * r[1, 1]) > limit * norms[0] * norms[1]):
        raise ValueError("the three templates are collinear: they do not span a plane.")
    return q * np.sign(np.diag(r))


def penultimate_projection(model, x, labels, classes=(0, 1, 2), batch_size=1024):
    """Project the examples of three classes onto the plane of their templates.

    Args:
        model: a built model whose last layer is `Dense` (logits or softmax).
        x, labels: inputs and class ids (e.g. the training or test split).
        classes: the three classes whose templates span the plane.

    Returns:
        dict with `coords` `(M, 2)` (lambda = a.u, mu = a.v for the examples
        of `classes`), `labels` `(M,)`, `templates` `(3, 2)` (the templates'
        own coordinates), `basis` `(n, 2)` and `classes`.
    """
    templates = class_templates(model)
    k = templates.shape[0]
    classes = tuple(_checks.check_class_list("classes", classes, k))
    if len(classes) != 3 or len(set(classes)) != 3:
        raise ValueError(f"`classes` must name three different classes, got {classes}.")
    x = np.asarray(x)
    labels = _class_ids(labels, k, num_rows=len(x), rows_of="`x`")
    keep = np.isin(labels, classes)
    features = penultimate_features(model, x[keep], batch_size)
    basis = template_plane(templates[list(classes)])
    return {"coords": features @ basis, "labels": labels[keep],
            "templates": templates[list(classes)] @ basis, "basis": basis, "classes": classes}


def class_centres(features, labels, num_classes):
    """`(K, n)` mean feature vector of each class."""
    num_classes = _checks.check_num_classes(num_classes)
    features = _finite_matrix("features", features, min_rows=1)  # NaN gave NaN centres
    labels = _class_ids(labels, num_classes, num_rows=len(features), rows_of="`features`")
    missing = sorted(set(range(num_classes)) - set(labels.tolist()))
    if missing:
        raise ValueError(f"classes {missing} have no examples.")
    return np.stack([features[labels == k].mean(axis=0) for k in range(num_classes)])


def cosine_distances(centres, normalise=True):
    """Cosine distances between class centres, L1-normalised per row (LLS paper §5.2).

    Formula:
        cd(i, j) = 1 - c_i . c_j / (||c_i|| ||c_j||)
        d(i, j) = cd(i, j) / sum_j cd(i, j)          (with `normalise=True`)
    """
    c = _finite_matrix("centres", centres)
    norms = np.linalg.norm(c, axis=1)
    if np.any(norms == 0):
        raise ValueError(f"class centre(s) {np.flatnonzero(norms == 0).tolist()} are zero vectors.")
    cd = 1.0 - (c @ c.T) / np.outer(norms, norms)
    # a distance within the rounding of the cosine is 0 (parallel centres): left as
    # 1e-16-sized noise, the row normalisation below would blow it up to full size
    cd[cd <= 4 * (c.shape[1] + 2) * np.finfo("float64").eps] = 0.0
    np.fill_diagonal(cd, 0.0)
    if not normalise:
        return cd
    sums = cd.sum(axis=1, keepdims=True)
    return cd / np.where(sums > 0, sums, 1.0)


def offdiagonal_spread(matrix):
    """How unequal the off-diagonal entries are: their standard deviation over their mean.

    0 when every class is equally far from every other (what label smoothing
    pushes towards); larger when some classes are clearly nearer than others.
    """
    m = _finite_matrix("matrix", matrix, square=True)
    off = m[~np.eye(len(m), dtype=bool)]
    top = np.abs(off).max()
    off = off / top if top > 0 else off  # the ratio is scale-free; divided first, entries
    if off.mean() <= 0:  # near 1e308 no longer overflow its moments
        raise ValueError(
            "`matrix` must have off-diagonal entries with a positive mean (distances or "
            f"masses), got mean {off.mean() * (top or 1.0):.6g}: the spread is undefined."
        )
    return float(off.std() / off.mean())


def smoothness_index(labels, teacher_logits, temperature=1.0):
    """Smoothness index gamma of a teacher at temperature tau (`[Re]` Eq. 3).

    Formula:
        gamma = E[ sum_k (1 - y_k) p_k^tau * K / (K - 1) ]

    the mean wrong-class mass of the tempered teacher, scaled so that uniform
    predictions give 1 and a teacher trained with label smoothing alpha (at
    tau = 1, fitted perfectly) gives alpha.
    """
    temperature = _checks.check_positive("temperature", temperature)
    logits = _finite_matrix("teacher_logits", teacher_logits, min_rows=1)
    if logits.shape[1] < 2:
        raise ValueError(f"`teacher_logits` must have K >= 2 columns, got shape {logits.shape}.")
    k = logits.shape[1]
    onehot = np.eye(k)[_class_ids(labels, k, num_rows=len(logits), rows_of="`teacher_logits`")]
    z = logits / temperature
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    return float(((1.0 - onehot) * p).sum(axis=1).mean() * k / (k - 1))


def confusion_matrix(labels, predictions, num_classes, normalize=True):
    """`(K, K)` confusion matrix (rows: true class), row-normalised by default.

    `predictions` are class ids or `(N, K)` scores (arg-maxed).
    """
    from sklearn.metrics import confusion_matrix as sk_confusion

    num_classes = _checks.check_num_classes(num_classes)
    normalize = _checks.check_bool("normalize", normalize)
    predictions = np.asarray(predictions)
    if predictions.ndim == 2 and predictions.shape[1] != num_classes:
        raise ValueError(f"`predictions` has {predictions.shape[1]} columns of scores but "
                         f"`num_classes` is {num_classes}.")
    if predictions.ndim == 2 and predictions.shape[1] == num_classes:
        _checks.check_finite("predictions", predictions)  # argmax would take NaN as the top
        predictions = predictions.argmax(axis=1)
    predictions = _class_ids(predictions, num_classes, name="predictions")
    labels = _class_ids(labels, num_classes, num_rows=len(predictions),
                        rows_of="`predictions`")
    return sk_confusion(labels, predictions, labels=list(range(num_classes)),
                        normalize="true" if normalize else None)


def top_related_classes(matrix, class_names=None, top=2):
    """For each class, the `top` other classes with the largest entries of its row.

    Returns:
        dict class name -> list of (other class name, value), largest first.
    """
    m = _finite_matrix("matrix", matrix, square=True)
    k = len(m)
    names = (_checks.check_names("class_names", class_names, k) if class_names is not None
             else [str(i) for i in range(k)])  # distinct: they are the keys of the result
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 1:
        raise ValueError(f"`top` must be a positive integer, got {top!r}.")
    out = {}
    for i in range(k):
        row = [(j, m[i, j]) for j in np.argsort(-m[i], kind="stable") if j != i][:top]
        out[names[i]] = [(names[j], float(v)) for j, v in row]
    return out


def distillation_study(build_student, data, *, teachers=None, matrices=None, epochs, batch_size,
                       seed, beta=1.0, temperature=1.0):
    """Train the same student from each teacher (and from each learned matrix alone).

    Args:
        build_student: `build_student(input_shape, num_classes)` -> uncompiled
            logit model.
        data: `ClassificationData`.
        teachers: dict name -> teacher logits on `data.x_train` (e.g. models
            trained with No LS, LS, ILS, LLS, LS++). Students minimise
            `(1 - beta) H(y, q) + beta H(p_teacher^tau, q^tau)`.
        matrices: dict name -> (matrix, alpha): a learned LLS Q or LS++ C and
            the alpha it was learned with; students train on the class-level
            targets alone (LLS-ST / PT-LS++, `SubstituteTeacherLoss`).
        epochs, batch_size, seed: student training (best validation epoch).
        beta, temperature: distillation settings (default: teacher only, tau = 1).

    Returns:
        dict name -> test metrics (accuracy, nll, ece, classwise_ece, brier) of
        the student, plus `smoothness` (gamma of the teacher at `temperature`)
        for logit teachers.
    """
    from keras_smooth import calibration, losses
    from keras_smooth.training.fitting import fit_classifier

    results = {}
    for name, logits in (teachers or {}).items():
        logits = np.asarray(logits, dtype="float32")
        if logits.shape != (len(data.y_train), data.num_classes):
            expected = (len(data.y_train), data.num_classes)
            raise ValueError(f"teacher {name!r}: logits must have shape {expected}, "
                             f"got {logits.shape}.")
        targets = losses.distillation_targets(data.y_train, logits)
        trained = fit_classifier(build_student, data, targets,
                                 losses.DistillationLoss(beta=beta, temperature=temperature),
                                 epochs=epochs, batch_size=batch_size, seed=seed)
        test = trained.model.predict(data.x_test, batch_size=1024, verbose=0)
        results[name] = {**calibration.evaluate(data.y_test, test, groups=data.test_groups),
                         "smoothness": smoothness_index(data.y_train, logits, temperature)}
    for name, (matrix, alpha) in (matrices or {}).items():
        trained = fit_classifier(build_student, data, data.y_train,
                                 losses.SubstituteTeacherLoss(matrix, alpha=alpha, beta=beta,
                                                              temperature=temperature),
                                 epochs=epochs, batch_size=batch_size, seed=seed)
        logits = trained.model.predict(data.x_test, batch_size=1024, verbose=0)
        results[name] = calibration.evaluate(data.y_test, logits, groups=data.test_groups)
    return results
