"""KerasTuner hypermodels and the search workflow, in this process (tiny models, few epochs)."""

import json

import keras
import keras_tuner
import numpy as np
import pytest

import reference as ref
from keras_smooth import calibration, datasets, losses, tuning
from keras_smooth.training.teacher import teacher_trainings


def tiny(input_shape, num_classes):
    return keras.Sequential([keras.Input(input_shape), keras.layers.Dense(8, activation="relu"),
                             keras.layers.Dense(num_classes)])


@pytest.fixture(scope="module")
def data():
    return datasets.load("gaussian", seed=0)


def search(directory, method="ls", **kwargs):
    settings = dict(data=datasets.load("gaussian", seed=0), build_model=tiny, tuner="random",
                    max_trials=2, epochs=3, batch_size=64, strategy="none",
                    directory=str(directory))
    settings.update(kwargs)
    return tuning.run_search(method, **settings)


def _hp(**values):
    hp = keras_tuner.HyperParameters()
    for name, value in values.items():
        hp.Fixed(name, value)
    return hp


# --- hypermodels -----------------------------------------------------------------------


def test_each_hypermodel_compiles_its_loss_with_the_trial_values(data):
    shape, k = data.input_shape, data.num_classes
    ls = tuning.LSHyperModel(tiny, shape, k).build(_hp(epsilon=0.15))
    assert isinstance(ls.loss, losses.LabelSmoothingLoss) and ls.loss.epsilon == pytest.approx(0.15)
    lls = tuning.LLSHyperModel(tiny, shape, k).build(_hp(alpha=0.3))
    assert isinstance(lls.loss, losses.LLSLoss) and lls.loss.alpha == pytest.approx(0.3)
    lspp = tuning.LSPlusPlusHyperModel(tiny, shape, k).build(_hp(alpha=0.2))
    assert isinstance(lspp.loss, losses.LSPlusPlusLoss) and lspp.loss.alpha == pytest.approx(0.2)


def test_the_legacy_hypermodels_default_to_the_papers_grid(data):
    # ILS paper, appendix C (real data), written out: the search space of the hypermodels of
    # earlier versions, which they keep (the generic MethodHyperModel searches ranges instead).
    paper = {"p1": [0.975, 0.95, 0.925, 0.9, 0.85], "p2": [0.75, 1.0, 1.25, 1.5, 2.0],
             "temperature": [1.0, 2.0, 4.0, 8.0, 16.0]}
    hm = tuning.ILSHyperModel(tiny, data.input_shape, 3, teacher_logits=np.zeros((150, 3)))
    hp = keras_tuner.HyperParameters()
    hm.declare_hyperparameters(hp)
    assert hp.get("p1") == paper["p1"][0]
    assert {h.name: h.get_config()["values"] for h in hp.space} == paper
    ranges = {"epsilon": {"min": 0.01, "max": 0.3, "sampling": "log"}, "temperature": 2.0}
    hm = tuning.ILSHyperModel(tiny, data.input_shape, 3, teacher_logits=np.zeros((150, 3)),
                              variant="ils2", ranges=ranges)
    hp = keras_tuner.HyperParameters()
    hm.declare_hyperparameters(hp)
    assert isinstance(hp.space[0], keras_tuner.engine.hyperparameters.Float)
    assert hp.space[0].get_config()["sampling"] == "log"
    assert hm.values(hp)["temperature"] == 2.0


