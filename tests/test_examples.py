"""Every example runs end to end in its quick mode."""

import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "3"}  # this checkout's package
EXAMPLES = sorted(
    f for f in os.listdir(os.path.join(ROOT, "examples")) if f.endswith(".py")
)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="examples use TF")
@pytest.mark.parametrize("name", EXAMPLES)
def test_example_quick_mode(name, tmp_path):
    result = subprocess.run(  # run from a scratch folder: examples write under ./runs
        [sys.executable, os.path.join(ROOT, "examples", name), "--quick"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env=ENV,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip(), "an example must show its result"
    # Before: only "printed something". Now what each prints obeys its invariants.
    CHECKS[name](result.stdout, tmp_path)


def _table(stdout, names):
    """{row name: [numbers]} of the rows of a printed table that start with one of `names`."""
    rows = {}
    for line in stdout.splitlines():
        for name in names:
            if line.startswith(name):
                rows[name] = [float(v) for v in re.findall(r"-?\d+\.\d+", line[len(name):])]
    assert set(rows) == set(names), stdout
    return rows


def _check_temperature_example(stdout, folder):
    temperature = float(re.search(r"fitted temperature T = ([\d.]+)", stdout).group(1))
    assert temperature > 0
    rows = _table(stdout, ["before (T = 1)", "after (T = "])
    before, after = rows["before (T = 1)"], rows["after (T = "][1:]  # skip the T in the name
    assert before[0] == after[0]  # dividing logits by T > 0 keeps every argmax: same accuracy
    for values in (before, after):
        assert 0 <= values[0] <= 1 and values[1] > 0 and 0 <= values[2] <= 1
    served = stdout.split("served probabilities of 3 test points:")[1]
    probs = np.array([[float(v) for v in re.findall(r"\d\.\d*", row)]
                      for row in served.strip().splitlines()])
    assert probs.shape == (3, 3)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=2e-3)  # printed to 3 decimals
    export = re.search(r"SavedModel for TF Serving: (\S+)", stdout).group(1)
    assert os.path.exists(os.path.join(folder, export, "saved_model.pb"))


def _check_ils_example(stdout, folder):
    rows = _table(stdout, ["teacher (No LS)", "teacher + TempS", "ILS1", "ILS2", "ILS "])
    assert rows["teacher (No LS)"][0] == rows["teacher + TempS"][0]  # T keeps the argmax
    for values in rows.values():
        assert 0 <= values[0] <= 1 and values[1] > 0  # accuracy, NLL


def _check_lls_example(stdout, folder):
    accuracy, bayes = (float(v) for v in re.search(
        r"test accuracy: ([\d.]+)\s+\(Bayes-optimal on the same test set: ([\d.]+)\)",
        stdout).groups())
    assert 0 <= accuracy <= 1 and abs(bayes - 0.82) < 0.03  # ILS paper Table V: 81.98 %
    q = np.array([[float(v) for v in line.split()[2:]] for line in stdout.splitlines()
                  if re.match(r"class \d  ", line)])
    assert q.shape == (3, 3)
    np.testing.assert_allclose(q.sum(1), 1.0, atol=2e-3)  # rows of Q are distributions
    assert q.min() >= 0


def _check_multihost_example(stdout, folder):
    assert "process 0 of 1: 1 device(s) in the job" in stdout, stdout
    assert all(f"{m}: trained" in stdout for m in ("lls", "lspp", "ils")), stdout
    rows = np.array([[float(v) for v in line.split()[2:]] for line in stdout.splitlines()
                     if re.match(r"\s+class \d  ", line)])
    assert rows.shape == (6, 3)  # Q of LLS, then C of LS++
    np.testing.assert_allclose(rows.sum(1), 1.0, atol=2e-3)
    assert rows.min() >= 0 and np.all(np.diag(rows[3:]) == 0)  # C has a zero diagonal


CHECKS = {"temperature_scaling_and_export.py": _check_temperature_example,
          "multihost_data_parallel.py": _check_multihost_example,
          "ils_teacher_student.py": _check_ils_example,
          "lls_quickstart.py": _check_lls_example}


def test_every_example_has_its_checks():
    assert set(CHECKS) == set(EXAMPLES)


def test_lls_quickstart_full_run_learns_the_task_geometry(tmp_path):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("examples use TF")
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "lls_quickstart.py"), "--epochs", "30"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env=ENV,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "class 0 is most related to class 1" in result.stdout, result.stdout
