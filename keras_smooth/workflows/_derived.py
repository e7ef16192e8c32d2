"""Names kept for code written against earlier versions, derived from the method registry.

New code reads `keras_smooth.methods` directly (`methods.names("default")`,
`methods.get(name).label`, `Method.grid(name)`, `methods.parse(text)`).
"""

from keras_smooth import methods as _registry

METHODS = _registry.names("default")
"""Names of the registry's "default" group, in registration order."""
BASELINE_METHODS = _registry.names("baselines")
"""Names of the registry's "baselines" group."""
ALL_METHODS = tuple(n for n in _registry.names() if _registry.get(n).tags)
"""Names of every built-in group ("all" on the command line)."""
LABELS = {n: _registry.get(n).label for n in _registry.names()}
"""`{name: label}` of every registered method (as registered when this was imported)."""


def _shared_grids():
    """`{grid: {hyperparameter: values}}` of the "default" group's trained methods."""
    grids = {grid: {} for grid in _registry.GRID_NAMES}
    for name in METHODS:
        method = _registry.get(name)
        if method.temperature_of is None:
            for grid, values in grids.items():
                values.update(method.grid(grid))
    return grids


GRIDS = _shared_grids()
"""`{grid: {hyperparameter: values}}` shared by the default group (epsilon, p1, p2,
temperature, alpha); each Method's own `grid(name)` is authoritative."""


def parse_methods(text):
    """Comma-separated names, groups or module:attribute -> tuple for `run_comparison`.

    Registered methods come back as names, a `module:attribute` method as its
    `Method` object; `keras_smooth.methods.parse` returns Methods throughout.
    Empty text gives the "default" group.
    """
    found = _registry.parse(text or None)
    registered = _registry.names()
    return tuple(m.name if m.name in registered else m for m in found)


