"""The runner: end to end with small models; failures recorded and the run goes on; resume after a kill;
the checkpoint cache; identical numbers for the same seed; the command line."""

import json
import signal
import sqlite3
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import runner_dummies
from genbench.cli import main
from genbench.runner import Runner
from genbench.results.store import ResultsStore
from genbench.suite import load_suite
from helpers.dummy_cli import dummy_cli
from helpers.dummy_suite import RING8_ALL, write_suite

ROOT = Path(__file__).resolve().parents[1]

SPEED = {"batch_size": 64, "repeats": 2, "warmup": 1}

@pytest.fixture(autouse=True)
def dummies():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the shared 2-core machine: one thread avoids OpenMP oversubscription stalls
    runner_dummies.register()
    yield
    runner_dummies.unregister()
    torch.set_num_threads(threads)


def _suite(tmp_path, models=("dummy-gauss",), seeds=(0,), name="s.toml", ring8=None, sweeps=None):
    """`models`: names, or {name: table}; `ring8`: keys added to the dataset's table."""
    tables = models if isinstance(models, dict) else {m: {} for m in models}
    return write_suite(tmp_path / name, {"ring8": {**RING8_ALL, **(ring8 or {})}}, tables, seeds=seeds, speed=SPEED,
                       sweeps=sweeps)


def _run(suite_path, out, **kw):
    return Runner(load_suite(suite_path), out, device="cpu", quiet=True, log=lambda m: None, **kw).run()


def _values(out, timing=False) -> dict:
    f = ResultsStore(out).metrics_frame()
    keep = f["protocol"].map(lambda p: bool(json.loads(p).get("timing"))) == timing
    f = f[keep]
    def v(x):
        return None if pd.isna(x) else float(x)

    return {(r.job_id, r.metric, r.variant): (v(r.value), v(r.ci_low), v(r.ci_high)) for r in f.itertuples()}


def test_failures_are_recorded_and_the_run_goes_on(tmp_path):
    models = ("dummy-nan", "dummy-gauss", "dummy-badshape", "dummy-diverge")
    s = _run(_suite(tmp_path, models), tmp_path / "out")
    assert s.done == ["ring8/dummy-gauss/seed0"]
    assert {j for j, _ in s.failed} == {"ring8/dummy-nan/seed0", "ring8/dummy-badshape/seed0", "ring8/dummy-diverge/seed0"}
    store = ResultsStore(tmp_path / "out")
    jobs = store.jobs_frame().set_index("job_id")
    assert jobs.loc["ring8/dummy-nan/seed0", "status"] == "failed"
    assert "NaN" in jobs.loc["ring8/dummy-nan/seed0", "error"]
    assert "wrong shape" in jobs.loc["ring8/dummy-badshape/seed0", "error"]
    assert "diverged" in jobs.loc["ring8/dummy-diverge/seed0", "error"]
    assert jobs.loc["ring8/dummy-gauss/seed0", "status"] == "done"
    # the job after the failing one was still scored, with every quality and speed metric
    f = store.metrics_frame()
    assert set(f.job_id) == {"ring8/dummy-gauss/seed0"}
    names = set(f.metric)
    assert {"fd", "precision", "recall", "density", "coverage", "modes_covered", "bits_per_dim"} <= names
    assert {"samples_per_s", "latency_ms", "nfe", "train_seconds", "peak_memory_mb", "num_params"} <= names
    row = f.set_index("metric").loc["samples_per_s"]
    proto = json.loads(row.protocol)
    assert proto["timing"] is True and proto["batch_size"] == 64 and proto["repeats"] == 2 and row.unit == "samples/s"
    assert row.higher_is_better and row.value > 0
    assert f.set_index("metric").loc["num_params", "value"] == 4  # mu and log_sigma of a 2-D Gaussian
    assert f.set_index("metric").loc["nfe", "value"] == 1
    # the files the reports engineer reads
    for name in ("results.db", "results.csv", "results.json"):
        assert (tmp_path / "out" / name).exists()
    csv = pd.read_csv(tmp_path / "out" / "results.csv")
    assert len(csv) == len(f)
    blob = json.loads((tmp_path / "out" / "results.json").read_text())
    assert {j["status"] for j in blob["jobs"]} == {"done", "failed"}
    arts = store.artifacts("ring8/dummy-gauss/seed0").set_index("kind")
    x = np.load(tmp_path / "out" / arts.loc["samples_preview", "path"])["x"]
    assert x.shape == (64, 2) and x.dtype == np.float32
    hist = json.loads((tmp_path / "out" / arts.loc["history", "path"]).read_text())
    assert [r["step"] for r in hist] == [1, 2, 3, 4, 5]
    assert (tmp_path / "out" / arts.loc["real_preview", "path"]).exists()


