"""Reference statistics computed once and shared by every run: the real subset's features, their Gaussian
statistics (float64 mean and unbiased covariance) and, when P/R/D/C asks for them, their k-NN radii.

They live in a content-addressed cache, `$GENBENCH_STATS_CACHE` if set, else `$GENBENCH_CACHE/refstats/`
(`~/.cache/genbench/refstats/` by default), one sealed file per entry (genbench.fileio.write_sealed: the sha256
of the payload is checked before anything is loaded):

    <key digest>.pt          features (float32 when that is lossless, else float64), mu, sigma, the key itself
    <key digest>.radii.pt    {tag: {k: squared k-NN radii}} (tag: how they were computed, see metrics/manifold.py)

The key (`reference_key`) is everything the values depend on:
  - the dataset and split, and the sha256 of the split's content (the bytes genbench reads, not the file name);
  - the subset: its size and the sha256 of the chosen indices (text: the unit and the drawing rule);
  - the extractor's whole protocol (its id, and its weights' sha256 where it has weights) and the device type;
  - the metric version: genbench's version, STATS_FORMAT, and a digest of the code that extracts features and
    computes the statistics (genbench/features/, metrics/stats.py, metrics/manifold.py). Any change there gives
    new keys: old entries are never used again (`genbench stats list` marks them stale).
An entry whose seal does not match (bit rot, truncation) or whose stored key differs from the one asked for is
deleted with a one-line warning and rebuilt, never used. Two processes building the same entry take turns on a
file lock (genbench.locks.FileLock); the second one reads what the first wrote. A cache directory that cannot
be written (read-only filesystem, no permission) gives one warning and the run goes on without caching.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch

from genbench.fileio import CorruptFileError, read_sealed, write_sealed
from genbench.locks import FileLock

STATS_FORMAT = 1  # bump when what an entry holds or how it is computed changes
BUILD_LOCK_TIMEOUT_S = 3600.0
_WARNED: set = set()


def stats_dir() -> Path:
    d = os.environ.get("GENBENCH_STATS_CACHE")
    if d:
        return Path(d).expanduser()
    from genbench.assets.sources import cache_dir

    return cache_dir() / "refstats"


_CODE: list = []


def metric_version() -> str:
    """genbench's version, the entry format and a digest of the code that features and statistics come from."""
    if not _CODE:
        import genbench

        root = Path(__file__).resolve().parents[1]
        files = sorted([*(root / "features").rglob("*.py"), root / "metrics" / "stats.py",
                        root / "metrics" / "manifold.py"])
        h = hashlib.sha256()
        for f in files:
            h.update(str(f.relative_to(root)).encode())
            h.update(f.read_bytes())
        _CODE.append(f"{genbench.__version__}/format{STATS_FORMAT}/{h.hexdigest()[:16]}")
    return _CODE[0]


def key_digest(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:32]


def reference_key(dataset: str, split: str, split_sha256: str, subset: dict, protocol: dict, device: str) -> dict:
    return {"dataset": dataset, "split": split, "split_sha256": split_sha256, "subset": subset,
            "extractor": protocol, "device": torch.device(device).type, "metric_version": metric_version()}


@dataclass
class RefStats:
    key: dict
    features: torch.Tensor  # (N, D) float64
    mu: Optional[torch.Tensor]
    sigma: Optional[torch.Tensor]
    source: str = "computed"  # "computed" | "cache" | "memory"
    seconds: float = 0.0  # feature extraction time spent for this entry by this process
    radii: dict = field(default_factory=dict)  # tag -> {k: (N,) float64}

    @property
    def digest(self) -> str:
        return key_digest(self.key)


def _warn(msg: str, once: Optional[str] = None) -> None:
    if once is not None:
        if once in _WARNED:
            return
        _WARNED.add(once)
    print(f"genbench: warning: {msg}", file=sys.stderr, flush=True)


def _why(e: BaseException, path: Path) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0].replace(f"{path}: ", "")


