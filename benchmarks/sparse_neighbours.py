"""Does a sparse Q/C (`neighbors=N`) find the same closest classes as the dense one?

The same MLP (same initial weights, same data order) is trained on
Fashion-MNIST (or scikit-learn's digits when the IDX files are absent) with
the dense K x K matrix and with the sparse matrix of N entries per row,
started from placeholder neighbours (no ids given), on the TensorFlow backend
with a plain `compile`/`fit`. For every class the script lists the
off-diagonal classes of largest learned probability and prints how often the
sparse matrix's closest class equals the dense one's, and the overlap of
their top-3 sets.

    python benchmarks/sparse_neighbours.py [--neighbors 3] [--epochs 8] [--limit 20000]
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_smooth import datasets, losses  # noqa: E402


def load(limit):
    try:
        data = datasets.load_fashion_mnist(train_limit=limit)
    except datasets.DatasetUnavailable:
        data = datasets.load_digits()
    x = data.x_train.reshape(len(data.x_train), -1)
    return data.name, x, data.y_train, list(data.class_names)


def train(cls, x, y, k, epochs, seed, **kwargs):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((x.shape[1],)),
                              keras.layers.Dense(128, activation="relu"), keras.layers.Dense(k)])
    loss = cls(k, alpha=0.1, **kwargs)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss)
    model.fit(x, y, epochs=epochs, batch_size=128, shuffle=True, verbose=0)
    matrix = loss.matrix.copy()
    np.fill_diagonal(matrix, 0.0)
    return np.argsort(-matrix, axis=1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--neighbors", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--limit", type=int, default=20000, help="training images used")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    name, x, y, names = load(args.limit)
    k = len(names)
    print(f"{name}: {len(y)} training images, K = {k}, sparse N = {args.neighbors}, "
          f"{args.epochs} epochs, MLP 128, Adam 1e-3, batch 128, alpha 0.1, seed {args.seed}")
    for label, cls in (("LLS", losses.LLSLoss), ("LS++", losses.LSPlusPlusLoss)):
        dense = train(cls, x, y, k, args.epochs, args.seed)
        sparse = train(cls, x, y, k, args.epochs, args.seed, neighbors=args.neighbors)
        same = [dense[c, 0] == sparse[c, 0] for c in range(k)]
        overlap = [len(set(dense[c, :3]) & set(sparse[c, :3])) for c in range(k)]
        print(f"\n{label}: closest class agrees for {sum(same)}/{k} classes; "
              f"mean top-3 overlap {np.mean(overlap):.2f}/3")
        for c in range(k):
            print(f"  {names[c]:>12s}: dense {[names[j] for j in dense[c, :3]]}  "
                  f"sparse {[names[j] for j in sparse[c, :3]]}")


if __name__ == "__main__":
    main()
