"""Run the backend-agnostic tests again under KERAS_BACKEND=jax.

The backend is fixed when Keras is imported, so the JAX run is a separate
pytest process; its output is shown when it fails.
"""

import os
import subprocess
import sys

import keras
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AGNOSTIC = [
    "tests/test_targets.py",
    "tests/test_losses.py",
    "tests/test_baselines.py",
    "tests/test_matrix_training_any_backend.py",
    "tests/test_calibration.py",
    "tests/test_trust_losses.py",
    "tests/test_trust_metrics.py",
    "tests/test_trust_review.py",
    "tests/test_trust_saving.py",
    "tests/test_trust_temperature.py",
    "tests/test_trust_adversary.py",
    "tests/test_speed_exactness.py",
    "tests/test_targets_builders.py",
    "tests/test_losses_layout.py",
    "tests/test_registry.py",
    "tests/test_review_registry.py",
    "tests/test_sparse_q.py",
    "keras_smooth/targets.py",
    "keras_smooth/calibration.py",
    "keras_smooth/metrics",
    "keras_smooth/losses",
    "keras_smooth/layers",
]


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="launched from the TF run")
def test_backend_agnostic_suite_passes_on_jax():
    pytest.importorskip("jax")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *AGNOSTIC],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "KERAS_BACKEND": "jax"},
    )
    tail = (result.stdout + result.stderr)[-4000:]
    assert result.returncode == 0, tail
    assert " passed" in result.stdout and " failed" not in result.stdout, tail
