"""Figures for issue #17 (scale): reference statistics computed once, cached k-NN radii, Ray vs process executor.
Writes reports/benchmarks/scale.md. Not a test: timings depend on the machine, which the report names.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_scale.py [--only prdc,rerun,eval,ray] [--out PATH]

Sections
  prdc   P/R/D/C at N = M = 10,000, D = 2048 (synthetic ReLU features): recomputing the reference's k-NN radii vs
         reading them (`prdc(real_radii=knn_radii(real))`), values compared for identity.
  rerun  `genbench run` twice into one directory on fashion-mnist (quick protocol, smoke budget), the second run
         adding a model: its log line for the reference features and the time spent on them.
  eval   `genbench eval` of 1,000 images against Fashion-MNIST with Inception features: cold cache vs cached
         reference statistics (wall time of the command).
  ray    per-job overhead: a trivial job through ProcessExecutor(2) and RayExecutor on a local 2-CPU Ray instance,
         and the smoke suite's ring8 jobs through both (wall time per job).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402


def _machine() -> str:
    from genbench.env_info import environment

    env = environment("cpu")
    return (f"{env.get('device') or platform.processor()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
            f"{torch.get_num_threads()} torch threads")


def bench_prdc(lines: list) -> None:
    from genbench.metrics.knn import knn_radii
    from genbench.metrics.manifold import prdc

    n, d = 10_000, 2048
    g = torch.Generator().manual_seed(0)
    w = torch.randn(d, d, generator=g) / d**0.5
    real = torch.relu(torch.randn(n, d, generator=g) @ w + 0.3).double()
    fake = torch.relu(torch.randn(n, d, generator=g) @ w * 1.05 + 0.32).double()
    del w
    t0 = time.perf_counter()
    full = prdc(real, fake)
    t_full = time.perf_counter() - t0
    t0 = time.perf_counter()
    radii = knn_radii(real, (3, 5), n_fake=n)
    t_radii = time.perf_counter() - t0
    t0 = time.perf_counter()
    cached = prdc(real, fake, real_radii=radii)
    t_cached = time.perf_counter() - t0
    lines += ["## P/R/D/C with cached reference radii (N = M = 10,000, D = 2048, CPU)", "",
              "| | seconds |", "|---|---|",
              f"| recomputing (real radii, fake radii, real-fake) | {t_full:.1f} |",
              f"| reference radii alone (what the cache stores, paid once) | {t_radii:.1f} |",
              f"| with cached radii (fake radii, real-fake) | {t_cached:.1f} |", "",
              f"Ratio recomputing / cached: **{t_full / t_cached:.2f}x** (goal >= 1.4x). Values identical: "
              f"**{full == cached}** ({', '.join(f'{k} {v:.4f}' for k, v in full.items())}).", ""]


def _genbench(args: list, env: dict) -> tuple[float, str]:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "genbench", *args], env=env, capture_output=True, text=True, cwd=ROOT)
    dt = time.perf_counter() - t0
    if r.returncode not in (0, 1):
        raise RuntimeError(f"genbench {' '.join(args)} failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return dt, r.stderr + r.stdout


def bench_rerun(lines: list, tmp: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT), GENBENCH_STATS_CACHE=str(tmp / "stats-rerun"))
    out = tmp / "rerun"
    common = ["run", "quick", "--datasets", "fashion-mnist", "--budget", "smoke", "--out", str(out), "--no-report",
              "--workers", "1", "--threads", "1"]
    t1, log1 = _genbench(common + ["--models", "vae"], env)
    t2, log2 = _genbench(common + ["--models", "vae,gan"], env)
    ref1 = [ln.strip() for ln in log1.splitlines() if "reference features" in ln]
    ref2 = [ln.strip() for ln in log2.splitlines() if "reference features" in ln]
    secs = [float(m.group(1)) for ln in ref1 for m in [re.search(r"computed in ([0-9.]+) s", ln)] if m]
    lines += ["## A second run that adds a model spends 0 s on reference features", "",
              "`genbench run quick --datasets fashion-mnist --budget smoke` (classifier:fashion-mnist features, "
              "n = 1,000) with `--models vae`, then with `--models vae,gan` into the same directory:", "",
              "first run's log line:", "", "```", *ref1, "```", "", "second run's log line:", "", "```", *ref2, "```", "",
              f"Reference feature time: first run {sum(secs):.1f} s, second run 0 s (read from the cache). "
              f"Whole commands: {t1:.1f} s and {t2:.1f} s (the second trains the added model).", ""]


def bench_eval(lines: list, tmp: Path, extractor: str = "inception") -> None:
    import numpy as np

    from genbench.data import get_dataset

    x = get_dataset("fashion-mnist").load("train").x[:1000]
    x = (x + 0.05 * torch.randn_like(x)).clamp(0, 1)
    samples = tmp / "user.npy"
    np.save(samples, x.numpy().astype(np.float32))
    env = dict(os.environ, PYTHONPATH=str(ROOT), GENBENCH_STATS_CACHE=str(tmp / "stats-eval"))
    args = ["eval", "--samples", str(samples), "--dataset", "fashion-mnist", "--extractor", extractor,
            "--metrics", "fd,prdc"]
    load = [os.getloadavg()[0]]
    t_start = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    cold, log_cold = _genbench(args, env)
    load.append(os.getloadavg()[0])
    warm, log_warm = _genbench(args, env)
    load.append(os.getloadavg()[0])
    t_end = time.strftime("%H:%M UTC", time.gmtime())
    fd = [re.findall(r"^\|?\s*fd\s*\|[^\n]*", s, re.M)[:1] for s in (log_cold, log_warm)]
    ref = [[ln.strip() for ln in s.splitlines() if "reference features" in ln] for s in (log_cold, log_warm)]
    lines += [f"## `genbench eval` of 1,000 images against Fashion-MNIST {extractor} statistics", "",
              f"`genbench eval --samples user.npy --dataset fashion-mnist --extractor {extractor} --metrics fd,prdc` "
              f"(1,000 noisy training images as the user's samples; n_real = 1,000), CPU, {t_start}-{t_end}; "
              f"1-minute load average {load[0]:.2f} before the cold run, {load[1]:.2f} between the runs, "
              f"{load[2]:.2f} after:", "",
              "| reference statistics | wall time of the command (s) |", "|---|---|",
              f"| not cached (extracts 1,000 real + 1,000 user images) | {cold:.1f} |",
              f"| cached (extracts the 1,000 user images only) | {warm:.1f} |", "",
              f"Ratio {cold / warm:.2f}x. Log lines, cold:", "", "```", *ref[0], "```", "", "cached:", "", "```",
              *ref[1], "```", "", f"FD line, cold / cached: {fd[0]} / {fd[1]}.", ""]


def _noop(x):
    return x


def bench_ray(lines: list, tmp: Path) -> None:
    try:
        import ray
    except ImportError:
        lines += ["## Ray", "", "Ray is not installed here (`pip install 'genbench[ray]'`): not measured.", ""]
        return
    from genbench.executors import ProcessExecutor, RayExecutor
    from genbench.runner import Runner
    from genbench.suite import apply_overrides, load_suite

    n = 40
    res = {}
    t0 = time.perf_counter()
    ex = ProcessExecutor(2, threads=1)
    list(ex.map_unordered(_noop, range(2)))  # pool start-up
    t_start_p = time.perf_counter() - t0
    t0 = time.perf_counter()
    list(ex.map_unordered(_noop, range(n)))
    res["process"] = (time.perf_counter() - t0) / n
    t0 = time.perf_counter()
    os.environ.setdefault("PYTHONPATH", str(ROOT))
    rex = RayExecutor(local_cpus=2, num_cpus=1)
    list(rex.map_unordered(_noop, range(2)))
    t_start_r = time.perf_counter() - t0
    t0 = time.perf_counter()
    list(rex.map_unordered(_noop, range(n)))
    res["ray"] = (time.perf_counter() - t0) / n

    suite = apply_overrides(load_suite("smoke"), datasets=["ring8"])
    walls = {}
    for name, make in (("process", lambda: ProcessExecutor(2, threads=1)), ("ray", lambda: rex)):
        out = tmp / f"smoke-{name}"
        t0 = time.perf_counter()
        s = Runner(suite, out, quiet=True, log=lambda m: None, threads=1, executor=make()).run()
        walls[name] = (time.perf_counter() - t0, len(s.done))
    rex.close()
    lines += ["## Ray executor per-job overhead vs the process executor (local, 2 workers, this machine)", "",
              f"Trivial job (returns its input), {n} jobs after start-up:", "",
              "| executor | start-up (s) | per-job round trip (ms) |", "|---|---|---|",
              f"| process (2 spawned workers) | {t_start_p:.1f} | {1000 * res['process']:.1f} |",
              f"| ray (local instance, 2 CPUs, ray.init included) | {t_start_r:.1f} | {1000 * res['ray']:.1f} |", "",
              "Smoke suite, ring8 jobs (models train and score; 2 at a time):", "",
              "| executor | jobs | wall (s) | wall per job (s) |", "|---|---|---|---|",
              *[f"| {k} | {v[1]} | {v[0]:.1f} | {v[0] / max(1, v[1]):.2f} |" for k, v in walls.items()], "",
              f"Ray's per-job overhead over the process executor: {1000 * (res['ray'] - res['process']):.1f} ms per "
              f"job on trivial jobs (goal < 1 s); on the smoke jobs the wall-time difference per job is "
              f"{(walls['ray'][0] - walls['process'][0]) / max(1, walls['ray'][1]):.2f} s (first tasks in each "
              "fresh Ray worker import torch and genbench, as the process pool's workers do).", ""]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="prdc,rerun,eval,ray")
    ap.add_argument("--out", default=str(ROOT / "reports" / "benchmarks" / "scale.md"))
    ap.add_argument("--eval-extractor", default="inception", help="extractor of the eval section (default inception; "
                    "classifier:fashion-mnist where Inception on the CPU is too slow)")
    a = ap.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    lines = ["# Scale: reference statistics once, cached radii, Ray (benchmarks/bench_scale.py)", "",
             f"Machine: {_machine()}. Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. CPU only "
             f"(no GPU measurement here). Load average at the start: {os.getloadavg()[0]:.1f}, and beside each figure "
             "(other processes share these cores: absolute times are inflated by it; the ratios compare runs "
             "back to back).", ""]
    tmp = Path(tempfile.mkdtemp(prefix="genbench-bench-scale-"))
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from genbench.fileio import atomic_write_text

    try:
        for name in a.only.split(","):
            print(f"bench_scale: {name} ...", file=sys.stderr, flush=True)
            t0, l0, w0 = time.perf_counter(), os.getloadavg()[0], time.strftime("%Y-%m-%d %H:%M", time.gmtime())
            {"prdc": lambda: bench_prdc(lines), "rerun": lambda: bench_rerun(lines, tmp),
             "eval": lambda: bench_eval(lines, tmp, a.eval_extractor), "ray": lambda: bench_ray(lines, tmp)}[name]()
            extra = f" --eval-extractor {a.eval_extractor}" if name == "eval" else ""
            lines += [f"_Measured {w0}-{time.strftime('%H:%M', time.gmtime())} UTC with `python "
                      f"benchmarks/bench_scale.py --only {name}{extra}`; 1-minute load average {l0:.1f} at the "
                      f"start, {os.getloadavg()[0]:.1f} at the end._", ""]
            print(f"bench_scale: {name} done in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
            atomic_write_text(out, "\n".join(lines) + "\n")  # after each section: a later one may not finish
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
