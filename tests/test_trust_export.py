"""Issue 11 for the export and temperature scaling: served names, mixed precision, folders.

Every SavedModel is loaded by `serving_client.py` in one separate process that
never imports keras_smooth; expected numbers come from NumPy float64
softmax(logits / T) written here.
"""

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import warnings

import keras
import numpy as np
import pytest

from keras_smooth import export_for_serving
from keras_smooth.callbacks import TemperatureScalingCallback
from keras_smooth.layers import TemperatureScaling
from keras_smooth.workflows.compare import default_model

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="SavedModel export needs the TF backend"
)
HERE = os.path.dirname(__file__)
SERVED_KEYS = {"logits", "probabilities", "temperature"}


def _softmax(z):
    z = np.asarray(z, "float64")
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _tempered(predictions, temperature, from_logits=True):
    """softmax(z / T) in float64, z = logits or log(max(p, 1e-12))."""
    z = np.asarray(predictions, "float64")
    if not from_logits:
        z = np.log(np.maximum(z, 1e-12))
    return _softmax(z / temperature)


@contextlib.contextmanager
def _policy(name):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _labels(logits, rng):
    """Labels drawn from softmax(logits): a model fitted on them is not degenerate."""
    p = _softmax(logits)
    return (rng.random((len(p), 1)) > p.cumsum(1)).sum(1).clip(0, p.shape[1] - 1).astype("int32")


def _compile(model, from_logits=True):
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=loss)
    return model


def _calibrate(model, x, y, from_logits=True):
    """Train three epochs with the callback; return (calibrated model, T)."""
    callback = TemperatureScalingCallback(validation_data=(x, y), from_logits=from_logits)
    model.fit(x, y, epochs=3, batch_size=32, verbose=0, callbacks=[callback])
    return callback.calibrated_model(), callback.results["temperature"]


def _take(x, n):
    return {k: v[:n] for k, v in x.items()} if isinstance(x, dict) else x[:n]


def _as_json(batch):
    if isinstance(batch, dict):
        return {k: v.tolist() for k, v in batch.items()}
    return batch.tolist()


# --- exports shared by the tests, served in one clean process -----------------------


class _Exports:
    """Builds the models, exports them and records what each export must serve."""

    def __init__(self, root, rng):
        self.root, self.rng, self.cases = root, rng, {}

    def add(self, name, model, batches, expected, **export_kwargs):
        path = str(self.root / name / "1")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            used = export_for_serving(model, path, **export_kwargs)
        self.cases[name] = {"path": path, "batches": batches, "expected": expected, "used": used,
                            "warnings": [str(w.message) for w in caught]}
        return path

    def serve(self):
        request = {c["path"]: {str(i): _as_json(b) for i, b in enumerate(c["batches"])}
                   for c in self.cases.values()}
        result = subprocess.run(
            [sys.executable, os.path.join(HERE, "serving_client.py")], input=json.dumps(request),
            capture_output=True, text=True, timeout=300,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        )
        assert result.returncode == 0, result.stderr[-3000:]
        out = json.loads(result.stdout.strip().splitlines()[-1])
        assert out["imports_keras_smooth"] is False
        for case in self.cases.values():
            case["served"] = out[case["path"]]
        return self.cases


def _two_named_inputs(exports, rng, as_dict):
    age, income = keras.Input((2,), name="age"), keras.Input((3,), name="income")
    hidden = keras.layers.Dense(8, activation="relu")(keras.layers.Concatenate()([age, income]))
    logits = keras.layers.Dense(3)(hidden)
    inputs = {"age": age, "income": income} if as_dict else [age, income]
    model = _compile(keras.Model(inputs, logits))
    x = {"age": rng.normal(size=(96, 2)).astype("float32"),
         "income": rng.normal(size=(96, 3)).astype("float32")}
    y = _labels(2.0 * x["age"][:, :1] + x["income"] @ rng.normal(size=(3, 3)), rng)
    fed = x if as_dict else [x["age"], x["income"]]
    calibrated, t = _calibrate(model, fed, y)
    batches = [_take(x, 1), _take(x, 37)]
    raw = [np.asarray(model(b if as_dict else [b["age"], b["income"]])) for b in batches]
    exports.add("dict_inputs" if as_dict else "list_inputs", calibrated, batches,
                [{"logits": r, "temperature": t} for r in raw])


