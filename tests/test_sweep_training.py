"""Bad arguments found by an adversarial sweep of training, tuning and their helpers.

Covers `tuning.wait_for_chief`, `training.EpochShuffle` / `BestValidationNLL` /
`EpochProgress` / `fit_classifier` / `train_teacher` / `teacher_cache_key` /
`protocol_for`, the tuner's hypermodels, `make_tuner`, `check_range`,
`resolve_ranges` and `format_trials`, `callbacks.OnlineLabelSmoothing` and
`tensorboard_run`, `datasets.ClassificationData` and `load_digits`,
`workflows.run_comparison`, `models` and the method registry. Each bad input
must raise a `ValueError`/`TypeError` naming the argument -- not hang, not
train on part of the data, not return NaN/inf -- and for the row and epoch
checks a correct call must still work (tiny models, one or two epochs).
"""

import keras
import keras_tuner
import numpy as np
import pytest

import keras_smooth as ks
from keras_smooth import callbacks, datasets, methods, models, training, tuning, workflows
from keras_smooth.losses import OnlineLabelSmoothingLoss

NAN = float("nan")


def tiny(input_shape, num_classes):
    return keras.Sequential([keras.Input(input_shape), keras.layers.Dense(4, activation="relu"),
                             keras.layers.Dense(num_classes)])


@pytest.fixture(scope="module")
def data():
    return datasets.load_gaussian_task(seed=0, n_train=5, n_val=5, n_test=5)


def _hp(**values):
    hp = keras_tuner.HyperParameters()
    for name, value in values.items():
        hp.Fixed(name, value)
    return hp


def _ls_hypermodel(data):
    return tuning.MethodHyperModel("ls", tiny, data.input_shape, data.num_classes)


# --- 1. wait_for_chief: no hang, named errors ------------------------------------------------


@pytest.fixture
def chief_at_port_1(monkeypatch):
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", "1")
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "tuner0")


@pytest.mark.parametrize("timeout", [NAN, float("inf"), 0, -1, "x", None, True])
def test_wait_for_chief_refuses_a_bad_timeout(chief_at_port_1, timeout):
    with pytest.raises(ValueError, match="`timeout`"):
        tuning.wait_for_chief(timeout)


@pytest.mark.parametrize("interval", [-1, 0, NAN, "x"])
def test_wait_for_chief_refuses_a_bad_interval(chief_at_port_1, interval):
    with pytest.raises(ValueError, match="`interval`"):
        tuning.wait_for_chief(1.0, interval=interval)


@pytest.mark.parametrize("missing", ["KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT"])
def test_wait_for_chief_names_a_missing_environment_variable(chief_at_port_1, monkeypatch,
                                                              missing):
    monkeypatch.delenv(missing)
    with pytest.raises(ValueError, match=missing):
        tuning.wait_for_chief(1.0)


def test_wait_for_chief_still_gives_up_after_its_timeout(chief_at_port_1):
    with pytest.raises(ConnectionError, match="127.0.0.1:1"):
        tuning.wait_for_chief(0.3, interval=0.1)


# --- 2, 3, 6, 7. training: rows, epochs, batch size, learning rate, seed, callbacks ----------


def test_epoch_shuffle_refuses_targets_of_other_rows():
    with pytest.raises(ValueError, match="`x` has 8 rows but `targets` has 5"):
        training.EpochShuffle(np.zeros((8, 2)), np.zeros(5), 2, 0)


def test_epoch_shuffle_with_matching_rows_yields_every_row_once():
    shuffle = training.EpochShuffle(np.arange(8.0)[:, None], np.arange(8), 3, 0)
    rows = np.concatenate([y.numpy() for _, y in shuffle.dataset.take(3)])
    assert sorted(rows.tolist()) == list(range(8))


@pytest.mark.parametrize("bad, match", [
    (dict(batch_size=0), "`batch_size`"), (dict(batch_size=2.7), "`batch_size`"),
    (dict(seed=-1), "`seed`"), (dict(seed="x"), "`seed`"),
])
def test_epoch_shuffle_refuses_bad_batch_size_and_seed(bad, match):
    settings = dict(batch_size=2, seed=0)
    settings.update(bad)
    with pytest.raises(ValueError, match=match):
        training.EpochShuffle(np.zeros((4, 2)), np.zeros(4), **settings)


