"""`export_for_serving` on the backend this process runs (issue 17, item 3).

Backend-agnostic: `test_backends.py` reruns it under JAX (and torch, where
installed); under TensorFlow the same checks are in `test_trust_export.py`. A tiny
model is trained and temperature-scaled on the current backend, exported, and
the SavedModel is served by `serving_client.py` in a separate TensorFlow
process that never imports keras_smooth. Expected probabilities are NumPy
float64 softmax(logits / T), from the logits the trained model itself gives on
its backend. On torch the export must be refused with a clear `ValueError`.
"""

import json
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_smooth import export_for_serving
from keras_smooth.callbacks import TemperatureScalingCallback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BACKEND = keras.backend.backend()
EXPORTS = BACKEND in ("tensorflow", "jax")


def _softmax(z):
    z = np.asarray(z, "float64")
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _data(rng, n=96, width=4, classes=3):
    x = rng.normal(size=(n, width)).astype("float32")
    y = (x[:, 0] > 0).astype("int32") + (x[:, 1] > 0.5).astype("int32")  # classes 0, 1, 2
    return x, np.minimum(y, classes - 1)


def _trained(x, y, softmax_output=False):
    """A tiny MLP trained 2 epochs on this backend and temperature-scaled on (x, y)."""
    model = keras.Sequential([
        keras.Input((x.shape[1],), name="features"),
        keras.layers.Dense(8, activation="relu"),
        keras.layers.Dense(3, activation="softmax" if softmax_output else None),
    ])
    from_logits = not softmax_output
    model.compile(optimizer=keras.optimizers.Adam(0.05),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits))
    callback = TemperatureScalingCallback(validation_data=(x, y), from_logits=from_logits)
    model.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[callback])
    return model, callback


def _serve(request):
    """{path: {batch name: outputs}} from plain TensorFlow in another process."""
    result = subprocess.run(
        [sys.executable, os.path.join(HERE, "serving_client.py")], input=json.dumps(request),
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out.pop("imports_keras_smooth") is False
    return out


@pytest.mark.skipif(BACKEND != "jax", reason="TensorFlow: tests/test_trust_export.py")
def test_models_trained_on_this_backend_serve_calibrated_probabilities(tmp_path, rng):
    x, y = _data(rng)
    model, callback = _trained(x, y)
    temperature = callback.results["temperature"]
    assert temperature > 0 and temperature != 1.0
    paths = {name: str(tmp_path / name / "1") for name in ("calibrated", "probs")}
    used = export_for_serving(callback.calibrated_model(), paths["calibrated"])
    assert used == pytest.approx(temperature, rel=1e-6)
    probs_model, probs_callback = _trained(x, y, softmax_output=True)
    probs_t = probs_callback.results["temperature"]
    assert export_for_serving(probs_callback.calibrated_model(), paths["probs"]) == (
        pytest.approx(probs_t, rel=1e-6))
    batches = {"one": x[:1], "seven": x[1:8]}
    served = _serve({path: {name: b.tolist() for name, b in batches.items()}
                     for path in paths.values()})
    for name, batch in batches.items():
        logits = np.asarray(keras.ops.convert_to_numpy(model(batch)), "float64")
        got = served[paths["calibrated"]][name]
        assert got["dtypes"] == {"logits": "float32", "probabilities": "float32",
                                 "temperature": "float32"}
        np.testing.assert_allclose(got["logits"], logits, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(got["probabilities"], _softmax(logits / temperature),
                                   atol=2e-6)
        np.testing.assert_allclose(got["temperature"], [temperature] * len(batch), rtol=1e-6)
        # a probability model is served through log(max(p, 1e-12)) (the function's docstring)
        probs = np.asarray(keras.ops.convert_to_numpy(probs_model(batch)), "float64")
        want = _softmax(np.log(np.maximum(probs, 1e-12)) / probs_t)
        got = served[paths["probs"]][name]["probabilities"]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert served[paths["calibrated"]]["signature"]["inputs"] == {
        "features": {"shape": [None, 4], "dtype": "float32"}}


@pytest.mark.skipif(EXPORTS, reason="this backend exports")
def test_other_backends_are_refused_with_a_clear_error(tmp_path):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    with pytest.raises(ValueError, match=rf"TensorFlow or the JAX backend.*got '{BACKEND}'"):
        export_for_serving(model, str(tmp_path / "m" / "1"))
    assert not (tmp_path / "m").exists()


@pytest.mark.skipif(BACKEND != "jax", reason="the TF run of the example is in test_examples.py")
def test_temperature_scaling_example_runs_and_serves_on_jax(tmp_path):
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "temperature_scaling_and_export.py"),
         "--quick"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "3",
             "KERAS_BACKEND": "jax"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    export = re.search(r"SavedModel for TF Serving: (\S+)", result.stdout).group(1)
    assert (tmp_path / export / "saved_model.pb").exists()
    served = result.stdout.split("served probabilities of 3 test points:")[1]
    probs = np.array([[float(v) for v in re.findall(r"\d\.\d*", row)]
                      for row in served.strip().splitlines()])
    assert probs.shape == (3, 3)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=2e-3)  # printed to 3 decimals