def _single_inputs(exports, rng):
    x = rng.normal(size=(96, 6)).astype("float32")
    y = _labels(x[:, :3] * 3.0, rng)
    model = _compile(default_model((6,), 3))  # the workflows' and tuner's default network
    calibrated, t = _calibrate(model, x, y)
    batches = [{"features": x[:1]}, {"features": x[:37]}]  # sent by name, as a REST client does
    raw = [np.asarray(model(b["features"])) for b in batches]
    exports.add("features", calibrated, batches, [{"logits": r, "temperature": t} for r in raw])
    anonymous = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
    exports.add("anonymous", anonymous, [x[:1], x[:37]],
                [{"logits": np.asarray(anonymous(b)), "temperature": 1.7} for b in (x[:1], x[:37])],
                temperature=1.7)


def _probability_model(exports, rng):
    x = rng.normal(size=(96, 4)).astype("float32")
    y = _labels(x[:, :3] * 2.0, rng)
    model = keras.Sequential([keras.Input((4,), name="features"),
                              keras.layers.Dense(3, activation="softmax")])
    model = _compile(model, from_logits=False)
    calibrated, t = _calibrate(model, x, y, from_logits=False)
    batches = [x[:1], x[:37]]
    expected = [{"probs_in": np.asarray(model(b)), "temperature": t,
                 "calibrated": np.asarray(calibrated(b))} for b in batches]
    exports.add("probabilities", calibrated, batches, expected)


def _mixed_precision(exports, rng):
    x = rng.normal(size=(37, 5)).astype("float32")
    with _policy("mixed_float16"):
        logits_model = keras.Sequential([keras.Input((5,), name="features"), keras.layers.Dense(4)])
        logits_model.layers[-1].kernel.assign(rng.normal(size=(5, 4)) * 4.0)
        exports.add("mixed_logits", logits_model, [x[:1], x], [{"temperature": 0.3}] * 2,
                    temperature=0.3)
        probs_model = keras.Sequential([keras.Input((5,), name="features"),
                                        keras.layers.Dense(4, activation="softmax")])
        probs_model.layers[-1].kernel.assign(rng.normal(size=(5, 4)) * 20.0)  # float16 zeros
        expected = [{"probs_in": np.asarray(probs_model(b)).astype("float64"), "temperature": 2.0}
                    for b in (x[:1], x)]
        exports.add("mixed_probabilities", probs_model, [x[:1], x], expected,
                    temperature=2.0, from_logits=False)
    with _policy("mixed_bfloat16"):  # 10 classes: rows sum to 1 only within ~2e-3
        probs_model = keras.Sequential([keras.Input((5,), name="features"),
                                        keras.layers.Dense(10, activation="softmax")])
        expected = [{"probs_in": np.asarray(probs_model(b)).astype("float64"), "temperature": 2.0}
                    for b in (x[:1], x)]
        exports.add("bfloat16_probabilities", probs_model, [x[:1], x], expected,
                    temperature=2.0, from_logits=False)


