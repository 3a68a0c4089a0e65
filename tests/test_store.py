"""The results store: schema per the contract, one-transaction job commits, exports, resume bookkeeping."""

import json
import math
import sqlite3

import pandas as pd
import pytest

from genbench.errors import InvalidInputError
from genbench.metrics.base import MetricResult
from genbench.results.store import METRIC_COLUMNS, SCHEMA_VERSION, ResultsStore


def _store(tmp_path):
    s = ResultsStore(tmp_path, create=True)
    s.begin_run("r1", suite_name="smoke", suite_hash="abc", device="cpu", argv=["run", "smoke"])
    s.add_job("ring8/gmm/s0", run_id="r1", dataset="ring8", model="gmm", family="baseline", seed=0, budget="smoke",
              config={"k": 8}, cache_key="ck")
    return s


def test_schema_matches_contract(tmp_path):
    s = _store(tmp_path)
    con = sqlite3.connect(tmp_path / "results.db")
    cols = {t: [r[1] for r in con.execute(f"PRAGMA table_info({t})")] for t in ("meta", "runs", "jobs", "metrics", "artifacts")}
    assert cols["meta"] == ["key", "value"]
    assert cols["runs"] == ["run_id", "started_at", "finished_at", "suite_name", "suite_hash", "suite_toml",
                            "genbench_version", "git_commit", "device", "torch_version", "python_version", "platform", "argv"]
    assert cols["jobs"] == ["job_id", "run_id", "dataset", "model", "family", "seed", "budget", "status", "error",
                            "started_at", "finished_at", "train_seconds", "checkpoint_path", "config_json", "cache_key"]
    assert cols["metrics"] == ["job_id", "name", "variant", "value", "ci_low", "ci_high", "unit", "higher_is_better",
                               "version", "protocol_json", "extra_json"]
    assert cols["artifacts"] == ["job_id", "kind", "path"]
    assert con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
    assert s.schema_version == SCHEMA_VERSION == 1
    # (job_id, name, variant) is the metrics primary key
    con.execute("INSERT INTO metrics (job_id, name, variant, value) VALUES ('j', 'fd', '', 1)")
    con.execute("INSERT INTO metrics (job_id, name, variant, value) VALUES ('j', 'fd', 'ddim-10', 1)")
    with pytest.raises(sqlite3.IntegrityError):
        con.execute("INSERT INTO metrics (job_id, name, variant, value) VALUES ('j', 'fd', '', 2)")


