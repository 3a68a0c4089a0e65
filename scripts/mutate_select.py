"""Which of a module's tests execute each of its lines: the test selection of scripts/mutate.py.

A first-order mutant changes one expression or statement. A test that never executes that code runs exactly as on
the unmutated module, so it cannot kill the mutant; running only the tests that execute the mutated lines gives
the same verdict as running them all, in a fraction of the time.

`Recorder` is a pytest plugin plus a trace function. It runs once per module, in the forked child of the unmutated
baseline run, and records for each executed line of the module who executed it:
- a test (its node id), while the test's setup, call or teardown runs;
- a fixture broader than one function ("fixture:<name>"), while it is set up: its values are cached and used by
  every later test that requests it, so such a line counts as executed by every test that uses the fixture;
- nobody (None): at import or collection time, and whatever runs while the module's body or a class body runs
  (also when a test imports the module lazily). Module-level code influences every later test, so a mutant there
  runs the whole test list.
Threads are traced too. Tests (or fixtures) that fork, e.g. a multiprocessing pool with the fork start method,
run code in a child the tracer does not see: they are selected for every mutant. A subprocess that executes a
new interpreter imports genbench from disk, never the mutant, so it needs no such care.

`Coverage.select(first, last)` gives the node ids to run for a mutant spanning those lines, `ALL` when the whole
list must run, or [] when no test executes them (the mutant survives without a run; its code never ran).
"""

from __future__ import annotations

import gc
import inspect
import json
import os
import sys
import threading
import time
import types
from dataclasses import dataclass, field

ALL = None  # select(): run the module's whole test list


class Recorder:
    """pytest plugin: records which owner (test node id, broad fixture, or None) executes each line of `path`."""

    def __init__(self, path: str):
        self.path = path
        self.owner: str | None = None
        self.lines: dict[int, set] = {}
        self.tests: list[str] = []
        self.uses: dict[str, list[str]] = {}  # node id -> the fixtures it requests (transitively)
        self.seconds: dict[str, float] = {}  # node id or "fixture:<name>" -> seconds
        self.forkers: set[str] = set()
        self.collect_s = 0.0

    # ---- tracing ------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Trace the module's lines. While its module body (or a class body) runs, whatever runs counts as import
        time (owner None), even when a test imports the module lazily: that code's effect outlives the test."""
        path, lines = self.path, self.lines
        self.importing = 0

        def body(frame, event, arg):  # the module's body or a class body
            if event == "line":
                lines.setdefault(frame.f_lineno, set()).add(None)
            elif event == "return":
                self.importing -= 1
            return body

        def local(frame, event, arg):
            if event == "line":
                lines.setdefault(frame.f_lineno, set()).add(None if self.importing else self.owner)
            return local

        def global_(frame, event, arg):
            if frame.f_code.co_filename != path:
                return None
            if not frame.f_code.co_flags & inspect.CO_OPTIMIZED:
                self.importing += 1
                lines.setdefault(frame.f_lineno, set()).add(None)
                return body
            lines.setdefault(frame.f_lineno, set()).add(None if self.importing else self.owner)
            return local

        sys.settrace(global_)
        threading.settrace(global_)
        os.register_at_fork(before=lambda: self.forkers.add(self.owner))

    # ---- pytest hooks -------------------------------------------------------------------------------------
    def _hookwrapper(fn):  # noqa: N805 - a decorator used in the class body
        import pytest

        return pytest.hookimpl(hookwrapper=True)(fn)

    @_hookwrapper
    def pytest_collection(self, session):
        t0 = time.perf_counter()
        yield
        self.collect_s = time.perf_counter() - t0

    @_hookwrapper
    def pytest_runtest_protocol(self, item, nextitem):
        self.tests.append(item.nodeid)
        self.uses[item.nodeid] = list(getattr(item, "fixturenames", ()))
        prev, self.owner, t0 = self.owner, item.nodeid, time.perf_counter()
        yield
        self.seconds[item.nodeid] = time.perf_counter() - t0
        self.owner = prev

    @_hookwrapper
    def pytest_fixture_setup(self, fixturedef, request):
        if fixturedef.scope == "function":
            yield
            return
        key = "fixture:" + fixturedef.argname
        prev, self.owner, t0 = self.owner, key, time.perf_counter()
        yield
        self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - t0
        self.owner = prev

    def save(self, out: str) -> None:
        sys.settrace(None)
        threading.settrace(None)
        blob = {"path": self.path, "tests": self.tests, "uses": self.uses, "seconds": self.seconds,
                "forkers": sorted(self.forkers, key=str), "collect_s": self.collect_s,
                "lines": {str(ln): sorted(o, key=str) for ln, o in self.lines.items()}}
        with open(out, "w") as f:
            json.dump(blob, f)


