"""GPU check: step times of LLS, LS++ and ILS against label-smoothed cross-entropy on a GPU.

For the day a GPU is at hand. On a machine where TensorFlow sees no GPU it says
so and exits 0 without measuring anything. Otherwise (designed to finish in
under 8 minutes on one modern GPU) it prints one table:

* ResNet-20 (3 stages of 3 basic blocks, 16/32/64 filters, about 0.27 M
  weights) on CIFAR-shaped synthetic data (32 x 32 x 3, K = 10): the median
  step time of CE+LS (`CategoricalCrossentropy(label_smoothing=0.1)`), LLS,
  LS++ and ILS (soft targets computed once from teacher logits, the
  recommended use; synthetic teacher logits), each in float32, `mixed_float16` and `mixed_bfloat16`,
  and its ratio to CE+LS at the same K and precision. Under the 16-bit
  policies every logged loss and metric (accuracy, ECE) and the learned
  matrix must be finite (column `finite`).
* The same network with K = 21,843 (ImageNet-21k) outputs: CE+LS, and LLS and
  LS++ with the dense K x K matrix and with a sparse one (`neighbors=16`,
  if this version of keras_smooth has that argument; the table says so if not).
  A configuration that does not fit in memory is reported as such.
* A 4-trial `keras_smooth.tuning.run_search` of ILS (teacher included) under
  `MirroredStrategy` over all visible GPUs: trials completed, time, replicas.

The exit status is 1 if a check failed (a non-finite value, a failed trial),
else 0. Ratios are against CE+LS measured in the same run.

    python benchmarks/gpu_check.py                   # needs a GPU; < 8 min on one
    CUDA_VISIBLE_DEVICES=0,1 python benchmarks/gpu_check.py
    python benchmarks/gpu_check.py --cpu-smoke       # tiny sizes on the CPU (a test runs it)

Install with a GPU: `pip install "keras-smooth[gpu]"` (Linux, NVIDIA driver).
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_smooth  # noqa: E402
from keras_smooth import targets, tuning  # noqa: E402
from keras_smooth.datasets.base import ClassificationData  # noqa: E402
from keras_smooth.metrics import ExpectedCalibrationError  # noqa: E402

FULL = dict(image=32, blocks=3, batch=128, warmup=5, steps=30, repeats=3, classes=10,
            large=21843, neighbors=16, tune_trials=4, tune_epochs=2, tune_rows=2560, eager=False)
# The smoke run checks the script, not speed: one eager step per row (no tracing) and a
# 1-trial search keep it within seconds.
SMOKE = dict(image=8, blocks=1, batch=4, warmup=0, steps=1, repeats=1, classes=10,
             large=64, neighbors=16, tune_trials=1, tune_epochs=1, tune_rows=32, eager=True)
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
METHODS = ("CE+LS", "LLS", "LS++", "ILS")


def sparse_supported():
    """Whether `LLSLoss`/`LSPlusPlusLoss` take `neighbors=` (a sparse matrix) in this version."""
    try:
        keras_smooth.LLSLoss(num_classes=8, neighbors=2)
    except TypeError:
        return False
    return True


def resnet(input_shape, num_classes, blocks=3, widths=(16, 32, 64)):
    """ResNet-6n+2 of He et al. 2016 for CIFAR (n = `blocks`; n = 3 is ResNet-20); logits out.

    The logits layer is float32 whatever the mixed-precision policy.
    """
    inputs = keras.Input(input_shape)
    x = _conv_bn(inputs, widths[0], 1)
    for stage, width in enumerate(widths):
        for block in range(blocks):
            stride = 2 if stage > 0 and block == 0 else 1
            y = keras.layers.Activation("relu")(_conv_bn(x, width, stride))
            y = _conv_bn(y, width, 1, relu=False)
            if stride != 1 or x.shape[-1] != width:
                x = keras.layers.Conv2D(width, 1, strides=stride, use_bias=False)(x)
            x = keras.layers.Activation("relu")(keras.layers.Add()([x, y]))
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes, dtype="float32")(x))


def _conv_bn(x, width, stride, relu=True):
    x = keras.layers.Conv2D(width, 3, strides=stride, padding="same", use_bias=False)(x)
    x = keras.layers.BatchNormalization()(x)
    return keras.layers.Activation("relu")(x) if relu else x


def synthetic(rows, image, num_classes, seed):
    """CIFAR-shaped images whose class shows as a faint pattern in noise; int32 labels."""
    rng = np.random.default_rng(seed)
    patterns = rng.normal(size=(min(num_classes, 512), image, image, 3)).astype("float32")
    y = rng.integers(0, num_classes, size=rows).astype("int32")
    x = rng.normal(size=(rows, image, image, 3)).astype("float32")
    return x + 0.5 * patterns[y % len(patterns)], y


def training_set(method, num_classes, sizes, seed=0):
    """A repeating `tf.data` set of one method's inputs and labels (on the GPU's host)."""
    x, y = synthetic(4 * sizes["batch"], sizes["image"], num_classes, seed)
    if method == "CE+LS":
        labels = keras.utils.to_categorical(y, num_classes).astype("float32")
    elif method == "ILS":  # soft targets computed once from the teacher's logits
        teacher = np.random.default_rng(seed + 1).normal(size=(len(y), num_classes)) * 3.0
        labels = np.asarray(targets.ils_from_logits(y, teacher.astype("float32"), "ils",
                                                    p1=0.9, p2=1.5, temperature=2.0))
    else:
        labels = y
    return tf.data.Dataset.from_tensor_slices((x, labels)).repeat().batch(
        sizes["batch"], drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def loss_and_metrics(method, num_classes, neighbors):
    """The loss of one table row and the metrics logged with it."""
    sparse = {} if neighbors is None else {"neighbors": neighbors}
    if method == "LLS":
        loss = keras_smooth.LLSLoss(num_classes=num_classes, alpha=0.1, **sparse)
    elif method == "LS++":
        loss = keras_smooth.LSPlusPlusLoss(num_classes=num_classes, alpha=0.1, **sparse)
    else:
        smoothing = 0.1 if method == "CE+LS" else 0.0
        loss = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=smoothing)
    if method in ("CE+LS", "ILS"):  # one-hot or soft label rows
        return loss, [keras.metrics.CategoricalAccuracy(name="accuracy")]
    return loss, [keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
                  ExpectedCalibrationError(from_logits=True)]


def measure(method, num_classes, precision, sizes, neighbors=None):
    """Median seconds per training step of one configuration, and whether all it logged is finite.

    Returns:
        dict: `seconds` (None if it could not run), `bad` (names of
        non-finite logged values or matrix weights), `note`.
    """
    keras.backend.clear_session()
    keras.mixed_precision.set_global_policy(precision)
    try:
        keras.utils.set_random_seed(0)
        shape = (sizes["image"], sizes["image"], 3)
        model = resnet(shape, num_classes, sizes["blocks"])
        loss, metrics = loss_and_metrics(method, num_classes, neighbors)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss, metrics=metrics,
                      run_eagerly=sizes["eager"])
        data = training_set(method, num_classes, sizes)
        if sizes["warmup"]:
            model.fit(data, steps_per_epoch=sizes["warmup"], epochs=1, verbose=0)  # traces
        times = []
        for _ in range(sizes["repeats"]):
            start = time.perf_counter()
            history = model.fit(data, steps_per_epoch=sizes["steps"], epochs=1, verbose=0)
            times.append((time.perf_counter() - start) / sizes["steps"])
        values = {name: logged[-1] for name, logged in history.history.items()}
        if hasattr(loss, "matrix_layer"):
            for i, weight in enumerate(loss.matrix_layer.get_weights()):
                values[f"matrix weight {i}"] = weight
        bad = [name for name, value in values.items() if not np.all(np.isfinite(value))]
        return {"seconds": statistics.median(times), "bad": bad, "note": ""}
    except tf.errors.ResourceExhaustedError:
        return {"seconds": None, "bad": [], "note": "out of memory"}
    except Exception as error:  # a row that fails is reported, the others still run
        first = (str(error).strip().splitlines() or [""])[0][:120]
        return {"seconds": None, "bad": ["error"], "note": f"{type(error).__name__}: {first}"}
    finally:
        keras.mixed_precision.set_global_policy("float32")


def tune_model(input_shape, num_classes, blocks):
    """The search's network: the ResNet of the table."""
    return resnet(input_shape, num_classes, blocks)


