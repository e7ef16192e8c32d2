"""The search across devices and processes: MirroredStrategy replicas, chief/worker tuning, resuming.

Every process here is started with a time limit and killed when a test ends.
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from local_processes import finish, free_port, processes

from keras_smooth.training.teacher import teacher_trainings

HERE = os.path.dirname(__file__)
TUNER_VARS = ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT", "TF_CONFIG")


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in TUNER_VARS}
    # PYTHONPATH: the processes import this checkout's keras_smooth, installed or not
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env.update(TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow", PYTHONPATH=root, **extra)
    return env


@pytest.mark.parametrize("method", ["lls", "ils"])
def test_two_replicas_give_the_trials_of_one(tmp_path, method):
    result = subprocess.run([sys.executable, os.path.join(HERE, "tuning_mirrored_worker.py"), str(tmp_path), method],
                            env=_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert (out["none"]["replicas"], out["mirrored"]["replicas"]) == (1, 2)
    one, two = out["none"]["trials"], out["mirrored"]["trials"]
    assert [t["status"] for t in one + two] == ["COMPLETED"] * 4
    assert [t["values"] for t in one] == [t["values"] for t in two]
    np.testing.assert_allclose([t["val_nll"] for t in two], [t["val_nll"] for t in one], rtol=1e-5)
    assert out["none"]["best"]["trial_id"] == out["mirrored"]["best"]["trial_id"]


def test_chief_and_two_workers_share_one_search_and_one_teacher(tmp_path):
    command = [sys.executable, "-m", "keras_smooth", "tune", "--method", "ils", "--max-trials", "4", "--epochs", "4",
               "--strategy", "none", "--directory", str(tmp_path / "search"), "--chief-timeout", "120"]
    oracle = {"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(free_port())}
    with processes(_env) as start:
        chief = start(command, tmp_path, KERASTUNER_TUNER_ID="chief", **oracle)
        workers = [start(command, tmp_path, KERASTUNER_TUNER_ID=f"tuner{i}", **oracle) for i in range(2)]
        outputs = [finish(w, 300) for w in workers]
        chief_rc, chief_out = finish(chief, 120)
    ran = []
    for rc, out in outputs:
        assert rc == 0, out[-3000:]
        line = [l for l in out.splitlines() if l.startswith("worker tuner")][-1]
        mine = line.split("ran trial(s) ")[1].split(";")[0].split(", ")
        assert mine != ["none"], out[-2000:]  # both workers took part
        ran += mine
    assert sorted(ran) == ["0", "1", "2", "3"]  # every trial run once, by one worker
    assert chief_rc == 0, chief_out[-3000:]
    best = json.loads((tmp_path / "search" / "best.json").read_text())
    assert best["trials"] == {"COMPLETED": 4} and best["model"] == "reloaded"
    assert len(teacher_trainings(tmp_path / "search" / "cache")) == 1
    assert best["teacher"]["trainings"] == 1
    assert os.path.exists(os.path.join(best["export"], "saved_model.pb"))


def test_a_killed_search_resumes_keeping_finished_trials_and_rerunning_the_one_in_flight(tmp_path):
    from keras_smooth import tuning

    directory = tmp_path / "search"
    command = [sys.executable, "-m", "keras_smooth", "tune", "--method", "ls", "--max-trials", "3", "--epochs", "40",
               "--strategy", "none", "--directory", str(directory)]
    in_flight = directory / "search" / "trial_1" / "trial.json"
    with processes(_env) as start:
        proc = start(command, tmp_path)
        deadline = time.monotonic() + 240
        while not in_flight.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert in_flight.exists(), proc.communicate()[0][-3000:]
        os.killpg(proc.pid, signal.SIGKILL)  # trial 0 done, trial 1 running
        proc.wait()
    first = json.loads((directory / "search" / "trial_0" / "trial.json").read_text())
    assert first["status"] == "COMPLETED"
    assert json.loads(in_flight.read_text())["status"] == "RUNNING"
    assert not (directory / "best.json").exists()

    result = tuning.run_search("ls", tuner="random", max_trials=3, epochs=40, strategy="none",
                               directory=str(directory), export=False)
    assert result.trials_run == ["1", "2"]  # the interrupted trial again, then the last one; not trial 0
    assert json.loads((directory / "search" / "trial_0" / "trial.json").read_text()) == first
    assert [(r["trial_id"], r["status"]) for r in result.trials] == [
        ("0", "COMPLETED"), ("1", "COMPLETED"), ("2", "COMPLETED")]
    assert len({json.dumps(r["values"]) for r in result.trials}) == 3
    oracle = json.loads((directory / "search" / "oracle.json").read_text())
    assert sorted(oracle["end_order"]) == ["0", "1", "2"]


def test_multiworker_strategy_still_cannot_fit_keras_models(tmp_path):
    """The reason `strategy="multiworker"` is refused: a two-process cluster on 127.0.0.1 cannot `fit`.

    When this test fails because both tasks print FIT OK, Keras has fixed
    keras-team/keras#20585: lift the refusal in `resolve_strategy`.
    """
    ports = [str(free_port()), str(free_port())]
    with processes(_env) as start:
        tasks = [start([sys.executable, os.path.join(HERE, "multiworker_canary.py"), str(i), *ports], tmp_path)
                 for i in range(2)]
        outputs = [finish(t, 180)[1] for t in tasks]
    for out in outputs:
        assert "replicas 2" in out, out[-3000:]  # the cluster formed: both tasks joined
        assert "FIT FAILED" in out and "PerReplica" in out, out[-3000:]
