"""Issue 11, command line and workflow files: every option is checked while parsing, damaged
caches are set aside and recomputed, damaged results or search state are refused with one line
naming the file, TFDS data is read without any download, and data files are checked."""

import gzip
import json
import math
import os
import pathlib
import shutil
import subprocess
import sys
import time
import warnings

import keras
import numpy as np
import pytest

from keras_smooth import cli, datasets, tuning
from keras_smooth.datasets import DatasetUnavailable, read_idx
from keras_smooth.workflows import run_comparison
from keras_smooth.training.teacher import teacher_trainings

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="workflows use TF")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "3"}
# The cheapest real comparison: the synthetic task, two methods, one replicate, one epoch.
QUICK_ARGS = ["compare", "--quick", "--methods", "no_ls,ls", "--epochs", "1"]
QUICK_SETTINGS = dict(
    dataset="gaussian",
    methods=("no_ls", "ls"),
    replicates=1,
    seed=0,
    epochs=1,
    batch_size=32,
    grid="quick",
)  # what QUICK_ARGS passes to run_comparison
METRICS = ("accuracy", "nll", "ece", "classwise_ece", "brier", "val_nll", "temperature")


def tiny(input_shape, num_classes):
    return keras.Sequential(
        [
            keras.Input(input_shape),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(num_classes),
        ]
    )


def _files(folder):
    return sorted(str(p.relative_to(folder)) for p in pathlib.Path(folder).rglob("*"))


def _one_error_line(stderr):
    lines = [line for line in stderr.splitlines() if "error:" in line]
    assert len(lines) == 1, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    return lines[0]


def _run_all(commands, timeout=120):
    """Start the commands together; return (returncode, stdout, stderr, seconds) for each."""
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "keras_smooth", *argv],
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for argv, env, cwd in commands
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=timeout)
        results.append((proc.returncode, out, err, time.perf_counter() - started))
    return results


# --- A: every option is checked while parsing -----------------------------------------------

