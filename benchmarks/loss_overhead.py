"""Training-step time of each loss relative to Keras's label-smoothed cross-entropy.

A small CNN on scikit-learn's digits (8x8, 10 classes) is trained with each
loss on identical weights and data. Every configuration is warmed up (traced)
once; then a callback times every training step and the median step is kept,
which is robust to garbage-collection pauses and epoch boundaries. The order
of configurations rotates from repeat to repeat, and the reported time is the
median over repeats. The printed ratio is that time divided by the time of
`keras.losses.CategoricalCrossentropy(label_smoothing=0.1)` in the same run.

"ILS targets computed once" runs exactly the baseline's computation on
precomputed soft targets: its ratio shows the noise floor of the run.

ILS is timed in its two forms: targets computed once from the cached teacher
logits by `ILSTargets` (they do not change during training; the recommended
use) and targets made per batch inside the `tf.data` pipeline. Both are fed to
`CategoricalCrossentropy`.

    python benchmarks/loss_overhead.py [--repeats 7] [--steps 300] [--batch-size 64] [--filters 32]

Scaling with the number of classes K (`--scaling`): a linear head over 256-d
synthetic features, batch 256, Adam, integer labels (the baseline one-hots
them per batch in `tf.data`). Every (K, loss) configuration runs in its own
process, which reports its median step time and its peak resident memory
(`ru_maxrss`); ratios are against the baseline's process of the same K in the
same repeat. Dense LLS/LS++ keep a K x K matrix; "sparse" ones N learnable
entries per row (`neighbors=N`).

    python benchmarks/loss_overhead.py --scaling [--classes 10,100,1000] [--neighbors 16]
        [--repeats 3] [--scaling-steps 60] [--dense-max 10000]

Needs scikit-learn (a test extra).
"""

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

import keras_smooth  # noqa: E402
from keras_smooth import losses  # noqa: E402

K = 10


def make_model(filters=32):
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(filters, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(filters, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(K),
        ]
    )


def configurations(x, y, teacher_logits, batch_size):
    onehot = np.eye(K, dtype="float32")[y]

    def ds(targets):
        dataset = tf.data.Dataset.from_tensor_slices((x, targets))
        return dataset.repeat().batch(batch_size).prefetch(2)

    ils = keras_smooth.ILSTargets("ils", p1=0.9, p2=1.5, temperature=4.0,
                                  calibration_temperature=1.5)
    ils_per_batch = (
        tf.data.Dataset.from_tensor_slices((x, y, teacher_logits))
        .repeat()
        .batch(batch_size)
        .map(lambda a, b, t: (a, ils(b, t)), num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(2)
    )
    ils_once = np.asarray(ils(y, teacher_logits))
    cce = lambda: keras.losses.CategoricalCrossentropy(from_logits=True)  # noqa: E731
    keras_ls = lambda: keras.losses.CategoricalCrossentropy(  # noqa: E731
        from_logits=True, label_smoothing=0.1)
    packed = np.asarray(losses.distillation_targets(y, teacher_logits))
    return {
        "baseline: CategoricalCrossentropy(label_smoothing=0.1)": (keras_ls, ds(onehot)),
        "LabelSmoothingLoss(0.1), integer labels": (lambda: losses.LabelSmoothingLoss(0.1), ds(y)),
        "LLSLoss(alpha=0.1), plain model": (lambda: losses.LLSLoss(K, alpha=0.1), ds(y)),
        "LSPlusPlusLoss(alpha=0.1), plain model": (
            lambda: losses.LSPlusPlusLoss(K, alpha=0.1), ds(y)),
        "ILS targets computed once (ILSTargets) + CCE": (cce, ds(ils_once)),
        "ILS targets made per batch in tf.data + CCE": (cce, ils_per_batch),
        "DistillationLoss(0.5, T=4), cached logits": (
            lambda: losses.DistillationLoss(0.5, 4.0), ds(packed)),
    }


class StepTimer(keras.callbacks.Callback):
    """Wall time of every training step (one `train_function` call each)."""

    def __init__(self):
        super().__init__()
        self.durations = []

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.durations.append(time.perf_counter() - self._start)


def step_time(make_loss, dataset, weights, steps, filters):
    model = make_model(filters)
    model.set_weights(weights)
    model.compile(optimizer="adam", loss=make_loss())
    model.fit(dataset, epochs=1, steps_per_epoch=20, shuffle=False, verbose=0)  # trace and warm up
    timer = StepTimer()
    model.fit(dataset, epochs=1, steps_per_epoch=steps, shuffle=False, verbose=0, callbacks=[timer])
    return statistics.median(timer.durations)


FEATURES = 256
SCALING_BATCH = 256


def scaling_loss(kind, k, neighbors):
    """The loss of one scaling configuration: baseline, lls, lspp, sparse-lls, sparse-lspp."""
    if kind == "baseline":
        return keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)
    cls = losses.LLSLoss if kind.endswith("lls") else losses.LSPlusPlusLoss
    if kind.startswith("sparse"):
        return cls(k, alpha=0.1, neighbors=min(neighbors, k - 1))
    return cls(k, alpha=0.1)


