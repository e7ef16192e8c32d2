"""Review of issue 12: training and comparing methods of the registry.

With `Method.same_loss`, every setting retrains one model compiled with the
first setting's loss; the callbacks of each setting must act on that loss, the
one being trained, not on a fresh copy nobody trains with. Labels name the
rows of the table and the curves of the plots: two compared methods may not
share one, and a label edited between runs shows as edited.
"""

import json

import keras
import numpy as np
import pytest

import keras_smooth as ks
from keras_smooth import datasets
from keras_smooth.methods import Method
from keras_smooth.workflows import run_comparison
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


# --- labels name the rows of the table and the curves of the plots ------------------------

SMALL = {"n_train": 10, "n_val": 10, "n_test": 20}


def _ls(params, num_classes):
    return ks.LabelSmoothingLoss(epsilon=params["epsilon"], num_classes=num_classes)


def _compare(output, chosen):
    return run_comparison(dataset="gaussian", methods=chosen, replicates=1, epochs=1,
                          batch_size=32, grid="quick", output=str(output),
                          dataset_options=SMALL, build_model=_tiny)


def test_two_methods_with_one_label_are_refused_before_touching_the_disk(tmp_path):
    # Plots key their curves by label: one of the two would silently replace the other.
    mine = Method("my_ls", label="LS", params={"epsilon": (0.05,)}, loss=_ls)
    with pytest.raises(ValueError, match=r"two methods labelled 'LS' \('ls' and 'my_ls'\)"):
        _compare(tmp_path / "out", ["ls", mine])
    assert not (tmp_path / "out").exists()


def test_a_relabelled_method_shows_its_new_label_when_the_run_resumes(tmp_path):
    old = Method("my_ls", label="My LZ", params={"epsilon": (0.05,)}, loss=_ls)
    new = Method("my_ls", label="My LS", params={"epsilon": (0.05,)}, loss=_ls)
    assert [r["label"] for r in _compare(tmp_path, [old])] == ["My LZ"]
    stored = (tmp_path / "predictions" / "my_ls-0.npz").stat().st_mtime_ns
    resumed = _compare(tmp_path, [new])
    assert [r["label"] for r in resumed] == ["My LS"]
    assert (tmp_path / "predictions" / "my_ls-0.npz").stat().st_mtime_ns == stored  # not redone
    assert [r["method"] for r in json.loads((tmp_path / "results.json").read_text())["records"]
            ] == ["my_ls"]
