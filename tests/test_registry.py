"""The method registry's public contract (issue 12), as the issue writes it.

`Method(name=..., label=..., params=..., loss=...)`; `register` refuses a
duplicate name; `get` lists the registered names when it fails; `names`,
`resolve` and `parse` (names, groups, `module:attribute`); every built-in is
registered and, where it has a hyperparameter, tunable inside the values its
loss accepts; the ILS paper's grids are written out here and compared with the
registry's. No test leaves a registration behind (`_isolated_registry`).
"""

import itertools
import math
import textwrap

import keras
import numpy as np
import pytest

import keras_smooth as ks
import reference as ref
from keras_smooth import methods
from keras_smooth.methods import Context, Method, Recipe, get, names, parse, register, resolve
from keras_smooth.methods import _registry

BUILT_INS = ("no_ls", "ls", "ils1", "ils2", "ils", "lls", "lspp", "dis", "bs_soft", "beta", "cls",
             "ols", "tfkd", "zipf", "mbls", "flsd")
# The groups `keras-smooth compare --methods` has always accepted (README, "Comparing methods").
DEFAULT = ("no_ls", "no_ls_temps", "ls", "ls_temps", "ils1", "ils2", "ils", "ils_temps", "lls",
           "lspp")
BASELINES = ("dis", "bs_soft", "beta", "cls", "ols", "tfkd", "zipf", "mbls", "flsd")
# ILS (ILS paper §IV), Dis (distillation) and Beta (ranked by the teacher) read the teacher.
TEACHER_METHODS = {"ils1", "ils2", "ils", "dis", "beta"}

K = 3
N = 30


@pytest.fixture(autouse=True)
def _isolated_registry():
    """Whatever a test registers is gone afterwards; the built-ins stay as they were."""
    saved = dict(_registry._REGISTRY)
    yield
    _registry._REGISTRY.clear()
    _registry._REGISTRY.update(saved)


def _ls_loss(params, num_classes):
    return ks.LabelSmoothingLoss(epsilon=params["epsilon"], num_classes=num_classes)


def _double_ls(name="double_ls"):
    """The issue's example, verbatim."""
    return Method(name=name, label="Double LS", params={"epsilon": (0.02, 0.3)}, loss=_ls_loss)


def _context(with_teacher=True, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(N) % K  # every class present (cLS needs class centres)
    x = (rng.normal(size=(N, 2)) + 2.0 * np.eye(K, 2)[y]).astype("float32")
    teacher = rng.normal(scale=2.0, size=(N, K)).astype("float32") if with_teacher else None
    return Context(x_train=x, y_train=y, num_classes=K, seed=seed, teacher_logits=teacher,
                   teacher_temperature=1.3)


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x), dtype="float64")


# --- the contract of the issue ----------------------------------------------------------


def test_the_issues_example_registers_and_is_found_by_name():
    double_ls = _double_ls()
    assert "double_ls" not in names()
    assert register(double_ls) is double_ls
    assert get("double_ls") is double_ls
    assert names()[-1] == "double_ls" and names().count("double_ls") == 1
    assert (double_ls.name, double_ls.label) == ("double_ls", "Double LS")
    assert double_ls.params == {"epsilon": (0.02, 0.3)}
    # the tuner searches between the minimum and the maximum of the values
    assert double_ls.tunable
    assert double_ls.search_space() == {"epsilon": {"min": 0.02, "max": 0.3, "sampling": "linear"}}


def test_register_refuses_a_duplicate_name_and_keeps_the_first():
    first = register(_double_ls())
    with pytest.raises(ValueError, match="'double_ls' is already registered"):
        register(_double_ls())
    assert get("double_ls") is first
    with pytest.raises(ValueError, match="'ls' is already registered"):
        register(Method("ls", params={"epsilon": (0.1,)}, loss=_ls_loss))
    with pytest.raises(TypeError, match="Method"):
        register("double_ls")


def test_get_names_every_registered_method_when_the_name_is_unknown():
    register(_double_ls())
    with pytest.raises(ValueError, match="Unknown method 'triple_ls'") as error:
        get("triple_ls")
    for name in names():
        assert name in str(error.value)
    assert "double_ls" in names() and set(BUILT_INS) <= set(names())


