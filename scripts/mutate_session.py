"""A pytest session collected once and run many times: the warm server of scripts/mutate.py.

`pytest.main` in every mutant's process re-reads the configuration, loads the plugins and collects the test files
again (about a second on this project, even with every module already imported), while most mutants' selected
tests take a tenth of that. `WarmSession` does the configuration and the collection once, in the per-module server;
each mutant's forked child then runs its selected items through pytest's own run loop (`pytest_runtestloop`: the
same fixtures, set-up and teardown, `-x` stopping at the first failure) and exits with pytest's codes: 0 all passed,
1 some failed, 4 a selected node id that was not collected.

It uses two pytest internals (`_prepareconfig`, `Session.from_config`); when they are missing or collection
fails, `open` returns None and the caller runs `pytest.main` instead.
"""

from __future__ import annotations

import contextlib
import os


@contextlib.contextmanager
def silenced():
    """stdout and stderr (the file descriptors, so C code and pytest's capture too) go to /dev/null meanwhile."""
    out, err = os.dup(1), os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
    try:
        yield
    finally:
        os.dup2(out, 1)
        os.dup2(err, 2)
        for fd in (null, out, err):
            os.close(fd)


class WarmSession:
    def __init__(self, config, session):
        self.config, self.session = config, session
        self.items = list(session.items)
        self.by_id = {it.nodeid: it for it in self.items}

    @classmethod
    def open(cls, args: list[str]) -> "WarmSession | None":
        """Configure pytest with `args` and collect (stdout and stderr go to /dev/null meanwhile)."""
        try:
            from _pytest.config import _prepareconfig
            from _pytest.main import Session
        except ImportError:
            return None
        with silenced():
            try:
                config = _prepareconfig(["-x", "-q", "-p", "no:cacheprovider", *args], None)
                config._do_configure()
                session = Session.from_config(config)
                config.hook.pytest_sessionstart(session=session)
                config.hook.pytest_collection(session=session)
                if session.testsfailed or not session.items:  # collection errors, or nothing to run
                    return None
                return cls(config, session)
            except Exception:
                return None

    def run(self, selected: list[str] | None) -> int:
        """Run the selected node ids (None: every collected item) in collection order; pytest's exit code.
        Meant for a forked child: the session's state is used up."""
        if selected is None:
            items = self.items
        else:
            if any(n not in self.by_id for n in selected):
                return 4
            want = set(selected)
            items = [it for it in self.items if it.nodeid in want]
        s = self.session
        s.items = items
        s.testscollected = len(items)
        try:
            self.config.hook.pytest_runtestloop(session=s)
        except (s.Failed, s.Interrupted):  # -x: stopped at the first failure
            return 1
        return 1 if s.testsfailed else 0
