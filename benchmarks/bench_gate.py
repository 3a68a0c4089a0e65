"""The regression gate's false alarms and detections (reports/benchmarks/gate.md).

    .venv/bin/python benchmarks/bench_gate.py --sweep runs/calib-quick [runs/calib-quick2] [--reference-commit d43db0f] [--inject]

- **False alarms**: clean reruns that must pass. From a seed sweep of the quick suite (`genbench run quick --seeds
  0,1,2,3,4,5 --out runs/calib-quick`): seed 0 as the baseline, each other seed k as the new run, judged with a
  calibration measured on every seed but k (as in use: the reference's seed is in the committed calibration, a
  rerun on another machine is a draw the calibration never saw). With
  `--reference-commit`, also the reports/quick committed at that commit (made on another CPU kind) against seed 0
  here: the datasets whose instrument is unchanged are compared; the others must come out "not comparable".
  With `--threads-run DIR`: a rerun of seed 0 with another thread count.
- **Detections** (`--inject`): each injected regression (tests/helpers/gate_injections.py) is trained and scored
  on the quick suite's protocol, one seed (0), and compared with seed 0 of the sweep, calibrated on all its seeds:
  GAN at a quarter of its steps, VAE with a blurred (images) / shifted (points) decoder output, DDPM sampled with
  far fewer steps. Reported: the worst-hit score, its change, noise and effect size (change / noise), verdict.
- **Confirmation** (`--confirm-seeds N`, what `genbench check` does by default with N = 2): a flagged job is judged
  again with N more seeds on the new side. For the clean reruns the extra seeds are other seeds of the sweep (not
  the baseline's, not the rerun's), and the calibration of a confirmed job leaves every new-side seed out; for
  the injections, the flagged (dataset, injected model) jobs are trained and scored with seeds 1..N.

Counts are written to reports/benchmarks/gate.md (and gate.json).
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "helpers"))

import pandas as pd  # noqa: E402

from genbench.results.compare import compare_frames, is_timing, load_results, protocol_fingerprint  # noqa: E402
from genbench.env_info import hardware  # noqa: E402
from genbench.fileio import atomic_write_text  # noqa: E402
from genbench.results.noise import Calibration, make_calibration  # noqa: E402
from genbench.results.paired import DEFAULT_PAIRED_BOOT, PairedInputs  # noqa: E402
from genbench.results.stored_features import FeatureIndex, feature_index  # noqa: E402

PAIRED_BOOT = DEFAULT_PAIRED_BOOT  # replicates of the paired bootstrap (--paired-boot; 0: the test is off)
SWEEP_FEATURES = FeatureIndex(reason="no sweep features loaded")


def load_features(dirs) -> FeatureIndex:
    """The stored features of one or more run directories, merged (the first directory wins a duplicate job)."""
    idx = FeatureIndex()
    for d in dirs:
        one = feature_index(d, f"sweep {d}")
        if one.reason:
            return one
        for k, v in one.entries.items():
            idx.entries.setdefault(k, v)
    return idx


def as_seed(idx: FeatureIndex, k: int, to: int = 0) -> FeatureIndex:
    """Seed k's stored features filed under seed `to`: the rerun of seed k presented as a rerun of seed `to`."""
    return FeatureIndex({(d, m, v, to): f for (d, m, v, s), f in idx.entries.items() if int(s) == k}, idx.reason)


def with_injection(out, name: str) -> FeatureIndex:
    """The sweep's stored features with those of the injected run in `out` in place of its model's."""
    inj = feature_index(out, f"injection {name}")
    return FeatureIndex({**SWEEP_FEATURES.entries, **inj.entries}, SWEEP_FEATURES.reason or inj.reason)


def paired(base: FeatureIndex, new: FeatureIndex):
    return PairedInputs(base, new, PAIRED_BOOT) if PAIRED_BOOT else None

OUT_MD = ROOT / "reports" / "benchmarks" / "gate.md"
OUT_JSON = ROOT / "reports" / "benchmarks" / "gate.json"


