"""Measure calibration, fix it with temperature scaling, and export for TF Serving.

An MLP trained long on few points of the ILS synthetic task (embedded, no
download) becomes over-confident. `CalibrationLogger` records validation ECE,
classwise ECE, NLL and Brier each epoch; `TemperatureScalingCallback` fits T
at the end; the calibrated model is exported as a SavedModel that TF Serving
can load, and read back with plain TensorFlow.

    python examples/temperature_scaling_and_export.py [--output runs/ts] [--quick]
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_smooth  # noqa: E402
from keras_smooth import calibration, plots  # noqa: E402
from keras_smooth.datasets import gaussian_task  # noqa: E402


def _parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=os.path.join("runs", "temperature_scaling"))
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def _train(x, y, validation, epochs):
    """The over-confident MLP, with the logger and the fitted temperature scaler."""
    model = keras.Sequential(
        [keras.Input((2,), name="features")]
        + [keras.layers.Dense(64, activation="relu") for _ in range(5)]  # ILS paper: 5 x 64
        + [keras.layers.Dense(3)]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras_smooth.ExpectedCalibrationError(from_logits=True)],
    )
    logger = keras_smooth.CalibrationLogger(validation_data=validation,
                                            every=max(epochs // 5, 1))
    scaler = keras_smooth.TemperatureScalingCallback(validation_data=validation)
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0, callbacks=[logger, scaler])
    return model, scaler


def _print_table(yt, logits):
    """Test-set metrics of each `{row name: logits}`."""
    print(f"{'test set (6000 points)':24s} {'accuracy':>9s} {'NLL':>8s} {'ECE':>8s} "
          f"{'cwECE':>8s} {'Brier':>8s}")
    for name, z in logits.items():
        s = calibration.summary(yt, z, from_logits=True)
        print(f"{name:24s} {s['accuracy']:9.4f} {s['nll']:8.4f} {s['ece']:8.4f} "
              f"{s['classwise_ece']:8.4f} {s['brier']:8.4f}")


def _export_and_serve(calibrated, export_dir, x):
    """Export for TF Serving and read the SavedModel back with plain TensorFlow."""
    keras_smooth.export_for_serving(calibrated, export_dir)
    served = tf.saved_model.load(export_dir).signatures["serving_default"]
    (input_name,) = served.structured_input_signature[1]
    return served(**{input_name: tf.constant(x)})["probabilities"].numpy()


def main(argv=None):
    args = _parse(argv)
    epochs = 5 if args.quick else 300
    os.makedirs(args.output, exist_ok=True)
    keras.utils.set_random_seed(args.seed)
    x, y, _ = gaussian_task(50, seed=args.seed)  # the paper's 50 per class
    xv, yv, _ = gaussian_task(50, seed=args.seed + 1)
    xt, yt, _ = gaussian_task(2000, seed=args.seed + 2)
    model, scaler = _train(x, y, (xv, yv), epochs)

    temperature = scaler.results["temperature"]
    calibrated = scaler.calibrated_model()
    before, after = model.predict(xt, verbose=0), calibrated.predict(xt, verbose=0)
    print(f"trained {epochs} epochs on 150 points; fitted temperature T = {temperature:.3f}")
    _print_table(yt, {"before (T = 1)": before, f"after (T = {temperature:.2f})": after})
    figure = plots.reliability_diagrams(
        {"before": before, f"after (T={temperature:.2f})": after},
        yt, from_logits=True, title="Temperature scaling on the ILS synthetic task",
    )
    diagram = plots.save_figure(figure, os.path.join(args.output, "reliability.png"))
    print(f"reliability diagrams: {diagram}")
    export_dir = os.path.join(args.output, "serving", "synthetic", "1")
    if keras.backend.backend() == "torch":
        # Keras writes a SavedModel from TensorFlow and JAX only: save as .keras, export there.
        path = os.path.join(args.output, "calibrated.keras")
        calibrated.save(path)
        print(f"saved {path}; export_for_serving needs the TensorFlow or JAX backend: load it "
              "there with keras.models.load_model and export")
        return
    probabilities = _export_and_serve(calibrated, export_dir, xt[:3])
    print(f"SavedModel for TF Serving: {export_dir}")
    print("served probabilities of 3 test points:")
    print(np.round(probabilities, 3))


if __name__ == "__main__":
    main()
