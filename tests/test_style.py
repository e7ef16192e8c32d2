"""Lines of the package are at most 100 columns (the limit `setup.cfg` gives flake8)."""

import configparser
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIMIT = 100


def test_flake8_setting_matches_the_limit():
    config = configparser.ConfigParser()
    config.read(os.path.join(ROOT, "setup.cfg"))
    assert config.getint("flake8", "max-line-length") == LIMIT


def test_no_line_of_the_package_exceeds_100_columns():
    long = []
    for folder, _, files in os.walk(os.path.join(ROOT, "keras_smooth")):
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            with open(path, encoding="utf-8") as f:
                for number, line in enumerate(f, 1):
                    width = len(line.rstrip("\n"))
                    if width > LIMIT:
                        long.append(f"{os.path.relpath(path, ROOT)}:{number}: {width} columns")
    assert not long, f"{len(long)} lines over {LIMIT} columns:\n" + "\n".join(long)
