"""Issue 12, adversarial inputs to the method registry, `compare` and `tune`: every odd
Method definition, hook result or `module:attribute` gets a clear error naming the argument,
the method and the value (never a raw traceback from inside Keras, a misleading message, or a
silently wrong setting)."""

import re
import sys

import keras
import numpy as np
import pytest

import keras_smooth as ks
from keras_smooth import datasets, methods, tuning
from keras_smooth.methods import Context, Method
from keras_smooth.workflows import train_method

K, N = 3, 12
EPS = {"epsilon": (0.05, 0.1, 0.2)}


def _loss(params, num_classes):
    return ks.LabelSmoothingLoss(epsilon=params["epsilon"], num_classes=num_classes)


def _method(**kwargs):
    return Method(**{"name": "adv", "params": EPS, "loss": _loss, **kwargs})


def _context():
    rng = np.random.default_rng(0)
    return Context(rng.normal(size=(N, 2)).astype("float32"), np.arange(N) % K, K)


# --- the definition of a Method -----------------------------------------------------------------


@pytest.mark.parametrize("kwargs,error,message", [
    (dict(ranges={"epsilon": (0.1, 0.2, 0.3)}), ValueError,
     "`ranges['epsilon']` must be a (low, high) pair, got (0.1, 0.2, 0.3)"),
    (dict(ranges={"epsilon": 0.1}), TypeError, "`ranges['epsilon']` must be a (low, high) pair"),
    (dict(domains={"epsilon": 3}), TypeError, "`domains['epsilon']` must be callable"),
    (dict(grids={"quick": [0.1]}), TypeError, "`grids['quick']` must be a dict"),
    (dict(temperature_of=3), ValueError, "`temperature_of` must name another method, got 3"),
    (dict(temperature_of="adv"), ValueError, "`temperature_of` must name another method"),
    (dict(label=""), ValueError, "`label` must be non-empty text, got ''"),
    (dict(params={"tuner/epochs": (0.1, 0.2)}), ValueError, "got 'tuner/epochs'"),
    (dict(params={"a b": (0.1, 0.2)}), ValueError, "got 'a b'"),
    (dict(params={"": (0.1, 0.2)}), ValueError, "hyperparameter names in `params`"),
    (dict(params={"epsilon": {0.3, 0.1, 0.2}}), TypeError, "must be an ordered list of values"),
])
def test_odd_definitions_are_refused_naming_the_argument(kwargs, error, message):
    with pytest.raises(error, match=re.escape(message)):
        _method(**kwargs)


def test_a_single_name_for_tags_or_log_scale_is_one_name_not_its_letters():
    method = _method(tags="mine", log_scale="epsilon")
    assert method.tags == ("mine",)
    assert method.search_space()["epsilon"]["sampling"] == "log"


def test_a_grid_dict_naming_an_unknown_hyperparameter_is_refused():
    with pytest.raises(ValueError, match="grid of method 'adv' names 'epsilom'"):
        _method().settings({"epsilom": [0.3]})
    assert _method().settings({"epsilon": [0.3]}) == [{"epsilon": 0.3}]


@pytest.mark.parametrize("name", ["all", "default", "baselines"])
def test_a_method_named_like_a_group_is_not_registered(name):
    with pytest.raises(ValueError, match=f"method name '{name}' is the name of a group"):
        methods.register(_method(name=name))
    assert name not in methods.names()
    assert len(methods.parse(name)) > 1  # the group still means the group


