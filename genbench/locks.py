"""Inter-process file locks: one run per output directory, one builder per cached asset.

    with FileLock(DIR / ".genbench.lock", what=f"run directory {DIR}"):        # fails at once if held
        ...
    with FileLock(cache / "x.lock", what="classifier:fashion-mnist", blocking=True, timeout=600):
        ...                                                                   # waits for the other builder

The lock is an advisory `fcntl.flock` on a lock file that is never deleted (deleting it would let a second
process lock a new inode while the first still holds the old one). The kernel drops the lock when its holder
exits, however it exits (SIGKILL included), so a lock is never stale. While held, the file names the holder
(PID, host, command, start time); `LockHeldError` quotes it. Locks are per open file, so two `FileLock`s on one
path conflict even inside one process.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Optional

from genbench.errors import GenbenchError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks; genbench documents POSIX only
    fcntl = None  # type: ignore[assignment]


class LockHeldError(GenbenchError):
    """Another process holds the lock; the message names it and what to do."""

    def __init__(self, message: str, holder: Optional[dict] = None):
        super().__init__(message)
        self.holder = holder or {}


def read_holder(path: str | os.PathLike) -> dict:
    """What the lock file says about its (last) holder; {} when unreadable."""
    try:
        d = json.loads(Path(path).read_text(encoding="utf-8") or "{}")
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}


def describe_holder(h: dict) -> str:
    if not h:
        return "another process (it did not say which)"
    cmd = " ".join(map(str, h.get("argv") or [])) or "?"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(h["started"])) if h.get("started") else "?"
    return f"PID {h.get('pid', '?')} on {h.get('host', '?')} (command: {cmd}; since {since})"


class FileLock:
    def __init__(self, path: str | os.PathLike, what: str = "", blocking: bool = False,
                 timeout: Optional[float] = None, poll_s: float = 0.2):
        self.path = Path(path)
        self.what = what or str(self.path)
        self.blocking = blocking
        self.timeout = timeout
        self.poll_s = poll_s
        self._fd: Optional[int] = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> "FileLock":
        if self._fd is not None:
            raise RuntimeError(f"{self.what}: lock already held by this object")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        if fcntl is None:  # pragma: no cover
            self._fd = fd
            return self
        t0 = time.monotonic()
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - t0
                if not self.blocking or (self.timeout is not None and waited >= self.timeout):
                    os.close(fd)
                    holder = read_holder(self.path)
                    extra = f" after waiting {waited:.0f} s" if self.blocking else ""
                    raise LockHeldError(f"{self.what} is in use by {describe_holder(holder)}{extra}. Wait for it to "
                                        f"finish, or stop it; the lock ({self.path}) is released as soon as that "
                                        "process exits.", holder) from None
                time.sleep(self.poll_s)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "argv": list(sys.argv), "started": time.time(),
                "what": self.what}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode("utf-8"), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def __enter__(self) -> "FileLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


__all__ = ["FileLock", "LockHeldError", "describe_holder", "read_holder"]
