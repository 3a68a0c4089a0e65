"""Reference statistics computed once and shared (genbench/pipeline/refstats.py, `genbench stats`): a second run
directory spends 0 s on reference features and gets the same numbers; P/R/D/C from cached k-NN radii equal the
recomputed ones; corrupt, stale or unwritable caches are never used; concurrent builders build once."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import torch

from genbench.cli import main
from genbench.metrics.knn import knn_radii
from genbench.metrics.manifold import prdc
from genbench.pipeline.refstats import StatsCache, key_digest, metric_version, reference_key
from genbench.runner import Runner
from genbench.results.store import ResultsStore
from genbench.suite import load_suite
from helpers.dummy_suite import write_suite

SPEED = {"batch_size": 64, "repeats": 1, "warmup": 0}
RING8 = {"features": "identity", "n_samples": 300, "metrics": ["fd", "prdc"]}


@pytest.fixture
def stats(tmp_path, monkeypatch):
    d = tmp_path / "stats"
    monkeypatch.setenv("GENBENCH_STATS_CACHE", str(d))
    return d


def _run(tmp_path: Path, out: Path, model: str = "gmm", quiet: bool = False):
    p = write_suite(tmp_path / f"{model}.toml", {"ring8": RING8}, {model: {}}, name="rs", n_bootstrap=0, speed=SPEED)
    Runner(load_suite(p), out, device="cpu", quiet=quiet, log=lambda m: None).run()
    f = ResultsStore(out).metrics_frame()
    f = f[~f["protocol"].map(lambda q: bool(json.loads(q).get("timing")))]
    return {r.metric: float(r.value) for r in f.itertuples() if r.metric in ("fd", "precision", "recall",
                                                                             "density", "coverage")}


def _entries(d: Path):
    return sorted(p for p in d.glob("*.pt") if not p.name.endswith(".radii.pt"))


def test_second_run_directory_reuses_features_stats_and_radii(tmp_path, stats, capsys):
    first = _run(tmp_path, tmp_path / "a")
    err = capsys.readouterr().err
    assert "reference features ring8/test n=300 identity: computed" in err
    (entry,) = _entries(stats)
    assert (stats / f"{entry.stem}.radii.pt").exists()  # P/R/D/C's k-NN radii were cached as well
    # another run directory, another model: the reference costs nothing, the same entry, same numbers
    second = _run(tmp_path, tmp_path / "b")
    err = capsys.readouterr().err
    assert "reference features ring8/test n=300 identity: 0 s: from the stats cache" in err
    assert "real features: ring8" not in err  # no extraction pass at all
    assert _entries(stats) == [entry] and second == first
    third = _run(tmp_path, tmp_path / "c", model="train-copy")
    assert set(third) == set(first)


def test_prdc_with_cached_radii_equals_recomputed_on_both_paths():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1500, 32, generator=g, dtype=torch.float64)
    y = 1.1 * torch.randn(1200, 32, generator=g, dtype=torch.float64) + 0.1
    for fast in (True, False):
        r = knn_radii(x, (3, 5), n_fake=1200, fast=fast)
        for conv in ("official", "prdc"):
            assert prdc(x, y, fast=fast, convention=conv, real_radii=r) == prdc(x, y, fast=fast, convention=conv)
    # radii from another path, another set size or lacking a k are not used (same values as without them)
    wrong = knn_radii(x[:1000], (3, 5), fast=True)
    assert prdc(x[:1000], y, real_radii=knn_radii(x[:1000], (3,))) == prdc(x[:1000], y)
    assert prdc(x, y, real_radii=wrong) == prdc(x, y)


def test_cached_radii_skip_the_reference_pass(tmp_path, stats, monkeypatch):
    import genbench.metrics.manifold as M

    _run(tmp_path, tmp_path / "a", quiet=True)
    calls = []
    real_fast = M._knn_sq_radii_fast
    monkeypatch.setattr(M, "_knn_sq_radii_fast", lambda x, *a, **k: calls.append(x.shape[0]) or real_fast(x, *a, **k))
    _run(tmp_path, tmp_path / "b", model="train-copy", quiet=True)
    assert calls == [300]  # only the fake set's radii: the reference's came from the cache


def _key(n=5):
    return reference_key("toy", "test", "0" * 64, {"n": n}, {"id": "toy-ext"}, "cpu")


def test_corrupt_and_stale_entries_are_rebuilt_never_used(tmp_path, capsys):
    cache = StatsCache(tmp_path)
    x = torch.randn(50, 3, dtype=torch.float64)
    e = cache.get_or_build(_key(), lambda: x)
    assert e.source == "computed" and torch.equal(cache.load(_key()).features, x)
    p = cache.path(e.digest)
    data = bytearray(p.read_bytes())
    data[-100] ^= 0x01
    p.write_bytes(bytes(data))
    assert cache.load(_key()) is None and not p.exists()
    assert "corrupt or stale" in capsys.readouterr().err
    e = cache.get_or_build(_key(), lambda: x)
    assert e.source == "computed"
    # an intact entry under another key's name (copied, renamed) is stale: deleted, rebuilt
    other = _key(6)
    cache.path(key_digest(other)).write_bytes(p.read_bytes())
    assert cache.load(other) is None and "another key" in capsys.readouterr().err
    # the key names the code version: another genbench's entries are simply other keys
    assert _key()["metric_version"] == metric_version() and metric_version().count("/") == 2


def test_unwritable_cache_warns_once_and_computes_in_memory(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    cache = StatsCache(blocker / "refstats")  # mkdir fails as it would on a read-only filesystem
    x = torch.randn(20, 2, dtype=torch.float64)
    a = cache.get_or_build(_key(), lambda: x)
    b = cache.get_or_build(_key(), lambda: x)
    assert torch.equal(a.features, x) and a.source == b.source == "computed"
    err = capsys.readouterr().err
    assert err.count("cannot be written") == 1 and "GENBENCH_STATS_CACHE" in err


def test_read_only_filesystem_serves_its_entries_and_builds_new_ones_in_memory(tmp_path, monkeypatch, capsys):
    """A cache directory on a read-only filesystem (simulated: writing under it fails with EROFS, as root can
    write through chmod): entries already there are still used; a new one is computed without caching, with one
    warning naming the directory, the reason and GENBENCH_STATS_CACHE."""
    import errno
    import os
    import pathlib

    root = tmp_path / "ro"
    x, y = torch.randn(30, 3, dtype=torch.float64), torch.randn(30, 3, dtype=torch.float64)
    assert StatsCache(root).get_or_build(_key(1), lambda: x).source == "computed"
    real_open = os.open

    def ro_open(path, flags, *a, **k):
        if str(path).startswith(str(root)) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *a, **k)

    def ro_write(self, data):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))

    monkeypatch.setattr(os, "open", ro_open)
    monkeypatch.setattr(pathlib.Path, "write_bytes", ro_write)
    cache = StatsCache(root)
    old = cache.get_or_build(_key(1), lambda: pytest.fail("a cached entry must not be rebuilt"))
    assert old.source == "cache" and torch.equal(old.features, x)
    a = cache.get_or_build(_key(2), lambda: y)
    b = cache.get_or_build(_key(2), lambda: y)
    assert a.source == b.source == "computed" and torch.equal(a.features, y)
    err = capsys.readouterr().err
    assert err.count("cannot be written") == 1 and "Read-only file system" in err and str(root) in err
    assert "GENBENCH_STATS_CACHE" in err and len(_entries(root)) == 1


_BUILDER = r"""
import os, sys, time, torch
from genbench.pipeline.refstats import StatsCache, reference_key
key = reference_key("toy", "test", "0" * 64, {"n": 9}, {"id": "toy-ext"}, "cpu")
open(os.path.join(sys.argv[2], str(os.getpid())), "w").close()
while len(os.listdir(sys.argv[2])) < 2:  # a barrier: both processes have imported everything
    time.sleep(0.01)