def test_the_issues_example_builds_a_loss_of_class_ids_and_logits():
    recipe = _double_ls().build({"epsilon": 0.3}, _context(with_teacher=False))
    assert isinstance(recipe, Recipe) and recipe.callbacks == []
    np.testing.assert_array_equal(recipe.targets, np.arange(N) % K)  # class ids, untouched
    logits = np.random.default_rng(1).normal(size=(N, K)).astype("float32")
    expected = ref.cross_entropy(ref.uniform_ls(recipe.targets, K, 0.3), ref.log_softmax(logits))
    np.testing.assert_allclose(_np(recipe.loss(recipe.targets, logits)), expected.mean(),
                               rtol=1e-5)


# --- resolve and parse ------------------------------------------------------------------


def _write_module(tmp_path, monkeypatch, name, body):
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(body))
    monkeypatch.syspath_prepend(str(tmp_path))


USER_MODULE = """
    import keras_smooth as ks
    from keras_smooth.methods import Method

    def _loss(params, num_classes):
        return ks.LabelSmoothingLoss(epsilon=params["epsilon"], num_classes=num_classes)

    double_ls = Method(name="double_ls", label="Double LS", params={"epsilon": (0.02, 0.3)},
                       loss=_loss)
    nested = type("Holder", (), {"inner": double_ls})
    not_a_method = 42
"""


def test_resolve_takes_a_method_a_name_or_module_attribute(tmp_path, monkeypatch):
    _write_module(tmp_path, monkeypatch, "my_methods_resolve", USER_MODULE)
    import my_methods_resolve

    assert resolve("ls") is get("ls")
    assert resolve("my_methods_resolve:double_ls") is my_methods_resolve.double_ls
    assert resolve("my_methods_resolve:nested.inner") is my_methods_resolve.double_ls
    mine = _double_ls()
    assert resolve(mine) is mine
    assert "double_ls" not in names()  # resolving does not register
    with pytest.raises(ValueError, match="clashes with the registered method"):
        resolve(Method("ls", params={"epsilon": (0.1,)}, loss=_ls_loss))
    with pytest.raises(ValueError, match="Unknown method 'nope'"):
        resolve("nope")


@pytest.mark.parametrize("spec, error, match", [
    ("no_such_module_xyz:double_ls", ValueError, "cannot import 'no_such_module_xyz'"),
    ("my_methods_bad:missing", ValueError, "has no attribute 'missing'"),
    ("my_methods_bad:not_a_method", TypeError, "is of type int, not a keras_smooth.methods.Method"),
    ("my_methods_bad:", ValueError, "is not module:attribute"),
    (":double_ls", ValueError, "is not module:attribute"),
])
def test_resolve_names_what_is_wrong_with_module_attribute(tmp_path, monkeypatch, spec, error,
                                                           match):
    _write_module(tmp_path, monkeypatch, "my_methods_bad", USER_MODULE)
    with pytest.raises(error, match=match):
        resolve(spec)


def test_parse_names_groups_and_module_attribute(tmp_path, monkeypatch):
    _write_module(tmp_path, monkeypatch, "my_methods_parse", USER_MODULE)
    import my_methods_parse

    assert [m.name for m in parse("ls,no_ls")] == ["ls", "no_ls"]  # order kept
    assert [m.name for m in parse("default")] == list(DEFAULT)
    assert [m.name for m in parse(None)] == list(DEFAULT)
    assert [m.name for m in parse("  ")] == list(DEFAULT)
    assert [m.name for m in parse("baselines")] == list(BASELINES)
    assert [m.name for m in parse("all")] == list(DEFAULT + BASELINES)
    assert [m.name for m in parse("no_ls, ls ,no_ls,")] == ["no_ls", "ls"]  # spaces, repeats
    got = parse("no_ls,my_methods_parse:double_ls")
    assert got == (get("no_ls"), my_methods_parse.double_ls)
    assert got[1].label == "Double LS"
    assert all(isinstance(m, Method) for m in parse("all"))
    with pytest.raises(ValueError, match="Unknown method 'lsx'"):
        parse("ls,lsx")
    with pytest.raises(ValueError, match="names no method"):
        parse(",")
    with pytest.raises(TypeError, match="comma-separated"):
        parse(["ls"])


# --- every built-in ---------------------------------------------------------------------


