"""Draw the README's opening picture: what keras_smooth does to a classifier's probabilities.

Trains the same small network on Fashion-MNIST three ways (plain cross-entropy; the same
model with a temperature fitted on the validation split; learnable label smoothing) and
draws their reliability diagrams side by side, with the LLS Q-matrix it learned.

    python docs/make_figures.py [--fashion-mnist-dir DIR] [--train-limit 12000] [--epochs 25]

Reads Fashion-MNIST from `--fashion-mnist-dir`, else from the Debian package
`dataset-fashion-mnist` (`/usr/share/datasets/fashion-mnist`). Writes
`docs/reliability_before_after.png` and `docs/q_matrix.png` and prints the test metrics
the titles show. About 3 minutes on 2 CPU cores.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_smooth  # noqa: E402
from keras_smooth import calibration, datasets, plots  # noqa: E402

CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
               "Sneaker", "Bag", "Ankle boot"]


def build(input_shape, num_classes):
    """An MLP over the flattened image: 2 x 256 ReLU, logits out."""
    return keras.Sequential([keras.Input(input_shape), keras.layers.Flatten(),
                             keras.layers.Dense(256, activation="relu"),
                             keras.layers.Dense(256, activation="relu"),
                             keras.layers.Dense(num_classes)])


def train(data, loss, epochs, seed):
    """Train `build` with `loss` (wrapped so a matrix loss trains on every backend)."""
    keras.utils.set_random_seed(seed)
    model = keras_smooth.TrainableTargetsModel(build(data.input_shape, data.num_classes))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss)
    model.fit(data.x_train, data.y_train, epochs=epochs, batch_size=128, verbose=0)
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fashion-mnist-dir", default=None)
    parser.add_argument("--train-limit", type=int, default=12000)
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=os.path.dirname(os.path.abspath(__file__)))
    args = parser.parse_args(argv)
    data = datasets.load("fashion_mnist", seed=args.seed, directory=args.fashion_mnist_dir,
                         train_limit=args.train_limit)
    plain = train(data, keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  args.epochs, args.seed)
    lls_loss = keras_smooth.LLSLoss(num_classes=10, alpha=0.1)
    lls = train(data, lls_loss, args.epochs, args.seed)
    logits = {name: model.predict(x, verbose=0) for name, model, x in
              [("plain_val", plain, data.x_val), ("plain", plain, data.x_test),
               ("lls", lls, data.x_test)]}
    fit = calibration.fit_temperature(logits["plain_val"], data.y_val)
    panels = {
        "cross-entropy": logits["plain"],
        f"+ temperature scaling (T = {fit.temperature:.2f})": logits["plain"] / fit.temperature,
        "LLSLoss (learned Q)": logits["lls"],
    }
    titled = {}
    for name, z in panels.items():
        s = calibration.summary(data.y_test, z, from_logits=True)
        print(f"{name}: accuracy {s['accuracy']:.4f}  NLL {s['nll']:.4f}  ECE {s['ece']:.4f}")
        titled[f"{name}\nNLL {s['nll']:.3f}"] = z  # the panel adds its ECE
    fig = plots.reliability_diagrams(titled, data.y_test, from_logits=True,
                                     title="Fashion-MNIST test set, the same MLP three ways")
    plots.save_figure(fig, os.path.join(args.output, "reliability_before_after.png"))
    q = np.asarray(lls_loss.q_matrix)
    fig = plots.matrix_heatmap(q, CLASS_NAMES, title="Q-matrix learned by LLSLoss")
    plots.save_figure(fig, os.path.join(args.output, "q_matrix.png"))


if __name__ == "__main__":
    main()
