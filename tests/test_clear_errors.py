"""Failures that used to print a traceback now give a one-line message and exit 2: a full disk (exports, atomic
writes, SQLite, a job's own writes -- which stop the run instead of failing every job), and `genbench eval` of
a truncated / bad-CRC .npz, a .npy whose header claims a huge shape, or an array with no items."""

import errno
import io
import sqlite3

import numpy as np
import pytest

import runner_dummies
from genbench.cli import main
from genbench.results.store import ResultsStore
from helpers.dummy_suite import write_dummy_suite

@pytest.fixture(autouse=True)
def dummies():
    runner_dummies.register()
    yield
    runner_dummies.unregister()


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device", str(args[0]) if args else None)


def _one_line_disk_full(capsys) -> str:
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.startswith("genbench: error:")]
    assert len(lines) == 1 and "disk is full" in lines[0], err
    assert "Traceback" not in err, err
    return lines[0]


def _suite(tmp_path):
    return write_dummy_suite(tmp_path, seeds=(0, 1))


def test_disk_full_during_export_gives_a_one_line_message_and_exit_2(tmp_path, monkeypatch, capsys):
    import genbench.results.store

    monkeypatch.setattr(genbench.results.store, "atomic_write_text", _enospc)
    assert main(["run", str(_suite(tmp_path)), "--out", str(tmp_path / "out"), "--quiet", "--no-report"]) == 2
    _one_line_disk_full(capsys)


def test_disk_full_in_the_store_gives_a_one_line_message_and_exit_2(tmp_path, monkeypatch, capsys):
    def full(self, *a, **k):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(ResultsStore, "record_job", full)
    assert main(["run", str(_suite(tmp_path)), "--out", str(tmp_path / "out"), "--quiet", "--no-report"]) == 2
    _one_line_disk_full(capsys)


def test_disk_full_in_a_jobs_own_writes_stops_the_run_instead_of_failing_every_job(tmp_path, monkeypatch, capsys):
    import genbench.pipeline.scorers

    monkeypatch.setattr(genbench.pipeline.scorers, "atomic_write_bytes", _enospc)  # the samples preview of the first job
    out = tmp_path / "out"
    assert main(["run", str(_suite(tmp_path)), "--out", str(out), "--quiet", "--no-report"]) == 2
    line = _one_line_disk_full(capsys)
    assert "run the same command again" in line
    jobs = ResultsStore(out).jobs_frame()
    assert "failed" not in set(jobs["status"]), jobs[["job_id", "status"]]  # the run stopped; resume redoes it
    monkeypatch.undo()
    runner_dummies.register()
    assert main(["run", str(_suite(tmp_path)), "--out", str(out), "--quiet", "--no-report"]) == 0


def test_disk_full_writing_compare_output_gives_exit_2(tmp_path, monkeypatch, capsys):
    import genbench.fileio

    d = tmp_path / "r"
    d.mkdir()
    (d / "results.csv").write_text("dataset,model,metric,value,higher_is_better\nring8,gan,fd,1.0,False\n")
    monkeypatch.setattr(genbench.fileio, "atomic_write_bytes", _enospc)
    assert main(["compare", str(d), str(d), "--out", str(tmp_path / "cmp.md")]) == 2
    _one_line_disk_full(capsys)


# ------------------------------------------------------------------------------------- eval of damaged arrays
def _points(n=50):
    return np.random.default_rng(0).normal(size=(n, 2)).astype(np.float32)


def _damaged_files(tmp_path) -> dict:
    buf = io.BytesIO()
    np.savez(buf, x=_points())
    good = buf.getvalue()
    crc = bytearray(good)
    crc[good.index(b"\x93NUMPY") + 200] ^= 0xFF
    huge = io.BytesIO()
    np.lib.format.write_array_header_1_0(huge, {"descr": "<f4", "fortran_order": False, "shape": (100_000_000_000, 2)})
    files = {
        "truncated.npz": good[: len(good) // 2],
        "bad_crc.npz": bytes(crc),
        "huge_header.npy": huge.getvalue() + _points().tobytes(),
    }
    out = {}
    for name, data in files.items():
        out[name] = tmp_path / name
        out[name].write_bytes(data)
    out["zero_items.npy"] = tmp_path / "zero_items.npy"
    np.save(out["zero_items.npy"], np.zeros((0, 2), np.float32))
    out["zero_items.npz"] = tmp_path / "zero_items.npz"
    np.savez(out["zero_items.npz"], x=np.zeros((0, 2), np.float32))
    return out


@pytest.mark.parametrize("name, words", [
    ("truncated.npz", "truncated or damaged"),
    ("bad_crc.npz", "truncated or damaged"),
    ("huge_header.npy", "745.1 GiB"),
    ("zero_items.npy", "0 items"),
    ("zero_items.npz", "0 items"),
])
def test_eval_of_a_damaged_or_empty_array_is_a_clear_error(tmp_path, capsys, name, words):
    p = _damaged_files(tmp_path)[name]
    assert main(["eval", "--samples", str(p), "--dataset", "ring8", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("genbench: error:") and str(p) in err and words in err and "Traceback" not in err, err
