"""The README's examples run as written (in a fresh process, this checkout's keras_smooth).

Run: "Add your own method" (both python blocks, and its `keras-smooth compare`
line), "Using the losses", "ILS targets from a teacher", "Looking inside",
"Measuring and fixing calibration" and "Serving a calibrated model" (and the
`neighbors=16` lines of "Many classes", in-process). The
latter five use the reader's own `model`, `x_train`, ...: a preamble supplies
small random stand-ins, so they run in seconds. They run under TensorFlow and
again under JAX (each section's block that wraps the model in
`TrainableTargetsModel` where the README shows one beside the TensorFlow-only
plain model).

Not run: the Quickstart and the other `bash` blocks (minutes of training, or a
cluster); the tuning block of "Tuning on a GPU or a cluster" (a 30-epoch
teacher and 10 trials of 30 epochs on digits); the two-line fragment in "How
the Q and C matrices train" (it needs the reader's `net`; the same calls are
tested in test_matrix_training_any_backend.py).
"""

import json
import os
import re
import subprocess
import sys
import textwrap

import keras
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                                reason="the README's examples are run once, under TensorFlow")


def _section(heading, own=False):
    """The README text under `heading` (e.g. "## Add your own method"), up to the next heading
    of the same or a higher level (`own=True`: up to the next heading of any level)."""
    with open(README, encoding="utf-8") as f:
        text = f.read()
    level = 99 if own else len(heading) - len(heading.lstrip("#"))
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == heading]
    assert len(starts) == 1, f"README has {len(starts)} headings {heading!r}"
    out, fenced = [], False
    for line in lines[starts[0] + 1:]:
        if line.lstrip().startswith("```"):
            fenced = not fenced
        match = None if fenced else re.match(r"^(#+) ", line)
        if match and len(match.group(1)) <= level:
            break
        out.append(line)
    return "\n".join(out)


def _blocks(text, language="python"):
    """The fenced code blocks of one language in `text`, dedented (list items indent them)."""
    pattern = re.compile(rf"^([ \t]*)```{language}\n(.*?)^\1```", re.M | re.S)
    return [textwrap.dedent(match.group(2)) for match in pattern.finditer(text)]


def _run(args, cwd, timeout=300, backend="tensorflow"):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, str(cwd)]),
           "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": backend}
    result = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, (result.stdout[-2000:] + result.stderr[-4000:])
    return result.stdout


def _write_user_module(tmp_path):
    """The section's first block is the user's module `my_methods.py`."""
    blocks = _blocks(_section("## Add your own method"))
    assert len(blocks) == 2, "expected the module and the script"
    module, script = blocks
    assert module.splitlines()[0] == "# my_methods.py"
    (tmp_path / "my_methods.py").write_text(module)
    return script


def test_add_your_own_method_example_runs_and_shows_the_users_label(tmp_path):
    script = _write_user_module(tmp_path)
    (tmp_path / "example.py").write_text(script)
    stdout = _run(["example.py"], tmp_path)
    lines = [line for line in stdout.splitlines() if ": test ECE " in line]
    assert [line.split(":")[0] for line in lines] == ["No LS", "Double LS"], stdout
    with open(tmp_path / "runs" / "my-method" / "results.json") as f:
        stored = json.load(f)
    records = stored["records"]
    by_label = {r["label"]: r for r in records}
    assert set(by_label) == {"No LS", "Double LS"}
    assert by_label["Double LS"]["method"] == "double_ls"
    for line in lines:  # what is printed is the stored test ECE, a number in [0, 1]
        label, value = line.split(": test ECE ")
        assert float(value) == pytest.approx(by_label[label]["ece"], abs=5e-5)
        assert 0.0 <= float(value) <= 1.0
    assert by_label["Double LS"]["hyperparameters"]["epsilon"] in (0.02, 0.3)


