"""`genbench` as a child process with the runner's test models registered (tests/runner_dummies.py), for tests
that kill, interrupt or race a run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def dummy_cli(args, cwd) -> subprocess.Popen:
    """Start `genbench ARGS` in `cwd` on one thread, with stdout and stderr piped as text."""
    code = ("import sys; sys.path.insert(0, %r); import runner_dummies; runner_dummies.register(); "
            "from genbench.cli import main; sys.exit(main(sys.argv[1:]))" % str(TESTS))
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
