"""The workflows on the backend this process runs; results as JSON (for test_*_workflows.py).

    KERAS_BACKEND=jax python tests/backend_worker.py OUT.json FOLDER [--all]

`train(methods)` trains each method with `train_method` on the synthetic task from
initial weights drawn by NumPy (not by the backend's random generator) and on batches
drawn by tf.data, so two backends start from the same weights and see the same batches:
whatever still differs between their results is the backend's arithmetic.
With `--all` it also runs, in this one process (a process start costs seconds): the
comparison and tuning command lines, `run_search` with every tuner, both examples,
and `evaluate`/`predict` of a plain model compiled with a learnable-target loss.
"""

import contextlib
import io
import json
import os
import runpy
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = ("ils", "lls", "lspp", "ols")  # targets from the teacher, Q, C, a callback
EPOCHS = 3


def numpy_model(input_shape, num_classes):
    """A small MLP whose initial weights come from NumPy: the same on every backend."""
    model = keras.Sequential([keras.Input(input_shape), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(num_classes)])
    rng = np.random.RandomState(7)
    model.set_weights([(rng.normal(0, 1 / np.sqrt(w.shape[0]), w.shape) if w.ndim == 2
                        else np.zeros(w.shape)).astype("float32") for w in model.get_weights()])
    return model


def train(methods=METHODS, epochs=EPOCHS):
    """{method: test accuracy, test NLL, validation NLL, matrix} of `train_method`."""
    from keras_smooth import calibration, datasets, methods as registry
    from keras_smooth.workflows import train_method, train_teacher

    data = datasets.load("gaussian", seed=0)
    teacher = train_teacher(numpy_model, data, epochs=epochs, batch_size=32, seed=0)
    out = {"backend": keras.backend.backend(), "teacher_val_nll": teacher.val_nll}
    for name in methods:
        uses = teacher if registry.get(name).needs_teacher else None
        best = train_method(name, data, uses, numpy_model, grid="quick", epochs=epochs,
                            batch_size=32, seed=0)
        scores = calibration.evaluate(data.y_test, best["test_logits"])
        out[name] = {"accuracy": scores["accuracy"], "nll": scores["nll"],
                     "val_nll": best["val_nll"], "matrix": best["matrix"]}
    return out


def _quiet(fn, *args):
    """(return value, stdout text, stderr text) of `fn(*args)`."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        value = fn(*args)
    return value, out.getvalue(), err.getvalue()


def plain_model_checks():
    """Item 6: evaluate/predict of a plain model with LLS/LS++ work; training is refused."""
    from keras_smooth import TrainableTargetsModel, losses

    x = np.random.RandomState(0).normal(size=(40, 2)).astype("float32")
    y = np.arange(40) % 3
    out = {}
    for cls in (losses.LLSLoss, losses.LSPlusPlusLoss):
        model = numpy_model((2,), 3)
        loss = cls(3, alpha=0.2)
        model.compile(optimizer="adam", loss=loss)
        logits = np.asarray(model.predict(x, verbose=0))
        loss_value = float(model.evaluate(x, y, verbose=0))
        # The same network and a fresh loss under the wrapper, which every backend evaluates.
        wrapped = TrainableTargetsModel(model)
        wrapped.compile(optimizer="adam", loss=cls(3, alpha=0.2))
        expected = float(wrapped.evaluate(x, y, verbose=0))
        try:
            model.fit(x, y, epochs=1, verbose=0)
            refused = None
        except ValueError as error:
            refused = str(error)
        out[cls.__name__] = {"evaluate": loss_value, "expected": expected,
                             "predict_shape": list(logits.shape), "fit_error": refused}
    return out


# A user's method whose loss breaks after training (a property that raises): a failure that
# no check of keras_smooth names, so it reaches the command line's last resort.
USER_FAILING = """
import keras
from keras_smooth.methods import Method


class BrokenLoss(keras.losses.SparseCategoricalCrossentropy):
    @property
    def matrix(self):
        raise RuntimeError("this loss cannot show its matrix")


