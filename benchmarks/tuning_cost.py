"""What the shared teacher and extra tuner workers buy in an ILS / LS search.

Part 1, shared teacher: the same N-trial random ILS search (same seed, so the
same trials) run twice in this process:

- "shared": `keras_smooth.tuning.run_search`, which trains the teacher once,
  fits its temperature, caches its logits and hands them to every trial;
- "retrained": the same hypermodel, except that each trial first trains and
  temperature-scales its own teacher (what a search would cost if the teacher
  were part of the trial).

The ratio is retrained / shared wall time; teacher trainings are counted.

Part 2, tuner workers: an N-trial LS search run through `keras-smooth tune`
by a KerasTuner chief with 1 worker, then with 2 workers (separate processes
on 127.0.0.1). Wall time runs from starting the processes until the last
worker exits (process start-up included); trials per minute = N / that time.

    python benchmarks/tuning_cost.py [--trials 6] [--epochs 40] [--worker-trials 8]

Each part uses a fresh temporary folder.
"""

import argparse
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_smooth import datasets, tuning  # noqa: E402
from keras_smooth.tuning.hypermodels import ILSHyperModel  # noqa: E402
from keras_smooth.workflows.compare import default_model  # noqa: E402
from keras_smooth.workflows.teacher import teacher_trainings, train_teacher  # noqa: E402


class RetrainingILSHyperModel(ILSHyperModel):
    """ILS with the teacher trained inside every trial: the cost the shared teacher avoids."""

    def __init__(self, *args, data, epochs, batch_size, **kwargs):
        super().__init__(*args, **kwargs)
        self.data, self.epochs, self.batch_size = data, epochs, batch_size
        self.teachers_trained = 0

    def fit(self, hp, model, *args, **kwargs):
        teacher = train_teacher(self.build_model, self.data, epochs=self.epochs, batch_size=self.batch_size,
                                seed=self.seed)
        self.teachers_trained += 1
        self.teacher_logits, self.calibration_temperature = teacher.logits["train"], teacher.temperature
        return super().fit(hp, model, *args, **kwargs)


def shared_vs_retrained(trials, epochs, batch_size, folder):
    data = datasets.load("gaussian", seed=0)
    started = time.perf_counter()
    shared = tuning.run_search("ils", data=data, tuner="random", max_trials=trials, epochs=epochs,
                               batch_size=batch_size, strategy="none", directory=os.path.join(folder, "shared"),
                               export=False)
    shared_seconds = time.perf_counter() - started
    shared_teachers = len(teacher_trainings(os.path.join(folder, "shared", "cache")))

    started = time.perf_counter()
    placeholder = shared.teacher  # replaced inside every trial
    hypermodel = RetrainingILSHyperModel(
        default_model, data.input_shape, data.num_classes, teacher_logits=placeholder.logits["train"],
        calibration_temperature=placeholder.temperature, variant="ils", grid="synthetic", seed=0, data=data,
        epochs=epochs, batch_size=batch_size,
    )
    tuner = tuning.make_tuner("random", hypermodel, max_trials=trials, seed=0,
                              directory=os.path.join(folder, "retrained"))
    tuner.search(data.x_train, data.y_train, validation_data=(data.x_val, data.y_val), epochs=epochs,
                 batch_size=batch_size, verbose=0)
    retrained_seconds = time.perf_counter() - started
    same = [r["values"] for r in shared.trials] == [r["values"] for r in tuning.trial_rows(tuner)]
    return shared_seconds, shared_teachers, retrained_seconds, hypermodel.teachers_trained, same


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def workers_run(n_workers, trials, epochs, folder):
    command = [sys.executable, "-m", "keras_smooth", "tune", "--method", "ls", "--max-trials", str(trials),
               "--epochs", str(epochs), "--strategy", "none", "--directory", os.path.join(folder, f"w{n_workers}")]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERASTUNER_ORACLE_IP="127.0.0.1",
               KERASTUNER_ORACLE_PORT=str(_free_port()))
    procs = []
    started = time.perf_counter()
    try:
        for tuner_id in ["chief"] + [f"tuner{i}" for i in range(n_workers)]:
            procs.append(subprocess.Popen(command, env=dict(env, KERASTUNER_TUNER_ID=tuner_id), cwd=folder,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                          start_new_session=True))
        for proc in procs[1:]:
            if proc.wait(timeout=1800) != 0:
                raise RuntimeError(f"worker {proc.args} exited with {proc.returncode}")
        seconds = time.perf_counter() - started
        procs[0].wait(timeout=120)
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6, help="trials of the ILS search (part 1)")
    parser.add_argument("--epochs", type=int, default=40, help="epochs per model")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--worker-trials", type=int, default=8, help="trials of the LS search (part 2)")
    args = parser.parse_args()
    print(f"keras {keras.__version__}, tensorflow {tf.__version__}, {platform.machine()}, {os.cpu_count()} CPUs; "
          f"ILS synthetic task (150 train / 150 val), MLP 5x64, {args.epochs} epochs, batch {args.batch_size}")
    with tempfile.TemporaryDirectory() as folder:
        shared, n_shared, retrained, n_retrained, same = shared_vs_retrained(
            args.trials, args.epochs, args.batch_size, folder)
    print(f"\n{args.trials}-trial random ILS search (same trials in both: {same})")
    print(f"{'teacher':28s}{'wall s':>9s}{'teacher trainings':>19s}{'ratio':>8s}")
    print(f"{'shared (trained once)':28s}{shared:9.1f}{n_shared:19d}{1.0:8.2f}")
    print(f"{'retrained in every trial':28s}{retrained:9.1f}{n_retrained:19d}{retrained / shared:8.2f}")

    with tempfile.TemporaryDirectory() as folder:
        times = {n: workers_run(n, args.worker_trials, args.epochs, folder) for n in (1, 2)}
    print(f"\n{args.worker_trials}-trial LS search through keras-smooth tune, chief + workers on 127.0.0.1")
    print(f"{'tuner workers':28s}{'wall s':>9s}{'trials/min':>19s}{'ratio':>8s}")
    for n, seconds in times.items():
        print(f"{n:<28d}{seconds:9.1f}{args.worker_trials * 60 / seconds:19.2f}{times[1] / seconds:8.2f}")


if __name__ == "__main__":
    main()
