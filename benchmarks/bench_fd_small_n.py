"""Small-sample FD benchmark (issue #21): the exact features route vs the statistics route (genbench's old one)
and clean-fid's sqrtm, in one run on this machine; then the cost of `genbench eval`'s default bootstrap.

    .venv/bin/python benchmarks/bench_fd_small_n.py               # N = 300 and 1000 at 2048-d
    .venv/bin/python benchmarks/bench_fd_small_n.py --sizes 300   # one size

- Time of one FD from 2048-d features, N real = N fake: `CrossGramFD(x, y).value()` (nuclear norm of the n x n
  cross-Gram matrix) vs `frechet_distance(*gaussian_stats(x), *gaussian_stats(y))` (Cholesky/eigh + eigvalsh
  of D x D covariances, what genbench did before) vs clean-fid's `frechet_distance` (scipy sqrtm) on the same
  statistics. The features are ReLU'd correlated Gaussians (non-negative, like Inception's pool3).
- Exactness on a case with a known answer: FD(X, X + c) = |c|^2 (same covariance, means apart by c), as
  relative error of each route.
- 100 bootstrap replicates of FD at N = 300: the features route's replicates (reweighting the cross-Gram
  matrix) vs the statistics route on resampled rows (timed on a few replicates, scaled to 100: stated).
- `genbench eval`'s scoring of 300 vs 300 2048-d features with its default protocol for images (fd, kid, prdc)
  with 0 and 100 bootstrap replicates (compute_metrics, as the runner calls it), and the Inception feature
  extraction time of the 600 images it would also need, measured on a few Fashion-MNIST images and scaled.
Writes the Markdown table to reports/benchmarks/fd_small_n.md (atomically) and prints it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "reports" / "benchmarks" / "fd_small_n.md"


def _features(n: int, d: int, seed: int, shift: float = 0.0):
    import torch

    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=g, dtype=torch.float64) / d ** 0.5
    mix = torch.randn(d, d, generator=torch.Generator().manual_seed(1234), dtype=torch.float64) / d ** 0.5
    return torch.relu((torch.randn(n, d, generator=g, dtype=torch.float64) + shift) @ mix + 0.1 * (
        torch.randn(n, d, generator=g, dtype=torch.float64) @ a))


def _best(fn, repeats: int):
    out, best = None, float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return out, best


def bench_fd(n: int, d: int, repeats: int) -> dict:
    import torch
    from cleanfid.fid import frechet_distance as cleanfid_fd

    from genbench.metrics import CrossGramFD, frechet_distance, gaussian_stats

    x, y = _features(n, d, 1), _features(n, d, 2, shift=0.05)
    new, t_new = _best(lambda: CrossGramFD(x, y).value(), repeats)
    old, t_old = _best(lambda: frechet_distance(*gaussian_stats(x), *gaussian_stats(y)), max(1, repeats - 1))
    (m1, s1), (m2, s2) = gaussian_stats(x), gaussian_stats(y)
    t = time.perf_counter()
    cf = float(cleanfid_fd(m1.numpy(), s1.numpy(), m2.numpy(), s2.numpy()))
    t_cf = time.perf_counter() - t
    c = torch.full((d,), 0.02, dtype=torch.float64)
    exact = float(c.dot(c))
    sx, sc = gaussian_stats(x), gaussian_stats(x + c)
    err = {
        "new": abs(CrossGramFD(x, x + c).value() - exact) / exact,
        "old": abs(frechet_distance(*sx, *sc) - exact) / exact,
        "cleanfid": abs(float(cleanfid_fd(sx[0].numpy(), sx[1].numpy(), sc[0].numpy(), sc[1].numpy())) - exact) / exact,
    }
    return {"n": n, "d": d, "new": new, "old": old, "cleanfid": cf, "t_new": t_new, "t_old": t_old, "t_cf": t_cf,
            "exact": exact, "err": err}


def bench_bootstrap(n: int, d: int, n_boot: int, old_timed: int) -> dict:
    import torch

    from genbench.metrics import CrossGramFD, frechet_distance, gaussian_stats

    x, y = _features(n, d, 1), _features(n, d, 2, shift=0.05)
    g = torch.Generator().manual_seed(0)
    draws = [(torch.randint(0, n, (n,), generator=g), torch.randint(0, n, (n,), generator=g)) for _ in range(n_boot)]
    t = time.perf_counter()
    cg = CrossGramFD(x, y)
    new = [cg.resampled(ir, i_f) for ir, i_f in draws]
    t_new = time.perf_counter() - t
    t = time.perf_counter()
    old = [frechet_distance(*gaussian_stats(x[ir]), *gaussian_stats(y[i_f])) for ir, i_f in draws[:old_timed]]
    t_old = (time.perf_counter() - t) * n_boot / old_timed
    dev = max(abs(a - b) / b for a, b in zip(new, old))
    return {"n": n, "n_boot": n_boot, "t_new": t_new, "t_old": t_old, "old_timed": old_timed, "max_rel_diff": dev}


def bench_eval_scoring(n: int, d: int, n_boot: int) -> dict:
    from genbench.metrics import EvalContext, compute_metrics

    x, y = _features(n, d, 1), _features(n, d, 2, shift=0.05)
    t = time.perf_counter()
    compute_metrics(["fd", "kid", "prdc"], EvalContext(real_features=x, fake_features=y, n_bootstrap=0, seed=0))
    t0 = time.perf_counter() - t
    per = {}
    for name in ("fd", "kid", "prdc"):  # each with its bootstrap; eval computes them one after the other
        ctx = EvalContext(real_features=x, fake_features=y, n_bootstrap=n_boot, seed=0)
        t = time.perf_counter()
        compute_metrics([name], ctx)
        per[name] = time.perf_counter() - t
    return {"n": n, "n_boot": n_boot, "t0": t0, "tb": sum(per.values()), "per_metric": per}


def bench_extraction(n_images: int, n_total: int) -> dict:
    import torch

    from genbench.data import get_dataset
    from genbench.features import get_extractor

    ext = get_extractor("inception", device="cpu")
    x = get_dataset("fashion-mnist").load("test").x[:n_images]
    ext.extract(x[:2], batch_size=2)  # warm-up
    t = time.perf_counter()
    ext.extract(x, batch_size=16)
    dt = time.perf_counter() - t
    return {"n_images": n_images, "seconds": dt, "per_image": dt / n_images, "n_total": n_total,
            "total": dt / n_images * n_total, "threads": torch.get_num_threads()}


def render(fds, boot, ev, ex, meta) -> str:
    lines = [
        "# FD at small N: exact features route vs statistics route (issue #21)",
        "",
        f"Generated by `{meta['command']}` on {meta['date']} UTC. Machine: {meta['cpu']}, {meta['cores']} cores "
        f"(shared), torch {meta['torch']}; load average at start / end: {meta['load_start']} / {meta['load_end']}. "
        "Wall-clock seconds, CPU only; one run on a shared machine, so the times are noisy, the ratios less so.",
        "",
        "## One FD from 2048-d features (N real = N fake)",
        "",
        "| N x D | features route (new) | statistics route (old genbench) | clean-fid sqrtm | old / new | clean-fid / new "
        "| rel. error on FD(X, X+c) = abs(c)^2: new / old / clean-fid | new vs old value |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in fds:
        e = r["err"]
        lines.append(
            f"| {r['n']} x {r['d']} | {r['t_new']:.3f} s | {r['t_old']:.2f} s | {r['t_cf']:.2f} s | "
            f"**{r['t_old'] / r['t_new']:.0f}x** | {r['t_cf'] / r['t_new']:.0f}x | "
            f"{e['new']:.1e} / {e['old']:.1e} / {e['cleanfid']:.1e} | "
            f"{r['new']:.10g} vs {r['old']:.10g} (rel. {abs(r['new'] - r['old']) / r['new']:.1e}) |")
    b = boot
    lines += [
        "",
        f"## {b['n_boot']} bootstrap replicates of FD at N = {b['n']}, 2048-d",
        "",
        f"Features route (replicates by reweighting the cross-Gram matrix): **{b['t_new']:.2f} s**. Statistics route on "
        f"the resampled rows: {b['t_old']:.0f} s (timed on {b['old_timed']} replicates, scaled to {b['n_boot']}): "
        f"**{b['t_old'] / b['t_new']:.0f}x** slower. Largest relative difference between the two routes' replicates: "
        f"{b['max_rel_diff']:.1e} (the statistics route's rounding error).",
        "",
        f"## `genbench eval` scoring, 300 vs 300 2048-d features, metrics fd, kid, prdc (its default image protocol)",
        "",
        "| bootstrap replicates | scoring time | of which fd / kid / prdc (each with the bootstrap) |",
        "|---|---|---|",
        f"| 0 | {ev['t0']:.2f} s | — |",
        f"| {ev['n_boot']} | {ev['tb']:.2f} s | {ev['per_metric']['fd']:.2f} / {ev['per_metric']['kid']:.2f} / "
        f"{ev['per_metric']['prdc']:.2f} s |",
        "",
    ]
    if ex:
        cost = ev["tb"] - ev["t0"]
        lines += [
            f"Inception feature extraction (the rest of `eval`'s time): {ex['per_image']:.2f} s per image here "
            f"({ex['n_images']} Fashion-MNIST images timed, {ex['threads']} threads), so ~{ex['total']:.0f} s for the "
            f"{ex['n_total']} images of 300 vs 300. The {ev['n_boot']} bootstrap replicates add {cost:.1f} s: "
            f"**{100 * cost / ex['total']:.0f}%** on top of feature extraction (goal <= 20%).",
            "",
        ]
    lines += ["Issue #21 measured before this change: 11 min 19 s for `genbench eval` with 100 replicates on 300 vs "
              "300 images, 115 s without (111 s of it feature extraction); 2.1-2.7 s per FD.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    from genbench.fileio import atomic_write_text

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="300,1000", help="N values for the single-FD timing (default 300,1000)")
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=3, help="repeats of the single FD (best taken)")
    ap.add_argument("--old-timed", type=int, default=5, help="statistics-route replicates actually timed (default 5)")
    ap.add_argument("--extract-images", type=int, default=16,
                    help="Fashion-MNIST images timed through Inception (0: skip; needs the fid-inception asset)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--eval-overhead-only", action="store_true",
                    help="only the eval scoring with and without 100 replicates and the Inception extraction time: "
                         "print the bootstrap's share of extraction (issue #21's figure); the report is not rewritten")
    a = ap.parse_args(argv)
    import platform

    import torch

    warnings.simplefilter("ignore")  # singular-covariance warnings: expected here
    sizes = [int(s) for s in a.sizes.split(",") if s.strip()]
    cpu = platform.processor() or "unknown"
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    meta = {"command": "benchmarks/bench_fd_small_n.py" + (f" --sizes {a.sizes}" if a.sizes != "300,1000" else ""),
            "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "cpu": cpu, "cores": os.cpu_count(),
            "torch": torch.__version__, "load_start": " ".join(f"{v:.1f}" for v in os.getloadavg())}
    if a.eval_overhead_only:
        ev = bench_eval_scoring(300, a.dim, 100)
        ex = bench_extraction(a.extract_images, 600)
        cost = ev["tb"] - ev["t0"]
        print(f"eval scoring 300 vs 300 x {a.dim}: {ev['t0']:.2f} s without replicates, {ev['tb']:.2f} s with "
              f"{ev['n_boot']} (fd / kid / prdc {ev['per_metric']['fd']:.2f} / {ev['per_metric']['kid']:.2f} / "
              f"{ev['per_metric']['prdc']:.2f} s); Inception extraction of 600 images ~{ex['total']:.0f} s "
              f"({ex['per_image']:.2f} s/image over {ex['n_images']}); bootstrap share {100 * cost / ex['total']:.1f}% "
              f"(goal <= 20%); load {meta['load_start']} -> {' '.join(f'{v:.1f}' for v in os.getloadavg())}; {cpu}")
        return 0
    fds = []
    for n in sizes:
        print(f"FD at {n} x {a.dim} ...", flush=True)
        fds.append(bench_fd(n, a.dim, a.repeats))
    print("bootstrap at 300 ...", flush=True)
    boot = bench_bootstrap(300, a.dim, 100, a.old_timed)
    print("eval scoring ...", flush=True)
    ev = bench_eval_scoring(300, a.dim, 100)
    ex = None
    if a.extract_images > 0:
        print("Inception extraction ...", flush=True)
        ex = bench_extraction(a.extract_images, 600)
    meta["load_end"] = " ".join(f"{v:.1f}" for v in os.getloadavg())
    text = render(fds, boot, ev, ex, meta)
    atomic_write_text(a.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