def test_fit_classifier_refuses_targets_of_other_rows(data):
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with pytest.raises(ValueError, match="`targets` has 3 rows but `data.x_train` has 15"):
        training.fit_classifier(tiny, data, data.y_train[:3], loss, epochs=1, batch_size=8,
                                seed=0)


FIT_SETTINGS = [
    (dict(epochs=0), "`epochs`"), (dict(epochs=-1), "`epochs`"),
    (dict(batch_size=0), "`batch_size`"), (dict(batch_size=-3), "`batch_size`"),
    (dict(batch_size="x"), "`batch_size`"), (dict(learning_rate=NAN), "`learning_rate`"),
    (dict(learning_rate=0), "`learning_rate`"), (dict(seed=-1), "`seed`"),
    (dict(seed=2**40), "`seed`"), (dict(patience=0), "`patience`"),
]


def _fit_settings(bad):
    settings = dict(epochs=1, batch_size=8, seed=0, learning_rate=1e-3)
    settings.update(bad)
    return settings


@pytest.mark.parametrize("bad, match", FIT_SETTINGS)
def test_fit_classifier_refuses_bad_training_settings(data, bad, match):
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with pytest.raises(ValueError, match=match):
        training.fit_classifier(tiny, data, data.y_train, loss, **_fit_settings(bad))


def test_fit_classifier_with_good_settings_trains(data):
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    trained = training.fit_classifier(tiny, data, data.y_train, loss, **_fit_settings({}))
    assert trained.epochs_trained == 1 and np.isfinite(trained.best_val_nll)


@pytest.mark.parametrize("bad, match", FIT_SETTINGS)
def test_teacher_cache_key_and_train_teacher_refuse_bad_settings(data, bad, match):
    with pytest.raises(ValueError, match=match):
        training.teacher_cache_key(tiny, data, **_fit_settings(bad))
    with pytest.raises(ValueError, match=match):
        training.train_teacher(tiny, data, **_fit_settings(bad))


def test_train_teacher_refuses_a_cache_dir_that_is_a_file(data, tmp_path):
    path = tmp_path / "file"
    path.write_text("")
    with pytest.raises(ValueError, match="`cache_dir`.*is a file"):
        training.train_teacher(tiny, data, **_fit_settings({}), cache_dir=str(path))


def test_train_teacher_with_good_settings_trains_and_caches(data, tmp_path):
    teacher = training.train_teacher(tiny, data, **_fit_settings({}), cache_dir=str(tmp_path))
    assert teacher.best_epoch == 1 and np.isfinite(teacher.val_nll)
    again = training.train_teacher(tiny, data, **_fit_settings({}), cache_dir=str(tmp_path))
    assert again.from_cache and again.key == teacher.key


def test_best_validation_nll_refuses_labels_of_other_rows():
    with pytest.raises(ValueError, match="`x_val` has 4 rows but `y_val` has 3"):
        training.BestValidationNLL(np.zeros((4, 2)), np.zeros(3))


@pytest.mark.parametrize("bad, error, match", [
    (dict(patience=-3), ValueError, "`patience`"),
    (dict(batch_size="x"), ValueError, "`batch_size`"),
    (dict(from_logits="no"), TypeError, "`from_logits`"),
    (dict(log_names={"ece": "e"}), ValueError, "`log_names`"),
    (dict(log_names="nll"), TypeError, "`log_names`"),
    (dict(log_names={"nll": 5}), TypeError, "`log_names\\['nll'\\]`"),
])
def test_best_validation_nll_refuses_bad_arguments(bad, error, match):
    with pytest.raises(error, match=match):
        training.BestValidationNLL(np.zeros((4, 2)), np.zeros(4), **bad)


@pytest.mark.parametrize("bad, error, match", [
    (dict(every=0), ValueError, "`every`"), (dict(every=-5), ValueError, "`every`"),
    (dict(report=5), TypeError, "`report`"),
])
def test_epoch_progress_refuses_bad_arguments(bad, error, match):
    settings = dict(report=print, every=10)
    settings.update(bad)
    with pytest.raises(error, match=match):
        training.EpochProgress(**settings)


def test_protocol_for_refuses_a_name_that_is_not_a_string():
    with pytest.raises(TypeError, match="`dataset`"):
        training.protocol_for(["x"])
    assert training.protocol_for("gaussian").max_epochs == 500