@pytest.mark.parametrize("name", BUILT_INS)
def test_every_built_in_is_registered_and_tunable_if_it_has_a_hyperparameter(name):
    method = get(name)
    assert isinstance(method, Method) and method.name == name
    assert method.needs_teacher == (name in TEACHER_METHODS)
    assert method.tunable == bool(method.params)
    assert bool(method.params) == (name != "no_ls")
    space = method.search_space()
    assert set(space) == set(method.params)
    for param, spec in space.items():
        low, high = (spec["min"], spec["max"]) if isinstance(spec, dict) else (spec, spec)
        assert low < high, (name, param, spec)  # every hyperparameter is searched
        if isinstance(spec, dict) and spec["sampling"] == "log":
            assert low > 0, (name, param)
        for grid in methods.GRID_NAMES:  # every grid value lies in the tuner's range
            for value in method.grid(grid)[param]:
                assert low <= value <= high, (name, param, grid, value)


def _probe_settings(method):
    """Both ends of every tuning range and every value of every grid, one parameter at a time
    (the others at their "quick" value), plus all-low and all-high corners."""
    centre = method.settings("quick")[0]
    lows = {p: lo for p, (lo, hi) in method.ranges.items()}
    highs = {p: hi for p, (lo, hi) in method.ranges.items()}
    probes = [lows, highs]
    for param, (low, high) in method.ranges.items():
        values = {low, high}
        for grid in methods.GRID_NAMES:
            values.update(method.grid(grid)[param])
        probes += [{**centre, param: v} for v in sorted(values)]
    return probes


def _check_recipe(name, recipe, context, params):
    targets = np.asarray(recipe.targets, dtype="float64")
    assert len(targets) == N, (name, params)
    assert np.all(np.isfinite(targets)), (name, params)
    if targets.ndim == 2 and targets.shape[1] == K:  # soft rows: distributions
        assert targets.min() >= 0, (name, params)
        np.testing.assert_allclose(targets.sum(1), 1.0, atol=1e-5, err_msg=f"{name} {params}")
    logits = np.random.default_rng(2).normal(scale=3.0, size=(8, K)).astype("float32")
    value = _np(recipe.loss(recipe.targets[:8], logits))
    assert np.all(np.isfinite(value)) and value.ndim == 0, (name, params, value)


@pytest.mark.parametrize("name", [n for n in BUILT_INS if n != "no_ls"])
def test_every_search_space_point_builds_a_loss_with_a_finite_value(name):
    method = get(name)
    context = _context()
    probes = _probe_settings(method)
    assert len(probes) >= 2 + 2 * len(method.params)
    for params in probes:
        recipe = method.build(params, context)
        _check_recipe(name, recipe, context, params)


def test_no_ls_trains_on_the_class_ids_with_cross_entropy():
    recipe = get("no_ls").build({}, _context(with_teacher=False))
    logits = np.random.default_rng(3).normal(size=(N, K)).astype("float32")
    expected = -ref.log_softmax(logits)[np.arange(N), np.arange(N) % K].mean()
    np.testing.assert_allclose(_np(recipe.loss(recipe.targets, logits)), expected, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(TEACHER_METHODS))
def test_teacher_methods_refuse_a_context_without_the_teacher(name):
    method = get(name)
    with pytest.raises(ValueError, match=rf"method '{name}' needs the teacher's logits"):
        method.build(method.settings("quick")[0], _context(with_teacher=False))


def test_build_refuses_missing_extra_and_out_of_domain_hyperparameters():
    ils = get("ils")
    context = _context()
    with pytest.raises(ValueError, match="takes hyperparameters p1, p2, temperature; got p1, p2"):
        ils.build({"p1": 0.9, "p2": 1.0}, context)
    with pytest.raises(ValueError, match="got p1, p2, temperature, epsilon"):
        ils.build({"p1": 0.9, "p2": 1.0, "temperature": 2.0, "epsilon": 0.1}, context)
    with pytest.raises(TypeError, match="must be a dict"):
        ils.build([0.9, 1.0, 2.0], context)
    with pytest.raises(ValueError, match=r"`temperature` must be > 0, got -1.0"):
        ils.build({"p1": 0.9, "p2": 1.0, "temperature": -1.0}, context)
    with pytest.raises(ValueError, match=r"`epsilon` must be in \[0, 1\), got 1.5"):
        get("ls").build({"epsilon": 1.5}, context)
    with pytest.raises(ValueError, match="trains nothing"):
        get("ls_temps").build({}, context)