BROKEN = Method("broken", params={"epsilon": (0.1,)},
                loss=lambda params, k: BrokenLoss(from_logits=True))
"""


def cli_runs(folder):
    """Exit code and last error line of compare --quick and tune with every tuner."""
    from keras_smooth import cli

    runs = {
        "compare": ["compare", "--quick", "--methods", "lspp", "--epochs", "1",
                    "--output", os.path.join(folder, "compare")],
        "bad_method": ["compare", "--quick", "--methods", "user_failing:BROKEN", "--epochs",
                       "1", "--output", os.path.join(folder, "broken")],
    }
    for tuner in ("random", "hyperband"):  # bayesian: in `search_in_code`
        budget = [] if tuner == "hyperband" else ["--max-trials", "1"]
        runs[f"tune_{tuner}"] = ["tune", "--method", "lspp", "--tuner", tuner, *budget,
                                 "--epochs", "1", "--strategy", "auto",
                                 "--directory", os.path.join(folder, f"tune_{tuner}")]
    with open(os.path.join(folder, "user_failing.py"), "w") as f:
        f.write(USER_FAILING)
    out = {}
    for name, argv in runs.items():
        code, stdout, stderr = _quiet(cli.main, argv)
        out[name] = {"code": code, "stdout": stdout[-2000:], "stderr": stderr[-2000:]}
    return out


def examples():
    """stdout of each example's --quick run."""
    out = {}
    for name in ("lls_quickstart.py", "ils_teacher_student.py"):
        namespace = runpy.run_path(os.path.join(ROOT, "examples", name), run_name="example")
        argv = ["--quick"] + (["--cache", "ils_cache"] if name.startswith("ils") else [])
        _, stdout, _ = _quiet(namespace["main"], argv)
        out[name] = stdout
    return out


def search_in_code(folder):
    """README "tuning in your code": `run_search` (Bayesian), on one device and "mirrored".

    Under "mirrored" each trial's model is built inside the backend's data-parallel scope
    (JAX: `keras.distribution`); `build_model` records which distribution it saw.
    """
    from keras_smooth.tuning import run_search

    out = {}
    for strategy in ("none", "mirrored"):
        seen = []

        def build(input_shape, num_classes):
            found = (keras.distribution.distribution() if keras.backend.backend() == "jax"
                     else None)
            seen.append(None if found is None else len(found.device_mesh.devices.flatten()))
            return numpy_model(input_shape, num_classes)

        try:
            result = run_search("lls", tuner="bayesian", max_trials=1, epochs=2,
                                strategy=strategy,
                                ranges={"alpha": 0.2},  # one setting: both runs train the same
                                build_model=build, directory=os.path.join(folder, strategy),
                                export=False)
        except ValueError as error:  # torch: "mirrored" is refused
            out[strategy] = {"error": str(error)}
            continue
        out[strategy] = {"val_nll": result.best["val_nll"],
                         "test_nll": result.best["test"]["nll"], "devices_seen": seen}
    try:  # a batch of 33 rows cannot be split evenly between two devices
        run_search("ls", max_trials=1, epochs=1, batch_size=33, strategy="mirrored",
                   directory=os.path.join(folder, "uneven"), export=False)
        out["uneven"] = None
    except ValueError as error:
        out["uneven"] = str(error)
    return out


def main(argv):
    path, folder = argv[0], argv[1]
    os.chdir(folder)
    import time

    seconds = {}

    def timed(name, fn, *args):
        started = time.process_time()
        value = fn(*args)
        seconds[name] = round(time.process_time() - started, 1)
        return value

    result = {"train": timed("train", train)}
    if "--all" in argv:
        result.update(plain=timed("plain", plain_model_checks),
                      cli=timed("cli", cli_runs, folder), examples=timed("examples", examples),
                      search=timed("search", search_in_code, folder))
    result["cpu_seconds"] = seconds
    with open(path, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(sys.argv[1:])
