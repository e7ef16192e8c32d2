"""Review of issue 12's registry: what `Method.fingerprint` and `Method.grid` must not miss.

A method's fingerprint decides whether stored predictions are reused
(`run_comparison`) and whether a tuning folder is resumed (`run_search`), so
two definitions that train differently must never share one; grids given as a
dict must not drop a misspelt hyperparameter silently; and each built-in's hooks
must hand its hyperparameters to the right place (targets and losses against
NumPy references written from the papers' equations, in `reference.py`).
"""

import functools
import textwrap

import keras
import numpy as np
import pytest

import keras_smooth as ks
import reference as ref
from keras_smooth import methods
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
    with pytest.raises((TypeError, ValueError),
                       match=r"ranges\['epsilon'\]` must be a \(low, high\) pair"):
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


# --- each built-in's hooks pass its hyperparameters where its paper puts them -------------

_K, _N = 4, 12
_RNG = np.random.default_rng(7)
_Y = np.arange(_N) % _K
_TEACHER = _RNG.normal(scale=3.0, size=(_N, _K)).astype("float32")
_LOGITS = _RNG.normal(scale=3.0, size=(_N, _K)).astype("float32")
_T_STAR = 1.7  # the teacher's fitted temperature


def _recipe(name, params):
    context = methods.Context(_RNG.normal(size=(_N, 2)).astype("float32"), _Y, _K, seed=0,
                              teacher_logits=_TEACHER, teacher_temperature=_T_STAR)
    return methods.get(name).build(params, context)


def _value(recipe):
    return float(keras.ops.convert_to_numpy(recipe.loss(recipe.targets, _LOGITS)))


@pytest.mark.parametrize("name, params, expected", [
    ("ils1", {"p1": 0.85, "p2": 1.25},
     lambda: ref.ils1(_Y, ref.softmax(_TEACHER / _T_STAR), 0.85, 1.25)),
    ("ils2", {"epsilon": 0.15, "temperature": 4.0},
     lambda: ref.ils2(_Y, ref.softmax(_TEACHER / 4.0), 0.15)),
    ("ils", {"p1": 0.85, "p2": 1.25, "temperature": 4.0},
     lambda: ref.ils(_Y, ref.softmax(_TEACHER / _T_STAR), ref.softmax(_TEACHER / 4.0), 0.85,
                     1.25)),
])
def test_ils_methods_build_the_papers_targets_from_the_calibrated_teacher(name, params, expected):
    # Eq. 3 reads p_t of the teacher at its fitted T*; Eq. 4 spreads eps like softmax(z / T).
    recipe = _recipe(name, params)
    np.testing.assert_allclose(recipe.targets, expected(), atol=2e-6)
    soft = np.asarray(recipe.targets, dtype="float64")
    assert _value(recipe) == pytest.approx(
        ref.cross_entropy(soft, ref.log_softmax(_LOGITS.astype("float64"))).mean(), rel=1e-5)


def _focal(gamma_low, gamma_high):
    p_t = ref.softmax(_LOGITS.astype("float64"))[np.arange(_N), _Y]
    gamma = np.where(p_t < 0.2, gamma_low, gamma_high)
    return -((1 - p_t) ** gamma * np.log(p_t))


@pytest.mark.parametrize("name, params, expected", [
    ("ls", {"epsilon": 0.15},
     lambda: ref.cross_entropy(ref.uniform_ls(_Y, _K, 0.15), ref.log_softmax(_LOGITS))),
    ("dis", {"beta": 0.3, "temperature": 2.5},
     lambda: ref.distillation(_Y, _LOGITS, _TEACHER, 0.3, 2.5)),
    ("bs_soft", {"beta": 0.85}, lambda: ref.soft_bootstrapping(_Y, _LOGITS, 0.85)),
    ("tfkd", {"alpha": 0.3, "temperature": 5.0},
     lambda: ref.tf_kd_reg(_Y, _LOGITS, 0.3, 5.0, 0.9)),
    ("zipf", {"weight": 0.4}, lambda: ref.zipf(_Y, _LOGITS, 0.4, 1.0)[0]),
    ("mbls", {"margin": 2.0, "weight": 0.3}, lambda: ref.mbls(_Y, _LOGITS, 2.0, 0.3)),
    ("flsd", {"gamma_low": 4.0, "gamma_high": 2.0}, lambda: _focal(4.0, 2.0)),
])
def test_baseline_losses_take_each_hyperparameter_where_the_paper_puts_it(name, params, expected):
    assert _value(_recipe(name, params)) == pytest.approx(float(np.mean(expected())), rel=1e-5)


@pytest.mark.parametrize("first, second", [
    ([1.0, 2.0], [1.0, 3.0]),
    ({"scale": 0.5}, {"scale": 1.0}),
    (np.array([0.5, 1.0]), np.array([0.5, 2.0])),
    (np.float32(0.5), np.float32(1.0)),
])
def test_a_changed_list_dict_or_array_a_hook_closes_over_changes_the_fingerprint(first, second):
    def make(bound):
        def loss(params, num_classes):  # `bound` would, say, weight the classes
            return ks.LabelSmoothingLoss(params["epsilon"], num_classes=len(bound) + 1)
        return loss

    assert _method(make(first)).fingerprint() != _method(make(second)).fingerprint()
    assert _method(make(first)).fingerprint() == _method(make(first)).fingerprint()


def test_a_changed_module_level_value_or_helper_a_hook_reads_changes_the_fingerprint():
    source = """
        SCALE = {scale}

        def _helper(eps):
            return eps * {factor}

        def loss(params, num_classes):
            return ks.LabelSmoothingLoss(_helper(params["epsilon"]) * SCALE)
    """
    base = _method(_defined(source.format(scale=0.5, factor=1), "loss")).fingerprint()
    assert base == _method(_defined(source.format(scale=0.5, factor=1), "loss")).fingerprint()
    assert base != _method(_defined(source.format(scale=1.0, factor=1), "loss")).fingerprint()
    assert base != _method(_defined(source.format(scale=0.5, factor=2), "loss")).fingerprint()


def test_the_fingerprint_stays_small_whatever_a_hook_reads():
    # It is stored with every prediction file and tuning folder: a hook reading a library
    # function or closing over a long list must not write the library or the list into it.
    source = """
        from sklearn.model_selection import train_test_split

        WEIGHTS = [0.5] * 100_000

        def loss(params, num_classes):
            train_test_split, WEIGHTS
            return ks.LabelSmoothingLoss(params["epsilon"])
    """
    fingerprint = _method(_defined(source, "loss")).fingerprint()
    assert len(repr(fingerprint)) < 1000