# --- 2-6. tuning: hypermodel fit and arguments, make_tuner, ranges, format_trials ------------


def test_hypermodel_fit_refuses_labels_of_other_rows(data):
    hm = _ls_hypermodel(data)
    model = hm.build(_hp(epsilon=0.1))
    x, y = data.x_train, data.y_train
    with pytest.raises(ValueError, match="`x` has 15 rows but `y` has 5"):
        hm.fit(_hp(epsilon=0.1), model, x, y[:5], validation_data=(x, y))
    with pytest.raises(ValueError, match="`x_val` has 15 rows but `y_val` has 5"):
        hm.fit(_hp(epsilon=0.1), model, x, y, validation_data=(x, y[:5]))


@pytest.mark.parametrize("bad, match", [
    (dict(epochs=0), "`epochs`"), (dict(epochs=-1), "`epochs`"), (dict(epochs=2.5), "`epochs`"),
    (dict(batch_size=0), "`batch_size`"), (dict(batch_size=-4), "`batch_size`"),
    (dict(batch_size=2**31), "`batch_size`"), (dict(shuffle_seed=-1), "`seed`"),
    (dict(initial_epoch=-1), "`initial_epoch`"),
    (dict(epochs=2, initial_epoch=2), "`initial_epoch`"),
])
def test_hypermodel_fit_refuses_bad_training_settings(data, bad, match):
    hm = _ls_hypermodel(data)
    model = hm.build(_hp(epsilon=0.1))
    settings = dict(epochs=1, batch_size=8)
    settings.update(bad)
    with pytest.raises(ValueError, match=match):
        hm.fit(_hp(epsilon=0.1), model, data.x_train, data.y_train,
               validation_data=(data.x_val, data.y_val), **settings)


def test_hypermodel_fit_with_good_settings_returns_finite_scores(data):
    hm = _ls_hypermodel(data)
    scores = hm.fit(_hp(epsilon=0.1), hm.build(_hp(epsilon=0.1)), data.x_train, data.y_train,
                    validation_data=(data.x_val, data.y_val), epochs=1, batch_size=8)
    assert np.isfinite(scores["val_nll"]) and np.isfinite(scores["val_ece"])


@pytest.mark.parametrize("shape", [2, "28", (2.7,), (-2,), (0,), (True,), None])
@pytest.mark.parametrize("cls", ["method", "ls", "lls"])
def test_hypermodels_refuse_a_bad_input_shape(cls, shape):
    build = {"method": lambda s, k: tuning.MethodHyperModel("ls", tiny, s, k),
             "ls": lambda s, k: tuning.LSHyperModel(tiny, s, k),
             "lls": lambda s, k: tuning.LLSHyperModel(tiny, s, k)}[cls]
    with pytest.raises((TypeError, ValueError), match="`input_shape`"):
        build(shape, 3)


@pytest.mark.parametrize("seed", ["x", None, -1, 1.7, 2**40, True])
def test_hypermodels_refuse_a_bad_seed(seed):
    with pytest.raises(ValueError, match="`seed`"):
        tuning.MethodHyperModel("ls", tiny, (2,), 3, seed=seed)
    with pytest.raises(ValueError, match="`seed`"):
        tuning.ILSHyperModel(tiny, (2,), 3, teacher_logits=np.zeros((4, 3)), seed=seed)


def test_hypermodels_keep_a_good_shape_and_seed():
    hm = tuning.LSPlusPlusHyperModel(tiny, [28, 28, 1], 3, seed=2**32 - 1)
    assert hm.input_shape == (28, 28, 1) and hm.seed == 2**32 - 1


@pytest.mark.parametrize("bad, match", [
    (dict(seed=-1), "`seed`"), (dict(seed="x"), "`seed`"),
    (dict(max_trials=-3), "`max_trials`"), (dict(max_trials=0), "`max_trials`"),
    (dict(max_trials="5"), "`max_trials`"), (dict(max_trials=2.5), "`max_trials`"),
    (dict(executions_per_trial=0), "`executions_per_trial`"),
    (dict(executions_per_trial="x"), "`executions_per_trial`"),
    (dict(directory=None), "`directory`"), (dict(directory=5), "`directory`"),
    (dict(progress=5), "`progress`"), (dict(objective="nope"), "`objective`"),
    (dict(distribution_strategy="mirrored"), "`distribution_strategy`"),
])
def test_make_tuner_refuses_bad_arguments(data, tmp_path, bad, match):
    settings = dict(directory=str(tmp_path), max_trials=2)
    settings.update(bad)
    with pytest.raises((TypeError, ValueError), match=match):
        tuning.make_tuner("random", _ls_hypermodel(data), **settings)


