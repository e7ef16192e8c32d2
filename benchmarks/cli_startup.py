"""Start-up time of `keras-smooth --help` against `python -c "import tensorflow"`.

Runs each command as a fresh process, alternating (help, baseline, help,
baseline, ...) so that a drift of the machine's speed hits both, after one
warm-up run of each; prints min/median/max wall seconds and the median of the
pairwise ratios. The baseline is measured in the same run.

    python benchmarks/cli_startup.py            # 10 pairs per command
    python benchmarks/cli_startup.py --runs 20
"""

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASELINE = [sys.executable, "-c", "import tensorflow"]
COMMANDS = {
    "keras-smooth --help": [sys.executable, "-m", "keras_smooth", "--help"],
    "keras-smooth compare --help": [sys.executable, "-m", "keras_smooth", "compare", "--help"],
    "keras-smooth tune --help": [sys.executable, "-m", "keras_smooth", "tune", "--help"],
}


def _seconds(command, env):
    started = time.perf_counter()
    subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=True)
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="timed pairs per command")
    runs = parser.parse_args().runs
    env = {**os.environ, "PYTHONPATH": ROOT}
    import tensorflow as tf  # noqa: F401  (only for the version line)

    print(f"python {platform.python_version()}, tensorflow {tf.__version__}, "
          f"{os.cpu_count()} CPUs; {runs} alternating pairs per command after one warm-up")
    print(f"{'command':32s}{'min s':>8s}{'median s':>10s}{'max s':>8s}"
          f"{'tensorflow median s':>21s}{'median ratio':>14s}")
    for name, command in COMMANDS.items():
        _seconds(command, env)
        _seconds(BASELINE, env)
        mine, base = [], []
        for _ in range(runs):
            mine.append(_seconds(command, env))
            base.append(_seconds(BASELINE, env))
        ratio = statistics.median(a / b for a, b in zip(mine, base))
        print(f"{name:32s}{min(mine):8.3f}{statistics.median(mine):10.3f}{max(mine):8.3f}"
              f"{statistics.median(base):21.3f}{ratio:14.3f}")


if __name__ == "__main__":
    main()
