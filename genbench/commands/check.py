"""`genbench check --baseline FILE`: rerun the baseline's suite with the current code and models, then compare
(what a user puts in CI). Exit codes as `genbench compare`: 0 no regression, 1 regression, 2 not comparable."""

from __future__ import annotations

import sys


def add_parser(sub) -> None:
    p = sub.add_parser(
        "check", help="rerun a baseline's suite with the current code and compare; exit 0 ok, 1 regression, "
        "2 not comparable",
        description="Evaluate the current code and models on the baseline's suite (the suite stored in the "
        "baseline's results, restricted to the datasets, models, seeds and budget it ran) in a fresh directory, "
        "then compare the two like `genbench compare`. A job that fails now counts as a regression. "
        "A job with a flagged regression is first rerun with --confirm-seeds more seeds (default 2) and judged "
        "again on all its seeds, so that one seed's rare training outcome does not fail the gate. "
        "A baseline is data: if its stored suite names users' models by 'package.module:factory', that code is "
        "imported and run only with --trust-baseline (or give your own --suite). "
        "Exit codes: 0 no regression, 1 regression, 2 not comparable (or refused).")
    p.add_argument("--baseline", required=True, metavar="FILE",
                   help="baseline run directory or results.db/.json (results.csv needs --suite)")
    p.add_argument("--tolerances", metavar="FILE", help="TOML [tolerances] table overriding the defaults "
                   "(and an optional [timing_floor_ms] table, as for compare)")
    p.add_argument("--junit", metavar="FILE", help="also write a JUnit XML report for CI systems")
    p.add_argument("--no-timing", action="store_true", help="leave out timing metrics (samples/s, latency, "
                   "training time, memory): a quality-only gate for machines whose speed varies")
    p.add_argument("--out", metavar="DIR", help="directory for the new run (default: a new temporary directory); "
                   "the Markdown report is also written to DIR/check.md")
    p.add_argument("--suite", metavar="NAME_OR_PATH", help="suite to rerun instead of the one stored in the baseline "
                   "(your own file: the models it names are imported as given)")
    p.add_argument("--trust-baseline", action="store_true",
                   help="allow the suite stored in the baseline to import and run the users' models it names by "
                   "'package.module:factory' (without it such a baseline is refused, exit 2); only for baselines "
                   "from people you trust, see docs/security.md")
    p.add_argument("--confirm-seeds", type=_count, default=2, metavar="N",
                   help="when a job is flagged, rerun it with N more seeds (the seeds after the suite's) and judge "
                   "it again on all of them before it counts as a regression (default 2; 0: no confirmation)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="device (default: the suite's)")
    p.add_argument("--verbose", action="store_true", help="show the run's progress")
    from genbench.commands.compare import add_gate_options

    add_gate_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from genbench.check import run_check

    res = run_check(args.baseline, tolerances=args.tolerances, junit=args.junit, out=args.out, suite=args.suite,
                    device=args.device, quiet=not args.verbose, timing=not args.no_timing, alpha=args.alpha,
                    calibration_files=args.calibration, trust_baseline=args.trust_baseline,
                    confirm_seeds=args.confirm_seeds, paired_boot=args.paired_boot)
    sys.stdout.write(res.markdown)
    if res.comparison.problems:
        print(f"genbench: the baseline and the new run are not comparable ({len(res.comparison.problems)} "
              "differences, listed above)", file=sys.stderr)
    return res.exit_code


def _count(s: str) -> int:
    import argparse

    try:
        n = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {s!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {s!r}")
    return n
