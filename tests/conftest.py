import os

import torch

# Tests share 2 cores; keep torch from oversubscribing them.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


import pytest


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
