"""The `Method` record and the registry every workflow reads.

A method is data plus a few hooks: its name and label, the values of each
hyperparameter that `compare` tries (per named grid), the range the tuner
searches, whether it needs the teacher, and how to build, for one setting,
its training targets, its loss and its callbacks. Built-in methods register
themselves where they are defined (`keras_smooth.methods.paper`,
`keras_smooth.methods.baselines`); a user's method is the same kind of
object, passed directly or named as `module:attribute`.
"""

import dataclasses
import functools
import hashlib
import importlib
import itertools
import math
import numbers
import re
import types

import numpy as np

from keras_smooth._lazy import lazy_module

keras = lazy_module("keras")  # used by hooks only: reading the registry imports no framework

GRID_NAMES = ("paper", "synthetic", "synthetic-small", "small", "quick")
"""Grids a built-in method defines. "paper": ILS paper appendix C (real data);
"synthetic": the ILS paper's grids for its synthetic task; "synthetic-small":
fewer points over the same span (P1 around 0.8); "small": a few minutes per run;
"quick": one setting per method."""

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.+-]*$")
_PARAM = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_REGISTRY = {}


@dataclasses.dataclass(frozen=True)
class Context:
    """What a method's hooks see when they build one training run.

    Attributes:
        x_train: training inputs, `(N, ...)`.
        y_train: training class ids, `(N,)` integers in [0, K).
        num_classes: K.
        seed: seed of the run (initialisation, sampling in target builders).
        teacher_logits: the teacher's `(N, K)` logits on `x_train` (row i for
            `x_train[i]`), or None when no teacher was trained.
        teacher_temperature: the teacher's fitted temperature T* (> 0).
    """

    x_train: object
    y_train: object
    num_classes: int
    seed: int = 0
    teacher_logits: object = None
    teacher_temperature: float = 1.0


@dataclasses.dataclass
class Recipe:
    """One training run of a method: targets for `fit`, a Keras loss, callbacks."""

    targets: object
    loss: object
    callbacks: list


def _finite_number(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"`{name}` must be a finite number, got {value!r}.")
    return float(value)


def _values(method, param, values):
    """A non-empty tuple of distinct finite numbers."""
    where = f"{method}: params[{param!r}]"
    if isinstance(values, (str, bytes, dict)) or not hasattr(values, "__iter__"):
        raise TypeError(f"{where} must be a list of values, got {values!r}.")
    if isinstance(values, (set, frozenset)):
        raise TypeError(f"{where} must be an ordered list of values (the middle one is the "
                        f"'quick' grid), got the set {values!r}.")
    out = tuple(_finite_number(where, v) for v in values)
    if not out:
        raise ValueError(f"{where} is empty.")
    if len(set(out)) != len(out):
        raise ValueError(f"{where} repeats a value: {list(out)}.")
    return out


def _check_hook(method, name, hook):
    if hook is not None and not callable(hook):
        raise TypeError(f"Method {method!r}: `{name}` must be callable or None, got {hook!r}.")
    return hook


def _flag(method, name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"Method {method!r}: `{name}` must be True or False, got {value!r}.")
    return bool(value)


def _names(method, argument, value):
    """A tuple of names from one name or an iterable of names."""
    if isinstance(value, str):
        return (value,)
    try:
        out = tuple(value)
    except TypeError:
        raise TypeError(f"Method {method!r}: `{argument}` must be a name or a list of names, "
                        f"got {value!r}.") from None
    bad = [v for v in out if not isinstance(v, str)]
    if bad:
        raise TypeError(f"Method {method!r}: `{argument}` must hold names (str), got {bad[0]!r}.")
    return out


def _param_name(method, param):
    if not isinstance(param, str) or not _PARAM.match(param):
        raise ValueError(f"Method {method!r}: hyperparameter names in `params` must start with "
                         "a letter or _ and hold only letters, digits and _ (KerasTuner and the "
                         f"command line read them); got {param!r}.")
    return param


