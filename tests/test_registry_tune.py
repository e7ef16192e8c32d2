"""The tuner reads the method registry: every method with a hyperparameter can be searched.

Real KerasTuner searches (tiny models, one epoch), a user's own `Method` tuned
from Python and from `python -m keras_smooth tune` in separate processes.
"""

import itertools
import json
import os
import subprocess
import sys

import keras
import keras_tuner
import numpy as np
import pytest

import keras_smooth as ks
from keras_smooth import cli, datasets, methods, tuning
from keras_smooth.methods import Method
from keras_smooth.training.teacher import train_teacher
from user_methods import MY_METHODS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Every built-in with a hyperparameter (issue 12); No LS and the "+ TempS" rows have none.
TUNABLE_BUILTINS = ("ls", "ils1", "ils2", "ils", "lls", "lspp", "dis", "bs_soft", "beta", "cls",
                    "ols", "tfkd", "zipf", "mbls", "flsd")
UNTUNABLE_BUILTINS = ("no_ls", "no_ls_temps", "ls_temps", "ils_temps")



def _loss(params, num_classes):
    return ks.LabelSmoothingLoss(epsilon=params["epsilon"], num_classes=num_classes)


def _other_loss(params, num_classes):
    return ks.LabelSmoothingLoss(epsilon=params["epsilon"] / 2, num_classes=num_classes)


DOUBLE_LS = Method(name="double_ls", label="Double LS", params={"epsilon": (0.02, 0.3)},
                   loss=_loss)


def tiny(input_shape, num_classes):
    return keras.Sequential([keras.Input(input_shape), keras.layers.Dense(8, activation="relu"),
                             keras.layers.Dense(num_classes)])


def _nll(labels, logits):
    """Mean cross-entropy of softmax(logits) against class ids, in float64 NumPy."""
    z = np.asarray(logits, dtype="float64")
    z = z - z.max(axis=1, keepdims=True)
    log_probs = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(labels)), labels].mean())


def _inside(value, spec):
    if isinstance(spec, dict):
        slack = 1e-9 * max(1.0, abs(spec["max"]))
        return spec["min"] - slack <= value <= spec["max"] + slack
    return value == pytest.approx(spec, rel=1e-12)


@pytest.fixture(scope="module")
def data():
    return datasets.load("gaussian", seed=0, n_test=100)


@pytest.fixture(scope="module")
def teacher(data):
    """One teacher for every method that needs one."""
    return train_teacher(tiny, data, epochs=2, batch_size=64, seed=0)


# Inputs of the hypermodels that are declared or enumerated but never trained.
X4, Y4 = np.random.default_rng(0).normal(size=(4, 2)), np.array([0, 1, 2, 0])


def _hypermodel(name, data, teacher, **kwargs):
    method = methods.get(name)
    extra = {}
    if method.needs_teacher:
        extra = dict(teacher_logits=teacher.logits["train"],
                     calibration_temperature=teacher.temperature)
    return tuning.MethodHyperModel(method, tiny, data.input_shape, data.num_classes,
                                   x_train=data.x_train, y_train=data.y_train, **extra, **kwargs)


# --- which methods can be tuned -------------------------------------------------------------


def test_every_builtin_with_a_hyperparameter_is_tunable_and_the_others_are_refused(tmp_path):
    assert set(tuning.tunable_methods()) == set(TUNABLE_BUILTINS)
    for name in UNTUNABLE_BUILTINS:
        with pytest.raises(ValueError, match=f"'{name}'.*has no hyperparameters to tune"):
            tuning.run_search(name, directory=str(tmp_path / name))
        with pytest.raises(ValueError, match="has no hyperparameters to tune"):
            tuning.MethodHyperModel(name, tiny, (2,), 3)
    fixed = Method(name="fixed_ls", params={"epsilon": (0.1,)}, loss=_loss)
    with pytest.raises(ValueError, match="'fixed_ls'.*no hyperparameters to tune \\(each one has "
                                         "a single value\\)"):
        tuning.run_search(fixed, directory=str(tmp_path / "fixed"))
    assert list(tmp_path.iterdir()) == []


