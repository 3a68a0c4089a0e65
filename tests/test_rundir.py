"""Run directories: one process at a time (run, eval --out, check --out, --fresh); a hostile suite name stays
inside reports/; --fresh refuses a foreign directory; stale .tmp files of a killed writer are removed; the thread
count is part of a job's spec hash."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import runner_dummies
from genbench.cli import main
from genbench.locks import LockHeldError
from genbench.rundir import LOCK_NAME, MARKER_NAME, default_out_dir, is_run_dir
from genbench.runner import Runner, make_jobs
from genbench.results.store import ResultsStore
from genbench.suite import load_suite
from helpers.dummy_cli import dummy_cli
from helpers.dummy_suite import write_dummy_suite


@pytest.fixture(autouse=True)
def dummies():
    runner_dummies.register()
    yield
    runner_dummies.unregister()


def _suite(tmp_path, name="t", overrides=None) -> Path:
    return write_dummy_suite(tmp_path, name=name, overrides=overrides)


def _wait_for_holder(lock: Path, proc, timeout=90.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if lock.exists() and lock.stat().st_size > 0:
            return
        assert proc.poll() is None, "the first run ended before the second started: " + proc.communicate()[1]
        time.sleep(0.1)
    pytest.fail("the first run never took the directory lock")


def test_second_concurrent_run_is_refused(tmp_path):
    """A second `genbench run` (and `--fresh`, and `eval --out`) on a directory a live run holds fails at once
    with exit 2, naming the holder; the live run's store is untouched and it finishes normally."""
    suite = _suite(tmp_path, overrides={"steps": 300, "sleep": 0.1})
    out = tmp_path / "out"
    first = dummy_cli(["run", str(suite), "--out", str(out), "--quiet", "--no-report"], tmp_path)
    try:
        _wait_for_holder(out / LOCK_NAME, first)
        for extra in ([], ["--fresh"]):
            t0 = time.time()
            second = dummy_cli(["run", str(suite), "--out", str(out), "--quiet", "--no-report", *extra], tmp_path)
            _, err = second.communicate(timeout=60)
            assert second.returncode == 2, err
            assert f"PID {first.pid}" in err and "genbench" in err and "Traceback" not in err, err
            assert time.time() - t0 < 30
        assert (out / "results.db").exists()  # --fresh did not delete the live run's store
        code = main(["eval", "--samples", str(tmp_path / "none.npy"), "--dataset", "ring8", "--out", str(out)])
        assert code == 2
        _, err = first.communicate(timeout=120)
        assert first.returncode == 0, err
    finally:
        if first.poll() is None:
            first.kill()
    assert ResultsStore(out).job_status("ring8/dummy-gauss/seed0") == "done"


def test_check_out_is_locked_while_another_process_holds_it(tmp_path, monkeypatch, capsys):
    import genbench.check as ev

    out = tmp_path / "new"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from genbench.locks import FileLock; "
                               "l = FileLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(60)",
                               str(out / LOCK_NAME)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setattr(ev, "baseline_suite", lambda path, suite=None, **kw: load_suite(_suite(tmp_path)))
        with pytest.raises(LockHeldError, match=f"PID {holder.pid}"):
            ev.run_check(tmp_path / "base", out=out)
        assert not (out / "results.db").exists()
    finally:
        holder.kill()
        holder.wait()


def test_hostile_suite_name_stays_inside_reports(tmp_path, monkeypatch):
    for name in ("../../x", "/etc/x", "..", "a/../../b", "~/x", ".hidden", "", "ok-name_1.2"):
        out = default_out_dir(name)
        assert out.parent == Path("reports") and out.name not in ("", ".", ".."), (name, out)
        assert "/" not in out.name and not out.name.startswith(".")
    assert default_out_dir("ok-name_1.2") == Path("reports/ok-name_1.2")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    assert main(["run", str(_suite(tmp_path, name="../../escaped")), "--quiet", "--no-report"]) == 0
    assert (tmp_path / "work" / "reports" / "escaped" / "results.db").exists()
    assert not (tmp_path / "escaped").exists() and not (tmp_path.parent / "escaped").exists()


def test_fresh_refuses_a_foreign_directory(tmp_path):
    foreign = tmp_path / "project"
    for sub in ("cache", "checkpoints", "artifacts"):
        (foreign / sub).mkdir(parents=True)
        (foreign / sub / "precious.txt").write_text("mine")
    assert not is_run_dir(foreign)
    code = main(["run", str(_suite(tmp_path)), "--out", str(foreign), "--fresh", "--quiet", "--no-report"])
    assert code == 2
    for sub in ("cache", "checkpoints", "artifacts"):
        assert (foreign / sub / "precious.txt").read_text() == "mine"
    assert not (foreign / "results.db").exists()
    # a run directory (marker written at creation) is wiped and rerun by --fresh
    run = tmp_path / "run"
    assert main(["run", str(_suite(tmp_path)), "--out", str(run), "--quiet", "--no-report"]) == 0
    assert (run / MARKER_NAME).exists() and is_run_dir(run)
    (run / "cache" / "junk").mkdir(parents=True)
    assert main(["run", str(_suite(tmp_path)), "--out", str(run), "--fresh", "--quiet", "--no-report"]) == 0
    assert not (run / "cache" / "junk").exists()
    # an empty directory is fine
    (tmp_path / "empty").mkdir()
    assert main(["run", str(_suite(tmp_path)), "--out", str(tmp_path / "empty"), "--fresh", "--quiet",
                 "--no-report"]) == 0


def test_stale_temp_files_are_removed_at_the_start_of_a_run(tmp_path):
    out = tmp_path / "out"
    (out / "artifacts").mkdir(parents=True)
    old = [out / ".results.json.abc123.tmp", out / "artifacts" / ".x.npz.def456.tmp"]
    for p in old:
        p.write_bytes(b"half")
        os.utime(p, (time.time() - 3600, time.time() - 3600))
    young = out / ".results.csv.zzz.tmp"
    young.write_bytes(b"live")
    Runner(load_suite(_suite(tmp_path)), out, quiet=True, log=lambda m: None).run()
    assert not any(p.exists() for p in old)
    assert young.exists()  # too recent to be a dead writer's


def test_thread_count_is_part_of_the_spec_hash(tmp_path):
    s = load_suite(_suite(tmp_path))
    (one,) = make_jobs(s, tmp_path, "cpu", threads=1)
    (two,) = make_jobs(s, tmp_path, "cpu", threads=2)
    (again,) = make_jobs(s, tmp_path, "cpu", threads=1)
    assert one.spec_hash != two.spec_hash and one.spec_hash == again.spec_hash
    out = tmp_path / "out"
    assert not Runner(s, out, quiet=True, log=lambda m: None, threads=1).run().failed
    again = Runner(s, out, quiet=True, log=lambda m: None, threads=1).run()
    assert again.skipped and not again.done
    redo = Runner(s, out, quiet=True, log=lambda m: None, threads=2).run()
    assert redo.done and not redo.skipped  # a resume with another thread count redoes the jobs