BAD_OPTIONS = [
    (["compare", "--replicates", "0"], "argument --replicates: must be an integer >= 1, got 0"),
    (
        ["compare", "--replicates", "1.5"],
        "argument --replicates: must be an integer >= 1, got '1.5'",
    ),
    (["compare", "--epochs", "0"], "argument --epochs: must be an integer >= 1, got 0"),
    (["compare", "--methods", ""], "argument --methods: names no method"),
    (["compare", "--methods", " , "], "argument --methods: names no method"),
    (["compare", "--methods", "ls,,lls"], "argument --methods: has an empty name"),
    (["compare", "--methods", "ls,foo"], "argument --methods: Unknown method 'foo'"),
    (["compare", "--batch-size", "0"],
     "argument --batch-size: must be an integer >= 1 or 'full', got 0"),
    (["compare", "--batch-size", "-3"],
     "argument --batch-size: must be an integer >= 1 or 'full', got -3"),
    (["compare", "--batch-size", "fulll"],
     "argument --batch-size: must be an integer >= 1 or 'full', got 'fulll'"),
    (["compare", "--batch-size", "9" * 20],
     f"argument --batch-size: must be an integer in [1, {2**31 - 1}] or 'full', got {'9' * 20}"),
    (["compare", "--epochs", str(2**31)],
     f"argument --epochs: must be an integer in [1, {2**31 - 1}], got {2**31}"),
    (["compare", "--seed", "-1"], "argument --seed: must be an integer >= 0, got -1"),
    (["compare", "--seed", str(2**32)], "argument --seed: must be an integer in [0, 4294967295]"),
    (
        ["compare", "--seed", str(2**32 - 1), "--replicates", "2"],
        "argument --seed: 4294967295 + 2 replicates",
    ),
    (["compare", "--grid", "huge"], "argument --grid: invalid choice: 'huge'"),
    (["compare", "--dataset", "mnist"], "argument --dataset: Unknown dataset 'mnist'"),
    (["compare", "--dataset", "tfds:"], "argument --dataset: Unknown dataset 'tfds:'"),
    (["compare", "--output", "{file}"], "argument --output: {file} is a file, not a folder"),
    (
        ["compare", "--output", "{file}/sub"],
        "argument --output: {file}/sub cannot be created: {file} is a file",
    ),
    (["compare", "--output", ""], "argument --output: an empty path is not a folder"),
    *([(["compare", "--tensorboard", "/sys/keras-smooth-test"],
        "argument --tensorboard: /sys/keras-smooth-test cannot be created in /sys: "),
       (["tune", "--tensorboard", "/sys/keras-smooth-test"],
        "argument --tensorboard: /sys/keras-smooth-test cannot be created in /sys: ")]
      if os.path.isdir("/sys/kernel") and os.geteuid() == 0 else []),  # sysfs: os.access
    # says yes to root (another user gets "not writable" from os.access already)
    (
        ["compare", "--dataset", "fashion_mnist", "--fashion-mnist-dir", "{missing}"],
        "argument --fashion-mnist-dir: folder {missing} does not exist",
    ),
    (
        ["compare", "--dataset", "fashion_mnist", "--fashion-mnist-dir", "{file}"],
        "argument --fashion-mnist-dir: {file} is not a folder",
    ),
    (
        ["compare", "--dataset", "fashion_mnist", "--train-limit", "5"],
        "argument --train-limit: must be an integer >= 20, got 5",
    ),
    (
        ["compare", "--dataset", "digits", "--train-limit", "100"],
        "--train-limit applies to --dataset fashion_mnist only, not 'digits'",
    ),
    (
        ["compare", "--fashion-mnist-dir", "{dir}"],
        "--fashion-mnist-dir applies to --dataset fashion_mnist only",
    ),
    (
        ["compare", "--tfds-data-dir", "{dir}"],
        "--tfds-data-dir applies to --dataset tfds:NAME only",
    ),
    (
        ["compare", "--dataset", "tfds:mnist", "--tfds-data-dir", "{missing}"],
        "argument --tfds-data-dir: folder {missing} does not exist",
    ),
    (["compare", "--bogus"], "unrecognized arguments: --bogus"),
    (["tune", "--max-trials", "0"], "argument --max-trials: must be an integer >= 1, got 0"),
    (["tune", "--epochs", "0"], "argument --epochs: must be an integer >= 1, got 0"),
    (["tune", "--batch-size", "0"],
     "argument --batch-size: must be an integer >= 1 or 'full', got 0"),
    (["tune", "--seed", "-5"], "argument --seed: must be an integer >= 0, got -5"),
    (
        ["tune", "--chief-timeout", "0"],
        "argument --chief-timeout: must be a finite number of seconds > 0",
    ),
    (
        ["tune", "--chief-timeout", "nan"],
        "argument --chief-timeout: must be a finite number of seconds > 0",
    ),
    (
        ["tune", "--chief-timeout", "inf"],
        "argument --chief-timeout: must be a finite number of seconds > 0",
    ),
    (
        ["tune", "--chief-timeout", "soon"],
        "argument --chief-timeout: must be a number of seconds > 0",
    ),
    (["tune", "--method", "foo"], "argument --method: invalid choice: 'foo'"),
    (["tune", "--tuner", "foo"], "argument --tuner: invalid choice: 'foo'"),
    (["tune", "--strategy", "foo"], "argument --strategy: invalid choice: 'foo'"),
    (["tune", "--objective", "val_foo"], "argument --objective: invalid choice: 'val_foo'"),
    (
        ["tune", "--tuner", "hyperband", "--max-trials", "3"],
        "argument --max-trials: not allowed with --tuner hyperband",
    ),
    (["tune", "--directory", "{file}"], "argument --directory: {file} is a file, not a folder"),
    (
        ["tune", "--dataset", "digits", "--train-limit", "100"],
        "--train-limit applies to --dataset fashion_mnist",
    ),
    (["tune"], "argument --directory: runs/tune/ils cannot be created: "),  # ./runs is a file here
    ([], "the following arguments are required: {{compare,tune}}"),
]


