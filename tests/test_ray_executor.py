"""RayExecutor (optional extra genbench[ray]) on a local Ray instance started inside the test (ray.init with 2
CPUs, no external service): the numbers are bit-identical to the local executor's, a task that raises or whose
worker dies fails only its job, a killed driver's run resumes, and an unreachable address fails fast."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'genbench[ray]' to run these tests")

from genbench.cli import main  # noqa: E402
from genbench.errors import InvalidInputError  # noqa: E402
from genbench.executors import RayExecutor  # noqa: E402
from genbench.runner import Runner  # noqa: E402
from genbench.results.store import ResultsStore  # noqa: E402
from genbench.suite import apply_overrides, load_suite  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

SUITE = """
name = "ray"
budget = "smoke"
device = "cpu"
seeds = [0]
n_bootstrap = 10
threads = 1

[speed]
batch_size = 64
repeats = 1
warmup = 0

[datasets.ring8]
features = "identity"
n_samples = 200
metrics = ["fd", "prdc", "mode_coverage", "bits_per_dim"]

{models}
"""


@pytest.fixture(scope="module")
def cluster():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,  # our own cluster
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
                                       "GENBENCH_STATS_CACHE": os.environ.get("GENBENCH_STATS_CACHE", "")}})
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def _values(out) -> dict:
    f = ResultsStore(out).metrics_frame()
    f = f[f["protocol"].map(lambda p: not json.loads(p).get("timing"))]
    v = lambda x: None if x != x else float(x)  # noqa: E731 - NaN (no interval) compares equal to NaN
    return {(r.job_id, r.metric, r.variant): (v(r.value), v(r.ci_low), v(r.ci_high)) for r in f.itertuples()}


def _bit_identical(tmp_path, datasets):
    suite = apply_overrides(load_suite("smoke"), datasets=datasets)
    suite.threads = 1
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what the Ray tasks run with (the thread count changes float summation order)
    try:
        local = Runner(suite, tmp_path / "local", quiet=True, log=lambda m: None, threads=1).run()
    finally:
        torch.set_num_threads(threads)
    ex = RayExecutor(num_cpus=1, threads=1)
    assert not ex._own  # joined the test's Ray instance
    remote = Runner(suite, tmp_path / "ray", quiet=True, log=lambda m: None, threads=1, executor=ex).run()
    assert not local.failed and not remote.failed, (local.failed, remote.failed)
    assert sorted(local.done) == sorted(remote.done) and len(local.done) >= 6
    a, b = _values(tmp_path / "local"), _values(tmp_path / "ray")
    assert a.keys() == b.keys() and a == b


def test_smoke_suite_numbers_are_bit_identical_to_the_local_executor(tmp_path, cluster):
    """The smoke suite's point dataset (every family that applies to it); the whole suite: the slow test below."""
    _bit_identical(tmp_path, ["ring8"])


@pytest.mark.slow
def test_whole_smoke_suite_is_bit_identical_to_the_local_executor(tmp_path, cluster):
    _bit_identical(tmp_path, None)


