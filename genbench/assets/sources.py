"""What an asset is and where its files can come from: the `Source`
kinds (an explicit path, local directories, an installed package's file, a PyPI sdist, upstream URLs) and
`Asset` itself. genbench/assets/catalog.py declares the assets with these; genbench/assets/core.py fetches,
verifies and caches them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional

from genbench.assets.hashing import _CHUNK, Member, hash_content


DOWNLOAD_TIMEOUT_S = 30.0  # per network read; a dead network fails fast, a slow one never hangs forever
PIP_TIMEOUT_S = 300.0
FETCH_LOCK_TIMEOUT_S = 3600.0  # how long a process waits for another one fetching the same asset
LOCKS_DIR = ".locks"  # inside the cache: one lock file per asset (empty when free; never holds data)
_MEMO = ".genbench-asset.json"
_PATH_OVERRIDES: dict[str, str] = {}  # asset name -> explicit path given to fetch(path=...)


def cache_dir() -> Path:
    """`$GENBENCH_CACHE`, else `~/.cache/genbench` (created on demand)."""
    d = os.environ.get("GENBENCH_CACHE")
    return Path(d).expanduser() if d else Path.home() / ".cache" / "genbench"


def offline() -> bool:
    """`GENBENCH_OFFLINE=1` skips network sources (upstream URLs and `pip download`)."""
    return os.environ.get("GENBENCH_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


def env_var(asset_name: str) -> str:
    return "GENBENCH_" + asset_name.upper().replace("-", "_")


# --------------------------------------------------------------------------------------------- sources


class SourceUnavailable(Exception):
    """A source cannot provide the asset; the message says why (shown in AssetNotFoundError)."""


@dataclass
class Source:
    """Where an asset may come from. `provide` returns {member name: path of a candidate file} for the
    members it can offer (candidates are verified by the caller), or raises SourceUnavailable."""

    label: str
    network: bool = False
    note: str = ""

    def describe(self, asset: "Asset") -> str:
        return self.label

    def provide(self, asset: "Asset", members: list[Member], staging: Path) -> dict[str, Path]:
        raise NotImplementedError


def _find_in_dirs(dirs: Iterable[Path], members: list[Member]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in dirs:
        for m in members:
            if m.name in found:
                continue
            for s in m.stored_names:
                p = d / s
                if p.is_file():
                    found[m.name] = p
                    break
    return found


@dataclass
class ExplicitPath(Source):
    """`$GENBENCH_<NAME>`: a file (one-file assets, or an archive `extract` understands) or a directory
    holding the member files directly or in one of `subdirs` (e.g. torchvision's `FashionMNIST/raw`)."""

    env: str = ""
    subdirs: tuple[str, ...] = ()
    extract: Optional[Callable[[Path, list[Member], Path], dict[str, Path]]] = None

    def _value(self, asset) -> Optional[str]:
        return _PATH_OVERRIDES.get(asset.name) or os.environ.get(self.env)

    def describe(self, asset):
        if asset.name in _PATH_OVERRIDES:
            return f"explicit path {_PATH_OVERRIDES[asset.name]}"
        v = os.environ.get(self.env)
        return f"explicit path ${self.env}" + (f"={v}" if v else "")

    def provide(self, asset, members, staging):
        v = self._value(asset)
        if not v:
            raise SourceUnavailable(f"${self.env} is not set")
        p = Path(v).expanduser()
        if not p.exists():
            raise SourceUnavailable(f"{p} does not exist")
        if p.is_file():
            if self.extract is not None and (p.suffix in (".gz", ".tgz", ".tar", ".zip") and len(asset.members) > 1):
                return self.extract(p, members, staging)
            if len(asset.members) == 1:
                return {asset.members[0].name: p}
            raise SourceUnavailable(f"{p} is a file; expected a directory holding {_names(members)}")
        dirs = [p] + [p / s for s in self.subdirs]
        found = _find_in_dirs(dirs, members)
        if not found:
            raise SourceUnavailable(f"none of {_names(members)} in {p}" + (f" (also looked in {', '.join(self.subdirs)})" if self.subdirs else ""))
        return found


@dataclass
class LocalDirs(Source):
    """Fixed places on disk: other tools' caches, Debian's data packages. `dirs` is called at fetch time so
    environment variables (TORCH_HOME) are read then; `filenames` maps member name -> file name used there."""

    dirs: Callable[[], list[Path]] = field(default=lambda: [])
    filenames: dict = field(default_factory=dict)

    def describe(self, asset):
        return f"{self.label} ({', '.join(str(d) for d in self.dirs())})"

    def provide(self, asset, members, staging):
        found: dict[str, Path] = {}
        for d in self.dirs():
            for m in members:
                if m.name in found:
                    continue
                names = [self.filenames[m.name]] if m.name in self.filenames else list(m.stored_names)
                for s in names:
                    if (d / s).is_file():
                        found[m.name] = d / s
                        break
        if not found:
            where = ", ".join(str(d) for d in self.dirs()) or "(no directory)"
            raise SourceUnavailable(f"not present in {where}")
        return found


def package_file(dist: str, relpath: str) -> Optional[Path]:
    """Path of a file installed by pip distribution `dist` (via its RECORD; the package is never imported)."""
    import importlib.metadata as md

    try:
        files = md.files(dist) or []
    except md.PackageNotFoundError:
        return None
    for f in files:
        if str(f).replace("\\", "/") == relpath:
            p = Path(f.locate())
            return p if p.is_file() else None
    return None


@dataclass
class PackageFile(Source):
    """A data file shipped inside an installed pip distribution (registry-hosted copy)."""

    dist: str = ""
    files: dict = field(default_factory=dict)  # member name -> path inside the distribution
    install: str = ""

    def describe(self, asset):
        return f"{self.label} (pip distribution {self.dist!r}: {', '.join(self.files.values())})"

    def provide(self, asset, members, staging):
        found = {}
        why = f"pip distribution {self.dist!r} is not installed ({self.install})"
        for m in members:
            if m.name in self.files:
                p = package_file(self.dist, self.files[m.name])
                if p is not None:
                    found[m.name] = p
                else:
                    import importlib.metadata as md

                    try:
                        md.distribution(self.dist)
                        why = f"{self.dist!r} is installed but has no {self.files[m.name]}"
                    except md.PackageNotFoundError:
                        pass
        if not found:
            raise SourceUnavailable(why)
        return found


def download(url: str, dest: Path, timeout: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """Stream `url` to `dest` with a socket timeout. Raises OSError subclasses (URLError, TimeoutError)."""
    req = urllib.request.Request(url, headers={"User-Agent": "genbench"})
    with urllib.request.urlopen(req, timeout=timeout) as r, open(dest, "wb") as f:
        shutil.copyfileobj(r, f, _CHUNK)
    return dest


def pip_download_sdist(requirement: str, dest: Path, timeout: float = PIP_TIMEOUT_S) -> Path:
    """`python -m pip download --no-deps --no-binary :all: REQ -d DEST`; returns the downloaded archive."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--disable-pip-version-check",
           "-q", requirement, "-d", str(dest)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SourceUnavailable(f"`pip download {requirement}` timed out after {timeout:.0f} s") from None
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise SourceUnavailable(f"`pip download {requirement}` failed: {tail[0][:300]}")
    archives = [p for p in dest.iterdir() if p.name.endswith((".tar.gz", ".zip", ".tgz"))]
    if not archives:
        raise SourceUnavailable(f"`pip download {requirement}` produced no source archive")
    return archives[0]


def extract_tar_members(archive: Path, wanted: dict[str, str], staging: Path) -> dict[str, Path]:
    """Extract tar members by basename match: wanted = {member name: basename inside the archive}."""
    out: dict[str, Path] = {}
    by_base = {v: k for k, v in wanted.items()}
    exdir = staging / ("x-" + archive.name)
    exdir.mkdir(exist_ok=True)
    with tarfile.open(archive) as t:
        for ti in t:
            base = ti.name.rsplit("/", 1)[-1]
            if ti.isfile() and base in by_base and by_base[base] not in out:
                dst = exdir / base
                with t.extractfile(ti) as src, open(dst, "wb") as f:
                    shutil.copyfileobj(src, f, _CHUNK)
                out[by_base[base]] = dst
    return out


@dataclass
class PipSdist(Source):
    """A registry-hosted source archive fetched with `pip download` (works where only PyPI is reachable),
    verified by its own sha256, then opened with tarfile."""

    requirement: str = ""
    archive_sha256: str = ""
    archive_members: dict = field(default_factory=dict)  # member name -> basename inside the archive
    network: bool = True

    def describe(self, asset):
        return f"{self.label} (python -m pip download --no-deps --no-binary :all: {self.requirement})"

    def provide(self, asset, members, staging):
        if offline():
            raise SourceUnavailable("skipped: GENBENCH_OFFLINE is set")
        d = staging / "pip"
        d.mkdir(exist_ok=True)
        archive = pip_download_sdist(self.requirement, d)
        got = hash_content(archive, Member(archive.name, self.archive_sha256, content="file"))[0]
        if got != self.archive_sha256:
            raise SourceUnavailable(f"{archive.name} sha256 {got[:12]}... != pinned {self.archive_sha256[:12]}...")
        return extract_tar_members(archive, {m.name: self.archive_members[m.name] for m in members if m.name in self.archive_members}, staging)


@dataclass
class Urls(Source):
    """Upstream URLs: `urls(member)` gives the mirrors to try for one member (first that works wins), or
    `archive_url` + `archive_members` for assets shipped as one tarball."""

    urls: Callable[[Member], list[str]] = field(default=lambda m: [])
    archive_url: str = ""
    archive_members: dict = field(default_factory=dict)
    network: bool = True

    def describe(self, asset):
        if self.archive_url:
            return f"{self.label} ({self.archive_url})"
        first = self.urls(asset.members[0])
        return f"{self.label} ({first[0] if first else '?'}{' ...' if len(asset.members) > 1 or len(first) > 1 else ''})"

    def provide(self, asset, members, staging):
        if offline():
            raise SourceUnavailable("skipped: GENBENCH_OFFLINE is set")
        d = staging / "dl"
        d.mkdir(exist_ok=True)
        if self.archive_url:
            arch = d / self.archive_url.rsplit("/", 1)[-1]
            try:
                download(self.archive_url, arch)
            except (OSError, ValueError) as e:
                raise SourceUnavailable(f"{self.archive_url}: {_net_reason(e)}") from None
            return extract_tar_members(arch, {m.name: self.archive_members[m.name] for m in members}, staging)
        found, errors = {}, []
        for m in members:
            for url in self.urls(m):
                dst = d / url.rsplit("/", 1)[-1]
                try:
                    download(url, dst)
                    found[m.name] = dst
                    break
                except (OSError, ValueError) as e:
                    errors.append(f"{url}: {_net_reason(e)}")
                    dst.unlink(missing_ok=True)
                    if not found and _is_offline_error(e):
                        # no connection at all (DNS, refused, timed out): the network itself is down, so
                        # don't wait on every other mirror and member
                        raise SourceUnavailable("; ".join(errors)) from None
        if not found:
            raise SourceUnavailable("; ".join(errors) or "no URL")
        return found


def _is_offline_error(e: BaseException) -> bool:
    """A connection-level failure (no answer at all), as opposed to a server's HTTP error."""
    return isinstance(e, (urllib.error.URLError, TimeoutError, ConnectionError)) and not isinstance(e, urllib.error.HTTPError)


def _net_reason(e: BaseException) -> str:
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        return f"network error ({e.reason})"
    return f"{type(e).__name__}: {e}"


def _names(members: list[Member]) -> str:
    return ", ".join(m.name for m in members)


# --------------------------------------------------------------------------------------------- assets


@dataclass(frozen=True)
class Asset:
    name: str
    members: tuple[Member, ...]
    sources: tuple[Source, ...]
    licence: str
    description: str
    provide_commands: tuple[str, ...] = ()  # exact commands that make the asset available
    single_file: bool = False  # fetch() returns the file instead of the directory

    @property
    def env(self) -> str:
        return env_var(self.name)

    @property
    def size(self) -> int:
        return sum(m.size or 0 for m in self.members)

    @property
    def sha256(self) -> str:
        """One content hash for the whole asset: sha256 over the sorted "digest  name" lines of its members
        (for a one-file sha256 asset, the file's own sha256)."""
        if len(self.members) == 1 and self.members[0].algo == "sha256":
            return self.members[0].digest
        lines = "".join(f"{m.digest}  {m.name}\n" for m in sorted(self.members, key=lambda m: m.name))
        return hashlib.sha256(lines.encode()).hexdigest()

    def all_sources(self) -> list[Source]:
        return list(self.sources)
