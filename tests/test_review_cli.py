"""Review of issue 12: `keras-smooth ... module:attribute` from the folder holding the module.

The README's "Add your own method" puts `my_methods.py` in the reader's folder
and runs the installed `keras-smooth` script there. Such a script has only its
own folder on `sys.path` (not the working directory, unlike `python -m`), so
the command line must add the working directory itself, as uvicorn does.
"""

import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MY_METHODS = textwrap.dedent("""
    import keras_smooth as ks
    from keras_smooth.methods import Method


    def _loss(params, num_classes):
        return ks.LabelSmoothingLoss(epsilon=params["epsilon"], num_classes=num_classes)


    double_ls = Method(name="double_ls", label="Double LS", params={"epsilon": (0.02, 0.3)},
                       loss=_loss)
""")

# What pip writes for a console_scripts entry point (the `keras-smooth` command).
SCRIPT = "import sys\nfrom keras_smooth.cli import main\nsys.exit(main())\n"


def test_an_installed_style_script_imports_module_attribute_from_the_working_directory(tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "keras-smooth").write_text(SCRIPT)
    work = tmp_path / "work"
    work.mkdir()
    (work / "my_methods.py").write_text(MY_METHODS)
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "3"}
    # --method is converted first; the bad --tuner then stops the run before any work.
    result = subprocess.run(
        [sys.executable, str(tmp_path / "bin" / "keras-smooth"), "tune", "--method",
         "my_methods:double_ls", "--tuner", "no_such_tuner"],
        cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "my_methods" not in result.stderr, result.stderr
    assert "argument --tuner" in result.stderr, result.stderr


def test_the_working_directory_leaves_the_path_when_the_command_returns(tmp_path, monkeypatch):
    from keras_smooth import cli

    monkeypatch.chdir(tmp_path)
    before = list(sys.path)
    assert cli.main(["tune", "--method", "no_such_module:m"]) == 2
    assert sys.path == before
