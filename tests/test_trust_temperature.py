"""`fit_temperature` never reports a wrong temperature as converged.

The reference is written from the definition, independently of the library:
NLL(T) = mean_i [logsumexp(z_i / T) - z_iy / T] in float64, minimised over
log T in [log T_min, log T_max] by SciPy's bounded Brent search, started from
the best point of a dense grid and refined around it. The NLL is convex in
1/T, hence unimodal in log T, so this finds the float64 optimum.
"""

import warnings

import numpy as np
import pytest

from keras_smooth import calibration

optimize = pytest.importorskip("scipy.optimize")

DEFAULT_BOUNDS = (0.01, 100.0)


def softmax(q):
    e = np.exp(q - q.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def reference_nll(z, labels, temperature):
    """Mean NLL of softmax(z / T), float64, from the definition."""
    s = np.asarray(z, dtype="float64") / temperature
    s = s - s.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(s).sum(axis=1))
    return float((log_norm - s[np.arange(len(labels)), labels]).mean())


def reference_optimum(z, labels, bounds):
    """(T, NLL) of the float64 minimum over `bounds`: grid, then SciPy bounded Brent."""
    z = np.asarray(z, dtype="float64")
    f = lambda u: reference_nll(z, labels, np.exp(u))  # noqa: E731
    lo, hi = np.log(bounds[0]), np.log(bounds[1])
    grid = np.linspace(lo, hi, 61)
    values = [f(u) for u in grid]
    i = int(np.argmin(values))
    candidates = [(values[i], grid[i])]
    whole = optimize.minimize_scalar(f, bounds=(lo, hi), method="bounded", options={"xatol": 1e-10})
    candidates.append((float(whole.fun), float(whole.x)))
    near = (grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)])
    local = optimize.minimize_scalar(f, bounds=near, method="bounded", options={"xatol": 1e-12})
    candidates.append((float(local.fun), float(local.x)))
    value, u = min(candidates)
    return float(np.exp(u)), value


def random_problem(rng):
    """Logits, labels and bounds of the kinds that broke the old search."""
    n = 1 if rng.random() < 0.05 else int(np.exp(rng.uniform(0, np.log(1000))))
    k = int(rng.integers(2, 41))
    scale = float(rng.choice([0.0, rng.uniform(0, 3), rng.uniform(0, 10), rng.uniform(0, 60)],
                             p=[0.03, 0.37, 0.3, 0.3]))
    z = rng.normal(size=(n, k)) * scale
    if rng.random() < 0.3:  # rounded logits: ties, constant rows
        z = np.round(z * rng.choice([0.5, 1.0, 2.0])) / 2
    if rng.random() < 0.2:  # one dominant class
        z[:, int(rng.integers(k))] += rng.uniform(0, 3 * scale + 5)
    kind = rng.choice(["model", "random", "correct"], p=[0.6, 0.3, 0.1])
    if kind == "model":
        t_true = np.exp(rng.uniform(np.log(0.1), np.log(10)))
        p = softmax(z / t_true)
        labels = (rng.random((n, 1)) > p.cumsum(axis=1)).sum(axis=1).clip(0, k - 1)
    elif kind == "random":
        labels = rng.integers(0, k, size=n)
    else:  # all correct, often with a margin: the optimum is at T_min
        labels = z.argmax(axis=1)
    if rng.random() < 0.3:
        z = z.astype("float32")
    bounds = DEFAULT_BOUNDS
    if rng.random() < 0.15:
        t_lo = np.exp(rng.uniform(np.log(0.05), np.log(2)))
        bounds = (t_lo, t_lo * np.exp(rng.uniform(0.5, 4)))
    return z, labels.astype("int64"), bounds


def fit_quietly(z, labels, bounds):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = calibration.fit_temperature(z, labels, bounds=bounds)
    return fit, [str(w.message) for w in caught]


def check_fit(z, labels, bounds):
    """Problems with one fit, as a list of strings (empty when it is right)."""
    fit, caught = fit_quietly(z, labels, bounds)
    t_opt, nll_opt = reference_optimum(z, labels, bounds)
    t, nll_at_t = float(fit), reference_nll(z, labels, float(fit))
    errors = []
    close_to_opt = nll_at_t <= nll_opt * (1 + 1e-7) + 1e-12
    if fit.converged and not close_to_opt:
        errors.append(f"converged at T={t:.6g} (NLL {nll_at_t:.9g}) but optimum T={t_opt:.6g} "
                      f"(NLL {nll_opt:.9g})")
    if not fit.converged and not caught:
        errors.append("converged=False without a warning")
    if not bounds[0] * (1 - 1e-12) <= t <= bounds[1] * (1 + 1e-12):
        errors.append(f"T={t} outside {bounds}")
    if abs(fit.nll_after - nll_at_t) > 1e-9 * max(nll_at_t, 1e-3):
        errors.append(f"nll_after={fit.nll_after} but the NLL at T is {nll_at_t}")
    if bounds[0] <= 1.0 <= bounds[1] and fit.nll_after > fit.nll_before:
        errors.append(f"nll_after={fit.nll_after} > nll_before={fit.nll_before}")
    flat = reference_nll(z, labels, bounds[0]) == reference_nll(z, labels, bounds[1])
    interior = bounds[0] * 1.05 < t_opt < bounds[1] / 1.05
    if interior and not flat and not (fit.converged and close_to_opt):
        errors.append(f"interior optimum T={t_opt:.6g} not found: {fit.message}")
    # T itself is pinned where a 1e-4 relative change of T moves the NLL measurably
    rise = min(reference_nll(z, labels, t_opt * (1 + s * 1e-4)) for s in (-1, 1)) - nll_opt
    if interior and rise > 1e-11 * nll_opt + 1e-14 and abs(t / t_opt - 1) > 1e-4:
        errors.append(f"T={t:.8g} but SciPy's optimum is T={t_opt:.8g}")
    return errors


def issue_repro():
    r = np.random.default_rng(175)
    z = r.normal(size=(150, 3)) * 1.5
    y = np.array([r.choice(3, p=softmax(q)) for q in z])
    return z, y


def test_issue_repro_finds_the_optimum_not_the_bisection_point():
    z, y = issue_repro()
    t_opt, nll_opt = reference_optimum(z, y, DEFAULT_BOUNDS)
    assert t_opt == pytest.approx(0.9137, abs=1e-3)
    fit = calibration.fit_temperature(z, y)
    assert fit.converged
    np.testing.assert_allclose(float(fit), t_opt, rtol=1e-6)
    np.testing.assert_allclose(fit.nll_after, nll_opt, rtol=1e-10)
    assert fit.nll_after <= fit.nll_before


def test_property_never_converged_and_wrong():
    rng = np.random.default_rng(20261203)
    failures = []
    for case in range(400):
        z, labels, bounds = random_problem(rng)
        failures += [f"case {case} (N={len(labels)}, K={z.shape[1]}): {e}"
                     for e in check_fit(z, labels, bounds)]
    assert not failures, "\n".join(failures[:20])
