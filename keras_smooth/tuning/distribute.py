"""Which `tf.distribute` strategy trains each trial, and which tuner role this process has.

Two kinds of parallelism combine:

- *within a trial* (`strategy=`): `MirroredStrategy` copies the model onto
  every local device and splits each batch between them;
- *across trials* (KerasTuner's chief/worker mode): one chief process runs
  the oracle, every worker process asks it for the next trial. The role comes
  from the environment: `KERASTUNER_TUNER_ID` ("chief" for the chief, any
  other unique name for a worker), `KERASTUNER_ORACLE_IP` and
  `KERASTUNER_ORACLE_PORT` (where the chief listens).
"""

import os
import socket
import time

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
    """A `tf.distribute.Strategy` (or None for the default one) from a name.

    Args:
        strategy: "auto" (`MirroredStrategy` over the visible GPUs if there
            are any, else None), "mirrored" (`MirroredStrategy` over the GPUs,
            or over the logical CPU devices when there is no GPU), "none", or
            a `tf.distribute.Strategy` instance (returned as is).
            "multiworker" is recognised but refused with an explanation: see
            `MULTIWORKER_UNSUPPORTED`.

    Returns:
        a strategy for KerasTuner's `distribution_strategy=`, or None.
    """
    import tensorflow as tf

    if isinstance(strategy, tf.distribute.Strategy):
        return strategy
    if strategy not in STRATEGIES:
        raise ValueError(f"`strategy` must be one of {STRATEGIES} or a tf.distribute.Strategy, "
                         f"got {strategy!r}.")
    if strategy == "none":
        return None
    if strategy == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("strategy='multiworker' reads the cluster from the TF_CONFIG "
                             "environment variable, which is not set.")
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


def wait_for_chief(timeout=300.0, interval=0.5):
    """Block until the chief's oracle accepts connections; raise after `timeout` seconds.

    Raises:
        ConnectionError: naming the address and the timeout.
    """
    ip = os.environ["KERASTUNER_ORACLE_IP"]
    port = int(os.environ["KERASTUNER_ORACLE_PORT"])
    deadline = time.monotonic() + float(timeout)
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
        time.sleep(interval)