@pytest.mark.parametrize(
    "argv,message", BAD_OPTIONS, ids=[" ".join(a) or "none" for a, _ in BAD_OPTIONS]
)
def test_every_bad_option_is_a_usage_error_naming_it_before_anything_is_written(
    tmp_path, monkeypatch, capsys, argv, message
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file").write_text("not a folder")
    (tmp_path / "dir").mkdir()
    if argv == ["tune"]:
        (tmp_path / "runs").write_text("a file where the default search folder would go")
    names = {
        "file": str(tmp_path / "file"),
        "missing": str(tmp_path / "missing"),
        "dir": str(tmp_path / "dir"),
    }
    before = _files(tmp_path)
    code = cli.main([a.format(**names) for a in argv])
    out, err = capsys.readouterr()
    assert code == 2, err
    assert err.startswith("usage: keras-smooth"), err
    assert message.format(**names) in _one_error_line(err)
    assert out == "" and _files(tmp_path) == before


@pytest.fixture(scope="module")
def offline_runs(tmp_path_factory):
    """Real `python -m keras_smooth` processes, started together to save time: a parse error and
    TFDS data that is not prepared (in --tfds-data-dir, or in TFDS's default folder)."""
    root = tmp_path_factory.mktemp("offline")
    for name in ("parse", "tfds", "default-tfds", "cwd"):
        (root / name).mkdir()
    commands = {
        "parse": ([*QUICK_ARGS, "--replicates", "0"], ENV, root / "parse"),
        "tfds_data_dir": (
            [
                *QUICK_ARGS,
                "--dataset",
                "tfds:mnist",
                "--tfds-data-dir",
                str(root / "tfds"),
                "--output",
                str(root / "cwd" / "a"),
            ],
            ENV,
            root / "cwd",
        ),
        "tfds_default": (
            [
                "tune",
                "--method",
                "ls",
                "--dataset",
                "tfds:mnist",
                "--directory",
                str(root / "cwd" / "b"),
            ],
            {**ENV, "TFDS_DATA_DIR": str(root / "default-tfds")},
            root / "cwd",
        ),  # TFDS's default
    }
    results = dict(zip(commands, _run_all(list(commands.values()))))
    return root, results


def test_a_parse_error_exits_2_from_a_real_process(offline_runs):
    root, results = offline_runs
    code, out, err, seconds = results["parse"]
    assert code == 2, err[-3000:]
    assert "usage: keras-smooth compare" in err and out == ""
    assert _one_error_line(err) == (
        "keras-smooth compare: error: argument --replicates: must be an integer >= 1, got 0"
    )
    assert os.listdir(root / "parse") == []  # not even the default output folder runs/compare
    assert seconds < 120, seconds  # three processes importing TensorFlow at once, 2 busy cores


@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        ({"replicates": 0}, ValueError, "`replicates` must be an integer >= 1, got 0"),
        ({"replicates": True}, ValueError, "`replicates` must be an integer >= 1, got True"),
        ({"replicates": 1.5}, ValueError, "`replicates` must be an integer >= 1, got 1.5"),
        ({"epochs": 0}, ValueError, "`epochs` must be an integer >= 1, got 0"),
        ({"epochs": "3"}, ValueError, "`epochs` must be an integer >= 1, got '3'"),
        ({"batch_size": 0}, ValueError, "`batch_size` must be an integer >= 1, got 0"),
        ({"batch_size": 10**20}, ValueError,
         f"`batch_size` must be an integer in [1, {2**31 - 1}], got {10**20}"),
        ({"epochs": 2**31}, ValueError, f"`epochs` must be an integer in [1, {2**31 - 1}]"),
        (
            {"seed": -1, "replicates": 1},
            ValueError,
            "`seed` must be an integer in [0, 4294967295], got -1",
        ),
        (
            {"seed": 2**32 - 1, "replicates": 2},
            ValueError,
            "`seed` must be an integer in [0, 4294967294]",
        ),
        ({"methods": ()}, ValueError, "`methods` is empty"),
        (
            {"methods": "ls"},
            TypeError,
            "`methods` must be a sequence of method names, got the string 'ls'",
        ),
        ({"methods": ("ls", "foo")}, ValueError, "Unknown method 'foo'"),
        ({"grid": "huge"}, ValueError, "Unknown grid 'huge'"),
        ({"grid": {"epsilon": (0.1,)}}, ValueError, "Unknown grid"),
        ({"dataset": "mnist"}, ValueError, "Unknown dataset 'mnist'"),
        ({"dataset_options": ["n_test"]}, TypeError, "`dataset_options` must be a dict or None"),
        ({"output": "{file}"}, ValueError, "`output`: {file} is a file, not a folder"),
        ({"build_model": None}, TypeError, "`build_model` must be callable"),
        ({"progress": 3}, TypeError, "`progress` must be callable or None"),
    ],
)
def test_run_comparison_checks_every_argument_before_touching_the_disk(
    tmp_path, kwargs, error, message
):
    (tmp_path / "file").write_text("x")
    kwargs = {
        k: v.format(file=tmp_path / "file") if k == "output" else v for k, v in kwargs.items()
    }
    settings = {"output": str(tmp_path / "out"), **kwargs}
    with pytest.raises(error) as raised:
        run_comparison(**settings)
    assert message.format(file=tmp_path / "file") in str(raised.value)
    assert _files(tmp_path) == ["file"]


