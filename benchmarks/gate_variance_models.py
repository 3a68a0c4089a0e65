"""Would another seed-noise model fix the gate's false alarms on seed reruns? (docs/gate.md, *Confirmation seeds*)

    .venv/bin/python benchmarks/gate_variance_models.py --sweep runs/calib-quick runs/calib-quick2 \
        --injections runs/gate-injections

For each candidate noise model: the leave-one-seed-out clean reruns of benchmarks/bench_gate.py (seed k vs seed 0,
calibrated on every seed but k: how many flag a regression) and the injected regressions already trained by
`bench_gate.py --inject` (seed 0 of each, read from --injections: which datasets are still caught). Nothing is
trained. Candidates:
- current: per score, the seed spread of both sides pooled with its calibration (genbench/results/noise.py);
- moderated (empirical Bayes, as limma): each score's calibrated variance shrunk towards the pooled variance of
  the same (budget, dataset, metric, variant) over all models, with d0 prior degrees of freedom;
- max(own, pooled): each score's calibrated sd raised to that pooled sd when it is smaller;
- t with df capped at 1, 2, 3: heavier tails for the same sd.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import pandas as pd  # noqa: E402

import genbench.results.compare as C  # noqa: E402
from genbench.results.noise import CalibrationEntry  # noqa: E402

import bench_gate as B  # noqa: E402


def pooled(cal) -> dict:
    pool = {}
    for (b, ds, _m, met, v), e in cal.entries.items():
        s = pool.setdefault((b, ds, met, v), [0.0, 0])
        s[0] += e.sd ** 2 * e.df
        s[1] += e.df
    return pool


def moderated(d0: int):
    def hook(cal):
        pool = pooled(cal)
        for key, e in list(cal.entries.items()):
            b, ds, _m, met, v = key
            ss, df = pool[(b, ds, met, v)]
            if df > e.df:
                s0 = ss / df
                cal.entries[key] = CalibrationEntry(math.sqrt((d0 * s0 + e.df * e.sd ** 2) / (d0 + e.df)),
                                                    e.n_seeds + d0, e.protocol)
    return hook


def max_pooled(cal):
    pool = pooled(cal)
    for key, e in list(cal.entries.items()):
        b, ds, _m, met, v = key
        ss, df = pool[(b, ds, met, v)]
        cal.entries[key] = CalibrationEntry(max(e.sd, math.sqrt(ss / df)), e.n_seeds, e.protocol)


def evaluate(sweep, injections: Path, cal_hook=None, df_cap=None) -> tuple[list, dict]:
    original = C.noise_for
    if df_cap is not None:
        def capped(x, y, cal):
            n = original(x, y, cal)
            if math.isfinite(n.df):
                n.df = min(n.df, df_cap)
            return n
        C.noise_for = capped
    try:
        seeds = sorted(int(s) for s in sweep["seed"].unique())
        base = sweep[sweep["seed"] == seeds[0]]
        flags = []
        for k in seeds[1:]:
            cal = B.calibration_from(sweep, [s for s in seeds if s != k])
            if cal_hook:
                cal_hook(cal)
            c = C.compare_frames(base, sweep[sweep["seed"] == k].assign(seed=0), calibration=cal, timing=False)
            flags.append(len(c.regressions))
        cal = B.calibration_from(sweep, seeds)
        if cal_hook:
            cal_hook(cal)
        caught = {}
        for name, (model, _knob, _cls) in B.INJECTIONS.items():
            inj = C.load_results(injections / name)
            inj = inj[inj["seed"] == 0]
            c = C.compare_frames(base, pd.concat([base[base["model"] != model], inj], ignore_index=True),
                                 calibration=cal, timing=False)
            caught[name] = sorted({r.dataset for r in c.regressions})
        return flags, caught
    finally:
        C.noise_for = original


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sweep", required=True, nargs="+")
    ap.add_argument("--injections", default=str(ROOT / "runs" / "gate-injections"))
    args = ap.parse_args()
    sweep = pd.concat([C.load_results(d) for d in args.sweep], ignore_index=True)
    sweep = sweep[~sweep.duplicated(["budget", "dataset", "model", "metric", "variant", "seed"])]
    candidates = [("current (genbench/results/noise.py)", {}), *[(f"moderated, d0 = {d}", {"cal_hook": moderated(d)})
                                                         for d in (2, 4, 10)],
                  ("max(own sd, pooled sd over models)", {"cal_hook": max_pooled}),
                  *[(f"t with df capped at {c}", {"df_cap": c}) for c in (1, 2, 3)]]
    print("| noise model | scores flagged per clean rerun (seeds 1-5) | false alarms | injections caught (datasets) |")
    print("|---|---|---|---|")
    for label, kw in candidates:
        flags, caught = evaluate(sweep, Path(args.injections), **kw)
        n = sum(bool(c) for c in caught.values())
        print(f"| {label} | {flags} | {sum(map(bool, flags))} of {len(flags)} | {n} of {len(caught)} ("
              + "; ".join(f"{k}: {', '.join(v) or 'none'}" for k, v in caught.items()) + ") |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
