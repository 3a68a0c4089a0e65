"""`genbench calibrate RUN_DIR`: measure each score's spread over training seeds, for the regression gate."""

from __future__ import annotations

import sys
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser(
        "calibrate", help="write the seed spread of every score of a multi-seed run (the gate's training noise)",
        description="Reads a run with several seeds per job (e.g. `genbench run quick --seeds 0,1,2,3,4,5 --out DIR`) "
        "and writes, per (budget, dataset, model, metric, variant), the sample standard deviation over seeds and "
        "the protocol it was measured under. `genbench compare` / `check` use it as training noise when a result "
        "set has a single seed (the built-in files in genbench/results/calibration/ are always read; add others with "
        "--calibration FILE).")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="`genbench run` directories (or results.db/.csv/.json) "
                   "with >= 3 seeds per job; several are combined (e.g. a sweep done in parts)")
    p.add_argument("--out", metavar="FILE", help="where to write the JSON (default: the first RUN_DIR/calibration.json)")
    p.set_defaults(func=run)


def run(args) -> int:
    import json

    from genbench.results.compare import is_timing, load_results, protocol_fingerprint
    from genbench.env_info import git_commit, hardware
    from genbench.fileio import atomic_write_text
    from genbench.results.noise import make_calibration

    import pandas as pd

    srcs = [Path(d) for d in args.run_dirs]
    frames = [load_results(d) for d in srcs]
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    frame = frame[~is_timing(frame)]
    dup = frame.duplicated(["budget", "dataset", "model", "metric", "variant", "seed"])
    if dup.any():  # the same job in two of the directories: keep the first
        frame = frame[~dup]
    src = srcs[0]
    suites = sorted({n for d in srcs for n in _suite_names(d)})
    made_by = {"command": " ".join(["genbench", "calibrate", *sys.argv[2:]]) if sys.argv[1:2] == ["calibrate"]
               else "genbench calibrate " + " ".join(map(str, srcs)), "runs": [str(d) for d in srcs],
               "suite": ", ".join(suites) or "?", "commit": git_commit(), "machine": hardware("cpu")}
    blob = make_calibration(frame, made_by, protocol_fingerprint)
    out = Path(args.out) if args.out else (src if src.is_dir() else src.parent) / "calibration.json"
    atomic_write_text(out, json.dumps(blob, indent=1, sort_keys=True) + "\n")
    rows = blob["spreads"]
    print(f"genbench calibrate: {len(rows)} score spreads over seeds {blob['made_by']['seeds']} -> {out}")
    return 0


def _suite_names(src: Path) -> list:
    try:
        from genbench.results.store import ResultsStore

        with ResultsStore(src) as s:
            return sorted(set(s.runs_frame()["suite_name"].dropna().astype(str)))
    except Exception:  # noqa: BLE001 - a results file without a store: the suite is unknown
        return []
