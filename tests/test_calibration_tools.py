"""TemperatureScaling, the callbacks, plots and the TF Serving export."""

import csv
import json
import os
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest

from keras_smooth import calibration, export_for_serving, plots
from keras_smooth.callbacks import CalibrationLogger, TemperatureScalingCallback
from keras_smooth.layers import TemperatureScaling

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="callbacks/export use the TF backend here"
)
HERE = os.path.dirname(__file__)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def task(rng):
    x = rng.normal(size=(400, 6)).astype("float32")
    w = rng.normal(size=(6, 3))
    logits = x @ w * 2.0
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    y = np.minimum((rng.random((400, 1)) > p.cumsum(1)).sum(1), 2).astype("int32")
    return x[:300], y[:300], x[300:], y[300:]


def _model():
    model = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(3)]
    )
    model.compile(optimizer=keras.optimizers.Adam(0.02),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _assert_png(path):
    with open(path, "rb") as f:
        assert f.read(8) == PNG_MAGIC
    from matplotlib.image import imread

    image = imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def test_temperature_scaling_layer_save_load(tmp_path):
    model = keras.Sequential([keras.Input((3,)), TemperatureScaling(2.5, softmax=True)])
    x = np.array([[1.0, 2.0, -1.0]], "float32")
    expected = np.exp(x / 2.5) / np.exp(x / 2.5).sum()
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-5)
    model.save(tmp_path / "t.keras")
    loaded = keras.models.load_model(tmp_path / "t.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, rtol=1e-5)
    with pytest.raises(ValueError, match=r"`temperature` must be > 0, got -1.0"):
        loaded.layers[-1].set_temperature(-1.0)
    with pytest.raises(ValueError, match=r"`temperature` must be > 0, got 0.0"):
        TemperatureScaling(0.0)


def test_temperature_callback_every_epoch_reaches_history_and_csv(task, tmp_path):
    x, y, xv, yv = task
    model = _model()
    ts = TemperatureScalingCallback(validation_data=(xv, yv), every_epoch=True)
    csv_path = tmp_path / "log.csv"
    history = model.fit(x, y, epochs=3, verbose=0,
                        callbacks=[ts, keras.callbacks.CSVLogger(str(csv_path))])
    # Issue 16: the temperature is measured on validation data; its log key is `val_temperature`.
    for key in ("val_temperature", "val_nll_before", "val_nll_after", "val_ece_before",
                "val_ece_after"):
        assert len(history.history[key]) == 3, key
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    # Before: 3 rows with a temperature column. Now the logged values are the history's.
    assert [float(r["val_temperature"]) for r in rows] == pytest.approx(
        history.history["val_temperature"])
    assert [float(r["val_nll_after"]) for r in rows] == pytest.approx(
        history.history["val_nll_after"])
    logits = model.predict(xv, verbose=0)
    expected_t = float(calibration.fit_temperature(logits, yv))
    assert ts.results["temperature"] == pytest.approx(expected_t, rel=1e-6)
    assert ts.results["val_nll_after"] <= ts.results["val_nll_before"] + 1e-12
    calibrated = ts.calibrated_model()
    np.testing.assert_allclose(calibrated.predict(xv, verbose=0), logits / expected_t, rtol=1e-5,
                               atol=1e-6)


@pytest.mark.parametrize("activation", ["sigmoid", None])
def test_temperature_callback_calibrates_a_binary_one_column_model(rng, activation):
    """A `Dense(1)` model (sigmoid probabilities or logits): the fitted T is the float64
    optimum on the validation data and `calibrated_model()` predicts the tempered
    probability (or logit) of class 1, sigmoid(logit / T)."""
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x[:, 0] + 0.5 * rng.normal(size=64) > 0).astype("int32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation=activation)])
    model.compile("adam", keras.losses.BinaryCrossentropy(from_logits=activation is None))
    callback = TemperatureScalingCallback(validation_data=(x, y))
    model.fit(x, y, epochs=2, verbose=0, callbacks=[callback])
    t = callback.results["temperature"]
    out = model.predict(x, verbose=0).astype("float64")
    logit = out if activation is None else np.log(out) - np.log1p(-out)
    nll = lambda temp: float(np.mean(np.logaddexp(0.0, -(2 * y[:, None] - 1) * logit / temp)))  # noqa: E731
    assert nll(t) <= min(nll(t * 1.001), nll(t / 1.001)) + 1e-12  # a minimum
    calibrated = callback.calibrated_model().predict(x, verbose=0)
    want = logit / t if activation is None else 1.0 / (1.0 + np.exp(-logit / t))
    np.testing.assert_allclose(calibrated, want, rtol=1e-4, atol=1e-6)


def test_temperature_callback_needs_data():
    with pytest.raises(ValueError, match="`validation_data` is required"):
        TemperatureScalingCallback(None)


def test_calibration_logger_logs_pngs_and_tensorboard(task, tmp_path):
    x, y, xv, yv = task
    model = _model()
    logger = CalibrationLogger(
        validation_data=(xv, yv), reliability_dir=str(tmp_path / "rel"),
        tensorboard_dir=str(tmp_path / "tb"),
    )
    history = model.fit(x, y, epochs=2, verbose=0, callbacks=[logger])
    preds = model.predict(xv, verbose=0)
    expected = calibration.summary(yv, preds, from_logits=True)
    # Issue 16: the logger's keys are `val_calibration/...` (never a compiled metric's name).
    assert history.history["val_calibration/ece"][-1] == pytest.approx(expected["ece"], abs=1e-6)
    assert history.history["val_calibration/classwise_ece"][-1] == pytest.approx(
        expected["classwise_ece"], abs=1e-6)
    assert history.history["val_calibration/nll"][-1] == pytest.approx(expected["nll"], rel=1e-6)
    assert history.history["val_calibration/brier"][-1] == pytest.approx(expected["brier"],
                                                                         rel=1e-6)
    for epoch in (1, 2):
        _assert_png(tmp_path / "rel" / f"epoch_{epoch:03d}.png")
    # Before: the event file exists and has > 1000 bytes. Now: read back, it holds each epoch's
    # values as in the history, and one reliability image per epoch.
    import tensorflow as tf

    scalars, images = {}, []
    run = tmp_path / "tb" / "validation"  # issue 16: the validation run of the folder
    for name in sorted(os.listdir(run)):
        for event in tf.compat.v1.train.summary_iterator(str(run / name)):
            for value in event.summary.value:
                if value.tag == "reliability_diagram":
                    images.append(event.step)
                else:
                    number = float(tf.make_ndarray(value.tensor))
                    scalars.setdefault(value.tag, {})[event.step] = number
    for key in ("ece", "classwise_ece", "nll", "brier"):
        assert scalars[f"epoch_calibration/{key}"] == pytest.approx(
            dict(enumerate(history.history[f"val_calibration/{key}"])), rel=1e-6), key
    assert sorted(images) == [0, 1]


def test_calibration_logger_without_data_warns_once(task):
    x, y, _, _ = task
    model = _model()
    logger = CalibrationLogger()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, epochs=2, verbose=0, callbacks=[logger])
        model.fit(x, y, epochs=1, verbose=0, callbacks=[logger])
    assert sum("no `validation_data`" in str(w.message) for w in caught) == 1


