"""benchmarks/gpu_check.py: its CPU smoke run, its answer without a GPU, and its network's size.

The script is imported in this process (TensorFlow is already loaded here), so
the smoke run costs only its tiny training steps and its 1-trial search.
"""

import importlib.util
import os
import re

import keras
import pytest
import tensorflow as tf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                                reason="the GPU check measures the TensorFlow backend")


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location(
        "gpu_check", os.path.join(ROOT, "benchmarks", "gpu_check.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(text):
    """{(K, precision, method, matrix): (ms, ratio, finite)} of the printed table."""
    pattern = re.compile(r"^\s*(\d+)\s+(float32|mixed_float16|mixed_bfloat16)\s+(\S+)\s+"
                         r"(-|dense \d+x\d+|sparse, N=\d+)\s+([\d.]+)\s+([\d.]+)\s+(.+)$")
    rows = {}
    for line in text.splitlines():
        match = pattern.match(line)
        if match:
            k, precision, method, matrix, ms, ratio, finite = match.groups()
            rows[int(k), precision, method, matrix] = (float(ms), float(ratio), finite)
    return rows


def test_cpu_smoke_prints_one_table_with_every_configuration_and_the_search(gpu_check, capsys):
    assert gpu_check.main(["--cpu-smoke"]) == 0
    out = capsys.readouterr().out
    rows = _rows(out)
    small, large = gpu_check.SMOKE["classes"], gpu_check.SMOKE["large"]
    expected = {(small, p, m, "-" if m in ("CE+LS", "ILS") else f"dense {small}x{small}")
                for p in gpu_check.PRECISIONS for m in gpu_check.METHODS}
    dense = f"dense {large}x{large}"
    expected |= {(large, "float32", "CE+LS", "-"), (large, "float32", "LLS", dense),
                 (large, "float32", "LS++", dense)}
    sparse = gpu_check.sparse_supported()
    if sparse:  # with the sparse matrix of LLSLoss/LSPlusPlusLoss(neighbors=16)
        expected |= {(large, "float32", m, "sparse, N=16") for m in ("LLS", "LS++")}
        assert "sparse matrix (neighbors=16): yes" in out
    else:
        assert "sparse matrix (neighbors=16): not available in this keras_smooth" in out
        assert "sparse matrix rows: not measured" in out
    assert set(rows) == expected, out
    for key, (ms, ratio, finite) in rows.items():
        assert ms > 0 and finite == "yes", (key, out)  # under float16/bfloat16 too
        if key[2] == "CE+LS":
            assert ratio == 1.0  # every group's baseline is itself
    assert re.search(r"tune: ILS, 1/1 trials completed in [\d.]+ s .*MirroredStrategy with 1 "
                     r"replica\(s\)", out), out
    assert "FAILED" not in out
    assert keras.mixed_precision.global_policy().name == "float32"  # the policy is put back


def test_without_a_gpu_it_says_so_measures_nothing_and_exits_0(gpu_check, capsys):
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("this machine has a GPU")
    assert gpu_check.main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("gpu_check: no GPU is visible to TensorFlow") and "ms/step" not in out
    assert 'pip install "keras-smooth[gpu]"' in out


def test_a_row_that_is_not_finite_or_failed_is_shown_and_counts_as_failure(gpu_check):
    sizes = dict(gpu_check.SMOKE, large=64)
    results = [((10, "mixed_float16", "CE+LS", None),
                {"seconds": 0.01, "bad": [], "note": ""}),
               ((10, "mixed_float16", "LLS", None),
                {"seconds": 0.02, "bad": ["loss", "ece"], "note": ""}),
               ((64, "float32", "LLS", None),
                {"seconds": None, "bad": [], "note": "out of memory"})]
    searched = {"completed": 1, "seconds": 1.0, "replicas": 1, "devices": "cpu"}
    text = gpu_check.table(results, sizes, True, searched)
    rows = _rows(text)
    assert rows[10, "mixed_float16", "LLS", "dense 10x10"] == (20.0, 2.0, "no: loss, ece")
    assert re.search(r"64\s+float32\s+LLS\s+dense 64x64\s+-\s+-\s+yes\s+\(out of memory\)", text)


def test_the_network_is_resnet_20_sized(gpu_check):
    model = gpu_check.resnet((32, 32, 3), 10)  # He et al. 2016: 20 layers, 0.27 M weights
    convolutions = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert sum(layer.kernel_size == (3, 3) for layer in convolutions) == 19  # + 1 dense = 20
    assert 0.26e6 < model.count_params() < 0.29e6
    assert model.output_shape == (None, 10) and model.layers[-1].dtype_policy.name == "float32"


def test_the_package_depends_on_gpu_capable_tensorflow_and_offers_the_gpu_extra():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    from packaging.requirements import Requirement

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    linux = {"sys_platform": "linux", "platform_system": "Linux"}
    needed = [Requirement(r) for r in project["dependencies"]]
    on_linux = [r for r in needed if r.marker is None or r.marker.evaluate(linux)]
    assert "tensorflow" in {r.name for r in on_linux}  # the wheel that can use a GPU
    assert "tensorflow-cpu" not in {r.name for r in needed}  # never uses a GPU
    gpu = [Requirement(r) for r in project["optional-dependencies"]["gpu"]]
    assert [(r.name, r.extras) for r in gpu] == [("tensorflow", {"and-cuda"})]
    assert gpu[0].marker.evaluate(linux)
    assert not gpu[0].marker.evaluate({"sys_platform": "darwin"})  # no CUDA build there
