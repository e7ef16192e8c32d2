"""Review of issue 12's registry: what `Method.fingerprint` and `Method.grid` must not miss.

A method's fingerprint decides whether stored predictions are reused
(`run_comparison`) and whether a tuning folder is resumed (`run_search`), so
two definitions that train differently must never share one; grids given as a
dict must not drop a misspelt hyperparameter silently.
"""

import functools
import textwrap

import pytest

import keras_smooth as ks
from keras_smooth.methods import Method


def _ls(params, num_classes, scale=1.0):
    return ks.LabelSmoothingLoss(epsilon=params["epsilon"] * scale, num_classes=num_classes)


def _method(loss):
    return Method("fp_check", params={"epsilon": (0.05, 0.1)}, loss=loss)


def _defined(source, name):
    """Run `source` (one module's text) and return its `name` (same qualname every time)."""
    namespace = {"ks": ks, "__name__": "user_methods"}
    exec(textwrap.dedent(source), namespace)
    return namespace[name]


def test_the_same_definition_has_the_same_fingerprint():
    source = "def make():\n    return lambda p, k, s=2.0: ks.LabelSmoothingLoss(p['epsilon'] * s)\n"
    first = _defined(source, "make")()
    second = _defined(source, "make")()
    assert first is not second
    assert _method(first).fingerprint() == _method(second).fingerprint()


def test_a_changed_default_argument_changes_the_fingerprint():
    # The usual way to bind a loop variable in a lambda: `lambda p, k, s=s: ...`.
    half = _defined("f = lambda p, k, s=0.5: ks.LabelSmoothingLoss(p['epsilon'] * s)\n", "f")
    full = _defined("f = lambda p, k, s=1.0: ks.LabelSmoothingLoss(p['epsilon'] * s)\n", "f")
    assert _method(half).fingerprint() != _method(full).fingerprint()


def test_a_changed_keyword_only_default_changes_the_fingerprint():
    source = "def f(p, k, *, s={}):\n    return ks.LabelSmoothingLoss(p['epsilon'] * s)\n"
    half, full = (_defined(source.format(s), "f") for s in (0.5, 1.0))
    assert _method(half).fingerprint() != _method(full).fingerprint()


def test_functools_partial_arguments_are_part_of_the_fingerprint():
    half = _method(functools.partial(_ls, scale=0.5)).fingerprint()
    full = _method(functools.partial(_ls, scale=1.0)).fingerprint()
    assert half != full
    assert half == _method(functools.partial(_ls, scale=0.5)).fingerprint()


def test_an_edited_function_a_hook_closes_over_changes_the_fingerprint():
    source = "def _scale(eps):\n    return {}\n"
    wrapper = """
        def factory(helper):
            def loss(p, k):
                return ks.LabelSmoothingLoss(helper(p['epsilon']))
            return loss
    """
    factory = _defined(wrapper, "factory")
    half = factory(_defined(source.format("eps / 2"), "_scale"))
    full = factory(_defined(source.format("eps"), "_scale"))
    assert _method(half).fingerprint() != _method(full).fingerprint()


def test_a_grid_dict_naming_an_unknown_hyperparameter_is_refused():
    method = _method(_ls)
    assert method.grid({"epsilon": [0.2]}) == {"epsilon": (0.2,)}
    with pytest.raises(ValueError, match=r"'epsilom'.*epsilon"):
        method.grid({"epsilom": [0.2]})


def test_one_tag_or_log_scaled_name_given_as_a_string_is_one_name():
    method = Method("one_tag", params={"epsilon": (0.01, 0.1)}, loss=_ls, tags="mine",
                    log_scale="epsilon")
    assert method.tags == ("mine",)
    assert method.search_space()["epsilon"]["sampling"] == "log"


@pytest.mark.parametrize("pair", [0.1, (0.1, 0.2, 0.3), "ab"])
def test_a_range_that_is_not_a_pair_is_refused_naming_it(pair):
    with pytest.raises(ValueError, match=r"ranges\['epsilon'\] must be a pair \(low, high\)"):
        Method("bad_range", params={"epsilon": (0.01, 0.1)}, loss=_ls, ranges={"epsilon": pair})


def _fraction(name, value):
    if not 0 <= value < 1:
        raise ValueError(f"`{name}` must be in [0, 1), got {value}.")
    return float(value)


def test_a_domain_for_a_hyperparameter_the_method_lacks_is_refused():
    # A misspelt key used to leave `epsilon` unchecked.
    with pytest.raises(ValueError, match=r"`domains` names epsilom, not in `params`"):
        Method("typo", params={"epsilon": (0.01, 0.1)}, loss=_ls, domains={"epsilom": _fraction})
    with pytest.raises(TypeError, match=r"domains\['epsilon'\]"):
        Method("typo", params={"epsilon": (0.01, 0.1)}, loss=_ls, domains={"epsilon": 0.5})
    method = Method("ok", params={"epsilon": (0.01, 0.1)}, loss=_ls, domains={"epsilon": _fraction})
    with pytest.raises(ValueError, match=r"must be in \[0, 1\), got 1.5"):
        method.check_settings({"epsilon": 1.5})