def _bins(values, m):
    """Bin m-1 for v in ((m-1)/M, m/M]; 0 goes to the first bin (as in test_calibration)."""
    return np.maximum(np.ceil(np.asarray(values) * m).astype(int) - 1, 0)


def test_plots_write_well_formed_pngs(task, tmp_path, rng):
    # Before: only "a well-formed PNG". Now also what is drawn: the bars of the reliability
    # diagram are the per-bin accuracies at the bins' left edges, the histogram the bin shares,
    # the classwise bars the per-bin frequencies of each class.
    _, _, xv, yv = task
    probs = rng.dirichlet(np.ones(3), size=len(yv))
    figure = plots.reliability_diagram(yv, probs, num_bins=10)
    conf, correct = probs.max(1), probs.argmax(1) == yv
    bins = _bins(conf, 10)
    filled = np.unique(bins)
    bars = figure.axes[0].patches[:len(filled)]
    np.testing.assert_allclose([b.get_x() for b in bars], filled / 10, atol=1e-12)
    np.testing.assert_allclose([b.get_height() for b in bars],
                               [correct[bins == b].mean() for b in filled], atol=1e-12)
    shares = [p.get_height() for p in figure.axes[1].patches]
    np.testing.assert_allclose(shares, np.bincount(bins, minlength=10) / len(yv), atol=1e-12)
    _assert_png(plots.save_figure(figure, tmp_path / "r.png"))
    squared = probs ** 2 / (probs ** 2).sum(1, keepdims=True)
    both = plots.reliability_diagrams({"a": probs, "b": squared}, yv)
    # Issue 16: each panel's title is its name, then its ECE (one legend for the figure).
    assert [ax.get_title().split("\n")[0] for ax in both.axes if ax.get_title()][:2] == ["a", "b"]
    _assert_png(plots.save_figure(both, tmp_path / "rr.png"))
    classwise = plots.classwise_reliability(yv, probs, class_names=["x", "y", "z"], num_bins=10)
    for j, ax in enumerate(classwise.axes[:3]):
        bins_j = _bins(probs[:, j], 10)
        filled_j = np.unique(bins_j)
        heights = [p.get_height() for p in ax.patches[:len(filled_j)]]
        np.testing.assert_allclose(heights, [(yv[bins_j == b] == j).mean() for b in filled_j],
                                   atol=1e-12)
    _assert_png(plots.save_figure(classwise, tmp_path / "c.png"))
    with pytest.raises(ValueError, match=r"`classes` must be in \[0, 3\), got 5"):
        plots.classwise_reliability(yv, probs, classes=[5])