@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        ({"seed": -1}, ValueError, "`seed` must be an integer in [0, 4294967295], got -1"),
        (
            {"learning_rate": 0.0},
            ValueError,
            "`learning_rate` must be a finite number > 0, got 0.0",
        ),
        (
            {"learning_rate": float("nan")},
            ValueError,
            "`learning_rate` must be a finite number > 0, got nan",
        ),
        (
            {"chief_timeout": float("nan")},
            ValueError,
            "`chief_timeout` must be a finite number of seconds > 0",
        ),
        (
            {"chief_timeout": 0},
            ValueError,
            "`chief_timeout` must be a finite number of seconds > 0, got 0",
        ),
        ({"directory": "{file}"}, ValueError, "`directory`: {file} is a file, not a folder"),
        ({"dataset": "mnist"}, ValueError, "Unknown dataset 'mnist'"),
        (
            {"data": "gaussian"},
            TypeError,
            "`data` must be a keras_smooth.datasets.ClassificationData or None",
        ),
        ({"build_model": None}, TypeError, "`build_model` must be callable"),
        ({"progress": 1}, TypeError, "`progress` must be callable or None"),
        ({"dataset_options": "n_test=5"}, TypeError, "`dataset_options` must be a dict or None"),
    ],
)
def test_run_search_checks_every_argument_before_touching_the_disk(
    tmp_path, kwargs, error, message
):
    (tmp_path / "file").write_text("x")
    kwargs = {
        k: v.format(file=tmp_path / "file") if k == "directory" else v for k, v in kwargs.items()
    }
    settings = {"directory": str(tmp_path / "search"), "max_trials": 1, "epochs": 1, **kwargs}
    with pytest.raises(error) as raised:
        tuning.run_search("ls", **settings)
    assert message.format(file=tmp_path / "file") in str(raised.value)
    assert _files(tmp_path) == ["file"]


