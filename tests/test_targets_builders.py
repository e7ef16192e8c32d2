"""Property tests: every target builder of `keras_smooth.targets` against NumPy.

The references are written here, row by row in float64, from the papers'
equations: uniform LS (Szegedy et al.; ILS paper §II), ILS1 / ILS2 / ILS
(ILS paper Eq. 3, Eq. 4 and §IV-C), LLS (LLS paper Eq. 4), LS++ (LS++ paper
Eq. 3), TF-KD's virtual teacher (Yuan et al. §4), Zipf's labels (Liang et
al. §3.2) and Beta smoothing (Zhang & Sabuncu §5). Each builder runs on
hundreds of random problems, including the degenerate ones: K = 2, N = 1,
epsilon = 0, ties, a saturated teacher (p_t exactly 1, logits of 1e4). The
objects that call the builders (`ILSTargets`, `LLSLoss.targets`, the
baseline losses) are checked against the same references.
"""

import numpy as np
import pytest
from keras import ops

from keras_smooth import losses, targets
from keras_smooth.layers import ILSTargets

TRIALS = 200
ATOL = 2e-6


def _np(x):
    return np.asarray(ops.convert_to_numpy(x), dtype="float64")


def _softmax(z):
    z = np.asarray(z, dtype="float64")
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _log_softmax(z):
    z = np.asarray(z, dtype="float64")
    m = z.max(axis=-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=-1, keepdims=True))


# --- references, from the equations ---------------------------------------------------


def ref_uniform(labels, k, eps):
    """y_LS = (1 - eps) y + eps / K."""
    out = np.full((len(labels), k), eps / k)
    out[np.arange(len(labels)), labels] += 1 - eps
    return out


def ref_ils1_eps(p_t, p1, p2, cap=0.2):
    """ILS Eq. 3: eps_x = min(cap, P2 (p_t - P1)^2)."""
    return min(cap, p2 * (p_t - p1) ** 2)


def ref_wrong_shape(t, probs_row):
    """p_j / (1 - p_t) for j != t; the 1 / (K - 1) limit where all wrong mass is 0."""
    row = np.array(probs_row, dtype="float64")
    row[t] = 0.0
    total = row.sum()
    if total == 0:
        row = np.full_like(row, 1.0 / (len(row) - 1))
        row[t] = 0.0
        return row
    return row / total


def ref_ils_row(t, eps, shape_row):
    """ILS Eq. 4 with the wrong-class shape given: y_j = eps * shape_j, y_t = 1 - eps."""
    row = eps * shape_row
    row[t] = 1 - eps
    return row


def ref_ils1(labels, probs, p1, p2, cap=0.2):
    """ILS Eq. 3: uniform smoothing with the per-instance eps_x."""
    k = probs.shape[1]
    return np.stack([ref_uniform([t], k, ref_ils1_eps(probs[i, t], p1, p2, cap))[0]
                     for i, t in enumerate(labels)])


def ref_ils2(labels, probs, eps):
    return np.stack([ref_ils_row(t, eps, ref_wrong_shape(t, probs[i]))
                     for i, t in enumerate(labels)])


def ref_ils(labels, eps_probs, dist_probs, p1, p2, cap=0.2):
    return np.stack([ref_ils_row(t, ref_ils1_eps(eps_probs[i, t], p1, p2, cap),
                                 ref_wrong_shape(t, dist_probs[i]))
                     for i, t in enumerate(labels)])


def ref_matrix(labels, matrix, alpha):
    """LLS Eq. 4 / LS++ Eq. 3: t = (1 - alpha) y + alpha M[y]."""
    k = matrix.shape[0]
    return np.stack([(1 - alpha) * np.eye(k)[t] + alpha * matrix[t] for t in labels])


def ref_virtual_teacher(labels, k, a):
    out = np.full((len(labels), k), (1 - a) / (k - 1))
    out[np.arange(len(labels)), labels] = a
    return out