def _pair(method, param, pair):
    """`ranges[param]` as (low, high)."""
    where = f"Method {method!r}: `ranges[{param!r}]`"
    if isinstance(pair, (str, bytes, dict)) or not hasattr(pair, "__iter__"):
        raise TypeError(f"{where} must be a (low, high) pair, got {pair!r}.")
    pair = tuple(pair)
    if len(pair) != 2:
        raise ValueError(f"{where} must be a (low, high) pair, got {pair!r}.")
    return tuple(_finite_number(f"ranges[{param!r}]", v) for v in pair)


class Method:
    """One label-regularization method: everything specific to it in one record.

    Args:
        name: identifier used on the command line and in results (letters,
            digits, `_`, `.`, `+`, `-`; starts with a letter or `_`).
        label: what tables and plots show (default: `name`).
        params: `{hyperparameter: values}`; `compare` tries every
            combination of the values, and the tuner searches between their
            minimum and maximum (the grid tuner: those values). Names are
            identifiers (letters, digits, `_`); values an ordered list.
        loss: `loss(params, num_classes)` -> a Keras loss that receives the
            training targets (class ids unless `targets` says otherwise) as
            `y_true` and logits as `y_pred`.
        grids: optional `{grid name: {hyperparameter: values}}` for the named
            grids of `GRID_NAMES`; a grid not given uses `params`, except
            "quick", which takes the middle value of each list of `params`.
        ranges: optional `{hyperparameter: (low, high)}` the tuner searches
            (default: the smallest and largest value of any grid).
        log_scale: hyperparameters whose tuning range is searched on a log
            scale (their low end must be > 0).
        domains: optional `{hyperparameter: check(name, value) -> float}`
            that refuses values the loss cannot take (`ValueError`).
        needs_teacher: the targets or loss use the teacher's logits
            (`Context.teacher_logits`).
        targets: optional `targets(params, context)` -> training targets:
            class ids `(N,)` or soft rows `(N, K)` for `x_train`.
        callbacks: optional `callbacks(params, loss, context)` -> a list of
            Keras callbacks for one run.
        loss_from_data: optional `loss_from_data(params, context)`, used
            instead of `loss` when the loss depends on the training data.
        same_loss: the loss is the same at every setting (only the targets
            change), so one compiled model can be retrained for each.
        temperature_of: the name of a method whose selected model this
            method reuses, adding a temperature fitted on the validation split
            (post-hoc calibration, "+ TempS"); such a method trains nothing.
        uses_teacher_model: the method's model is the teacher itself (No LS):
            workflows reuse the trained teacher instead of training it again.
        description: one line for `--help`.
        tags: group names this method belongs to (e.g. "default", "baselines");
            `register` refuses a name equal to a group and a tag equal to a name.

    Examples:
    >>> import keras_smooth as ks
    >>> from keras_smooth.methods import Method
    >>> def _loss(params, num_classes):
    ...     return ks.LabelSmoothingLoss(epsilon=params["epsilon"], num_classes=num_classes)
    >>> double = Method(name="double_ls", label="Double LS", params={"epsilon": (0.02, 0.3)},
    ...                 loss=_loss)
    >>> double.settings("small")
    [{'epsilon': 0.02}, {'epsilon': 0.3}]
    >>> double.search_space()
    {'epsilon': {'min': 0.02, 'max': 0.3, 'sampling': 'linear'}}
    """

    def __init__(self, name, label=None, params=None, loss=None, *, grids=None, ranges=None,
                 log_scale=(), domains=None, needs_teacher=False, targets=None, callbacks=None,
                 loss_from_data=None, same_loss=False, temperature_of=None,
                 uses_teacher_model=False, description="", tags=()):
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError("Method `name` must start with a letter or _ and hold only letters, "
                             f"digits, _, ., + and -; got {name!r}.")
        self.name = name
        self.label = name if label is None else str(label)
        if not self.label.strip():
            raise ValueError(f"Method {name!r}: `label` must be non-empty text, got {label!r}.")
        self.params = {_param_name(name, p): _values(name, p, v)
                       for p, v in dict(params or {}).items()}
        self.loss = _check_hook(name, "loss", loss)
        self.loss_from_data = _check_hook(name, "loss_from_data", loss_from_data)
        self.targets = _check_hook(name, "targets", targets)
        self.callbacks = _check_hook(name, "callbacks", callbacks)
        self.needs_teacher = _flag(name, "needs_teacher", needs_teacher)
        self.same_loss = _flag(name, "same_loss", same_loss)
        if temperature_of is not None and (not isinstance(temperature_of, str)
                                           or temperature_of == name):
            raise ValueError(f"Method {name!r}: `temperature_of` must name another method, got "
                             f"{temperature_of!r}.")
        self.temperature_of = temperature_of
        self.uses_teacher_model = _flag(name, "uses_teacher_model", uses_teacher_model)
        self.description = str(description)
        self.tags = _names(name, "tags", tags)
        self.domains = self._check_domains(domains)
        self.grids = self._check_grids(grids)
        self.log_scale = _names(name, "log_scale", log_scale)
        self.ranges = self._check_ranges(ranges)
        if temperature_of is None and loss is None and loss_from_data is None:
            raise ValueError(f"Method {name!r} needs a `loss(params, num_classes)` hook.")

    def __repr__(self):
        return f"Method({self.name!r}, label={self.label!r}, params={self.params!r})"

    # --- hyperparameters -------------------------------------------------------

    def _check_grids(self, grids):
        out = {}
        for grid, values in dict(grids or {}).items():
            if grid not in GRID_NAMES:
                raise ValueError(f"Method {self.name!r}: unknown grid {grid!r}; grids are "
                                 f"{', '.join(GRID_NAMES)}.")
            if not isinstance(values, dict):
                raise TypeError(f"Method {self.name!r}: `grids[{grid!r}]` must be a dict "
                                f"{{hyperparameter: values}}, got {values!r}.")
            extra = set(values) - set(self.params)
            if extra:
                raise ValueError(f"Method {self.name!r}: grid {grid!r} names "
                                 f"{', '.join(sorted(extra))}, not in `params`.")
            out[grid] = {p: _values(self.name, p, v) for p, v in values.items()}
        return out

    def _check_domains(self, domains):
        domains = dict(domains or {})
        extra = set(domains) - set(self.params)
        if extra:
            raise ValueError(f"Method {self.name!r}: `domains` names "
                             f"{', '.join(sorted(extra))}, not in `params`.")
        for param, check in domains.items():
            _check_hook(self.name, f"domains[{param!r}]", check)
        return domains

    def _check_ranges(self, ranges):
        ranges = dict(ranges or {})
        extra = (set(ranges) | set(self.log_scale)) - set(self.params)
        if extra:
            raise ValueError(f"Method {self.name!r}: `ranges`/`log_scale` name "
                             f"{', '.join(sorted(extra))}, not in `params`.")
        out = {}
        for param in self.params:
            if param in ranges:
                low, high = _pair(self.name, param, ranges[param])
            else:
                seen = [v for grid in (self.params, *self.grids.values())
                        for v in grid.get(param, ())]
                low, high = min(seen), max(seen)
            if low > high:
                raise ValueError(f"Method {self.name!r}: ranges[{param!r}] needs low <= high, "
                                 f"got ({low}, {high}).")
            if param in self.log_scale and low <= 0:
                raise ValueError(f"Method {self.name!r}: log-scaled {param!r} needs a range "
                                 f"above 0, got ({low}, {high}).")
            out[param] = (self.check(param, low), self.check(param, high))
        return out

    def check(self, param, value):
        """`value` of hyperparameter `param` as a float; `ValueError` if the method refuses it."""
        if param not in self.params:
            raise ValueError(f"method {self.name!r} has no hyperparameter {param!r}; it has: "
                             f"{', '.join(self.params) or 'none'}.")
        check = self.domains.get(param)
        if check is None:
            return _finite_number(param, value)
        try:
            checked = check(param, value)
        except (TypeError, ValueError):
            raise  # the domain's own refusal, which names the value
        except Exception as error:  # a user's domain check that fails otherwise
            raise ValueError(f"method {self.name!r}: `domains[{param!r}]` failed on {value!r} "
                             f"({type(error).__name__}: {error})") from error
        return _finite_number(f"{self.name}: domains[{param!r}]({value!r}) returned", checked)

    def grid(self, grid="small"):
        """`{hyperparameter: values}` of a named grid or of a dict of value lists."""
        if isinstance(grid, dict):
            extra = sorted(set(grid) - set(self.params), key=str)
            if extra:
                raise ValueError(f"grid of method {self.name!r} names {extra[0]!r}; its "
                                 f"hyperparameters are: {', '.join(self.params) or 'none'}.")
            return {p: _values(self.name, p, grid.get(p, self.params[p])) for p in self.params}
        if grid not in GRID_NAMES:
            raise ValueError(f"Unknown grid {grid!r}; choose from: {', '.join(GRID_NAMES)}.")
        if grid in self.grids:
            return {p: self.grids[grid].get(p, v) for p, v in self.params.items()}
        if grid == "quick":
            return {p: (v[(len(v) - 1) // 2],) for p, v in self.params.items()}
        return dict(self.params)

    def settings(self, grid="small"):
        """Every combination of the grid's values, as a list of `{hyperparameter: value}`."""
        values = self.grid(grid)
        names = list(values)
        return [dict(zip(names, combo)) for combo in itertools.product(*values.values())]

    def search_space(self):
        """The tuner's default space: `{param: {"min", "max", "sampling"}}`, or a value if fixed."""
        space = {}
        for param, (low, high) in self.ranges.items():
            if low == high:
                space[param] = low
            else:
                sampling = "log" if param in self.log_scale else "linear"
                space[param] = {"min": low, "max": high, "sampling": sampling}
        return space

    @property
    def tunable(self):
        """Whether the tuner has something to search (a hyperparameter with a range)."""
        return self.temperature_of is None and any(lo < hi for lo, hi in self.ranges.values())

    # --- one training run -------------------------------------------------------

    def check_settings(self, params):
        """`params` checked against the method's hyperparameters; return a dict of floats."""
        if not isinstance(params, dict):
            raise TypeError(f"settings of {self.name!r} must be a dict, got {params!r}.")
        missing = set(self.params) - set(params)
        extra = set(params) - set(self.params)
        if missing or extra:
            raise ValueError(f"method {self.name!r} takes hyperparameters "
                             f"{', '.join(self.params) or 'none'}; "
                             f"got {', '.join(params) or 'none'}.")
        return {p: self.check(p, params[p]) for p in self.params}

    def _trained(self, params):
        if self.temperature_of is not None:
            raise ValueError(f"{self.name!r} trains nothing: it rescales {self.temperature_of!r}.")
        return self.check_settings(params)

    def _call(self, hook, params, *args):
        """Call hook `hook` of this method; its failure is reported as this method's."""
        try:
            return getattr(self, hook)(params, *args)
        except Exception as error:  # a user's hook: report which method, hook and setting
            raise ValueError(f"method {self.name!r}: its `{hook}` hook failed at {params} "
                             f"({type(error).__name__}: {error})") from error

    def build_loss(self, params, context):
        """The Keras loss of one setting (from `loss_from_data` or `loss`)."""
        params = self._trained(params)
        hook = "loss_from_data" if self.loss_from_data is not None else "loss"
        args = (context,) if hook == "loss_from_data" else (context.num_classes,)
        loss = self._call(hook, params, *args)
        if not callable(loss) and not isinstance(loss, str):
            raise TypeError(f"method {self.name!r}: its `{hook}` hook must return a Keras loss "
                            f"(a callable), got {loss!r} at {params}.")
        return loss

    def build_targets(self, params, context):
        """The training targets of one setting: `y_train`, or what the `targets` hook builds.

        The hook's targets are checked: numbers, one row per training example,
        class ids in [0, K) when 1-D (or `(N, 1)`), finite otherwise (soft rows
        `(N, K)`, or a loss's own layout such as DIS's `(N, 2K)`).
        """
        params = self._trained(params)
        if self.needs_teacher and context.teacher_logits is None:
            raise ValueError(f"method {self.name!r} needs the teacher's logits "
                             "(Context.teacher_logits).")
        if self.targets is None:
            return np.asarray(context.y_train)
        return self._check_targets(self._call("targets", params, context), params, context)

    def _check_targets(self, targets, params, context):
        where = f"method {self.name!r}: its `targets` hook at {params} returned"
        try:
            found = np.asarray(targets)
        except (TypeError, ValueError) as error:
            raise TypeError(f"{where} no array ({error}).") from None
        rows, k = len(context.y_train), context.num_classes
        if found.dtype.kind not in "iuf":
            raise TypeError(f"{where} an array of dtype {found.dtype}, not numbers.")
        if found.ndim == 0 or len(found) != rows:
            raise ValueError(f"{where} shape {found.shape}; it needs one row per training "
                             f"example ({rows}).")
        if found.ndim == 1 or found.shape[1:] == (1,):
            ids = found.reshape(-1)
            if ids.size and not (np.isfinite(ids).all() and np.all(ids == np.round(ids))
                                 and ids.min() >= 0 and ids.max() < k):
                raise ValueError(f"{where} class ids outside 0..{k - 1} (or not integers).")
        elif not np.isfinite(found).all():
            raise ValueError(f"{where} targets with NaN or infinite values.")
        return found

    def build(self, params, context, *, loss=None):
        """The `Recipe` (targets, loss, callbacks) of one setting on one training set.

        `loss`, if given, is this setting's loss already built (e.g. the one a
        model was compiled with): the recipe keeps it and its callbacks act on
        it. By default it is built with `build_loss`.
        """
        params = self._trained(params)
        targets = self.build_targets(params, context)
        if loss is None:
            loss = self.build_loss(params, context)
        callbacks = []
        if self.callbacks is not None:
            callbacks = self._call("callbacks", params, loss, context)
            callbacks = [] if callbacks is None else callbacks
            if not isinstance(callbacks, (list, tuple)) or not all(
                    isinstance(c, keras.callbacks.Callback) for c in callbacks):
                raise TypeError(f"method {self.name!r}: its `callbacks` hook must return a list "
                                f"of keras.callbacks.Callback, got {callbacks!r} at {params}.")
        return Recipe(targets=targets, loss=loss, callbacks=list(callbacks))

    def fingerprint(self, grid="small"):
        """What identifies this method's results: name, grid values and hooks."""
        hooks = {k: _qualname(getattr(self, k)) for k in
                 ("loss", "loss_from_data", "targets", "callbacks")}
        return {"name": self.name, "grid": {p: list(v) for p, v in self.grid(grid).items()}
                if self.temperature_of is None else {}, "temperature_of": self.temperature_of,
                "hooks": hooks}


_SIMPLE = (bool, int, float, complex, str, bytes, type(None))


def _const_text(value):
    """A run-independent text of a code constant (nested code, frozensets sorted)."""
    if isinstance(value, types.CodeType):
        return _code_digest(value)
    if isinstance(value, frozenset):
        return "frozenset" + repr(sorted(_const_text(v) for v in value))
    if isinstance(value, tuple):
        return "(" + ",".join(_const_text(v) for v in value) + ")"
    return repr(value) if isinstance(value, _SIMPLE) else type(value).__name__


def _code_digest(code):
    """A digest of what a code object computes: bytecode, names and constants."""
    return _digest(code.co_code.hex(), repr(code.co_names),
                   *(_const_text(c) for c in code.co_consts))


def _bound_text(value, memo):
    """Text of a value a hook is bound to: a class's or a function's name and digest, the
    items of a list, tuple or dict, the values of a NumPy array or scalar."""
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    if callable(value):
        return _qualname(value, memo)
    if isinstance(value, (list, tuple)):
        return type(value).__name__ + "(" + ",".join(_bound_text(v, memo) for v in value) + ")"
    if isinstance(value, dict):
        items = sorted((_bound_text(k, memo), _bound_text(v, memo)) for k, v in value.items())
        return "dict(" + ",".join(f"{k}:{v}" for k, v in items) + ")"
    if isinstance(value, (np.ndarray, np.generic)):
        array = np.ascontiguousarray(value)
        digest = hashlib.sha256(array.tobytes()).hexdigest()[:12] if array.dtype != object else "?"
        return f"array({array.dtype.str},{array.shape},{digest})"
    return _const_text(value)


def _global_names(code):
    """Names `code` (and the code nested in it) may read from its module."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


def _read_global(fn, name, value, memo):
    """Text of a module-level value `fn` reads: functions of `fn`'s own module are followed,
    those of other modules (libraries) are named only."""
    if callable(value) and not isinstance(value, type):
        if getattr(value, "__module__", None) != fn.__module__:
            return f"{getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', name)}"
    return _bound_text(value, memo)


def _bindings(fn, memo):
    """Texts of what `fn` closes over, of its default arguments and of the module-level
    values and functions it reads (modules excepted)."""
    cells = []
    for cell in fn.__closure__ or ():
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell (a name assigned after the function was made)
            continue
        cells.append(_bound_text(value, memo))
    cells += [_bound_text(v, memo) for v in fn.__defaults__ or ()]
    cells += [f"{k}={_bound_text(v, memo)}" for k, v in sorted((fn.__kwdefaults__ or {}).items())]
    module_globals = getattr(fn, "__globals__", {})
    for name in sorted(_global_names(fn.__code__)):
        value = module_globals.get(name)
        if name in module_globals and not isinstance(value, types.ModuleType):
            cells.append(f"{name}={_read_global(fn, name, value, memo)}")
    return cells


def _digest(*parts):
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]


def _qualname(fn, memo=None):
    """`module.qualname@digest` of a hook; the digest covers its code, its default
    arguments, the values (functions included) it closes over or reads from its
    module, and the arguments of a `functools.partial`, so an edited hook gets
    another fingerprint."""
    if fn is None:
        return None
    memo = {} if memo is None else memo
    if id(fn) in memo:  # each function is described once (None: a recursive reference)
        return memo[id(fn)] or "<recursive>"
    memo[id(fn)] = None
    if isinstance(fn, functools.partial):
        bound = [_bound_text(v, memo) for v in fn.args]
        bound += [f"{k}={_bound_text(v, memo)}" for k, v in sorted(fn.keywords.items())]
        text = f"partial({_qualname(fn.func, memo)})@{_digest(*bound)}"
    else:
        name = (f"{getattr(fn, '__module__', '?')}."
                f"{getattr(fn, '__qualname__', type(fn).__name__)}")
        code = getattr(fn, "__code__", None)
        text = name
        if isinstance(code, types.CodeType):
            text = f"{name}@{_digest(_code_digest(code), *_bindings(fn, memo))}"
    memo[id(fn)] = text
    return text


def register(method):
    """Add `method` to the registry; refuse a name already taken. Returns `method`."""
    if not isinstance(method, Method):
        raise TypeError(f"register() takes a keras_smooth.methods.Method, got {method!r}.")
    if method.name in _REGISTRY:
        raise ValueError(f"a method named {method.name!r} is already registered; "
                         "choose another name.")
    _refuse_group_name(method)
    clash = [t for t in method.tags if t in _REGISTRY or t == "all"]
    if clash:
        raise ValueError(f"method {method.name!r}: tag {clash[0]!r} is a method name or "
                         "'all'; choose another tag.")
    _REGISTRY[method.name] = method
    return method


def tags():
    """The group names of the registered methods (their `tags`), sorted."""
    return tuple(sorted({t for m in _REGISTRY.values() for t in m.tags}))


def names(tag=None):
    """Registered method names in registration order (only those tagged `tag` if given).

    Raises:
        ValueError: for a `tag` no registered method has (listing the tags).
    """
    if tag is not None and (not isinstance(tag, str) or tag not in tags()):
        raise ValueError(f"Unknown tag {tag!r}; tags of the registered methods: "
                         f"{', '.join(tags())}.")
    return tuple(n for n, m in _REGISTRY.items() if tag is None or tag in m.tags)


def get(name):
    """The registered Method called `name`; `ValueError` listing the registered names otherwise."""
    if isinstance(name, str) and name in _REGISTRY:
        return _REGISTRY[name]
    raise ValueError(f"Unknown method {name!r}; registered methods: {', '.join(_REGISTRY)} "
                     "(or module:attribute for your own).")


def _import_method(spec):
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"{spec!r} is not module:attribute.")
    try:
        module = importlib.import_module(module_name)
    except (Exception, SystemExit) as error:  # the user's module: any failure is reported
        reason = f"{type(error).__name__}: {error}"
        raise ValueError(f"cannot import {module_name!r} for method {spec!r} ({reason}).") \
            from error
    target = module
    for part in attribute.split("."):
        if not part or not hasattr(target, part):
            raise ValueError(f"module {module_name!r} has no attribute {attribute!r} "
                             f"(method {spec!r}).")
        target = getattr(target, part)
    if not isinstance(target, Method):
        raise TypeError(f"{spec!r} is of type {type(target).__name__}, "
                        "not a keras_smooth.methods.Method.")
    return target


def _refuse_group_name(method):
    """A method named like a group ("all", a tag) could not be asked for by name."""
    groups = {"all"} | {t for m in _REGISTRY.values() for t in m.tags}
    if method.name in groups:
        raise ValueError(f"method name {method.name!r} is the name of a group of methods "
                         f"({', '.join(sorted(groups))}); choose another name.")


def resolve(method):
    """A Method from a Method, a registered name or `module:attribute`.

    A Method object whose name is registered for another object is refused,
    so results of two different methods never share a name.
    """
    if isinstance(method, Method):
        found = method
    elif isinstance(method, str) and ":" in method:
        found = _import_method(method)
    else:
        return get(method)
    _refuse_group_name(found)
    registered = _REGISTRY.get(found.name)
    if registered is not None and registered is not found:
        raise ValueError(f"method {found.name!r} clashes with the registered method of that "
                         "name; give yours another name.")
    return found


def parse(text, default="default"):
    """Comma-separated names, groups (tags, or "all") and module:attribute -> tuple of Methods."""
    if text is None or (isinstance(text, str) and not text.strip()):
        text = default
    if not isinstance(text, str):
        raise TypeError(f"methods must be given as comma-separated text, got {text!r}.")
    found = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if part == "all":
            found += [get(n) for n in names() if _REGISTRY[n].tags]
        elif ":" not in part and part not in _REGISTRY and part in tags():
            found += [get(n) for n in names(part)]
        else:
            found.append(resolve(part))
    unique = list({m.name: m for m in found}.values())
    if not unique:
        raise ValueError(f"{text!r} names no method.")
    labels = {}
    for method in unique:  # tables and plots are keyed by label
        other = labels.setdefault(method.label, method.name)
        if other != method.name:
            raise ValueError(f"{text!r} names two methods labelled {method.label!r} ({other!r} "
                             f"and {method.name!r}); give them different labels.")
    return tuple(unique)
