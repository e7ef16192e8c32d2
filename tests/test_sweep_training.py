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