@pytest.mark.parametrize("epochs", [0, -1, "3"])
def test_make_tuner_refuses_bad_hyperband_epochs(data, tmp_path, epochs):
    with pytest.raises(ValueError, match="`epochs`"):
        tuning.make_tuner("hyperband", _ls_hypermodel(data), max_trials=None, epochs=epochs,
                          directory=str(tmp_path))


def test_make_tuner_builds_a_tuner_from_good_arguments(data, tmp_path):
    tuner = tuning.make_tuner("random", _ls_hypermodel(data), max_trials=2, seed=3,
                              directory=str(tmp_path))
    assert tuner.oracle.max_trials == 2 and tuner.oracle.seed == 3


def test_list_names_are_refused_with_the_argument_named(data, tmp_path):
    with pytest.raises(ValueError, match="`variant`"):
        tuning.ILSHyperModel(tiny, (2,), 3, teacher_logits=np.zeros((4, 3)), variant=["ils"])
    with pytest.raises(TypeError, match="`param`"):
        tuning.check_range(["epsilon"], 0.1)
    with pytest.raises(ValueError, match="Unknown tuner \\['random'\\]"):
        tuning.make_tuner(["random"], _ls_hypermodel(data), directory=str(tmp_path))
    with pytest.raises(TypeError, match="`ranges`.*1"):
        tuning.resolve_ranges("ls", {1: 0.1})


ROWS = [{"trial_id": "0", "status": "COMPLETED", "values": {"epsilon": 0.1}, "val_nll": 1.0,
         "val_ece": 0.1}]


@pytest.mark.parametrize("bad, match", [
    (dict(objective="nope"), "`objective`"), (dict(width="80"), "`width`"),
    (dict(width=0), "`width`"), (dict(width=-5), "`width`"),
])
def test_format_trials_refuses_a_bad_objective_or_width(bad, match):
    with pytest.raises(ValueError, match=match):
        tuning.format_trials(ROWS, **bad)


def test_format_trials_marks_the_best_trial():
    assert tuning.format_trials(ROWS, width=80).splitlines()[-1].endswith("*")


# --- 7, 8. callbacks and data sets -----------------------------------------------------------


def _ols(x=np.zeros((6, 2)), y=(0, 1, 2, 0, 1, 2), **kwargs):
    return callbacks.OnlineLabelSmoothing(OnlineLabelSmoothingLoss(num_classes=3), x, y, **kwargs)


@pytest.mark.parametrize("bad, error, match", [
    (dict(batch_size=0), ValueError, "`batch_size`"),
    (dict(batch_size=-5), ValueError, "`batch_size`"),
    (dict(batch_size=2.7), ValueError, "`batch_size`"),
    (dict(batch_size="x"), ValueError, "`batch_size`"),
    (dict(x=None), TypeError, "`x`"),
    (dict(x=np.zeros((2, 2)), y=[0, 9]), ValueError, "`y` must be class ids in \\[0, 3\\)"),
    (dict(x=np.zeros((2, 2)), y=["a", "b"]), TypeError, "`y`"),
    (dict(y=np.eye(3)[[0, 1, 2, 0]]), ValueError, "`x` has 6 rows but `y` has 4"),
])
def test_online_label_smoothing_refuses_bad_arguments(bad, error, match):
    with pytest.raises(error, match=match):
        _ols(**bad)


def test_online_label_smoothing_reads_one_hot_rows_as_class_ids():
    assert _ols(y=np.eye(3)[[0, 1, 2, 0, 1, 2]]).y.tolist() == [0, 1, 2, 0, 1, 2]


