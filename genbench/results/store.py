"""The results store of a `genbench run` output directory DIR.

- `DIR/results.db`: SQLite (stdlib `sqlite3`), the source of truth. Tables:
    meta(key PRIMARY KEY, value)                 -- "schema_version" (int as text, currently 1)
    runs(run_id, started_at, finished_at, suite_name, suite_hash, suite_toml, genbench_version, git_commit,
         device, torch_version, python_version, platform, argv)
    jobs(job_id PRIMARY KEY, run_id, dataset, model, family, seed, budget, status, error, started_at,
         finished_at, train_seconds, checkpoint_path, config_json, cache_key)
         status: 'pending' | 'running' | 'done' | 'failed'
    metrics(job_id, name, variant, value, ci_low, ci_high, unit, higher_is_better, version, protocol_json,
            extra_json, PRIMARY KEY(job_id, name, variant))   -- variant "" or e.g. "ddim-25"
    artifacts(job_id, kind, path)                -- paths relative to DIR; kinds "samples_preview" (.npz with
                                                    array `x`), "real_preview", "history" (JSON), "features"
                                                    (genbench/results/paired.py: stored features for the paired test), ...
- `DIR/results.csv` and `DIR/results.json`: exports of the same long-format metrics (plus run and job metadata
  in the JSON), rewritten atomically by `export()` after every job. An infinite metric value or interval end is
  written as `inf` / `-inf` in the CSV and as the strings "inf" / "-inf" in the JSON (JSON has no infinity);
  a missing one (NULL, NaN) as an empty cell / `null`.

A job's metrics, artifacts and its 'done' status are committed in one transaction (`record_job`), so killing a
run at any moment loses no recorded result and never leaves half a job behind.

Read API (used by reports, compare and recommend): `ResultsStore(path)` where path is DIR or DIR/results.db;
`.metrics_frame()`, `.jobs_frame()`, `.runs_frame()`, `.artifacts(job_id=None)`, `.schema_version`.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

import pandas as pd

from genbench.errors import InvalidInputError
from genbench.fileio import atomic_write_text
# row serialisation and read-only file checks live in store_rows.py / store_files.py; re-exported here
from genbench.results.store_files import SQLITE_MAGIC, StoreError, check_store_file, read_any_store  # noqa: F401
from genbench.results.store_rows import _finite, _json, _json_default, _lossless_numbers, _metric_row  # noqa: F401

SCHEMA_VERSION = 1
DB_NAME, CSV_NAME, JSON_NAME = "results.db", "results.csv", "results.json"
JOB_STATUSES = ("pending", "running", "done", "failed")

# Column order of the long-format metrics frame / CSV.
METRIC_COLUMNS = [
    "dataset", "model", "family", "seed", "metric", "variant", "value", "ci_low", "ci_high", "unit",
    "higher_is_better", "protocol", "version", "job_id", "budget", "extra",
]
RUN_COLUMNS = [
    "run_id", "started_at", "finished_at", "suite_name", "suite_hash", "suite_toml", "genbench_version",
    "git_commit", "device", "torch_version", "python_version", "platform", "argv",
]
JOB_COLUMNS = [
    "job_id", "run_id", "dataset", "model", "family", "seed", "budget", "status", "error", "started_at",
    "finished_at", "train_seconds", "checkpoint_path", "config_json", "cache_key",
]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, started_at REAL, finished_at REAL, suite_name TEXT, suite_hash TEXT,
    suite_toml TEXT, genbench_version TEXT, git_commit TEXT, device TEXT, torch_version TEXT,
    python_version TEXT, platform TEXT, argv TEXT
);
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY, run_id TEXT, dataset TEXT, model TEXT, family TEXT, seed INTEGER, budget TEXT,
    status TEXT NOT NULL DEFAULT 'pending', error TEXT, started_at REAL, finished_at REAL, train_seconds REAL,
    checkpoint_path TEXT, config_json TEXT, cache_key TEXT
);
CREATE TABLE IF NOT EXISTS metrics (
    job_id TEXT NOT NULL, name TEXT NOT NULL, variant TEXT NOT NULL DEFAULT '', value REAL, ci_low REAL,
    ci_high REAL, unit TEXT, higher_is_better INTEGER, version TEXT, protocol_json TEXT, extra_json TEXT,
    PRIMARY KEY (job_id, name, variant)
);
CREATE TABLE IF NOT EXISTS artifacts (job_id TEXT NOT NULL, kind TEXT NOT NULL, path TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS artifacts_job ON artifacts (job_id);
"""