# --- B: damaged caches, results and search state --------------------------------------------


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished comparison with the settings of QUICK_ARGS, run once for the module."""
    out = tmp_path_factory.mktemp("finished") / "out"
    records = run_comparison(output=str(out), **QUICK_SETTINGS)
    return out, {r["method"]: r for r in records}


def _copy(finished, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(finished[0], out)
    return out, next(out.glob("cache/teacher-*.npz")), out / "predictions" / "ls-0.npz"


def _assert_same_records(out, expected):
    records = {r["method"]: r for r in json.loads((out / "results.json").read_text())["records"]}
    assert set(records) == set(expected)
    for method, record in expected.items():
        for key in METRICS:
            assert math.isclose(records[method][key], record[key], rel_tol=1e-5), (method, key)


def _damage(path, how):
    """Damage an .npz the ways a cache gets damaged: cut off, emptied, overwritten, foreign."""
    good = path.read_bytes()
    if how == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "garbage":
        path.write_bytes(os.urandom(512))
    elif how == "other_keys":
        np.savez(str(path)[:-4], something=np.zeros(3))  # np.savez adds the .npz
    elif how == "wrong_shapes":
        with np.load(path) as stored:
            arrays = {k: stored[k] for k in stored.files}
        arrays = {
            k: v[:5] if v.ndim == 2 else v for k, v in arrays.items()
        }  # five rows, not the split's
        arrays["val_logits" if "val_logits" in arrays else "train"] = np.zeros(4)
        np.savez(str(path)[:-4], **arrays)
    return path.read_bytes()


def test_damaged_caches_are_set_aside_and_recomputed_by_the_command(finished, tmp_path):
    out, teacher, ls = _copy(finished, tmp_path)
    teacher_bytes, ls_bytes = _damage(teacher, "truncated"), _damage(ls, "empty")
    result = subprocess.run(
        [sys.executable, "-m", "keras_smooth", *QUICK_ARGS, "--output", str(out)],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    warned = [
        line for line in result.stderr.splitlines() if line.startswith("keras-smooth: warning:")
    ]
    for path in (teacher, ls):
        assert any(
            f"{path} is unreadable" in line and f"moved it to {path}.corrupt" in line
            for line in warned
        )
        assert pathlib.Path(f"{path}.corrupt").exists()
    assert pathlib.Path(f"{teacher}.corrupt").read_bytes() == teacher_bytes  # kept for inspection
    assert pathlib.Path(f"{ls}.corrupt").read_bytes() == ls_bytes
    _assert_same_records(out, finished[1])  # recomputed: the same numbers as the first run
    assert len(teacher_trainings(str(out / "cache"))) == 2


@pytest.mark.parametrize(
    "teacher_damage,predictions_damage",
    [("garbage", "other_keys"), ("other_keys", "wrong_shapes"), ("wrong_shapes", "garbage")],
)
def test_every_kind_of_damaged_npz_is_set_aside_and_recomputed(
    finished, tmp_path, teacher_damage, predictions_damage
):
    out, teacher, ls = _copy(finished, tmp_path)
    _damage(teacher, teacher_damage)
    _damage(ls, predictions_damage)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_comparison(output=str(out), **QUICK_SETTINGS)
    messages = [str(w.message) for w in caught]
    for path in (teacher, ls):
        assert any(m.startswith(f"{path} is unreadable (") for m in messages), messages
        assert pathlib.Path(f"{path}.corrupt").exists()
    _assert_same_records(out, finished[1])


def test_predictions_of_other_settings_are_not_reused(finished, tmp_path):
    # results.json removed (as the "other settings" error suggests), then other settings:
    # the stored predictions belong to the old settings and must be recomputed, not reused.
    out, _, ls = _copy(finished, tmp_path)
    (out / "results.json").unlink()
    other = {**QUICK_SETTINGS, "epochs": 2, "dataset_options": {"n_test": 100}}
    with pytest.warns(UserWarning, match="ls-0.npz was written for other settings; recomputing it"):
        run_comparison(output=str(out), **other)
    fresh = {r["method"]: r for r in run_comparison(output=str(tmp_path / "fresh"), **other)}
    _assert_same_records(out, fresh)
    assert not math.isclose(fresh["ls"]["val_nll"], finished[1]["ls"]["val_nll"], rel_tol=1e-5)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b'{"settings": {"dataset": ',
        b"\xff\xfe\x00",
        b"[]",
        b'{"settings": {}, "records": "none"}',
    ],
)
def test_a_damaged_results_json_is_one_line_naming_it_and_how_to_recover(
    finished, tmp_path, capsys, content
):
    out, _, _ = _copy(finished, tmp_path)
    (out / "results.json").write_bytes(content)
    before = {p: (out / p).read_bytes() for p in _files(out) if (out / p).is_file()}
    assert cli.main([*QUICK_ARGS, "--output", str(out)]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith(f"keras-smooth: error: {out / 'results.json'} ")
    assert "move it away to rebuild the results from the stored predictions" in line
    assert {p: (out / p).read_bytes() for p in before} == before


def test_a_damaged_teacher_log_line_is_skipped_with_a_warning(tmp_path):
    (tmp_path / "teacher-log.jsonl").write_text('{"key": "a"}\n{"key": "b", "pi\n{"key": "c"}\n')
    with pytest.warns(UserWarning, match="teacher-log.jsonl: line 2 is not JSON"):
        assert [r["key"] for r in teacher_trainings(str(tmp_path))] == ["a", "c"]


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    directory = tmp_path_factory.mktemp("searched") / "search"
    tuning.run_search("ls", **_search_settings(directory))
    return directory


def _search_settings(directory):
    return dict(
        data=datasets.load("gaussian", seed=0, n_test=100),
        build_model=tiny,
        max_trials=1,
        epochs=1,
        strategy="none",
        export=False,
        directory=str(directory),
    )


@pytest.mark.parametrize(
    "name,content,message",
    [
        ("search/oracle.json", b'{"ongoing_trials": {}, "hyper', "cannot be read"),
        ("search/oracle.json", b"{}", "lacks ongoing_trials"),
        ("search/tuner0.json", b"[]", "does not hold a JSON object"),
        ("search/trial_0/trial.json", b"\x00\xff garbage", "cannot be read"),
        ("search/trial_0/trial.json", b"", "cannot be read"),
        ("search.json", b"{", "cannot be read"),
    ],
)
def test_damaged_search_state_is_one_clear_error_naming_the_file(
    searched, tmp_path, name, content, message
):
    directory = tmp_path / "search"
    shutil.copytree(searched, directory)
    (directory / name).write_bytes(content)
    with pytest.raises(ValueError) as raised:
        tuning.run_search("ls", **_search_settings(directory))
    text = str(raised.value)
    assert text.startswith(f"{directory / name} {message}") and "\n" not in text
    assert f"remove {directory / 'search'}" in text or name == "search.json"
    assert "another directory" in text or "another --directory" in text


def test_a_damaged_checkpoint_refits_the_best_trial(searched, tmp_path):
    directory = tmp_path / "search"
    shutil.copytree(searched, directory)
    checkpoint = directory / "search" / "trial_0" / "checkpoint.weights.h5"
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])
    with pytest.warns(
        UserWarning, match="checkpoint.weights.h5 cannot be loaded .*refitting trial 0"
    ):
        result = tuning.run_search("ls", **_search_settings(directory))
    assert result.best["model"] == "refitted" and np.isfinite(result.best["test"]["nll"])


# --- C: TFDS from prepared data, never downloaded -------------------------------------------


def test_tfds_without_prepared_data_fails_at_once_naming_it_and_writes_nothing(
    offline_runs, tmp_path
):
    root, results = offline_runs
    for key in ("tfds_data_dir", "tfds_default"):
        code, _, err, seconds = results[key]
        assert code == 2, err[-3000:]
        line = _one_error_line(err)
        assert line.startswith("keras-smooth: error: TFDS data set 'mnist' is not prepared in ")
        assert "nothing is downloaded" in line and "--tfds-data-dir" in line
        assert seconds < 120, seconds  # three processes importing TensorFlow at once, 2 busy cores
    assert os.listdir(root / "cwd") == []  # no output folder
    assert (
        os.listdir(root / "tfds") == [] and os.listdir(root / "default-tfds") == []
    )  # no download
    started = (
        time.perf_counter()
    )  # TensorFlow already imported here: the failure itself is immediate
    with pytest.raises(DatasetUnavailable, match=r"^TFDS data set 'mnist' is not prepared in "):
        datasets.load("tfds:mnist", data_dir=str(tmp_path))
    assert time.perf_counter() - started < 30 and os.listdir(tmp_path) == []  # was 213 s of retries


def test_unknown_or_malformed_tfds_names_are_one_line():
    with pytest.raises(
        DatasetUnavailable, match=r"^TFDS data set 'no_such_set_xyz' is neither a TFDS name nor "
    ):
        datasets.load("tfds:no_such_set_xyz")
    with pytest.raises(DatasetUnavailable, match=r"^TFDS data set 'mnist/no_config': "):
        datasets.load("tfds:mnist/no_config")


def _prepare_digits(data_dir, n_train=150, n_test=50):
    """A real TFDS data set built into `data_dir` from scikit-learn's digits (real images)."""
    import tensorflow_datasets as tfds
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255 / 16)).astype("uint8")[..., None]

    class KerasSmoothTestDigits(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                supervised_keys=("image", "label"),
                features=tfds.features.FeaturesDict(
                    {
                        "image": tfds.features.Image(shape=(8, 8, 1)),
                        "label": tfds.features.ClassLabel(num_classes=10),
                    }
                ),
            )

        def _split_generators(self, dl_manager):
            return {
                "train": self._generate_examples(0, n_train),
                "test": self._generate_examples(n_train, n_train + n_test),
            }

        def _generate_examples(self, start, stop):
            for i in range(start, stop):
                yield i, {"image": images[i], "label": int(digits.target[i])}

    KerasSmoothTestDigits(data_dir=str(data_dir)).download_and_prepare()
    return images, digits.target