# --- one real trial per method ----------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")
@pytest.mark.parametrize("name", TUNABLE_BUILTINS)
def test_each_tunable_builtin_runs_a_real_trial_inside_its_search_space(
        tmp_path, data, teacher, name):
    hypermodel = _hypermodel(name, data, teacher)
    tuner = tuning.make_tuner("random", hypermodel, max_trials=1, epochs=1, seed=1,
                              directory=str(tmp_path))
    tuner.search(data.x_train, data.y_train, validation_data=(data.x_val, data.y_val), epochs=1,
                 batch_size=64, verbose=0)
    (trial,) = tuner.oracle.trials.values()
    assert trial.status == "COMPLETED", trial.message
    space = methods.get(name).search_space()
    values = trial.hyperparameters.values
    assert set(values) == set(space)
    for param, spec in space.items():
        assert _inside(values[param], spec), (param, values[param], spec)
    # The score is the hard-label cross-entropy of the checkpointed model on the validation split.
    model = tuner.load_model(trial)
    logits = keras.ops.convert_to_numpy(model(data.x_val))
    assert trial.metrics.get_last_value("val_nll") == pytest.approx(
        _nll(data.y_val, logits), rel=1e-4)


def test_a_trial_compiles_the_loss_at_its_values_and_trains_on_the_methods_targets(data, teacher):
    hp = keras_tuner.HyperParameters()
    hp.Fixed("epsilon", 0.15)
    ls = _hypermodel("ls", data, teacher).build(hp)
    assert isinstance(ls.loss, ks.LabelSmoothingLoss)
    assert ls.loss.epsilon == pytest.approx(0.15)
    # Beta smoothing: soft rows from the calibrated teacher with mean smoothing epsilon.
    targets = _hypermodel("beta", data, teacher).training_targets({"epsilon": 0.15}, data.y_train)
    assert targets.shape == (len(data.y_train), data.num_classes)
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, atol=1e-6)
    true_mass = targets[np.arange(len(data.y_train)), data.y_train]
    assert 1.0 - true_mass.mean() == pytest.approx(0.15, abs=0.05)


# --- the declared search space -------------------------------------------------------------


@pytest.mark.parametrize("name", TUNABLE_BUILTINS + ("double_ls",))
def test_the_declared_space_is_the_methods_range_with_log_sampling_where_it_says(name):
    method = DOUBLE_LS if name == "double_ls" else methods.get(name)
    hp = keras_tuner.HyperParameters()
    tuning.MethodHyperModel(method, tiny, (2,), 3,
                            teacher_logits=np.zeros((4, 3)) if method.needs_teacher else None,
                            x_train=X4, y_train=Y4).declare_hyperparameters(hp)
    declared = {h.name: h.get_config() for h in hp.space}
    assert set(declared) == set(method.params)
    for param, (low, high) in method.ranges.items():
        config = declared[param]
        if low == high:
            assert config["value"] == low
            continue
        assert (config["min_value"], config["max_value"]) == (low, high)
        assert config["sampling"] == ("log" if param in method.log_scale else "linear")
    if name in ("ls", "ils2", "tfkd", "zipf"):  # epsilon, T, TF-KD's alpha, Zipf's weight
        assert any(c.get("sampling") == "log" for c in declared.values())


class _Enumerate(keras_tuner.GridSearch):
    """A grid search that records every setting without training (`run_trial` is public API)."""

    def run_trial(self, trial, *args, **kwargs):
        return {"val_nll": 0.0}


def _enumerated(hypermodel, directory):
    tuner = _Enumerate(hypermodel, objective=tuning.objective(), directory=str(directory),
                       project_name="grid", max_trials=None)
    tuner.search()
    return sorted(tuple(sorted(t.hyperparameters.values.items()))
                  for t in tuner.oracle.trials.values())


@pytest.mark.parametrize("name", TUNABLE_BUILTINS)
def test_the_grid_tuner_enumerates_exactly_the_product_of_the_methods_grid(tmp_path, name):
    method = methods.get(name)
    hypermodel = tuning.MethodHyperModel(
        method, tiny, (2,), 3, grid="small", x_train=X4, y_train=Y4,
        teacher_logits=np.zeros((4, 3)) if method.needs_teacher else None)
    grid = method.grid("small")
    expected = sorted(tuple(sorted(zip(grid, combo)))
                      for combo in itertools.product(*grid.values()))
    assert _enumerated(hypermodel, tmp_path) == expected


