"""Issue 13, the faster one-pass temperature fit: the range read inside the pass, the
cheaper start, the cumulant Newton start and the fused certificate keep every promise.

`fit_temperature` no longer reads min z and max z before its float64 pass: each block
of rows is checked inside the pass (its minimum before any exp, its maximum bounded by
the log of its T = 1 row sums), and a block out of range ends the one-pass fit, leaving
the full search to fit or to refuse the logits. The references here are written from
the definitions, independently of the library: NLL(T) = mean_i [logsumexp(z_i / T) -
z_iy / T] in float64, minimised over log T by SciPy's bounded Brent search started from
a dense grid (the NLL is convex in 1/T, so unimodal in log T). Pure NumPy/SciPy.
"""

import math
import re
import warnings

import numpy as np
import pytest

from keras_smooth import _temperature_model, calibration

optimize = pytest.importorskip("scipy.optimize")

BOUNDS = (0.01, 100.0)

from test_tempfit_fast import draw_labels, judge, reference_nll  # noqa: E402  (float64 references)


def use_pass(kind, monkeypatch):
    """Make `_temperature_model` run its pass in C ("c", skipped where not built) or in
    NumPy, with the last moment as a row dot product ("numpy") or without ("numpy1", as
    on NumPy 1.26)."""
    if kind == "c":
        if _temperature_model._compiled() is None:
            pytest.skip(f"the C pass is not in use: {_temperature_model._KERNEL['why']}")
        return
    if kind == "numpy" and not hasattr(np, "vecdot"):
        pytest.skip("np.vecdot needs NumPy >= 2")
    monkeypatch.setitem(_temperature_model._KERNEL, "pass", None)
    monkeypatch.setattr(_temperature_model, "_VECDOT", kind == "numpy")


PASSES = ["c", "numpy", "numpy1"]


def reference_logsumexp(z):
    z = np.asarray(z, dtype="float64")
    top = z.max(axis=1)
    return top + np.log(np.exp(z - top[:, None]).sum(axis=1))


@pytest.fixture
def small_one_pass(monkeypatch):
    """The one-pass path from 64 rows on (start from every 4th row), in blocks of a few
    rows, so that a block out of range can sit in the middle of the pass."""
    monkeypatch.setattr(calibration, "_WARM_START_ROWS", 64)
    monkeypatch.setattr(calibration, "_WARM_START_SAMPLE", 16)
    monkeypatch.setattr(_temperature_model, "_BLOCK_ELEMENTS", 120)