@dataclass
class Coverage:
    """The baseline's record; `select` maps a mutant's line span to the tests to run."""
    tests: list[str]
    uses: dict[str, list[str]]
    seconds: dict[str, float]
    forkers: list
    collect_s: float
    lines: dict[int, list] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str) -> "Coverage":
        with open(path) as f:
            b = json.load(f)
        return cls(b["tests"], b["uses"], b["seconds"], b["forkers"], b["collect_s"],
                   {int(k): v for k, v in b["lines"].items()})

    def _users(self, owners: set) -> set[str]:
        """The tests that executed a line owned by `owners` (a test, or a broad fixture the test requests)."""
        fixtures = {o[len("fixture:"):] for o in owners if o.startswith("fixture:")}
        return {t for t in self.tests if t in owners or fixtures.intersection(self.uses.get(t, ()))}

    def at_import(self, first: int, last: int) -> bool:
        """Whether a line of the span ran outside any test (import or collection time)."""
        return any(None in self.lines.get(ln, ()) for ln in range(first, last + 1))

    def select(self, first: int, last: int) -> list[str] | None:
        owners = set()
        for ln in range(first, last + 1):
            owners.update(self.lines.get(ln, ()))
        if not owners:
            return []
        if None in owners or None in self.forkers:
            return ALL
        chosen = self._users(owners) | self._users(set(self.forkers))
        return [t for t in self.tests if t in chosen]  # collection order, as in the full run

    def estimate_s(self, selected: list[str] | None) -> float:
        """Seconds the selected tests took in the baseline, with the broad fixtures they request."""
        tests = self.tests if selected is ALL else selected
        fixtures = {f for t in tests for f in self.uses.get(t, ())}
        return (self.collect_s + sum(self.seconds.get(t, 0.0) for t in tests)
                + sum(self.seconds.get("fixture:" + f, 0.0) for f in fixtures))


# ---- running a mutant in a process that already imported the module: swap the changed functions' code -------
def _key(code: types.CodeType) -> tuple[str, int]:
    return code.co_qualname, code.co_firstlineno


def _own(code: types.CodeType) -> types.CodeType:
    """The code object with its nested code objects replaced by their keys: what this function itself does."""
    return code.replace(co_consts=tuple(("<code>", *_key(c)) if isinstance(c, types.CodeType) else c
                                        for c in code.co_consts))


def _walk(code: types.CodeType, out: dict, parent: dict, up=None) -> None:
    out[_key(code)] = code
    parent[_key(code)] = up
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            _walk(c, out, parent, _key(code))


def swap_in(path: str, original: types.CodeType, mutant: types.CodeType) -> bool:
    """Give every live function of the module at `path` the mutant's code where it differs from the original's.
    Possible only when the mutation lies in function bodies (not in module or class-level code, which ran at
    import) and some live function object carries the changed code; False when not (then import it fresh)."""
    old, new, parent, _ = {}, {}, {}, {}
    _walk(original, old, _)
    _walk(mutant, new, parent)
    if old.keys() != new.keys():
        return False
    changed = [k for k in new if _own(new[k]) != _own(old[k])]
    if not changed or any(not new[k].co_flags & inspect.CO_OPTIMIZED for k in changed):
        return False
    keys = set()
    for k in changed:  # the changed function and every function around it, up to the module or class body
        while k is not None and new[k].co_flags & inspect.CO_OPTIMIZED:
            keys.add(k)
            k = parent[k]
    real = os.path.realpath(path)
    same_file: dict[str, bool] = {}
    swapped = 0
    for f in gc.get_objects():
        if type(f) is not types.FunctionType:  # type(), not isinstance: some objects warn on __class__
            continue
        code = f.__code__
        k = _key(code)
        if k not in keys:
            continue
        fn = code.co_filename
        if fn not in same_file:
            same_file[fn] = os.path.realpath(fn) == real
        if same_file[fn]:
            f.__code__ = new[k]
            swapped += 1
    return swapped > 0
