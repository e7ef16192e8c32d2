"""Run the backend-agnostic tests again under KERAS_BACKEND=jax (and torch, if installed).

The backend is fixed when Keras is imported, so each run is a separate pytest
process; its output is shown when it fails. torch is not a dependency (its
wheel is large): the torch run is skipped where torch is not installed, and
runs the files listed in `TORCH` (those of `AGNOSTIC` known to pass there).
"""

import importlib.util
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
    "tests/test_backend_targets.py",
    "tests/test_backend_export.py",
    "tests/test_sweep_losses.py",
    "keras_smooth/targets.py",
    "keras_smooth/calibration.py",
    "keras_smooth/metrics",
    "keras_smooth/losses",
    "keras_smooth/layers",
]
# What the torch rerun covers (when torch is installed): the tf.data targets, the export's
# refusal, analysis through the wrapper, and the target and layer doctests. The other
# AGNOSTIC files are not all torch-clean (several compute reference gradients with JAX);
# the README's "Backends" section records what was run by hand.
TORCH = [
    "tests/test_targets.py",
    "tests/test_backend_targets.py",
    "tests/test_backend_export.py",
    "tests/test_backend_analysis.py",
    "keras_smooth/targets.py",
    "keras_smooth/layers",
]


def _rerun(backend, files):
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "KERAS_BACKEND": backend},
    )
    tail = (result.stdout + result.stderr)[-4000:]
    assert result.returncode == 0, tail
    assert " passed" in result.stdout and " failed" not in result.stdout, tail


# The JAX rerun in two halves of about equal time (2.5 min each on 2 cores), so that the
# README's `pytest -n 2` runs them side by side: one process for all of AGNOSTIC was the
# suite's longest test by far (5 to 7.5 min).
FIRST_HALF = {
    "tests/test_sweep_losses.py", "tests/test_sparse_q.py", "tests/test_trust_metrics.py",
    "tests/test_speed_exactness.py", "tests/test_calibration.py", "tests/test_baselines.py",
    "keras_smooth/targets.py", "keras_smooth/calibration.py", "keras_smooth/metrics",
    "keras_smooth/losses", "keras_smooth/layers",
}
HALVES = {"first": [f for f in AGNOSTIC if f in FIRST_HALF],
          "second": [f for f in AGNOSTIC if f not in FIRST_HALF]}


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="launched from the TF run")
@pytest.mark.parametrize("half", sorted(HALVES))
def test_backend_agnostic_suite_passes_on_jax(half):
    pytest.importorskip("jax")
    _rerun("jax", HALVES[half])


def test_the_two_jax_halves_cover_agnostic_once():
    assert len(set(AGNOSTIC)) == len(AGNOSTIC)
    assert FIRST_HALF <= set(AGNOSTIC)
    assert sorted(HALVES["first"] + HALVES["second"]) == sorted(AGNOSTIC)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="launched from the TF run")
def test_backend_agnostic_suite_passes_on_torch():
    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed (not a dependency of keras_smooth)")
    _rerun("torch", TORCH)
