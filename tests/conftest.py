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
