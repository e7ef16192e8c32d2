"""TensorBoard from the command line and from `CalibrationLogger` (issue 16, item 1).

Event files are read back with TensorFlow's summary iterator and their values
checked against NumPy computations, written here from the definitions, on the
same predictions: top-label ECE and classwise ECE (Kull et al. 2019; ILS paper
Eq. 2) over 15 bins ((m-1)/M, m/M] with 0 in the first, NLL, and the
temperature minimising the NLL of softmax(z / T) (Guo et al. 2017).
"""

import json
import os
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from keras_smooth import cli
from keras_smooth.callbacks import (CalibrationLogger, TemperatureScalingCallback,
                                    tensorboard_run)
from keras_smooth.metrics import ExpectedCalibrationError

tf = pytest.importorskip("tensorflow")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                                reason="TensorBoard event files are written with TensorFlow")


# --- NumPy references -------------------------------------------------------------------------


def np_softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def np_bins(values, m=15):
    return np.clip(np.ceil(values * m).astype(int) - 1, 0, m - 1)


def np_ece(labels, probs, m=15):
    conf, hit = probs.max(1), (probs.argmax(1) == labels).astype(float)
    b = np_bins(conf, m)
    return sum(abs(hit[b == i].sum() - conf[b == i].sum()) for i in range(m)) / len(labels)


def np_classwise_ece(labels, probs, m=15):
    total = 0.0
    for j in range(probs.shape[1]):
        p, y = probs[:, j], (labels == j).astype(float)
        b = np_bins(p, m)
        total += sum(abs(y[b == i].sum() - p[b == i].sum()) for i in range(m)) / len(labels)
    return total / probs.shape[1]


def np_nll(labels, logits):
    return float(-np.mean(np.log(np_softmax(logits)[np.arange(len(labels)), labels])))


def np_temperature(labels, logits):
    found = minimize_scalar(lambda log_t: np_nll(labels, logits / np.exp(log_t)),
                            bounds=(np.log(0.01), np.log(100.0)), method="bounded",
                            options={"xatol": 1e-9})
    return float(np.exp(found.x))


# --- reading event files ----------------------------------------------------------------------


def read_run(folder):
    """{tag: {step: value}} of the scalars and {tag: [steps]} of the images in a run folder."""
    scalars, images = {}, {}
    for name in sorted(os.listdir(folder)):
        for event in tf.compat.v1.train.summary_iterator(os.path.join(folder, name)):
            for value in event.summary.value:
                plugin = value.metadata.plugin_data.plugin_name
                if plugin == "images":
                    images.setdefault(value.tag, []).append(event.step)
                elif plugin == "scalars":
                    array = tf.make_ndarray(value.tensor)
                    scalars.setdefault(value.tag, {})[event.step] = float(array)
    return scalars, images


class _Recorder(keras.callbacks.Callback):
    def __init__(self, x):
        super().__init__()
        self.x, self.logits = x, []

    def on_epoch_end(self, epoch, logs=None):
        self.logits.append(np.asarray(self.model.predict(self.x, verbose=0), "float64"))


def _task(seed=0, n=120, k=3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype("float32")
    y = (np.argmax(x[:, :k] + 0.5 * rng.normal(size=(n, k)), axis=1)).astype("int32")
    return x, y


def _model(k=3, metrics=()):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(k)])
    model.compile(keras.optimizers.Adam(0.05),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=list(metrics))
    return model


# --- the callbacks ----------------------------------------------------------------------------


def test_one_run_holds_training_and_validation_values_that_numpy_confirms(tmp_path):
    x, y = _task()
    xv, yv = _task(1, n=90)
    recorder = _Recorder(xv)
    run = str(tmp_path / "run")
    scaler = TemperatureScalingCallback((xv, yv), every_epoch=True)
    model = _model(metrics=["accuracy"])
    model.fit(x, y, validation_data=(xv, yv), epochs=3, batch_size=32, verbose=0,
              callbacks=[recorder, scaler, *tensorboard_run(run, (xv, yv))])
    train, train_images = read_run(os.path.join(run, "train"))
    val, val_images = read_run(os.path.join(run, "validation"))
    assert {"epoch_loss", "epoch_accuracy"} <= set(train)
    assert {"epoch_loss", "epoch_accuracy"} <= set(val)  # Keras's own validation values
    # Measured on validation data: only in the validation run (before: `temperature` was
    # a training-run value, and the logger wrote val_ece/val_nll next to Keras's keys).
    calibration_tags = {f"epoch_calibration/{m}" for m in
                        ("ece", "classwise_ece", "nll", "brier", "accuracy", "temperature")}
    assert calibration_tags | {"epoch_temperature"} <= set(val)
    assert not [t for t in train if "calibration" in t or "temperature" in t]
    # The diagram is drawn every 10 epochs and at the last one: here epoch 3 only.
    assert val_images == {"reliability_diagram": [2]} and train_images == {}
    for epoch, logits in enumerate(recorder.logits):
        probs = np_softmax(logits)
        expected = {"ece": np_ece(yv, probs), "classwise_ece": np_classwise_ece(yv, probs),
                    "nll": np_nll(yv, logits),
                    "accuracy": float((probs.argmax(1) == yv).mean()),
                    "temperature": np_temperature(yv, logits)}
        for measure, value in expected.items():
            got = val[f"epoch_calibration/{measure}"][epoch]
            np.testing.assert_allclose(got, value, rtol=2e-4, atol=2e-6, err_msg=measure)
        np.testing.assert_allclose(val["epoch_temperature"][epoch], expected["temperature"],
                                   rtol=2e-4)
        np.testing.assert_allclose(val["epoch_loss"][epoch], expected["nll"], rtol=1e-4)