def _serve_in_clean_process(path, batches):
    script = os.path.join(HERE, "serving_client.py")
    inputs = {str(i): b.tolist() for i, b in enumerate(batches)}
    result = subprocess.run(
        [sys.executable, script, str(path)], input=json.dumps(inputs), capture_output=True,
        text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_export_round_trip_in_a_process_without_keras_smooth(task, tmp_path):
    x, y, xv, yv = task
    model = _model()
    ts = TemperatureScalingCallback(validation_data=(xv, yv))
    model.fit(x, y, epochs=2, verbose=0, callbacks=[ts])
    path = tmp_path / "serving" / "clf" / "1"
    used = export_for_serving(ts.calibrated_model(), str(path))
    assert used == pytest.approx(ts.results["temperature"])
    out = _serve_in_clean_process(path, [xv[:1], xv[:37]])
    assert out["imports_keras_smooth"] is False
    for i, batch in enumerate([xv[:1], xv[:37]]):
        logits = model.predict(batch, verbose=0)
        got = out[str(i)]
        np.testing.assert_allclose(got["logits"], logits, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(got["probabilities"],
                                   calibration.apply_temperature(logits, used), rtol=1e-5,
                                   atol=1e-6)
        np.testing.assert_allclose(got["temperature"], [used] * len(batch), rtol=1e-6)
    shown = subprocess.run(["saved_model_cli", "show", "--all", "--dir", str(path)],
                           capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "serving_default" in shown.stdout and "probabilities" in shown.stdout
    assert "(-1, 6)" in shown.stdout  # dynamic batch size


def test_a_tiny_temperature_serves_the_limit_not_nan(tmp_path):
    """T = 1e-37 (inside float32's normal range) with logits of a few hundred: z / T
    overflows, the served probabilities must still be softmax(z / T), one-hot at the
    maximum (apply_temperature, float64), in a process without keras_smooth; the
    TemperatureScaling layer gives the same."""
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
    x = np.random.default_rng(3).normal(size=(8, 6)).astype("float32") * 100.0
    logits = model.predict(x, verbose=0)
    assert np.abs(logits).max() > 50  # z / 1e-37 overflows float32
    expected = calibration.apply_temperature(logits, 1e-37)
    layer = TemperatureScaling(1e-37, softmax=True)
    np.testing.assert_allclose(np.asarray(layer(logits)), expected, atol=1e-7)
    export_for_serving(model, str(tmp_path / "tiny" / "1"), temperature=1e-37)
    got = _serve_in_clean_process(tmp_path / "tiny" / "1", [x])["0"]
    assert np.all(np.isfinite(got["probabilities"]))
    np.testing.assert_allclose(got["probabilities"], expected, atol=1e-7)


def test_export_explicit_temperature_and_bad_input(task, tmp_path):
    # Before: only the returned 3.0. Now the served probabilities use it.
    model = _model()
    assert export_for_serving(model, str(tmp_path / "m" / "1"), temperature=3.0) == 3.0
    x = np.random.default_rng(2).normal(size=(5, 6)).astype("float32")
    out = _serve_in_clean_process(tmp_path / "m" / "1", [x])
    logits = model.predict(x, verbose=0)
    np.testing.assert_allclose(out["0"]["probabilities"],
                               calibration.apply_temperature(logits, 3.0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["0"]["temperature"], [3.0] * 5)
    with pytest.raises(ValueError, match=r"`temperature` must be > 0, got -2.0"):
        export_for_serving(model, str(tmp_path / "bad"), temperature=-2.0)


def test_metrics_under_two_replica_mirrored_strategy_equal_one_pass():
    result = subprocess.run(
        [sys.executable, os.path.join(HERE, "metrics_worker.py")], capture_output=True, text=True,
        timeout=300,
        # PYTHONPATH: the worker imports this checkout's keras_smooth
        env={**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3",
             "PYTHONPATH": os.path.dirname(os.path.abspath(HERE))},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["replicas"] == 2
    assert out["metric_ece"] == pytest.approx(out["ece"], abs=1e-5)
    assert out["metric_classwise_ece"] == pytest.approx(out["classwise_ece"], abs=1e-5)


def test_probability_model_is_calibrated_and_exported_correctly(task, tmp_path):
    x, y, xv, yv = task
    model = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(64, activation="relu"),
         keras.layers.Dense(3, activation="softmax")]
    )
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss="sparse_categorical_crossentropy")
    ts = TemperatureScalingCallback(validation_data=(xv, yv), from_logits=False)
    model.fit(x, y, epochs=3, verbose=0, callbacks=[ts])
    probs = model.predict(xv, verbose=0)
    t = ts.results["temperature"]
    assert t == pytest.approx(float(calibration.fit_temperature(probs, yv, from_logits=False)),
                              rel=1e-6)
    expected = calibration.apply_temperature(probs, t, from_logits=False)
    calibrated = ts.calibrated_model()
    np.testing.assert_allclose(calibrated.predict(xv, verbose=0), expected, rtol=1e-4, atol=1e-6)
    path = tmp_path / "p" / "1"
    export_for_serving(calibrated, str(path))
    out = _serve_in_clean_process(path, [xv[:5]])
    np.testing.assert_allclose(out["0"]["probabilities"], expected[:5], rtol=1e-4, atol=1e-6)


def test_functional_model_ending_in_temperature_scaling_exports_its_temperature(tmp_path):
    inputs = keras.Input((4,))
    logits = keras.layers.Dense(3)(inputs)
    model = keras.Model(inputs, TemperatureScaling(2.0)(logits))
    x = np.random.default_rng(1).normal(size=(4, 4)).astype("float32")
    assert export_for_serving(model, str(tmp_path / "f" / "1")) == 2.0
    out = _serve_in_clean_process(tmp_path / "f" / "1", [x])
    raw = model.predict(x, verbose=0) * 2.0
    np.testing.assert_allclose(out["0"]["logits"], raw, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["0"]["probabilities"], calibration.apply_temperature(raw, 2.0),
                               rtol=1e-5, atol=1e-6)
