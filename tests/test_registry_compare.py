"""Issue 12, `compare` reads the method registry: a user's own Method runs next to the
built-ins from Python and from the command line, shows its label, resumes, and is recomputed
(with a warning) when it changes; every built-in trains through the generic `train_method`."""

import csv
import json
import os
import re
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest

import keras_smooth as ks
from keras_smooth import cli, datasets, methods
from keras_smooth.methods import Method
from keras_smooth.workflows import report, run_comparison, train_method, train_teacher
from user_methods import MY_METHODS

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="workflows use TF")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = {"n_train": 20, "n_val": 20, "n_test": 60}  # per class: 60 / 60 / 180 points


def tiny(input_shape, num_classes):
    return keras.Sequential([keras.Input(input_shape), keras.layers.Dense(8, activation="relu"),
                             keras.layers.Dense(num_classes)])


def _loss(params, num_classes):
    return ks.LabelSmoothingLoss(epsilon=params["epsilon"], num_classes=num_classes)


double_ls = Method(name="double_ls", label="Double LS", params={"epsilon": (0.02, 0.3)},
                   loss=_loss)  # the example, as written there
double_ls_temps = Method(name="double_ls_temps", label="Double LS + TempS",
                         temperature_of="double_ls")


def _log_softmax(z):
    z = np.asarray(z, "float64")
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


def _reference_metrics(labels, logits, temperature=1.0):
    """Accuracy and NLL written from their definitions."""
    log_p = _log_softmax(np.asarray(logits, "float64") / temperature)
    return {"accuracy": float(np.mean(log_p.argmax(1) == labels)),
            "nll": float(-np.mean(log_p[np.arange(len(labels)), labels]))}


def _compare(output, chosen, **kwargs):
    return run_comparison(dataset="gaussian", methods=chosen, replicates=1, epochs=2,
                          batch_size=32, grid="quick", output=str(output),
                          dataset_options=SMALL, build_model=tiny, **kwargs)


def _stamps(output):
    folder = output / "predictions"
    return {p.name: p.stat().st_mtime_ns for p in folder.glob("*.npz")}


def test_user_method_runs_beside_no_ls_resumes_and_is_redone_when_changed(tmp_path):
    out = tmp_path / "out"
    records = _compare(out, ["no_ls", double_ls, double_ls_temps])
    by = {r["method"]: r for r in records}
    assert [r["method"] for r in records] == ["no_ls", "double_ls", "double_ls_temps"]
    assert by["double_ls"]["label"] == "Double LS"
    assert by["double_ls_temps"]["label"] == "Double LS + TempS"
    assert by["double_ls"]["hyperparameters"]["epsilon"] in (0.02, 0.3)
    assert by["double_ls"]["students_trained"] == 1
    assert by["double_ls_temps"]["students_trained"] == 0
    data = datasets.load("gaussian", seed=0, **SMALL)
    stored = np.load(out / "predictions" / "double_ls-0.npz")
    for name, temperature in (("double_ls", 1.0), ("double_ls_temps", by["double_ls_temps"][
            "temperature"])):
        expected = _reference_metrics(data.y_test, stored["test_logits"], temperature)
        assert by[name]["accuracy"] == pytest.approx(expected["accuracy"], abs=1e-12)
        assert by[name]["nll"] == pytest.approx(expected["nll"], rel=1e-5)
    assert by["double_ls_temps"]["accuracy"] == by["double_ls"]["accuracy"]  # T keeps the argmax
    stamps = _stamps(out)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a resumed run reuses everything, silently
        resumed = _compare(out, ["no_ls", double_ls, double_ls_temps])
    assert resumed == records and _stamps(out) == stamps

    changed = Method(name="double_ls", label="Double LS", params={"epsilon": (0.05, 0.3)},
                     loss=_loss)  # the user edited their grid between runs
    with pytest.warns(UserWarning, match="another definition of method 'double_ls'"):
        redone = _compare(out, ["no_ls", changed, double_ls_temps])
    by_redone = {r["method"]: r for r in redone}
    assert by_redone["double_ls"]["hyperparameters"] == {"epsilon": 0.05}
    assert by_redone["no_ls"] == by["no_ls"]  # untouched
    assert by_redone["double_ls_temps"]["base"] == "double_ls"
    after = _stamps(out)
    assert after["no_ls-0.npz"] == stamps["no_ls-0.npz"]
    assert after["double_ls-0.npz"] != stamps["double_ls-0.npz"]
    assert len(json.loads((out / "results.json").read_text())["records"]) == 3


def test_an_edited_loss_body_with_the_same_name_is_recomputed(tmp_path):
    def edited(params, num_classes):  # same module and qualname as `_loss`, other code
        return ks.LabelSmoothingLoss(epsilon=2 * params["epsilon"], num_classes=num_classes)

    edited.__qualname__ = _loss.__qualname__
    assert edited.__module__ == _loss.__module__
    out = tmp_path / "out"
    _compare(out, [double_ls])
    again = Method(name="double_ls", label="Double LS", params={"epsilon": (0.02, 0.3)},
                   loss=edited)
    with pytest.warns(UserWarning, match="another definition of method 'double_ls'"):
        _compare(out, [again])


