"""The workflows, command lines and examples on torch, against TensorFlow (issue 17).

Skipped where torch is not installed (CI machines do not have it). The same worker and
the same checks as `test_jax_workflows.py` (see its docstring for the tolerances), except
data parallelism: torch gets none here, so strategy="mirrored" must be refused, naming the
backend, and strategy="none" trains.
"""

import importlib.util

import keras
import pytest

import backend_worker
from test_jax_workflows import (check_command_lines, check_examples, check_plain_model,
                                check_same_training, run_worker)

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch not installed"),
    pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                       reason="launched from the TensorFlow run, which it compares to"),
]


@pytest.fixture(scope="module")
def torch_run(tmp_path_factory):
    return run_worker("torch", tmp_path_factory.mktemp("torch"))


def test_workflows_train_the_same_models_as_on_tensorflow(torch_run):
    assert torch_run["train"]["backend"] == "torch"
    check_same_training(torch_run["train"], backend_worker.train())


def test_plain_model_evaluates_and_predicts_but_refuses_to_train(torch_run):
    check_plain_model(torch_run["plain"], "torch")


def test_compare_and_tune_command_lines(torch_run):
    check_command_lines(torch_run["cli"], "torch")


def test_examples(torch_run):
    check_examples(torch_run["examples"])


def test_tuning_in_code_without_data_parallelism(torch_run):
    search = torch_run["search"]
    assert search["none"]["val_nll"] > 0 and set(search["none"]["devices_seen"]) == {None}
    error = search["mirrored"]["error"]
    assert "strategy='mirrored'" in error and "torch backend" in error, error


def test_distillation_packed_targets_under_torch(tmp_path):
    """Dis packs labels and teacher logits in `y_true`; Keras's shape inference on torch's
    "meta" device (tensors without values) must not trip the loss's value checks."""
    import os
    import subprocess
    import sys

    from test_jax_workflows import ROOT

    env = {**os.environ, "KERAS_BACKEND": "torch", "PYTHONPATH": ROOT,
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-m", "keras_smooth", "compare", "--quick",
                             "--methods", "dis", "--epochs", "1", "--output", str(tmp_path)],
                            capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert any(line.startswith("Dis ") for line in result.stdout.splitlines()), result.stdout