@pytest.mark.slow  # ~2 min on the shared 2-core machine (fresh Ray workers import torch for the shard tasks)
def test_jobs_shard_their_feature_passes_as_ray_tasks_with_the_same_numbers(tmp_path, cluster):
    """`genbench run --executor ray --feature-shards 3`: inside the job (a Ray task) the samples' feature pass
    (600 rows: 3 batch-aligned shards of the default 256-row batches) runs as Ray tasks on the same cluster -- the
    job waiting on them does not deadlock the 2 CPUs -- and the numbers are bit-identical to an unsharded run on
    the local executor. (The reference is already cached by the local run; test_shards.py shards that pass too.)"""
    from genbench.pipeline.shards import FeatureSharding

    p = tmp_path / "s.toml"
    p.write_text(SUITE.replace("n_samples = 200", "n_samples = 600").format(models="[models.gmm]\n"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        local = Runner(load_suite(p), tmp_path / "local", quiet=True, log=lambda m: None, threads=1).run()
    finally:
        torch.set_num_threads(threads)
    remote = Runner(load_suite(p), tmp_path / "ray", quiet=True, log=lambda m: None, threads=1,
                    executor=RayExecutor(num_cpus=1, threads=1),
                    feature_shards=FeatureSharding(3, "ray", threads=1)).run()
    assert not local.failed and not remote.failed, (local.failed, remote.failed)
    a, b = _values(tmp_path / "local"), _values(tmp_path / "ray")
    assert a.keys() == b.keys() and len(a) >= 5 and a == b


def _boom(x):
    if x == 2:
        raise ValueError("job 2 is broken")
    if x == 3:
        os.kill(os.getpid(), signal.SIGKILL)  # the worker process dies
    return x * 10


def test_a_raising_or_dying_task_fails_only_its_job(cluster):
    ex = RayExecutor(num_cpus=1)
    out = {item: (res, err) for item, res, err in ex.map_unordered(_boom, [1, 2, 3, 4])}
    assert out[1] == (10, None) and out[4] == (40, None)
    assert isinstance(out[2][1], ValueError) and "job 2 is broken" in str(out[2][1])
    assert isinstance(out[3][1], RuntimeError) and "worker running this job died" in str(out[3][1])


def test_failed_job_is_recorded_and_the_run_goes_on(tmp_path, cluster):
    p = tmp_path / "s.toml"
    p.write_text(SUITE.format(models='[models.gmm]\n[models.bad]\nmodel = "runner_dummies:DummyNaN"\n'))
    from genbench.models import MODELS

    try:
        s = Runner(load_suite(p), tmp_path / "out", quiet=True, log=lambda m: None, threads=1,
                   executor=RayExecutor(num_cpus=1, threads=1)).run()
    finally:  # the user model registered here must not leak into later tests (e.g. the smoke suite's families)
        MODELS._items.pop("bad", None)
    assert [j for j, _ in s.failed] == ["ring8/bad/seed0"] and "non-finite" in s.failed[0][1]
    assert s.done == ["ring8/gmm/seed0"]


def _status(out: Path) -> dict:
    try:
        with ResultsStore(out) as st:
            return {r["job_id"]: r["status"] for r in st.jobs_frame().to_dict("records")}
    except Exception:  # noqa: BLE001 - not created yet
        return {}


def _start_ray_run(tmp_path: Path, cluster: str, gan_steps: int, stdout):
    """`genbench run` of gmm and a gan of `gan_steps` steps on ring8 with the Ray executor, as a child process on
    the test's cluster: (suite path, run directory, the process)."""
    p = tmp_path / "s.toml"
    p.write_text(SUITE.format(models=f"[models.gmm]\n[models.gan]\noverrides = {{ steps = {gan_steps} }}\n"))
    out = tmp_path / "out"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    cmd = [sys.executable, "-m", "genbench.cli", "run", str(p), "--out", str(out), "--quiet", "--no-report",
           "--executor", "ray", "--address", cluster, "--threads", "1"]
    # Ctrl-C's default action in the child even where this test process was started with SIGINT ignored (a
    # background job of a non-interactive shell, `cmd &`, is): an ignored SIGINT is inherited through exec
    return p, out, subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=stdout, stderr=subprocess.PIPE, text=True,
                                    preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def test_resume_after_the_driver_is_killed(tmp_path, cluster):
    p, out, proc = _start_ray_run(tmp_path, cluster, gan_steps=250, stdout=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and _status(out).get("ring8/gmm/seed0") != "done":
            assert proc.poll() is None, "the run ended before it could be killed: " + proc.stderr.read()[-3000:]
            time.sleep(0.2)
        assert _status(out).get("ring8/gmm/seed0") == "done"
        assert _status(out).get("ring8/gan/seed0") == "running"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    s = Runner(load_suite(p), out, quiet=True, log=lambda m: None, threads=1,
               executor=RayExecutor(num_cpus=1, threads=1)).run()
    assert s.skipped == ["ring8/gmm/seed0"] and s.done == ["ring8/gan/seed0"] and not s.failed


def _ray_tasks_running() -> list:
    """Command lines of Ray worker processes executing a genbench job task right now (Ray titles them
    'ray::_ray_call' while the task runs)."""
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout.splitlines()
    return [ln for ln in ps if ln.startswith("ray::_ray_call")]


def test_ctrl_c_cancels_the_outstanding_tasks_and_prints_the_resume_command(tmp_path, cluster):
    p, out, proc = _start_ray_run(tmp_path, cluster, gan_steps=5000, stdout=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (_status(out).get("ring8/gan/seed0") == "running"
                                              and _ray_tasks_running()):
            assert proc.poll() is None, "the run ended before Ctrl-C: " + proc.stderr.read()[-3000:]
            time.sleep(0.2)
        assert _ray_tasks_running(), "no Ray task was running the gan job"
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr[-2000:]
    assert "interrupted" in stderr + stdout and "run the same command again to resume" in stderr + stdout
    deadline = time.time() + 30  # the force-cancelled task's worker is gone (the 5000-step gan would run on)
    while time.time() < deadline and _ray_tasks_running():
        time.sleep(0.5)
    assert not _ray_tasks_running()
    assert _status(out).get("ring8/gan/seed0") != "done"


def test_unreachable_address_fails_fast_with_the_start_command(tmp_path, monkeypatch):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    t0 = time.perf_counter()
    with pytest.raises(InvalidInputError, match=f"127.0.0.1:{port}.*ray start --head"):
        RayExecutor(address=f"127.0.0.1:{port}", connect_timeout_s=3)
    assert time.perf_counter() - t0 < 5
    with pytest.raises(InvalidInputError, match="HOST:PORT"):
        RayExecutor(address="nowhere")
    assert main(["run", "smoke", "--address", "auto", "--out", str(tmp_path / "x")]) == 2


def test_feature_shards_keep_one_shard_free_of_jobs(cluster):
    """With --feature-shards on Ray, jobs leave one shard's resources free: Ray frees a waiting job's CPUs but
    not its GPUs, so jobs holding every GPU while they wait on GPU shards would wait forever."""
    import argparse
    from types import SimpleNamespace

    from genbench.commands.run import _feature_sharding

    ex = RayExecutor(num_cpus=2, num_gpus=1)
    ex.ray = SimpleNamespace(cluster_resources=lambda: {"CPU": 32.0, "GPU": 8.0})  # a node of 8 GPUs
    assert ex.slots() == 8
    suite = load_suite("smoke")
    args = argparse.Namespace(feature_shards=4, executor="ray")
    sh = _feature_sharding(args, suite, "cuda", 1, 2)
    assert (sh.shards, sh.executor, sh.num_gpus, sh.threads) == (4, "ray", 1.0, 2)
    ex.reserve_cpus, ex.reserve_gpus = sh.num_cpus, sh.num_gpus
    assert ex.slots() == 7
