"""Issue 13: the faster metrics and temperature fit still give the exact numbers.

Backend-agnostic (also run under JAX from tests/test_backends.py). Expected values come
from the NumPy/SciPy references below, written from the definitions in float64:

* bins ((m - 1)/M, m/M] with 0 in the first, a value compared with the float32 edges
  float32(m/M) (the documented convention), by counting the edges below it;
* ECE = sum_m |sum_{B_m} w correct - sum_{B_m} w conf| / sum w, classwise ECE the mean
  over classes j of the same gap for p_j and 1[y = j];
* the temperature minimises mean_i [log sum_j exp(z_ij / T) - z_iy / T], found by
  SciPy's bounded search on log T.
"""

import ast
import pathlib

import keras
import numpy as np
import pytest

from keras_smooth import calibration
from keras_smooth.metrics import ClasswiseECE, ExpectedCalibrationError

JAX = keras.backend.backend() == "jax"
HAS_FLOAT64 = not JAX or __import__("jax").config.jax_enable_x64
# float64 accumulators agree to summation order; float32 ones (JAX without x64) to rounding
TOL = 1e-12 if HAS_FLOAT64 else 2e-5
ROOT = pathlib.Path(__file__).resolve().parents[1]
BINS = 15
PIECES = (1, 2, 7, 33)  # few distinct batch sizes: JAX compiles once per shape
RESULT = "float64" if HAS_FLOAT64 else None  # the metrics' result dtype


# --- NumPy references -----------------------------------------------------------------


def ref_bins(values, m_bins=BINS):
    edges = (np.arange(1, m_bins) / m_bins).astype("float32")
    return (np.asarray(values, "float32")[..., None] > edges).sum(axis=-1)


def ref_ece(labels, probs, weights):
    p = np.asarray(probs, "float64")
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == labels).astype("float64")
    bins = ref_bins(np.asarray(probs, "float32").max(axis=1))
    gap = sum(abs((weights * correct)[bins == m].sum() - (weights * conf)[bins == m].sum())
              for m in range(BINS))
    return gap / weights.sum() if weights.sum() > 0 else 0.0


def ref_classwise(labels, probs, weights):
    p = np.asarray(probs, "float64")
    bins = ref_bins(probs)
    total = 0.0
    for j in range(p.shape[1]):
        hit = (labels == j).astype("float64")
        for m in range(BINS):
            sel = bins[:, j] == m
            total += abs((weights * hit)[sel].sum() - (weights * p[:, j])[sel].sum())
    return total / (p.shape[1] * weights.sum()) if weights.sum() > 0 else 0.0


def softmax32(z):
    z = np.asarray(z, "float64")
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype("float32")


# --- random problems, degenerate ones included -------------------------------------------


def draw_probabilities(rng, kind, n, k):
    if kind == "huge":  # softmax saturates: exact 0s and 1s
        return softmax32(rng.normal(size=(n, k)) * 1e4)
    if kind == "zero":  # uniform rows: every class tied
        return np.full((n, k), 1.0 / k, dtype="float32")
    if kind == "onehot":
        return np.eye(k, dtype="float32")[rng.integers(0, k, size=n)]
    if kind == "edges":  # every value exactly a bin edge m/15 (rows of K = 3 summing to 15/15)
        a = rng.integers(0, 16, size=n)
        b = (rng.random(n) * (16 - a)).astype(int)
        return (np.stack([a, b, 15 - a - b], axis=1) / np.float32(15)).astype("float32")
    if kind == "ties":  # rounded probabilities with ties for the maximum
        p = np.round(softmax32(rng.normal(size=(n, k))) * 4) + 1
        return (p / p.sum(axis=1, keepdims=True)).astype("float32")
    return softmax32(rng.normal(size=(n, k)) * rng.choice([0.5, 3.0]))


def draw_sizes(rng):
    """Batch sizes from PIECES (a single batch of one row 15% of the time)."""
    if rng.random() < 0.15:
        return [1]
    return [int(size) for size in rng.choice(PIECES, size=int(rng.integers(1, 6)))]