def tune(sizes, seed=0):
    """A 4-trial ILS search (teacher included) under MirroredStrategy over all visible GPUs."""
    import functools

    strategy = tuning.distribute.resolve_strategy("mirrored")
    rows = sizes["tune_rows"]
    x, y = synthetic(rows + rows // 2, sizes["image"], 10, seed + 2)
    cut, end = rows, rows + rows // 4
    data = ClassificationData("synthetic CIFAR-shaped", x[:cut], y[:cut], x[cut:end], y[cut:end],
                              x[end:], y[end:], [str(c) for c in range(10)])
    build = functools.partial(tune_model, blocks=sizes["blocks"])
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as directory:
        result = tuning.run_search("ils", data=data, build_model=build, tuner="random",
                                   max_trials=sizes["tune_trials"], strategy=strategy,
                                   directory=directory, epochs=sizes["tune_epochs"],
                                   batch_size=sizes["batch"], seed=seed, export=False)
    done = sum(trial["status"] == "COMPLETED" for trial in result.trials)
    return {"seconds": time.perf_counter() - start, "completed": done,
            "replicas": strategy.num_replicas_in_sync,
            "devices": ", ".join(strategy.extended.worker_devices)}


def no_gpu_message():
    """What to say when TensorFlow sees no GPU, with the likely reason."""
    reason = ("this TensorFlow was built without CUDA (tensorflow-cpu?): "
              'pip install "keras-smooth[gpu]"' if not tf.test.is_built_with_cuda() else
              "TensorFlow has CUDA support but finds no GPU (driver, CUDA_VISIBLE_DEVICES?); "
              'pip install "keras-smooth[gpu]" brings the CUDA libraries')
    return ("gpu_check: no GPU is visible to TensorFlow "
            f"(tf.config.list_physical_devices('GPU') is empty): {reason}. Nothing was measured. "
            "`--cpu-smoke` runs the check at tiny sizes on the CPU.")


def configurations(sizes, sparse):
    """(K, precision, method, neighbors) of every table row, CE+LS first in each group."""
    rows = [(sizes["classes"], p, m, None) for p in PRECISIONS for m in METHODS]
    large = sizes["large"]
    rows += [(large, "float32", "CE+LS", None), (large, "float32", "LLS", None),
             (large, "float32", "LS++", None)]
    if sparse:
        rows += [(large, "float32", "LLS", sizes["neighbors"]),
                 (large, "float32", "LS++", sizes["neighbors"])]
    return rows


def table(results, sizes, sparse, searched):
    """The one table: a line per configuration, then the search."""
    lines = [f"{'K':>6s}  {'precision':14s} {'method':7s} {'matrix':16s} {'ms/step':>9s} "
             f"{'x CE+LS':>8s}  finite"]
    baseline = {}
    for (k, precision, method, neighbors), result in results:
        seconds = result["seconds"]
        if method == "CE+LS":
            baseline[k, precision] = seconds
        base = baseline.get((k, precision))
        matrix = ("-" if method in ("CE+LS", "ILS") else
                  f"sparse, N={neighbors}" if neighbors else f"dense {k}x{k}")
        ms = f"{seconds * 1e3:9.2f}" if seconds else f"{'-':>9s}"
        ratio = f"{seconds / base:8.2f}" if seconds and base else f"{'-':>8s}"
        finite = "no: " + ", ".join(result["bad"]) if result["bad"] else "yes"
        note = f"  ({result['note']})" if result["note"] else ""
        lines.append(f"{k:>6d}  {precision:14s} {method:7s} {matrix:16s} {ms} {ratio}  "
                     f"{finite}{note}")
    if not sparse:
        lines.append(f"{sizes['large']:>6d}  sparse matrix rows: not measured, this keras_smooth "
                     "has no `neighbors=` argument in LLSLoss/LSPlusPlusLoss")
    lines.append(f"tune: ILS, {searched['completed']}/{sizes['tune_trials']} trials completed in "
                 f"{searched['seconds']:.1f} s (teacher included), MirroredStrategy with "
                 f"{searched['replicas']} replica(s): {searched['devices']}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-smoke", action="store_true",
                        help="run at tiny sizes on the CPU (a test of this script, no measurement)")
    args = parser.parse_args(argv)
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus and not args.cpu_smoke:
        print(no_gpu_message())
        return 0
    if args.cpu_smoke and gpus:
        try:
            tf.config.set_visible_devices([], "GPU")  # the CPU, even on a machine with a GPU
        except RuntimeError:  # TensorFlow already started (called from Python): as placed
            pass
    sizes = SMOKE if args.cpu_smoke else FULL
    sparse = sparse_supported()
    started = time.perf_counter()
    where = "CPU smoke run (tiny sizes, not a measurement)" if args.cpu_smoke else \
        f"{len(gpus)} GPU(s): " + ", ".join(gpu.name for gpu in gpus)
    print(f"gpu_check: {where}; TensorFlow {tf.__version__}, Keras {keras.__version__}; "
          f"ResNet-{6 * sizes['blocks'] + 2}, {sizes['image']}x{sizes['image']}x3 inputs, "
          f"batch {sizes['batch']}, median of {sizes['repeats']} x {sizes['steps']} steps; "
          f"sparse matrix (neighbors={sizes['neighbors']}): "
          f"{'yes' if sparse else 'not available in this keras_smooth'}", flush=True)
    results = [(row, measure(row[2], row[0], row[1], sizes, row[3]))
               for row in configurations(sizes, sparse)]
    searched = tune(sizes)
    print(table(results, sizes, sparse, searched))
    print(f"total {time.perf_counter() - started:.0f} s")
    failed = any(result["bad"] for _, result in results)
    failed = failed or searched["completed"] != sizes["tune_trials"]
    if failed:
        print("gpu_check: FAILED (see the rows above)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