def ref_zipf(labels, logits, power):
    """Rank 1 for the label, ranks 2..K by descending logit; mass r^-power, normalised."""
    out = np.zeros_like(logits, dtype="float64")
    for i, t in enumerate(labels):
        others = [j for j in np.argsort(-logits[i], kind="stable") if j != t]
        for rank, j in enumerate([t, *others], start=1):
            out[i, j] = rank ** -power
        out[i] /= out[i].sum()
    return out


# --- random problems ---------------------------------------------------------------------


def _problem(rng, trial):
    """(labels, K) with K = 2 and N = 1 among them (few shapes: JAX compiles per shape)."""
    k = 2 if trial % 5 == 0 else int(rng.choice([3, 7]))
    n = 1 if trial % 7 == 0 else 6
    return rng.integers(0, k, n), k


def _teacher_probs(rng, labels, k, trial):
    """Random teacher rows; every 4th problem has saturated rows and ties."""
    probs = _softmax(rng.normal(scale=3.0, size=(len(labels), k)))
    if trial % 4 == 1:
        probs[0] = np.eye(k)[labels[0]]  # saturated: p_t = 1 exactly
        if len(labels) > 1:
            probs[1] = 1.0 / k  # a tie over every class
    return probs


def _epsilon(rng, trial):
    return 0.0 if trial % 6 == 0 else float(rng.uniform(0.0, 0.99))


def test_uniform_and_ils1_match_the_papers():
    rng = np.random.default_rng(0)
    for trial in range(TRIALS):
        labels, k = _problem(rng, trial)
        eps = _epsilon(rng, trial)
        np.testing.assert_allclose(_np(targets.uniform(labels, k, eps)),
                                   ref_uniform(labels, k, eps), atol=ATOL, err_msg=str(trial))
        probs = _teacher_probs(rng, labels, k, trial)
        p1, p2 = float(rng.uniform(0.5, 1.0)), float(rng.uniform(0.0, 3.0))
        cap = 0.2 if trial % 2 else float(rng.uniform(0.0, 0.99))
        np.testing.assert_allclose(_np(targets.ils1(labels, probs, p1, p2, cap)),
                                   ref_ils1(labels, probs, p1, p2, cap), atol=ATOL,
                                   err_msg=str(trial))


def test_ils2_and_ils_match_eq_4_including_saturated_teachers():
    rng = np.random.default_rng(1)
    for trial in range(TRIALS):
        labels, k = _problem(rng, trial)
        eps = _epsilon(rng, trial)
        probs = _teacher_probs(rng, labels, k, trial)
        at_t = _teacher_probs(rng, labels, k, trial + 1)
        got = _np(targets.ils2(labels, probs, eps))
        np.testing.assert_allclose(got, ref_ils2(labels, probs, eps), atol=ATOL,
                                   err_msg=str(trial))
        p1, p2 = float(rng.uniform(0.5, 1.0)), float(rng.uniform(0.0, 3.0))
        got = _np(targets.ils(labels, probs, at_t, p1, p2))
        np.testing.assert_allclose(got, ref_ils(labels, probs, at_t, p1, p2), atol=ATOL,
                                   err_msg=str(trial))
        np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=ATOL)


