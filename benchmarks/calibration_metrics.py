"""Time and peak memory of streaming ECE / classwise ECE against plain NumPy.

N predictions over K classes are generated in batches of 10^4 from a fixed
seed (softmax of Gaussian logits, labels drawn from the probabilities). Each
method runs in its own child process so its peak resident memory (above the
process's memory after imports) can be read from `getrusage`:

* streaming: `keras_smooth.metrics.ExpectedCalibrationError` /
  `ClasswiseECE`, one `update_state` per batch; only the metric calls are
  timed.
* NumPy: the straightforward implementation that keeps all N x K
  probabilities, then bins them (`np.digitize` on edges, per-bin sums).

Both results are printed so their agreement can be checked.

The three speed ratios of issue 13 are then measured in one process, `--runs`
times (default 3; each printed with the median over runs):

* `fit_temperature` on 10,000 x 100 float32 logits against SciPy's bounded
  Brent search on log T (`bench_temperature.bench_fit_temperature`: median of
  15 alternating repeats per run; wall and thread CPU time);
* `ClasswiseECE` against a per-batch NumPy update (bin = ceil(p * 15) - 1,
  three `np.bincount` over class * bin ids), and
* `ExpectedCalibrationError` against Keras's `SparseCategoricalAccuracy`,
  both as 100 timed eager `update_state` calls on the same batches of
  1,000 x 1,000 (K = 1,000; one untimed warm-up batch first).

With `--evaluate`, the time each metric adds to `model.evaluate` per batch of
1,000 x 1,000 (compiled step) is printed too. Then (full run only)
`fit_temperature` is compared with SciPy's L-BFGS-B on N = 100,000.

    PYTHONPATH=. python benchmarks/calibration_metrics.py [--n 1000000] [--skip-large]
    PYTHONPATH=. python benchmarks/calibration_metrics.py --ratios-only [--evaluate]

Needs SciPy (a test extra).
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

BATCH = 10_000
BINS = 15


def batches(n, k, seed=0):
    rng = np.random.default_rng(seed)
    for start in range(0, n, BATCH):
        m = min(BATCH, n - start)
        logits = rng.normal(size=(m, k)).astype("float32") * 3.0
        probs = np.exp(logits - logits.max(1, keepdims=True))
        probs /= probs.sum(1, keepdims=True)
        labels = np.minimum((rng.random((m, 1), dtype="float32") > probs.cumsum(1)).sum(1), k - 1)
        yield labels.astype("int32"), probs


def numpy_ece(labels, probs):
    conf = probs.max(1)
    correct = probs.argmax(1) == labels
    index = np.clip(np.digitize(conf, np.linspace(0, 1, BINS + 1)[1:-1], right=True), 0, BINS - 1)
    counts = np.bincount(index, minlength=BINS)
    gap = np.abs(np.bincount(index, correct, BINS) - np.bincount(index, conf, BINS))
    return float(gap.sum() / counts.sum())


def numpy_classwise_ece(labels, probs):
    n, k = probs.shape
    index = np.clip(np.digitize(probs, np.linspace(0, 1, BINS + 1)[1:-1], right=True), 0, BINS - 1)
    total = 0.0
    for j in range(k):
        hit = (labels == j).astype("float64")
        gap = np.bincount(index[:, j], hit, BINS) - np.bincount(index[:, j], probs[:, j], BINS)
        total += np.abs(gap).sum()
    return float(total / (k * n))


def run_child(method, n, k):
    """Runs in a child process; prints JSON."""
    import keras

    keras.backend.backend()  # import and start the backend before measuring
    from keras_smooth.metrics import ClasswiseECE, ExpectedCalibrationError

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    elapsed = 0.0
    if method.startswith("stream"):
        metric = ExpectedCalibrationError(BINS) if method == "stream_ece" else ClasswiseECE(k, BINS)
        for labels, probs in batches(n, k):
            start = time.perf_counter()
            metric.update_state(labels, probs)
            elapsed += time.perf_counter() - start
        start = time.perf_counter()
        value = float(metric.result())
        elapsed += time.perf_counter() - start
    else:
        parts = list(batches(n, k))
        labels = np.concatenate([p[0] for p in parts])
        probs = np.concatenate([p[1] for p in parts])
        del parts
        start = time.perf_counter()
        reference = numpy_ece if method == "numpy_ece" else numpy_classwise_ece
        value = reference(labels, probs)
        elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"value": value, "seconds": elapsed, "peak_mb": (peak - base) / 1024}))


def measure(method, n, k):
    out = subprocess.run(
        [sys.executable, __file__, "--child", method, "--n", str(n), "--k", str(k)],
        capture_output=True, text=True, check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def temperature_comparison(n=100_000, k=100):
    from scipy import optimize

    from keras_smooth.calibration import fit_temperature

    rng = np.random.default_rng(1)
    logits = rng.normal(size=(n, k)).astype("float32") * 3.0
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    labels = np.minimum((rng.random((n, 1)) > probs.cumsum(1)).sum(1), k - 1)
    over = logits * 2.5  # over-confident: optimum T = 2.5 up to sampling
    z = over.astype("float64")
    rows = np.arange(n)

    def nll(log_t):
        s = z / np.exp(log_t[0])
        s = s - s.max(1, keepdims=True)
        return -(s[rows, labels] - np.log(np.exp(s).sum(1))).mean()

    start = time.perf_counter()
    fit = fit_temperature(over, labels)
    ours = time.perf_counter() - start
    start = time.perf_counter()
    res = optimize.minimize(nll, x0=[0.0], method="L-BFGS-B", bounds=[(-8, 8)],
                            options={"ftol": 1e-15, "gtol": 1e-12})
    scipy_time = time.perf_counter() - start
    return {
        "n": n, "k": k,
        "ours": {"T": fit.temperature, "nll": nll([np.log(fit.temperature)]), "seconds": ours,
                 "iterations": fit.iterations},
        "scipy": {"T": float(np.exp(res.x[0])), "nll": float(res.fun), "seconds": scipy_time,
                  "evaluations": int(res.nfev)},
    }


def numpy_streaming_classwise(k, bins=BINS):
    """Per-batch NumPy classwise ECE sums (bin = ceil(p * bins) - 1, three bincounts)."""
    sums = np.zeros((3, k * bins))
    offsets = np.arange(k) * bins

    def update(labels, probs):
        index = np.maximum(np.ceil(probs * bins).astype(np.int64) - 1, 0) + offsets
        flat = index.ravel()
        sums[0] += np.bincount(flat, minlength=k * bins)
        sums[1] += np.bincount(flat, probs.ravel(), k * bins)
        sums[2] += np.bincount(index[np.arange(len(labels)), labels], minlength=k * bins)

    def result():
        s = sums.reshape(3, k, bins)
        return float(np.abs(s[2] - s[1]).sum(-1).mean() / s[0][0].sum())

    return update, result


def streaming_ratios(batches=100, rows=1000, k=1000, seed=2):
    """Eager update_state time of our metrics against Keras / NumPy, same batches, one run."""
    import keras

    from keras_smooth.metrics import ClasswiseECE, ExpectedCalibrationError

    rng = np.random.default_rng(seed)
    data = []
    for _ in range(batches):
        logits = rng.normal(size=(rows, k)).astype("float32") * 3.0
        probs = np.exp(logits - logits.max(1, keepdims=True))
        probs /= probs.sum(1, keepdims=True)
        data.append((rng.integers(0, k, size=rows).astype("int32"), probs))

    def timed(update, result):
        update(*data[0])  # warm-up (tracing / first dispatch), not timed
        start = time.perf_counter()
        for labels, probs in data[1:]:
            update(labels, probs)
        value = float(result())
        return time.perf_counter() - start, value

    out = {}
    for name, make in (
        ("ece", lambda: ExpectedCalibrationError(BINS)),
        ("accuracy", keras.metrics.SparseCategoricalAccuracy),
        ("classwise_ece", lambda: ClasswiseECE(k, BINS)),
    ):
        metric = make()
        out[name] = timed(metric.update_state, metric.result)
    out["numpy_classwise"] = timed(*numpy_streaming_classwise(k))
    return out


def evaluate_overhead(batches=10, rows=1000, k=1000, seed=3, repeats=5):
    """Seconds per batch that each metric adds to `model.evaluate` (compiled step).

    The model is a softmax over its input, so each batch of 1,000 x 1,000
    probabilities goes through the metrics as in a real evaluation; the time
    of the same evaluation without metrics (loss only) is subtracted. The
    evaluations alternate between the models; medians of `repeats`.
    """
    import keras

    from keras_smooth.metrics import ClasswiseECE, ExpectedCalibrationError

    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(batches * rows, k)) * 3.0).astype("float32")
    y = rng.integers(0, k, size=batches * rows).astype("int32")
    makers = {"none": list, "accuracy": lambda: [keras.metrics.SparseCategoricalAccuracy()],
              "ece": lambda: [ExpectedCalibrationError(BINS)],
              "classwise_ece": lambda: [ClasswiseECE(k, BINS)]}
    models, times = {}, {name: [] for name in makers}
    for name, make in makers.items():
        model = keras.Sequential([keras.Input((k,)), keras.layers.Activation("softmax")])
        model.compile(loss="sparse_categorical_crossentropy", metrics=make())
        model.evaluate(x[:rows], y[:rows], batch_size=rows, verbose=0)  # trace, not timed
        models[name] = model
    for _ in range(repeats):
        for name, model in models.items():
            start = time.perf_counter()
            model.evaluate(x, y, batch_size=rows, verbose=0)
            times[name].append((time.perf_counter() - start) / batches)
    base = float(np.median(times["none"]))
    return {name: float(np.median(t)) - base for name, t in times.items() if name != "none"}


def machine():
    """CPU, cores and versions, for the record."""
    import platform

    import keras
    import scipy

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_temperature import cpu_name

    cpu = cpu_name()
    backend = keras.backend.backend()
    engine = __import__("tensorflow" if backend == "tensorflow" else backend)
    return (f"{cpu}, {os.cpu_count()} cores; Python {platform.python_version()}, "
            f"NumPy {np.__version__}, SciPy {scipy.__version__}, Keras {keras.__version__} "
            f"({backend} {engine.__version__})")


def measure_ratios(runs=3, ratio_batches=101, temperature_repeats=15):
    """The three ratios of issue 13, each the median over `runs` runs in this process."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_temperature import bench_fit_temperature

    records = []
    for _ in range(runs):
        stream = streaming_ratios(ratio_batches)
        fit = bench_fit_temperature(10_000, 100, temperature_repeats)
        records.append({
            "fit_temperature": fit["ours_seconds"], "scipy_bounded": fit["scipy_seconds"],
            "numpy_pass": fit["numpy_pass_seconds"], "ratio_numpy_pass": fit["ratio_numpy_pass"],
            "ratio_temperature": fit["ratio"], "cpu_ratio_temperature": fit["cpu_ratio"],
            "fit_relative_difference": fit["relative_difference"],
            "fit_converged": fit["converged"],
            "classwise_ece": stream["classwise_ece"][0],
            "numpy_classwise": stream["numpy_classwise"][0],
            "ratio_classwise": stream["classwise_ece"][0] / stream["numpy_classwise"][0],
            "ece": stream["ece"][0], "accuracy": stream["accuracy"][0],
            "ratio_ece": stream["ece"][0] / stream["accuracy"][0],
            "pass": fit["pass"],
            "classwise_value": stream["classwise_ece"][1],
            "numpy_value": stream["numpy_classwise"][1],
        })
    return records