def draw(rng):
    """Logits, labels, bounds near the one-pass limits: N just above the row threshold,
    |z| near 300 (below and above), one far-out or non-finite entry in a late row,
    ties, one class present, zero and constant logits."""
    n = int(rng.integers(64, 90))
    k = int(rng.choice([2, 3, 10, 40]))
    kind = rng.choice(["near_limit", "outlier", "bad", "ties", "one_class", "zero", "plain"],
                      p=[0.2, 0.2, 0.1, 0.15, 0.1, 0.05, 0.2])
    z = rng.normal(size=(n, k)) * float(rng.choice([0.5, 3.0, 20.0]))
    if kind == "near_limit":  # scaled so that max |z| is just below or just above 300
        z *= float(rng.choice([299.0, 299.99, 300.0, 300.01, 302.0])) / np.abs(z).max()
    elif kind == "outlier":  # one entry in a late row far out (either sign)
        z[int(rng.integers(n // 2, n)), int(rng.integers(k))] = float(
            rng.choice([-1, 1]) * rng.choice([250.0, 310.0, 800.0, 1e5]))
    elif kind == "bad":
        z[int(rng.integers(n // 2, n)), int(rng.integers(k))] = float(
            rng.choice([np.nan, np.inf, -np.inf]))
    elif kind == "ties":
        z = np.round(z)
    elif kind == "zero":
        z[:] = float(rng.choice([0.0, 7.0]))
    t_true = math.exp(rng.uniform(math.log(0.3), math.log(4.0)))
    labels = draw_labels(rng, np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0), t_true)
    if kind == "one_class":
        labels[:] = labels[0]
    if rng.random() < 0.5:
        z = z.astype("float32")
    bounds = BOUNDS if rng.random() < 0.8 else (0.2, 5.0)
    return z, labels.astype("int64"), bounds, kind


@pytest.mark.parametrize("kind", PASSES[:2])
def test_property_range_read_inside_the_pass(small_one_pass, monkeypatch, kind):
    """Hundreds of problems at the edges of the one-pass range against SciPy; non-finite
    logits are refused with the full path's message, naming the entry; the one-pass fit
    certifies some problems and rejects the out-of-range ones in the pass; with the pass
    in C and in NumPy."""
    use_pass(kind, monkeypatch)
    used = []
    original = calibration._one_pass_search
    monkeypatch.setattr(calibration, "_one_pass_search",
                        lambda *a: used.append(original(*a)) or used[-1])
    rng = np.random.default_rng(20261205)
    failures, kinds = [], {}
    for case in range(300):
        z, labels, bounds, kind = draw(rng)
        kinds[kind] = kinds.get(kind, 0) + 1
        if not np.isfinite(z).all():
            bad = tuple(int(i) for i in np.argwhere(~np.isfinite(z))[0])
            with pytest.raises(ValueError, match=r"`logits` must be finite, got .*"
                                                  + re.escape(str(bad))):
                calibration.fit_temperature(z, labels, bounds=bounds)
            continue
        failures += [f"case {case} ({kind}, N={len(labels)}, K={z.shape[1]}, {z.dtype}, "
                     f"max|z|={np.abs(z).max():.6g}): {e}" for e in judge(z, labels, bounds)]
    assert not failures, "\n".join(failures[:20])
    certified = [r for r in used if r is not None]
    assert len(certified) >= 60 and len(used) - len(certified) >= 30, (len(certified), len(used))
    assert min(kinds.values()) >= 10, kinds


@pytest.mark.parametrize("kind", PASSES)
def test_checked_moments_reads_the_range_or_refuses(kind, monkeypatch):
    """`checked_moments`: None exactly when some z < -limit, some row's log sum_j exp(z)
    > limit or some z is NaN (the maximum is bounded through the T = 1 row sums, so a
    row may be refused a little below the limit but never accepted above it); otherwise
    the sums of `raw_moments`, low = min z and max z <= high <= max logsumexp, silently;
    in C and in NumPy."""
    use_pass(kind, monkeypatch)
    rng = np.random.default_rng(8)
    seen = {"refused": 0, "accepted": 0}
    for _ in range(300):
        n, k = int(rng.integers(1, 60)), int(rng.choice([2, 5, 33]))
        z = rng.normal(size=(n, k)) * float(rng.choice([1.0, 30.0, 120.0]))
        if rng.random() < 0.3:
            z[int(rng.integers(n)), int(rng.integers(k))] = float(
                rng.choice([-301.0, 299.5, 305.0, 1e6, -1e6, np.nan, np.inf]))
        z = z.astype(rng.choice(["float32", "float64"]))
        limit, beta0 = float(rng.choice([300.0, 150.0, 80.0])), float(rng.uniform(0.2, 2.0))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            labels = rng.integers(0, k, n)
            got = _temperature_model.checked_moments(z, beta0, 4, limit, labels)
        z64 = np.asarray(z, dtype="float64")
        if np.isposinf(z64).any():
            lse = math.inf
        else:
            with np.errstate(all="ignore"):
                lse = float(reference_logsumexp(np.nan_to_num(z64, nan=0.0)).max())
        refuse = bool(np.isnan(z64).any()) or z64.min() < -limit or lse > limit + 1e-9
        edge = abs(lse - limit) <= 1e-9 * limit  # a row sum at the limit: either way
        if got is None:
            assert refuse or edge, (z64.min(), lse, limit)
            seen["refused"] += 1
            continue
        assert not refuse or edge, (z64.min(), lse, limit)
        sums, low, high, mean_true = got
        assert low == z64.min()
        assert mean_true == pytest.approx(z64[np.arange(n), labels].mean(), rel=1e-15, abs=1e-300)
        assert z64.max() <= high <= lse + 1e-9 * (1 + abs(lse))
        np.testing.assert_array_equal(sums, _temperature_model.raw_moments(z, beta0, 4))
        seen["accepted"] += 1
    assert min(seen.values()) >= 50, seen


@pytest.mark.parametrize("kind", PASSES[:2])
def test_checked_moments_refuses_a_bad_entry_in_any_block(kind, monkeypatch):
    """A NaN, an infinity or a value beyond the limit in any block of rows (blocks of a
    few rows here) is refused, wherever it is; the same logits without it are accepted."""
    use_pass(kind, monkeypatch)
    monkeypatch.setattr(_temperature_model, "_BLOCK_ELEMENTS", 64)
    rng = np.random.default_rng(40)
    for _ in range(60):
        n, k = int(rng.integers(10, 50)), int(rng.choice([3, 8, 20]))
        z = (rng.normal(size=(n, k)) * 3).astype(rng.choice(["float32", "float64"]))
        labels = rng.integers(0, k, n)
        assert _temperature_model.checked_moments(z, 0.8, 6, 300.0, labels) is not None
        bad = z.copy()
        bad[int(rng.integers(n)), int(rng.integers(k))] = rng.choice(
            [np.nan, np.inf, -np.inf, 400.0, -400.0])
        with np.errstate(all="ignore"):
            assert _temperature_model.checked_moments(bad, 0.8, 6, 300.0, labels) is None


def test_certificate_and_cumulant_start_hold():
    """The fused certificate (`TaylorModel.certify`) brackets the float64 derivative at
    d - h and d + h and the NLL at d within its bounds, and the cumulant polynomial of
    the gradient starts at the float64 derivatives at beta0, for random problems."""
    rng = np.random.default_rng(12)
    checked = 0
    for _ in range(150):
        n, k = int(rng.integers(1, 150)), int(rng.choice([2, 6, 50]))
        z = rng.normal(size=(n, k)) * float(rng.choice([0.5, 3.0, 9.0])) + float(
            rng.choice([0.0, 25.0]))
        z = z.astype(rng.choice(["float32", "float64"]))
        labels = rng.integers(0, k, n)
        beta0 = math.exp(rng.uniform(math.log(0.2), math.log(3.0)))
        sums, low, high, _ = _temperature_model.checked_moments(z, beta0, 6, 300.0, labels)
        z64 = np.asarray(z, dtype="float64")
        model = _temperature_model.TaylorModel(
            sums, beta0, float(z64[np.arange(n), labels].mean()), high - low,
            max(-low, high), k)
        x = beta0 * z64
        p = np.exp(x - x.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        mean = (p * x).sum(axis=1)
        exact = [float((mean - x[np.arange(n), labels]).mean()),
                 float((p * (x - mean[:, None]) ** 2).sum(axis=1).mean()),
                 float((p * (x - mean[:, None]) ** 3).sum(axis=1).mean())]
        scale = 1.0 + float(np.abs(x).max()) ** 3
        got = model.gradient_coefficients()
        np.testing.assert_allclose(got[:3], exact, rtol=1e-9, atol=1e-11 * scale)
        d, h = float(rng.uniform(-0.06, 0.06)), float(rng.choice([1e-7, 1e-4]))
        result = model.certify(d, h)
        if result is None:
            continue
        for (value, error), e in zip(result[:2], (d - h, d + h)):
            beta = beta0 * (1 + e)
            q = np.exp(beta * (z64 - z64.max(axis=1, keepdims=True)))
            q /= q.sum(axis=1, keepdims=True)
            grad = beta0 * float(((q * z64).sum(axis=1) - z64[np.arange(n), labels]).mean())
            assert abs(value - grad) <= error + 1e-13 * (1 + beta0 * np.abs(z64).max())
        value, error = result[2]
        nll = reference_nll(z64, labels, 1 / (beta0 * (1 + d)))
        assert abs(value - nll) <= error + 1e-13 * (1 + abs(nll))
        checked += 1
    assert checked >= 100, checked


LONG = np.finfo(np.longdouble).eps < np.finfo(np.float64).eps / 100  # x86's 80-bit type


@pytest.mark.skipif(not LONG, reason="needs a long double wider than float64")
def test_exp2_within_the_accuracy_the_moment_bound_assumes():
    """The moment pass takes NumPy's float64 exp2 to be within 4 ulp (8 unit roundoffs);
    checked on this machine against the extended-precision exp2 over the pass's range
    |y| <= 433 (normal results only: subnormal terms are covered separately)."""
    rng = np.random.default_rng(31)
    y = np.concatenate([rng.uniform(-433.0, 433.0, 400_000), rng.uniform(-1.0, 1.0, 100_000),
                        np.array([0.0, 1.0, -1.0, 0.5, 433.0, -433.0])])
    exact = np.exp2(y.astype(np.longdouble))
    err = np.abs(np.exp2(y).astype(np.longdouble) - exact) / exact
    assert float(err.max()) <= 8 * np.finfo(np.float64).eps / 2, float(err.max())



@pytest.mark.skipif(not LONG, reason="needs a long double wider than float64")
@pytest.mark.parametrize("kind", PASSES)
def test_raw_moments_within_their_stated_rounding_bound(kind, monkeypatch):
    """Each raw moment M_m = sum_j e^x x^m (x = beta0 z) of the pass, now summed as
    (ln 2)^m sum_j 2^y y^m, is within (3 X + k + 5 P + 10) u of sum_j e^x |x|^m of the
    extended-precision definition (the bound of `_temperature_model`'s docstring), and
    the T = 1 row sums within (k + 8) u, for random problems: N = 1, K = 2, ties,
    zero, large and offset logits, float32 and float64, orders 4 and 6; for the C pass
    and the NumPy pass (with and without a row dot product for the last moment)."""
    use_pass(kind, monkeypatch)
    rng = np.random.default_rng(32)
    u = np.finfo(np.float64).eps / 2
    worst = 0.0
    for _ in range(300):
        n, k = int(rng.choice([1, 3, 40])), int(rng.choice([2, 7, 100]))
        kind = rng.choice(["plain", "ties", "zero", "large", "offset"])
        z = rng.normal(size=(n, k)) * float(rng.choice([0.3, 3.0, 20.0]))
        if kind == "ties":
            z = np.round(z)
        elif kind == "zero":
            z[:] = 0.0
        elif kind == "large":
            z *= 250.0 / max(float(np.abs(z).max()), 1e-12)
        elif kind == "offset":
            z += float(rng.choice([-150.0, 60.0]))
        z = z.astype(rng.choice(["float32", "float64"]))
        beta0 = float(np.exp(rng.uniform(np.log(0.2), np.log(1.2))))
        order = int(rng.choice([4, 6]))
        sums = _temperature_model.raw_moments(z, beta0, order)
        zl = np.asarray(z, dtype=np.float64).astype(np.longdouble)
        x = zl * np.longdouble(beta0)
        e = np.exp(x)
        big_x = float(np.abs(x).max())
        for m in range(order + 1):
            exact = (e * x ** m).sum(axis=1)
            scale = (e * np.abs(x) ** m).sum(axis=1)
            bound = (3 * big_x + k + 5 * order + 10) * u * scale
            err = np.abs(sums[m].astype(np.longdouble) - exact)
            assert np.all(err <= bound), (m, kind, float((err / scale).max()))
            if np.any(bound > 0):
                worst = max(worst, float((err[bound > 0] / bound[bound > 0]).max()))
        at_one = np.exp(zl).sum(axis=1)
        err = np.abs(sums[-1].astype(np.longdouble) - at_one) / at_one
        assert np.all(err <= (k + 8) * u), float(err.max())
    assert worst > 1e-3  # the bound is not vacuous here: errors reach a visible fraction of it
