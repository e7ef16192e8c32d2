"""Data sets: the synthetic task's sampler and posterior, digits, IDX files, TFDS."""

import gzip
import os

import numpy as np
import pytest
from scipy import stats

from keras_smooth import datasets
from keras_smooth.datasets import DatasetUnavailable, read_idx

MEANS = {0: [(-4, 1), (2, 1)], 1: [(-4, -1), (2, -1)], 2: [(-1, 0), (5, 0)]}  # ILS paper §III


def test_posterior_equals_the_mixture_densities(rng):
    x = rng.normal(scale=4.0, size=(200, 2))
    dens = np.stack(
        [
            0.8 * stats.multivariate_normal(MEANS[c][0], np.eye(2)).pdf(x)
            + 0.2 * stats.multivariate_normal(MEANS[c][1], np.eye(2)).pdf(x)
            for c in range(3)
        ],
        axis=1,
    )
    np.testing.assert_allclose(datasets.gaussian_task_posterior(x),
                               dens / dens.sum(1, keepdims=True), atol=1e-12)


def test_sampler_components_and_proportions():
    x, y, dense = datasets.gaussian_task(20_000, seed=3)
    for c in range(3):
        members = y == c
        share = dense[members].mean()
        assert abs(share - 0.8) < 4 * np.sqrt(0.8 * 0.2 / 20_000)
        np.testing.assert_allclose(x[members & dense].mean(0), MEANS[c][0], atol=0.05)
        np.testing.assert_allclose(x[members & ~dense].mean(0), MEANS[c][1], atol=0.08)
        np.testing.assert_allclose(np.cov(x[members & dense].T), np.eye(2), atol=0.05)


def test_bayes_optimal_model_matches_table_v():
    # ILS paper Table V: Bayes-optimal accuracy 81.98 %, cross-entropy 0.4444.
    x, y, _ = datasets.gaussian_task(40_000, seed=11)
    post = datasets.gaussian_task_posterior(x)
    n = len(y)
    accuracy = (post.argmax(1) == y).mean()
    assert abs(accuracy - 0.8198) < 4 * np.sqrt(0.82 * 0.18 / n)
    losses = -np.log(post[np.arange(n), y])
    assert abs(losses.mean() - 0.4444) < 4 * losses.std() / np.sqrt(n)


def test_gaussian_splits_follow_the_paper_and_the_seed():
    a, b = datasets.load("gaussian", seed=5), datasets.load("gaussian", seed=5)
    assert (len(a.y_train), len(a.y_val), len(a.y_test)) == (150, 150, 15_000)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.x_train, datasets.load("gaussian", seed=6).x_train)
    # Before: the shape of the Bayes-optimal test probabilities. Now their values, from the
    # mixture densities (ILS paper §III) evaluated with SciPy on the test points.
    x = a.x_test[:500]
    dens = np.stack([
        0.8 * stats.multivariate_normal(MEANS[c][0], np.eye(2)).pdf(x)
        + 0.2 * stats.multivariate_normal(MEANS[c][1], np.eye(2)).pdf(x) for c in range(3)], 1)
    assert a.extras["bayes_test"].shape == (15_000, 3)
    np.testing.assert_allclose(a.extras["bayes_test"][:500], dens / dens.sum(1, keepdims=True),
                               atol=1e-6)


def test_digits_splits_are_disjoint_stratified_and_reproducible():
    a = datasets.load("digits", seed=1)
    b = datasets.load("digits", seed=1)
    np.testing.assert_array_equal(a.y_val, b.y_val)
    assert len(a.y_train) + len(a.y_val) + len(a.y_test) == 1797
    assert set(np.unique(a.y_val)) == set(range(10))
    # 20 % of each class for test, then 20 % of the rest for validation.
    assert len(a.y_test) == pytest.approx(0.2 * 1797, abs=10)
    assert len(a.y_val) == pytest.approx(0.2 * 0.8 * 1797, abs=10)
    assert a.fingerprint() == b.fingerprint() != datasets.load("digits", seed=2).fingerprint()
    # Before: sizes only. Now the three splits together are scikit-learn's 1,797 images, each
    # once (scaled to [0, 1]), and each class is split 80/20 and then 80/20 again.
    from sklearn.datasets import load_digits

    raw = load_digits()

    def rows(x, y):
        return sorted(zip(np.round(np.asarray(x).reshape(len(y), -1) * 16).astype(int).tolist(),
                          np.asarray(y).tolist()))

    union = rows(np.concatenate([a.x_train, a.x_val, a.x_test]),
                 np.concatenate([a.y_train, a.y_val, a.y_test]))
    assert union == rows(raw.images / 16.0, raw.target)
    for k in range(10):
        n_k = int((raw.target == k).sum())
        assert abs((a.y_test == k).sum() - 0.2 * n_k) <= 1
        assert abs((a.y_val == k).sum() - 0.2 * (n_k - (a.y_test == k).sum())) <= 1


def _write_idx(path, array, gz=True):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    with (gzip.open if gz else open)(path, "wb") as f:
        f.write(data)


