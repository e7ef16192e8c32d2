"""What trains each trial on several devices, and which tuner role this process has.

Two kinds of parallelism combine:

- *within a trial* (`strategy=`): `MirroredStrategy` (TensorFlow) or
  `keras.distribution.DataParallel` (JAX) copies the model onto every local
  device and splits each batch between them (`resolve_strategy`);
- *across trials* (KerasTuner's chief/worker mode): one chief process runs
  the oracle, every worker process asks it for the next trial. The role comes
  from the environment: `KERASTUNER_TUNER_ID` ("chief" for the chief, any
  other unique name for a worker), `KERASTUNER_ORACLE_IP` and
  `KERASTUNER_ORACLE_PORT` (where the chief listens).
"""

import os
import socket
import time

from keras_smooth import _arguments as check

STRATEGIES = ("auto", "mirrored", "multiworker", "none")

# Keras 3 cannot fit a model under MultiWorkerMirroredStrategy: `fit` fails
# while building the model from a distributed batch (PerReplica values), and
# after that while reducing scalar logs. Checked with keras 3.15.1 and
# tensorflow 2.21; tracked upstream as keras-team/keras#20585.
MULTIWORKER_UNSUPPORTED = (
    "strategy='multiworker' (MultiWorkerMirroredStrategy) cannot train Keras 3 models: "
    "model.fit fails on distributed batches (upstream issue keras-team/keras#20585, seen with "
    "keras {keras} and tensorflow {tf}). Spread a search over machines with chief/worker tuning "
    "instead (KERASTUNER_TUNER_ID, KERASTUNER_ORACLE_IP, KERASTUNER_ORACLE_PORT), each worker "
    "using 'mirrored' over its own GPUs."
)


def resolve_strategy(strategy="auto"):
    """What trains each trial in parallel on this Keras backend, from a name.

    The names mean the same on every backend; what they resolve to does not:

    - TensorFlow: a `tf.distribute.Strategy` (or None for the default one),
      handed to KerasTuner. "auto" is `MirroredStrategy` over the visible
      GPUs if there are any, else None; "mirrored" is `MirroredStrategy`
      over the GPUs, or over the logical CPU devices when there is no GPU.
    - JAX: `tf.distribute` does not apply (it drives TensorFlow's own
      training step, which JAX does not run); data parallelism goes through
      `keras.distribution` instead. "mirrored" is
      `keras.distribution.DataParallel` over every local device (the GPUs,
      else the CPU devices, e.g. from
      `XLA_FLAGS=--xla_force_host_platform_device_count=2`); "auto" is the
      same when there are several GPUs, else None. Each trial is built and
      trained in the distribution's scope.
    - torch: no data parallelism is offered: "auto" is None (one device),
      "mirrored" is refused.

    "none" is None everywhere. "multiworker" is recognised but refused with
    an explanation (see `MULTIWORKER_UNSUPPORTED`). A strategy object is
    returned as is when it fits the backend (`tf.distribute.Strategy` on
    TensorFlow, `keras.distribution.DataParallel` or `ModelParallel` on JAX) and refused
    otherwise, naming the backend: a TensorFlow strategy on JAX would
    silently train on one device.

    Returns:
        a `tf.distribute.Strategy`, a `keras.distribution.Distribution`, or None.
    """
    import keras

    backend = keras.backend.backend()
    if isinstance(strategy, (keras.distribution.DataParallel, keras.distribution.ModelParallel)):
        if backend != "jax":
            raise ValueError(f"a keras.distribution {type(strategy).__name__} trains with the JAX "
                             f"backend only; this is the {backend} backend.")
        return strategy
    if not isinstance(strategy, str) or backend == "tensorflow":
        return _tensorflow_strategy(strategy, backend)
    if strategy not in STRATEGIES:
        raise ValueError(f"`strategy` must be one of {STRATEGIES}, got {strategy!r}.")
    if strategy == "multiworker":
        raise ValueError(f"strategy='multiworker' is a tf.distribute strategy: it applies on the "
                         f"TensorFlow backend only, and this is the {backend} backend. Spread a "
                         "search over machines with chief/worker tuning instead "
                         "(KERASTUNER_TUNER_ID, KERASTUNER_ORACLE_IP, KERASTUNER_ORACLE_PORT).")
    if strategy == "none" or (backend == "torch" and strategy == "auto"):
        return None
    if backend != "jax":
        raise ValueError(f"strategy={strategy!r} needs the TensorFlow backend (tf.distribute) or "
                         f"the JAX backend (keras.distribution); this is the {backend} backend: "
                         "use 'none'.")
    return _jax_distribution(strategy)


