"""Issue 13: the one-pass temperature fit is exact, and `converged` is a kept promise.

`fit_temperature` on many rows of moderate logits takes one float64 pass of per-row
moments at a start from a row sample and certifies the minimiser of a Taylor model with
rigorous error bounds (`keras_smooth._temperature_model`), falling back to the full
search when the certificate fails. The reference here is written from the definition,
independently of the library: NLL(T) = mean_i [logsumexp(z_i / T) - z_iy / T] in
float64, minimised over log T in [log T_min, log T_max] by SciPy's bounded Brent search
started from a dense grid. The NLL is convex in 1/T, hence unimodal in log T.

Small problems reach the one-pass path by lowering its row threshold (as
tests/test_trust_temperature.py does for the warm start). Pure NumPy/SciPy.
"""

import warnings

import numpy as np
import pytest

from keras_smooth import _temperature_model, calibration

optimize = pytest.importorskip("scipy.optimize")

BOUNDS = (0.01, 100.0)


def reference_nll(z, labels, t):
    s = np.asarray(z, dtype="float64") / t
    s = s - s.max(axis=1, keepdims=True)
    return float((np.log(np.exp(s).sum(axis=1)) - s[np.arange(len(labels)), labels]).mean())


def reference_optimum(z, labels, bounds):
    """(T, NLL) of the float64 minimum over `bounds`: a grid, then bounded Brent near it."""
    f = lambda u: reference_nll(z, labels, np.exp(u))  # noqa: E731
    grid = np.linspace(np.log(bounds[0]), np.log(bounds[1]), 41)
    values = [f(u) for u in grid]
    i = int(np.argmin(values))
    near = (grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)])
    local = optimize.minimize_scalar(f, bounds=near, method="bounded", options={"xatol": 1e-11})
    value, u = min([(values[i], grid[i]), (float(local.fun), float(local.x))])
    return float(np.exp(u)), value


def draw_labels(rng, z, t_true):
    """Labels drawn from softmax(z / t_true), row by row (z finite)."""
    q = np.exp((z - z.max(axis=1, keepdims=True)) / t_true)
    q /= q.sum(axis=1, keepdims=True)
    return (rng.random((len(z), 1)) > q.cumsum(axis=1)).sum(axis=1).clip(0, z.shape[1] - 1)


def draw(rng):
    """Logits, labels, bounds: moderate and degenerate kinds (ties, one class present,
    zero / constant / huge logits, all-correct separable rows, N = 1)."""
    n = 1 if rng.random() < 0.05 else int(rng.integers(2, 300))
    k = int(rng.choice([2, 3, 7, 30]))
    scale = float(rng.choice([0.0, 0.05, 1.0, 3.0, 10.0, 40.0, 400.0],
                             p=[0.04, 0.06, 0.25, 0.3, 0.2, 0.1, 0.05]))
    z = rng.normal(size=(n, k)) * scale + rng.choice([0.0, 0.0, 50.0])  # a common offset
    if rng.random() < 0.25:
        z = np.round(z)  # ties, constant rows
    kind = rng.choice(["model", "random", "correct", "one_class"], p=[0.6, 0.15, 0.15, 0.1])
    if kind == "correct":
        labels = z.argmax(axis=1)
    elif kind == "random":
        labels = rng.integers(0, k, n)
    else:
        labels = draw_labels(rng, z, np.exp(rng.uniform(np.log(0.2), np.log(5.0))))
        if kind == "one_class":
            labels[:] = labels[0]
    if rng.random() < 0.5:
        z = z.astype("float32")
    bounds = BOUNDS
    if rng.random() < 0.15:
        lo = float(np.exp(rng.uniform(np.log(0.05), np.log(2.0))))
        bounds = (lo, lo * float(np.exp(rng.uniform(0.5, 3.0))))
    return z, labels.astype("int64"), bounds


