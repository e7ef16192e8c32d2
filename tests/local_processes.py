"""Real processes on 127.0.0.1 for the multi-process tests: a free port, processes that
are always killed, and a time limit on each.

Used by `test_multihost.py` and `test_tuning_distributed.py`.
"""

import contextlib
import os
import signal
import socket
import subprocess

import pytest


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def processes(make_env):
    """`start(args, cwd, **env)` launches a process in its own session, its output piped,
    its environment `make_env(**env)`; every one still running at the end is killed."""
    started = []

    def start(args, cwd, **env):
        proc = subprocess.Popen(args, cwd=cwd, env=make_env(**env), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        started.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in started:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def finish(proc, timeout):
    """`(returncode, output)` of `proc`; a test failure if it runs over `timeout` seconds."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"process {proc.args} ran over {timeout} s:\n{out[-3000:]}")
    return proc.returncode, out
