"""Sealed cache files, umask-honouring atomic writes and inter-process locks (genbench.fileio, genbench.locks)."""

import os
import stat
import subprocess
import sys
import time

import pytest

from genbench.fileio import (CorruptFileError, atomic_write_bytes, read_sealed, remove_stale_temps, write_sealed)
from genbench.locks import FileLock, LockHeldError


def test_sealed_roundtrip_and_every_flipped_byte_is_detected(tmp_path):
    p = tmp_path / "x.bin"
    payload = bytes(range(256)) * 4
    write_sealed(p, payload)
    assert read_sealed(p) == payload
    raw = bytearray(p.read_bytes())
    for i in range(0, len(raw), 37):  # header, digest and payload positions alike
        bad = bytearray(raw)
        bad[i] ^= 0x01
        p.write_bytes(bytes(bad))
        with pytest.raises(CorruptFileError):
            read_sealed(p)
    p.write_bytes(bytes(raw[:-1]))  # truncated
    with pytest.raises(CorruptFileError):
        read_sealed(p)
    p.write_bytes(payload)  # no header at all
    with pytest.raises(CorruptFileError):
        read_sealed(p)


def test_atomic_write_honours_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        p = atomic_write_bytes(tmp_path / "a", b"x")
        assert stat.S_IMODE(p.stat().st_mode) == 0o644
        os.umask(0o077)
        q = atomic_write_bytes(tmp_path / "b", b"x")
        assert stat.S_IMODE(q.stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_stale_temps_are_removed_but_fresh_ones_kept(tmp_path):
    old = tmp_path / "sub" / ".results.csv.abc123.tmp"
    old.parent.mkdir()
    old.write_bytes(b"half")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    fresh = tmp_path / ".x.def.tmp"
    fresh.write_bytes(b"live writer")
    keep = tmp_path / "results.csv"
    keep.write_bytes(b"data")
    assert remove_stale_temps(tmp_path) == 1
    assert not old.exists() and fresh.exists() and keep.exists()


def test_second_lock_on_a_path_is_refused_naming_the_holder(tmp_path):
    p = tmp_path / ".genbench.lock"
    with FileLock(p, what="run directory D"):
        with pytest.raises(LockHeldError) as e:
            FileLock(p, what="run directory D").acquire()
        assert f"PID {os.getpid()}" in str(e.value) and "run directory D" in str(e.value)
        assert e.value.holder["pid"] == os.getpid()
    with FileLock(p):  # released: free again
        pass


def test_lock_held_by_another_process_and_freed_when_it_is_killed(tmp_path):
    p = tmp_path / "l.lock"
    code = ("import sys, time; from genbench.locks import FileLock; l = FileLock(sys.argv[1]).acquire(); "
            "print('locked', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(p)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(LockHeldError) as e:
            FileLock(p).acquire()
        assert f"PID {proc.pid}" in str(e.value)
        with pytest.raises(LockHeldError):  # blocking with a timeout also gives up, saying so
            FileLock(p, blocking=True, timeout=0.3, poll_s=0.05).acquire()
    finally:
        proc.kill()
        proc.wait()
    with FileLock(p, blocking=True, timeout=5):  # SIGKILL released it
        pass