def draw_case(rng, n):
    kind = rng.choice(["plain", "huge", "zero", "onehot", "edges", "ties"])
    k = 3 if kind == "edges" else int(rng.choice([2, 2, 3, 10]))
    probs = draw_probabilities(rng, kind, n, k)
    if rng.random() < 0.2:  # one class present
        labels = np.full(n, int(rng.integers(0, k)))
    else:
        labels = rng.integers(0, k, size=n)
    weights = None
    if rng.random() < 0.3:
        weights = rng.uniform(0, 3, size=n) * (rng.random(n) > 0.2)  # some exact zeros
    return labels.astype("int32"), probs, weights


def stream(metric, labels, probs, weights, rng, sizes=None):
    """Feed the rows in batches of `sizes` (default: drawn from PIECES, the last one cut)."""
    start, sizes = 0, list(sizes or [])
    while start < len(labels):
        stop = min(len(labels), start + (sizes.pop(0) if sizes else int(rng.choice(PIECES))))
        w = None if weights is None else weights[start:stop]
        if w is not None and rng.random() < 0.5:
            w = w[:, None]  # (N, 1) weights as Keras passes them
        metric.update_state(labels[start:stop], probs[start:stop], sample_weight=w)
        start = stop
    return float(metric.result())


def test_streaming_metrics_equal_the_definitions_on_hundreds_of_random_splits():
    rng = np.random.default_rng(13)
    for case in range(150):
        sizes = draw_sizes(rng)
        labels, probs, weights = draw_case(rng, sum(sizes))
        w = np.ones(len(labels)) if weights is None else weights
        k = probs.shape[1]
        ece = stream(ExpectedCalibrationError(BINS, dtype=RESULT), labels, probs, weights, rng,
                     sizes)
        classwise = stream(ClasswiseECE(k, BINS, dtype=RESULT), labels, probs, weights, rng,
                           sizes)
        assert abs(ece - ref_ece(labels, probs, w)) <= TOL, (case, ece)
        assert abs(classwise - ref_classwise(labels, probs, w)) <= TOL, (case, classwise)
        if weights is None:  # the functions on all data at once agree too
            assert abs(ece - calibration.ece(labels, probs)) <= TOL, case
            assert abs(classwise - calibration.classwise_ece(labels, probs)) <= TOL, case


def test_binary_and_one_hot_inputs_stream_like_the_functions():
    rng = np.random.default_rng(5)
    for case in range(16):
        sizes = draw_sizes(rng)
        n = sum(sizes)
        p1 = rng.choice([0.0, 1.0, np.float32(7 / 15), 0.3, 0.95], size=n).astype("float32")
        labels = rng.integers(0, 2, size=n).astype("int32")
        shape = (n,) if case % 2 else (n, 1)
        both = np.stack([1.0 - p1.astype("float64"), p1], axis=1)
        ece = stream(ExpectedCalibrationError(BINS, dtype=RESULT), labels, p1.reshape(shape),
                     None, rng, sizes)
        classwise = stream(ClasswiseECE(2, BINS, dtype=RESULT), labels, p1.reshape(shape), None,
                           rng, sizes)
        # [1 - p, p] is formed in float32 by the metric and in float64 by the reference
        assert ece == pytest.approx(ref_ece(labels, both, np.ones(n)), abs=1e-6)
        assert classwise == pytest.approx(ref_classwise(labels, both, np.ones(n)), abs=1e-6)
        onehot = np.eye(3, dtype="float32")[rng.integers(0, 3, size=n)]
        probs = softmax32(rng.normal(size=(n, 3)))
        ece = stream(ExpectedCalibrationError(BINS, dtype=RESULT), onehot, probs, None, rng,
                     sizes)
        assert abs(ece - ref_ece(onehot.argmax(axis=1), probs, np.ones(n))) <= TOL


