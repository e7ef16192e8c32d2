"""A quick, quiet command line (issue 16, item 2).

`--help` imports no framework, `import keras_smooth` loads neither matplotlib
nor KerasTuner (nor Keras) until used, TensorFlow's start-up banners never
reach stderr, every option explains itself, and errors speak the command
line's words. Timings are in benchmarks/results/cli_startup.md, not here.
"""

import argparse
import io
import os
import subprocess
import sys

import pytest

from keras_smooth import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BANNERS = ("absl::InitializeLog", "oneDNN", "cpu_feature_guard", "To enable the following",
           "cudart_stub", "Could not find cuda drivers")


def _python(code, env=None, timeout=120):
    environment = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    environment["PYTHONPATH"] = ROOT
    environment.update(env or {})
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=environment, timeout=timeout, cwd=ROOT)


@pytest.mark.parametrize("argv", [["--help"], ["compare", "--help"], ["tune", "--help"]])
def test_help_imports_no_framework_and_prints_nothing_on_stderr(argv):
    done = _python(
        "import sys\n"
        "from keras_smooth.cli import main\n"
        f"code = main({argv!r})\n"
        "heavy = sorted(m for m in ('tensorflow', 'keras', 'jax', 'keras_tuner', 'matplotlib')\n"
        "               if m in sys.modules)\n"
        "print('CODE', code, 'HEAVY', ','.join(heavy) or '-')\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "CODE 0 HEAVY -"
    assert done.stderr == ""
    assert "usage: keras-smooth" in done.stdout


def test_version_prints_the_package_version_and_imports_no_framework():
    done = _python(
        "import sys\n"
        "from keras_smooth.cli import main\n"
        "code = main(['--version'])\n"
        "print('CODE', code, sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))\n")
    import keras_smooth

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"keras-smooth {keras_smooth.__version__}", "CODE 0 []"]


def test_import_keras_smooth_loads_no_matplotlib_keras_tuner_or_keras():
    done = _python(
        "import sys\n"
        "import keras_smooth\n"
        "print(sorted(m for m in ('matplotlib', 'keras_tuner', 'keras', 'tensorflow')\n"
        "             if m in sys.modules))\n"
        "print(keras_smooth.__version__, 'LLSLoss' in dir(keras_smooth))\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[]", "0.1.0 True"]


def test_every_subpackage_is_an_attribute_after_import_keras_smooth():
    """The README writes `keras_smooth.methods.get(...)`, `keras_smooth.workflows...`:
    every subpackage and module of the package resolves after a bare `import keras_smooth`."""
    import keras_smooth

    root = os.path.dirname(keras_smooth.__file__)
    names = sorted(name.removesuffix(".py") for name in os.listdir(root)
                   if not name.startswith("_") and (name.endswith(".py") or os.path.isfile(
                       os.path.join(root, name, "__init__.py"))))
    public = [name for name in names if name != "cli"]  # the command line's entry point
    done = _python("import keras_smooth\n"
                   f"print([type(getattr(keras_smooth, n)).__name__ for n in {public!r}])\n")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines()[-1] == repr(["module"] * len(public)), public