def test_record_job_round_trip_and_exports(tmp_path):
    s = _store(tmp_path)
    s.start_job("ring8/gmm/s0", "r1")
    assert s.job_status("ring8/gmm/s0") == "running"
    ms = [
        MetricResult("fd", 0.5, "", False, "1", {"features": "identity", "n_fake": 100}, ci_low=0.4, ci_high=0.6),
        MetricResult("samples_per_s", 1e4, "samples/s", True, "1", {"timing": True, "batch_size": 256}),
        {"name": "fd", "variant": "ddim-10", "value": 0.7, "unit": "", "higher_is_better": False, "version": "1",
         "protocol": {"sampler": "ddim", "steps": 10}},
        MetricResult("nll", float("inf"), "nats", False, "1"),
    ]
    s.record_job("ring8/gmm/s0", ms, artifacts=[("samples_preview", "artifacts/x.npz")], train_seconds=1.5,
                 checkpoint_path="checkpoints/abc")
    assert s.job_status("ring8/gmm/s0") == "done"
    f = s.metrics_frame()
    assert list(f.columns) == METRIC_COLUMNS
    assert len(f) == 4
    row = f[(f.metric == "fd") & (f.variant == "")].iloc[0]
    assert (row.dataset, row.model, row.family, row.seed) == ("ring8", "gmm", "baseline", 0)
    assert (row.value, row.ci_low, row.ci_high) == (0.5, 0.4, 0.6)
    assert not row.higher_is_better
    assert json.loads(row.protocol) == {"features": "identity", "n_fake": 100}
    assert f[f.variant == "ddim-10"].value.item() == 0.7
    assert math.isinf(f[f.metric == "nll"].value.item())
    assert s.artifacts("ring8/gmm/s0").path.tolist() == ["artifacts/x.npz"]
    j = s.jobs_frame().iloc[0]
    assert j.train_seconds == 1.5 and j.checkpoint_path == "checkpoints/abc" and j.cache_key == "ck"
    assert s.runs_frame().iloc[0].suite_name == "smoke"

    csv_path, json_path = s.export()
    c = pd.read_csv(csv_path, keep_default_na=False)
    for col in ("dataset", "model", "family", "seed", "metric", "value", "ci_low", "ci_high", "unit",
                "higher_is_better", "protocol"):
        assert col in c.columns
    assert len(c) == 4
    blob = json.loads(json_path.read_text())  # strict JSON: inf became null
    assert blob["schema_version"] == 1 and len(blob["metrics"]) == 4 and blob["runs"][0]["run_id"] == "r1"
    assert [m["value"] for m in blob["metrics"] if m["metric"] == "nll"] == ["inf"]
    # finite numbers stay numbers, a missing interval end is null: only infinities become strings
    got = {(m["metric"], m["variant"]): (m["value"], m["ci_low"], m["ci_high"]) for m in blob["metrics"]}
    assert got == {("fd", ""): (0.5, 0.4, 0.6), ("samples_per_s", ""): (1e4, None, None),
                   ("fd", "ddim-10"): (0.7, None, None), ("nll", ""): ("inf", None, None)}
    # a reopened store reads the same
    s.close()
    again = ResultsStore(tmp_path / "results.db")
    pd.testing.assert_frame_equal(again.metrics_frame(), f)


def test_failed_transaction_leaves_job_untouched(tmp_path):
    s = _store(tmp_path)
    s.start_job("ring8/gmm/s0", "r1")
    dup = [MetricResult("fd", 1, "", False, "1"), MetricResult("fd", 2, "", False, "1")]
    with pytest.raises(ValueError, match="twice"):
        s.record_job("ring8/gmm/s0", dup)
    bad = [MetricResult("fd", 1, "", False, "1"), {"name": "x", "value": 1.0}]  # lacks unit -> error before commit
    with pytest.raises(InvalidInputError):
        s.record_job("ring8/gmm/s0", bad)
    assert s.job_status("ring8/gmm/s0") == "running"
    assert s.metrics_frame(include_failed=True).empty


def test_failed_and_restarted_jobs(tmp_path):
    s = _store(tmp_path)
    s.start_job("ring8/gmm/s0", "r1")
    s.fail_job("ring8/gmm/s0", "ValueError: samples contain NaN")
    row = s.job_row("ring8/gmm/s0")
    assert row["status"] == "failed" and "NaN" in row["error"]
    assert s.metrics_frame().empty
    # add_job on an existing job keeps its status (resume); start_job clears leftovers of a killed attempt
    s.add_job("ring8/gmm/s0", run_id="r2", dataset="ring8", model="gmm", family="baseline", seed=0, budget="smoke")
    assert s.job_status("ring8/gmm/s0") == "failed"
    s.start_job("ring8/gmm/s0", "r2")
    s.record_job("ring8/gmm/s0", [MetricResult("fd", 1, "", False, "1")])
    assert s.done_job_ids() == {"ring8/gmm/s0"}


def test_readers_get_clear_errors(tmp_path):
    with pytest.raises(InvalidInputError, match="no results database"):
        ResultsStore(tmp_path / "nowhere")
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(InvalidInputError):
        ResultsStore(junk)
    s = ResultsStore(tmp_path / "new", create=True)
    s._conn.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    s.close()
    with pytest.raises(InvalidInputError, match="newer"):
        ResultsStore(tmp_path / "new")