class SubclassedNet(keras.Model):
    def __init__(self, units=3, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(units)

    def call(self, inputs):
        return self.dense(inputs)


def _subclassed_and_overwritten(exports, rng):
    import tensorflow as tf

    x = rng.normal(size=(96, 4)).astype("float32")
    y = _labels(x[:, :3] * 2.0, rng)
    model = _compile(SubclassedNet())
    calibrated, t = _calibrate(model, x, y)  # Sequential([model, TemperatureScaling])
    batches = [x[:1], x[:37]]
    exports.add("subclassed", calibrated, batches,
                [{"logits": np.asarray(model(b)), "temperature": t} for b in batches],
                input_signature=[tf.TensorSpec((None, 4), tf.float32)])
    plain = keras.Sequential([keras.Input((4,), name="features"), keras.layers.Dense(3)])
    path = exports.add("overwritten", plain, batches, None, temperature=2.0)
    for stale in (os.path.join("assets", "stale.txt"), os.path.join("variables", "stale.data")):
        with open(os.path.join(path, stale), "w") as f:
            f.write("from an earlier export")
    exports.add("overwritten", plain, batches,
                [{"logits": np.asarray(plain(b)), "temperature": 3.0} for b in batches],
                temperature=3.0)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    keras.utils.set_random_seed(7)
    rng = np.random.default_rng(7)
    exports = _Exports(tmp_path_factory.mktemp("served"), rng)
    _two_named_inputs(exports, rng, as_dict=False)
    _two_named_inputs(exports, rng, as_dict=True)
    _single_inputs(exports, rng)
    _probability_model(exports, rng)
    _mixed_precision(exports, rng)
    _subclassed_and_overwritten(exports, rng)
    return exports.serve()


def _inputs_of(case):
    return set(case["served"]["signature"]["inputs"])


def _assert_logits_case(case, rtol=1e-5):
    for i, expected in enumerate(case["expected"]):
        got = case["served"][str(i)]
        t = expected["temperature"]
        assert set(got) - {"dtypes"} == SERVED_KEYS
        assert got["dtypes"] == {key: "float32" for key in SERVED_KEYS}
        np.testing.assert_allclose(got["logits"], expected["logits"], rtol=rtol, atol=1e-5)
        np.testing.assert_allclose(got["probabilities"], _tempered(expected["logits"], t),
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got["temperature"], [t] * len(expected["logits"]), rtol=1e-6)


@pytest.mark.parametrize("name", ["list_inputs", "dict_inputs"])
def test_calibrated_two_input_model_serves_its_input_names(served, name):
    case = served[name]
    assert _inputs_of(case) == {"age", "income"}
    assert case["served"]["signature"]["inputs"]["age"]["shape"] == [None, 2]
    assert not [w for w in case["warnings"] if "structure" in w], case["warnings"]
    _assert_logits_case(case)


def test_default_model_serves_features_through_calibrated_model(served):
    case = served["features"]
    assert _inputs_of(case) == {"features"}
    _assert_logits_case(case)
    assert default_model((6,), 3).inputs[0].name == "features"
    assert default_model((8, 8, 1), 3).inputs[0].name == "images"


def test_unnamed_input_is_served_under_a_stable_name(served):
    assert _inputs_of(served["anonymous"]) == {"inputs"}  # not keras_tensor_<N>
    _assert_logits_case(served["anonymous"])


def test_subclassed_calibrated_model_exports_with_an_input_signature(served):
    case = served["subclassed"]
    assert _inputs_of(case) == {"inputs"}
    assert case["used"] == pytest.approx(case["expected"][0]["temperature"])
    _assert_logits_case(case)


def test_probability_model_round_trip_at_batch_sizes_1_and_37(served):
    case = served["probabilities"]
    for i, expected in enumerate(case["expected"]):
        want = _tempered(expected["probs_in"], expected["temperature"], from_logits=False)
        got = case["served"][str(i)]
        np.testing.assert_allclose(got["probabilities"], want, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(expected["calibrated"], want, rtol=1e-5, atol=1e-6)


def test_mixed_float16_exports_serve_float32_probabilities(served):
    case = served["mixed_logits"]
    for i in range(2):
        got = case["served"][str(i)]
        assert got["dtypes"] == {key: "float32" for key in SERVED_KEYS}
        probabilities = np.asarray(got["probabilities"])
        np.testing.assert_allclose(probabilities.sum(1), 1.0, atol=1e-6)
        np.testing.assert_allclose(probabilities, _tempered(got["logits"], 0.3), atol=1e-6)
    case = served["mixed_probabilities"]
    assert any((e["probs_in"] == 0).any() for e in case["expected"])  # the 1e-12 floor matters
    _assert_probabilities_case(case)


def test_bfloat16_probabilities_are_not_taken_for_logits(served):
    case = served["bfloat16_probabilities"]
    assert max(np.abs(e["probs_in"].sum(1) - 1).max() for e in case["expected"]) > 1e-3
    _assert_probabilities_case(case)


def _assert_probabilities_case(case):
    for i, expected in enumerate(case["expected"]):
        got = case["served"][str(i)]
        assert got["dtypes"]["probabilities"] == "float32"
        want = _tempered(expected["probs_in"], 2.0, from_logits=False)
        np.testing.assert_allclose(got["probabilities"], want, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got["logits"], np.log(np.maximum(expected["probs_in"], 1e-12)),
                                   rtol=1e-5, atol=1e-5)


def test_exporting_again_replaces_the_earlier_export_whole(served):
    case = served["overwritten"]
    assert not os.path.exists(os.path.join(case["path"], "assets", "stale.txt"))
    assert not os.path.exists(os.path.join(case["path"], "variables", "stale.data"))
    assert sorted(os.listdir(os.path.dirname(case["path"]))) == ["1"]  # no staging folder left
    _assert_logits_case(case)  # T = 3 from the second export


def test_readme_names_the_three_served_outputs(served):
    assert set(served["features"]["served"]["0"]) - {"dtypes"} == SERVED_KEYS
    with open(os.path.join(HERE, os.pardir, "README.md")) as f:
        readme = f.read()
    section = readme[readme.index("## Serving a calibrated model"):]
    sentence = re.split(r"\.\s", section[section.index("POST /v1/models"):])[0]
    assert "both outputs" not in section
    for key in SERVED_KEYS:
        assert f"`{key}`" in sentence, sentence


# --- the layer under mixed precision (no export) ------------------------------------


def test_temperature_scaling_softmax_under_mixed_float16_matches_float64():
    rng = np.random.default_rng(3)
    with _policy("mixed_float16"):
        layer = TemperatureScaling(1.0, softmax=True)
        assert layer.compute_dtype == "float32"
        for trial in range(300):
            n, k = int(rng.integers(1, 5)), int(rng.integers(2, 6))
            scale = [1.0, 30.0, 1e4][trial % 3]
            x = (rng.normal(size=(n, k)) * scale).astype("float32")
            if trial % 7 == 0:
                x[:, 1] = x[:, 0]  # ties
            if trial % 11 == 0:
                x[:] = np.where(rng.random((n, k)) < 0.5, 1e4, -1e4)  # +-1e4 logits
            t = float(np.exp(rng.uniform(np.log(0.01), np.log(100.0))))
            layer.set_temperature(t)
            got = np.asarray(layer(x))
            assert got.dtype == np.float32 and np.isfinite(got).all(), (x, t)
            z = x.astype("float64") / t
            # float32 rounding of z moves probabilities by at most ~|z| * 2**-23
            atol = 1e-6 + 4 * 2.0**-23 * np.abs(z).max()
            np.testing.assert_allclose(got, _softmax(z), atol=atol, err_msg=f"T={t}")


def test_temperature_scaling_from_probabilities_under_mixed_float16_floors_zeros():
    p = np.array([[0.0, 1.0, 0.0], [0.25, 0.5, 0.25]], "float32")
    with _policy("mixed_float16"):
        scaled = np.asarray(TemperatureScaling(1.5, from_logits=False)(p))
        probs = np.asarray(TemperatureScaling(1.5, softmax=True, from_logits=False)(p))
    floored = np.log(np.maximum(p.astype("float64"), 1e-12))
    np.testing.assert_allclose(scaled, floored / 1.5, rtol=1e-6)
    np.testing.assert_allclose(probs, _tempered(p, 1.5, from_logits=False), rtol=1e-5, atol=1e-9)


def test_temperature_scaling_takes_bfloat16_probabilities_for_probabilities():
    rng = np.random.default_rng(5)
    with _policy("mixed_bfloat16"):
        net = keras.Sequential([keras.Input((5,)), keras.layers.Dense(10, activation="softmax")])
        layer = TemperatureScaling(2.0, softmax=True, from_logits=False)
        for _ in range(20):
            p = net(rng.normal(size=(64, 5)).astype("float32") * 3.0)
            want = _tempered(np.asarray(p).astype("float64"), 2.0, from_logits=False)
            np.testing.assert_allclose(np.asarray(layer(p)), want, rtol=1e-5, atol=1e-7)


def test_temperature_scaling_from_probabilities_takes_a_logits_batch_for_logits():
    x = np.array([[2.0, -1.0, 0.5], [0.1, 0.2, 3.0]], "float32")  # not probabilities
    layer = TemperatureScaling(2.0, softmax=True, from_logits=False)
    np.testing.assert_allclose(np.asarray(layer(x)), _tempered(x, 2.0), rtol=1e-5, atol=1e-7)


def test_temperature_scaling_of_one_column_is_binary_class_one():
    """(N, 1) is the logit or the probability of class 1: the tempered output is the
    two-class softmax of [0, z] / T, i.e. sigmoid(z / T) (NumPy, float64)."""
    binary = np.array([[3.0], [-1.0], [0.0]], "float32")
    np.testing.assert_allclose(np.asarray(TemperatureScaling(2.0)(binary)), binary / 2.0)
    two = np.concatenate([np.zeros_like(binary), binary], axis=1) / 2.0
    class_one = _tempered(two, 1.0)[:, 1:]  # softmax of the two classes' logits
    np.testing.assert_allclose(np.asarray(TemperatureScaling(2.0, softmax=True)(binary)),
                               class_one, rtol=1e-6)
    p = np.array([[0.9], [0.2], [0.5], [0.0], [1.0]], "float32")
    q = np.clip(p.astype("float64"), 1e-12, 1 - 1e-12)
    z = np.log(q) - np.log1p(-q)
    for softmax, want in ((False, z / 2.0), (True, 1.0 / (1.0 + np.exp(-z / 2.0)))):
        got = TemperatureScaling(2.0, softmax=softmax, from_logits=False)(p)
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-7)
    # a batch outside [0, 1] is logits already (the library-wide binary rule)
    got = TemperatureScaling(2.0, softmax=False, from_logits=False)(binary)
    np.testing.assert_allclose(np.asarray(got), binary / 2.0)


def test_temperature_scaling_config_and_keras_file_keep_a_fitted_temperature(tmp_path):
    layer = TemperatureScaling(1.0, softmax=True, from_logits=False, name="ts")
    layer.set_temperature(2.7)
    clone = TemperatureScaling.from_config(layer.get_config())
    assert float(np.asarray(clone.temperature)) == pytest.approx(2.7)
    assert (clone.softmax, clone.from_logits, clone.name) == (True, False, "ts")
    model = keras.Sequential([keras.Input((3,), name="features"), layer])
    p = np.array([[0.2, 0.7, 0.1], [0.0, 0.5, 0.5]], "float32")
    model.save(tmp_path / "ts.keras")
    loaded = keras.models.load_model(tmp_path / "ts.keras")
    assert float(np.asarray(loaded.layers[-1].temperature)) == pytest.approx(2.7)
    np.testing.assert_allclose(loaded.predict(p, verbose=0), _tempered(p, 2.7, from_logits=False),
                               rtol=1e-5, atol=1e-9)


def test_calibrated_model_keeps_the_inputs_and_saves(tmp_path, rng):
    age, income = keras.Input((2,), name="age"), keras.Input((3,), name="income")
    model = _compile(keras.Model([age, income], keras.layers.Dense(3)(
        keras.layers.Concatenate()([age, income]))))
    x = [rng.normal(size=(96, 2)).astype("float32"), rng.normal(size=(96, 3)).astype("float32")]
    calibrated, t = _calibrate(model, x, _labels(x[0][:, :1] * 3.0 + x[1], rng))
    assert [i.name for i in calibrated.inputs] == ["age", "income"]
    expected = np.asarray(model(x), "float64") / t
    np.testing.assert_allclose(calibrated.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)
    calibrated.save(tmp_path / "c.keras")
    loaded = keras.models.load_model(tmp_path / "c.keras")
    assert [i.name for i in loaded.inputs] == ["age", "income"]
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)