def test_logger_keys_compose_with_compiled_metrics_and_never_replace_a_key(tmp_path):
    x, y = _task()
    xv, yv = _task(2, n=90)
    recorder = _Recorder(xv)

    class Claims(keras.callbacks.Callback):  # another callback that already wrote a key
        def on_epoch_end(self, epoch, logs=None):
            logs["val_calibration/nll"] = -1.0

    model = _model(metrics=[ExpectedCalibrationError(num_bins=5, from_logits=True)])
    logger = CalibrationLogger((xv, yv))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(x, y, validation_data=(xv, yv), epochs=2, verbose=0,
                            callbacks=[recorder, Claims(), logger])
    for epoch, logits in enumerate(recorder.logits):
        probs = np_softmax(logits)
        # The compiled 5-bin metric keeps its own key and value (before: replaced by the
        # logger's 15-bin ECE).
        np.testing.assert_allclose(history.history["val_ece"][epoch], np_ece(yv, probs, 5),
                                   atol=1e-5)
        np.testing.assert_allclose(history.history["val_calibration/ece"][epoch],
                                   np_ece(yv, probs, 15), atol=1e-6)
        assert history.history["val_calibration/nll"][epoch] == -1.0
    kept = [w for w in caught if "val_calibration/nll" in str(w.message)]
    assert len(kept) == 1  # one warning, not one per epoch


def test_temperature_callback_logs_val_temperature():
    x, y = _task()
    xv, yv = _task(3, n=90)
    recorder = _Recorder(xv)
    model = _model()
    history = model.fit(x, y, epochs=2, verbose=0,
                        callbacks=[recorder, TemperatureScalingCallback((xv, yv),
                                                                        every_epoch=True)])
    assert "temperature" not in history.history
    np.testing.assert_allclose(history.history["val_temperature"][-1],
                               np_temperature(yv, recorder.logits[-1]), rtol=2e-4)


# --- the command line and the tuner -----------------------------------------------------------


def test_compare_cli_writes_one_run_per_method_and_replicate(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env.update(PYTHONPATH=ROOT, COLUMNS="80", KERAS_BACKEND="tensorflow")
    tb, out = tmp_path / "tb", tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "keras_smooth", "compare", "--methods", "no_ls,ls,ls_temps",
         "--epochs", "2", "--replicates", "1", "--grid", "quick", "--output", str(out),
         "--tensorboard", str(tb)],
        capture_output=True, text=True, env=env, timeout=400, cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "oneDNN" not in done.stderr and "absl" not in done.stderr
    assert max(len(line) for line in done.stdout.splitlines()) <= 80  # item 3, at 80 columns
    assert f"tensorboard --logdir {tb}" in done.stdout.replace("\n    ", " ")
    # No LS is the teacher; LS + TempS rescales LS's model and trains nothing.
    assert sorted(os.listdir(tb)) == ["ls", "no_ls"]
    records = json.loads((out / "results.json").read_text())["records"]
    for method in ("no_ls", "ls"):
        assert sorted(os.listdir(tb / method)) == ["replicate_0"]
        for replicate in (0,):
            run = tb / method / f"replicate_{replicate}"
            train, _ = read_run(run / "train")
            val, images = read_run(run / "validation")
            assert sorted(train["epoch_loss"]) == [0, 1]
            assert sorted(images["reliability_diagram"]) == [1]
            for measure in ("ece", "classwise_ece", "nll", "temperature"):
                values = list(val[f"epoch_calibration/{measure}"].values())
                assert len(values) == 2 and np.all(np.isfinite(values)), measure
            # The validation NLL compare selected on is the best epoch's logged NLL.
            record = next(r for r in records if r["method"] == method
                          and r["replicate"] == replicate)
            np.testing.assert_allclose(record["val_nll"],
                                       min(val["epoch_calibration/nll"].values()), rtol=1e-5)


def test_tune_writes_one_run_per_trial_and_reports_epochs(tmp_path):
    from keras_smooth.tuning import run_search

    events = []
    result = run_search("ls", tuner="random", max_trials=2, epochs=2, batch_size=32,
                        directory=str(tmp_path / "search"), tensorboard=str(tmp_path / "tb"),
                        export=False, strategy="none", progress=events.append)
    trials = [row["trial_id"] for row in result.trials]
    assert len(trials) == 2 and sorted(os.listdir(tmp_path / "tb")) == sorted(trials)
    for row in result.trials:
        run = tmp_path / "tb" / row["trial_id"] / "execution0"  # KerasTuner's layout
        train, _ = read_run(run / "train")
        val, images = read_run(run / "validation")
        assert sorted(train["epoch_loss"]) == [0, 1]
        assert sorted(images["reliability_diagram"]) == [1]
        # The tuner's own val_nll and the logger's agree epoch by epoch (two computations).
        np.testing.assert_allclose([val["epoch_nll"][e] for e in (0, 1)],
                                   [val["epoch_calibration/nll"][e] for e in (0, 1)], rtol=1e-5)
        np.testing.assert_allclose(row["val_nll"], min(val["epoch_nll"].values()), rtol=1e-6)
        epochs = [(e["epoch"], e["epochs"]) for e in events
                  if e["event"] == "epoch" and e["trial_id"] == row["trial_id"]]
        assert epochs == [(1, 2), (2, 2)]


def test_tune_cli_takes_tensorboard_and_wide(tmp_path):
    args = cli.parse_args(["tune", "--method", "ls", "--tensorboard", str(tmp_path / "tb"),
                           "--wide"])
    assert args.tensorboard == str(tmp_path / "tb") and args.wide
    args = cli.parse_args(["compare", "--tensorboard", str(tmp_path / "tb2")])
    assert args.tensorboard == str(tmp_path / "tb2") and not args.wide