def test_the_grid_tuner_enumerates_the_ils_papers_appendix_c_grid(tmp_path):
    # ILS paper, appendix C (real data): P1, P2 and T, written out here.
    p1 = (0.975, 0.95, 0.925, 0.9, 0.85)
    p2 = (0.75, 1.0, 1.25, 1.5, 2.0)
    temperature = (1.0, 2.0, 4.0, 8.0, 16.0)
    hypermodel = tuning.MethodHyperModel("ils", tiny, (2,), 3, grid="paper",
                                         teacher_logits=np.zeros((4, 3)))
    expected = sorted((("p1", a), ("p2", b), ("temperature", t))
                      for a, b, t in itertools.product(p1, p2, temperature))
    assert _enumerated(hypermodel, tmp_path) == expected


# --- checks of the hypermodel's arguments ----------------------------------------------------


def test_the_hypermodel_refuses_missing_inputs_naming_them():
    with pytest.raises(ValueError, match="'beta' needs the teacher's logits.*teacher_logits"):
        tuning.MethodHyperModel("beta", tiny, (2,), 3)
    with pytest.raises(ValueError, match="'cls' builds its loss from the training data.*x_train"):
        tuning.MethodHyperModel("cls", tiny, (2,), 3)
    with pytest.raises(ValueError, match=r"`ranges\['epsilon'\]`.*0\.5"):
        tuning.MethodHyperModel("beta", tiny, (2,), 3, teacher_logits=np.zeros((4, 3)),
                                ranges={"epsilon": [0.1, 0.5]})  # Beta needs epsilon < 0.4
    with pytest.raises(ValueError, match="'mbls' tunes margin, weight; `ranges` also names alpha"):
        tuning.MethodHyperModel("mbls", tiny, (2,), 3, ranges={"alpha": [0.1]})
    hypermodel = tuning.MethodHyperModel("dis", tiny, (2,), 3, teacher_logits=np.zeros((10, 3)))
    with pytest.raises(ValueError, match="`teacher_logits` has 10 rows but the training labels "
                                         "have 12"):
        hypermodel.training_targets({"beta": 0.5, "temperature": 2.0}, np.zeros(12, "int32"))
    with pytest.raises(ValueError, match="Unknown grid 'huge'"):
        tuning.MethodHyperModel("ls", tiny, (2,), 3, grid="huge")


# --- your own method, from Python ----------------------------------------------------------------


def test_a_user_method_is_tuned_from_python_and_a_changed_one_is_refused(tmp_path, data):
    directory = tmp_path / "search"
    settings = dict(data=data, build_model=tiny, tuner="grid", max_trials=None, epochs=1,
                    batch_size=64, strategy="none", directory=str(directory), export=False)
    result = tuning.run_search(DOUBLE_LS, **settings)
    # The grid tuner tries the values of `params` (the method defines no named grid).
    assert sorted(r["values"]["epsilon"] for r in result.trials) == [0.02, 0.3]
    assert [r["status"] for r in result.trials] == ["COMPLETED"] * 2
    best = json.loads((directory / "best.json").read_text())
    assert (best["method"], best["label"]) == ("double_ls", "Double LS")
    assert best["teacher"] is None  # a method that does not need the teacher trains none
    stored = json.loads((directory / "search.json").read_text())
    assert stored["method"] == "double_ls"
    assert stored["fingerprint"]["hooks"]["loss"].startswith(f"{__name__}._loss")
    changed = Method(name="double_ls", label="Double LS", params={"epsilon": (0.02, 0.3)},
                     loss=_other_loss)
    before = {p: p.read_bytes() for p in directory.rglob("*") if p.is_file()}
    with pytest.raises(ValueError, match=r"holds a double_ls search with other settings "
                                         r"\(fingerprint\)"):
        tuning.run_search(changed, **settings)
    assert {p: p.read_bytes() for p in directory.rglob("*") if p.is_file()} == before


# --- the command line ----------------------------------------------------------------------------


