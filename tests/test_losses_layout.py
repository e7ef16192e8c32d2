"""The split of the baseline losses: old imports, saved configs and files keep working,
and the package's layers import one way (targets -> losses -> callbacks)."""

import ast
import json
import pathlib
import zipfile

import keras
import numpy as np

import keras_smooth
from keras_smooth import callbacks, losses

PACKAGE = pathlib.Path(keras_smooth.__file__).parent

# `keras.saving.serialize_keras_object` of each baseline loss, taken before the split,
# when every class lived in keras_smooth.losses.baselines.
SERIALIZED_BEFORE_THE_SPLIT = [
    ("SoftBootstrappingLoss", {"beta": 0.9, "from_logits": True}),
    ("AdaptiveFocalLoss",
     {"gamma_low": 4.0, "gamma_high": 2.0, "threshold": 0.3, "from_logits": True}),
    ("MarginLSLoss", {"margin": 5.0, "weight": 0.2}),
    ("TFKDRegularizationLoss",
     {"alpha": 0.2, "temperature": 10.0, "correct_probability": 0.8}),
    ("ZipfLSLoss", {"weight": 2.0, "power": 1.5}),
    ("ClassSimilarityLSLoss",
     {"from_logits": True, "epsilon": 0.15,
      "similarity": [[0.0, 0.5, 0.5], [0.5, 0.0, 0.5], [0.5, 0.5, 0.0]]}),
    ("OnlineLabelSmoothingLoss",
     {"num_classes": 3, "alpha": 0.4, "from_logits": True,
      "soft_matrix": [[0.2, 0.3, 0.5], [0.1, 0.8, 0.1], [0.25, 0.25, 0.5]]}),
]
DEFAULT_NAMES = {
    "SoftBootstrappingLoss": "soft_bootstrapping_loss",
    "AdaptiveFocalLoss": "adaptive_focal_loss",
    "MarginLSLoss": "margin_ls_loss",
    "TFKDRegularizationLoss": "tf_kd_regularization_loss",
    "ZipfLSLoss": "zipf_ls_loss",
    "ClassSimilarityLSLoss": "class_similarity_ls_loss",
    "OnlineLabelSmoothingLoss": "online_label_smoothing_loss",
}
OLD_NAMES = [
    "AdaptiveFocalLoss", "ClassSimilarityLSLoss", "MarginLSLoss", "OnlineLabelSmoothing",
    "OnlineLabelSmoothingLoss", "SoftBootstrappingLoss", "TFKDRegularizationLoss", "ZipfLSLoss",
    "adaptive_focal_loss", "beta_smoothing_targets", "class_similarity_matrix", "margin_ls_loss",
    "online_soft_matrix", "soft_bootstrapping_loss", "tf_kd_regularization_loss", "zipf_ls_loss",
    "zipf_targets",
]


def _old_payload(class_name, settings):
    config = {"name": DEFAULT_NAMES[class_name], "reduction": "sum_over_batch_size",
              "dtype": None, **settings}
    return {"module": "keras_smooth.losses.baselines", "class_name": class_name,
            "config": config, "registered_name": f"keras_smooth>{class_name}"}


def test_configs_serialized_before_the_split_deserialize_to_the_same_losses():
    labels = np.array([0, 2, 1])
    logits = np.array([[2.0, 0.0, -1.0], [0.5, 0.1, 3.0], [1.0, 1.0, 0.0]], "float32")
    for class_name, settings in SERIALIZED_BEFORE_THE_SPLIT:
        payload = json.loads(json.dumps(_old_payload(class_name, settings)))
        loss = keras.saving.deserialize_keras_object(payload)
        cls = getattr(losses, class_name)
        assert type(loss) is cls
        assert keras.saving.get_registered_name(cls) == f"keras_smooth>{class_name}"
        fresh = cls(**payload["config"])
        assert loss.get_config() == fresh.get_config()
        np.testing.assert_array_equal(np.asarray(loss(labels, logits)),
                                      np.asarray(fresh(labels, logits)), err_msg=class_name)


def test_a_keras_file_saved_with_the_old_module_path_loads(tmp_path):
    soft = np.array([[0.2, 0.3, 0.5], [0.1, 0.8, 0.1], [0.25, 0.25, 0.5]])
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(optimizer="adam",
                  loss=losses.OnlineLabelSmoothingLoss(3, alpha=0.4, soft_matrix=soft))
    saved = tmp_path / "new.keras"
    model.save(saved)
    old = tmp_path / "old.keras"  # the same file as the old layout wrote it
    with zipfile.ZipFile(saved) as src, zipfile.ZipFile(old, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "config.json":
                data = data.replace(b'"keras_smooth.losses.online"',
                                    b'"keras_smooth.losses.baselines"')
                assert b"keras_smooth.losses.baselines" in data
            dst.writestr(item, data)
    loaded = keras.saving.load_model(old)
    assert isinstance(loaded.loss, losses.OnlineLabelSmoothingLoss)
    np.testing.assert_allclose(loaded.loss.matrix, soft, atol=1e-7)
    x = np.random.default_rng(0).normal(size=(5, 4)).astype("float32")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_the_old_module_and_the_old_callback_address_still_import():
    from keras_smooth.losses import OnlineLabelSmoothing
    from keras_smooth.losses import baselines

    assert OnlineLabelSmoothing is callbacks.OnlineLabelSmoothing
    for name in OLD_NAMES:
        expected = getattr(losses, name)
        assert getattr(baselines, name) is expected, name
    assert losses.beta_smoothing_targets is keras_smooth.targets.beta_smoothing


def _imports(path):
    """The keras_smooth modules a file imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [f"{node.module}.{a.name}" for a in node.names]
            found.update(n for n in [node.module, *names] if n.startswith("keras_smooth."))
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("keras_smooth."))
    return found


def test_targets_and_losses_import_only_what_lies_below_them():
    above_losses = ("callbacks", "models", "workflows", "tuning", "cli", "methods", "plots",
                    "analysis")
    for path in sorted((PACKAGE / "losses").glob("*.py")):
        for module in _imports(path):
            part = module.split(".")[1]
            assert part not in above_losses, f"{path.name} imports {module}"
    for module in _imports(PACKAGE / "targets.py"):
        # _ops (issue 17): keras.ops, or TensorFlow inside tf.data on another backend
        assert module.split(".")[1] in ("_checks", "_ops", "targets"), (
            f"targets.py imports {module}")


def test_no_callback_class_lives_among_the_losses():
    for path in sorted((PACKAGE / "losses").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = {ast.unparse(b) for b in node.bases}
                assert not any("Callback" in b for b in bases), f"{path.name}: {node.name}"
