"""Metric engine benchmark: genbench vs the peer implementation on the same inputs, in one run on this machine.

    .venv/bin/python benchmarks/bench_metrics.py            # FD at 2048-d, P/R/D/C at N=10000, 2048-d
    .venv/bin/python benchmarks/bench_metrics.py --quick    # smaller sizes (seconds, not minutes)

- FD from 2048-d statistics: genbench `frechet_distance` (Cholesky + eigvalsh, torch float64) vs clean-fid's
  `frechet_distance` (scipy.linalg.sqrtm). Same statistics; time ratio and both values.
- P/R/D/C at N real = N fake = 10000, 2048-d (float64 features): genbench `prdc(convention="prdc")` vs the
  `prdc` package's `compute_prdc(nearest_k=5)`. Each runs in its own child process that loads the same .npy
  files; peak memory is the child's own peak resident set (VmHWM), reported both in total and as the
  increase over the resident set just before the call (inputs and libraries already loaded).
  Wall-clock and process CPU seconds are both reported; `--threads N` gives both P/R/D/C tools the same N
  threads (default: each library's own default, 2 here), e.g. `--threads 1` for CPU seconds that a loaded
  machine does not distort.
Writes the Markdown table to reports/benchmarks/metrics.md (atomically) and prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "reports" / "benchmarks" / "metrics.md"
SMALL_N_NOTE = ("Small-N FD (N < D: the exact cross-Gram route vs the singular-statistics route, at 300 x 2048 and "
                "1000 x 2048) and the cost of `genbench eval`'s 100 bootstrap replicates against feature extraction "
                "are in [fd_small_n.md](fd_small_n.md) (`benchmarks/bench_fd_small_n.py`).")


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux clear_refs 5); False where not permitted."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def child(tool: str, data_dir: str, k: int) -> None:
    import numpy as np

    if tool == "prdc-package":
        from prdc import compute_prdc

        def run(r, f):
            import contextlib
            import io

            with contextlib.redirect_stdout(io.StringIO()):  # it prints the set sizes
                return {key: float(v) for key, v in compute_prdc(r, f, nearest_k=k).items()}

        load = np.load
    else:
        import torch

        from genbench.metrics import prdc

        def run(r, f):
            return prdc(r, f, convention="prdc", nearest_k=k)

        def load(p):
            return torch.from_numpy(np.load(p))

    real, fake = load(os.path.join(data_dir, "real.npy")), load(os.path.join(data_dir, "fake.npy"))
    run(real[:50], fake[:50])  # warm-up: lazily loaded BLAS kernels and thread pools are not the algorithm's memory
    rss_before = _status_kb("VmRSS")
    reset = _reset_peak()
    t0, c0 = time.perf_counter(), time.process_time()
    values = run(real, fake)
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    # VmHWM: this process's own peak (ru_maxrss would include the parent's peak, inherited across fork/exec)
    peak = _status_kb("VmHWM")
    print(json.dumps({
        "tool": tool, "seconds": seconds, "cpu_seconds": cpu_seconds, "threads": _threads(tool), "values": values, "rss_before_mb": rss_before / 1024,
        "peak_mb": peak / 1024, "peak_increase_mb": (peak - rss_before) / 1024, "peak_reset": reset,
    }))


def _threads(tool: str) -> int:
    """Threads the tool's compute library may use in this process (default settings, as a user gets them)."""
    if tool == "genbench":
        import torch

        return torch.get_num_threads()
    try:
        from threadpoolctl import threadpool_info

        return max((p.get("num_threads", 1) for p in threadpool_info()), default=1)
    except ImportError:
        return os.cpu_count() or 1