def test_a_foreign_sqlite_file_is_refused_without_being_written(tmp_path):
    """Opening checks the file read-only first: a SQLite database that is not genbench's is refused by name, and
    is not switched to WAL (a write) on the way -- its journal mode and bytes stay as they were."""
    foreign = tmp_path / "other.db"
    con = sqlite3.connect(foreign)
    con.execute("CREATE TABLE t (x)")
    con.execute("INSERT INTO t VALUES (1)")
    con.commit()
    con.close()
    before = foreign.read_bytes()
    for create in (False, True):  # a run resuming into a directory whose results.db is someone else's
        with pytest.raises(InvalidInputError, match="not a genbench results database") as e:
            ResultsStore(foreign, create=create)
        assert str(foreign) in str(e.value)
    assert foreign.read_bytes() == before
    assert sqlite3.connect(foreign).execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert not (tmp_path / "other.db-wal").exists()
    # create=True on an existing genbench store keeps it (the read-only check is for opening what exists)
    s = ResultsStore(tmp_path / "mine", create=True)
    s.close()
    ResultsStore(tmp_path / "mine", create=True).close()
    assert ResultsStore(tmp_path / "mine").schema_version == SCHEMA_VERSION


def _meta_only_db(p, value) -> None:
    """A SQLite file with only a meta table, whose schema_version row holds `value` (None: no row)."""
    con = sqlite3.connect(p)
    con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    if value is not None:
        con.execute("INSERT INTO meta VALUES ('schema_version', ?)", (value,))
    con.commit()
    con.close()


@pytest.mark.parametrize("value", [None, "one", ""], ids=["no-row", "not-a-number", "empty"])
def test_a_meta_table_without_a_schema_version_is_refused(tmp_path, value):
    p = tmp_path / "results.db"
    _meta_only_db(p, value)
    with pytest.raises(InvalidInputError, match="has no schema_version"):
        ResultsStore(p)


JOB = "ring8/gmm/s0"


def _metrics_of(s, job=JOB):
    return {(r["name"], r["variant"]): r["value"]
            for r in s._conn.execute("SELECT name, variant, value FROM metrics WHERE job_id=?", (job,))}


def _artifacts_of(s, job=JOB):
    return [tuple(r) for r in s._conn.execute("SELECT kind, path FROM artifacts WHERE job_id=?", (job,))]


# Failures injected inside record_job's transaction by SQLite triggers: after the DELETEs and some INSERTs
# (a metric row named "boom"), or at the very end (the UPDATE to 'done').
FAIL_ON_METRIC = ("CREATE TRIGGER fail_metric BEFORE INSERT ON metrics WHEN NEW.name = 'boom' "
                  "BEGIN SELECT RAISE(ABORT, 'injected failure'); END")
FAIL_ON_DONE = ("CREATE TRIGGER fail_done BEFORE UPDATE OF status ON jobs WHEN NEW.status = 'done' "
                "BEGIN SELECT RAISE(ABORT, 'injected failure'); END")


