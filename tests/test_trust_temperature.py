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
    """The fit and the messages of its warnings; NumPy must not warn (overflow, NaN)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = calibration.fit_temperature(z, labels, bounds=bounds)
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)], caught
    return fit, [str(w.message) for w in caught if issubclass(w.category, UserWarning)]


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
    for end, name, inward in ((0, "T_min", 1 + 1e-6), (1, "T_max", 1 - 1e-6)):
        at_end = reference_nll(z, labels, bounds[end])
        rise = reference_nll(z, labels, bounds[end] * inward) - at_end
        if at_end <= nll_opt and rise > 1e-12 * nll_opt + 1e-15:  # falls measurably to the bound
            if fit.converged or not any(f"{name}=" in m for m in caught):
                errors.append(f"optimum at {name} but converged={fit.converged}, {caught}")
            if abs(t / bounds[end] - 1) > 1e-12:
                errors.append(f"optimum at {name}={bounds[end]} but T={t}")
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


@pytest.mark.parametrize("small_blocks", [False, True])
def test_property_never_converged_and_wrong(monkeypatch, small_blocks):
    """Hundreds of random problems, degenerate ones included, against SciPy.

    With `small_blocks` the rows are processed in many blocks and the warm
    start from a row sample is used from 64 rows on, so the paths that
    otherwise need N >= 8192 are exercised on the same kind of problems.
    """
    if small_blocks:
        monkeypatch.setattr(calibration, "_BLOCK_ELEMENTS", 100, raising=False)
        monkeypatch.setattr(calibration, "_WARM_START_ROWS", 64, raising=False)
        monkeypatch.setattr(calibration, "_WARM_START_SAMPLE", 16, raising=False)
    rng = np.random.default_rng(20261203 + small_blocks)
    failures = []
    for case in range(400 if not small_blocks else 200):
        z, labels, bounds = random_problem(rng)
        failures += [f"case {case} (N={len(labels)}, K={z.shape[1]}): {e}"
                     for e in check_fit(z, labels, bounds)]
    assert not failures, "\n".join(failures[:20])


def test_large_validation_set_matches_scipy():
    """N = 20000 takes the warm start from a row sample with the real thresholds."""
    rng = np.random.default_rng(7)
    z = rng.normal(size=(20000, 10)) * 4.0
    p = softmax(z / 3.0)
    labels = (rng.random((20000, 1)) > p.cumsum(axis=1)).sum(axis=1).clip(0, 9)
    z32 = z.astype("float32")
    fit = calibration.fit_temperature(z32, labels)
    t_opt, nll_opt = reference_optimum(z32, labels, DEFAULT_BOUNDS)
    assert fit.converged
    np.testing.assert_allclose(float(fit), t_opt, rtol=1e-6)
    np.testing.assert_allclose(fit.nll_after, nll_opt, rtol=1e-10)


def test_optimum_below_t_min_is_reported_with_the_bound():
    z = np.array([[4.0, 0.0, -1.0], [0.0, 3.0, 1.0], [-2.0, 0.0, 5.0]])
    with pytest.warns(UserWarning, match=r"optimum is below T_min=0.05.*Lower `bounds\[0\]`"):
        fit = calibration.fit_temperature(z, [0, 1, 2], bounds=(0.05, 10.0))
    assert not fit.converged
    assert float(fit) == pytest.approx(0.05, rel=1e-12)
    assert fit.nll_after == pytest.approx(reference_nll(z, [0, 1, 2], 0.05), rel=1e-12)


def test_optimum_above_t_max_is_reported_with_the_bound():
    z = np.array([[4.0, 0.0], [0.0, 3.0], [5.0, 0.0]])
    with pytest.warns(UserWarning, match=r"optimum is above T_max=3.0.*Raise `bounds\[1\]`"):
        fit = calibration.fit_temperature(z, [1, 0, 1], bounds=(0.5, 3.0))
    assert not fit.converged and float(fit) == pytest.approx(3.0, rel=1e-12)
    assert fit.nll_after < fit.nll_before


def test_huge_logits_give_a_finite_answer_at_the_bound():
    z = np.array([[1e200, 0.0, -1e200], [0.0, 1e200, 3.0]])
    with pytest.warns(UserWarning, match=r"T_max=100.0"):
        fit = calibration.fit_temperature(z, [0, 2])
    assert not fit.converged and float(fit) == pytest.approx(100.0)
    assert np.isfinite(fit.nll_after) and fit.nll_after < fit.nll_before


def test_constant_logits_return_t_one_and_say_what_to_do():
    z = np.tile([[2.0, 2.0, 2.0]], (5, 1))
    with pytest.warns(UserWarning, match=r"constant.*does not depend on T.*logits"):
        fit = calibration.fit_temperature(z, [0, 1, 2, 0, 1])
    assert float(fit) == 1.0 and fit.converged
    assert fit.nll_before == fit.nll_after == pytest.approx(np.log(3.0))


def test_single_sample_and_binary_logits_match_scipy():
    for z, y in [([[3.0, 1.0, -5.0]], [1]), (np.array([2.0, -1.0, 0.5, 3.0]), [1, 0, 0, 1])]:
        fit = calibration.fit_temperature(z, y)
        z2 = np.asarray(z, dtype="float64")
        z2 = z2 if z2.ndim == 2 else np.stack([np.zeros_like(z2), z2], axis=1)
        t_opt, _ = reference_optimum(z2, np.asarray(y), DEFAULT_BOUNDS)
        assert fit.converged
        np.testing.assert_allclose(float(fit), t_opt, rtol=1e-6)


def test_derivatives_match_finite_differences():
    rng = np.random.default_rng(3)
    z, y = rng.normal(size=(50, 6)) * 3, rng.integers(0, 6, 50)
    f = lambda b: reference_nll(z, y, 1.0 / b)  # noqa: E731
    for beta in (0.05, 0.7, 4.0):
        value, grad, hess = calibration._nll_and_derivatives(beta, z, y)
        h = 1e-4 * beta
        np.testing.assert_allclose(value, f(beta), rtol=1e-12)
        slope = (f(beta + h) - f(beta - h)) / (2 * h)
        np.testing.assert_allclose(grad, slope, rtol=1e-6, atol=1e-9)
        second = (f(beta + h) - 2 * f(beta) + f(beta - h)) / h**2
        np.testing.assert_allclose(hess, second, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize(
    "logits,labels,match",
    [
        (np.zeros((0, 3)), [], r"`logits` is empty"),
        ([[np.nan, 1.0]], [0], r"`logits` must be finite, got nan"),
        ([[1.0, -np.inf]], [0], r"`logits` must be finite, got -inf"),
        (np.zeros((2, 2, 2)), [0, 1], r"`logits` must be real with shape \(N, K\), \(N, 1\)"),
        ([[1.0, 0.0]], [2], r"`labels` must be class ids in \[0, 2\), got 2"),
        ([[1.0, 0.0]], [-1], r"`labels` must be class ids in \[0, 2\), got -1"),
        ([[1.0, 0.0]], [0, 1], r"`labels` has 2 rows but `logits` has 1"),
        ([[1e308, -1e308]], [0], r"`logits` within a row differ by more than the float64"),
    ],
)
def test_bad_input_is_named(logits, labels, match):
    with pytest.raises(ValueError, match=match):
        calibration.fit_temperature(logits, labels)


def test_binary_logits_of_shape_n_1_fit_as_shape_n():
    rng = np.random.default_rng(4)
    z = rng.normal(size=300) * 4
    y = (rng.random(300) < 1 / (1 + np.exp(-z / 2))).astype(int)   # twice over-confident
    flat = calibration.fit_temperature(z, y)
    column = calibration.fit_temperature(z[:, None], y[:, None])
    assert column.converged and column.temperature == pytest.approx(flat.temperature, rel=1e-12)
    # the binary NLL of sigmoid(z / T), minimised by SciPy, is the reference
    from scipy.optimize import minimize_scalar

    def nll(log_t):
        s = z / np.exp(log_t)
        return np.mean(np.logaddexp(0, s) - y * s)

    best = minimize_scalar(nll, bounds=(np.log(0.01), np.log(100)), method="bounded",
                           options={"xatol": 1e-10})
    assert column.temperature == pytest.approx(np.exp(best.x), rel=1e-4)


def test_bad_arguments_are_named():
    with pytest.raises(TypeError, match=r"`logits` must be an array of real numbers"):
        calibration.fit_temperature([["a", "b"]], [0])
    with pytest.raises(ValueError, match=r"`bounds` must be a pair"):
        calibration.fit_temperature([[1.0, 0.0]], [0], bounds=(1.0,))
    with pytest.raises(ValueError, match=r"`max_iterations` must be a positive integer"):
        calibration.fit_temperature([[1.0, 0.0]], [0], max_iterations=0)


def test_running_out_of_iterations_warns_and_never_rises():
    z, y = issue_repro()
    with pytest.warns(UserWarning, match=r"No convergence in 1 iterations"):
        fit = calibration.fit_temperature(z * 5, y, max_iterations=1)
    assert not fit.converged and fit.nll_after <= fit.nll_before


def test_apply_temperature_is_never_nan_for_finite_input_and_reaches_the_limits(rng):
    """softmax(z / T) for any finite z and T > 0: SciPy's softmax where z / T is finite,
    the limits (the row maximum, ties split evenly; uniform) where it is not."""
    from scipy.special import softmax

    seen = {"scipy": 0, "limit": 0}
    for _ in range(300):
        n, k = int(rng.integers(1, 6)), int(rng.integers(2, 5))  # (N, 1) is binary: 2 columns
        z = rng.normal(size=(n, k)) * float(rng.choice([1e-3, 1.0, 1e3, 1e300]))
        if rng.random() < 0.3:
            z = np.round(z)  # ties
        t = float(rng.choice([1e-310, 1e-200, 1e-10, 0.5, 1.0, 1e10, 1e300]))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            got = calibration.apply_temperature(z, t)
        assert got.shape == (n, k) and np.all(np.isfinite(got)), (z, t, got)
        np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-12)
        gaps = z.max(axis=1, keepdims=True) - z
        with np.errstate(over="ignore"):
            scaled, direct = gaps / t, z / t
        if np.all(np.isfinite(direct)) and np.all(scaled < 700):
            np.testing.assert_allclose(got, softmax(direct, axis=1), rtol=1e-9, atol=1e-300)
            seen["scipy"] += 1
        elif np.all((gaps == 0) | (scaled > 800)):  # T -> 0: the maxima share the mass
            top = gaps == 0
            np.testing.assert_allclose(got, top / top.sum(axis=1, keepdims=True), atol=1e-300)
            seen["limit"] += 1
    assert min(seen.values()) >= 30, seen
    span = np.array([[1e308, -1e308]])  # z - max z overflows; halved, it does not
    np.testing.assert_allclose(calibration.apply_temperature(span, 1e307),
                               softmax(span / 1e307, axis=1), rtol=1e-12)
    labels = np.array([0, 1])
    onehot = np.eye(2)[labels]
    z = np.array([[2.0, 0.0], [0.0, 1.0]])
    assert calibration.evaluate(onehot, z) == calibration.evaluate(labels, z)
    with pytest.raises(ValueError, match=r"`predictions` must have shape .* got \(2, 0\)"):
        calibration.apply_temperature(np.zeros((2, 0)), 1.0)


@pytest.mark.parametrize("case", ["separable", "tiny", "over_confident", "under_confident",
                                  "odd_bound"])
def test_the_message_names_the_temperature_returned(rng, case):
    """A warning's sentence on what is returned agrees with `fit.temperature` (before, a
    flat NLL in float64 returned T = 1 while the message said T_min)."""
    z = rng.normal(size=(300, 4)) * 3.0
    labels = np.array([rng.choice(4, p=row) for row in np.exp(z / 2) / np.exp(z / 2).sum(
        axis=1, keepdims=True)])
    logits = {"separable": np.eye(3)[np.arange(30) % 3] * 50.0, "tiny": z * 1e-30,
              "over_confident": z * 500.0, "under_confident": z * 1e-4,
              "odd_bound": 0.05 * np.eye(3)[np.arange(200) % 3]}[case]
    if case in ("separable", "odd_bound"):
        labels = np.arange(len(logits)) % 3
    # 1 / (1 / t_min) is one ulp off t_min for this bound: the fit must still say T_min
    bounds = (0.012040201005025125, 100.0) if case == "odd_bound" else (0.01, 100.0)
    with pytest.warns(UserWarning) as caught:
        fit = calibration.fit_temperature(logits, labels, bounds=bounds)
    assert not fit.converged and str(caught[-1].message) == fit.message
    named = {"T_min is returned": bounds[0], "T_max is returned": bounds[1]}
    said = [t for text, t in named.items() if text in fit.message]
    if said:
        assert said == [fit.temperature], fit
    else:  # "T = x is returned: the NLL ... falls no further there": check that it does not
        number = fit.message.split("T = ", 1)[1].split(" is returned", 1)[0]
        assert float(number) == pytest.approx(fit.temperature, rel=1e-5), fit
        t = fit.temperature
        below = [max(t * f, bounds[0]) for f in (0.5, 0.9)]
        assert all(reference_nll(logits, labels, b) >= fit.nll_after for b in below), fit
    if case == "odd_bound":
        assert said == [bounds[0]], fit
