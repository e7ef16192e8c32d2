import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)
    yield


@pytest.fixture
def rng():
    return np.random.default_rng(0)



# Scripts run in their own process by the tests; never import them here.
collect_ignore = ["mirrored_worker.py", "metrics_worker.py", "serving_client.py", "tuning_mirrored_worker.py",
                  "multiworker_canary.py", "two_cpus.py"]
