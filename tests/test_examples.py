"""Every example runs end to end in its quick mode."""

import os
import subprocess
import sys

import keras
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = sorted(
    f for f in os.listdir(os.path.join(ROOT, "examples")) if f.endswith(".py")
)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="examples use TF")
@pytest.mark.parametrize("name", EXAMPLES)
def test_example_quick_mode(name, tmp_path):
    result = subprocess.run(  # run from a scratch folder: examples write under ./runs
        [sys.executable, os.path.join(ROOT, "examples", name), "--quick"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip(), "an example must show its result"


def test_lls_quickstart_full_run_learns_the_task_geometry(tmp_path):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("examples use TF")
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "lls_quickstart.py"), "--epochs", "30"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "class 0 is most related to class 1" in result.stdout, result.stdout