@pytest.mark.parametrize("variant", ["ils1", "ils2", "ils"])
def test_ils_hypermodel_trains_on_the_papers_targets(rng, variant):
    labels = rng.integers(0, 3, 40)
    logits = rng.normal(scale=2.0, size=(40, 3)).astype("float32")
    t_star = 1.3
    values = {"p1": 0.85, "p2": 1.5, "epsilon": 0.1, "temperature": 4.0}
    hm = tuning.ILSHyperModel(tiny, (2,), 3, teacher_logits=logits, calibration_temperature=t_star,
                              variant=variant)
    got = hm.training_targets({k: values[k] for k in hm.params}, labels)
    calibrated, at_t = ref.softmax(logits / t_star), ref.softmax(logits / 4.0)
    expected = {"ils1": ref.ils1(labels, calibrated, 0.85, 1.5),
                "ils2": ref.ils2(labels, at_t, 0.1),
                "ils": ref.ils(labels, calibrated, at_t, 0.85, 1.5)}[variant]
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("param, spec, message", [
    ("epsilon", [0.1, 1.0], "epsilon"),
    ("alpha", [-0.1], "alpha"),
    ("temperature", [0.0, 2.0], "temperature"),
    ("p2", {"min": -1.0, "max": 2.0}, "p2"),
    ("p1", [1.2], "p1"),
    ("epsilon", [], "empty"),
    ("epsilon", [0.1, 0.1], "repeats"),
    ("epsilon", {"min": 0.2, "max": 0.1}, "min < max"),
    ("temperature", {"min": 0.0001, "max": 1.0, "sampling": "cubic"}, "sampling"),
    ("epsilon", {"min": 0.01, "max": 0.1, "sampling": "log", "step": 0.5},
     r"with log sampling is a factor and must be > 1, got 0.5"),
    ("epsilon", {"min": 0.01, "max": 0.1, "sampling": "log", "step": 1},
     r"must be > 1, got 1"),
    ("gamma", [1.0], "unknown hyperparameter"),
])
def test_ranges_outside_their_domain_are_refused(param, spec, message):
    with pytest.raises(ValueError, match=message):
        tuning.check_range(param, spec)


def test_ranges_of_the_wrong_type_or_for_another_method_are_refused(data):
    with pytest.raises(TypeError, match="epsilon"):
        tuning.check_range("epsilon", "0.1")
    with pytest.raises(ValueError, match="alpha"):
        tuning.LSHyperModel(tiny, data.input_shape, 3, ranges={"alpha": [0.1]})
    with pytest.raises(ValueError, match="teacher_logits"):
        tuning.ILSHyperModel(tiny, data.input_shape, 3, teacher_logits=np.zeros((10, 4)))
    hm = tuning.ILSHyperModel(tiny, data.input_shape, 3, teacher_logits=np.zeros((10, 3)))
    with pytest.raises(ValueError, match="10 rows"):
        hm.training_targets({"p1": 0.9, "p2": 1.0, "temperature": 1.0}, np.zeros(12, "int32"))


# --- the search workflow ----------------------------------------------------------------


def test_ils_search_trains_the_teacher_once_and_resumes_without_retraining(tmp_path):
    first = search(tmp_path, "ils", max_trials=2)
    assert not first.teacher.from_cache
    assert len(teacher_trainings(tmp_path / "cache")) == 1
    assert first.trials_run == ["0", "1"]
    more = search(tmp_path, "ils", max_trials=3)  # the same search, extended by one trial
    assert more.teacher.from_cache and more.trials_run == ["2"]
    assert len(teacher_trainings(tmp_path / "cache")) == 1
    assert more.best["teacher"]["trainings"] == 1
    assert [r["status"] for r in more.trials] == ["COMPLETED"] * 3