def _rows(x, y):
    return sorted(
        (int(label), np.round(np.asarray(image) * 255).astype("uint8").tobytes())
        for image, label in zip(x, y)
    )


def test_tfds_from_prepared_data_in_python_and_on_the_command_line(tmp_path):
    images, labels = _prepare_digits(tmp_path / "tfds")
    data = datasets.load("tfds:keras_smooth_test_digits", data_dir=str(tmp_path / "tfds"), seed=0)
    assert data.input_shape == (8, 8, 1) and data.num_classes == 10
    assert _rows(
        np.concatenate([data.x_train, data.x_val]), np.concatenate([data.y_train, data.y_val])
    ) == _rows(images[:150] / 255.0, labels[:150])
    assert _rows(data.x_test, data.y_test) == _rows(images[150:200] / 255.0, labels[150:200])
    # In a new process the builder class is unknown: TFDS reads the prepared files by name.
    out = tmp_path / "out"
    [(code, stdout, err, _)] = _run_all(
        [
            (
                [
                    *QUICK_ARGS,
                    "--methods",
                    "no_ls",
                    "--dataset",
                    "tfds:keras_smooth_test_digits",
                    "--tfds-data-dir",
                    str(tmp_path / "tfds"),
                    "--output",
                    str(out),
                ],
                ENV,
                tmp_path,
            )
        ],
        timeout=600,
    )
    assert code == 0, err[-3000:]
    stored = json.loads((out / "results.json").read_text())
    assert stored["settings"]["dataset"] == "tfds:keras_smooth_test_digits"
    assert [r["method"] for r in stored["records"]] == ["no_ls"] and 0 <= stored["records"][0][
        "accuracy"
    ] <= 1


