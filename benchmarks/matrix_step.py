"""Time the dense matrix's optimizer step: the fused Adam against Keras's own Adam.

A K x K float32 matrix gets the gradient of a batch of 256 labels: an
`IndexedSlices` naming each of the batch's distinct rows once, as a training
step of `LLSLoss` / `LSPlusPlusLoss` produces it. In the same run, alternating:

* fused: `keras_smooth.losses._tf_matrix_hook.apply_matrix_gradient` with a
  plain `keras.optimizers.Adam` (one `ResourceApplyAdam` kernel);
* Keras: the same update through Keras's generic `Adam.apply_gradients`
  (a subclass of Adam, which the fused path never takes).

Both run inside `tf.function`; each line is the median over `--repeats`
alternating runs of `--steps` steps. The two results are also compared.

    python benchmarks/matrix_step.py [--classes 1000,3000] [--steps 30] [--repeats 7]
"""

import argparse
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this checkout

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_smooth.losses import _tf_matrix_hook as hook  # noqa: E402


class KerasAdam(keras.optimizers.Adam):
    """Keras's generic Adam step (a subclass is never fused)."""


def _stepper(optimizer, k, seed):
    variable = keras.Variable(np.zeros((k, k), "float32"))
    optimizer.build([variable])
    rng = np.random.default_rng(seed)
    rows = np.unique(rng.integers(0, k, size=256)).astype("int32")
    grad = tf.IndexedSlices(tf.constant(rng.normal(size=(len(rows), k)).astype("float32")),
                            tf.constant(rows), tf.constant([k, k]))

    @tf.function
    def steps(count):
        for _ in tf.range(count):
            hook.apply_matrix_gradient(optimizer, grad, variable)

    steps(tf.constant(2))  # trace and warm up
    return steps, variable


def measure(k, step_count, repeats):
    fused, fused_var = _stepper(keras.optimizers.Adam(1e-2), k, 0)
    generic, generic_var = _stepper(KerasAdam(1e-2), k, 0)
    times = {"fused": [], "keras": []}
    for _ in range(repeats):
        for name, run in (("fused", fused), ("keras", generic)):
            start = time.perf_counter()
            run(tf.constant(step_count))
            times[name].append((time.perf_counter() - start) / step_count)
    ratios = [f / g for f, g in zip(times["fused"], times["keras"])]
    gap = float(np.max(np.abs(fused_var.numpy() - generic_var.numpy())))
    return {name: statistics.median(t) for name, t in times.items()}, ratios, gap


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=lambda v: [int(c) for c in v.split(",")],
                        default=[1000, 3000], help="comma-separated K values")
    parser.add_argument("--steps", type=int, default=30, help="steps per timed run")
    parser.add_argument("--repeats", type=int, default=7, help="alternating runs")
    args = parser.parse_args(argv)
    print(f"command: python {' '.join(sys.argv)}")
    print(f"keras {keras.__version__}, tensorflow {tf.__version__}, {platform.machine()}, "
          f"{os.cpu_count()} CPUs; load average {os.getloadavg()}")
    print(f"{'K':>6s} {'fused ms':>9s} {'Keras ms':>9s} {'ratio':>6s} {'range':>11s} "
          f"{'max |fused - Keras|':>20s}")
    for k in args.classes:
        med, ratios, gap = measure(k, args.steps, args.repeats)
        print(f"{k:6d} {1e3 * med['fused']:9.3f} {1e3 * med['keras']:9.3f} "
              f"{statistics.median(ratios):6.2f} {min(ratios):5.2f}-{max(ratios):5.2f} "
              f"{gap:20.2e}")


if __name__ == "__main__":
    main()