@pytest.mark.parametrize("chosen,error,message", [
    ([Method("ls", params={"epsilon": (0.1,)}, loss=_loss)], ValueError,
     "method 'ls' clashes with the registered method"),
    ([double_ls, Method("double_ls", params={"epsilon": (0.1,)}, loss=_loss)], ValueError,
     "two different methods named 'double_ls'"),
    ([double_ls_temps], ValueError, "rescales 'double_ls', which is neither in `methods` nor"),
    (["no_ls", 3], TypeError, "must hold method names, module:attribute strings or"),
    (["no_ls", "missing_module_xyz:double_ls"], ValueError, "cannot import 'missing_module_xyz'"),
    ("no_ls", TypeError, "got the string 'no_ls'"),
])
def test_bad_methods_are_refused_before_touching_the_disk(tmp_path, chosen, error, message):
    with pytest.raises(error, match=re.escape(message)):
        _compare(tmp_path / "out", chosen)
    assert not (tmp_path / "out").exists()




def test_cli_runs_a_module_attribute_method(tmp_path):
    (tmp_path / "my_methods.py").write_text(MY_METHODS)
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "keras_smooth", "compare", "--methods", "no_ls,my_methods:double_ls",
         "--quick", "--epochs", "1", "--output", str(out)],
        cwd=str(tmp_path), capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
             "PYTHONPATH": os.pathsep.join([str(tmp_path), ROOT])})
    assert result.returncode == 0, result.stderr[-3000:]
    table = result.stdout.split("* marks the best in a column", 1)[1]
    lines = table.splitlines()  # issue 16: the table fits the terminal, a blank line first
    start = next(i for i, line in enumerate(lines) if line.startswith("method")) + 2
    assert [line.split("  ")[0] for line in lines[start:start + 2]] == ["No LS", "Double LS"]
    assert "eps=0.02" in table  # the quick grid: the middle (lower) of the two values
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["method"], r["label"]) for r in rows] == [("no_ls", "No LS"),
                                                          ("double_ls", "Double LS")]