@pytest.mark.parametrize("method", ["ils1", "ils2", "ils"])
def test_ils_from_logits_and_the_layer_match_the_papers_on_logits(method):
    rng = np.random.default_rng(2)
    for trial in range(TRIALS):
        labels, k = _problem(rng, trial)
        scale = 1e4 if trial % 9 == 0 else 3.0  # 1e4: the teacher saturates in float32
        logits = rng.normal(scale=scale, size=(len(labels), k)).astype("float32")
        if trial % 4 == 1:
            logits[0] = 0.0  # ties
        eps = min(_epsilon(rng, trial), 0.95)
        p1, p2 = float(rng.uniform(0.5, 1.0)), float(rng.uniform(0.0, 3.0))
        temp, calib = float(rng.choice([0.5, 1.0, 4.0])), float(rng.uniform(0.5, 3.0))
        calibrated, at_t = _softmax(logits / calib), _softmax(logits / temp)
        # the wrong-class shape from logits: a softmax over the wrong classes only
        shape = np.stack([_softmax(np.where(np.arange(k) == t, -np.inf, logits[i] / temp))
                          for i, t in enumerate(labels)])
        expected = {
            "ils1": ref_ils1(labels, calibrated, p1, p2),
            "ils2": np.stack([ref_ils_row(t, eps, shape[i]) for i, t in enumerate(labels)]),
            "ils": np.stack([ref_ils_row(t, ref_ils1_eps(calibrated[i, t], p1, p2), shape[i])
                             for i, t in enumerate(labels)]),
        }[method]
        settings = dict(epsilon=eps, p1=p1, p2=p2, temperature=temp,
                        calibration_temperature=calib)
        got = _np(targets.ils_from_logits(labels, logits, method, **settings))
        np.testing.assert_allclose(got, expected, atol=ATOL, err_msg=str(trial))
        if trial % 20 == 0:  # the layer is a thin wrapper: the same numbers
            layer = _np(ILSTargets(method, **settings)(labels, logits))
            np.testing.assert_array_equal(layer, got)
        if scale == 3.0 and method != "ils1":  # agrees with the probability builders
            via_probs = (targets.ils2(labels, at_t, eps) if method == "ils2"
                         else targets.ils(labels, calibrated, at_t, p1, p2))
            np.testing.assert_allclose(_np(via_probs), got, atol=1e-5)


@pytest.mark.parametrize("zero_diagonal", [False, True])
def test_matrix_smoothing_matches_lls_eq_4_and_lspp_eq_3(zero_diagonal):
    rng = np.random.default_rng(3)
    for trial in range(TRIALS):
        labels, k = _problem(rng, trial)
        matrix = rng.random((k, k))
        if zero_diagonal:
            matrix *= 1 - np.eye(k)
        if trial % 8 == 0:
            matrix = np.ones((k, k)) - (np.eye(k) if zero_diagonal else 0)  # ties
        matrix /= matrix.sum(axis=1, keepdims=True)
        alpha = 1.0 if trial % 10 == 3 else _epsilon(rng, trial)
        np.testing.assert_allclose(_np(targets.matrix_smoothing(labels, matrix, alpha)),
                                   ref_matrix(labels, matrix, alpha), atol=ATOL,
                                   err_msg=str(trial))


def test_the_learnable_losses_train_on_matrix_smoothing_targets():
    rng = np.random.default_rng(4)
    for trial in range(40):
        labels, k = _problem(rng, trial)
        logits = rng.normal(size=(k, k))
        alpha = min(_epsilon(rng, trial), 0.9)
        loss = losses.LLSLoss(k, alpha=alpha, matrix_logits=logits)
        np.testing.assert_allclose(_np(loss.targets(labels)),
                                   ref_matrix(labels, _softmax(logits), alpha), atol=ATOL)
        loss = losses.LSPlusPlusLoss(k, alpha=alpha, matrix_logits=logits)
        c = _softmax(np.where(np.eye(k) > 0, -np.inf, logits))
        np.testing.assert_allclose(_np(loss.targets(labels)), ref_matrix(labels, c, alpha),
                                   atol=ATOL)


def test_virtual_teacher_and_zipf_match_their_papers():
    rng = np.random.default_rng(5)
    for trial in range(TRIALS):
        labels, k = _problem(rng, trial)
        a = 1.0 if trial % 9 == 0 else float(rng.uniform(0.0, 1.0))
        np.testing.assert_allclose(_np(targets.virtual_teacher(labels, k, a)),
                                   ref_virtual_teacher(labels, k, a), atol=ATOL)
        logits = rng.normal(scale=3.0, size=(len(labels), k)).astype("float32")
        power = 0.0 if trial % 6 == 0 else float(rng.uniform(0.1, 3.0))
        np.testing.assert_allclose(_np(targets.zipf(labels, logits, power)),
                                   ref_zipf(labels, logits, power), atol=ATOL,
                                   err_msg=str(trial))