def test_compiled_update_inside_evaluate_equals_the_definitions():
    rng = np.random.default_rng(3)
    for kind in ("edges", "huge"):
        probs = draw_probabilities(rng, kind, 50, 3)
        labels = rng.integers(0, 3, size=50).astype("int32")
        model = keras.Sequential([keras.Input((3,)), keras.layers.Identity()])
        model.compile(loss="sparse_categorical_crossentropy",
                      metrics=[ExpectedCalibrationError(BINS, dtype=RESULT),
                               ClasswiseECE(3, BINS, dtype=RESULT)])
        out = model.evaluate(probs, labels, batch_size=7, verbose=0, return_dict=True)
        ones = np.ones(50)
        assert abs(out["ece"] - ref_ece(labels, probs, ones)) <= max(TOL, 1e-7)
        assert abs(out["classwise_ece"] - ref_classwise(labels, probs, ones)) <= max(TOL, 1e-7)


def test_eager_bad_values_still_raise_clear_errors_after_compilation():
    metric = ClasswiseECE(3, BINS, dtype=RESULT)
    good = softmax32(np.zeros((4, 3)))
    metric.update_state([0, 1, 2, 0], good)  # compiled once
    with pytest.raises(ValueError, match="y_pred"):
        metric.update_state([0, 1, 2, 0], np.where(np.eye(4, 3) > 0, np.nan, good))
    with pytest.raises(ValueError, match="y_true"):
        metric.update_state([0, 1, 3, 0], good)
    with pytest.raises(ValueError, match="sample_weight"):
        metric.update_state([0, 1, 2, 0], good, sample_weight=[1.0, -1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="y_true"):
        metric.update_state([0, 1, 2], good)
    assert abs(float(metric.result()) - ref_classwise(np.array([0, 1, 2, 0]), good,
                                                      np.ones(4))) <= TOL


# --- fit_temperature: the float32 start and float64 certification ---------------------------


def reference_nll(z, labels, t):
    s = np.asarray(z, "float64") / t
    s = s - s.max(axis=1, keepdims=True)
    return float((np.log(np.exp(s).sum(axis=1)) - s[np.arange(len(labels)), labels]).mean())


def scipy_optimum(z, labels, bounds=(0.01, 100.0)):
    from scipy import optimize

    res = optimize.minimize_scalar(
        lambda log_t: reference_nll(z, labels, np.exp(log_t)),
        bounds=(np.log(bounds[0]), np.log(bounds[1])), method="bounded",
        options={"xatol": 1e-10},
    )
    return float(np.exp(res.x)), float(res.fun)


def draw_fit_problem(rng, large):
    n = int(rng.integers(8192, 30000)) if large else int(rng.integers(1, 400))
    k = int(rng.choice([2, 3, 10, 30]))
    z = rng.normal(size=(n, k)) * rng.choice([0.01, 1.0, 3.0, 30.0])
    if rng.random() < 0.2:
        z = np.round(z)  # ties and constant rows
    t_true = np.exp(rng.uniform(np.log(0.3), np.log(5.0)))
    p = np.exp(z / t_true - (z / t_true).max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    labels = (rng.random((n, 1)) > p.cumsum(axis=1)).sum(axis=1).clip(0, k - 1)
    if rng.random() < 0.1:
        labels[:] = labels[0]  # one class present
    return z.astype("float32"), labels.astype("int64")


@pytest.mark.parametrize("large", [False, True])
def test_fit_temperature_on_float32_logits_matches_scipy(large):
    pytest.importorskip("scipy")
    rng = np.random.default_rng(1300 + large)
    for case in range(12 if large else 150):
        z, labels = draw_fit_problem(rng, large)
        fit = calibration.fit_temperature(z, labels)
        t_opt, nll_opt = scipy_optimum(z, labels)
        t = float(fit)
        nll_t = reference_nll(z, labels, t)
        assert fit.nll_after == pytest.approx(nll_t, rel=1e-10, abs=1e-14), case
        assert fit.nll_before == pytest.approx(reference_nll(z, labels, 1.0), rel=1e-10,
                                               abs=1e-14), case
        if fit.converged:  # the promise: the NLL is at its minimum
            assert nll_t <= nll_opt * (1 + 1e-9) + 1e-12, (case, t, t_opt)
        interior = 0.0105 < t_opt < 95.0
        pinned = min(reference_nll(z, labels, t_opt * (1 + s * 1e-4)) for s in (-1, 1))
        if interior and pinned - nll_opt > 1e-11 * nll_opt + 1e-14:
            assert fit.converged, (case, fit.message)
            assert abs(t / t_opt - 1) <= 1e-4, (case, t, t_opt)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_fit_temperature_float32_non_finite_logits_raise_clearly(bad):
    """Float32 logits are checked from their row maxima (no separate pass): same error."""
    import warnings

    z = np.random.default_rng(5).normal(size=(40, 4)).astype("float32")
    z[7, 2] = bad
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning from the shift either
        with pytest.raises(ValueError, match=r"`logits` must be finite, got .* \(7, 2\)"):
            calibration.fit_temperature(z, np.arange(40) % 4)


def test_fit_temperature_float32_logits_whose_gaps_overflow_float32():
    """A row gap beyond the float32 range: the fit falls back to float64 u, as for float64."""
    import warnings

    rng = np.random.default_rng(6)
    z = (rng.normal(size=(60, 3)) * 1e37).astype("float32")
    z[0] = [-3e38, 3e38, 0.0]
    labels = rng.integers(0, 3, 60)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit32 = calibration.fit_temperature(z, labels)
        fit64 = calibration.fit_temperature(z.astype("float64"), labels)
    assert float(fit32) == pytest.approx(float(fit64), rel=1e-12)
    assert fit32.converged == fit64.converged
    assert fit32.nll_after == pytest.approx(fit64.nll_after, rel=1e-12)
    assert fit32.nll_before == pytest.approx(fit64.nll_before, rel=1e-12)


def test_taylor_model_of_the_float32_stage_matches_the_float64_derivatives():
    """Per-row moments at beta0 give NLL' and NLL'' near beta0 (the float32 stage's model)."""
    rng = np.random.default_rng(8)
    for _ in range(60):
        n, k = int(rng.integers(1, 300)), int(rng.choice([2, 5, 30]))
        z = (rng.normal(size=(n, k)) * rng.choice([0.1, 1.0, 4.0])).astype("float32")
        labels = rng.integers(0, k, n)
        objective = calibration._ShiftedNLL(z, labels)
        if objective.flat:
            continue
        moments = objective.moments(0.7, 6)  # float64 moments: the model itself is tested
        for delta in (0.0, 0.01, -0.02):
            grad, hess, cut = calibration._taylor_derivatives(objective, moments, delta)
            u = np.asarray(z, "float64") - np.asarray(z, "float64").max(axis=1, keepdims=True)
            p = np.exp((0.7 + delta) * u)
            p /= p.sum(axis=1, keepdims=True)
            mean_u = (p * u).sum(axis=1)
            exact_grad = mean_u.mean() - u[np.arange(n), labels].mean()
            exact_hess = ((p * u * u).sum(axis=1) - mean_u ** 2).mean()
            scale = 1.0 + np.abs(u).max()
            bound = abs(delta * scale) ** 6 / 720 * np.exp(abs(delta) * scale) + 1e-12
            assert abs(grad - exact_grad) <= 10 * bound * scale, (n, k, delta)
            assert abs(hess - exact_hess) <= 100 * bound * scale * scale + 1e-9, (n, k, delta)


# --- issue 12 for the files of issue 13: short functions, short lines -----------------------


@pytest.mark.parametrize(
    "path", ["keras_smooth/calibration.py", "keras_smooth/metrics/calibration_metrics.py"]
)
def test_functions_are_short_and_lines_fit_100_columns(path):
    source = (ROOT / path).read_text()
    long_lines = [i + 1 for i, line in enumerate(source.splitlines()) if len(line) > 100]
    assert not long_lines, f"{path}: lines over 100 columns: {long_lines}"
    long_functions = [
        (node.name, node.end_lineno - node.lineno + 1)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > 50
    ]
    assert not long_functions, f"{path}: functions over 50 lines: {long_functions}"