class ResultsStore:
    """SQLite results of one output directory. `ResultsStore(DIR)` or `ResultsStore(DIR/results.db)`.

    Opening a path that does not exist creates the database only with `create=True` (the runner does this);
    readers get a clear error instead of an empty store."""

    def __init__(self, path: str | os.PathLike, create: bool = False):
        p = Path(path)
        if p.suffix != ".db" and (p.is_dir() or create):
            p = p / DB_NAME
        if not p.exists() and not create:
            raise InvalidInputError(f"no results database at {p}: run `genbench run ... --out {p.parent}` first")
        if p.exists():  # also with create=True (a resumed run): an existing file must be a genbench database
            check_store_file(p)  # read-only first: never switch a foreign file to WAL (a write) before knowing it
        p.parent.mkdir(parents=True, exist_ok=True)
        self.path = p
        self.dir = p.parent
        self._conn = sqlite3.connect(str(p), timeout=60.0, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
        except sqlite3.DatabaseError as e:
            raise InvalidInputError(f"{p} is not a genbench results database ({e})") from None
        self._conn.execute("PRAGMA synchronous=FULL")
        if create:
            with self.transaction() as c:
                for stmt in filter(str.strip, _SCHEMA.split(";")):
                    c.execute(stmt)
                c.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        v = self.schema_version
        if v is None:
            raise InvalidInputError(f"{p} has no schema_version: it is not a genbench results database")
        if v > SCHEMA_VERSION:
            raise InvalidInputError(
                f"{p} has results schema version {v}, newer than this genbench understands ({SCHEMA_VERSION}): "
                "upgrade genbench to read it"
            )

    # ---- plumbing ------------------------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on any exception)."""
        c = self._conn
        c.execute("BEGIN IMMEDIATE")
        try:
            yield c
        except BaseException:
            c.execute("ROLLBACK")
            raise
        else:
            c.execute("COMMIT")

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "ResultsStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def schema_version(self) -> Optional[int]:
        try:
            row = self._conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        except sqlite3.OperationalError:
            return None
        return int(row[0]) if row else None

    # ---- writing (runner) ----------------------------------------------------------------------------------
    def begin_run(self, run_id: str, **fields: Any) -> str:
        unknown = set(fields) - set(RUN_COLUMNS)
        if unknown:
            raise ValueError(f"unknown run fields {sorted(unknown)}")
        row = {"run_id": run_id, "started_at": time.time(), **fields}
        if isinstance(row.get("argv"), (list, tuple)):
            row["argv"] = _json(list(row["argv"]))
        cols = ", ".join(row)
        with self.transaction() as c:
            c.execute(f"INSERT OR REPLACE INTO runs ({cols}) VALUES ({', '.join('?' * len(row))})", tuple(row.values()))
        return run_id

    def finish_run(self, run_id: str) -> None:
        with self.transaction() as c:
            c.execute("UPDATE runs SET finished_at=? WHERE run_id=?", (time.time(), run_id))

    def add_job(self, job_id: str, *, run_id: str, dataset: str, model: str, family: str, seed: int, budget: str,
                config: Optional[dict] = None, cache_key: str = "") -> None:
        """Register a job as 'pending' unless it already exists (a resumed run keeps its status)."""
        with self.transaction() as c:
            c.execute(
                "INSERT OR IGNORE INTO jobs (job_id, run_id, dataset, model, family, seed, budget, status, "
                "config_json, cache_key) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
                (job_id, run_id, dataset, model, family, int(seed), budget, _json(config or {}), cache_key),
            )

    _UPDATABLE = ("family", "budget", "dataset", "model", "cache_key")

    def update_job(self, job_id: str, *, config: Optional[dict] = None, **fields: Any) -> None:
        """Set a job's descriptive columns (family, budget, dataset, model, cache_key) and, when given, its config
        (JSON; values JSON cannot hold written as strings), in one transaction."""
        bad = sorted(set(fields) - set(self._UPDATABLE))
        if bad:
            raise ValueError(f"update_job: unknown job field(s) {bad}; updatable: {list(self._UPDATABLE)}")
        cols = [k for k in self._UPDATABLE if k in fields]
        values = [fields[k] for k in cols]
        if config is not None:
            cols.append("config_json")
            values.append(json.dumps(config, default=str))
        if not cols:
            return
        with self.transaction() as c:
            c.execute(f"UPDATE jobs SET {', '.join(f'{k}=?' for k in cols)} WHERE job_id=?", (*values, job_id))

    def job_status(self, job_id: str) -> Optional[str]:
        row = self._conn.execute("SELECT status FROM jobs WHERE job_id=?", (job_id,)).fetchone()
        return row[0] if row else None

    def job_row(self, job_id: str) -> Optional[dict]:
        row = self._conn.execute("SELECT * FROM jobs WHERE job_id=?", (job_id,)).fetchone()
        return dict(row) if row else None

    def start_job(self, job_id: str, run_id: str, config: Optional[dict] = None, cache_key: Optional[str] = None) -> None:
        """Mark a job 'running' and drop anything a killed earlier attempt left for it."""
        with self.transaction() as c:
            c.execute("DELETE FROM metrics WHERE job_id=?", (job_id,))
            c.execute("DELETE FROM artifacts WHERE job_id=?", (job_id,))
            c.execute(
                "UPDATE jobs SET status='running', run_id=?, error=NULL, started_at=?, finished_at=NULL, "
                "train_seconds=NULL, config_json=COALESCE(?, config_json), cache_key=COALESCE(?, cache_key) "
                "WHERE job_id=?",
                (run_id, time.time(), None if config is None else _json(config), cache_key, job_id),
            )

    def record_job(self, job_id: str, metrics: Iterable[Any], artifacts: Iterable[tuple[str, str]] = (),
                   train_seconds: Optional[float] = None, checkpoint_path: Optional[str] = None) -> None:
        """Commit a finished job: its metrics, its artifacts (kind, path relative to DIR) and status 'done',
        all in one transaction."""
        rows = [_metric_row(m) for m in metrics]
        seen = set()
        for r in rows:
            k = (r["name"], r["variant"])
            if k in seen:
                raise ValueError(f"job {job_id}: metric {k} recorded twice")
            seen.add(k)
        with self.transaction() as c:
            c.execute("DELETE FROM metrics WHERE job_id=?", (job_id,))
            c.execute("DELETE FROM artifacts WHERE job_id=?", (job_id,))
            c.executemany(
                "INSERT INTO metrics (job_id, name, variant, value, ci_low, ci_high, unit, higher_is_better, "
                "version, protocol_json, extra_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(job_id, r["name"], r["variant"], r["value"], r["ci_low"], r["ci_high"], r["unit"],
                  r["higher_is_better"], r["version"], r["protocol_json"], r["extra_json"]) for r in rows],
            )
            c.executemany("INSERT INTO artifacts (job_id, kind, path) VALUES (?, ?, ?)",
                          [(job_id, kind, str(path)) for kind, path in artifacts])
            c.execute(
                "UPDATE jobs SET status='done', error=NULL, finished_at=?, train_seconds=?, checkpoint_path=? "
                "WHERE job_id=?",
                (time.time(), train_seconds, checkpoint_path, job_id),
            )

    def fail_job(self, job_id: str, error: str, artifacts: Iterable[tuple[str, str]] = (),
                 train_seconds: Optional[float] = None) -> None:
        with self.transaction() as c:
            c.execute("DELETE FROM metrics WHERE job_id=?", (job_id,))
            c.execute("DELETE FROM artifacts WHERE job_id=?", (job_id,))
            c.executemany("INSERT INTO artifacts (job_id, kind, path) VALUES (?, ?, ?)",
                          [(job_id, kind, str(path)) for kind, path in artifacts])
            c.execute("UPDATE jobs SET status='failed', error=?, finished_at=?, train_seconds=? WHERE job_id=?",
                      (error, time.time(), train_seconds, job_id))

    def reset_job(self, job_id: str) -> None:
        with self.transaction() as c:
            c.execute("DELETE FROM metrics WHERE job_id=?", (job_id,))
            c.execute("DELETE FROM artifacts WHERE job_id=?", (job_id,))
            c.execute("UPDATE jobs SET status='pending', error=NULL, started_at=NULL, finished_at=NULL WHERE job_id=?",
                      (job_id,))

    # ---- reading -------------------------------------------------------------------------------------------
    def _frame(self, sql: str, params: tuple = ()) -> pd.DataFrame:
        cur = self._conn.execute(sql, params)
        cols = [d[0] for d in cur.description]
        return pd.DataFrame([tuple(r) for r in cur.fetchall()], columns=cols)

    def metrics_frame(self, include_failed: bool = False) -> pd.DataFrame:
        """Long format: dataset, model, family, seed, metric, variant, value, ci_low, ci_high, unit,
        higher_is_better (bool), protocol (JSON string), version, job_id, budget, extra (JSON string).
        Only jobs with status 'done' unless `include_failed`."""
        where = "" if include_failed else "WHERE j.status = 'done'"
        f = self._frame(
            "SELECT j.dataset, j.model, j.family, j.seed, m.name AS metric, m.variant, m.value, m.ci_low, m.ci_high, "
            "m.unit, m.higher_is_better, m.protocol_json AS protocol, m.version, m.job_id, j.budget, "
            "m.extra_json AS extra FROM metrics m JOIN jobs j ON j.job_id = m.job_id "
            f"{where} ORDER BY j.dataset, j.model, j.seed, m.name, m.variant"
        )
        if f.empty:
            return pd.DataFrame({c: pd.Series(dtype=_dtype(c)) for c in METRIC_COLUMNS})
        f["higher_is_better"] = f["higher_is_better"].astype(bool)
        f["seed"] = f["seed"].astype(int)
        for c in ("value", "ci_low", "ci_high"):
            f[c] = pd.to_numeric(f[c], errors="coerce").astype(float)
        f["variant"] = f["variant"].fillna("")
        return f[METRIC_COLUMNS]

    def jobs_frame(self) -> pd.DataFrame:
        f = self._frame(f"SELECT {', '.join(JOB_COLUMNS)} FROM jobs ORDER BY dataset, model, seed")
        return f if not f.empty else pd.DataFrame(columns=JOB_COLUMNS)

    def runs_frame(self) -> pd.DataFrame:
        f = self._frame(f"SELECT {', '.join(RUN_COLUMNS)} FROM runs ORDER BY started_at")
        return f if not f.empty else pd.DataFrame(columns=RUN_COLUMNS)

    def artifacts(self, job_id: Optional[str] = None) -> pd.DataFrame:
        """Frame with job_id, kind, path (relative to the store's directory), dataset, model, seed."""
        sql = ("SELECT a.job_id, a.kind, a.path, j.dataset, j.model, j.family, j.seed FROM artifacts a "
               "LEFT JOIN jobs j ON j.job_id = a.job_id")
        params: tuple = ()
        if job_id is not None:
            sql += " WHERE a.job_id = ?"
            params = (job_id,)
        f = self._frame(sql + " ORDER BY a.job_id, a.kind, a.path", params)
        return f if not f.empty else pd.DataFrame(columns=["job_id", "kind", "path", "dataset", "model", "family", "seed"])

    def done_job_ids(self) -> set[str]:
        return {r[0] for r in self._conn.execute("SELECT job_id FROM jobs WHERE status='done'")}

    # ---- exports -------------------------------------------------------------------------------------------
    def export(self, directory: Optional[str | os.PathLike] = None) -> tuple[Path, Path]:
        """Write results.csv (long format) and results.json (metrics + jobs + runs) atomically."""
        d = Path(directory) if directory is not None else self.dir
        frame = self.metrics_frame()
        csv_path = atomic_write_text(d / CSV_NAME, frame.to_csv(index=False))
        records = [_finite({**r, **_lossless_numbers(r)}) for r in frame.to_dict(orient="records")]
        for r in records:
            r["seed"] = int(r["seed"])
            r["higher_is_better"] = bool(r["higher_is_better"])
        jobs = [_finite(r) for r in self.jobs_frame().to_dict(orient="records")]
        blob = {
            "schema_version": self.schema_version,
            "runs": [_finite(r) for r in self.runs_frame().to_dict(orient="records")],
            "jobs": jobs,
            "artifacts": self.artifacts().to_dict(orient="records"),
            "metrics": records,
        }
        json_path = atomic_write_text(d / JSON_NAME, json.dumps(blob, indent=1, default=_json_default, allow_nan=False))
        return csv_path, json_path


def _dtype(col: str) -> str:
    if col in ("value", "ci_low", "ci_high"):
        return "float64"
    if col == "seed":
        return "int64"
    if col == "higher_is_better":
        return "bool"
    return "object"


__all__ = ["ResultsStore", "check_store_file", "SCHEMA_VERSION", "METRIC_COLUMNS", "DB_NAME", "CSV_NAME", "JSON_NAME"]
