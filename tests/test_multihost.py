"""Multi-host data parallelism (Keras's distribution API on JAX): two real processes on 127.0.0.1.

`examples/multihost_data_parallel.py` is the supported path; these tests run it
as a user would, one command per process, with gloo collectives between the
processes, and compare with the same script run as one process on the global
batch. Every process is started with a time limit and killed when a test ends.
"""

import os
import sys

import numpy as np
import pytest
from local_processes import finish, free_port, processes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "multihost_data_parallel.py")
METHODS = ("lls", "lspp", "ils")


def _env():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "XLA_"))}
    env.update(PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="jax",
               CUDA_VISIBLE_DEVICES="")  # CPU devices with gloo, also on a machine with a GPU
    return env


def _start(start, args, cwd):
    return start([sys.executable, EXAMPLE, *args], cwd)


def _finish(proc, timeout=240):
    returncode, out = finish(proc, timeout)
    assert returncode == 0, out[-3000:]
    return out


def test_two_processes_train_what_one_process_trains_on_the_global_batch(tmp_path):
    common = ["--quick", "--epochs", "2", "--global-batch-size", "32"]
    coordinator = f"127.0.0.1:{free_port()}"
    pair = ["--coordinator", coordinator, "--num-processes", "2"]
    with processes(_env) as start:
        one = _start(start, [*common, "--output", str(tmp_path / "one.npz")], tmp_path)
        two = [_start(start, [*common, *pair, "--process-id", str(i),
                              "--output", str(tmp_path / "two-{process_id}.npz")], tmp_path)
               for i in range(2)]
        outputs = [_finish(proc) for proc in (one, *two)]
    assert "process 0 of 1: 1 device(s) in the job" in outputs[0], outputs[0][-3000:]
    assert "process 0 of 2: 2 device(s) in the job" in outputs[1], outputs[1][-3000:]
    single = np.load(tmp_path / "one.npz")
    for i in range(2):
        both = np.load(tmp_path / f"two-{i}.npz")
        assert sorted(both.files) == sorted(single.files)
        for key in single.files:  # every weight of every network, and Q of LLS and C of LS++
            np.testing.assert_allclose(both[key], single[key], rtol=0, atol=1e-5, err_msg=key)
    for method in METHODS:
        assert f"{method}/weight0" in single.files
    for method in ("lls", "lspp"):
        matrix = single[f"{method}/matrix"]
        np.testing.assert_allclose(matrix.sum(1), 1.0, atol=1e-5)
        start_rows = (1 - np.eye(3)) / 2 if method == "lspp" else np.full((3, 3), 1 / 3)
        assert np.abs(matrix - start_rows).max() > 1e-3, (method, matrix)  # the matrix learned
    # Each process alone on its half of every batch (no gradient exchange) would end elsewhere:
    # the pair agrees with the one process because the compiled step averages over both.


@pytest.fixture
def example(monkeypatch):
    """The example as a module, imported in this process without changing its backend."""
    import importlib.util

    for name in ("KERAS_BACKEND", "TF_CPP_MIN_LOG_LEVEL"):  # the example sets them on import
        monkeypatch.setenv(name, os.environ.get(name, ""))
    spec = importlib.util.spec_from_file_location("multihost_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("args, message", [
    (["--num-processes", "2", "--process-id", "0"], "--coordinator host:port is needed"),
    (["--num-processes", "2", "--process-id", "2", "--coordinator", "127.0.0.1:1"],
     "--process-id must be in [0, 2), got 2"),
    (["--num-processes", "0"], "--num-processes must be >= 1, got 0"),
    (["--num-processes", "3", "--process-id", "0", "--coordinator", "127.0.0.1:1"],
     "--global-batch-size 64 must be a multiple of --num-processes 3"),
])
def test_bad_arguments_fail_in_one_line_before_joining_a_job(example, capsys, args, message):
    with pytest.raises(SystemExit) as stop:
        example.parse(args)
    assert stop.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("rows, global_batch, processes", [
    (64, 32, 2), (70, 32, 2), (96, 24, 4), (10, 4, 1), (5, 8, 2), (31, 3, 3)])
def test_the_process_slices_of_every_global_batch_are_that_batch(example, rows, global_batch,
                                                                   processes):
    data = np.arange(rows * 2).reshape(rows, 2)
    slices = [example.local_slice(data, global_batch, processes, i) for i in range(processes)]
    local = global_batch // processes
    steps = rows // global_batch
    assert all(len(part) == steps * local for part in slices)
    for step in range(steps):  # process i's step-th local batch is its share of global batch step
        joined = np.concatenate([part[step * local:(step + 1) * local] for part in slices])
        np.testing.assert_array_equal(joined, data[step * global_batch:(step + 1) * global_batch])
