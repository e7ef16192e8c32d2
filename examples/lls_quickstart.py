"""Learnable label smoothing on a Keras model, end to end, on any Keras backend.

Trains a small MLP on the 3-class synthetic task of the ILS paper (embedded,
no download) with `LLSLoss`, then prints accuracy, the learned Q-matrix and
what it says about the classes. On TensorFlow the model is a plain
`keras.Sequential`; on JAX and torch it is wrapped in `TrainableTargetsModel`,
which trains Q with the model's optimizer. By construction most of class 0 lies near
class 1 and far from class 2, so row 0 of Q should favour class 1.

    python examples/lls_quickstart.py          # about half a minute on 2 CPU cores
    python examples/lls_quickstart.py --quick  # a few seconds
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_smooth  # noqa: E402
from keras_smooth.datasets import gaussian_task, gaussian_task_posterior  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--alpha", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    epochs = args.epochs or (3 if args.quick else 40)

    keras.utils.set_random_seed(args.seed)
    x_train, y_train, _ = gaussian_task(300, seed=args.seed)
    x_test, y_test, _ = gaussian_task(2000, seed=args.seed + 1)

    model = keras.Sequential(
        [
            keras.Input((2,)),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(3),  # logits
        ]
    )
    loss = keras_smooth.LLSLoss(num_classes=3, alpha=args.alpha)
    if keras.backend.backend() != "tensorflow":
        # On TensorFlow the loss trains Q itself under a plain model; on JAX and torch
        # the wrapper adds Q to the model's weights (Adam at 1e-2 either way).
        model = keras_smooth.TrainableTargetsModel(model)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=loss,
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    model.fit(x_train, y_train, epochs=epochs, batch_size=64, verbose=0)
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    bayes = np.mean(gaussian_task_posterior(x_test).argmax(1) == y_test)

    q = loss.q_matrix
    print(f"LLS (alpha={args.alpha}) trained {epochs} epochs on the ILS synthetic task")
    print(f"test accuracy: {accuracy:.4f}  (Bayes-optimal on the same test set: {bayes:.4f})")
    print("learned Q-matrix (row y = how class y's smoothing mass is spread):")
    print("         " + "  ".join(f"class {j}" for j in range(3)))
    for i, row in enumerate(q):
        print(f"class {i}  " + "  ".join(f"{v:7.3f}" for v in row))
    if args.quick:
        print("(--quick: too few steps for Q to settle; run without --quick to see it)")
        return
    for i, row in enumerate(q):
        others = [j for j in np.argsort(-row) if j != i]
        print(f"class {i} is most related to class {others[0]}")


if __name__ == "__main__":
    main()