def test_same_seed_same_numbers_other_seed_other_numbers(tmp_path):
    models = ["dummy-gauss"] + (["gan"] if "gan" in __import__("reference_models").list_models() else [])
    p = _suite(tmp_path, models, seeds=(0,))
    _run(p, tmp_path / "a")
    _run(p, tmp_path / "b")
    a, b = _values(tmp_path / "a"), _values(tmp_path / "b")
    assert a and a == b  # bit-identical metric values and intervals (timing metrics excluded)
    assert {k[0] for k in a} == {f"ring8/{m}/seed0" for m in models}
    assert _values(tmp_path / "a", timing=True).keys() == _values(tmp_path / "b", timing=True).keys()
    _run(_suite(tmp_path, seeds=(0, 1), name="two.toml"), tmp_path / "c")
    c = _values(tmp_path / "c")
    assert c[("ring8/dummy-gauss/seed0", "fd", "")] == a[("ring8/dummy-gauss/seed0", "fd", "")]
    assert c[("ring8/dummy-gauss/seed0", "fd", "")] != c[("ring8/dummy-gauss/seed1", "fd", "")]


def test_resume_skips_done_jobs_and_reuses_checkpoints(tmp_path):
    p = _suite(tmp_path, seeds=(0, 1))
    out = tmp_path / "out"
    first = _run(p, out)
    assert len(first.done) == 2
    before = _values(out)
    again = _run(p, out)
    assert again.done == [] and sorted(again.skipped) == ["ring8/dummy-gauss/seed0", "ring8/dummy-gauss/seed1"]
    assert _values(out) == before
    # changing a setting that changes the numbers redoes the jobs, loading the cached checkpoints
    p2 = _suite(tmp_path, seeds=(0, 1), name="s2.toml")
    p2.write_text(p2.read_text().replace("repeats = 2", "repeats = 3"))
    third = _run(p2, out)
    assert len(third.done) == 2
    f = ResultsStore(out).metrics_frame().set_index(["job_id", "metric"])
    assert json.loads(f.loc[("ring8/dummy-gauss/seed0", "train_seconds"), "protocol"])["from_checkpoint_cache"] is True
    assert _values(out) == before  # loaded checkpoints give the same samples and metrics
    # --fresh starts over: checkpoints are retrained
    _run(p2, out, fresh=True)
    f = ResultsStore(out).metrics_frame().set_index(["job_id", "metric"])
    assert json.loads(f.loc[("ring8/dummy-gauss/seed0", "train_seconds"), "protocol"])["from_checkpoint_cache"] is False


def _done_rows(db):
    if not Path(db).exists():
        return []
    con = sqlite3.connect(db, timeout=30)
    try:
        return con.execute("SELECT job_id, finished_at FROM jobs WHERE status='done' ORDER BY job_id").fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        con.close()


@pytest.mark.parametrize("sig", [signal.SIGKILL, pytest.param(signal.SIGINT, marks=pytest.mark.slow)])
def test_killed_run_resumes_without_losing_results(tmp_path, sig):
    p = _suite(tmp_path, models={"dummy-gauss": {"overrides": {"sleep": 0.2, "steps": 5}}}, seeds=(0, 1, 2))
    out = tmp_path / "out"
    proc = dummy_cli(["run", str(p), "--out", str(out), "--quiet", "--no-report"], tmp_path)
    deadline = time.time() + 120
    try:
        while time.time() < deadline and not _done_rows(out / "results.db"):
            if proc.poll() is not None:
                pytest.fail(f"run ended before it could be interrupted: {proc.communicate()}")
            time.sleep(0.05)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    if sig == signal.SIGINT:
        assert "resume" in err
    done_before = _done_rows(out / "results.db")
    assert 1 <= len(done_before) < 3
    values_before = _values(out)
    statuses = dict(sqlite3.connect(out / "results.db").execute("SELECT job_id, status FROM jobs").fetchall())
    assert set(statuses.values()) <= {"done", "running", "pending"}

    proc = dummy_cli(["run", str(p), "--out", str(out), "--quiet", "--no-report"], tmp_path)
    outp, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    assert f"{len(done_before)} already done" in outp
    after = _done_rows(out / "results.db")
    assert len(after) == 3
    assert set(done_before) <= set(after)  # finished jobs were not redone (same finished_at)
    values_after = _values(out)
    assert {k: v for k, v in values_after.items() if k in values_before} == values_before
    assert len(pd.read_csv(out / "results.csv").job_id.unique()) == 3


