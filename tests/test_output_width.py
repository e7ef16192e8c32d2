"""Output that fits (issue 16, item 3): at COLUMNS=100 or 80 no printed line is wider.

At any width the metric columns are split into as many tables as fit (each
repeating the method column) and the hyperparameters follow as a wrapped list;
80 columns gives two metric tables on the synthetic task (5 + 2 columns with
standard errors), 100 gives one table when the replicates have no standard
error. `--wide` (width None) keeps one line per method with everything.
"""

import io
import os
import subprocess
import sys

import pytest

from keras_smooth import cli
from keras_smooth.tuning import format_trials
from keras_smooth.workflows import report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = ["no_ls", "no_ls_temps", "ls", "ls_temps", "ils", "ils_temps", "lls"]


def _records(replicates):
    records = []
    for r in range(replicates):
        for i, name in enumerate(METHODS):
            from keras_smooth import methods

            method = methods.get(name)
            base = methods.get(method.temperature_of or name)
            params = {p: values[0] for p, values in base.grid("small").items()}
            records.append({
                "method": name, "label": method.label, "replicate": r,
                "accuracy": 0.78 + 0.01 * i + 0.001 * r, "nll": 0.55 - 0.01 * i + 0.002 * r,
                "ece": 0.04 + 0.001 * i, "classwise_ece": 0.06 - 0.002 * i, "brier": 0.3,
                "accuracy_dense": 0.8, "accuracy_sparse": 0.5 + 0.01 * r,
                "hyperparameters": params, "temperature": 1.1 + 0.1 * r,
                "bayes": {"accuracy": 0.82, "nll": 0.44, "ece": 0.007, "classwise_ece": 0.02,
                          "brier": 0.25, "accuracy_dense": 0.83, "accuracy_sparse": 0.78}})
    return records


@pytest.mark.parametrize("replicates", [1, 3])
@pytest.mark.parametrize("width", [100, 80])
def test_results_table_fits_and_keeps_every_value(width, replicates):
    records = _records(replicates)
    rows = report.summarise(records, METHODS)
    wide = report.format_table(rows, records, "gaussian")
    fitted = report.format_table(rows, records, "gaussian", width=width)
    assert max(len(line) for line in wide.splitlines()) > 100  # the old table (161 columns)
    assert max(len(line) for line in fitted.splitlines()) <= width
    for row in rows:  # every label, every hyperparameter text and every cell is still shown
        assert row["label"] in fitted and row["params"] in fitted.replace("\n    ", " ")
        for key, _, _ in report.COLUMNS + report.SYNTHETIC_COLUMNS:
            assert f"{row[key][0]:.4f}" in fitted
    for title in ("accuracy", "NLL", "ECE", "cwECE", "Brier", "acc dense", "acc sparse"):
        assert title in fitted
    assert "Bayes-optimal" in fitted


def test_wide_table_is_one_line_per_method_with_the_hyperparameters():
    records = _records(3)
    rows = report.summarise(records, METHODS)
    lines = report.format_table(rows, records, "gaussian").splitlines()
    for row in rows:
        mine = [line for line in lines if line.startswith(row["label"] + " ")
                and row["params"] in line]
        assert len(mine) == 1, row["label"]


@pytest.mark.parametrize("width", [100, 80])
def test_trial_table_fits(width):
    rows = [{"trial_id": f"{i:02d}", "status": "COMPLETED",
             "values": {"p1": 0.9, "p2": 1.25, "temperature": 4.0, "a_long_hyperparameter": 1e-3},
             "val_nll": 0.5 + i / 100, "val_ece": 0.03} for i in range(4)]
    text = format_trials(rows, width=width)
    assert max(len(line) for line in text.splitlines()) <= width
    assert text.count("*") == 1 and "0.5000" in text
    # names are cut only when whole ones would not fit (the whole table is 90 columns)
    cut = width < 90
    assert ("a_long_hy~" in text) == cut and ("a_long_hyperparameter" in text) == (not cut)
    assert ("temperature" in text) == (not cut)


@pytest.mark.parametrize("width", [100, 80])
def test_progress_lines_fit(width):
    stream = io.StringIO()
    progress = cli.Progress(stream=stream, width=width)
    record = {"label": "A user's method with a long label", "accuracy": 0.8, "nll": 0.5,
              "ece": 0.03, "students_trained": 12, "seconds": 123.0}
    progress({"event": "done", "replicate": 9, "replicates": 10, "record": record})
    progress({"event": "skip", "replicate": 9, "replicates": 10})
    tune = cli.TuneProgress(stream=stream, width=width)
    tune({"event": "trial_end", "trial_id": "07", "status": "COMPLETED",
          "values": {"p1": 0.925, "p2": 1.25, "temperature": 16.0, "epsilon": 0.15},
          "val_nll": 0.51234, "val_ece": 0.0321})
    tune({"event": "teacher", "from_cache": False, "seconds": 12.0, "val_nll": 0.5,
          "temperature": 1.234})
    lines = stream.getvalue().splitlines()
    assert len(lines) >= 4
    assert max(len(line) for line in lines) <= width
    assert "A user's method with a long label" in stream.getvalue().replace("\n    ", " ")


@pytest.mark.parametrize("columns", [100, 80])
@pytest.mark.parametrize("command", [[], ["compare"], ["tune"]])
def test_help_fits(columns, command):
    env = {**os.environ, "PYTHONPATH": ROOT, "COLUMNS": str(columns)}
    done = subprocess.run([sys.executable, "-m", "keras_smooth", *command, "--help"],
                          capture_output=True, text=True, env=env, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert max(len(line) for line in done.stdout.splitlines()) <= columns


def test_the_width_is_columns_else_the_terminal_else_100_and_never_below_40(monkeypatch):
    """`terminal_width`: COLUMNS first; without it and without a terminal (the tests' stdout is
    captured) the documented 100; never narrower than 40."""
    monkeypatch.setenv("COLUMNS", "123")
    assert cli.terminal_width() == 123
    monkeypatch.setenv("COLUMNS", "10")
    assert cli.terminal_width() == 40
    monkeypatch.delenv("COLUMNS")
    monkeypatch.setattr(sys, "__stdout__", io.StringIO())  # no terminal behind stdout
    assert cli.terminal_width() == 100