def test_every_imported_distribution_is_declared():
    import ast
    import importlib.metadata

    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    declared = tomllib.loads(pathlib.Path(ROOT, "pyproject.toml").read_text())["project"][
        "dependencies"
    ]
    names = {
        d.split(";")[0].split(">")[0].split("=")[0].split("[")[0].strip().lower().replace("_", "-")
        for d in declared
    }
    distributions = importlib.metadata.packages_distributions()
    imported = set()
    for path in pathlib.Path(ROOT, "keras_smooth").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported.add(node.module.split(".")[0])
    # jax and torch are imported only when Keras runs on that backend, i.e. when the user
    # installed it (the JAX and torch branches of the matrix losses and of the workflows).
    third_party = imported - set(sys.stdlib_module_names) - {"keras_smooth", "jax", "torch"}
    for module in sorted(third_party):
        dists = {d.lower().replace("_", "-") for d in distributions.get(module, [module])}
        # the module `tensorflow` comes from the declared `tensorflow` wheel, or from a
        # `tensorflow-cpu` wheel installed before (same files, CPU only)
        dists = {"tensorflow" if d == "tensorflow-cpu" else d for d in dists}
        assert dists & names, f"{module} ({dists}) is imported but not declared in pyproject.toml"
    # tensorflow-datasets imports importlib_resources to build data, declaring it only for
    # Python < 3.9.
    assert "importlib-resources" in names