def test_cli_errors_and_list(tmp_path, capsys):
    assert main(["run", "no-such-suite", "--out", str(tmp_path / "o")]) == 2
    assert "unknown suite" in capsys.readouterr().err
    bad = _suite(tmp_path, ring8={"bogus": {}})
    assert main(["run", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "datasets.ring8.bogus" in err
    assert not (tmp_path / "o" / "results.db").exists()  # validation happens before any work
    p = _suite(tmp_path)
    assert main(["run", str(p), "--out", str(tmp_path / "o"), "--models", "dummy-gaus"]) == 2
    assert "Did you mean 'dummy-gauss'" in capsys.readouterr().err
    assert main(["run", str(p), "--out", str(tmp_path / "o"), "--seeds", "a"]) == 2
    assert main(["list", "modls"]) == 2
    assert "Did you mean 'models'" in capsys.readouterr().err
    assert main(["list", "suites"]) == 0
    out = capsys.readouterr().out
    assert "smoke" in out and "quick" in out and "standard" in out
    assert main(["list", "models"]) == 0
    assert "dummy-gauss" in capsys.readouterr().out


def test_cli_run_default_out_dir_and_overrides(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    p = _suite(tmp_path, models=("dummy-gauss", "dummy-nan"), seeds=(0, 1))
    rc = main(["run", str(p), "--models", "dummy-gauss", "--seeds", "2", "--quiet", "--no-report"])
    assert rc == 0
    out = tmp_path / "reports" / "t"
    jobs = ResultsStore(out).jobs_frame()
    assert jobs.job_id.tolist() == ["ring8/dummy-gauss/seed2"]
    run = ResultsStore(out).runs_frame().iloc[0]
    assert run.suite_name == "t" and "--seeds" in run.argv and run.torch_version and run.python_version
    assert "1 jobs run" in capsys.readouterr().out
    rc = main(["run", str(p), "--models", "dummy-nan", "--seeds", "2", "--quiet", "--no-report"])
    assert rc == 1  # some job failed: nonzero exit, results of the others kept


def test_diffusion_sampler_sweep_records_variants(tmp_path):
    from reference_models import list_models

    if "ddpm" not in list_models():
        pytest.skip("ddpm is not registered")
    s = _run(_suite(tmp_path, models=("ddpm",), sweeps={"ddpm": {"sampler": "ddim", "steps": [5, 10]}}), tmp_path / "out")
    assert s.done == ["ring8/ddpm/seed0"], s.failed
    f = ResultsStore(tmp_path / "out").metrics_frame()
    for variant, steps in (("ddim-5", 5), ("ddim-10", 10)):
        g = f[f.variant == variant].set_index("metric")
        assert {"fd", "precision", "recall", "modes_covered", "samples_per_s", "latency_ms", "nfe"} <= set(g.index)
        assert g.loc["nfe", "value"] == steps
        assert json.loads(g.loc["fd", "protocol"])["sampler"] == variant
        assert "bits_per_dim" not in g.index  # the likelihood does not depend on the sampler: default variant only
    base = f[f.variant == ""].set_index("metric")
    assert base.loc["nfe", "value"] == 50  # the model's own sampler is restored after the sweep
    assert {"bits_per_dim", "train_seconds", "num_params"} <= set(base.index)
    arts = ResultsStore(tmp_path / "out").artifacts()
    assert {"samples_preview", "samples_preview:ddim-5", "samples_preview:ddim-10"} <= set(arts.kind)


def test_invalid_sweeps(tmp_path):
    from genbench.suite import SuiteError

    from reference_models import list_models

    if "ddpm" not in list_models():
        pytest.skip("ddpm is not registered")
    p = _suite(tmp_path, models=("ddpm",), sweeps={"ddpm": {"sampler": "ddim", "steps": [10, 500]}})
    with pytest.raises(SuiteError, match="sweeps.ddpm.steps.*exceed the 50 diffusion timesteps"):
        load_suite(p)
    p = _suite(tmp_path, models=("ddpm",), sweeps={"ddpm": {"sampler": "dpm", "steps": [10]}}, name="b.toml")
    with pytest.raises(SuiteError, match="sweeps.ddpm.sampler.*'ddpm'"):
        load_suite(p)


def test_unreadable_checkpoint_is_retrained(tmp_path):
    p = _suite(tmp_path)
    out = tmp_path / "out"
    _run(p, out)
    before = _values(out)
    (ckpt,) = (out / "checkpoints").iterdir()
    (ckpt / "weights.pt").write_bytes(b"garbage")
    p2 = _suite(tmp_path, name="s2.toml")
    p2.write_text(p2.read_text().replace("repeats = 2", "repeats = 3"))  # changed settings: the job is redone
    s = _run(p2, out)
    assert s.done == ["ring8/dummy-gauss/seed0"], s.failed
    f = ResultsStore(out).metrics_frame().set_index("metric")
    assert json.loads(f.loc["train_seconds", "protocol"])["from_checkpoint_cache"] is False
    assert _values(out) == before  # retrained with the same seed: the same numbers