def _env(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERASTUNER_")}
    return dict(env, PYTHONPATH=os.pathsep.join([str(tmp_path), ROOT]), TF_CPP_MIN_LOG_LEVEL="3",
                KERAS_BACKEND="tensorflow")


class _Runs:
    """Processes started together; `result(key)` waits for one: (exit code, stdout, stderr)."""

    def __init__(self, root, commands):
        self.root, self.results = root, {}
        self.procs = {key: subprocess.Popen(argv, cwd=root, env=_env(root), text=True,
                                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                      for key, argv in commands.items()}

    def result(self, key):
        if key not in self.results:
            proc = self.procs[key]
            out, err = proc.communicate(timeout=300)
            self.results[key] = (proc.returncode, out, err)
        return self.results[key]

    def stop(self):
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.communicate()


@pytest.fixture(scope="module", autouse=True)
def cli_runs(tmp_path_factory):
    """Real `python -m keras_smooth tune` processes, started before the first test of this file
    so that they run while the in-process tests do."""
    root = tmp_path_factory.mktemp("cli")
    (root / "my_methods.py").write_text(MY_METHODS)
    tune = [sys.executable, "-m", "keras_smooth", "tune", "--quick", "--strategy", "none"]
    runs = _Runs(root, {
        "double_ls": [*tune, "--method", "my_methods:double_ls", "--directory", str(root / "d")],
        "beta": [*tune, "--method", "beta", "--directory", str(root / "beta")],
        "imports": [sys.executable, "-c", "import sys, keras_smooth.tuning; print(sorted(m for m "
                    "in sys.modules if m.startswith('keras_smooth.workflows')))"],
    })
    yield runs
    runs.stop()


def test_cli_tunes_a_user_method_named_module_attribute(cli_runs):
    code, out, err = cli_runs.result("double_ls")
    assert code == 0, err[-3000:]
    assert "Double LS (double_ls)" in out and "trial 0 completed: epsilon=" in out
    best = json.loads((cli_runs.root / "d" / "best.json").read_text())
    assert (best["method"], best["label"]) == ("double_ls", "Double LS")
    assert 0.02 <= best["hyperparameters"]["epsilon"] <= 0.3
    assert best["trials"] == {"COMPLETED": 3}


def test_cli_tunes_a_baseline_that_needs_the_teacher(cli_runs):
    code, out, err = cli_runs.result("beta")
    assert code == 0, err[-3000:]
    best = json.loads((cli_runs.root / "beta" / "best.json").read_text())
    assert best["method"] == "beta" and best["teacher"]["trainings"] == 1
    spec = methods.get("beta").search_space()["epsilon"]
    assert spec["min"] <= best["hyperparameters"]["epsilon"] <= spec["max"]
    assert "teacher (no smoothing) trained" in out


def test_the_tuner_does_not_import_the_comparison(cli_runs):
    code, out, err = cli_runs.result("imports")
    assert code == 0, err[-3000:]
    assert out.strip() == "[]", out  # the tuner imports no part of the comparison's package


@pytest.mark.parametrize("method, message", [
    ("no_ls", "argument --method: method 'no_ls' (No LS) has no hyperparameters to tune"),
    ("ils_temps", "has no hyperparameters to tune (it adds a fitted temperature to 'ils'; "
                  "tune 'ils' instead)"),
    ("foo", "argument --method: invalid choice: 'foo' (choose from ls, "),
    ("my_methods:nope", "module 'my_methods' has no attribute 'nope'"),
    ("my_methods:not_a_method", "'my_methods:not_a_method' is of type int, not a "),
    ("no_such_module:double_ls", "cannot import 'no_such_module'"),
])
def test_cli_refuses_a_method_it_cannot_tune_with_one_line(
        tmp_path, monkeypatch, capsys, method, message):
    (tmp_path / "my_methods.py").write_text(MY_METHODS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["tune", "--method", method, "--directory", str(tmp_path / "t")]) == 2
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.startswith("keras-smooth tune: error:")]
    assert len(lines) == 1 and message in lines[0], err
    assert out == "" and not (tmp_path / "t").exists()


def test_cli_help_lists_the_tunable_methods_with_their_labels(capsys):
    assert cli.main(["tune", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for name in TUNABLE_BUILTINS:
        method = methods.get(name)
        assert f"{name} ({method.label}:" in text
    assert "beta (Beta: epsilon)" in text and "module:attribute" in text
    assert "no_ls (" not in text