# --- clear errors ---------------------------------------------------------------------


BAD_TEMPERATURES = [
    (0.0, ValueError, r"`temperature` must be > 0, got 0.0"),
    (-1.5, ValueError, r"`temperature` must be > 0, got -1.5"),
    (float("nan"), ValueError, r"`temperature` must be finite, got nan"),
    (float("inf"), ValueError, r"`temperature` must be finite, got inf"),
    (np.array([1.0, 2.0]), TypeError, r"`temperature` must be a scalar, got an array of shape"),
    ("2", TypeError, r"`temperature` must be a real number, got '2'"),
    (True, TypeError, r"`temperature` must be a real number, got True"),
]


@pytest.mark.parametrize("value, error, message", BAD_TEMPERATURES)
def test_bad_temperatures_are_refused_everywhere(tmp_path, value, error, message):
    model = keras.Sequential([keras.Input((4,), name="features"), keras.layers.Dense(3)])
    with pytest.raises(error, match=message):
        TemperatureScaling(value)
    with pytest.raises(error, match=message):
        TemperatureScaling().set_temperature(value)
    with pytest.raises(error, match=message):
        export_for_serving(model, str(tmp_path / "m" / "1"), temperature=value)
    assert not os.path.exists(tmp_path / "m")


def test_export_refuses_a_bad_temperature_held_by_the_model(tmp_path):
    inputs = keras.Input((4,), name="features")
    scaling = TemperatureScaling(2.0)
    model = keras.Model(inputs, scaling(keras.layers.Dense(3)(inputs)))
    scaling.temperature.assign(float("nan"))  # e.g. loaded from a broken checkpoint
    with pytest.raises(ValueError, match=r"TemperatureScaling layer .* bad temperature.* got nan"):
        export_for_serving(model, str(tmp_path / "m" / "1"))