def calibration_from(frame: pd.DataFrame, seeds: list) -> Calibration:
    part = frame[frame["seed"].isin(seeds) & ~is_timing(frame)]
    blob = make_calibration(part, {"suite": "quick", "machine": hardware()}, protocol_fingerprint)
    cal = Calibration()
    cal.add(blob["spreads"], f"seeds {seeds} of the sweep", {"seeds": seeds, "suite": "quick"})
    return cal


def summarise(cmp) -> dict:
    return {"exit": cmp.exit_code, "compared": sum(r.verdict not in ("new", "missing", "not compared") for r in cmp.rows),
            "regressed": [f"{r.dataset}/{r.model}/{r.metric}{'/' + r.variant if r.variant else ''}"
                          for r in cmp.regressions],
            "paired": sum("paired bootstrap" in r.noise_source for r in cmp.rows),
            "not_comparable": len(cmp.problems), "timing_not_compared": sum(r.verdict == "not compared" for r in cmp.rows)}


def confirm_from_sweep(sweep: pd.DataFrame, base: pd.DataFrame, k: int, cmp, n: int) -> dict:
    """The rerun of seed k judged again after its flagged jobs got n more seeds (other seeds of the sweep, never
    the baseline's); a confirmed job's calibration leaves every one of its new-side seeds out."""
    seeds = sorted(int(s) for s in sweep["seed"].unique())
    flagged = sorted({(r.dataset, r.model) for r in cmp.regressions})
    new = [sweep[sweep["seed"] == k]]
    cal = calibration_from(sweep, [s for s in seeds if s != k])
    used = {}
    for ds, model in flagged:
        job = sweep[(sweep["dataset"] == ds) & (sweep["model"] == model)]
        extra = sorted(set(int(s) for s in job["seed"]) - {seeds[0], k})[:n]
        used[f"{ds}/{model}"] = extra
        new.append(job[job["seed"].isin(extra)])
        for key in [q for q in cal.entries if q[1] == ds and q[2] == model]:
            del cal.entries[key]
        rest = [s for s in seeds if s not in {k, *extra}]
        if len(set(job["seed"]) & set(rest)) >= 3:
            cal.entries.update(calibration_from(job, rest).entries)
    res = summarise(compare_frames(base, pd.concat(new, ignore_index=True), calibration=cal, timing=False,
                                   paired=paired(SWEEP_FEATURES, SWEEP_FEATURES)))
    return {"confirm_seeds": used, "confirmed": res}


def false_alarms(sweep: pd.DataFrame, args) -> list[dict]:
    seeds = sorted(int(s) for s in sweep["seed"].unique())
    rows = []
    base = sweep[sweep["seed"] == seeds[0]]
    for k in seeds[1:]:
        rest = [s for s in seeds if s != k]  # the reference's seed is in its calibration; the rerun's is not
        cal = calibration_from(sweep, rest)
        new = sweep[sweep["seed"] == k].assign(seed=0)
        cmp = compare_frames(base, new, calibration=cal, timing=False,
                             paired=paired(SWEEP_FEATURES, as_seed(SWEEP_FEATURES, k, seeds[0])))
        res = summarise(cmp)
        if args.confirm_seeds and cmp.regressions:
            res.update(confirm_from_sweep(sweep, base, k, cmp, args.confirm_seeds))
        rows.append({"rerun": f"seed {k} vs seed {seeds[0]} (same machine; quality only: the sweep's timings were "
                              "taken under load)", "calibration": f"all seeds but {k}", **res})
    if args.threads_run:
        other = load_results(args.threads_run)
        cal = calibration_from(sweep, seeds)
        res = summarise(compare_frames(base, other, calibration=cal, timing=True,
                                       paired=paired(SWEEP_FEATURES, feature_index(args.threads_run, "threads run"))))
        rows.append({"rerun": f"seed {seeds[0]} rerun with other threads ({args.threads_run})",
                     "calibration": f"all seeds {seeds}", **res})
    if args.reference_commit:
        blob = subprocess.run(["git", "show", f"{args.reference_commit}:reports/quick/results.csv"], cwd=ROOT,
                              capture_output=True, check=True).stdout
        ref = pd.read_csv(io.BytesIO(blob), keep_default_na=False,
                          na_values={"value": [""], "ci_low": [""], "ci_high": [""]})
        from genbench.results.result_files import _normalise

        ref = _normalise(ref, Path("reference.csv"))
        cal = calibration_from(sweep, seeds)
        cmp = compare_frames(ref, base, calibration=cal, timing=True)
        res = summarise(cmp)
        same = [d for d in sorted(set(ref["dataset"])) if not any(p.startswith(d + "/") for p in cmp.problems)]
        rows.append({"rerun": f"reports/quick at {args.reference_commit} (another CPU kind, with AMX) vs seed "
                              f"{seeds[0]} here", "calibration": f"all seeds {seeds}", **res,
                     "note": f"comparable datasets: {', '.join(same)}; the others changed instrument "
                             "(the classifier is now pinned)"})
        ok = ref[ref["dataset"].isin(same)]
        res2 = summarise(compare_frames(ok, base[base["dataset"].isin(same)], calibration=cal, timing=True))
        rows.append({"rerun": f"same, restricted to the datasets with the same instrument ({', '.join(same)})",
                     "calibration": f"all seeds {seeds}", **res2})
    return rows


