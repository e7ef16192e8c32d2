"""One model trained across processes or machines: Keras's data parallelism on JAX.

Every process holds a full copy of the model and of the Q/C matrix, takes its
own slice of every global batch, and the compiled step averages the gradients
of all processes, so the result is the single-process run on the global batch
(the test suite checks it to 1e-5 for LLS, LS++ and an ILS student).
`tf.distribute.MultiWorkerMirroredStrategy` cannot do this in Keras 3: it
cannot run `Model.fit` (keras-team/keras#20585).

The task is the ILS paper's 3-class synthetic task (embedded, no download);
the ILS student's teacher is its exact Bayes posterior (with a trained
teacher, pass its logits instead). One command per process, the same on
every host except `--process-id`:

    # one process (no coordinator): the reference run
    python examples/multihost_data_parallel.py
    # two machines: the coordinator is process 0's host and a free port
    python examples/multihost_data_parallel.py --coordinator 10.0.0.1:1234 \\
        --num-processes 2 --process-id 0        # on 10.0.0.1
    python examples/multihost_data_parallel.py --coordinator 10.0.0.1:1234 \\
        --num-processes 2 --process-id 1        # on the other machine

Each process uses all of its own devices (`jax.devices()` lists the devices of
every process; GPUs when JAX has CUDA, else the CPU with gloo collectives).
`--quick` is a smoke run of a few seconds.
"""

import argparse
import os
import sys

# This example is JAX's: Keras's multi-host data parallelism exists only there.
os.environ["KERAS_BACKEND"] = "jax"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_smooth  # noqa: E402
from keras_smooth import targets  # noqa: E402
from keras_smooth.datasets import gaussian_task, gaussian_task_posterior  # noqa: E402

METHODS = ("lls", "lspp", "ils")


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coordinator", default=None,
                        help="host:port of process 0, the same in every process")
    parser.add_argument("--num-processes", type=int, default=1)
    parser.add_argument("--process-id", type=int, default=0)
    parser.add_argument("--method", choices=(*METHODS, "all"), default="all")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--global-batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=None,
                        help="write the trained weights and matrices here (.npz); process 0 "
                             "writes it, every process if the path holds {process_id}")
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    args = parser.parse_args(argv)
    if args.num_processes < 1:
        parser.error(f"--num-processes must be >= 1, got {args.num_processes}")
    if not 0 <= args.process_id < args.num_processes:
        parser.error(f"--process-id must be in [0, {args.num_processes}), got {args.process_id}")
    if args.num_processes > 1 and not args.coordinator:
        parser.error("--coordinator host:port is needed with more than one process")
    if args.global_batch_size % args.num_processes:
        parser.error(f"--global-batch-size {args.global_batch_size} must be a multiple of "
                     f"--num-processes {args.num_processes}")
    return args


def start(args):
    """Join the job (several processes) and shard every batch over all devices."""
    if args.num_processes > 1:
        # CPU collectives between processes; GPUs use NCCL whatever this says.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        keras.distribution.initialize(job_addresses=args.coordinator,
                                      num_processes=args.num_processes,
                                      process_id=args.process_id)
    # Before any model is built. auto_shard_dataset=False: each process feeds
    # its own slice of every global batch (`local_slice` below).
    keras.distribution.set_distribution(
        keras.distribution.DataParallel(devices=jax.devices(), auto_shard_dataset=False))


def local_slice(array, global_batch, num_processes, process_id):
    """Process `process_id`'s rows of every global batch, in order.

    Global batch b is rows [b*G, (b+1)*G); process i takes its i-th share of
    G/n rows. Rows past the last whole global batch are dropped in every
    process (and in the one-process run), so all see the same steps.
    """
    steps = len(array) // global_batch
    local = global_batch // num_processes
    whole = array[: steps * global_batch]
    shaped = whole.reshape(steps, num_processes, local, *array.shape[1:])
    return shaped[:, process_id].reshape(steps * local, *array.shape[1:])


def training_targets(method, x, y):
    """Labels for LLS and LS++ (the loss builds the targets); soft ILS targets for the student."""
    if method != "ils":
        return y
    teacher_logits = np.log(np.maximum(gaussian_task_posterior(x), 1e-30)).astype("float32")
    return np.asarray(targets.ils_from_logits(y, teacher_logits, "ils", p1=0.9, p2=1.5,
                                              temperature=2.0))


def train(method, args, x, y):
    """Fit one method; return its network weights and, for LLS/LS++, the learned matrix."""
    keras.utils.set_random_seed(args.seed)  # the same initial weights in every process
    net = keras.Sequential([keras.Input((2,)), keras.layers.Dense(32, activation="relu"),
                            keras.layers.Dense(32, activation="relu"), keras.layers.Dense(3)])
    if method == "ils":
        loss = keras.losses.CategoricalCrossentropy(from_logits=True)
    else:
        cls = keras_smooth.LLSLoss if method == "lls" else keras_smooth.LSPlusPlusLoss
        loss = cls(num_classes=3, alpha=0.2)
    model = keras_smooth.TrainableTargetsModel(net)  # the matrix trains with the model
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=loss)
    t = training_targets(method, x, y)
    mine = [local_slice(a, args.global_batch_size, args.num_processes, args.process_id)
            for a in (x, t)]
    model.fit(*mine, batch_size=args.global_batch_size // args.num_processes,
              epochs=args.epochs, shuffle=False, verbose=0)
    weights = [np.asarray(w) for w in net.get_weights()]
    matrix = None if method == "ils" else np.asarray(loss.matrix)
    return weights, matrix


def main(argv=None):
    args = parse(argv)
    args.epochs = args.epochs or (2 if args.quick else 20)
    start(args)
    x, y, _ = gaussian_task(100, seed=args.seed)  # every process draws the same data
    order = np.random.default_rng(args.seed).permutation(len(x))  # mix the classes
    x, y = x[order], y[order]
    chief = args.process_id == 0
    if chief:
        print(f"process {args.process_id} of {args.num_processes}: {jax.device_count()} device(s)"
              f" in the job, global batch {args.global_batch_size}, {args.epochs} epochs")
    saved = {}
    for method in METHODS if args.method == "all" else (args.method,):
        weights, matrix = train(method, args, x, y)
        for i, w in enumerate(weights):
            saved[f"{method}/weight{i}"] = w
        if chief:
            print(f"{method}: trained; first-layer weight norm {np.linalg.norm(weights[0]):.6f}")
        if matrix is not None:
            saved[f"{method}/matrix"] = matrix
            if chief:
                print(f"{method}: learned matrix (row y = where class y's smoothing mass goes)")
                for i, row in enumerate(matrix):
                    print(f"  class {i}  " + "  ".join(f"{v:.4f}" for v in row))
    if args.output and (chief or "{process_id}" in args.output):
        path = args.output.replace("{process_id}", str(args.process_id))
        np.savez(path, **saved)
        print(f"process {args.process_id}: weights and matrices written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