def test_tensorflow_banners_never_reach_stderr_and_classes_register_after_the_fact():
    """`--method` imports KerasTuner (and TensorFlow) while parsing, then --epochs 0 fails.

    Keras is imported there after keras_smooth: its classes must still be
    registered for `.keras` loading (before: `import keras_smooth` imported
    them eagerly, and with them TensorFlow and its banners).
    """
    done = _python(
        "import sys\n"
        "from keras_smooth.cli import main\n"
        "code = main(['tune', '--method', 'ls', '--epochs', '0'])\n"
        "import keras_smooth\n"
        "from keras.saving import get_registered_object as get\n"
        "names = ['LLSLoss', 'LSPlusPlusLoss', 'QMatrix', 'TemperatureScaling', 'ClasswiseECE',\n"
        "         'TrainableTargetsModel', 'OnlineLabelSmoothingLoss']\n"
        "print([get('keras_smooth>' + n) is not None for n in names])\n"
        "print(keras_smooth.losses.OnlineLabelSmoothing is\n"
        "      keras_smooth.callbacks.OnlineLabelSmoothing)\n"
        "sys.exit(code)\n",
        env={"KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert not [line for line in lines if any(b in line for b in BANNERS)], done.stderr
    assert lines[-1].startswith("keras-smooth tune: error: argument --epochs")
    assert all(line.startswith(("usage:", " ", "keras-smooth tune: error:"))
               for line in lines), done.stderr
    assert done.stdout.splitlines()[-2:] == ["[True, True, True, True, True, True, True]",
                                             "True"]


def test_a_log_level_the_user_set_is_kept(monkeypatch, capsys):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "1")
    monkeypatch.setitem(cli._QUIET, "on", False)
    assert cli.main(["--help"]) == 0
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "1" and cli._QUIET["on"]  # INFO still hidden
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")  # the user asks for every line
    assert cli.main(["--help"]) == 0
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0" and not cli._QUIET["on"]
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL")
    assert cli.main(["--help"]) == 0
    capsys.readouterr()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3" and cli._QUIET["on"]


def _subparsers():
    parser, subparsers = cli._parser()
    return [("keras-smooth", parser)] + [(f"keras-smooth {name}", p)
                                         for name, p in subparsers.items()]


def test_every_option_has_help_text():
    missing = []
    for name, parser in _subparsers():
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            text = action.help
            if not text or text == argparse.SUPPRESS or len(text.strip()) < 10:
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert missing == []  # before: --tuner and --objective of tune had none


def test_hyperband_max_trials_error_speaks_the_command_line(capsys):
    code = cli.main(["tune", "--tuner", "hyperband", "--max-trials", "3"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("keras-smooth tune: error: argument --max-trials:")
    assert "--tuner hyperband" in err[-1]
    for python_word in ("max_epochs", "max_trials", "None", "factor", "`"):
        assert python_word not in err[-1]  # before: "... from --epochs (its max_epochs) ..."


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_tune_shows_a_live_epoch_line_on_a_terminal_as_compare_does():
    tune, compare = _Terminal(), _Terminal()
    cli.TuneProgress(stream=tune, width=80)({"event": "epoch", "trial_id": "03", "epoch": 4,
                                             "epochs": 10})
    cli.Progress(stream=compare, width=80)({
        "event": "epoch", "replicate": 0, "replicates": 1, "method": "ls", "student": 1,
        "students": 1, "epoch": 4, "epochs": 10})
    for stream in (tune, compare):
        text = stream.getvalue()
        assert text.startswith("\r") and "epoch 4/10" in text and "\n" not in text
        assert len(text) <= 80
    assert "trial 03" in tune.getvalue()
    quiet = io.StringIO()  # not a terminal: no status line, as in compare
    cli.TuneProgress(stream=quiet)({"event": "epoch", "trial_id": "03", "epoch": 4,
                                    "epochs": 10})
    assert quiet.getvalue() == ""


def test_hyperband_without_epochs_keeps_81_epochs_not_the_synthetic_protocols_500(tmp_path):
    """The synthetic task's protocol allows 500 epochs; as Hyperband's max_epochs that would plan
    hundreds of models, so `tune --tuner hyperband` without --epochs uses at most 81 (an
    explicit --epochs is kept). A damaged search.json stops the run right after the header."""
    folder = tmp_path / "search"
    folder.mkdir()
    (folder / "search.json").write_text("{")
    outputs = []
    for extra in ([], ["--epochs", "200"]):
        done = _python("import sys\nfrom keras_smooth.cli import main\n"
                       f"sys.exit(main(['tune', '--method', 'ls', '--tuner', 'hyperband', "
                       f"'--directory', {str(folder)!r}, '--wide', *{extra!r}]))\n",
                       env={"KERAS_BACKEND": "tensorflow"})
        assert done.returncode != 0 and "search.json" in done.stderr, done.stderr
        outputs.append(done.stdout)
    assert "at most 81 epochs" in outputs[0] and "500" not in outputs[0], outputs[0]
    assert "at most 200 epochs" in outputs[1], outputs[1]
