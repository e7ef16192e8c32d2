"""The Keras backend is part of what a teacher cache, a comparison folder and a search folder
record, so a folder shared between backends never mixes their results (issue 17, item 7).

A folder made under another backend is simulated by the one field it would differ in: the
stored `backend` of its settings (the teacher key is computed under JAX in a real subprocess).
"""

import json
import os
import subprocess
import sys

import keras
import pytest

from keras_smooth import datasets, tuning
from keras_smooth.training.teacher import teacher_cache_key
from keras_smooth.workflows import run_comparison

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = {"n_train": 20, "n_val": 20, "n_test": 60}

KEY_SCRIPT = """
import keras
from keras_smooth import datasets
from keras_smooth.training.teacher import teacher_cache_key

def tiny(input_shape, num_classes):
    return keras.Sequential([keras.Input(input_shape), keras.layers.Dense(8, activation="relu"),
                             keras.layers.Dense(num_classes)])

data = datasets.load("gaussian", seed=0, n_train=20, n_val=20, n_test=60)
print(teacher_cache_key(tiny, data, epochs=2, batch_size=32, seed=0, learning_rate=1e-3))
"""


def tiny(input_shape, num_classes):
    return keras.Sequential([keras.Input(input_shape), keras.layers.Dense(8, activation="relu"),
                             keras.layers.Dense(num_classes)])


def _key_in_subprocess(backend):
    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": ROOT,
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", KEY_SCRIPT], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1]


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="compares TF with JAX")
def test_the_teacher_cache_key_depends_on_the_backend_and_nothing_else():
    pytest.importorskip("jax")
    data = datasets.load("gaussian", seed=0, **SMALL)
    here = teacher_cache_key(tiny, data, epochs=2, batch_size=32, seed=0, learning_rate=1e-3)
    assert _key_in_subprocess("tensorflow") == here  # same inputs, same backend: same key
    assert _key_in_subprocess("jax") != here


def test_a_comparison_folder_of_another_backend_is_refused_in_one_line(tmp_path):
    out = tmp_path / "out"
    run_comparison(dataset="gaussian", methods=["no_ls"], replicates=1, epochs=1,
                   batch_size=32, grid="quick", output=str(out), dataset_options=SMALL,
                   build_model=tiny)
    path = out / "results.json"
    stored = json.loads(path.read_text())
    assert stored["settings"]["backend"] == keras.backend.backend()
    stored["settings"]["backend"] = "jax" if keras.backend.backend() != "jax" else "tensorflow"
    path.write_text(json.dumps(stored))
    with pytest.raises(ValueError, match=r"holds a run with other settings \(backend\)"):
        run_comparison(dataset="gaussian", methods=["no_ls"], replicates=1, epochs=1,
                       batch_size=32, grid="quick", output=str(out), dataset_options=SMALL,
                       build_model=tiny)


def test_a_search_folder_of_another_backend_is_refused(tmp_path):
    directory = tmp_path / "search"
    settings = dict(data=datasets.load("gaussian", seed=0, **SMALL), build_model=tiny,
                    tuner="random", max_trials=1, epochs=1, batch_size=64, strategy="none",
                    directory=str(directory), export=False)
    tuning.run_search("ls", **settings)
    path = directory / "search.json"
    stored = json.loads(path.read_text())
    assert stored["backend"] == keras.backend.backend()
    stored["backend"] = "jax" if keras.backend.backend() != "jax" else "tensorflow"
    path.write_text(json.dumps(stored))
    before = path.read_text()
    with pytest.raises(ValueError, match=r"other settings \(backend\)"):
        tuning.run_search("ls", **settings)
    assert path.read_text() == before
