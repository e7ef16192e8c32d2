"""The teacher cache and `keras-smooth compare` end to end (quick mode)."""

import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from keras_smooth import datasets
from keras_smooth.workflows import METHODS, teacher_cache_key, train_teacher
from keras_smooth.workflows.compare import default_model

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="workflows use TF")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _wide_model(input_shape, num_classes):
    return keras.Sequential([keras.Input(input_shape), keras.layers.Dense(8, activation="relu"),
                             keras.layers.Dense(num_classes)])


def test_cache_key_changes_with_data_model_and_seed_only():
    a = datasets.load("gaussian", seed=0, n_test=20)
    same = datasets.load("gaussian", seed=0, n_test=20)
    other = datasets.load("gaussian", seed=1, n_test=20)
    key = lambda d, m=default_model, s=0: teacher_cache_key(  # noqa: E731
        m, d, epochs=5, batch_size=32, seed=s, learning_rate=1e-3)
    assert key(a) == key(same)  # layer names differ between builds; the key does not
    assert key(a) != key(other)
    assert key(a) != key(a, m=_wide_model)
    assert key(a) != key(a, s=3)


def test_teacher_is_trained_once_then_read_from_the_cache(tmp_path):
    data = datasets.load("gaussian", seed=0, n_test=50)
    first = train_teacher(_wide_model, data, epochs=3, batch_size=32, seed=0,
                          cache_dir=str(tmp_path))
    second = train_teacher(_wide_model, data, epochs=3, batch_size=32, seed=0,
                           cache_dir=str(tmp_path))
    assert not first.from_cache and second.from_cache
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(first.logits[split], second.logits[split])
    assert second.temperature == first.temperature > 0
    assert not any(name.endswith(".tmp.npz") for name in os.listdir(tmp_path))


def _compare(tmp_path, *args, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "keras_smooth", "compare", "--quick", "--output",
         str(tmp_path / "out"), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )


def test_compare_quick_end_to_end(tmp_path):
    result = _compare(tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "out"
    stored = json.loads((out / "results.json").read_text())
    assert stored["settings"]["dataset"] == "gaussian" and "version" in stored
    assert sorted({r["method"] for r in stored["records"]}) == sorted(METHODS)
    for r in stored["records"]:
        for key in ("accuracy", "nll", "ece", "classwise_ece", "brier", "accuracy_dense",
                    "accuracy_sparse"):
            assert np.isfinite(r[key]), (r["method"], key)
        assert 1 / 3 - 0.1 < r["accuracy"] <= 1.0
    temps = {r["method"]: r for r in stored["records"]}
    assert temps["no_ls_temps"]["accuracy"] == temps["no_ls"]["accuracy"]  # TempS keeps the argmax
    assert temps["lls"]["matrix"] and np.allclose(np.sum(temps["lls"]["matrix"], 1), 1.0)
    assert np.allclose(np.diag(temps["lspp"]["matrix"]), 0.0)
    rows = (out / "results.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + len(METHODS)
    for name in ("reliability.png", "ils_smoothing_curves.png", "matrices.png",
                 "decision_regions.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC, name
    assert "Bayes-optimal" in result.stdout and "ILS + TempS" in result.stdout


def test_resume_keeps_finished_results_and_refuses_other_settings(tmp_path):
    first = _compare(tmp_path, "--methods", "no_ls,ls")
    assert first.returncode == 0, first.stderr[-3000:]
    results = tmp_path / "out" / "results.json"
    before = {r["method"]: r for r in json.loads(results.read_text())["records"]}
    ls_file = tmp_path / "out" / "predictions" / "ls-0.npz"
    stamp = ls_file.stat().st_mtime_ns
    second = _compare(tmp_path, "--methods", "no_ls,ls,lls")
    assert second.returncode == 0, second.stderr[-3000:]
    after = {r["method"]: r for r in json.loads(results.read_text())["records"]}
    assert set(after) == {"no_ls", "ls", "lls"}
    assert after["ls"] == before["ls"] and after["no_ls"] == before["no_ls"]
    assert ls_file.stat().st_mtime_ns == stamp  # not recomputed
    other = _compare(tmp_path, "--epochs", "3")
    assert other.returncode == 2
    assert "holds a run with other settings (training.max_epochs)" in other.stderr


def test_interrupted_run_resumes_without_corruption(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "keras_smooth", "compare", "--quick", "--output", str(out)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    predictions = out / "predictions"

    def finished():  # whole prediction files (a write in flight is `NAME.tmp.npz`)
        return [p for p in predictions.glob("*.npz") if ".tmp" not in p.name]

    try:
        deadline = time.time() + 300
        while time.time() < deadline:  # kill mid-run: some methods trained, not all
            if predictions.is_dir() and len(finished()) >= 3:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)  # the harshest interruption
    finally:
        proc.wait(timeout=60)
    saved = {p.name: p.stat().st_mtime_ns for p in finished()}
    assert 3 <= len(saved)
    results = out / "results.json"
    partial = json.loads(results.read_text())["records"] if results.exists() else []
    assert len(partial) < len(METHODS)
    resumed = _compare(tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "corrupt" not in resumed.stderr  # every file left by the kill is whole
    final = json.loads(results.read_text())["records"]
    assert sorted(r["method"] for r in final) == sorted(METHODS)
    kept = {r["method"]: r for r in final}
    for r in partial:
        assert kept[r["method"]] == r
    for name, stamp in saved.items():  # finished methods are reused, not retrained
        assert (predictions / name).stat().st_mtime_ns == stamp, name


@pytest.mark.parametrize(
    "args,message",
    [
        (["--methods", "ls,foo"],
         "Unknown method 'foo'; registered methods: no_ls, no_ls_temps, ls"),
        (["--dataset", "mnist"],
         "Unknown dataset 'mnist'; choose one of: gaussian, digits, fashion_mnist, tfds:NAME"),
        (["--dataset", "fashion_mnist", "--fashion-mnist-dir", "/nonexistent/fm"],
         "/nonexistent/fm does not exist"),
        (["--dataset", "digits", "--train-limit", "100"],
         "--train-limit applies to --dataset fashion_mnist only"),
    ],
)
def test_bad_input_gives_one_clear_line(tmp_path, args, message):
    result = _compare(tmp_path, *args, timeout=120)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_unwritable_output_gives_one_clear_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = subprocess.run(
        [sys.executable, "-m", "keras_smooth", "compare", "--quick", "--output",
         str(blocker / "sub")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    # Refused while parsing the command line (argparse's usage and one-line error), before any work.
    assert "argument --output:" in result.stderr and "cannot be created" in result.stderr
    assert "Traceback" not in result.stderr


def test_reused_model_trains_exactly_like_a_fresh_one():
    from keras_smooth.training.fitting import ReusableModel, fit_classifier

    data = datasets.load("gaussian", seed=2, n_test=10)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    fresh = fit_classifier(_wide_model, data, data.y_train, loss, epochs=6, batch_size=32, seed=4)
    shared = ReusableModel(_wide_model, data, loss, 4, 1e-3)
    fit_classifier(_wide_model, data, (data.y_train + 1) % 3, loss, epochs=6, batch_size=32,
                   seed=4, reusable=shared)
    again = fit_classifier(_wide_model, data, data.y_train, loss, epochs=6, batch_size=32,
                           seed=4, reusable=shared)
    assert again.best_epoch == fresh.best_epoch
    np.testing.assert_array_equal(again.model.predict(data.x_val, verbose=0),
                                  fresh.model.predict(data.x_val, verbose=0))


def test_every_baseline_runs_in_the_comparison(tmp_path):
    from keras_smooth.workflows import BASELINE_METHODS, parse_methods, run_comparison

    assert parse_methods("ls,baselines") == ("ls",) + BASELINE_METHODS
    records = run_comparison(dataset="gaussian", methods=BASELINE_METHODS, replicates=1, epochs=2,
                             batch_size=64, grid="quick", output=str(tmp_path),
                             dataset_options={"n_test": 60}, build_model=_wide_model)
    assert [r["method"] for r in records] == list(BASELINE_METHODS)
    for r in records:
        assert all(np.isfinite(r[k]) for k in ("accuracy", "nll", "ece", "classwise_ece"))
    by = {r["method"]: r for r in records}
    assert by["beta"]["hyperparameters"] == {"epsilon": 0.1}
    assert by["cls"]["hyperparameters"] == {"epsilon": 0.1}
    similarity = np.asarray(by["cls"]["matrix"])  # cLS: zero diagonal, rows sum to one
    assert np.allclose(np.diag(similarity), 0.0) and np.allclose(similarity.sum(1), 1.0)
    soft = np.asarray(by["ols"]["matrix"])  # OLS: the soft matrix after the last epoch
    assert np.allclose(soft.sum(1), 1.0, atol=1e-5)