def print_ratios(args):
    records = measure_ratios(args.runs, args.ratio_batches, args.temperature_repeats)
    med = {key: float(np.median([r[key] for r in records])) for key in records[0]
           if key != "pass"}
    n = args.ratio_batches - 1
    print(f"command: python {' '.join(sys.argv)}")
    print(f"machine: {machine()}")
    print(f"{args.runs} runs in one process; each line: median over runs (every run's own "
          f"time is itself a median for fit_temperature, {args.temperature_repeats} alternating "
          f"repeats; a total over {n} eager update_state calls on batches of 1,000 x 1,000, "
          f"K = 1,000, for the metrics)")
    rows = (
        ("fit_temperature, 10,000 x 100 float32", "fit_temperature", "SciPy bounded Brent",
         "scipy_bounded", "ratio_temperature", "<= 0.15", 1e3, "ms"),
        ("ClasswiseECE streaming", "classwise_ece", "NumPy 3 x bincount per batch",
         "numpy_classwise", "ratio_classwise", "<= 1.0", 1.0, "s"),
        ("ExpectedCalibrationError streaming", "ece", "keras SparseCategoricalAccuracy",
         "accuracy", "ratio_ece", "<= 1.5", 1.0, "s"),
    )
    print(f"  {'what':38s} {'ours':>10s}  {'reference':32s} {'ref':>10s} {'ratio':>6s} "
          f"{'runs':>17s} target")
    for what, ours, ref_name, ref, ratio, target, unit, label in rows:
        each = "/".join(f"{r[ratio]:.2f}" for r in records)
        print(f"  {what:38s} {unit * med[ours]:7.2f} {label:2s}  {ref_name:32s} "
              f"{unit * med[ref]:7.2f} {label:2s} {med[ratio]:6.3f} {each:>17s} {target}")
    print(f"  fit_temperature / SciPy in CPU time of the thread (not counting waits for a "
          f"shared core): {med['cpu_ratio_temperature']:.3f}")
    print(f"  fit_temperature's pass: {records[0]['pass']}; with the NumPy pass instead (same "
          f"runs): {1e3 * med['numpy_pass']:.2f} ms, ratio {med['ratio_numpy_pass']:.3f}")
    print(f"  fit_temperature: max |T / T_SciPy - 1| = "
          f"{max(r['fit_relative_difference'] for r in records):.1e}, converged = "
          f"{all(r['fit_converged'] for r in records)}; classwise ECE values: ours "
          f"{records[0]['classwise_value']:.10f}, NumPy {records[0]['numpy_value']:.10f}")
    if args.evaluate:
        added = evaluate_overhead()
        print("Added to model.evaluate per 1,000 x 1,000 batch (compiled step; loss-only "
              "evaluation subtracted; medians of 5 alternating evaluations of 10 batches):")
        for name, value in added.items():
            print(f"  {name:14s} {1e3 * value:6.1f} ms")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--skip-large", action="store_true", help="skip K = 1000")
    parser.add_argument("--ratios-only", action="store_true",
                        help="only the streaming speed ratios (issue 13)")
    parser.add_argument("--ratio-batches", type=int, default=101)
    parser.add_argument("--runs", type=int, default=3, help="runs of the ratio measurements")
    parser.add_argument("--temperature-repeats", type=int, default=15)
    parser.add_argument("--evaluate", action="store_true",
                        help="also time the metrics inside model.evaluate")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return run_child(args.child, args.n, args.k)
    if args.ratios_only:
        return print_ratios(args)

    import keras

    print(f"keras {keras.__version__} ({keras.backend.backend()}), numpy {np.__version__}, "
          f"{os.cpu_count()} CPUs; N = {args.n:,} predictions in batches of {BATCH:,}, {BINS} bins")
    print(f"{'K':>5s} {'measure':14s} {'method':10s} {'seconds':>9s} {'peak MB':>9s} "
          f"{'value':>12s}")
    sizes = [args.k] + ([] if args.skip_large else [1000])
    for k in sizes:
        for measure_name, suffix in (("ECE", "ece"), ("classwise ECE", "classwise_ece")):
            for method in ("stream", "numpy"):
                r = measure(f"{method}_{suffix}", args.n, k)
                print(f"{k:5d} {measure_name:14s} {method:10s} {r['seconds']:9.2f} "
                      f"{r['peak_mb']:9.1f} "
                      f"{r['value']:12.8f}", flush=True)
    print_ratios(args)
    t = temperature_comparison()
    print(f"\nfit_temperature on N = {t['n']:,}, K = {t['k']} over-confident logits "
          "(true T about 2.5):")
    print(f"  keras_smooth: T = {t['ours']['T']:.6f}, NLL = {t['ours']['nll']:.8f}, "
          f"{t['ours']['seconds']:.2f} s, {t['ours']['iterations']} Newton/bisection steps")
    print(f"  SciPy L-BFGS-B: T = {t['scipy']['T']:.6f}, NLL = {t['scipy']['nll']:.8f}, "
          f"{t['scipy']['seconds']:.2f} s, {t['scipy']['evaluations']} evaluations")


if __name__ == "__main__":
    main()