def test_best_model_is_the_best_trial_reloaded_calibrated_and_exported(tmp_path):
    import tensorflow as tf

    result = search(tmp_path, "lls", max_trials=2, ranges={"alpha": [0.05, 0.3]})
    best = json.loads((tmp_path / "best.json").read_text())
    assert best == json.loads(json.dumps(result.best))
    scores = {r["trial_id"]: r["val_nll"] for r in result.trials}
    assert best["trial_id"] == min(scores, key=scores.get) and best["model"] == "reloaded"
    assert best["hyperparameters"]["alpha"] in (0.05, 0.3)
    data = datasets.load("gaussian", seed=0)
    serve = tf.saved_model.load(best["export"]).signatures["serving_default"]
    (name,) = serve.structured_input_signature[1].keys()
    assert name == "inputs"  # an unnamed Input gets a stable name, not keras_tensor_<N>
    out = serve(**{name: tf.constant(data.x_val)})
    # The exported logits are the best epoch's: their validation NLL is the trial's score.
    assert calibration.nll(data.y_val, out["logits"].numpy(), from_logits=True) == pytest.approx(
        best["val_nll"], abs=1e-5)
    np.testing.assert_allclose(out["temperature"].numpy(), best["temperature"], rtol=1e-6)
    scaled = calibration.apply_temperature(out["logits"].numpy(), best["temperature"])
    np.testing.assert_allclose(out["probabilities"].numpy(), scaled, atol=1e-5)
    assert best["test_temperature_scaled"]["accuracy"] == best["test"]["accuracy"]
    rows = (tmp_path / "trials.csv").read_text().splitlines()
    assert rows[0] == "trial_id,status,alpha,val_nll,val_ece" and len(rows) == 3


@pytest.mark.parametrize("tuner, kwargs, trials", [
    ("grid", {"max_trials": None, "ranges": {"epsilon": [0.05, 0.1, 0.2]}}, 3),
    ("random", {"max_trials": 2}, 2),
    ("bayesian", {"max_trials": 3}, 3),
    ("hyperband", {"max_trials": None, "epochs": 3}, None),
])
def test_every_tuner_completes_a_search(tmp_path, tuner, kwargs, trials):
    result = search(tmp_path, "ls", tuner=tuner, **kwargs)
    statuses = [r["status"] for r in result.trials]
    assert set(statuses) == {"COMPLETED"}
    if trials is not None:
        assert len(statuses) == trials
    else:  # hyperband with max_epochs 3, factor 3: two brackets
        assert len(statuses) >= 3
    assert result.best["val_nll"] == min(r["val_nll"] for r in result.trials)


def test_the_ece_objective_picks_the_lowest_validation_ece(tmp_path):
    result = search(tmp_path, "ls", tuner="grid", max_trials=None, objective="val_ece",
                    ranges={"epsilon": [0.01, 0.3]}, epochs=4)
    assert result.best["val_ece"] == min(r["val_ece"] for r in result.trials)


@pytest.mark.parametrize("kwargs, message", [
    ({"tuner": "annealing"}, "annealing"),
    ({"strategy": "tpu"}, "tpu"),
    ({"objective": "val_loss"}, "val_loss"),
    ({"tuner": "hyperband", "max_trials": 5}, "hyperband"),
    ({"max_trials": 0}, "max_trials"),
    ({"epochs": 0}, "epochs"),
    ({"ranges": {"epsilon": [1.5]}}, "epsilon"),
    ({"tuner": "grid", "ranges": {"epsilon": {"min": 0.0, "max": 0.2}}}, "grid tuner"),
])
def test_bad_search_arguments_fail_before_anything_is_written(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        search(tmp_path / "new", "ls", **kwargs)
    assert not (tmp_path / "new").exists()
    with pytest.raises(ValueError, match="method"):
        tuning.run_search("ilsx", directory=str(tmp_path / "new"))


def test_a_folder_of_another_search_is_refused_and_left_untouched(tmp_path):
    search(tmp_path, "ls", max_trials=1)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(ValueError, match="method 'ls'"):
        search(tmp_path, "lls", max_trials=1)
    with pytest.raises(ValueError, match="epochs"):
        search(tmp_path, "ls", max_trials=1, epochs=5)
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before


def test_strategy_names_resolve_as_documented(monkeypatch):
    import tensorflow as tf

    assert tuning.resolve_strategy("none") is None
    if not tf.config.list_logical_devices("GPU"):
        assert tuning.resolve_strategy("auto") is None
    mirrored = tuning.resolve_strategy("mirrored")
    assert isinstance(mirrored, tf.distribute.MirroredStrategy)
    assert tuning.resolve_strategy(mirrored) is mirrored
    monkeypatch.delenv("TF_CONFIG", raising=False)  # refused for the real reason either way
    with pytest.raises(ValueError, match="cannot train Keras 3 models.*20585"):
        tuning.resolve_strategy("multiworker")
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["127.0.0.1:1"]},
                                                "task": {"type": "worker", "index": 0}}))
    with pytest.raises(ValueError, match="20585"):
        tuning.resolve_strategy("multiworker")