def test_export_refuses_models_it_cannot_serve(tmp_path):
    import tensorflow as tf

    spec = [tf.TensorSpec((None, 4), tf.float32)]
    with pytest.raises(ValueError, match=r"`model` is not built"):
        export_for_serving(keras.Sequential([keras.layers.Dense(3)]), str(tmp_path / "a"))
    with pytest.raises(ValueError, match=r"`model` is not built"):
        export_for_serving(SubclassedNet(), str(tmp_path / "b"), input_signature=spec)
    called = SubclassedNet()
    called(np.zeros((1, 4), "float32"))
    with pytest.raises(ValueError, match=r"no known inputs .* `input_signature="):
        export_for_serving(called, str(tmp_path / "c"))
    for bad in (5, [5], [], "spec"):  # before: "'int' object is not iterable" and the like
        with pytest.raises(TypeError, match="`input_signature` must be a list of specs"):
            export_for_serving(called, str(tmp_path / "c"), input_signature=bad)
    binary = SubclassedNet(units=1)
    binary(np.zeros((1, 4), "float32"))
    with pytest.raises(ValueError, match=r"one value per class.*\(None, 1\)"):
        export_for_serving(binary, str(tmp_path / "c1"), input_signature=spec)
    inputs = keras.Input((4,), name="features")
    two = keras.Model(inputs, [keras.layers.Dense(3)(inputs), keras.layers.Dense(2)(inputs)])
    with pytest.raises(ValueError, match=r"must have one output .* got 2"):
        export_for_serving(two, str(tmp_path / "d"))
    one_column = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match=r"one value per class.*\(None, 1\)"):
        export_for_serving(one_column, str(tmp_path / "e"))
    per_step = keras.Sequential([keras.Input((5, 4)), keras.layers.Dense(3)])  # (batch, 5, 3)
    with pytest.raises(ValueError, match=r"shape \(batch, classes >= 2\), got \(None, 5, 3\)"):
        export_for_serving(per_step, str(tmp_path / "f"))
    assert sorted(os.listdir(tmp_path)) == []


