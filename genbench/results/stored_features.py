"""The features a job stores so that two result sets can be compared with a paired bootstrap (genbench.results.paired).

What a job stores for it (`save_features`, called by the scoring pipeline; docs/gate.md *Paired bootstrap*):

    DIR/artifacts/<job>/features[-<variant>].json   metadata (artifact kind "features" / "features:<variant>"):
        the reference identity, shapes, dtypes, the sha256 of each array, or why the arrays were not stored
    DIR/artifacts/<job>/features[-<variant>].npy    the fake features (float32 when lossless, else float64)
    DIR/artifacts/<dataset>/reference-<id>.npy      the real (reference) features, once per reference identity

Each file is written to a temporary name and renamed, so a killed job leaves no half file; a rerun of the job
rewrites them. The size budget is `GENBENCH_FEATURES_MB` (default 16) MiB per array: a larger array is not
stored (the metadata says so) and the gate falls back to the unpaired noise model for that job, saying why.
`GENBENCH_FEATURES_MB=0` stores none.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from genbench.errors import InvalidInputError

FEATURES_KIND = "features"
FORMAT = 1
BUDGET_ENV = "GENBENCH_FEATURES_MB"
DEFAULT_BUDGET_MB = 16.0


def budget_bytes() -> int:
    raw = os.environ.get(BUDGET_ENV, "")
    try:
        mb = float(raw) if raw.strip() else DEFAULT_BUDGET_MB
    except ValueError:
        raise InvalidInputError(f"{BUDGET_ENV}={raw!r}: expected a number of MiB (0 stores no features)") from None
    if not math.isfinite(mb) or mb < 0:
        raise InvalidInputError(f"{BUDGET_ENV}={raw!r}: expected a number of MiB >= 0")
    return int(mb * 1024 * 1024)


def reference_identity(ref_key: dict) -> str:
    """What makes two runs' real features "the same reference features": the dataset, split and the sha256 of
    its content, the subset (its indices' sha256), and the instrument's whole protocol (id and weights sha256).
    The device and genbench's code version are left out: a rerun on another machine or after a code change still
    draws the same real items through the same pinned network (each run's own stored real features are used)."""
    core = {k: ref_key.get(k) for k in ("dataset", "split", "split_sha256", "subset", "extractor")}
    return hashlib.sha256(json.dumps(core, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _as_array(t: torch.Tensor) -> np.ndarray:
    x = t.detach().cpu().double().numpy()
    x32 = x.astype(np.float32)
    return x32 if np.array_equal(x32.astype(np.float64), x) else x


def _npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(a), allow_pickle=False)
    return buf.getvalue()


def save_features(out_dir: Path, art_rel: str, dataset: str, variant: str, real_f: torch.Tensor,
                  fake_f: torch.Tensor, ref_key: dict) -> list[tuple[str, str]]:
    """Store what a paired bootstrap needs for one scored sampler setting (module docstring); returns the
    artifact (kind, path relative to out_dir) of its metadata file."""
    from genbench.fileio import atomic_write_bytes, atomic_write_text
    from genbench.pipeline.refstats import key_digest

    out_dir = Path(out_dir)
    suffix = f"-{variant}" if variant else ""
    meta_rel = f"{art_rel}/features{suffix}.json"
    ident = reference_identity(ref_key)
    meta = {"format": FORMAT, "reference_identity": ident, "reference_key_digest": key_digest(ref_key),
            "extractor": (ref_key.get("extractor") or {}).get("id"), "n_real": int(real_f.shape[0]),
            "n_fake": int(fake_f.shape[0]), "dim": int(fake_f.shape[1]) if fake_f.dim() == 2 else None,
            "stored": False}
    budget = budget_bytes()
    if fake_f.dim() != 2 or real_f.dim() != 2:
        meta["why"] = "the features are not (n, d) matrices"
    else:
        fake, real = _as_array(fake_f), _as_array(real_f)
        big = max(fake.nbytes, real.nbytes)
        if big > budget:
            meta["why"] = (f"an array of {big / 2**20:.1f} MiB is over the budget of {budget / 2**20:g} MiB per array "
                           f"({BUDGET_ENV})")
        else:
            fake_b, real_b = _npy_bytes(fake), _npy_bytes(real)
            fake_rel = f"{art_rel}/features{suffix}.npy"
            real_rel = f"artifacts/{dataset}/reference-{ident[:16]}.npy"
            atomic_write_bytes(out_dir / fake_rel, fake_b)
            rp = out_dir / real_rel
            if not (rp.exists() and rp.stat().st_size == len(real_b) and rp.read_bytes() == real_b):
                atomic_write_bytes(rp, real_b)
            meta.update(stored=True, fake=fake_rel, real=real_rel, fake_dtype=str(fake.dtype), real_dtype=str(real.dtype),
                        fake_sha256=hashlib.sha256(fake_b).hexdigest(), real_sha256=hashlib.sha256(real_b).hexdigest())
    atomic_write_text(out_dir / meta_rel, json.dumps(meta, indent=1))
    return [(FEATURES_KIND if not variant else f"{FEATURES_KIND}:{variant}", meta_rel)]


# ---------------------------------------------------------------------------------------------- finding them
@dataclass
class StoredFeatures:
    """One job's (one sampler setting's) stored features, found through its results store."""

    root: Path
    meta: dict

    def why_unusable(self) -> str:
        if self.meta.get("format") != FORMAT:
            return f"stored in format {self.meta.get('format')!r}, this genbench reads {FORMAT}"
        if not self.meta.get("stored"):
            return f"features not stored: {self.meta.get('why', 'no reason recorded')}"
        return ""

    def load(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(real, fake) float64; InvalidInputError when a file is missing or its sha256 does not match."""
        out = []
        for which in ("real", "fake"):
            p = self.root / str(self.meta[which])
            try:
                data = p.read_bytes()
            except OSError as e:
                raise InvalidInputError(f"{which} features {p}: {e.strerror or e}") from None
            if hashlib.sha256(data).hexdigest() != self.meta.get(f"{which}_sha256"):
                raise InvalidInputError(f"{which} features {p}: sha256 does not match the one recorded (changed or "
                                        "damaged since the run)")
            out.append(torch.from_numpy(np.load(io.BytesIO(data), allow_pickle=False).astype(np.float64)))
        return out[0], out[1]


@dataclass
class FeatureIndex:
    """The stored features of a result set: (dataset, model, variant, seed) -> StoredFeatures; `reason` says
    why there are none (e.g. a store made before genbench stored features)."""

    entries: dict = field(default_factory=dict)
    reason: str = ""


def feature_index(path: str | Path, side: str = "result set") -> FeatureIndex:
    """Find the stored features of a run directory or results.db (never raises for a store without them)."""
    import sqlite3

    from genbench.results.store import ResultsStore

    p = Path(path)
    db = p / "results.db" if p.is_dir() else p
    if db.suffix != ".db" or not db.exists():
        return FeatureIndex(reason=f"the {side} is a {p.suffix or 'directory'} without a results.db: only a run "
                                   "directory (or its results.db) keeps features")
    try:
        with ResultsStore(db) as store:
            arts = store.artifacts()
    except (sqlite3.Error, InvalidInputError) as e:
        return FeatureIndex(reason=f"the {side}'s artifacts cannot be read ({e})")
    root = db.parent
    idx = FeatureIndex()
    for r in arts.itertuples(index=False):
        kind = str(r.kind)
        if kind != FEATURES_KIND and not kind.startswith(FEATURES_KIND + ":"):
            continue
        variant = kind.split(":", 1)[1] if ":" in kind else ""
        try:
            meta = json.loads((root / str(r.path)).read_text(encoding="utf-8"))
            if not isinstance(meta, dict):
                raise ValueError("not an object")
        except (OSError, ValueError) as e:
            meta = {"format": FORMAT, "stored": False, "why": f"its metadata {r.path} cannot be read ({e})"}
        seed = int(r.seed) if r.seed is not None and not (isinstance(r.seed, float) and math.isnan(r.seed)) else 0
        idx.entries[(str(r.dataset), str(r.model), variant, seed)] = StoredFeatures(root, meta)
    if not idx.entries:
        idx.reason = (f"the {side} stores no features (made before genbench stored them, or with "
                      f"{BUDGET_ENV}=0)")
    return idx


__all__ = ["BUDGET_ENV", "FEATURES_KIND", "FeatureIndex", "StoredFeatures", "budget_bytes", "feature_index",
           "reference_identity", "save_features"]