def test_tuner_role_comes_from_the_environment(monkeypatch):
    for name in ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT"):
        monkeypatch.delenv(name, raising=False)
    assert tuning.tuner_role() == "standalone"
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    with pytest.raises(ValueError, match="KERASTUNER_ORACLE_PORT"):
        tuning.tuner_role()
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", "8000")
    with pytest.raises(ValueError, match="KERASTUNER_TUNER_ID"):
        tuning.tuner_role()
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "chief")
    assert tuning.tuner_role() == "chief"
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "tuner0")
    assert tuning.tuner_role() == "worker"


def test_a_worker_without_a_chief_fails_with_a_clear_error_and_writes_nothing(
        tmp_path, monkeypatch):
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "tuner0")
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", str(port))
    with pytest.raises(ConnectionError, match=f"127.0.0.1:{port} within 1 s"):
        search(tmp_path / "new", "ls", chief_timeout=1.0)
    assert not (tmp_path / "new").exists()


def test_epoch_shuffle_is_a_permutation_per_epoch_fixed_by_seed_and_epoch():
    from keras_smooth.training.fitting import EpochShuffle

    x = np.arange(10, dtype="float32")[:, None]
    def epoch_rows(shuffle, epoch):
        shuffle.on_epoch_begin(epoch)
        return np.concatenate([b[0].numpy()[:, 0] for b in shuffle.dataset]).astype(int)

    a, b = EpochShuffle(x, np.arange(10), 4, seed=3), EpochShuffle(x, np.arange(10), 4, seed=3)
    first, second = epoch_rows(a, 0), epoch_rows(a, 1)
    assert sorted(first) == list(range(10)) and sorted(second) == list(range(10))
    assert list(first) != list(second)
    assert list(epoch_rows(a, 0)) == list(first)  # however many iterators came before
    assert list(epoch_rows(b, 1)) == list(second)
    assert [len(batch[0]) for batch in a.dataset] == [4, 4, 2]
    for rows, targets in a.dataset:  # rows and targets stay paired
        np.testing.assert_array_equal(rows.numpy()[:, 0].astype(int), targets.numpy())


def test_cli_tune_prints_the_trials_and_writes_best_json(tmp_path, capsys):
    from keras_smooth import cli

    directory = tmp_path / "t"
    assert cli.main(["tune", "--method", "ls", "--max-trials", "2", "--epochs", "2",
                     "--strategy", "none", "--directory", str(directory)]) == 0
    out = capsys.readouterr().out
    assert "trial 0 completed: epsilon=" in out and "val NLL" in out and "best: trial" in out
    best = json.loads((directory / "best.json").read_text())
    assert best["method"] == "ls"
    assert set(best["test"]) >= {"accuracy", "nll", "ece", "classwise_ece"}
    assert cli.main(["tune", "--method", "lls", "--directory", str(directory)]) == 2
    assert "holds a search of method 'ls'" in capsys.readouterr().err
    assert cli.main(["tune", "--tuner", "hyperband", "--max-trials", "3",
                     "--directory", str(tmp_path / "h")]) == 2
    assert "hyperband" in capsys.readouterr().err and not (tmp_path / "h").exists()
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert cli.main(["tune", "--method", "ls", "--directory", str(blocker / "sub")]) == 2
    # refused while parsing, before any work
    assert "argument --directory:" in capsys.readouterr().err