@pytest.mark.parametrize("trigger", [FAIL_ON_METRIC, FAIL_ON_DONE], ids=["mid-inserts", "at-done"])
def test_failure_inside_record_job_rolls_back_everything(tmp_path, trigger):
    s = _store(tmp_path)
    s.start_job(JOB, "r1")
    s._conn.execute(trigger)
    ms = [MetricResult("fd", 1.0, "", False, "1"), MetricResult("kid", 0.1, "", False, "1"),
          MetricResult("boom", 3.0, "", False, "1")]
    with pytest.raises(sqlite3.DatabaseError, match="injected failure"):
        s.record_job(JOB, ms, artifacts=[("samples_preview", "a.npz")], train_seconds=2.0)
    # a running job stays running, with nothing recorded
    assert s.job_status(JOB) == "running"
    assert _metrics_of(s) == {} and _artifacts_of(s) == []
    assert s.job_row(JOB)["train_seconds"] is None and s.job_row(JOB)["finished_at"] is None
    assert s.done_job_ids() == set() and s.metrics_frame(include_failed=True).empty
    # a job recorded earlier keeps its metrics, artifacts and status when re-recording it fails mid-way
    other = "ring8/gmm/s1"
    s.add_job(other, run_id="r1", dataset="ring8", model="gmm", family="baseline", seed=1, budget="smoke")
    s.start_job(other, "r1")
    s._conn.execute("DROP TRIGGER " + trigger.split()[2])
    s.record_job(other, [MetricResult("fd", 0.5, "", False, "1"), MetricResult("recall", 0.9, "", True, "1")],
                 artifacts=[("history", "h.json")], train_seconds=1.0)
    before = (s.job_row(other), _metrics_of(s, other), _artifacts_of(s, other))
    s._conn.execute(trigger)
    with pytest.raises(sqlite3.DatabaseError, match="injected failure"):
        s.record_job(other, ms, artifacts=[("samples_preview", "b.npz")], train_seconds=9.0)
    assert (s.job_row(other), _metrics_of(s, other), _artifacts_of(s, other)) == before
    assert before[1] == {("fd", ""): 0.5, ("recall", ""): 0.9}
    # the store is usable afterwards: no transaction left open
    s._conn.execute("DROP TRIGGER " + trigger.split()[2])
    s.record_job(JOB, ms[:2])
    assert s.job_status(JOB) == "done" and set(_metrics_of(s)) == {("fd", ""), ("kid", "")}


def test_a_reader_never_sees_a_done_job_without_its_metrics(tmp_path):
    """Another connection looks at the job at every metric insert and at the status update of record_job
    (SQLite triggers call back into Python): until the commit it sees the job as it was before (running, no
    metrics); after it, done with every metric. Never 'done' with fewer metrics."""
    s = _store(tmp_path)
    s.start_job(JOB, "r1")
    seen = []

    def peek(job_id):
        with sqlite3.connect(tmp_path / "results.db") as reader:
            status = reader.execute("SELECT status FROM jobs WHERE job_id=?", (job_id,)).fetchone()[0]
            n = reader.execute("SELECT COUNT(*) FROM metrics WHERE job_id=?", (job_id,)).fetchone()[0]
        reader.close()
        seen.append((status, n))
        return 0

    s._conn.create_function("peek", 1, peek)
    s._conn.execute("CREATE TRIGGER p1 AFTER INSERT ON metrics BEGIN SELECT peek(NEW.job_id); END")
    s._conn.execute("CREATE TRIGGER p2 AFTER UPDATE OF status ON jobs BEGIN SELECT peek(NEW.job_id); END")
    ms = [MetricResult(n, 1.0, "", False, "1") for n in ("fd", "kid", "precision")]
    s.record_job(JOB, ms)
    assert len(seen) == 4  # three inserts and the status update
    assert set(seen) == {("running", 0)}
    peek(JOB)
    assert seen[-1] == ("done", 3)


def test_opening_paths_and_connection_settings(tmp_path):
    """DIR or DIR/results.db, a custom *.db file, nested new directories; WAL + synchronous=FULL (durability);
    close() and the context manager close the connection."""
    s = ResultsStore(tmp_path / "a" / "b", create=True)  # nested, created
    assert s.path == tmp_path / "a" / "b" / "results.db" and s.path.is_file()
    assert s._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert s._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    s.close()
    with pytest.raises(sqlite3.ProgrammingError):
        s._conn.execute("SELECT 1")
    with ResultsStore(tmp_path / "a" / "b") as r:  # a directory, read without create
        assert r.path == tmp_path / "a" / "b" / "results.db" and r.schema_version == SCHEMA_VERSION
    with pytest.raises(sqlite3.ProgrammingError):
        r._conn.execute("SELECT 1")
    c = ResultsStore(tmp_path / "custom.db", create=True)
    assert c.path == tmp_path / "custom.db" and (tmp_path / "custom.db").is_file()
    c.close()