def judge(z, labels, bounds):
    """Problems with one fit against the reference, as a list of strings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = calibration.fit_temperature(z, labels, bounds=bounds)
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)], caught
    t_opt, nll_opt = reference_optimum(z, labels, bounds)
    t = float(fit)
    nll_t = reference_nll(z, labels, t)
    errors = []
    if abs(fit.nll_after - nll_t) > 1e-10 * abs(nll_t) + 1e-14:
        errors.append(f"nll_after {fit.nll_after!r} but the NLL at T is {nll_t!r}")
    nll_one = reference_nll(z, labels, 1.0)
    if abs(fit.nll_before - nll_one) > 1e-10 * abs(nll_one) + 1e-14:
        errors.append(f"nll_before {fit.nll_before!r} but the NLL at T = 1 is {nll_one!r}")
    # every T optimal (constant rows)? Else: is the reference minimum at a bound?
    ends = [reference_nll(z, labels, b) for b in (bounds[0], np.sqrt(bounds[0] * bounds[1]),
                                                  bounds[1])]
    flat = max(ends) - min(ends) <= 1e-15 * (1 + abs(nll_opt))
    at_bound = not flat and any(abs(np.log(t_opt / b)) < 1e-3 for b in bounds)
    pinned = min(reference_nll(z, labels, t_opt * (1 + s * 1e-4)) for s in (-1, 1)) - nll_opt
    matches = nll_t <= nll_opt * (1 + 1e-9) + 1e-12 and (
        pinned <= 1e-11 * nll_opt + 1e-14 or abs(t / t_opt - 1) <= 1e-4)
    agrees = matches and not at_bound
    if fit.converged != agrees:
        errors.append(f"converged={fit.converged} but the reference agrees={agrees} "
                      f"(T={t:.8g}, SciPy T={t_opt:.8g}, at a bound: {at_bound}): {fit.message}")
    if not fit.converged and not any(issubclass(w.category, UserWarning) for w in caught):
        errors.append("converged=False without a warning")
    return errors


@pytest.fixture
def one_pass_for_small_problems(monkeypatch):
    """The one-pass path from 64 rows on, with a start from every 4th row."""
    monkeypatch.setattr(calibration, "_WARM_START_ROWS", 64)
    monkeypatch.setattr(calibration, "_WARM_START_SAMPLE", 16)


def test_property_one_pass_fit_matches_scipy_and_converged_is_kept(one_pass_for_small_problems,
                                                                     monkeypatch):
    """Hundreds of random problems; `converged` is True exactly when SciPy agrees."""
    used = []
    original = calibration._one_pass_search
    monkeypatch.setattr(calibration, "_one_pass_search",
                        lambda *a: used.append(original(*a)) or used[-1])
    rng = np.random.default_rng(20261204)
    failures = []
    for case in range(300):
        z, labels, bounds = draw(rng)
        failures += [f"case {case} (N={len(labels)}, K={z.shape[1]}, {z.dtype}): {e}"
                     for e in judge(z, labels, bounds)]
    assert not failures, "\n".join(failures[:20])
    # the one-pass path itself was exercised (not only the fallback), with both passes
    passes = [r["iterations"] for r in used if r is not None]
    assert len(passes) >= 60 and 2 in passes, (len(passes), sorted(set(passes)))


def test_a_start_far_off_still_gives_the_optimum(monkeypatch):
    """The start from the row sample moved by a relative offset: one pass, a second pass
    or the full search -- each the same optimum, on 10,000 x 100 float32 logits."""
    rng = np.random.default_rng(3)
    z = (rng.normal(size=(10000, 100)) * 3.0).astype("float32")
    q = np.exp(z - z.max(axis=1, keepdims=True))
    q /= q.sum(axis=1, keepdims=True)
    labels = (rng.random((10000, 1)) > q.cumsum(axis=1)).sum(axis=1).clip(0, 99)
    z = (z * 2.5).astype("float32")
    t_opt, _ = reference_optimum(z, labels, BOUNDS)
    nll_one = reference_nll(z, labels, 1.0)
    start, search, paths = calibration._sample_start, calibration._one_pass_search, []
    for offset in (0.0, 0.04, -0.1, 0.3, -0.6):
        monkeypatch.setattr(calibration, "_sample_start", lambda *a: start(*a) * (1 + offset))
        monkeypatch.setattr(calibration, "_one_pass_search",
                            lambda *a: paths.append(search(*a)) or paths[-1])
        fit = calibration.fit_temperature(z, labels)
        assert fit.converged, offset
        assert float(fit) == pytest.approx(t_opt, rel=1e-6), offset
        assert fit.nll_after == pytest.approx(reference_nll(z, labels, float(fit)), rel=1e-10)
        assert fit.nll_before == pytest.approx(nll_one, rel=1e-10)
    used = [None if r is None else r["iterations"] for r in paths]
    assert {1, 2, None} <= set(used), used  # every path was taken


def test_taylor_model_error_bounds_hold():
    """The model's derivative and value at beta0 (1 + d) are within their stated error
    bounds of the float64 definitions, for random problems, starts and d."""
    rng = np.random.default_rng(11)
    checked = 0
    for _ in range(150):
        n, k = int(rng.integers(1, 200)), int(rng.choice([2, 5, 40]))
        z = rng.normal(size=(n, k)) * rng.choice([0.3, 2.0, 8.0]) + rng.choice([0.0, 20.0])
        z = z.astype(rng.choice(["float32", "float64"]))
        labels = rng.integers(0, k, n)
        beta0 = float(np.exp(rng.uniform(np.log(0.2), np.log(5.0))))
        order = int(rng.choice([_temperature_model.FIRST_ORDER, _temperature_model.SECOND_ORDER]))
        sums = _temperature_model.raw_moments(z, beta0, order)
        z64 = np.asarray(z, "float64")
        model = _temperature_model.TaylorModel(
            sums, beta0, float(z64[np.arange(n), labels].mean()), float(z64.max() - z64.min()),
            float(np.abs(z64).max()), k)
        for d in rng.uniform(-0.08, 0.08, size=3):
            beta = beta0 * (1 + d)
            p = np.exp(beta * (z64 - z64.max(axis=1, keepdims=True)))
            p /= p.sum(axis=1, keepdims=True)
            exact_grad = beta0 * float(((p * z64).sum(axis=1) - z64[np.arange(n), labels]).mean())
            got = model.certified_gradient(d)
            if got is not None:
                slack = 1e-13 * (1 + beta0 * float(np.abs(z64).max()))  # the reference's rounding
                assert abs(got[0] - exact_grad) <= got[1] + slack, (got, exact_grad)
                checked += 1
            got = model.value(d)
            if got is not None:
                exact = reference_nll(z64, labels, 1 / beta)
                assert abs(got[0] - exact) <= got[1] + 1e-13 * (1 + abs(exact)), (got, exact)
    assert checked > 200


def test_one_pass_nll_at_t_one_is_exact_for_a_single_row_and_huge_k():
    """N = 1 with K = 5000 and a common offset: the NLL at T = 1 and after the fit."""
    rng = np.random.default_rng(2)
    z = (rng.normal(size=(1, 5000)) * 4 + 30).astype("float32")
    for label in (0, int(z.argmax())):
        errors = judge(z, np.array([label]), BOUNDS)
        assert not errors, errors
