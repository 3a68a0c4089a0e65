"""Files written safely and read back only when intact.

- `atomic_write_bytes` / `atomic_write_text`: write to a temporary file in the target's directory, then rename
  over the target, so a reader (or an interrupted run) never sees a half-written file. The file gets the mode a
  plain `open()` would give it (0666 less the umask), not `mkstemp`'s owner-only 0600, so shared caches and
  served reports stay readable by the group/others the user's umask allows.
- `write_sealed` / `read_sealed`: genbench's own cache files (feature caches, trained classifiers) carry the
  sha256 of their payload in a small header. PyTorch's zip reader does not check CRCs, so without this a
  same-size byte flip would load silently; `read_sealed` raises `CorruptFileError` instead, and the caller
  deletes the file and rebuilds it.
- `sha256_file` / `sha256_bytes`: content digests.
- `remove_stale_temps`: delete the `.NAME.*.tmp` files a killed writer left behind.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path

from genbench.errors import GenbenchError

SEAL_MAGIC = b"GENBENCH-SEALED-1\n"
_CHUNK = 1 << 20


class CorruptFileError(GenbenchError):
    """A file's content does not match the digest recorded for it (bit rot, truncation, tampering)."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), 0o666 & ~_umask())
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    return atomic_write_bytes(path, text.encode(encoding))


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def write_sealed(path: str | os.PathLike, payload: bytes) -> Path:
    """Atomically write `payload` behind a header holding its sha256 (see `read_sealed`)."""
    header = SEAL_MAGIC + sha256_bytes(payload).encode("ascii") + b"\n"
    return atomic_write_bytes(path, header + payload)


def read_sealed(path: str | os.PathLike) -> bytes:
    """The payload of a file written by `write_sealed`; `CorruptFileError` when the header is missing or the
    payload's sha256 differs from the recorded one. (`FileNotFoundError` passes through.)"""
    data = Path(path).read_bytes()
    n = len(SEAL_MAGIC)
    if not data.startswith(SEAL_MAGIC) or len(data) < n + 65 or data[n + 64:n + 65] != b"\n":
        raise CorruptFileError(f"{path}: not a sealed genbench cache file (header missing or damaged)")
    want = data[n:n + 64].decode("ascii", errors="replace")
    payload = data[n + 65:]
    got = sha256_bytes(payload)
    if got != want:
        raise CorruptFileError(f"{path}: content sha256 {got[:12]}... does not match the recorded {want[:12]}...")
    return payload


def remove_stale_temps(directory: str | os.PathLike, older_than_s: float = 3600.0) -> int:
    """Delete the temporary files `atomic_write_bytes` leaves when its process is killed mid-write
    (`.NAME.XXXX.tmp`) anywhere under `directory`, if older than `older_than_s` (so a live writer's file is never
    touched). Returns how many were removed."""
    d = Path(directory)
    if not d.is_dir():
        return 0
    now = time.time()
    removed = 0
    for p in d.rglob(".*.tmp"):
        try:
            if p.is_file() and now - p.stat().st_mtime > older_than_s:
                p.unlink()
                removed += 1
        except OSError:
            continue
    return removed