def test_metric_fields_round_trip(tmp_path):
    """unit, version, extra and protocol are stored as given (protocol/extra as sorted-key strict JSON)."""
    s = _store(tmp_path)
    s.start_job(JOB, "r1")
    s.record_job(JOB, [MetricResult("nll", 1.5, "nats", False, "7", {"z": 1, "a": float("nan")},
                                    extra={"b": 2, "a": [1.0, float("inf")]})])
    row = s._conn.execute("SELECT unit, version, protocol_json, extra_json FROM metrics").fetchone()
    assert tuple(row) == ("nats", "7", '{"a": null, "z": 1}', '{"a": [1.0, null], "b": 2}')
    f = s.metrics_frame()
    assert (f.unit.item(), f.version.item(), f.extra.item()) == ("nats", "7", '{"a": [1.0, null], "b": 2}')
    from genbench.results.store import _json

    with pytest.raises(ValueError):  # never writes non-standard JSON (NaN) into the store
        _json({"x": float("nan")})


def test_run_and_job_bookkeeping(tmp_path):
    """finish_run stamps the run; add_job stores its config; start_job clears a killed attempt's leftovers and
    replaces config/cache_key only when given; fail_job keeps its artifacts and drops metrics; reset_job returns
    a job to pending with nothing recorded; artifacts() filters by job."""
    s = _store(tmp_path)
    assert s.runs_frame().iloc[0].finished_at is None or math.isnan(s.runs_frame().iloc[0].finished_at)
    s.finish_run("r1")
    assert s.runs_frame().iloc[0].finished_at > 0
    assert json.loads(s.job_row(JOB)["config_json"]) == {"k": 8}
    s.start_job(JOB, "r1")
    s.record_job(JOB, [MetricResult("fd", 1.0, "", False, "1")], artifacts=[("history", "h1.json")])
    s.start_job(JOB, "r2")  # a new attempt: config and cache key kept when not given
    row = s.job_row(JOB)
    assert row["status"] == "running" and row["run_id"] == "r2"
    assert json.loads(row["config_json"]) == {"k": 8} and row["cache_key"] == "ck"
    assert _metrics_of(s) == {} and _artifacts_of(s) == []
    s.start_job(JOB, "r2", config={"k": 9}, cache_key="ck2")
    row = s.job_row(JOB)
    assert json.loads(row["config_json"]) == {"k": 9} and row["cache_key"] == "ck2"
    # re-recording replaces, never duplicates, metrics and artifacts
    s.record_job(JOB, [MetricResult("fd", 1.0, "", False, "1")], artifacts=[("history", "h1.json")])
    s.record_job(JOB, [MetricResult("fd", 2.0, "", False, "1")], artifacts=[("history", "h2.json")])
    assert _metrics_of(s) == {("fd", ""): 2.0} and _artifacts_of(s) == [("history", "h2.json")]
    s.fail_job(JOB, "boom", artifacts=[("log", "err.txt")], train_seconds=3.0)
    row = s.job_row(JOB)
    assert (row["status"], row["error"], row["train_seconds"]) == ("failed", "boom", 3.0)
    assert _metrics_of(s) == {} and _artifacts_of(s) == [("log", "err.txt")]
    other = "ring8/gmm/s1"
    s.add_job(other, run_id="r2", dataset="ring8", model="gmm", family="baseline", seed=1, budget="smoke")
    assert json.loads(s.job_row(other)["config_json"]) == {}
    s.start_job(other, "r2")
    s.record_job(other, [MetricResult("fd", 3.0, "", False, "1")], artifacts=[("history", "o.json")])
    assert s.artifacts(JOB).path.tolist() == ["err.txt"]
    assert sorted(s.artifacts().path.tolist()) == ["err.txt", "o.json"]
    s.reset_job(other)
    row = s.job_row(other)
    assert (row["status"], row["error"], row["started_at"], row["finished_at"]) == ("pending", None, None, None)
    assert _metrics_of(s, other) == {} and _artifacts_of(s, other) == []