def test_export_refuses_folders_it_must_not_replace(tmp_path):
    model = keras.Sequential([keras.Input((4,), name="features"), keras.layers.Dense(3)])
    unrelated = tmp_path / "notes"
    unrelated.mkdir()
    (unrelated / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"`path` .*notes.* non-empty folder that is not a"):
        export_for_serving(model, str(unrelated))
    assert os.listdir(unrelated) == ["keep.txt"]
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ValueError, match=r"`path` must be a folder.*got a file"):
        export_for_serving(model, str(a_file))
    (tmp_path / "empty").mkdir()
    assert export_for_serving(model, str(tmp_path / "empty"), temperature=np.array(2.0)) == 2.0
    with pytest.raises(ValueError, match=r"already holds a SavedModel; pass `overwrite=True`"):
        export_for_serving(model, str(tmp_path / "empty"), overwrite=False)
    assert os.path.isfile(tmp_path / "empty" / "saved_model.pb")


@contextlib.contextmanager
def _read_only(folder):
    """Make `folder` read-only for this process (as root: act as `nobody` meanwhile)."""
    os.chmod(folder, 0o555)
    as_root = hasattr(os, "geteuid") and os.geteuid() == 0
    try:
        if as_root:
            os.seteuid(65534)
        yield
    finally:
        if as_root:
            os.seteuid(0)
        os.chmod(folder, 0o755)