# --- the paper's grids, written out -----------------------------------------------------

# ILS paper, appendix C ("Real Datasets Experiments", §A Architectures) and §V-a: the grids
# of the real-data experiments.
PAPER = {
    "epsilon": (0.01, 0.05, 0.1, 0.15, 0.2),  # LS and ILS2
    "p1": (0.975, 0.95, 0.925, 0.9, 0.85),  # ILS1 and ILS
    "p2": (0.75, 1, 1.25, 1.5, 2),  # ILS1 and ILS
    "temperature": (1, 2, 4, 8, 16),  # ILS2 and ILS: the teacher's softmax temperature
}
# ILS paper, appendix A ("Synthetic Datasets Experiments"), §C "Hyper-parameter tuning":
# eps in {0.001, 0.005, 0.01, 0.03, 0.05, ..., 0.19} (steps of 0.02 after 0.01), T in
# {1, 2, 4, 6}, P1 in {0.75, 0.775, 0.8, 0.825, 0.85}, P2 in {0.75, 1, 1.25, 1.5, 1.75, 2}.
SYNTHETIC = {
    "epsilon": (0.001, 0.005, 0.01, 0.03, 0.05, 0.07, 0.09, 0.11, 0.13, 0.15, 0.17, 0.19),
    "temperature": (1, 2, 4, 6),
    "p1": (0.75, 0.775, 0.8, 0.825, 0.85),
    "p2": (0.75, 1, 1.25, 1.5, 1.75, 2),
}
# Which hyperparameters each method tunes (ILS paper §IV: ILS1 Eq. 3, ILS2 Eq. 4, ILS both);
# Beta and cLS take LS's epsilon grid (README, "Comparing methods").
TUNED = {"ls": ("epsilon",), "ils1": ("p1", "p2"), "ils2": ("epsilon", "temperature"),
         "ils": ("p1", "p2", "temperature"), "beta": ("epsilon",), "cls": ("epsilon",)}


@pytest.mark.parametrize("grid, written", [("paper", PAPER), ("synthetic", SYNTHETIC)])
@pytest.mark.parametrize("name", sorted(TUNED))
def test_grids_are_the_ils_papers_written_out(name, grid, written):
    method = get(name)
    got = method.grid(grid)
    assert set(got) == set(TUNED[name])
    for param in TUNED[name]:
        assert sorted(got[param]) == pytest.approx(sorted(written[param]), abs=1e-12), param
    # `compare` tries every combination of them
    combos = {tuple(s[p] for p in TUNED[name]) for s in method.settings(grid)}
    expected = set(itertools.product(*(written[p] for p in TUNED[name])))
    assert len(method.settings(grid)) == math.prod(len(written[p]) for p in TUNED[name])
    assert {tuple(round(v, 9) for v in c) for c in combos} == {
        tuple(round(float(v), 9) for v in c) for c in expected}
    # and the tuner's range holds all of them
    for param in TUNED[name]:
        low, high = method.ranges[param]
        assert low <= min(written[param]) and max(written[param]) <= high


# --- settings and named grids -----------------------------------------------------------


def test_settings_are_the_cartesian_product_of_the_grid():
    method = Method("two_params", params={"a": (1, 2, 3), "b": (10, 20)},
                    grids={"paper": {"a": (5,)}}, loss=_ls_loss)
    expected = [{"a": a, "b": b} for a in (1.0, 2.0, 3.0) for b in (10.0, 20.0)]
    assert method.settings("small") == expected
    assert method.settings("synthetic") == expected  # a grid not given uses `params`
    assert method.settings("paper") == [{"a": 5.0, "b": 10.0}, {"a": 5.0, "b": 20.0}]
    assert method.settings({"b": (7,)}) == [{"a": a, "b": 7.0} for a in (1.0, 2.0, 3.0)]
    assert get("no_ls").settings("paper") == [{}]
    with pytest.raises(ValueError, match="Unknown grid 'huge'"):
        method.settings("huge")


def test_quick_takes_one_value_of_each_hyperparameter():
    method = Method("three", params={"a": (0.1, 0.2, 0.3), "b": (4, 5)}, loss=_ls_loss)
    quick = method.settings("quick")
    assert len(quick) == 1
    assert quick[0]["a"] == 0.2  # the middle value
    assert quick[0]["b"] in (4.0, 5.0)
    for name in BUILT_INS:
        (setting,) = get(name).settings("quick")
        assert set(setting) == set(get(name).params)
        for param, value in setting.items():
            low, high = get(name).ranges[param]
            assert low <= value <= high, (name, param, value)