def test_add_your_own_method_command_line_names_module_attribute(tmp_path):
    commands = _blocks(_section("## Add your own method"), "bash")
    assert len(commands) == 1
    lines = [line.split("#")[0].split() for line in commands[0].splitlines() if line.strip()]
    assert lines == [["keras-smooth", "compare", "--methods", "no_ls,my_methods:double_ls"],
                     ["keras-smooth", "tune", "--method", "my_methods:double_ls"]]
    _write_user_module(tmp_path)
    # The documented compare line, kept short: --quick, 2 epochs.
    stdout = _run(["-m", "keras_smooth", *lines[0][1:], "--quick", "--epochs", "2",
                   "--output", "out"], tmp_path)
    assert "Double LS" in stdout, stdout
    with open(tmp_path / "out" / "results.json") as f:
        stored = json.load(f)
    records = stored["records"]
    assert {r["label"] for r in records} == {"No LS", "Double LS"}


# Small stand-ins for what the README's snippets take from the reader's own code.
PREAMBLE = """
import keras
import numpy as np
import keras_smooth

rng = np.random.default_rng(0)
x_train = rng.normal(size=(64, 784)).astype("float32")
y_train = np.arange(64) % 10
x_val, y_val = x_train[:32], y_train[:32]
x_test, y_test = x_train[32:], y_train[32:]
class_names = [f"class {k}" for k in range(10)]
x, y = x_train, y_train
teacher_logits = rng.normal(size=(64, 10)).astype("float32")
teacher_temperature = 1.5
student = keras.Sequential([keras.Input((784,)), keras.layers.Dense(10)])
"""
SNIPPETS = ["## Using the losses", "### ILS targets from a teacher",
            "## Looking inside: `keras_smooth.analysis`", "## Measuring and fixing calibration",
            "## Serving a calibrated model with TensorFlow Serving"]


def _portable_block(blocks):
    """On JAX, a section's block for every backend: the first that wraps the model in
    `TrainableTargetsModel` (the README shows it beside the TensorFlow-only plain-model
    form), else the first block."""
    return next((block for block in blocks if "TrainableTargetsModel" in block), blocks[0])


def _run_snippets(tmp_path, backend):
    parts = [PREAMBLE]
    for heading in SNIPPETS:
        blocks = _blocks(_section(heading, own=backend != "tensorflow"))
        assert blocks, heading
        block = blocks[0] if backend == "tensorflow" else _portable_block(blocks)
        parts.append(f"# --- {heading}\n" + block)
    parts.append("print('README snippets done')")
    (tmp_path / "snippets.py").write_text("\n".join(parts))
    stdout = _run(["snippets.py"], tmp_path, backend=backend)
    assert stdout.strip().endswith("README snippets done"), stdout
    # what the snippets write where they say they do
    assert (tmp_path / "reliability.png").stat().st_size > 1000
    assert (tmp_path / "projection.png").stat().st_size > 1000
    assert (tmp_path / "serving" / "my_model" / "1" / "saved_model.pb").exists()
    assert any(name.endswith(".png") for name in os.listdir(tmp_path / "runs" / "rel"))


def test_other_readme_snippets_run_on_small_stand_ins(tmp_path):
    _run_snippets(tmp_path, "tensorflow")


def test_readme_snippets_run_as_written_on_jax(tmp_path):
    """Issue 17: the same snippets under KERAS_BACKEND=jax, each section's portable block."""
    pytest.importorskip("jax")
    assert any("TrainableTargetsModel" in block
               for block in _blocks(_section("## Using the losses", own=True))), \
        "'Using the losses' must show the portable TrainableTargetsModel form"
    _run_snippets(tmp_path, "jax")


def test_many_classes_snippet_builds_both_sparse_losses():
    """ "### Many classes": the two `neighbors=16` lines at K = 21,843, with stand-in neighbour
    ids (each class's next 16 classes), build losses that keep N = 16 neighbours per row."""
    import numpy as np

    import keras_smooth

    blocks = _blocks(_section("### Many classes"))
    assert len(blocks) == 1
    teacher_top16 = (np.arange(21843)[:, None] + np.arange(1, 17)) % 21843
    namespace = {"keras_smooth": keras_smooth, "teacher_top16": teacher_top16}
    exec(blocks[0], namespace)
    loss = namespace["loss"]
    assert isinstance(loss, keras_smooth.LLSLoss) and loss.num_classes == 21843
    assert loss.neighbors == 16
