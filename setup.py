"""Build step for the one compiled part: the optional C pass of `fit_temperature`.

Package metadata and dependencies live in pyproject.toml. `keras_smooth/_moments_c.c`
is compiled where it pays (Linux on x86-64: glibc's vector exp and exp2, picked per CPU
at run time); the build is optional, so without a C compiler the package installs all
the same and `fit_temperature` runs its NumPy pass (same sums, same bounds, slower).
"""

import platform
import sys

from setuptools import Extension, setup

extensions = []
if sys.platform.startswith("linux") and platform.machine().lower() in ("x86_64", "amd64"):
    extensions.append(Extension(
        "keras_smooth._moments_c",
        sources=["keras_smooth/_moments_c.c"],
        # no -ffast-math: it assumes no NaN and can change the process's denormal mode
        extra_compile_args=["-O3", "-fno-math-errno", "-fno-trapping-math", "-fopenmp-simd"],
        libraries=["m"],
        optional=True,
    ))

setup(ext_modules=extensions)
