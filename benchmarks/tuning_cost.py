"""What the shared teacher and extra tuner workers buy in a search (ILS and LS by default).

Part 1, shared teacher: the same N-trial random search of a method that needs
the teacher (`--method`, default ils; any registered method with
`needs_teacher` and something to tune) run twice in this process (same seed,
so the same trials):

- "shared": `keras_smooth.tuning.run_search`, which trains the teacher once,
  fits its temperature, caches its logits and hands them to every trial;
- "retrained": the same hypermodel, except that each trial first trains and
  temperature-scales its own teacher (what a search would cost if the teacher
  were part of the trial).

The ratio is retrained / shared wall time; teacher trainings are counted.

Part 2, tuner workers: an N-trial search of `--worker-method` (default ls; any
tunable method) run through `keras-smooth tune` by a KerasTuner chief with 1
worker, then with 2 workers (separate processes on 127.0.0.1). Wall time runs
from starting the processes until the last worker exits (process start-up
included); trials per minute = N / that time.

    python benchmarks/tuning_cost.py [--trials 6] [--epochs 40] [--worker-trials 8]
                                     [--method ils] [--worker-method ls]

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

from keras_smooth import datasets, methods, tuning  # noqa: E402
from keras_smooth.models import default_model  # noqa: E402
from keras_smooth.training.teacher import teacher_trainings, train_teacher  # noqa: E402


def teacher_methods():
    """Registered methods that need the teacher and have something to tune."""
    return tuple(n for n in tuning.tunable_methods() if methods.get(n).needs_teacher)


class RetrainingHyperModel(tuning.MethodHyperModel):
    """A teacher method with the teacher trained inside every trial: what sharing it avoids."""

    def __init__(self, *args, data, epochs, batch_size, **kwargs):
        super().__init__(*args, **kwargs)
        self.data, self.epochs, self.batch_size = data, epochs, batch_size
        self.teachers_trained = 0

    def fit(self, hp, model, *args, **kwargs):
        teacher = train_teacher(self.build_model, self.data, epochs=self.epochs,
                                batch_size=self.batch_size, seed=self.seed)
        self.teachers_trained += 1
        self.teacher_logits = teacher.logits["train"]
        self.calibration_temperature = teacher.temperature
        return super().fit(hp, model, *args, **kwargs)


def shared_vs_retrained(method, trials, epochs, batch_size, folder):
    data = datasets.load("gaussian", seed=0)
    started = time.perf_counter()
    shared = tuning.run_search(method, data=data, tuner="random", max_trials=trials,
                               epochs=epochs, batch_size=batch_size, strategy="none",
                               directory=os.path.join(folder, "shared"), export=False)
    shared_seconds = time.perf_counter() - started
    shared_teachers = len(teacher_trainings(os.path.join(folder, "shared", "cache")))

    started = time.perf_counter()
    placeholder = shared.teacher  # replaced inside every trial
    hypermodel = RetrainingHyperModel(
        method, default_model, data.input_shape, data.num_classes,
        teacher_logits=placeholder.logits["train"],
        calibration_temperature=placeholder.temperature, x_train=data.x_train,
        y_train=data.y_train, seed=0, data=data, epochs=epochs, batch_size=batch_size)
    tuner = tuning.make_tuner("random", hypermodel, max_trials=trials, seed=0,
                              directory=os.path.join(folder, "retrained"))
    tuner.search(data.x_train, data.y_train, validation_data=(data.x_val, data.y_val),
                 epochs=epochs, batch_size=batch_size, verbose=0)
    retrained_seconds = time.perf_counter() - started
    same = ([r["values"] for r in shared.trials]
            == [r["values"] for r in tuning.trial_rows(tuner)])
    return shared_seconds, shared_teachers, retrained_seconds, hypermodel.teachers_trained, same


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def workers_run(method, n_workers, trials, epochs, folder):
    command = [sys.executable, "-m", "keras_smooth", "tune", "--method", method,
               "--max-trials", str(trials), "--epochs", str(epochs), "--strategy", "none",
               "--directory", os.path.join(folder, f"w{n_workers}")]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERASTUNER_ORACLE_IP="127.0.0.1",
               KERASTUNER_ORACLE_PORT=str(_free_port()))
    procs = []
    started = time.perf_counter()
    try:
        for tuner_id in ["chief"] + [f"tuner{i}" for i in range(n_workers)]:
            procs.append(subprocess.Popen(command, env=dict(env, KERASTUNER_TUNER_ID=tuner_id),
                                          cwd=folder, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL, start_new_session=True))
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


def _arguments():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6, help="trials of the part 1 search")
    parser.add_argument("--epochs", type=int, default=40, help="epochs per model")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--worker-trials", type=int, default=8,
                        help="trials of the part 2 search")
    parser.add_argument("--method", default="ils", choices=teacher_methods(),
                        help="part 1: a method that needs the teacher (default ils)")
    parser.add_argument("--worker-method", default="ls", choices=tuning.tunable_methods(),
                        help="part 2: any method with something to tune (default ls)")
    return parser.parse_args()


def main():
    args = _arguments()
    label, worker_label = methods.get(args.method).label, methods.get(args.worker_method).label
    print(f"keras {keras.__version__}, tensorflow {tf.__version__}, {platform.machine()}, "
          f"{os.cpu_count()} CPUs; ILS synthetic task (150 train / 150 val), MLP 5x64, "
          f"{args.epochs} epochs, batch {args.batch_size}")
    with tempfile.TemporaryDirectory() as folder:
        shared, n_shared, retrained, n_retrained, same = shared_vs_retrained(
            args.method, args.trials, args.epochs, args.batch_size, folder)
    print(f"\n{args.trials}-trial random {label} search (same trials in both: {same})")
    print(f"{'teacher':28s}{'wall s':>9s}{'teacher trainings':>19s}{'ratio':>8s}")
    print(f"{'shared (trained once)':28s}{shared:9.1f}{n_shared:19d}{1.0:8.2f}")
    print(f"{'retrained in every trial':28s}{retrained:9.1f}{n_retrained:19d}"
          f"{retrained / shared:8.2f}")

    with tempfile.TemporaryDirectory() as folder:
        times = {n: workers_run(args.worker_method, n, args.worker_trials, args.epochs, folder)
                 for n in (1, 2)}
    print(f"\n{args.worker_trials}-trial {worker_label} search through keras-smooth tune, "
          "chief + workers on 127.0.0.1")
    print(f"{'tuner workers':28s}{'wall s':>9s}{'trials/min':>19s}{'ratio':>8s}")
    for n, seconds in times.items():
        print(f"{n:<28d}{seconds:9.1f}{args.worker_trials * 60 / seconds:19.2f}"
              f"{times[1] / seconds:8.2f}")


if __name__ == "__main__":
    main()
