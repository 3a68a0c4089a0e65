"""Reading a run directory for a report: the results store (any schema version), or its CSV/JSON exports.

`load_run(DIR)` returns a `RunData` with long-format metrics, jobs, artifacts and run metadata, plus `notes`:
what an older or partial store lacks (and so what the report cannot show). `aggregate(metrics)` reduces seeds:
one seed keeps its value and confidence interval; several seeds give the mean and the 95% half-width of the mean
(genbench.results.noise.mean_half_width: the interval compare and recommend use too).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pandas as pd

from genbench.errors import InvalidInputError
from genbench.results.judge import parse_protocol
from genbench.results.noise import SideStats, mean_half_width
from genbench.results.store import (CSV_NAME, DB_NAME, JSON_NAME, METRIC_COLUMNS, SCHEMA_VERSION, ResultsStore, StoreError,
                            read_any_store)

JOB_COLUMNS = ["job_id", "dataset", "model", "family", "seed", "status", "error", "train_seconds"]
ARTIFACT_COLUMNS = ["job_id", "kind", "path", "dataset", "model", "family", "seed"]
_DEFAULTS = {"family": "", "seed": 0, "variant": "", "ci_low": math.nan, "ci_high": math.nan, "unit": "",
             "protocol": "{}", "version": "", "job_id": "", "budget": "", "extra": "{}"}


@dataclass
class RunData:
    dir: Path
    metrics: pd.DataFrame  # long format, METRIC_COLUMNS, done jobs only
    jobs: pd.DataFrame  # JOB_COLUMNS (empty when the source has no job table)
    artifacts: pd.DataFrame  # ARTIFACT_COLUMNS, paths relative to dir
    runs: pd.DataFrame
    schema_version: Optional[int]
    source: str  # "results.db" | "results.json" | "results.csv"
    notes: list = field(default_factory=list)  # what is missing, in sentences

    @property
    def datasets(self) -> list[str]:
        names = set(self.metrics["dataset"]) | set(self.jobs["dataset"].dropna() if len(self.jobs) else [])
        return sorted(str(n) for n in names)


def load_run(run_dir: str | Path) -> RunData:
    d = Path(run_dir)
    if d.is_file():
        d = d.parent
    if not d.is_dir():
        raise InvalidInputError(f"{d} is not a directory: pass the output directory of `genbench run`")
    if (d / DB_NAME).exists():
        try:
            return _from_db(d)
        except StoreError as e:  # e.g. a read-only checkout SQLite cannot open: fall back to the exports
            if not ((d / JSON_NAME).exists() or (d / CSV_NAME).exists()):
                raise InvalidInputError(f"cannot read {d / DB_NAME} ({e}) and there is no {JSON_NAME} or {CSV_NAME}"
                                        " beside it") from None
            why = f"{DB_NAME} could not be opened ({e})"
            return _from_json(d, why) if (d / JSON_NAME).exists() else _from_csv(d, why)
    if (d / JSON_NAME).exists():
        return _from_json(d)
    if (d / CSV_NAME).exists():
        return _from_csv(d)
    raise InvalidInputError(
        f"{d} holds no {DB_NAME}, {JSON_NAME} or {CSV_NAME}: is it the output directory of `genbench run`? "
        "Run `genbench run --out DIR` first, then `genbench report DIR`."
    )


# --------------------------------------------------------------------------------------------- sources
def _from_db(d: Path) -> RunData:
    try:
        store = ResultsStore(d)
    except InvalidInputError as e:
        if "newer than" in str(e):
            raise
        return _from_old_db(d, None)
    try:
        metrics = store.metrics_frame()
        jobs = store.jobs_frame()
        artifacts = store.artifacts()
        runs = store.runs_frame()
        version = store.schema_version
    except StoreError as e:  # a table or column the current API expects is missing
        store.close()
        return _from_old_db(d, f"the current reader failed ({e})")
    store.close()
    notes = []
    if version is not None and version < SCHEMA_VERSION:
        notes.append(f"results store schema version {version} is older than the current {SCHEMA_VERSION}")
    return RunData(d, _norm_metrics(metrics), _norm_jobs(jobs), _norm_artifacts(artifacts), runs, version, DB_NAME, notes)


def _from_old_db(d: Path, why: Optional[str]) -> RunData:
    """A store written before the current schema: read whatever tables and columns exist."""
    version, tables = read_any_store(d / DB_NAME)
    which = f"schema version {version}" if version is not None else "without a schema_version"
    notes = [f"results store {which} (written by an older genbench; the current schema is {SCHEMA_VERSION}): "
             "read what it holds" + (f"; {why}" if why else "")]
    if "metrics" not in tables:
        raise InvalidInputError(f"{d / DB_NAME} has no metrics table: nothing to report")
    rename = {"name": "metric", "protocol_json": "protocol", "extra_json": "extra"}
    m = tables["metrics"].rename(columns=rename)
    have_jobs = "jobs" in tables
    if have_jobs and "job_id" in m.columns:
        jcols = [c for c in ("job_id", "dataset", "model", "family", "seed", "budget", "status")
                 if c in tables["jobs"].columns]
        j = tables["jobs"][jcols]
        m = m.drop(columns=[c for c in jcols if c != "job_id" and c in m.columns]).merge(j, on="job_id", how="left")
        if "status" in m.columns:
            m = m[m["status"].fillna("done") == "done"].drop(columns=["status"])
    missing = [c for c in ("variant", "ci_low", "ci_high", "unit", "protocol", "extra", "version") if c not in m.columns]
    if missing:
        notes.append("the metrics table lacks " + ", ".join(missing)
                     + (" (protocols are not shown)" if "protocol" in missing else ""))
    if not have_jobs:
        notes.append("no jobs table: failed jobs cannot be listed")
    jobs = pd.DataFrame(columns=JOB_COLUMNS)
    if have_jobs:
        jobs = tables["jobs"][[c for c in JOB_COLUMNS if c in tables["jobs"].columns]]
    artifacts = pd.DataFrame(columns=ARTIFACT_COLUMNS)
    if "artifacts" in tables:
        a = tables["artifacts"]
        if have_jobs and {"job_id"} <= set(a.columns):
            a = a.merge(jobs[[c for c in ("job_id", "dataset", "model", "family", "seed") if c in jobs.columns]],
                        on="job_id", how="left")
        artifacts = a
    else:
        notes.append("no artifacts table: sample grids and training curves cannot be drawn")
    runs = tables.get("runs", pd.DataFrame())
    return RunData(d, _norm_metrics(m), _norm_jobs(jobs), _norm_artifacts(artifacts), runs, version, DB_NAME, notes)


def _from_json(d: Path, why: str = f"{DB_NAME} is absent") -> RunData:
    try:
        blob = json.loads((d / JSON_NAME).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise InvalidInputError(f"{d / JSON_NAME} is not readable JSON ({e})") from None
    rows = blob.get("metrics", []) if isinstance(blob, dict) else blob
    blob = blob if isinstance(blob, dict) else {}
    version = blob.get("schema_version")
    notes = [f"read from {JSON_NAME} ({why})"]
    if version is None:
        notes.append(f"{JSON_NAME} carries no schema_version (an older run)")
    jobs = pd.DataFrame(blob.get("jobs", []))
    if jobs.empty:
        notes.append("no job list: failed jobs cannot be listed")
    artifacts = pd.DataFrame(blob.get("artifacts", []))
    if artifacts.empty:
        notes.append("no artifacts listed: sample grids and training curves cannot be drawn")
    return RunData(d, _norm_metrics(pd.DataFrame(rows)), _norm_jobs(jobs), _norm_artifacts(artifacts),
                   pd.DataFrame(blob.get("runs", [])), version, JSON_NAME, notes)


def _from_csv(d: Path, why: str = "") -> RunData:
    f = pd.read_csv(d / CSV_NAME, keep_default_na=False,
                    na_values={"value": [""], "ci_low": [""], "ci_high": [""]})
    notes = [f"read from {CSV_NAME} alone{f' ({why})' if why else ''}: no job list (failed jobs are not shown), no "
             "artifacts (no sample grids or training curves) and no run metadata"]
    return RunData(d, _norm_metrics(f), _norm_jobs(pd.DataFrame()), _norm_artifacts(pd.DataFrame()), pd.DataFrame(),
                   None, CSV_NAME, notes)


# --------------------------------------------------------------------------------------------- normalising
def _norm_metrics(f: pd.DataFrame) -> pd.DataFrame:
    need = {"dataset", "model", "metric", "value"}
    if len(f) and not need <= set(f.columns):
        raise InvalidInputError(f"results lack the columns {sorted(need - set(f.columns))}: not a genbench results file")
    f = f.copy()
    hib = list(f["higher_is_better"]) if "higher_is_better" in f.columns else [None] * len(f)
    for c in METRIC_COLUMNS:
        if c not in f.columns:
            f[c] = _DEFAULTS.get(c, math.nan if c == "value" else "")
    f["higher_is_better"] = [_as_bool(v, m) for v, m in zip(hib, f["metric"])]
    for c in ("value", "ci_low", "ci_high"):
        f[c] = pd.to_numeric(f[c], errors="coerce").astype(float)
    f["seed"] = pd.to_numeric(f["seed"], errors="coerce").fillna(0).astype(int)
    for c in ("variant", "unit", "version", "family", "job_id", "budget"):
        f[c] = f[c].fillna("").astype(str)
    for c in ("protocol", "extra"):
        f[c] = f[c].fillna("{}").astype(str).replace("", "{}")
    f["dataset"] = f["dataset"].astype(str)
    f["model"] = f["model"].astype(str)
    return f[METRIC_COLUMNS].reset_index(drop=True)


def _as_bool(v, metric: str) -> bool:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        from genbench.metrics.registry import output  # an old store without the column: the declared direction

        o = output(metric)
        return o.higher_is_better if o is not None else True
    if isinstance(v, str):
        return v.strip().lower() in ("1", "true", "yes")
    return bool(v)


def _norm_jobs(j: pd.DataFrame) -> pd.DataFrame:
    j = j.copy()
    for c in JOB_COLUMNS:
        if c not in j.columns:
            j[c] = None
    if len(j):
        j["seed"] = pd.to_numeric(j["seed"], errors="coerce").fillna(0).astype(int)
        j["status"] = j["status"].fillna("done")
    return j[JOB_COLUMNS].reset_index(drop=True)


def _norm_artifacts(a: pd.DataFrame) -> pd.DataFrame:
    a = a.copy()
    for c in ARTIFACT_COLUMNS:
        if c not in a.columns:
            a[c] = None
    return a[ARTIFACT_COLUMNS].reset_index(drop=True)


# --------------------------------------------------------------------------------------------- aggregation
@dataclass(frozen=True)
class Cell:
    """One (dataset, model, metric, variant): the shown value, its ± and the interval used for ties."""

    value: float
    err: Optional[float]  # half CI width (one seed) or the 95% half-width of the mean over seeds; None when unknown
    lo: float  # interval for "within noise" comparisons (= value when unknown)
    hi: float
    n_seeds: int
    higher_is_better: bool
    unit: str
    protocol: dict
    extra: dict


def aggregate(metrics: pd.DataFrame) -> dict[tuple, Cell]:
    """{(dataset, model, metric, variant): Cell} over the seeds of each model."""
    out: dict[tuple, Cell] = {}
    if metrics.empty:
        return out
    for key, g in metrics.groupby(["dataset", "model", "metric", "variant"], sort=True):
        vals = g["value"].to_numpy(dtype=float)
        hib = bool(g["higher_is_better"].iloc[0])
        # one reading of a stored JSON column for the report and the gate: text that is not an object is kept
        # under "raw", so the report shows what is there
        proto, extra = parse_protocol(g["protocol"].iloc[0]), parse_protocol(g["extra"].iloc[0])
        finite = vals[[math.isfinite(v) for v in vals]]
        if len(vals) == 1 or len(finite) < 2:
            v = float(finite[0]) if len(finite) else float(vals[0])
            lo, hi = g["ci_low"].iloc[0], g["ci_high"].iloc[0]
            if len(vals) == 1 and _fin(lo) and _fin(hi) and _fin(v):
                err = max(float(hi) - float(lo), 0.0) / 2
                cell = Cell(v, err, float(lo), float(hi), len(vals), hib, str(g["unit"].iloc[0]), proto, extra)
            else:
                cell = Cell(v, None, v, v, len(vals), hib, str(g["unit"].iloc[0]), proto, extra)
        else:  # several seeds: the mean and the 95% half-width of the mean, as compare and recommend judge it
            ok = [math.isfinite(v) for v in vals]
            hw_seed = ((g["ci_high"] - g["ci_low"]) / 2).astype(float).to_numpy()[ok]
            mean = float(finite.mean())
            hw = mean_half_width(SideStats([float(v) for v in finite], [float(h) for h in hw_seed], []))
            cell = Cell(mean, hw, mean - hw, mean + hw, len(vals), hib, str(g["unit"].iloc[0]), proto, extra)
        out[tuple(str(k) for k in key)] = cell
    return out


def _fin(v) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def modality_of(dataset: str, metric_names: set[str]) -> Optional[str]:
    """The dataset's modality from the registry, else guessed from the metrics it was scored with."""
    try:
        from genbench.data import get_dataset

        return get_dataset(dataset).info.modality
    except Exception:  # unknown (user) dataset or a registry that cannot build it here
        pass
    if metric_names & {"bits_per_char", "chars_per_s", "perplexity", "distinct_4", "fd_text"}:
        return "text"
    if metric_names & {"modes_covered", "hq_share", "mode_kl"}:
        return "points"
    if metric_names & {"bits_per_dim", "kid", "classes_covered", "fd"}:
        return "image"
    return None
