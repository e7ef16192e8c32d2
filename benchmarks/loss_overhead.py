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

Needs scikit-learn (a test extra).
"""

import argparse
import os
import platform
import statistics
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=300, help="timed steps per measurement")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--filters", type=int, default=32, help="width of the two conv layers")
    args = parser.parse_args(argv)

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