def test_zipf_with_tied_logits_gives_the_label_rank_1_and_the_same_masses():
    rng = np.random.default_rng(6)
    for trial in range(TRIALS):
        labels, k = _problem(rng, trial)
        logits = rng.integers(-1, 2, size=(len(labels), k)).astype("float32")  # many ties
        got = _np(targets.zipf(labels, logits, 1.0))
        expected = ref_zipf(labels, logits, 1.0)
        rows = np.arange(len(labels))
        np.testing.assert_allclose(got[rows, labels], expected[rows, labels], atol=ATOL)
        np.testing.assert_allclose(np.sort(got, axis=1), np.sort(expected, axis=1), atol=ATOL)
        for i in rows:  # a larger logit never gets less mass
            wrong = [j for j in range(k) if j != labels[i]]
            for p in wrong:
                for q in wrong:
                    if logits[i, p] > logits[i, q]:
                        assert got[i, p] > got[i, q]


def test_beta_smoothing_matches_its_definition():
    rng = np.random.default_rng(7)
    for trial in range(TRIALS):
        labels, k = _problem(rng, trial)
        confidences = rng.random(len(labels))
        if trial % 4 == 1:
            confidences[:] = 0.5  # ties: the stable order decides
        epsilon, seed = float(rng.uniform(0.01, 0.39)), int(rng.integers(0, 1000))
        soft, eps = targets.beta_smoothing(labels, confidences, k, epsilon, seed=seed)
        # Zhang & Sabuncu: eps_i = alpha (1 - b_i), b ~ Beta(alpha / epsilon - 1, 1), the
        # largest b (least smoothing) to the most confident instance.
        draws = np.sort(np.random.default_rng(seed).beta(0.4 / epsilon - 1.0, 1.0,
                                                         size=len(labels)))
        b = np.empty_like(draws)
        b[np.argsort(confidences, kind="stable")] = draws
        np.testing.assert_allclose(eps, 0.4 * (1 - b), rtol=1e-6)
        expected = np.stack([ref_uniform([t], k, e)[0] for t, e in zip(labels, 0.4 * (1 - b))])
        np.testing.assert_allclose(soft, expected, atol=ATOL)
        assert isinstance(soft, np.ndarray) and soft.dtype == np.float32


def test_mix_is_the_formula_with_scalar_and_per_row_shares():
    rng = np.random.default_rng(8)
    for trial in range(TRIALS):
        labels, k = _problem(rng, trial)
        onehot = np.eye(k, dtype="float32")[labels]
        dist = _softmax(rng.normal(size=(len(labels), k))).astype("float32")
        eps = rng.random(len(labels)) if trial % 2 else _epsilon(rng, trial)
        expected = (1 - np.reshape(eps, (-1, 1))) * onehot + np.reshape(eps, (-1, 1)) * dist
        np.testing.assert_allclose(_np(targets.mix(onehot, dist, eps)), expected, atol=ATOL)
    with pytest.raises(ValueError, match=r"`epsilon` must be .* in \[0, 1\], got 1\.5"):
        targets.mix(onehot, dist, 1.5)
    with pytest.raises(ValueError, match=r"`onehot` .* and `distribution` .* same shape"):
        targets.mix(onehot, dist[:, :1], 0.1)