@pytest.mark.parametrize("spec,message", [
    ("missing_mod_abc:double_ls", "cannot import 'missing_mod_abc'"),
    ("{mod}:nothing", "has no attribute 'nothing'"),
    ("{mod}:not_a_method", "is of type int, not a keras_smooth.methods.Method"),
    ("{mod}_broken:double_ls", "(RuntimeError: boom)"),
])
def test_cli_bad_module_attribute_is_one_error_line(tmp_path, monkeypatch, capsys, spec,
                                                    message):
    mod = f"user_methods_{abs(hash(spec)) % 10**8}"  # a fresh module name per case
    (tmp_path / f"{mod}.py").write_text(MY_METHODS)
    (tmp_path / f"{mod}_broken.py").write_text("raise RuntimeError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    code = cli.main(["compare", "--methods", "no_ls," + spec.format(mod=mod), "--quick",
                     "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert code == 2 and len(lines) == 1, err
    assert "argument --methods:" in lines[0] and message in lines[0], lines[0]
    assert "Traceback" not in err and not (tmp_path / "out").exists()


def test_every_built_in_trains_through_train_method():
    data = datasets.load("gaussian", seed=3, n_train=15, n_val=15, n_test=20)
    teacher = train_teacher(tiny, data, epochs=1, batch_size=64, seed=3)
    trained = [n for n in methods.names()
               if methods.get(n).temperature_of is None and not methods.get(n).uses_teacher_model]
    assert len(trained) == 15  # ls, ils1, ils2, ils, lls, lspp and the nine baselines
    for name in trained:
        method = methods.get(name)
        result = train_method(name, data, teacher, tiny, grid="quick", epochs=1, batch_size=64,
                              seed=3)
        assert result["students"] == len(method.settings("quick")) == 1, name
        assert result["params"] == method.settings("quick")[0], name
        # The selected model is the best-NLL epoch's: its validation logits give that NLL.
        expected = _reference_metrics(data.y_val, result["val_logits"])["nll"]
        assert result["val_nll"] == pytest.approx(expected, rel=1e-4), name
        assert result["test_logits"].shape == (len(data.y_test), 3), name
        assert (result["model"] is None) == method.same_loss, name
        if result["matrix"] is not None:  # LLS Q, LS++ C, cLS S, OLS soft matrix: row-stochastic
            matrix = np.asarray(result["matrix"])
            assert matrix.shape == (3, 3) and np.all(matrix >= 0), name
            np.testing.assert_allclose(matrix.sum(1), 1.0, atol=1e-5, err_msg=name)
    with pytest.raises(ValueError, match="is the teacher"):
        train_method("no_ls", data, teacher, tiny, grid="quick", epochs=1, batch_size=64, seed=0)
    with pytest.raises(ValueError, match="trains nothing"):
        train_method("ls_temps", data, teacher, tiny, grid="quick", epochs=1, batch_size=64,
                     seed=0)
    with pytest.raises(ValueError, match="needs the teacher's logits"):
        train_method("ils", data, None, tiny, grid="quick", epochs=1, batch_size=64, seed=0)


# --- report: statistics and the table, without training ---------------------------------------

def _records():
    rows = [("no_ls", "No LS", {}, 1.0), ("no_ls_temps", "No LS + TempS", {}, 1.31),
            ("ls", "LS", {"epsilon": 0.1}, 1.0),
            ("ils", "ILS", {"p1": 0.9, "p2": 1.5, "temperature": 2.0}, 1.0)]
    out = []
    for rep in range(2):
        for i, (m, label, hp, t) in enumerate(rows):
            base = 0.7 + 0.01 * i + 0.003 * rep
            hp = {"epsilon": 0.05} if m == "ls" and rep == 1 else dict(hp)
            out.append({
                "method": m, "label": label, "replicate": rep, "seed": rep, "dataset": "gaussian",
                "accuracy": base, "nll": 0.6 - 0.02 * i + 0.01 * rep,
                "ece": 0.05 + 0.001 * i * rep, "classwise_ece": 0.07 - 0.002 * i,
                "brier": 0.4 + 0.001 * i, "accuracy_dense": base + 0.02,
                "accuracy_sparse": base - 0.05, "temperature": t + 0.02 * rep,
                "hyperparameters": hp,
                "bayes": {"accuracy": 0.82 + 0.001 * rep, "nll": 0.44, "ece": 0.0067,
                          "classwise_ece": 0.02, "brier": 0.25, "accuracy_dense": 0.83,
                          "accuracy_sparse": 0.78}})
    return out


# Printed by the command line's table before the registry (main at 79380ef) for `_records()`.
TABLE_BEFORE = "\n".join([
    'gaussian: test metrics, mean ± standard error over 2 replicate(s); * marks the best'
    ' in a column',
    'method                   accuracy              NLL              ECE'
    '            cwECE            Brier        acc dense       acc sparse'
    '  hyperparameters (chosen)',
    '------------------------------------------------------------------------------------'
    '-----------------------------------------------------------------------------',
    'No LS              0.7015±0.0015    0.6050±0.0050    0.0500±0.0000*   0.0700±0.0000'
    '    0.4000±0.0000*   0.7215±0.0015    0.6515±0.0015   - (2/2)',
    'No LS + TempS      0.7115±0.0015    0.5850±0.0050    0.0505±0.0005    0.0680±0.0000'
    '    0.4010±0.0000    0.7315±0.0015    0.6615±0.0015   -; TempS T=1.32 (2/2)',
    'LS                 0.7215±0.0015    0.5650±0.0050    0.0510±0.0010    0.0660±0.0000'
    '    0.4020±0.0000    0.7415±0.0015    0.6715±0.0015   eps=0.1 (1/2)',
    'ILS                0.7315±0.0015*   0.5450±0.0050*   0.0515±0.0015'
    '    0.0640±0.0000*   0.4030±0.0000    0.7515±0.0015*   0.6815±0.0015*  P1=0.9,'
    ' P2=1.5, T=2 (2/2)',
    'Bayes-optimal             0.8205           0.4400           0.0067           0.0200'
    '           0.2500           0.8300           0.7800   (exact posterior; ILS paper'
    ' Table V: acc 0.8198, CE 0.4444)',
])


def test_table_of_built_ins_is_unchanged_and_statistics_match_numpy():
    records = _records()
    names = ["no_ls", "no_ls_temps", "ls", "ils"]
    rows = report.summarise(records, names)
    assert report.format_table(rows, records, "gaussian") == TABLE_BEFORE
    for row in rows:
        values = np.array([r["nll"] for r in records if r["method"] == row["method"]])
        mean, se = row["nll"]
        assert mean == pytest.approx(values.sum() / 2)
        assert se == pytest.approx(np.sqrt(((values - values.mean()) ** 2).sum() / 1 / 2))
    one = report.summarise([r for r in records if r["replicate"] == 0], names)
    assert all(np.isnan(row["accuracy"][1]) for row in one)  # one replicate: no error bar


def test_plots_follow_method_attributes_not_names():
    curved = Method("my_ils", "My ILS", params={"p1": (0.9,), "p2": (1.0,)}, loss=_loss)
    records = [
        {"method": "my_ils", "label": "My ILS", "replicate": 0,
         "hyperparameters": {"p1": 0.9, "p2": 1.0}, "matrix": [[0.5, 0.5], [0.5, 0.5]]},
        {"method": "double_ls", "label": "Double LS", "replicate": 0,
         "hyperparameters": {"epsilon": 0.1}},
    ]
    assert list(report._smoothing_curves(records, [curved, double_ls])) == [
        "My ILS (replicate 0)"]  # as the record numbers it (it said 1 for replicate 0)
    assert list(report._matrices(records, [curved, double_ls])) == ["My ILS matrix (mean of 1)"]
