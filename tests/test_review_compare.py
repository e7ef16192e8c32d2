"""Review of issue 12: `train_method` with a method whose settings share one compiled model.

With `Method.same_loss`, every setting retrains one model compiled with the
first setting's loss; the callbacks of each setting must act on that loss, the
one being trained, not on a fresh copy nobody trains with.
"""

import keras
import numpy as np

import keras_smooth as ks
from keras_smooth import datasets
from keras_smooth.methods import Method
from keras_smooth.workflows.methods import train_method


def _tiny(input_shape, num_classes):
    return keras.Sequential([keras.Input(input_shape), keras.layers.Dense(4),
                             keras.layers.Dense(num_classes)])


class _SeesTheTrainedLoss(keras.callbacks.Callback):
    def __init__(self, loss, seen):
        super().__init__()
        self.loss, self.seen = loss, seen

    def on_train_begin(self, logs=None):
        self.seen.append(self.model.loss is self.loss)


def test_callbacks_of_every_setting_act_on_the_loss_the_shared_model_trains_with():
    seen = []
    method = Method(
        "shared_ls", params={"epsilon": (0.05, 0.1, 0.2)}, same_loss=True,
        loss=lambda params, k: ks.LabelSmoothingLoss(0.1, num_classes=k),
        targets=lambda params, context: np.asarray(context.y_train),
        callbacks=lambda params, loss, context: [_SeesTheTrainedLoss(loss, seen)])
    data = datasets.load("gaussian", seed=0, n_train=5, n_val=5, n_test=5)
    result = train_method(method, data, None, _tiny, grid="small", epochs=1, batch_size=64,
                          seed=0)
    assert result["students"] == 3
    assert seen == [True, True, True]