def run_child(tool: str, data_dir: str, k: int, threads: int = 0) -> dict:
    cmd = [sys.executable, __file__, "--child", tool, "--data", data_dir, "--k", str(k)]
    # glibc raises its mmap threshold after large frees, then keeps freed blocks in the heap: the resident set
    # would count memory the algorithm already gave back. The static default threshold (128 KiB) is pinned
    # for both tools alike, so peak RSS measures live memory.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    if threads > 0:  # the same thread count for both tools: torch's, MKL's and OpenBLAS's pools
        env.update({v: str(threads) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")})
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_fd(dim: int, repeats: int) -> dict:
    import numpy as np
    import torch
    from cleanfid.fid import frechet_distance as cleanfid_fd

    from genbench.metrics import frechet_distance

    rng = np.random.default_rng(0)
    stats = []
    for shift in (0.0, 0.1):
        a = rng.standard_normal((dim, dim)) / np.sqrt(dim)
        x = rng.standard_normal((2 * dim + 100, dim)) @ a + shift
        stats += [x.mean(0), np.cov(x, rowvar=False)]
    mu1, s1, mu2, s2 = stats
    t_ours, v_ours = [], None
    frechet_distance(mu1[:8], s1[:8, :8], mu2[:8], s2[:8, :8])  # warm-up of the torch linalg stack
    for _ in range(repeats):
        t = time.perf_counter()
        v_ours = frechet_distance(torch.from_numpy(mu1), torch.from_numpy(s1), torch.from_numpy(mu2), torch.from_numpy(s2))
        t_ours.append(time.perf_counter() - t)
    t = time.perf_counter()
    v_ref = float(cleanfid_fd(mu1, s1, mu2, s2))
    t_ref = time.perf_counter() - t
    return {"dim": dim, "ours_s": min(t_ours), "ref_s": t_ref, "ours": v_ours, "ref": v_ref}


def bench_prdc(n: int, dim: int, k: int, repeats: int, threads: int = 0) -> dict:
    import numpy as np

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="genbench-bench-") as d:
        np.save(os.path.join(d, "real.npy"), rng.standard_normal((n, dim)))
        np.save(os.path.join(d, "fake.npy"), rng.standard_normal((n, dim)) + 0.1)
        runs: dict = {"prdc-package": [], "genbench": []}
        for _ in range(repeats):  # interleaved, so background load hits both alike
            for tool in runs:
                runs[tool].append(run_child(tool, d, k, threads))
    best = {tool: min(rs, key=lambda r: r["seconds"]) for tool, rs in runs.items()}
    return {"n": n, "dim": dim, "k": k, "runs": runs, "best": best}


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def render(fd: dict, pr: dict, meta: dict) -> str:
    g, p = pr["best"]["genbench"], pr["best"]["prdc-package"]
    same = all(g["values"][key] == p["values"][key] for key in p["values"])
    fd_rel = abs(fd["ours"] - fd["ref"]) / abs(fd["ref"])
    lines = [
        "# Metric engine benchmark",
        "",
        f"Generated by `{meta['command']}` on {meta['date']} UTC.",
        f"Machine: {meta['cpu']}, {meta['cores']} cores (shared), torch {meta['torch']}, numpy {meta['numpy']}, "
        f"scipy {meta['scipy']}; load average at start / end: {meta['load_start']} / {meta['load_end']}.",
        "Times are wall-clock seconds, the best of the interleaved repeats; CPU only.",
        "",
        "| check | genbench | peer | ratio | goal | values |",
        "|---|---|---|---|---|---|",
        f"| FD from {fd['dim']}-d statistics: time | {fd['ours_s']:.2f} s (Cholesky + eigvalsh, torch float64) | "
        f"{fd['ref_s']:.2f} s (clean-fid `frechet_distance`, scipy `sqrtm`) | **{fd['ref_s'] / fd['ours_s']:.1f}x faster** | >= 10x | "
        f"{fd['ours']:.10g} vs {fd['ref']:.10g} (rel. diff {fd_rel:.1e}) |",
        f"| P/R/D/C, N = {pr['n']} + {pr['n']}, {pr['dim']}-d, k = {pr['k']}: time | {g['seconds']:.1f} s (`prdc(convention=\"prdc\")`) | "
        f"{p['seconds']:.1f} s (`prdc` package `compute_prdc`) | **{p['seconds'] / g['seconds']:.1f}x faster** | >= 3x | "
        f"{'identical' if same else 'DIFFERENT'}: " + ", ".join(f"{key} {g['values'][key]:.4f}" for key in ("precision", "recall", "density", "coverage")) + " |",
        f"| P/R/D/C: process CPU time (all threads) | {g['cpu_seconds']:.1f} s (threads: {g['threads']}) | {p['cpu_seconds']:.1f} s "
        f"(threads: {p['threads']}) | {p['cpu_seconds'] / g['cpu_seconds']:.1f}x less | — | the same runs; with one thread per tool "
        "(`--threads 1`) the steadiest figure on a loaded machine |",
        f"| P/R/D/C: peak memory increase during the call | {g['peak_increase_mb']:.0f} MiB | {p['peak_increase_mb']:.0f} MiB | "
        f"**{g['peak_increase_mb'] / p['peak_increase_mb']:.3f}** | <= 0.1 | inputs 2 x {pr['n'] * pr['dim'] * 8 / 2**20:.0f} MiB float64, loaded before the call |",
        f"| P/R/D/C: peak resident set of the whole process | {g['peak_mb']:.0f} MiB | {p['peak_mb']:.0f} MiB | "
        f"{g['peak_mb'] / p['peak_mb']:.2f} | — | includes inputs, interpreter and libraries (torch vs numpy/sklearn) |",
        "",
        "All P/R/D/C runs (wall seconds / process CPU seconds, threads): " + "; ".join(
            f"{tool}: " + ", ".join(f"{r['seconds']:.1f} / {r.get('cpu_seconds', float('nan')):.1f} (threads: {r.get('threads', '?')})" for r in rs)
            for tool, rs in pr["runs"].items()
        ) + ". Wall-clock ratios are fair while the load average stays below the core count; above it, threads "
        "that wait for each other lose whole time slices (and spinning threads inflate CPU seconds), so compare "
        "CPU seconds of one-thread runs (`--threads 1`) there.",
        "",
        "Peak memory is measured in a separate child process per run: the peak resident set (VmHWM, reset with "
        "/proc/self/clear_refs just before the call when permitted) minus the resident set just before the call, "
        "after a small warm-up call. Both children run with MALLOC_MMAP_THRESHOLD_=131072 (glibc's static "
        "default), so memory a tool has freed is not counted as resident.",
        "",
        SMALL_N_NOTE,
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    from genbench.fileio import atomic_write_text

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="N=2000 for P/R/D/C and 512-d FD (a smoke run)")
    ap.add_argument("--n", type=int, default=None, help="P/R/D/C samples per set (default 10000; --quick 2000)")
    ap.add_argument("--dim", type=int, default=2048, help="feature dimension (default 2048)")
    ap.add_argument("--repeats", type=int, default=2, help="interleaved repeats per tool for P/R/D/C (default 2)")
    ap.add_argument("--out", type=Path, default=OUT, help=f"Markdown output (default {OUT.relative_to(ROOT)})")
    ap.add_argument("--child", choices=("prdc-package", "genbench"), help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--k", type=int, default=5, help="nearest_k for P/R/D/C (default 5, the prdc README's)")
    ap.add_argument("--threads", type=int, default=0,
                    help="threads for both P/R/D/C tools (OMP/MKL/OpenBLAS); default 0: each library's default")
    a = ap.parse_args(argv)
    if a.child:
        child(a.child, a.data, a.k)
        return 0
    import numpy
    import scipy
    import torch

    n = a.n or (2000 if a.quick else 10000)
    fd_dim = 512 if a.quick else a.dim
    meta = {
        "command": "benchmarks/bench_metrics.py" + (" --quick" if a.quick else "") + (f" --n {a.n}" if a.n else "")
        + (f" --repeats {a.repeats}" if a.repeats != 2 else "") + (f" --threads {a.threads}" if a.threads else ""),
        "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "cpu": _cpu_name(), "cores": os.cpu_count(), "torch": torch.__version__, "numpy": numpy.__version__,
        "scipy": scipy.__version__, "load_start": " ".join(f"{x:.1f}" for x in os.getloadavg()),
    }
    print(f"FD at {fd_dim}-d ...", flush=True)
    fd = bench_fd(fd_dim, repeats=3)
    print(f"P/R/D/C at N={n}, {a.dim}-d, {a.repeats} interleaved repeat(s) per tool ...", flush=True)
    pr = bench_prdc(n, a.dim, a.k, a.repeats, a.threads)
    meta["load_end"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
    text = render(fd, pr, meta)
    atomic_write_text(a.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
