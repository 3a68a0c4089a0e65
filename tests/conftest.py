"""Fixtures shared by the test files.

- `one_thread` (module scope): torch on one thread for the module's tests, restored after. Small matrices and
  tiny networks run fastest on one thread on the shared 2-core machine (two contending threads spin against
  other processes' load), and no number depends on it. A module opts in with
  `pytestmark = pytest.mark.usefixtures("one_thread")`.
"""

import os

import pytest
import torch

# Tests share 2 cores; keep torch from oversubscribing them.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="module")
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True, scope="session")
def _stats_cache(tmp_path_factory):
    """Reference statistics go to a cache of this test session (shared by its tests: content-addressed), not
    the user's; a test that needs its own sets GENBENCH_STATS_CACHE itself."""
    if "GENBENCH_STATS_CACHE" in os.environ:
        yield
        return
    os.environ["GENBENCH_STATS_CACHE"] = str(tmp_path_factory.mktemp("refstats"))
    try:
        yield
    finally:
        os.environ.pop("GENBENCH_STATS_CACHE", None)
