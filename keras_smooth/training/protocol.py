"""How a data set's models are trained: optimiser, learning rate, batch, epochs, stopping.

One `TrainingProtocol` describes everything `fit_classifier` needs besides
the model, the targets and the loss. `protocol_for(dataset)` gives each data
set's default: the ILS paper's own protocol on its synthetic task (appendix
A-B: Adam at learning rate 1e-2, at most 500 epochs, early stopping after 10
epochs without improvement of the validation loss, the weights of the
best-validation epoch), and Adam 1e-3, batch 32, 60 epochs without early
stopping elsewhere. The comparison, the tuner and the teacher all read it
from here, and `as_dict` is what `results.json` records under `settings`.
"""

import dataclasses
import numbers

from keras_smooth import _arguments as check

RESTORED = "weights of the epoch with the lowest validation cross-entropy (hard labels)"
FULL_BATCH = "full"


_MAX_INT32 = 2**31 - 1  # what the frameworks take as a batch size


def _check_batch(value):
    if value == FULL_BATCH:
        return value
    if (isinstance(value, bool) or not isinstance(value, numbers.Integral)
            or not 1 <= value <= _MAX_INT32):
        raise ValueError(f"`batch_size` must be an integer in [1, {_MAX_INT32}] or "
                         f"{FULL_BATCH!r} (the whole training split per step), got {value!r}.")
    return int(value)


def _check_patience(value):
    if value is None:
        return None
    return check.positive_int("patience", value)


def _check_learning_rate(value):
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not value == value or value <= 0 or value == float("inf")):
        raise ValueError(f"`learning_rate` must be a finite number > 0, got {value!r}.")
    return float(value)


@dataclasses.dataclass(frozen=True)
class TrainingProtocol:
    """The training settings of one run (Adam; the best-validation epoch is kept).

    Args:
        learning_rate: Adam's learning rate (> 0).
        batch_size: rows per step, or `"full"` for the whole training split.
        max_epochs: the most epochs trained (>= 1).
        patience: stop once this many epochs in a row have not lowered the
            validation cross-entropy (against the hard labels); None trains
            every epoch.
        source: where the settings come from (recorded with them).

    Examples:
    >>> from keras_smooth.training import protocol_for
    >>> p = protocol_for("gaussian")
    >>> p.learning_rate, p.max_epochs, p.patience
    (0.01, 500, 10)
    >>> p.replace(max_epochs=15).max_epochs
    15
    """

    learning_rate: float = 1e-3
    batch_size: object = 32
    max_epochs: int = 60
    patience: object = None
    source: str = "keras_smooth default"
    optimizer: str = "adam"

    def __post_init__(self):
        object.__setattr__(self, "learning_rate", _check_learning_rate(self.learning_rate))
        object.__setattr__(self, "batch_size", _check_batch(self.batch_size))
        object.__setattr__(self, "max_epochs", check.positive_int("max_epochs", self.max_epochs))
        object.__setattr__(self, "patience", _check_patience(self.patience))
        if self.optimizer != "adam":
            raise ValueError(f"`optimizer` must be 'adam' (the only one supported), "
                             f"got {self.optimizer!r}.")
        if not isinstance(self.source, str):
            raise TypeError(f"`source` must be a string, got {self.source!r}.")

    def replace(self, **changes):
        """A copy with `changes`; a None value keeps the current one."""
        kept = {k: v for k, v in changes.items() if v is not None}
        return dataclasses.replace(self, **kept)

    def batch_rows(self, rows):
        """The batch size for a training split of `rows` rows."""
        return int(rows) if self.batch_size == FULL_BATCH else self.batch_size

    def fit_arguments(self):
        """Keyword arguments of `fit_classifier`, `train_method` and `train_teacher`."""
        return {"epochs": self.max_epochs, "batch_size": self.batch_size,
                "learning_rate": self.learning_rate, "patience": self.patience}

    def as_dict(self):
        """The whole protocol as JSON-ready values (what `results.json` records)."""
        return {"optimizer": self.optimizer, "learning_rate": self.learning_rate,
                "batch_size": self.batch_size, "max_epochs": self.max_epochs,
                "early_stopping_patience": self.patience,
                "early_stopping_monitor": None if self.patience is None
                else "validation cross-entropy (hard labels)",
                "restored": RESTORED, "source": self.source}


ILS_SYNTHETIC = TrainingProtocol(
    learning_rate=1e-2, batch_size=32, max_epochs=500, patience=10,
    source="ILS paper appendix A-B (Adam 1e-2, <= 500 epochs, early stopping 10, best-validation "
           "weights; batch size not given: 32 chosen, see benchmarks/results/"
           "reproduce_ils_synthetic.md)")
DEFAULT = TrainingProtocol()
PROTOCOLS = {"gaussian": ILS_SYNTHETIC}


def protocol_for(dataset):
    """The default `TrainingProtocol` of a data set name (`DEFAULT` when it has none)."""
    if not isinstance(dataset, str):
        raise TypeError(f"`dataset` must be a data set name (a string), got {dataset!r}.")
    return PROTOCOLS.get(dataset, DEFAULT)


def check_fit_settings(*, epochs, batch_size, seed, learning_rate=None, patience=None,
                       full_batch=True):
    """The training settings of `fit_classifier`, `train_teacher` and a tuner trial, checked
    by the rules of `TrainingProtocol` (and `seed` by the command line's): epochs >= 1,
    batch_size in [1, 2**31 - 1] (or "full" when `full_batch`), a NumPy seed, a finite
    learning rate > 0 (None: not checked) and patience >= 1 or None.

    Returns:
        The normalised `(epochs, batch_size, seed, learning_rate, patience)`.
    """
    epochs = check.positive_int("epochs", epochs)
    if full_batch:
        batch_size = _check_batch(batch_size)
    else:
        batch_size = check.positive_int("batch_size", batch_size)
    seed = check.seed("seed", seed)
    if learning_rate is not None:
        learning_rate = _check_learning_rate(learning_rate)
    return epochs, batch_size, seed, learning_rate, _check_patience(patience)


def resolve(dataset, protocol=None, *, epochs=None, batch_size=None, learning_rate=None):
    """A run's `TrainingProtocol`: `protocol` (default: the data set's), with `epochs`,
    `batch_size` (an integer or "full") and `learning_rate` replacing its own when given."""
    if protocol is None:
        protocol = protocol_for(dataset)
    if not isinstance(protocol, TrainingProtocol):
        raise TypeError(f"`protocol` must be a keras_smooth.training.TrainingProtocol or None, "
                        f"got {protocol!r}.")
    epochs = check.positive_int("epochs", epochs, allow_none=True)
    if batch_size is not None and batch_size != FULL_BATCH:
        batch_size = check.positive_int("batch_size", batch_size)
    if learning_rate is not None:
        learning_rate = _check_learning_rate(learning_rate)
    return protocol.replace(max_epochs=epochs, batch_size=batch_size,
                            learning_rate=learning_rate)
