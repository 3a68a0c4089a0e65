"""Run directories: what makes a folder a `genbench run` output directory, and the lock that lets one process at a
time write it.

- `run_dir_lock(DIR)`: an exclusive `FileLock` on `DIR/.genbench.lock`, held by `genbench run` (its
  `--fresh` wipe included), `genbench eval --out DIR` and `genbench check --out DIR` for as long as they write
  DIR. A second process fails at once with `LockHeldError` (exit 2) naming the holder's PID and command. The
  lock is re-entrant inside one process (`check` holds it and runs a `Runner`, which takes it again).
- `MARKER_NAME` (`DIR/.genbench-run`): written when a run creates its store. `is_run_dir(DIR)` is true when the
  marker is there or DIR/results.db is a genbench results database (runs made before the marker existed).
  `--fresh` deletes only inside such directories.
- `default_out_dir(suite_name)`: `reports/<slug of the name>`, always inside `reports/`.
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from genbench.errors import InvalidInputError
from genbench.fileio import atomic_write_text
from genbench.locks import FileLock

LOCK_NAME = ".genbench.lock"
MARKER_NAME = ".genbench-run"
REPORTS_DIR = Path("reports")
# files a run directory may hold besides what `--fresh` deletes, without making it "foreign"
_HARMLESS = {LOCK_NAME, MARKER_NAME, ".genbench-check"}  # the last: genbench check's own marker

_held: dict = {}  # resolved directory -> [FileLock, depth]


@contextmanager
def run_dir_lock(directory: str | os.PathLike) -> Iterator[None]:
    """Hold DIR's run lock for the `with` block (see the module docstring)."""
    key = Path(directory).resolve()
    if key in _held:
        _held[key][1] += 1
        try:
            yield
        finally:
            _held[key][1] -= 1
        return
    lock = FileLock(key / LOCK_NAME, what=f"run directory {directory}").acquire()  # names its holder
    _held[key] = [lock, 1]
    try:
        yield
    finally:
        del _held[key]
        lock.release()


def write_marker(directory: str | os.PathLike) -> None:
    """Mark DIR as a genbench run directory (once)."""
    p = Path(directory) / MARKER_NAME
    if not p.exists():
        atomic_write_text(p, "genbench run directory: `genbench run --fresh` may delete its results, artifacts, "
                             "checkpoints and cache\n")


def has_genbench_store(directory: str | os.PathLike) -> bool:
    """True when DIR/results.db is a genbench results database (checked read-only)."""
    from genbench.results.store import check_store_file

    db = Path(directory) / "results.db"
    if not db.is_file():
        return False
    try:
        check_store_file(db)
    except InvalidInputError:
        return False
    return True


def is_run_dir(directory: str | os.PathLike) -> bool:
    d = Path(directory)
    return (d / MARKER_NAME).is_file() or has_genbench_store(d)


def check_fresh_allowed(directory: str | os.PathLike, wiped: tuple) -> None:
    """Refuse `--fresh` on a directory that holds something but is not a genbench run directory: its `cache/`,
    `checkpoints/` or `artifacts/` are somebody else's. An empty or missing directory is fine."""
    d = Path(directory)
    if not d.is_dir() or is_run_dir(d):
        return
    others = sorted(p.name for p in d.iterdir() if p.name not in _HARMLESS)
    if others:
        doomed = [n for n in others if n in wiped]
        raise InvalidInputError(
            f"--fresh: {d} is not a genbench run directory (no {MARKER_NAME} marker, no genbench results.db) but "
            f"holds {', '.join(others[:5])}{' ...' if len(others) > 5 else ''}; --fresh would delete "
            f"{', '.join(doomed) or 'files'} there. Give an empty or new directory with --out, or a directory a "
            "`genbench run` made.")


_SLUG_BAD = re.compile(r"[^A-Za-z0-9._-]+")


def slug(name: str) -> str:
    """A suite name as one safe path component: the runs of letters, digits and `-_.` between other characters,
    joined by `-`, without parts made only of dots ("../../x" -> "x", "/etc/x" -> "etc-x"), no `..`, no leading
    dot (no hidden folder); never empty."""
    parts = [p for p in _SLUG_BAD.split(str(name)) if p.strip(".")]
    s = re.sub(r"\.{2,}", ".", "-".join(parts)).strip("-.")
    return s or "suite"


def default_out_dir(suite_name: str) -> Path:
    """`reports/<slug>`: where `genbench run` writes without `--out`; always a direct child of `reports/`."""
    out = REPORTS_DIR / slug(suite_name)
    if out.parent != REPORTS_DIR or out.name in ("", ".", ".."):  # cannot happen with slug(); a last guard
        raise InvalidInputError(f"suite name {suite_name!r} does not make a folder name; give --out DIR")
    return out


__all__ = ["run_dir_lock", "write_marker", "is_run_dir", "has_genbench_store", "check_fresh_allowed", "slug",
           "default_out_dir", "LOCK_NAME", "MARKER_NAME"]
