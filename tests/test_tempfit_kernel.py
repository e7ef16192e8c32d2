"""The C form of the temperature fit's pass (`keras_smooth/_moments_c.c`): built where it
can be, checked against the NumPy pass before it is used, and giving the same fits.

Its sums are checked against an extended-precision reference within the stated rounding
bound, like the NumPy pass's, in `test_tempfit_speed2.py` (the `kind` parameter), and the
end-to-end property tests there run with both passes. Here: that it is in use on a Linux
x86-64 machine with a C compiler (so a broken build is noticed, not silently slower),
that a kernel off its NumPy twin is refused with a warning, that the environment
variable turns it off, and that both passes give the same temperatures and NLLs.
"""

import importlib.util
import platform
import shutil
import sys

import numpy as np
import pytest

from keras_smooth import _temperature_model, calibration

from test_tempfit_speed2 import use_pass  # noqa: E402  (C or NumPy pass)

BUILDS_HERE = (sys.platform.startswith("linux") and platform.machine() == "x86_64"
               and shutil.which("cc") is not None)


@pytest.mark.skipif(not BUILDS_HERE, reason="the C pass is built on Linux x86-64 only")
def test_the_c_pass_is_built_and_in_use_where_it_can_be(monkeypatch):
    monkeypatch.delenv(_temperature_model.NO_KERNEL_VARIABLE, raising=False)
    monkeypatch.setattr(_temperature_model, "_KERNEL", {})
    assert _temperature_model._compiled() is not None, _temperature_model._KERNEL["why"]


def test_environment_variable_turns_the_c_pass_off(monkeypatch):
    monkeypatch.setenv(_temperature_model.NO_KERNEL_VARIABLE, "1")
    monkeypatch.setattr(_temperature_model, "_KERNEL", {})
    assert _temperature_model._compiled() is None
    assert "KERAS_SMOOTH_NUMPY_PASS" in _temperature_model._KERNEL["why"]
    rng = np.random.default_rng(3)
    z = rng.normal(size=(20, 5)).astype("float32")
    sums = _temperature_model.raw_moments(z, 0.7, 4)  # the NumPy pass, still right
    x = z.astype("float64") * 0.7
    np.testing.assert_allclose(sums[2], (np.exp(x) * x * x).sum(axis=1), rtol=1e-12)


def _numpy_kernel(z, ids, scale, order, at_one):
    """The NumPy pass in the C pass's calling form (a stand-in to perturb)."""
    sums, low, top, true = _temperature_model._numpy_pass(z, scale, order, at_one, None, ids,
                                                          np.inf)
    return sums, float(np.min(z)), true


@pytest.mark.parametrize("broken, reason", [
    (lambda s, low, t: (s * (1 + 1e-9 * (np.arange(len(s)) == 3)[:, None]), low, t),
     "moment 3 off in float32"),
    (lambda s, low, t: (s * (1 + 1e-9 * (np.arange(len(s)) == len(s) - 1)[:, None]), low, t),
     "T = 1 sums, minimum or true-class values off in float32"),
    (lambda s, low, t: (s, low - 1.0, t), "T = 1 sums, minimum or true-class values off"),
    (lambda s, low, t: (s, low, t[::-1]), "T = 1 sums, minimum or true-class values off"),
], ids=["moment", "at_one", "minimum", "true_class"])
def test_a_kernel_off_its_numpy_twin_is_refused_with_a_warning(broken, reason, monkeypatch):
    def kernel(*args):
        return broken(*_numpy_kernel(*args))

    assert _temperature_model._kernel_disagrees(_numpy_kernel) == ""  # the twin passes
    assert _temperature_model._kernel_disagrees(kernel).startswith(reason)
    if importlib.util.find_spec("keras_smooth._moments_c") is None:
        pytest.skip("the C pass is not built here")
    monkeypatch.delenv(_temperature_model.NO_KERNEL_VARIABLE, raising=False)
    monkeypatch.setattr(_temperature_model, "_kernel_disagrees", lambda k: "a reason")
    with pytest.warns(RuntimeWarning, match=r"C pass of fit_temperature is off \(a reason\)"):
        assert _temperature_model._load_kernel() == (None, "a reason")


def test_c_and_numpy_passes_give_the_same_fits(monkeypatch):
    """On the one-pass path (many rows): T, convergence and both NLLs agree between the
    passes, for float32 and float64, C-ordered, Fortran-ordered and sliced logits."""
    if _temperature_model._compiled() is None:
        pytest.skip(f"the C pass is not in use: {_temperature_model._KERNEL['why']}")
    rng = np.random.default_rng(4)
    fits = {}
    problems = []
    for case in range(12):
        n, k = int(rng.choice([8192, 9000])), int(rng.choice([2, 10, 60]))
        z = rng.normal(size=(n, k)) * float(rng.choice([1.0, 3.0])) * float(
            rng.choice([0.4, 1.0, 2.5])) + float(rng.choice([0.0, 30.0]))
        labels = np.array([rng.choice(k, p=np.exp(r - r.max()) / np.exp(r - r.max()).sum())
                           for r in z / 2.0])
        layout = ["c", "fortran", "sliced"][case % 3]
        z = z.astype(["float32", "float64"][case % 2])
        if layout == "fortran":
            z = np.asfortranarray(z)
        elif layout == "sliced":
            z = np.repeat(z, 2, axis=1)[:, ::2]  # every other column: the same values
        problems.append((z, labels))
    for kind in ("c", "numpy"):
        with monkeypatch.context() as patch:
            use_pass(kind, patch)
            fits[kind] = [calibration.fit_temperature(z, labels) for z, labels in problems]
    for c, n in zip(fits["c"], fits["numpy"]):
        assert c.converged == n.converged
        assert c.temperature == pytest.approx(n.temperature, rel=2e-6)
        assert c.nll_after == pytest.approx(n.nll_after, rel=1e-10)
        assert c.nll_before == pytest.approx(n.nll_before, rel=1e-10)
    assert sum(f.iterations == 1 for f in fits["c"]) >= 6  # mostly the one-pass path
