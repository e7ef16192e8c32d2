"""keras_smooth: label-regularization losses and calibration tools for Keras 3.

Data flows one way: `targets` (pure functions) -> `layers`/`losses` (thin Keras
objects) -> workflows and entry points.

`import keras_smooth` is quick: its modules (and Keras, matplotlib,
KerasTuner) are imported when first used, e.g. `keras_smooth.LLSLoss` or
`keras_smooth.plots`. The Keras classes are registered for `.keras` loading as
soon as Keras is imported, before or after `keras_smooth`, so
`import keras_smooth; keras.saving.load_model("m.keras")` works as before.
"""

import importlib
import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"

_MODULES = ("analysis", "calibration", "callbacks", "datasets", "export", "layers", "losses",
            "methods", "metrics", "models", "plots", "targets", "training", "tuning",
            "workflows")
_NAMES = {
    "CalibrationLogger": "callbacks", "TemperatureScalingCallback": "callbacks",
    "export_for_serving": "export",
    "ILSTargets": "layers", "QMatrix": "layers", "TemperatureScaling": "layers",
    "DistillationLoss": "losses", "LabelSmoothingLoss": "losses", "LLSLoss": "losses",
    "LSPlusPlusLoss": "losses", "SubstituteTeacherLoss": "losses",
    "distillation_targets": "losses",
    "ClasswiseECE": "metrics", "ExpectedCalibrationError": "metrics",
    "TrainableTargetsModel": "models",
}
# The modules that register Keras classes (`register_keras_serializable`).
_KERAS_OBJECTS = ("layers", "losses", "metrics", "callbacks", "models")


def __getattr__(name):
    if name in _MODULES:
        return importlib.import_module(f"keras_smooth.{name}")
    if name in _NAMES:
        return getattr(importlib.import_module(f"keras_smooth.{_NAMES[name]}"), name)
    raise AttributeError(f"module 'keras_smooth' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_MODULES) | set(_NAMES))


def _register_keras_objects():
    """Import the modules that register keras_smooth's classes with Keras."""
    for name in _KERAS_OBJECTS:
        importlib.import_module(f"keras_smooth.{name}")
    # The OLS callback moved up from `losses` to `callbacks`; its old address keeps
    # working. Set here, above both, so that `losses` never imports `callbacks`.
    sys.modules["keras_smooth.losses"].OnlineLabelSmoothing = (
        sys.modules["keras_smooth.callbacks"].OnlineLabelSmoothing)


def _importing_keras_smooth():
    """Whether a keras_smooth module is half-imported (then it imports what it needs itself)."""
    return any(name.startswith("keras_smooth.")
               and getattr(getattr(module, "__spec__", None), "_initializing", False)
               for name, module in list(sys.modules.items()))


class _AfterKeras(importlib.abc.Loader):
    """Keras's own loader, then the registration of keras_smooth's classes."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        if not _importing_keras_smooth():
            _register_keras_objects()

    def __getattr__(self, name):
        return getattr(self.loader, name)


class _KerasWatch(importlib.abc.MetaPathFinder):
    """Registers keras_smooth's classes right after `import keras`, once."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "keras":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec("keras")
        if spec is not None and spec.loader is not None:
            spec.loader = _AfterKeras(spec.loader)
        return spec


if "keras" in sys.modules:
    _register_keras_objects()
elif not any(isinstance(finder, _KerasWatch) for finder in sys.meta_path):
    sys.meta_path.insert(0, _KerasWatch())

__all__ = [
    "CalibrationLogger",
    "ClasswiseECE",
    "DistillationLoss",
    "ExpectedCalibrationError",
    "ILSTargets",
    "LLSLoss",
    "LSPlusPlusLoss",
    "LabelSmoothingLoss",
    "QMatrix",
    "SubstituteTeacherLoss",
    "TemperatureScaling",
    "TemperatureScalingCallback",
    "TrainableTargetsModel",
    "analysis",
    "calibration",
    "callbacks",
    "datasets",
    "distillation_targets",
    "export_for_serving",
    "layers",
    "losses",
    "metrics",
    "plots",
    "targets",
]