def _jax_distribution(strategy):
    """`DataParallel` over the local devices ("mirrored"), or over several GPUs ("auto")."""
    import jax
    import keras

    devices = jax.local_devices()
    accelerators = [d for d in devices if d.platform != "cpu"]
    if strategy == "auto" and len(accelerators) < 2:
        return None
    chosen = accelerators or devices
    return keras.distribution.DataParallel(
        devices=[f"{d.platform}:{d.id}" for d in chosen])


def _tensorflow_strategy(strategy, backend):
    import tensorflow as tf

    if isinstance(strategy, tf.distribute.Strategy):
        if backend != "tensorflow":
            raise ValueError(f"a tf.distribute strategy ({type(strategy).__name__}) applies on "
                             f"the TensorFlow backend only; this is the {backend} backend"
                             + (": pass strategy='mirrored' or a keras.distribution.DataParallel."
                                if backend == "jax" else "."))
        return strategy
    if strategy not in STRATEGIES:
        raise ValueError(f"`strategy` must be one of {STRATEGIES} or a tf.distribute.Strategy, "
                         f"got {strategy!r}.")
    if strategy == "none":
        return None
    if strategy == "multiworker":  # refused with or without TF_CONFIG: it cannot train
        import keras

        raise ValueError(MULTIWORKER_UNSUPPORTED.format(keras=keras.__version__, tf=tf.__version__))
    gpus = tf.config.list_logical_devices("GPU")
    if strategy == "auto":
        return tf.distribute.MirroredStrategy() if gpus else None
    devices = gpus or tf.config.list_logical_devices("CPU")
    return tf.distribute.MirroredStrategy([d.name for d in devices])


def tuner_role():
    """"chief", "worker" or "standalone", from the KerasTuner environment variables.

    Raises:
        ValueError: if the variables are set inconsistently.
    """
    ip = os.environ.get("KERASTUNER_ORACLE_IP")
    port = os.environ.get("KERASTUNER_ORACLE_PORT")
    tuner_id = os.environ.get("KERASTUNER_TUNER_ID")
    if ip is None:
        if port is not None:
            raise ValueError(f"KERASTUNER_ORACLE_PORT={port} is set but KERASTUNER_ORACLE_IP "
                             "is not.")
        return "standalone"
    if port is None:
        raise ValueError(f"KERASTUNER_ORACLE_IP={ip} is set but KERASTUNER_ORACLE_PORT is not.")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"KERASTUNER_ORACLE_PORT must be a port number, got {port!r}.")
    if not tuner_id:
        raise ValueError("KERASTUNER_ORACLE_IP is set but KERASTUNER_TUNER_ID is not: set it to "
                         "'chief' on the chief and to a unique name (tuner0, tuner1, ...) on each "
                         "worker.")
    return "chief" if "chief" in tuner_id else "worker"


def _oracle_address():
    """(ip, port) of the chief's oracle from the environment; `ValueError` naming what is
    missing or malformed."""
    for variable in ("KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT"):
        if not os.environ.get(variable):
            raise ValueError(f"waiting for the chief needs the environment variable {variable} "
                             "(the chief's address: KERASTUNER_ORACLE_IP and "
                             "KERASTUNER_ORACLE_PORT); it is not set.")
    port = os.environ["KERASTUNER_ORACLE_PORT"]
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"KERASTUNER_ORACLE_PORT must be a port number, got {port!r}.")
    return os.environ["KERASTUNER_ORACLE_IP"], int(port)


def wait_for_chief(timeout=300.0, interval=0.5):
    """Block until the chief's oracle accepts connections; raise after `timeout` seconds.

    Args:
        timeout: finite seconds > 0 to wait in all.
        interval: finite seconds > 0 between two attempts.

    Raises:
        ValueError: for a bad `timeout`/`interval`, or when KERASTUNER_ORACLE_IP or
            KERASTUNER_ORACLE_PORT is not set (naming it).
        ConnectionError: naming the address and the timeout.
    """
    timeout = check.positive_seconds("timeout", timeout)
    interval = check.positive_seconds("interval", interval)
    ip, port = _oracle_address()
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            wait = max(0.1, min(5.0, deadline - time.monotonic()))
            with socket.create_connection((ip, port), timeout=wait):
                return
        except OSError as error:
            last = error
        if time.monotonic() >= deadline:
            raise ConnectionError(
                f"tuner worker {os.environ.get('KERASTUNER_TUNER_ID')!r} could not reach the "
                f"chief oracle at {ip}:{port} within {timeout:g} s ({last}). Start the chief first "
                "(KERASTUNER_TUNER_ID=chief) and check KERASTUNER_ORACLE_IP / "
                "KERASTUNER_ORACLE_PORT."
            )
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