def build():  # 2 s: without the lock, the other process would start its own build meanwhile
    with open(sys.argv[3], "a") as f:
        f.write(f"{os.getpid()}\n")
    time.sleep(2.0)
    return torch.arange(40, dtype=torch.float64).reshape(20, 2) ** 1.5
e = StatsCache(sys.argv[1]).get_or_build(key, build)
print(e.source, float(e.features.sum()), e.digest)
"""


def test_two_processes_building_at_once_build_once(tmp_path):
    """Two runs (processes) that need the same reference statistics at the same moment: one builds, the other
    waits on the entry's lock and reads what the first wrote; neither sees a half-written file."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(root))
    calls, ready = tmp_path / "calls", tmp_path / "ready"
    ready.mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", _BUILDER, str(tmp_path / "c"), str(ready), str(calls)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    lines = [o[0].split() for o in outs]
    assert sorted(ln[0] for ln in lines) == ["cache", "computed"], lines
    assert lines[0][1:] == lines[1][1:]  # same features, same entry
    assert len(calls.read_text().split()) == 1 and len(_entries(tmp_path / "c")) == 1


def test_two_builders_at_once_build_once(tmp_path):
    calls = []
    x = torch.randn(40, 4, dtype=torch.float64)

    def slow():
        calls.append(1)
        time.sleep(0.5)
        return x

    out = []
    threads = [threading.Thread(target=lambda: out.append(StatsCache(tmp_path).get_or_build(_key(), slow)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and sorted(e.source for e in out) == ["cache", "computed"]
    assert torch.equal(out[0].features, out[1].features)



def test_writable_probe_is_safe_between_threads(tmp_path):
    """Threads of one process asking at once whether the cache is writable all get True (a probe file named
    per process let one thread delete another's probe, and the loser took the cache for a read-only one)."""
    cache = StatsCache(tmp_path)
    answers = []
    barrier = threading.Barrier(8)

    def ask():
        barrier.wait()
        answers.extend(cache.writable() for _ in range(200))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(answers) == 1600 and all(answers)
    assert not list(tmp_path.glob(".probe-*"))

def test_stats_cli_build_list_verify(tmp_path, stats, capsys):
    assert main(["stats", "build", "ring8", "--n", "400"]) == 0
    assert "built" in capsys.readouterr().out
    assert main(["stats", "build", "ring8", "--n", "400"]) == 0
    assert "already cached" in capsys.readouterr().out
    assert main(["stats", "list"]) == 0
    out = capsys.readouterr().out
    assert "ring8" in out and "400" in out and "fast:k3, fast:k5" in out
    assert main(["stats", "verify"]) == 0
    (entry,) = _entries(stats)
    # a resealed entry whose covariance no longer matches its features: verify recomputes and catches it
    import io

    from genbench.fileio import read_sealed, write_sealed

    blob = torch.load(io.BytesIO(read_sealed(entry)), weights_only=True)
    blob["sigma"] = blob["sigma"] * 1.0001
    buf = io.BytesIO()
    torch.save(blob, buf)
    write_sealed(entry, buf.getvalue())
    capsys.readouterr()
    assert main(["stats", "verify", "--delete"]) == 1
    assert "mean/covariance differ" in capsys.readouterr().out and not entry.exists()
    assert main(["stats", "build", "nope"]) == 2
    assert main(["stats", "build", "ring8", "--k", "x"]) == 2