def scaling_child(kind, k, neighbors, steps):
    """Run one configuration in this process; print its median step time and peak RSS."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8 * SCALING_BATCH, FEATURES)).astype("float32")
    y = rng.integers(0, k, size=len(x)).astype("int32")
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).repeat().batch(SCALING_BATCH)
    if kind == "baseline":
        dataset = dataset.map(lambda a, b: (a, tf.one_hot(b, k)))
    dataset = dataset.prefetch(2)
    model = keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(k)])
    model.compile(optimizer="adam", loss=scaling_loss(kind, k, neighbors))
    model.fit(dataset, epochs=1, steps_per_epoch=5, verbose=0)  # trace and warm up
    timer = StepTimer()
    model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=[timer])
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": statistics.median(timer.durations), "peak_mb": peak_mb}))


def run_child(kind, k, neighbors, steps):
    command = [sys.executable, os.path.abspath(__file__), "--child", kind, "--k", str(k),
               "--neighbors", str(neighbors), "--scaling-steps", str(steps)]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def scaling(args):
    kinds = ["baseline", "lls", "lspp", "sparse-lls", "sparse-lspp"]
    rows = {}
    print(f"# load average at the start: {os.getloadavg()}", flush=True)
    for repeat in range(args.repeats):
        for k in args.classes:
            todo = [kind for kind in kinds if not (kind in ("lls", "lspp") and k > args.dense_max)]
            todo = todo[repeat % len(todo):] + todo[: repeat % len(todo)]
            results = {kind: run_child(kind, k, args.neighbors, args.scaling_steps)
                       for kind in todo}
            for kind, result in results.items():
                rows.setdefault((k, kind), []).append((result, results["baseline"]))
            print(f"# repeat {repeat} K {k}: {json.dumps(results)}", flush=True)
    print(f"# load average at the end: {os.getloadavg()}")
    print(f"keras {keras.__version__}, tensorflow {tf.__version__}, {platform.machine()}, "
          f"{os.cpu_count()} CPUs; linear head over {FEATURES}-d features, batch "
          f"{SCALING_BATCH}, Adam, {args.scaling_steps} timed steps x {args.repeats} repeats, "
          f"sparse N = min({args.neighbors}, K - 1); one process per configuration")
    print(f"{'K':>6s} {'loss':12s} {'ms/step':>9s} {'ratio':>6s} {'range':>11s} "
          f"{'peak MB':>8s} {'base MB':>8s} {'RSS ratio':>9s}")
    order = sorted(rows, key=lambda key: (key[0], kinds.index(key[1])))
    for k, kind in order:
        pairs = rows[(k, kind)]
        ratios = [r["seconds"] / b["seconds"] for r, b in pairs]
        peak = statistics.median(r["peak_mb"] for r, _ in pairs)
        base = statistics.median(b["peak_mb"] for _, b in pairs)
        seconds = statistics.median(r["seconds"] for r, _ in pairs)
        print(f"{k:6d} {kind:12s} {1000 * seconds:9.2f} {statistics.median(ratios):6.2f} "
              f"{min(ratios):5.2f}-{max(ratios):5.2f} {peak:8.0f} {base:8.0f} "
              f"{peak / base:9.2f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scaling", action="store_true", help="time losses against K")
    parser.add_argument("--classes", type=lambda v: [int(c) for c in v.split(",")],
                        default=[10, 100, 1000, 10000, 21843])
    parser.add_argument("--neighbors", type=int, default=16, help="N of the sparse matrix")
    parser.add_argument("--scaling-steps", type=int, default=60)
    parser.add_argument("--dense-max", type=int, default=10000,
                        help="largest K for the dense K x K matrix")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--k", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=300, help="timed steps per measurement")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--filters", type=int, default=32, help="width of the two conv layers")
    args = parser.parse_args(argv)
    if args.child:
        return scaling_child(args.child, args.k, args.neighbors, args.scaling_steps)
    if args.scaling:
        return scaling(args)

    keras.utils.set_random_seed(0)
    digits = load_digits()
    x = (digits.images / 16.0).astype("float32")[..., None]
    y = digits.target.astype("int32")
    teacher_logits = np.random.default_rng(0).normal(scale=3.0, size=(len(y), K)).astype("float32")
    weights = make_model(args.filters).get_weights()
    configs = configurations(x, y, teacher_logits, args.batch_size)

    names = list(configs)
    times = {name: [] for name in names}
    for repeat in range(args.repeats):
        order = names[repeat % len(names):] + names[: repeat % len(names)]
        for name in order:
            make_loss, dataset = configs[name]
            times[name].append(step_time(make_loss, dataset, weights, args.steps, args.filters))

    print(f"# load average at the end: {os.getloadavg()}")
    print(f"keras {keras.__version__}, tensorflow {tf.__version__}, {platform.machine()}, "
          f"{os.cpu_count()} CPUs; digits {len(y)} samples, CNN with {args.filters} filters, "
          f"batch {args.batch_size}, {args.steps} timed steps x {args.repeats} repeats")
    print("ratio: median over repeats of (step time / baseline step time in the same repeat)")
    print(f"{'loss':58s} {'median ms/step':>14s} {'ratio':>7s} {'ratio range':>13s}")
    for name, values in times.items():
        paired = [v / b for v, b in zip(values, times[names[0]])]
        spread = f"{min(paired):.3f}-{max(paired):.3f}"
        print(f"{name:58s} {1000 * statistics.median(values):14.3f} "
              f"{statistics.median(paired):7.3f} {spread:>13s}")


if __name__ == "__main__":
    main()
