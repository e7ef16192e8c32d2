"""Matrix training that must hold on every backend (run under TF and JAX in CI)."""

import keras
import numpy as np
import pytest

from keras_smooth import TrainableTargetsModel, losses
from keras_smooth.datasets import gaussian_task


def _net(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [keras.Input((2,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(3)]
    )


@pytest.mark.parametrize("cls", [losses.LLSLoss, losses.LSPlusPlusLoss])
def test_wrapped_model_trains_the_matrix_on_this_backend(cls, tmp_path):
    x, y, _ = gaussian_task(300, seed=0)
    model = TrainableTargetsModel(_net(1))
    loss = cls(3, alpha=0.2)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=loss)
    before = loss.matrix.copy()
    model.evaluate(x, y, verbose=0)
    np.testing.assert_array_equal(loss.matrix, before)
    model.fit(x, y, epochs=30, batch_size=64, verbose=0)
    m = loss.matrix
    assert np.abs(m - before).max() > 1e-3
    np.testing.assert_allclose(m.sum(1), 1.0, atol=1e-6)
    assert m[0, 1] > m[0, 2], m  # ILS synthetic task geometry
    if cls is losses.LSPlusPlusLoss:
        np.testing.assert_array_equal(np.diag(m), 0.0)


@pytest.mark.skipif(keras.backend.backend() == "tensorflow", reason="TF trains plain models")
def test_plain_model_on_this_backend_refuses_to_leave_the_matrix_untrained():
    x, y, _ = gaussian_task(16, seed=0)
    model = _net()
    model.compile(optimizer="adam", loss=losses.LLSLoss(3))
    with pytest.raises(ValueError, match=r"TrainableTargetsModel"):
        model.fit(x, y, epochs=1, verbose=0)


def test_frozen_matrix_is_allowed_with_a_plain_model():
    x, y, _ = gaussian_task(16, seed=0)
    loss = losses.LSPlusPlusLoss(3)
    loss.matrix_layer.trainable = False
    model = _net()
    model.compile(optimizer="adam", loss=loss)
    before = loss.matrix.copy()
    model.fit(x, y, epochs=1, verbose=0)
    np.testing.assert_array_equal(loss.matrix, before)
