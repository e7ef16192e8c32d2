"""`keras_smooth.analysis` looks through `TrainableTargetsModel` (issue 17, item 4).

The README's portable form wraps the network in `TrainableTargetsModel`, whose own
last layers are the loss's matrices; the analysis must read the wrapped network's last
`Dense` layer. The code path is the same on every backend, so it runs in the TensorFlow
suite only (and in the torch rerun); it passes under JAX too (not rerun, to save time).
"""

import keras
import numpy as np

import keras_smooth
from keras_smooth import analysis


def test_analysis_of_a_wrapped_model_is_that_of_the_network(rng):
    x = rng.normal(size=(30, 6)).astype("float32")
    y = np.arange(30) % 3
    net = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, activation="relu"),
                            keras.layers.Dense(3)])
    model = keras_smooth.TrainableTargetsModel(net)
    model.compile(optimizer="adam", loss=keras_smooth.LLSLoss(3))
    model.fit(x, y, epochs=1, verbose=0)
    kernel = np.asarray(keras.ops.convert_to_numpy(net.layers[-1].kernel), "float64")
    np.testing.assert_array_equal(analysis.class_templates(model), kernel.T)
    hidden = keras.ops.convert_to_numpy(net.layers[0](x))  # the activations feeding the Dense
    np.testing.assert_allclose(analysis.penultimate_features(model, x), hidden, atol=1e-6)
    projected = analysis.penultimate_projection(model, x, y)
    np.testing.assert_allclose(projected["coords"], analysis.penultimate_projection(net, x, y)
                               ["coords"], atol=1e-6)
