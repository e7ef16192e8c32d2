import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# The command line fits its tables to COLUMNS (else the terminal, else 100). pytest imports
# readline, which exports COLUMNS=80 to processes started later (pytest-xdist's workers
# among them), so the width is pinned to the documented default for every test and every
# process a test starts; tests of other widths set COLUMNS themselves.
os.environ["COLUMNS"] = "100"

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


def pytest_configure(config):
    # pytest-xdist registers this marker itself; registered here too, the suite also collects
    # cleanly without the plugin (`-p no:xdist`, `--strict-markers`)
    config.addinivalue_line("markers", "xdist_group(name): run these tests on one xdist worker")


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (`-n 2 --dist loadgroup`, the README's command), tests that share
    a module-scoped fixture stay on one worker, so the fixture (often a whole training
    run in a subprocess) is built once; every other test is scheduled on its own."""
    for item in items:
        definitions = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
        if any(d.scope == "module" for defs in definitions.values() for d in defs):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))
