"""The ILS pipeline on real data: teacher -> temperature -> ILS targets -> students.

On scikit-learn's digits (real 8x8 images, shipped with the package):

1. train a teacher without label smoothing, keep its best-validation epoch,
   fit its temperature T* on the validation split, and cache its logits on
   disk (a second run reads them back instead of retraining);
2. build ILS1, ILS2 and ILS targets from the cached logits with `ILSTargets`;
3. train one student per grid point and keep the one with the lowest
   validation cross-entropy against the hard labels (ILS paper §VI-a);
4. print test accuracy, NLL, ECE and classwise ECE of teacher and students.

    python examples/ils_teacher_student.py [--quick] [--cache runs/ils_cache]
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_smooth import calibration, datasets  # noqa: E402
from keras_smooth.layers import ILSTargets  # noqa: E402
from keras_smooth.workflows import fit_classifier, train_teacher  # noqa: E402


def small_cnn(input_shape, num_classes):
    """The same architecture for teacher and students."""
    return keras.Sequential([
        keras.Input(input_shape),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(num_classes),
    ])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    parser.add_argument("--cache", default=os.path.join("runs", "ils_cache"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    epochs = 3 if args.quick else 40
    grids = {
        "ils1": [{"p1": p1, "p2": p2} for p1 in (0.95, 0.9) for p2 in (1.0, 2.0)],
        "ils2": [{"epsilon": e, "temperature": t} for e in (0.05, 0.1) for t in (2.0, 4.0)],
        "ils": [{"p1": p1, "p2": 2.0, "temperature": t} for p1 in (0.95, 0.9) for t in (2.0, 4.0)],
    }
    if args.quick:
        grids = {k: v[:1] for k, v in grids.items()}

    data = datasets.load("digits", seed=args.seed)
    teacher = train_teacher(small_cnn, data, epochs=epochs, batch_size=64, seed=args.seed,
                            cache_dir=args.cache)
    print(f"teacher: {'read from the cache' if teacher.from_cache else 'trained'} ({args.cache}), "
          f"best epoch {teacher.best_epoch}, fitted temperature T* = {teacher.temperature:.3f}")
    rows = [("teacher (No LS)", {}, teacher.logits["test"])]
    scaled = calibration.apply_temperature(teacher.logits["test"], teacher.temperature)
    rows.append(("teacher + TempS", {"T": round(teacher.temperature, 3)}, np.log(scaled)))

    loss = keras.losses.CategoricalCrossentropy(from_logits=True)
    for method, grid in grids.items():
        best = None
        for params in grid:
            make_targets = ILSTargets(method, calibration_temperature=teacher.temperature, **params)
            soft = np.asarray(make_targets(data.y_train, teacher.logits["train"]))
            student = fit_classifier(small_cnn, data, soft, loss, epochs=epochs, batch_size=64,
                                     seed=args.seed)
            if best is None or student.best_val_nll < best[0]:
                best = (student.best_val_nll, params, student.model.predict(data.x_test, verbose=0))
        rows.append((method.upper(), best[1], best[2]))

    print(f"\ndigits test split ({len(data.y_test)} images); "
          "students selected by validation cross-entropy")
    print(f"{'model':18s} {'accuracy':>9s} {'NLL':>8s} {'ECE':>8s} {'cwECE':>8s}  chosen")
    for name, params, logits in rows:
        s = calibration.summary(data.y_test, logits, from_logits=True)
        print(f"{name:18s} {s['accuracy']:9.4f} {s['nll']:8.4f} {s['ece']:8.4f} "
              f"{s['classwise_ece']:8.4f}  " + ", ".join(f"{k}={v}" for k, v in params.items()))


if __name__ == "__main__":
    main()