@pytest.mark.parametrize("name", ["all", "baselines"])
def test_a_method_named_like_a_group_is_refused_from_a_module_or_as_an_object(
        tmp_path, monkeypatch, name):
    """`compare --methods mod:obj` and `resolve(obj)` refuse it as `register` does:
    its results would carry a name that, asked for, means the group."""
    module = f"adv_group_named_{name}"
    (tmp_path / f"{module}.py").write_text(
        "from keras_smooth.methods import Method\n"
        f"METHOD = Method(name={name!r}, label='Mine', params={{'epsilon': [0.1]}},\n"
        "                loss=lambda params, num_classes: 'categorical_crossentropy')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for given in (f"{module}:METHOD", f"no_ls,{module}:METHOD"):
        with pytest.raises(ValueError, match=f"method name '{name}' is the name of a group"):
            methods.parse(given)
    sys.modules.pop(module, None)
    with pytest.raises(ValueError, match=f"method name '{name}' is the name of a group"):
        methods.resolve(_method(name=name))


def test_parse_refuses_two_methods_with_one_label(tmp_path, monkeypatch):
    """Tables and plots are keyed by label: the clash is refused while parsing (the
    command line's --methods), before anything runs."""
    module = "adv_same_label"
    (tmp_path / f"{module}.py").write_text(
        "from keras_smooth.methods import Method\n"
        "M = Method(name='adv_mine', label='LS', params={'epsilon': [0.1]},\n"
        "           loss=lambda params, num_classes: 'categorical_crossentropy')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    clash = r"names two methods labelled 'LS' \('ls' and 'adv_mine'\)"
    with pytest.raises(ValueError, match=clash):
        methods.parse(f"ls,{module}:M")
    sys.modules.pop(module, None)


def test_a_tag_named_like_a_method_is_not_registered():
    with pytest.raises(ValueError, match="tag 'ls' is a method name"):
        methods.register(_method(name="adv_tagged", tags=("ls",)))
    assert "adv_tagged" not in methods.names()


@pytest.mark.parametrize("body,reason", [
    ("raise SystemExit(3)", "SystemExit: 3"),
    ("raise RuntimeError('import fails')", "RuntimeError: import fails"),
])
def test_a_module_that_fails_to_import_is_reported_not_raised(tmp_path, monkeypatch, body,
                                                              reason):
    module = f"adv_broken_{abs(hash(body))}"
    (tmp_path / f"{module}.py").write_text(body + "\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match=re.escape(f"cannot import '{module}' for method "
                                                   f"'{module}:x' ({reason})")):
        methods.resolve(f"{module}:x")
    sys.modules.pop(module, None)


# --- what the hooks return ----------------------------------------------------------------------


def _boom(params, num_classes):
    raise RuntimeError("boom")


def _wrong_rows(params, context):
    return np.asarray(context.y_train)[:-3]


def _nan_rows(params, context):
    return np.full((len(context.y_train), context.num_classes), np.nan)


def _ids_out_of_range(params, context):
    return np.asarray(context.y_train) + K


@pytest.mark.parametrize("kwargs,error,message", [
    (dict(loss=_boom), ValueError,
     "method 'adv': its `loss` hook failed at {'epsilon': 0.1} (RuntimeError: boom)"),
    (dict(loss=lambda p, k: 42), TypeError,
     "its `loss` hook must return a Keras loss (a callable), got 42"),
    (dict(targets=_wrong_rows), ValueError,
     f"returned shape ({N - 3},); it needs one row per training example ({N})"),
    (dict(targets=_nan_rows), ValueError, "returned targets with NaN or infinite values"),
    (dict(targets=_ids_out_of_range), ValueError, f"returned class ids outside 0..{K - 1}"),
    (dict(targets=lambda p, c: ["a"] * N), TypeError, "returned an array of dtype <U1"),
    (dict(callbacks=lambda p, loss, c: keras.callbacks.Callback()), TypeError,
     "its `callbacks` hook must return a list of keras.callbacks.Callback"),
    (dict(callbacks=lambda p, loss, c: [3]), TypeError, "got [3]"),
])
def test_bad_hook_results_are_refused_naming_method_hook_and_setting(kwargs, error, message):
    with pytest.raises(error, match=re.escape(message)):
        _method(**kwargs).build({"epsilon": 0.1}, _context())


def test_good_hook_results_pass_unchanged():
    recipe = _method(targets=lambda p, c: list(c.y_train),
                     callbacks=lambda p, loss, c: None).build({"epsilon": 0.1}, _context())
    np.testing.assert_array_equal(recipe.targets, np.arange(N) % K)
    assert recipe.callbacks == []


# --- training that fails ------------------------------------------------------------------------


def tiny(input_shape, num_classes):
    return keras.Sequential([keras.Input(input_shape), keras.layers.Dense(num_classes)])


def _nan_loss(y_true, y_pred):
    return keras.ops.mean(y_pred, axis=-1) * np.nan


needs_tf = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="workflows use TF")


@needs_tf
@pytest.mark.parametrize("loss,message", [
    (lambda p, k: _nan_loss, "(its training diverged: the model's predictions are not finite)"),
    (lambda p, k: keras.losses.CategoricalCrossentropy(from_logits=True),
     ": ValueError: Arguments `target` and `output` must have the same rank"),
])
def test_a_failed_training_names_the_method_and_setting(loss, message):
    data = datasets.load("gaussian", seed=0, n_train=5, n_val=5, n_test=5)
    with pytest.raises(ValueError, match=re.escape("method 'adv' failed to train at "
                                                   "{'epsilon': 0.1}") + ".*" + re.escape(message)):
        train_method(_method(loss=loss), data, None, tiny, grid="quick", epochs=1,
                     batch_size=32, seed=0)


