"""Suite-wide fixtures.

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