def test_export_to_a_read_only_folder_is_a_clear_error():
    model = keras.Sequential([keras.Input((4,), name="features"), keras.layers.Dense(3)])
    root = tempfile.mkdtemp()
    os.chmod(root, 0o755)  # mkdtemp's 0700 would block `nobody` before the folder under test
    try:
        base = os.path.join(root, "model")
        earlier = os.path.join(base, "1")
        export_for_serving(model, earlier, temperature=2.0)
        with _read_only(base):
            for target in (earlier, os.path.join(base, "2")):  # replace, or a new version
                message = re.escape(repr(target)) + ".*not writable"
                with pytest.raises(PermissionError, match=message):
                    export_for_serving(model, target, temperature=3.0)
        with _read_only(root):
            target = os.path.join(root, "other", "1")  # its parent cannot be created
            with pytest.raises(PermissionError, match=re.escape(repr(target)) + ".*not writable"):
                export_for_serving(model, target)
        assert sorted(os.listdir(base)) == ["1"] and sorted(os.listdir(root)) == ["model"]
        assert os.path.isfile(os.path.join(earlier, "saved_model.pb"))  # the earlier one intact
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_temperature_callback_refuses_empty_or_mismatched_validation_data(rng):
    x = rng.normal(size=(10, 4)).astype("float32")
    y = rng.integers(0, 3, 10)
    with pytest.raises(ValueError, match=r"`validation_data` has no samples"):
        TemperatureScalingCallback(validation_data=(x[:0], y[:0]))
    with pytest.raises(ValueError, match=r"`validation_data` must hold as many labels.* 8 labels"):
        TemperatureScalingCallback(validation_data=(x, y[:8]))
    with pytest.raises(ValueError, match=r"`validation_data` has no samples"):
        TemperatureScalingCallback(validation_data=({"a": x[:0], "b": x[:0]}, y[:0]))
    import tensorflow as tf

    empty = tf.data.Dataset.from_tensor_slices((x[:0], y[:0])).batch(4)
    model = _compile(keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)]))
    with pytest.raises(ValueError, match=r"`validation_data` yielded no batches"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[TemperatureScalingCallback(empty)])


def test_export_never_deletes_what_is_not_part_of_a_saved_model(tmp_path, monkeypatch):
    model = keras.Sequential([keras.Input((4,), name="features"), keras.layers.Dense(3)])
    path = str(tmp_path / "model" / "1")
    export_for_serving(model, path, temperature=2.0)
    warmup = os.path.join(path, "assets.extra", "tf_serving_warmup_requests")
    os.makedirs(os.path.dirname(warmup))
    with open(warmup, "wb") as f:
        f.write(b"requests")
    with pytest.raises(ValueError, match=r"other files \(assets.extra\).*would delete"):
        export_for_serving(model, path, temperature=3.0)
    assert open(warmup, "rb").read() == b"requests"
    link = str(tmp_path / "link")
    os.symlink(path, link)
    with pytest.raises(ValueError, match="symbolic link"):
        export_for_serving(model, link, temperature=3.0)
    shutil.rmtree(os.path.join(path, "assets.extra"))
    monkeypatch.chdir(path)  # the working directory (or a parent) is never replaced
    with pytest.raises(ValueError, match="working directory"):
        export_for_serving(model, path, temperature=3.0)
    with pytest.raises(ValueError, match="working directory"):
        export_for_serving(model, str(tmp_path / "model"), temperature=3.0)
    assert os.path.isfile(os.path.join(path, "saved_model.pb"))


def test_export_takes_keras_input_specs_as_the_signature(tmp_path):
    """Keras's own spec, as `model.export` takes it, is a spec too (not only tf.TensorSpec)."""
    called = SubclassedNet()
    called(np.zeros((1, 4), "float32"))
    export_for_serving(called, str(tmp_path / "d"),
                       input_signature=[keras.InputSpec(shape=(None, 4), dtype="float32")])
    assert (tmp_path / "d" / "saved_model.pb").exists()
