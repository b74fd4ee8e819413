"""Suite-wide fixtures, the order of the tests, and the compilation cache.

Tests that run programs in the sandbox carry `pytest.mark.xdist_group(name="sandbox")`.
They also take one file lock for their whole duration, so that with several
xdist workers no two of them overlap: the hostile-program suite asserts that
no sandbox process is left after each run, which a concurrent, benign
sandbox run on another worker would otherwise break.
"""

import fcntl
import os
import tempfile

import pytest

_LOCK_PATH = os.path.join(tempfile.gettempdir(), "rewardjax-sandbox-tests.lock")

# A persistent XLA compilation cache per xdist worker, shared with the
# programs that worker launches (they inherit the environment): most tests
# build the same small runlocal models, and reading a compiled program back
# from disk takes a fraction of compiling it again (a fifth of the RL tests'
# time). One directory per worker because JAX writes an entry in place: a
# process reading it while another writes it can load a truncated executable
# (a CLI run once aborted that way). Programs started concurrently from one
# worker (the ranks of a multi-process run) go without the cache
# (`_parallel_harness`). Set before any test module imports jax; a value from
# the caller wins (the workers inherit the controller's value, hence the marker).
if "JAX_COMPILATION_CACHE_DIR" not in os.environ or os.environ.get("_REWARDJAX_TESTS_CACHE"):
    os.environ["_REWARDJAX_TESTS_CACHE"] = "1"
    os.environ["JAX_COMPILATION_CACHE_DIR"] = os.path.join(
        tempfile.gettempdir(),
        "rewardjax-tests-jax-cache",
        os.environ.get("PYTEST_XDIST_WORKER", "main"),
    )
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")


@pytest.fixture(autouse=True)
def _serialize_sandbox_tests(request):
    marker = request.node.get_closest_marker("xdist_group")
    name = marker and (marker.kwargs.get("name") or (marker.args[0] if marker.args else None))
    if name != "sandbox":
        yield
        return
    with open(_LOCK_PATH, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def pytest_collection_modifyitems(config, items):
    """Tests marked `slow` run first (stable order otherwise).

    With several xdist workers, the long end-to-end runs then start early and
    the short tests fill the gaps behind them, instead of one worker running a
    long test alone at the end while the others sit idle.
    """
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
