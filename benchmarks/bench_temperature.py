"""Time `fit_temperature` against SciPy's bounded Brent search, in the same run.

N x K float32 logits are drawn from a fixed seed (Gaussian, scale 3), labels
are drawn from their softmax, and the logits are then multiplied by 2.5, so
the optimum is T = 2.5 up to sampling. Both methods start from the float32
array:

* ours: `keras_smooth.calibration.fit_temperature(logits, labels)`, with its pass in C
  where the optional extension is built, and again with the NumPy pass (each after a
  SciPy run, so both start with the same cold caches).
* SciPy: `scipy.optimize.minimize_scalar(method="bounded")` on log T in
  [log 0.01, log 100] with `xatol=1e-6`, minimising the float64 NLL written
  from the definition (max-shifted log-sum-exp).

Each is run `repeats` times, alternating; the median wall time and the
median CPU time of the thread (the measure that does not count waiting for a
shared CPU) are reported with the ratios ours / SciPy and the relative
difference of the two temperatures.

Run alone, this script can flatter `fit_temperature`: SciPy's reference then
page-faults its 8 MB temporaries on every evaluation (seen on an AMD EPYC:
62-88 ms instead of 35-39 ms). The ratio of record is the one printed by
`calibration_metrics.py --ratios-only`, where the reference runs without them.

    python benchmarks/bench_temperature.py [--n 10000] [--k 100] [--repeats 15]

Needs SciPy (a test extra).
"""

import argparse
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this checkout

import numpy as np  # noqa: E402


def make_problem(n, k, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, k)).astype("float32") * 3.0
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    labels = np.minimum((rng.random((n, 1)) > probs.cumsum(axis=1)).sum(axis=1), k - 1)
    return (logits * 2.5).astype("float32"), labels.astype("int64")


def scipy_temperature(logits, labels, bounds=(0.01, 100.0), xatol=1e-6):
    """T from SciPy's bounded Brent search on log T over the float64 NLL."""
    from scipy import optimize

    z = logits.astype("float64")
    rows = np.arange(len(labels))

    def nll(log_t):
        s = z / np.exp(log_t)
        s -= s.max(axis=1, keepdims=True)
        return float((np.log(np.exp(s).sum(axis=1)) - s[rows, labels]).mean())

    res = optimize.minimize_scalar(
        nll, bounds=(np.log(bounds[0]), np.log(bounds[1])), method="bounded",
        options={"xatol": xatol},
    )
    return float(np.exp(res.x)), int(res.nfev)


def _timed(function):
    """(result, wall seconds, CPU seconds of this thread)."""
    wall, cpu = time.perf_counter(), time.thread_time()
    result = function()
    return result, time.perf_counter() - wall, time.thread_time() - cpu


def bench_fit_temperature(n=10000, k=100, repeats=15):
    """Median wall and CPU seconds of `fit_temperature` and of SciPy, ratios, agreement.

    CPU time (`time.thread_time`; NumPy runs these on one thread) is reported
    beside wall time because wall time counts waiting for a shared CPU.
    """
    from keras_smooth import _temperature_model
    from keras_smooth.calibration import fit_temperature

    logits, labels = make_problem(n, k)
    kernel = _temperature_model._compiled()  # the C pass, or None (then both are NumPy)
    times = {"ours": [], "scipy": [], "numpy_pass": []}
    for _ in range(repeats):
        fit, wall, cpu = _timed(lambda: fit_temperature(logits, labels))
        times["ours"].append((wall, cpu))
        (t_scipy, evaluations), wall, cpu = _timed(lambda: scipy_temperature(logits, labels))
        times["scipy"].append((wall, cpu))
        _temperature_model._KERNEL["pass"] = None  # the NumPy pass, for comparison
        try:
            _, wall, cpu = _timed(lambda: fit_temperature(logits, labels))
        finally:
            _temperature_model._KERNEL["pass"] = kernel
        times["numpy_pass"].append((wall, cpu))
        _timed(lambda: scipy_temperature(logits, labels))  # the same cold start for both
    med = {name: np.median(np.array(v), axis=0) for name, v in times.items()}
    return {
        "pass": "C" if kernel is not None else f"NumPy ({_temperature_model._KERNEL['why']})",
        "numpy_pass_seconds": float(med["numpy_pass"][0]),
        "ratio_numpy_pass": float(med["numpy_pass"][0] / med["scipy"][0]),
        "n": n, "k": k, "repeats": repeats,
        "ours_seconds": float(med["ours"][0]), "scipy_seconds": float(med["scipy"][0]),
        "ratio": float(med["ours"][0] / med["scipy"][0]),
        "ours_cpu_seconds": float(med["ours"][1]), "scipy_cpu_seconds": float(med["scipy"][1]),
        "cpu_ratio": float(med["ours"][1] / med["scipy"][1]),
        "ours_temperature": float(fit), "scipy_temperature": t_scipy,
        "relative_difference": abs(float(fit) / t_scipy - 1.0),
        "ours_iterations": fit.iterations, "scipy_evaluations": evaluations,
        "converged": fit.converged,
    }


def cpu_name():
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return cpu


def machine():
    import scipy

    cpu = cpu_name()

    return (f"{cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"NumPy {np.__version__}, SciPy {scipy.__version__}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args(argv)
    r = bench_fit_temperature(args.n, args.k, args.repeats)
    print(f"command: python {' '.join(sys.argv)}")
    print(f"machine: {machine()}")
    print(f"N = {r['n']:,}, K = {r['k']} float32 logits (optimum T about 2.5), "
          f"median of {r['repeats']} alternating runs")
    print(f"  fit_temperature : wall {1e3 * r['ours_seconds']:7.1f} ms, CPU "
          f"{1e3 * r['ours_cpu_seconds']:7.1f} ms  T = {r['ours_temperature']:.8f}"
          f"  (converged={r['converged']}, {r['ours_iterations']} iterations)")
    print(f"  SciPy bounded   : wall {1e3 * r['scipy_seconds']:7.1f} ms, CPU "
          f"{1e3 * r['scipy_cpu_seconds']:7.1f} ms  T = {r['scipy_temperature']:.8f}"
          f"  ({r['scipy_evaluations']} NLL evaluations, xatol 1e-6 on log T)")
    print(f"  ratio ours / SciPy: wall {r['ratio']:.3f}, CPU {r['cpu_ratio']:.3f}; "
          f"|T_ours / T_scipy - 1| = {r['relative_difference']:.1e}; pass: {r['pass']}")
    print(f"  with the NumPy pass: wall {1e3 * r['numpy_pass_seconds']:7.1f} ms, ratio "
          f"{r['ratio_numpy_pass']:.3f}")


if __name__ == "__main__":
    main()