@needs_tf
def test_tune_reports_a_failed_method_in_one_line_and_a_new_search_is_not_a_reload(tmp_path):
    data = datasets.load("gaussian", seed=0, n_train=5, n_val=5, n_test=5)
    settings = dict(data=data, build_model=tiny, tuner="random", max_trials=1, epochs=1,
                    batch_size=32, strategy="none", export=False)
    with pytest.raises(RuntimeError) as raised:
        tuning.run_search(_method(loss=lambda p, k: _nan_loss),
                          directory=str(tmp_path / "nan"), **settings)
    assert "Traceback" not in str(raised.value)
    assert "method 'adv' failed to train at {'epsilon': " in str(raised.value)
    assert "its training diverged" in str(raised.value)
    # A range the user's loss cannot take: the loss's own error, not "cannot reload".
    with pytest.raises(ValueError) as raised:
        tuning.run_search(_method(), directory=str(tmp_path / "out"),
                          ranges={"epsilon": [1.5]}, **settings)
    assert "cannot reload" not in str(raised.value)
    assert "its `loss` hook failed at {'epsilon': 1.5}" in str(raised.value)


@needs_tf
def test_compare_refuses_two_labels_alike_and_shows_an_edited_label_on_resume(tmp_path):
    from keras_smooth.workflows import run_comparison

    settings = dict(dataset="gaussian", replicates=1, epochs=1, batch_size=32, grid="quick",
                    output=str(tmp_path / "out"), build_model=tiny,
                    dataset_options={"n_train": 5, "n_val": 5, "n_test": 5})
    with pytest.raises(ValueError, match=re.escape("two methods labelled 'LS' ('ls' and "
                                                   "'adv'); give them different labels")):
        run_comparison(methods=["ls", _method(label="LS")], **settings)
    assert not (tmp_path / "out").exists()
    first = run_comparison(methods=[_method(label="Mine")], **settings)
    again = run_comparison(methods=[_method(label="Mine, renamed")], **settings)
    assert [r["label"] for r in first] == ["Mine"]
    assert [r["label"] for r in again] == ["Mine, renamed"]
    assert again[0]["nll"] == first[0]["nll"]  # resumed, not retrained


@pytest.mark.parametrize("domain,error,message", [
    (lambda name, value: None, ValueError,
     "`adv: domains['epsilon'](0.05) returned` must be a finite number, got None"),
    (lambda name, value: {}[name], ValueError,
     "method 'adv': `domains['epsilon']` failed on 0.05 (KeyError: 'epsilon')"),
])
def test_a_domain_check_that_misbehaves_is_reported(domain, error, message):
    with pytest.raises(error, match=re.escape(message)):
        _method(domains={"epsilon": domain})


def test_a_unicode_label_is_written_to_the_csv_under_an_ascii_locale(tmp_path):
    import subprocess

    root = __file__.rsplit("/tests/", 1)[0]
    code = ("from keras_smooth.workflows import report\n"
            "report.write_csv([{'method': 'uni', 'label': '\\u0414\\u0432 LS \\u03b5', "
            "'hyperparameters': {}}], 'out.csv')\n")  # escapes: the command line is ASCII
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": root, "LC_ALL": "C", "PYTHONUTF8": "0",
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "uni,Дв LS ε" in (tmp_path / "out.csv").read_text(encoding="utf-8")


@needs_tf
def test_a_same_loss_method_whose_loss_changes_with_the_setting_is_refused():
    # One compiled model is retrained for every setting of a `same_loss` method: a loss that
    # differs per setting would silently be replaced by the first setting's.
    data = datasets.load("gaussian", seed=0, n_train=5, n_val=5, n_test=5)
    method = _method(same_loss=True, grids={"quick": {"epsilon": (0.05, 0.2)}})
    with pytest.raises(ValueError, match=re.escape("method 'adv' says `same_loss=True`, but its "
                                                   "loss at {'epsilon': 0.2} differs")):
        train_method(method, data, None, tiny, grid="quick", epochs=1, batch_size=32, seed=0)