def _write_fashion_dir(folder, rng, n_train=60, n_test=20, gz=True):
    os.makedirs(folder, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": np.arange(n_test) % 10,
    }
    for stem, array in arrays.items():
        _write_idx(os.path.join(folder, stem + (".gz" if gz else "")), array, gz)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_round_trip(tmp_path, rng, gz):
    array = rng.integers(0, 256, (3, 4, 5))
    path = tmp_path / ("a.idx.gz" if gz else "a.idx")
    _write_idx(path, array, gz)
    np.testing.assert_array_equal(read_idx(path), array)


def test_corrupt_or_truncated_idx_gives_one_clear_line(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(DatasetUnavailable, match=r"bad is not an IDX file \(bad magic number\)"):
        read_idx(bad)
    short = tmp_path / "short"
    short.write_bytes(bytes([0, 0, 8, 1]) + (10).to_bytes(4, "big") + b"\x00" * 3)
    with pytest.raises(DatasetUnavailable, match=r"holds 3 data bytes, but its header promises 10"):
        read_idx(short)


def test_fashion_mnist_from_a_user_directory(tmp_path, rng):
    arrays = _write_fashion_dir(tmp_path / "fm", rng, gz=False)
    data = datasets.load("fashion_mnist", directory=str(tmp_path / "fm"), seed=0)
    assert data.input_shape == (28, 28, 1) and data.num_classes == 10
    assert len(data.y_train) + len(data.y_val) == 60 and len(data.y_test) == 20
    np.testing.assert_allclose(data.x_test[..., 0], arrays["t10k-images-idx3-ubyte"] / 255.0,
                               rtol=1e-6)
    np.testing.assert_array_equal(data.y_test, arrays["t10k-labels-idx1-ubyte"])
    # train + validation: the training file's images, each once
    got = np.rint(np.concatenate([data.x_train, data.x_val]) * 255).astype(int).reshape(60, -1)
    assert sorted(map(tuple, got.tolist())) == sorted(
        map(tuple, arrays["train-images-idx3-ubyte"].reshape(60, -1).tolist()))
    assert data.extras["source"] == str(tmp_path / "fm")


def test_fashion_mnist_missing_directory_and_files(tmp_path):
    with pytest.raises(DatasetUnavailable, match=r"does not exist"):
        datasets.load("fashion_mnist", directory=str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetUnavailable,
                       match=r"lacks Fashion-MNIST file\(s\): train-images-idx3-ubyte"):
        datasets.load("fashion_mnist", directory=str(tmp_path / "empty"))


def test_tfds_by_name_on_mock_data():
    # tfds.testing.mock_data generates RANDOM examples with the real metadata:
    # this checks the plumbing (splits, scaling, class names), not MNIST itself.
    # Nothing is downloaded unless asked for (download=True); mock_data stubs the download.
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=40):
        data = datasets.load("tfds:mnist", seed=0, download=True)
    assert data.input_shape == (28, 28, 1)
    assert data.num_classes == 10
    assert len(data.y_train) + len(data.y_val) == 40 and len(data.y_test) == 40
    assert 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0


def test_unknown_dataset_lists_the_valid_names():
    with pytest.raises(ValueError, match=r"Unknown dataset 'mnist'; choose one of: gaussian, "
                                         r"digits, fashion_mnist, tfds:NAME"):
        datasets.load("mnist")


def test_fashion_mnist_with_no_source_says_what_to_do(monkeypatch, tmp_path):
    import keras

    from keras_smooth.datasets import fashion_mnist

    def offline():
        raise OSError("network is unreachable")

    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", str(tmp_path / "not-installed"))
    monkeypatch.setattr(keras.datasets.fashion_mnist, "load_data", offline)
    with pytest.raises(DatasetUnavailable, match=r"install the Debian package "
                                                 r"dataset-fashion-mnist.*network is unreachable"):
        datasets.load("fashion_mnist")


@pytest.mark.skipif(not os.path.isdir("/usr/share/datasets/fashion-mnist"),
                    reason="Debian dataset-fashion-mnist not installed")
def test_fashion_mnist_from_the_debian_package():
    data = datasets.load("fashion_mnist", seed=0, train_limit=1200)
    assert data.extras["source"] == "/usr/share/datasets/fashion-mnist"
    assert len(data.y_test) == 10_000 and data.num_classes == 10
    assert set(np.unique(data.y_train)) == set(range(10))


@pytest.mark.parametrize("name,option,listed", [
    ("gaussian", "train_limit", "n_test, n_train, n_val"),
    ("digits", "directory", "test_fraction, validation_fraction"),
    ("fashion_mnist", "n_train", "directory, train_limit, validation_fraction"),
    ("tfds:mnist", "train_limit", "data_dir, download, validation_fraction"),
])
def test_load_names_an_option_its_data_set_does_not_take(name, option, listed):
    with pytest.raises(TypeError, match=f"data set '{name}' takes no option '{option}'; "
                                        f"its options: {listed}"):
        datasets.load(name, seed=0, **{option: 5})
