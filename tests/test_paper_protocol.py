"""The ILS paper's training protocol on its synthetic task (issue 15).

Appendix A-B of the ILS paper: Adam at learning rate 1e-2, at most 500 epochs,
early stopping after 10 epochs without improvement of the validation loss, and
the weights of the epoch with the lowest validation loss. That is the default
training of `compare` and of the tuner on the synthetic task, recorded in
results.json; the benchmark's paired statistics are checked against NumPy.
"""

import importlib.util
import json
import os

import keras
import numpy as np
import pytest

from keras_smooth import datasets
from keras_smooth.datasets import ClassificationData
from keras_smooth.training import TrainingProtocol, fit_classifier, protocol_for
from keras_smooth.training.teacher import teacher_cache_key
from keras_smooth.workflows import run_comparison

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = {"n_train": 20, "n_val": 20, "n_test": 60}


def tiny(input_shape, num_classes):
    return keras.Sequential([keras.Input(input_shape), keras.layers.Dense(16, activation="relu"),
                             keras.layers.Dense(num_classes)])


def _benchmark():
    path = os.path.join(ROOT, "benchmarks", "reproduce_ils_synthetic.py")
    spec = importlib.util.spec_from_file_location("reproduce_ils_synthetic", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_synthetic_task_trains_with_the_appendix_protocol_and_others_keep_theirs():
    paper = protocol_for("gaussian")
    assert (paper.optimizer, paper.learning_rate, paper.max_epochs, paper.patience) == (
        "adam", 1e-2, 500, 10)
    assert "lowest validation" in paper.as_dict()["restored"]
    for other in ("digits", "fashion_mnist", "tfds:mnist"):
        assert protocol_for(other) == TrainingProtocol(learning_rate=1e-3, batch_size=32,
                                                       max_epochs=60, patience=None)
    with pytest.raises(ValueError, match="batch_size"):
        TrainingProtocol(batch_size="half")
    with pytest.raises(ValueError, match="learning_rate"):
        TrainingProtocol(learning_rate=float("nan"))
    with pytest.raises(ValueError, match="patience"):
        TrainingProtocol(patience=0)


def test_results_json_records_the_whole_protocol_and_the_teacher_key_depends_on_it(tmp_path):
    run_comparison(dataset="gaussian", methods=["no_ls"], replicates=1, epochs=2, grid="quick",
                   output=str(tmp_path / "run"), dataset_options=SMALL, build_model=tiny)
    with open(tmp_path / "run" / "results.json") as f:
        training = json.load(f)["settings"]["training"]
    assert training["optimizer"] == "adam"
    assert training["learning_rate"] == 0.01
    assert training["batch_size"] == 32
    assert training["max_epochs"] == 2  # `epochs` replaces the protocol's 500
    assert training["early_stopping_patience"] == 10
    assert "lowest validation cross-entropy" in training["restored"]
    data = datasets.load("gaussian", seed=0, **SMALL)
    keys = {teacher_cache_key(tiny, data, epochs=2, batch_size=32, seed=0, learning_rate=1e-2,
                              patience=p) for p in (None, 10, 11)}
    assert len(keys) == 3
    with pytest.raises(TypeError, match="protocol"):
        run_comparison(dataset="gaussian", methods=["no_ls"], protocol={"patience": 10},
                       output=str(tmp_path / "bad"))


def test_the_tuner_trains_the_synthetic_task_with_the_appendix_protocol(tmp_path):
    from keras_smooth import tuning

    data = datasets.load("gaussian", seed=0, **SMALL)
    tuning.run_search("ls", data=data, build_model=tiny, tuner="random", max_trials=1,
                      epochs=2, strategy="none", directory=str(tmp_path / "s"), export=False)
    with open(tmp_path / "s" / "search.json") as f:
        stored = json.load(f)
    assert (stored["learning_rate"], stored["patience"], stored["epochs"]) == (0.01, 10, 2)
    assert stored["training"]["optimizer"] == "adam"
    assert stored["training"]["batch_size"] == 32


class _Recorder(keras.callbacks.Callback):
    """Validation NLL (NumPy, from logits) and validation logits after every epoch."""

    def __init__(self, x_val, y_val):
        super().__init__()
        self.x_val, self.y_val, self.nll, self.logits = x_val, y_val, [], []

    def on_epoch_end(self, epoch, logs=None):
        logits = np.asarray(self.model.predict_on_batch(self.x_val), "float64")
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        self.nll.append(-log_p[np.arange(len(self.y_val)), self.y_val].mean())
        self.logits.append(logits)


def test_early_stopping_stops_after_patience_and_restores_the_best_epoch():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(60, 2)).astype("float32")
    y = rng.integers(0, 3, size=60).astype("int32")  # no signal: the model overfits at once
    data = ClassificationData("noise", x[:30], y[:30], x[30:], y[30:], x[30:], y[30:],
                              ["a", "b", "c"])
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    for patience in (2, 4):
        recorder = _Recorder(data.x_val, data.y_val)
        trained = fit_classifier(tiny, data, data.y_train, loss, epochs=80, batch_size=8, seed=0,
                                 learning_rate=0.05, patience=patience, callbacks=[recorder])
        nll = np.asarray(recorder.nll)
        # The first epoch that is `patience` epochs after the best so far ends the training.
        stops = [e for e in range(len(nll)) if e - int(np.argmin(nll[:e + 1])) >= patience]
        assert stops, "the noise problem must trigger early stopping"
        assert trained.epochs_trained == len(nll) == stops[0] + 1 < 80
        best = int(np.argmin(nll))
        assert trained.best_epoch == best + 1
        assert np.isclose(trained.best_val_nll, nll[best], atol=1e-5)
        restored = np.asarray(trained.model.predict(data.x_val, verbose=0), "float64")
        np.testing.assert_allclose(restored, recorder.logits[best], atol=1e-5)
        assert not np.allclose(restored, recorder.logits[-1], atol=1e-5)


def test_paired_differences_and_verdicts_match_numpy():
    bench = _benchmark()
    rng = np.random.default_rng(11)
    for trial in range(300):
        n = int(rng.integers(2, 40))
        a = rng.normal(size=n)
        b = a + rng.normal(loc=rng.normal(scale=0.5), scale=rng.uniform(0, 1), size=n)
        if trial % 10 == 0:
            b = a.copy()  # ties: every difference zero
        mean, se, count = bench.paired_difference(a, b)
        diff = a - b
        want_se = np.sqrt(np.sum((diff - diff.sum() / n) ** 2) / (n - 1) / n)
        assert count == n
        assert np.isclose(mean, diff.sum() / n, atol=1e-12)
        assert np.isclose(se, want_se, atol=1e-12)
        paper = rng.choice([-1.0, 1.0]) * rng.uniform(0.001, 0.1)
        verdict = bench.verdict(paper, mean, se)
        if abs(mean) <= 2 * want_se:
            assert verdict == "not resolved"
        else:
            assert verdict == ("holds" if (mean > 0) == (paper > 0) else "reversed")
    assert bench.verdict(0.0, -1.0, 0.01) == "not resolved"  # the paper's rows tie
    mean, se, count = bench.paired_difference([0.3], [0.1])
    assert (count, np.isnan(se), bench.verdict(1.0, mean, se)) == (1, True, "not resolved")
    with pytest.raises(ValueError, match="equal-length"):
        bench.paired_difference([1.0, 2.0], [1.0])