class StatsCache:
    """The reference-statistics cache in `root` (default `stats_dir()`)."""

    def __init__(self, root: Optional[Path] = None):
        self.root = Path(root) if root is not None else stats_dir()

    def path(self, digest: str) -> Path:
        return self.root / f"{digest}.pt"

    def radii_path(self, digest: str) -> Path:
        return self.root / f"{digest}.radii.pt"

    def _lock(self, digest: str) -> FileLock:
        return FileLock(self.root / ".locks" / f"{digest}.lock", what=f"reference statistics {digest}",
                        blocking=True, timeout=BUILD_LOCK_TIMEOUT_S)

    def writable(self) -> bool:
        """Whether entries can be written; False (with one warning per directory) on a read-only filesystem or
        without permission."""
        try:
            (self.root / ".locks").mkdir(parents=True, exist_ok=True)
            # a probe file of its own (mkstemp: unique across processes *and* threads; a name per process let
            # one thread delete another's probe, which then took a writable cache for a read-only one)
            fd, probe = tempfile.mkstemp(dir=self.root, prefix=".probe-")
            os.close(fd)
            os.unlink(probe)
            return True
        except OSError as e:
            _warn(f"reference-statistics cache {self.root} cannot be written ({e.strerror or e}); computing "
                  "reference features in memory, without caching. Set GENBENCH_STATS_CACHE to a writable "
                  "directory to share them between runs.", once=str(self.root))
            return False

    # ---- entries -------------------------------------------------------------------------------------------
    def load(self, key: dict) -> Optional[RefStats]:
        """The cached entry for `key`, or None (missing; corrupt or for another key: deleted with a warning)."""
        digest = key_digest(key)
        p = self.path(digest)
        if not p.exists():
            return None
        try:
            blob = torch.load(io.BytesIO(read_sealed(p)), map_location="cpu", weights_only=True)
            if not isinstance(blob, dict) or not isinstance(blob.get("features"), torch.Tensor):
                raise CorruptFileError(f"{p}: not a genbench reference-statistics entry")
            if blob.get("key") != json.dumps(key, sort_keys=True, default=str):
                raise CorruptFileError(f"{p}: holds the statistics of another key (stale or renamed entry)")
        except FileNotFoundError:
            return None
        except Exception as e:
            _warn(f"reference statistics {p} are corrupt or stale ({_why(e, p)}); deleted, rebuilding")
            self._delete(p)
            self._delete(self.radii_path(digest))
            return None
        feats = blob["features"].double()
        return RefStats(key, feats, blob.get("mu"), blob.get("sigma"), source="cache")

    def _delete(self, p: Path) -> None:
        try:
            p.unlink(missing_ok=True)
        except OSError:
            pass

    def save(self, entry: RefStats) -> None:
        f = entry.features
        f32 = f.float()
        stored = f32 if torch.equal(f32.double(), f) else f  # float32 when that loses nothing
        buf = io.BytesIO()
        torch.save({"key": json.dumps(entry.key, sort_keys=True, default=str), "features": stored,
                    "mu": entry.mu, "sigma": entry.sigma, "created": time.time(),
                    "build_seconds": float(entry.seconds)}, buf)
        write_sealed(self.path(entry.digest), buf.getvalue())

    def get_or_build(self, key: dict, extract: Callable[[], torch.Tensor]) -> RefStats:
        """The entry for `key`: read from the cache, or built with `extract()` (features, (N, D)) and written.
        Builders of one key take turns (file lock); without a writable cache it is built in memory."""
        entry = self.load(key)
        if entry is not None:
            return entry
        if not self.writable():
            return _build(key, extract)
        with self._lock(key_digest(key)):
            entry = self.load(key)  # another process may have built it while this one waited
            if entry is not None:
                return entry
            entry = _build(key, extract)
            try:
                self.save(entry)
            except OSError as e:
                _warn(f"could not write reference statistics to {self.root} ({e}); not cached", once=str(self.root))
        return entry

    # ---- k-NN radii ----------------------------------------------------------------------------------------
    def _load_radii(self, digest: str) -> dict:
        p = self.radii_path(digest)
        if not p.exists():
            return {}
        try:
            blob = torch.load(io.BytesIO(read_sealed(p)), map_location="cpu", weights_only=True)
            if not isinstance(blob, dict) or not isinstance(blob.get("radii"), dict):
                raise CorruptFileError(f"{p}: not a genbench k-NN radii entry")
            return {str(t): {int(k): v for k, v in d.items()} for t, d in blob["radii"].items()}
        except FileNotFoundError:
            return {}
        except Exception as e:
            _warn(f"k-NN radii {p} are corrupt ({_why(e, p)}); deleted, recomputing")
            self._delete(p)
            return {}

    def radii(self, entry: RefStats, ks, n_fake: int, device: str):
        """The entry's squared k-NN radii for `ks`, computed the way `prdc(entry.features, fake)` with `n_fake`
        fake rows would (genbench.metrics.manifold.knn_radii), read from the cache when it has them."""
        from genbench.metrics.knn import KnnRadii, knn_radii

        ks = tuple(sorted({int(k) for k in ks}))
        want = knn_radii_tag(entry.features, n_fake, device)
        have = entry.radii.get(want) or {}
        if not all(k in have for k in ks):
            have = self._load_radii(entry.digest).get(want, {})
            entry.radii[want] = have
        if all(k in have for k in ks) and all(v.shape == (entry.features.shape[0],) for v in have.values()):
            return KnnRadii({k: have[k] for k in ks}, want, entry.features.shape[0])
        r = knn_radii(entry.features, ks, n_fake=n_fake, device=device)
        entry.radii.setdefault(r.tag, {}).update({k: v.cpu() for k, v in r.sq.items()})
        if self.root is not None and self.path(entry.digest).exists() and self.writable():
            with self._lock(entry.digest):
                try:
                    allr = self._load_radii(entry.digest)
                    allr.setdefault(r.tag, {}).update({k: v.cpu() for k, v in r.sq.items()})
                    buf = io.BytesIO()
                    torch.save({"key": json.dumps(entry.key, sort_keys=True, default=str), "radii": allr}, buf)
                    write_sealed(self.radii_path(entry.digest), buf.getvalue())
                except OSError as e:
                    _warn(f"could not write k-NN radii to {self.root} ({e}); not cached", once=str(self.root))
        return r

    # ---- listing and checking ------------------------------------------------------------------------------
    def entries(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.glob("*.pt") if not p.name.endswith(".radii.pt"))

    def describe(self, p: Path, check: bool = False) -> dict:
        """One entry: its key fields, size, whether it is current, and (check=True) whether its seal holds and
        its mean and covariance are those of its features (recomputed)."""
        out = {"file": str(p), "digest": p.stem, "bytes": p.stat().st_size, "status": "ok"}
        try:
            blob = torch.load(io.BytesIO(read_sealed(p)), map_location="cpu", weights_only=True)
            key = json.loads(blob["key"])
            out.update(dataset=key.get("dataset"), split=key.get("split"), n=int(blob["features"].shape[0]),
                       dim=int(blob["features"].shape[1]), extractor=(key.get("extractor") or {}).get("id", "?"),
                       device=key.get("device"), metric_version=key.get("metric_version"))
            if key_digest(key) != p.stem:
                out["status"] = "corrupt: its key does not hash to its file name"
            elif key.get("metric_version") != metric_version():
                out["status"] = "stale: built by other genbench code (never used; delete it or leave it)"
            elif check and blob.get("mu") is not None:
                from genbench.metrics.stats import gaussian_stats

                mu, sigma = gaussian_stats(blob["features"].double())
                if not (torch.equal(mu, blob["mu"]) and torch.equal(sigma, blob["sigma"])):
                    out["status"] = "corrupt: mean/covariance differ from those of its features"
            rp = self.radii_path(p.stem)
            if rp.exists():
                try:
                    rb = torch.load(io.BytesIO(read_sealed(rp)), map_location="cpu", weights_only=True)
                    out["radii"] = sorted(f"{t}:k{k}" for t, d in rb["radii"].items() for k in d)
                except Exception as e:
                    out["status"] = f"corrupt radii file: {_why(e, rp)}"
        except Exception as e:
            out["status"] = f"corrupt: {_why(e, p)}"
        return out


def knn_radii_tag(features: torch.Tensor, n_fake: int, device: str) -> str:
    """The tag `knn_radii(features, n_fake=n_fake, device=device)` gives, without computing anything."""
    from genbench.metrics.knn import _BLOCK_ENTRIES, _radii_tag, _use_fast

    x = features[:1].to(device)
    c = int(min(4096, max(64, _BLOCK_ENTRIES // max(features.shape[0], int(n_fake)))))
    return _radii_tag(_use_fast(None, x), c)


def _build(key: dict, extract: Callable[[], torch.Tensor]) -> RefStats:
    import warnings

    from genbench.metrics import MetricWarning, gaussian_stats

    t0 = time.perf_counter()
    feats = extract().double().cpu()
    secs = time.perf_counter() - t0
    with warnings.catch_warnings():  # N <= D: the fd metric says so itself (and computes FD from the features)
        warnings.simplefilter("ignore", MetricWarning)
        mu, sigma = gaussian_stats(feats) if feats.shape[0] > 1 else (None, None)
    return RefStats(key, feats, mu, sigma, source="computed", seconds=secs)


__all__ = ["StatsCache", "RefStats", "reference_key", "key_digest", "metric_version", "stats_dir", "STATS_FORMAT"]