INJECTIONS = {
    # name: (model, config knob divided (steps: by 4, sample_steps: by 8), injected class)
    "gan-quarter-steps": ("gan", "steps", None),
    "vae-blurred-decoder": ("vae", None, "BlurredVAE"),
    "ddpm-few-sampling-steps": ("ddpm", "sample_steps", None),
}


def detections(sweep: pd.DataFrame, out_root: Path, confirm_seeds: int = 0) -> list[dict]:
    import torch

    from gate_injections import BlurredVAE, injected
    from genbench.data import get_dataset
    from genbench.runner import Runner
    from genbench.suite import apply_overrides, load_suite
    from reference_models import create_model

    seeds = sorted(int(s) for s in sweep["seed"].unique())
    cal = calibration_from(sweep, seeds)
    base = sweep[sweep["seed"] == seeds[0]]
    rows = []
    torch.set_num_threads(1)
    for name, (model, knob, cls) in INJECTIONS.items():
        suite = apply_overrides(load_suite("quick"), models=[model], seeds=[0])
        for spec in suite.models:
            if spec.name != model or knob is None:
                continue
            for d in suite.datasets:
                info = get_dataset(d.name).info
                if info.modality not in ("image", "points"):
                    continue
                base_cfg = create_model(model, info, "quick", spec.overrides_for(d.name) or None).config
                value = max(1, int(getattr(base_cfg, knob)) // (4 if knob == "steps" else 8))
                spec.dataset_overrides = {**(spec.dataset_overrides or {}),
                                          d.name: {**(spec.dataset_overrides or {}).get(d.name, {}), knob: value}}
        out = out_root / name

        def run(s):
            if cls:  # (a finished run in `out` is resumed, i.e. reused)
                with injected(BlurredVAE):
                    Runner(s, out, quiet=True, workers=1, log=lambda m: None).run()
            else:
                Runner(s, out, quiet=True, workers=1, log=lambda m: None).run()

        t0 = time.perf_counter()
        run(suite)
        secs = time.perf_counter() - t0
        # the whole suite as a user's rerun would present it: every other model as in the baseline, the injected
        # model's rows from its run; so the multiple-testing family is the suite's, not one model's
        inj = load_results(out)
        new = pd.concat([base[base["model"] != model], inj[inj["seed"] == 0]], ignore_index=True)
        cmp = compare_frames(base, new, calibration=cal, timing=False,
                             paired=paired(SWEEP_FEATURES, with_injection(out, name)))
        confirmed = None
        if confirm_seeds:
            flagged_ds = sorted({r.dataset for r in cmp.regressions})
            extra = list(range(1, 1 + confirm_seeds))
            if flagged_ds:
                run(apply_overrides(suite, datasets=flagged_ds, seeds=extra))
            inj = load_results(out)
            keep = inj["seed"].isin([0, *extra]) & (inj["dataset"].isin(flagged_ds) | (inj["seed"] == 0))
            new2 = pd.concat([base[base["model"] != model], inj[keep]], ignore_index=True)
            confirmed = compare_frames(base, new2, calibration=cal, timing=False,  # features of the extra seeds too
                                       paired=paired(SWEEP_FEATURES, with_injection(out, name)))
        for ds in sorted(set(new["dataset"])):
            rs = [r for r in cmp.rows if r.dataset == ds and r.model == model and r.delta is not None and r.noise > 0]
            flagged = [r for r in cmp.regressions if r.dataset == ds]
            if ds not in set(load_results(out)["dataset"]):
                continue
            worst = max(rs, key=lambda r: (-(r.delta) if r.higher_is_better else r.delta) / r.noise, default=None)
            conf = {}
            if confirmed is not None:
                cf = [r for r in confirmed.regressions if r.dataset == ds]
                conf = {"confirmed": bool(cf) if flagged else None,
                        "confirmed_flagged": [r.metric + (f"/{r.variant}" if r.variant else "") for r in cf]}
            rows.append({"injection": name, "dataset": ds, "detected": bool(flagged), **conf,
                         "flagged": [r.metric + (f"/{r.variant}" if r.variant else "") for r in flagged],
                         "worst": worst.metric if worst else None,
                         "baseline": worst.baseline if worst else None, "new": worst.new if worst else None,
                         "noise_se": worst.noise if worst else None,
                         "worst_paired": bool(worst and "paired bootstrap" in worst.noise_source),
                         "effect": ((-(worst.delta) if worst.higher_is_better else worst.delta) / worst.noise)
                         if worst else None, "seconds": round(secs, 1), "exit": cmp.exit_code})
    return rows


def write(fa: list, det: list, args) -> None:
    lines = ["# Regression gate: false alarms and detections", "",
             f"Made by `{' '.join(['.venv/bin/python', 'benchmarks/bench_gate.py', *sys.argv[1:]])}` on "
             f"{hardware()} ({time.strftime('%Y-%m-%d')}). Gate: `genbench compare` defaults (family-wise alpha "
             "0.05, Holm over all compared scores; tolerances from genbench/results/tolerances.toml; noise = max(bootstrap, "
             "seed spread pooled with the calibration)). "
             + (f"FD, KID and P/R/D/C changes are judged with the paired bootstrap ({PAIRED_BOOT} replicates) "
                "where both sides stored their features (column *paired*)." if PAIRED_BOOT else
                "Paired bootstrap off (--paired-boot 0)."), "",
             "## False alarms (clean reruns: every one must pass)", "",
             "| rerun | calibration | exit | scores compared | paired | regressions flagged | not comparable | timings not compared |"
             + (f" after confirmation ({args.confirm_seeds} more seeds) |" if args.confirm_seeds else ""),
             "|---|---|---|---|---|---|---|---|" + ("---|" if args.confirm_seeds else "")]
    for r in fa:
        conf = ""
        if args.confirm_seeds:
            c = r.get("confirmed")
            conf = (" — (not flagged) |" if c is None else
                    f" exit {c['exit']}, {len(c['regressed'])} regressions"
                    f"{': ' + ', '.join(c['regressed']) if c['regressed'] else ''} (extra seeds "
                    + "; ".join(f"{j}: {v}" for j, v in r["confirm_seeds"].items()) + ") |")
        lines.append(f"| {r['rerun']} | {r['calibration']} | {r['exit']} | {r['compared']} | {r['paired']} | "
                     f"{len(r['regressed'])}{': ' + ', '.join(r['regressed']) if r['regressed'] else ''} | "
                     f"{r['not_comparable']} | {r['timing_not_compared']} |" + conf)
        if r.get("note"):
            lines.append(f"| ↳ {r['note']} | | | | | | | |" + (" |" if args.confirm_seeds else ""))
    n_fa = sum(bool(r["regressed"]) for r in fa)
    lines += ["", f"False alarms: **{n_fa} of {len(fa)}** clean reruns flagged a regression"
              + (f"; after confirmation with {args.confirm_seeds} more seeds: **"
                 f"{sum(bool((r.get('confirmed') or {}).get('regressed')) for r in fa)} of {len(fa)}**"
                 if args.confirm_seeds else "") + ".", ""]
    if det:
        lines += ["## Detections (each injected regression must be caught)", "",
                  "| injection | dataset | detected | flagged scores | worst score | baseline -> new | noise (se) | effect (x se) |"
                  + (f" confirmed ({args.confirm_seeds} more seeds) |" if args.confirm_seeds else ""),
                  "|---|---|---|---|---|---|---|---|" + ("---|" if args.confirm_seeds else "")]
        for r in det:
            conf = ""
            if args.confirm_seeds:
                conf = (" — |" if r.get("confirmed") is None else
                        f" {'yes' if r['confirmed'] else '**NO**'}: {', '.join(r['confirmed_flagged']) or '—'} |")
            lines.append(f"| {r['injection']} | {r['dataset']} | {'yes' if r['detected'] else '**NO**'} | "
                         f"{', '.join(r['flagged']) or '—'} | {r['worst']} | {r['baseline']:.4g} -> {r['new']:.4g} | "
                         f"{r['noise_se']:.3g}{' (paired)' if r.get('worst_paired') else ''} | {r['effect']:.1f} |"
                         + conf)
        names = sorted({r["injection"] for r in det})
        caught = [n for n in names if any(r["detected"] for r in det if r["injection"] == n)]
        n_det = sum(r["detected"] for r in det)
        lines += ["", f"Detected: **{len(caught)} of {len(names)}** injected regressions (exit 1, naming the model); "
                      f"per dataset {n_det} of {len(det)}. Each comparison is the whole quick suite (every other "
                      f"model as in the baseline), so the Holm family is the suite's.", ""]
        if args.confirm_seeds:
            conf_caught = [n for n in names if any(r.get("confirmed") for r in det if r["injection"] == n)]
            lines += [f"After confirmation with {args.confirm_seeds} more seeds: **{len(conf_caught)} of {len(names)}**"
                      f" injected regressions still detected; per dataset {sum(bool(r.get('confirmed')) for r in det)}"
                      f" of {len(det)}.", ""]
    atomic_write_text(OUT_MD, "\n".join(lines) + "\n")
    atomic_write_text(OUT_JSON, json.dumps({"false_alarms": fa, "detections": det}, indent=1, default=str))
    print("\n".join(lines))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sweep", required=True, nargs="+", help="run directories of a multi-seed quick run (combined)")
    ap.add_argument("--reference-commit", help="commit whose reports/quick was made on another machine")
    ap.add_argument("--threads-run", help="run directory of seed 0 rerun with another thread count")
    ap.add_argument("--inject", action="store_true", help="train and score the injected regressions")
    ap.add_argument("--work", default=str(ROOT / "runs" / "gate-injections"), help="where injected runs go")
    ap.add_argument("--paired-boot", type=int, default=DEFAULT_PAIRED_BOOT, metavar="N",
                    help=f"replicates of the paired bootstrap for FD, KID and P/R/D/C, as genbench compare "
                         f"(default {DEFAULT_PAIRED_BOOT}; 0: judge them without it)")
    ap.add_argument("--confirm-seeds", type=int, default=0, metavar="N",
                    help="also judge each flagged job again with N more seeds (genbench check's confirmation)")
    args = ap.parse_args()
    global PAIRED_BOOT, SWEEP_FEATURES
    PAIRED_BOOT = args.paired_boot
    SWEEP_FEATURES = load_features(args.sweep)
    if PAIRED_BOOT and SWEEP_FEATURES.reason:
        print(f"paired test unavailable: {SWEEP_FEATURES.reason}", flush=True)
    frames = [load_results(d) for d in args.sweep]
    sweep = pd.concat(frames, ignore_index=True)
    sweep = sweep[~sweep.duplicated(["budget", "dataset", "model", "metric", "variant", "seed"])]
    fa = false_alarms(sweep, args)
    det = detections(sweep, Path(args.work), args.confirm_seeds) if args.inject else []
    write(fa, det, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