def test_new_builders_refuse_bad_arguments_naming_them():
    probs = np.array([[0.7, 0.2, 0.1]])
    cases = [
        (lambda: targets.ils_from_logits([0], np.log(probs), "ils3"), r"`method` must be one"),
        (lambda: targets.ils_from_logits([0], np.log(probs), temperature=0.0),
         r"`temperature` must be > 0, got 0\.0"),
        (lambda: targets.ils_from_logits([0], [[np.inf, 0.0, 0.0]]),
         r"`teacher_logits` must be finite, got inf"),
        (lambda: targets.ils_from_logits([0.5], np.log(probs)), r"`labels` must be class ids"),
        (lambda: targets.matrix_smoothing([0], np.eye(3), 1.5), r"`alpha` must be in \[0, 1\]"),
        (lambda: targets.matrix_smoothing([0], np.ones((3, 2)) / 2, 0.1),
         r"`matrix` must be a square K x K matrix"),
        (lambda: targets.virtual_teacher([3], 3, 0.9), r"`labels` must be class ids in \[0, 3\)"),
        (lambda: targets.virtual_teacher([0], 3, -0.1), r"`correct_probability` must be in"),
        (lambda: targets.zipf([0], probs, power=-1.0), r"`power` must be >= 0, got -1\.0"),
        (lambda: targets.zipf([0], [0.1, 0.2]), r"`logits` must have shape \(N, K\)"),
        (lambda: targets.beta_smoothing([0, 1], [0.5], 2, 0.1), r"`confidences` has 1 rows"),
        (lambda: targets.beta_smoothing([0, 1], [0.5, 0.6], 2, 0.5),
         r"`epsilon` must be in \(0, alpha=0\.4\), got 0\.5"),
    ]
    for make, match in cases:
        with pytest.raises((ValueError, TypeError), match=match):
            make()


# --- the losses that call the builders, against the references ------------------------


def _ce(soft, logits):
    return -(soft * _log_softmax(logits)).sum(axis=1)


def test_baseline_losses_train_on_the_mixed_targets():
    rng = np.random.default_rng(9)
    for trial in range(60):
        labels, k = _problem(rng, trial)
        logits = rng.normal(scale=3.0, size=(len(labels), k)).astype("float32")
        q = _softmax(logits)
        w = _epsilon(rng, trial)
        onehot = np.eye(k)[labels]
        # soft bootstrapping (Reed et al.): t = beta y + (1 - beta) q
        np.testing.assert_allclose(_np(losses.soft_bootstrapping_loss(labels, logits, w)),
                                   _ce(w * onehot + (1 - w) * q, logits), rtol=1e-5, atol=1e-5)
        # OLS (Zhang et al. Eq. 5): alpha H(y, q) + (1 - alpha) H(S[y], q)
        s = _softmax(rng.normal(size=(k, k)))
        ols = losses.OnlineLabelSmoothingLoss(k, alpha=w, soft_matrix=s, reduction=None)
        expected = w * _ce(onehot, logits) + (1 - w) * _ce(s[labels], logits)
        np.testing.assert_allclose(_np(ols(labels, logits)), expected, rtol=1e-5, atol=1e-5)
        # cLS and the substitute teacher: H((1 - eps) y + eps S[y], q)
        sim = s * (1 - np.eye(k))
        sim /= sim.sum(axis=1, keepdims=True)
        eps = min(w, 0.95)
        cls = losses.ClassSimilarityLSLoss(sim, eps, reduction=None)
        np.testing.assert_allclose(_np(cls(labels, logits)),
                                   _ce(ref_matrix(labels, sim, eps), logits), rtol=1e-5,
                                   atol=1e-5)
        # TF-KD reg: (1 - alpha) H(y, q) + alpha tau^2 KL(softmax(p^d / tau) || q_tau)
        a, tau = float(rng.uniform(0.1, 1.0)), 4.0
        teacher = _softmax(ref_virtual_teacher(labels, k, a) / tau)
        kl = (teacher * (np.log(teacher) - _log_softmax(logits / tau))).sum(axis=1)
        expected = (1 - w) * _ce(onehot, logits) + w * tau**2 * kl
        got = losses.tf_kd_regularization_loss(labels, logits, w, tau, a)
        np.testing.assert_allclose(_np(got), expected, rtol=1e-5, atol=1e-5)