def test_log_scaled_ranges_are_searched_on_a_log_scale():
    method = Method("logged", params={"epsilon": (0.01, 0.1)}, log_scale=("epsilon",),
                    loss=_ls_loss)
    assert method.search_space() == {"epsilon": {"min": 0.01, "max": 0.1, "sampling": "log"}}
    assert get("tfkd").search_space()["temperature"]["sampling"] == "log"


# --- bad definitions --------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, error, match", [
    ({"name": ""}, ValueError, r"Method `name` must start with a letter"),
    ({"name": "1ls"}, ValueError, r"Method `name` must start with a letter .* got '1ls'"),
    ({"name": "my ls"}, ValueError, r"got 'my ls'"),
    ({"name": "a:b"}, ValueError, r"got 'a:b'"),
    ({"name": 3}, ValueError, r"got 3"),
    ({"params": {"epsilon": ()}}, ValueError, r"params\['epsilon'\] is empty"),
    ({"params": {"epsilon": (0.1, float("nan"))}}, ValueError,
     r"params\['epsilon'\]` must be a finite number, got nan"),
    ({"params": {"epsilon": (0.1, float("inf"))}}, ValueError, r"finite number, got inf"),
    ({"params": {"epsilon": (0.1, 0.2, 0.1)}}, ValueError,
     r"params\['epsilon'\] repeats a value: \[0.1, 0.2, 0.1\]"),
    ({"params": {"epsilon": 0.1}}, TypeError, r"params\['epsilon'\] must be a list of values"),
    ({"params": {"epsilon": "0.1"}}, TypeError, r"must be a list of values, got '0.1'"),
    ({"params": {"epsilon": (True,)}}, ValueError, r"finite number, got True"),
    ({"grids": {"paper": {"alpha": (0.1,)}}}, ValueError,
     r"grid 'paper' names alpha, not in `params`"),
    ({"grids": {"huge": {"epsilon": (0.1,)}}}, ValueError, r"unknown grid 'huge'"),
    ({"ranges": {"epsilon": (0.3, 0.1)}}, ValueError,
     r"ranges\['epsilon'\] needs low <= high, got \(0.3, 0.1\)"),
    ({"ranges": {"alpha": (0.1, 0.3)}}, ValueError, r"name alpha, not in `params`"),
    ({"params": {"epsilon": (0.0, 0.1)}, "log_scale": ("epsilon",)}, ValueError,
     r"log-scaled 'epsilon' needs a range above 0, got \(0.0, 0.1\)"),
    ({"ranges": {"epsilon": (-0.1, 0.2)}, "log_scale": ("epsilon",)}, ValueError,
     r"log-scaled 'epsilon' needs a range above 0"),
    ({"loss": None}, ValueError, r"Method 'bad' needs a `loss\(params, num_classes\)` hook"),
    ({"loss": "ls"}, TypeError, r"`loss` must be callable or None, got 'ls'"),
    ({"targets": 3}, TypeError, r"`targets` must be callable"),
    ({"callbacks": [1]}, TypeError, r"`callbacks` must be callable"),
])
def test_bad_definitions_name_the_problem(kwargs, error, match):
    definition = {"name": "bad", "label": "Bad", "params": {"epsilon": (0.05, 0.2)},
                  "loss": _ls_loss, **kwargs}
    with pytest.raises(error, match=match):
        Method(**definition)
    assert "bad" not in names()


def test_a_range_outside_the_domain_is_refused_when_the_method_is_defined():
    with pytest.raises(ValueError, match=r"`epsilon` must be in \[0, 1\), got 1.5"):
        Method("wide", params={"epsilon": (0.1, 0.2)}, ranges={"epsilon": (0.1, 1.5)},
               domains={"epsilon": ks.methods.paper.DOMAINS["epsilon"]}, loss=_ls_loss)


def test_the_command_line_offers_exactly_the_registry_grids():
    """cli.py keeps its own copy of the grid names so that `--help` needs no TensorFlow import;
    it must list the registry's grids, no more and no fewer."""
    from keras_smooth import cli

    assert sorted(cli.GRID_NAMES) == sorted(methods.GRID_NAMES)