# --- D: data files ----------------------------------------------------------------------------


def _idx(array):
    return (
        bytes([0, 0, 0x08, array.ndim])
        + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
        + array.astype("uint8").tobytes()
    )


def test_damaged_gzip_idx_files_name_the_file(tmp_path):
    good = gzip.compress(_idx(np.arange(2 * 28 * 28).reshape(2, 28, 28) % 256))
    cut = tmp_path / "cut.gz"
    cut.write_bytes(good[: len(good) // 2])
    corrupt = tmp_path / "corrupt.gz"
    corrupt.write_bytes(
        good[:10] + bytes(b ^ 0xFF for b in good[10:-8]) + good[-8:]
    )  # deflate data flipped
    for path in (cut, corrupt):
        with pytest.raises(DatasetUnavailable, match=rf"^cannot read IDX file {path}: "):
            read_idx(path)


@pytest.mark.parametrize(
    "stem,array,message",
    [
        ("train-labels-idx1-ubyte", np.full(60, 10), "does not hold labels 0..9"),
        ("t10k-images-idx3-ubyte", np.zeros((20, 28, 27)), "does not hold 28 x 28 uint8 images"),
        (
            "train-images-idx3-ubyte",
            np.arange(60) % 10,
            "does not hold 28 x 28 uint8 images",
        ),  # labels, swapped
    ],
)
def test_fashion_mnist_files_of_the_wrong_content_name_the_file(tmp_path, stem, array, message):
    folder = tmp_path / "fm"
    folder.mkdir()
    files = {
        "train-images-idx3-ubyte": np.zeros((60, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(60) % 10,
        "t10k-images-idx3-ubyte": np.zeros((20, 28, 28)),
        "t10k-labels-idx1-ubyte": np.arange(20) % 10,
    }
    files[stem] = array
    for name, values in files.items():
        (folder / name).write_bytes(_idx(values))
    with pytest.raises(DatasetUnavailable, match=rf"^{folder / stem} {message}"):
        datasets.load("fashion_mnist", directory=str(folder))


def test_fashion_mnist_load_failure_writes_nothing(tmp_path, capsys):
    (tmp_path / "fm").mkdir()
    out = tmp_path / "out"
    code = cli.main(
        [
            *QUICK_ARGS,
            "--dataset",
            "fashion_mnist",
            "--fashion-mnist-dir",
            str(tmp_path / "fm"),
            "--output",
            str(out),
        ]
    )
    assert code == 2
    assert "lacks Fashion-MNIST file(s)" in _one_error_line(capsys.readouterr().err)
    assert not out.exists()