def test_metrics_frame_only_done_jobs_and_typed_when_empty(tmp_path):
    s = _store(tmp_path)
    empty = s.metrics_frame()
    assert list(empty.columns) == METRIC_COLUMNS and empty.empty
    dtypes = {c: str(t) for c, t in empty.dtypes.items()}
    assert (dtypes["value"], dtypes["ci_low"], dtypes["ci_high"]) == ("float64",) * 3
    assert (dtypes["seed"], dtypes["higher_is_better"], dtypes["metric"], dtypes["dataset"]) == ("int64", "bool", "object", "object")
    # a metric row of a job that is not done (written by something other than record_job) is not a result
    s._conn.execute("INSERT INTO metrics (job_id, name, variant, value, higher_is_better) VALUES (?, 'fd', '', 1.0, 0)", (JOB,))
    assert s.metrics_frame().empty
    assert s.metrics_frame(include_failed=True).value.tolist() == [1.0]


def test_csv_export_has_exactly_the_metric_columns(tmp_path):
    s = _store(tmp_path)
    s.start_job(JOB, "r1")
    s.record_job(JOB, [MetricResult("fd", 1.0, "", False, "1")])
    csv_path, _ = s.export()
    assert csv_path.read_text().splitlines()[0].split(",") == METRIC_COLUMNS


def test_report_reads_a_store_of_an_older_schema(tmp_path):
    """A results.db written before the current schema (no meta table, fewer columns): the report reads what it
    holds through `read_any_store` and says what is missing; a file that is not SQLite is refused."""

    from genbench.report.data import load_run
    from genbench.results.store import DB_NAME, read_any_store

    con = sqlite3.connect(tmp_path / DB_NAME)
    con.execute("CREATE TABLE jobs (job_id TEXT, dataset TEXT, model TEXT, seed INTEGER, status TEXT)")
    con.execute("CREATE TABLE metrics (job_id TEXT, name TEXT, value REAL, higher_is_better INTEGER)")
    con.executemany("INSERT INTO jobs VALUES (?, ?, ?, ?, ?)",
                    [("ring8/gan/seed0", "ring8", "gan", 0, "done"), ("ring8/vae/seed0", "ring8", "vae", 0, "failed")])
    con.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?)",
                    [("ring8/gan/seed0", "fd", 1.5, 0), ("ring8/vae/seed0", "fd", 9.0, 0)])
    con.commit()
    con.close()
    version, tables = read_any_store(tmp_path / DB_NAME)
    assert version is None and set(tables) == {"jobs", "metrics"} and len(tables["metrics"]) == 2
    data = load_run(tmp_path)
    assert list(zip(data.metrics.model, data.metrics.metric, data.metrics.value)) == [("gan", "fd", 1.5)]
    assert any("without a schema_version" in n for n in data.notes)
    assert any("lacks variant" in n for n in data.notes)
    (tmp_path / "x.db").write_bytes(b"not a database at all" * 100)
    with pytest.raises(InvalidInputError, match="not a SQLite results database"):
        read_any_store(tmp_path / "x.db")
    # the schema version, where a meta table records one as a number
    for value, want in (("0", 0), ("7", 7), ("seven", None), (None, None)):
        p = tmp_path / f"meta-{value}.db"
        _meta_only_db(p, value)
        version, tables = read_any_store(p)
        assert version == want and set(tables) == {"meta"}, value
    # read-only: a store is read whole and left as it was
    before = (tmp_path / DB_NAME).read_bytes()
    read_any_store(tmp_path / DB_NAME)
    assert (tmp_path / DB_NAME).read_bytes() == before


def test_update_job_sets_named_columns_only(tmp_path):
    with ResultsStore(tmp_path, create=True) as s:
        s.add_job("d/m/seed0", run_id="r", dataset="d", model="m", family="", seed=0, budget="quick")
        s.update_job("d/m/seed0", family="gan", cache_key="abc", config={"spec_hash": "h", "when": {1, 2}})
        row = s.job_row("d/m/seed0")
        assert (row["family"], row["cache_key"], row["dataset"]) == ("gan", "abc", "d")
        assert json.loads(row["config_json"]) == {"spec_hash": "h", "when": "{1, 2}"}
        with pytest.raises(ValueError, match="status"):
            s.update_job("d/m/seed0", status="done")