def test_tensorboard_run_names_log_dir(tmp_path):
    with pytest.raises(ValueError, match="`log_dir`"):
        callbacks.tensorboard_run(5, (np.zeros((2, 2)), np.zeros(2)))
    path = tmp_path / "file"
    path.write_text("")
    with pytest.raises(ValueError, match="`log_dir`.*is a file"):
        callbacks.tensorboard_run(str(path), (np.zeros((2, 2)), np.zeros(2)))


X8, Y8, NAMES = np.zeros((8, 2), "float32"), np.zeros(8, "int32"), ["a", "b"]


@pytest.mark.parametrize("splits, error, match", [
    ((X8, Y8[:3], X8, Y8, X8, Y8), ValueError, "`x_train` has 8 rows but `y_train` has 3"),
    ((X8, Y8, X8, Y8[:3], X8, Y8), ValueError, "`x_val` has 8 rows but `y_val` has 3"),
    ((X8, Y8, X8, Y8, X8, Y8 + 2), ValueError, "`y_test` must be class ids in \\[0, 2\\)"),
    ((X8, Y8, np.zeros((8, 3)), Y8, X8, Y8), ValueError, "`x_val` holds examples of shape"),
    ((X8, Y8, X8[:0], Y8[:0], X8, Y8), ValueError, "`x_val` has no rows"),
    ((X8, Y8.astype(str), X8, Y8, X8, Y8), TypeError, "`y_train`"),
    ((X8.tolist(), Y8, X8, Y8, X8, Y8), TypeError, "`x_train`"),
])
def test_classification_data_refuses_inconsistent_splits(splits, error, match):
    with pytest.raises(error, match=match):
        datasets.ClassificationData("x", *splits, NAMES)


@pytest.mark.parametrize("names, error", [(5, TypeError), ("ab", TypeError), (["a"], ValueError),
                                          (["a", "a"], ValueError)])
def test_classification_data_refuses_bad_class_names(names, error):
    with pytest.raises(error, match="`class_names`"):
        datasets.ClassificationData("x", X8, Y8, X8, Y8, X8, Y8, names)


def test_classification_data_accepts_consistent_splits():
    data = datasets.ClassificationData("x", X8, Y8 + 1, X8[:3], Y8[:3], X8[:0], Y8[:0], NAMES)
    assert data.num_classes == 2 and data.input_shape == (2,)


@pytest.mark.parametrize("name", ["test_fraction", "validation_fraction"])
@pytest.mark.parametrize("value", [0, 1, -0.5, "x", NAN])
def test_load_digits_names_the_bad_fraction(name, value):
    with pytest.raises((TypeError, ValueError), match=f"`{name}`"):
        datasets.load_digits(**{name: value})


# --- 9. workflows, models and the registry ---------------------------------------------------


def test_run_comparison_refuses_methods_that_are_not_a_sequence(tmp_path):
    with pytest.raises(TypeError, match="`methods`"):
        workflows.run_comparison(methods=5, output=str(tmp_path))


@pytest.mark.parametrize("shape, num_classes, match", [
    (4, 3, "`input_shape`"), ((0,), 3, "`input_shape`"), ((4, 4), 3, "`input_shape`"),
    ((4,), 1, "`num_classes`"), ((4,), 2.0, "`num_classes`"),
])
def test_default_model_refuses_bad_arguments(shape, num_classes, match):
    with pytest.raises((TypeError, ValueError), match=match):
        models.default_model(shape, num_classes)


def test_models_refuse_a_bad_learning_rate_or_model():
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    for rate in (NAN, 0, -1e-3, "x"):
        with pytest.raises((TypeError, ValueError), match="`learning_rate`"):
            models.adam_for_loss(rate, loss)
    with pytest.raises(TypeError, match="`model`"):
        models.for_loss(5, loss)
    assert models.default_model([4], 3).output_shape == (None, 3)


def test_registry_refuses_an_unknown_tag_and_a_non_boolean_flag():
    with pytest.raises(ValueError, match="Unknown tag 'nope'"):
        methods.names("nope")
    assert "ls" in methods.names("default") and methods.tags()
    for flag in ("needs_teacher", "same_loss", "uses_teacher_model"):
        with pytest.raises(TypeError, match=f"`{flag}`"):
            methods.Method("sweep_flag", params={"a": (1.0,)}, loss=lambda p, k: None,
                           **{flag: "no"})
    assert ks.methods.parse("default") == tuple(methods.get(n) for n in methods.names("default"))
