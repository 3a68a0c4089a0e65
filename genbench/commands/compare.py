"""`genbench compare BASELINE NEW`: regression check between two runs (exit 0 ok, 1 regression, 2 not comparable)."""

from __future__ import annotations

import sys
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser(
        "compare",
        help="compare two runs metric by metric; exit 0 = no regression, 1 = regression, 2 = not comparable",
        description="Compare two result sets (run directories or results.db/.csv/.json). A change is a regression "
        "when it is worse than the metric's tolerance and significantly worse than the noise: sampling noise "
        "(bootstrap CIs) plus training noise (the spread over seeds of either run, pooled with the calibrated seed "
        "spread), tested on the difference of seed means with a Holm-Bonferroni correction over all scores. Where "
        "both runs stored their features and scored the same reference features, the sampling noise of an FD, KID "
        "or P/R/D/C change comes from a paired bootstrap (the same real and fake rows resampled in both runs); "
        "otherwise the report says why not and uses the stored intervals. Timing "
        "figures are compared only when both runs were measured on the same hardware, and a timing change counts "
        "only when it exceeds its tolerance and the timed call (one sample, batch or fit) moved by more than an "
        "absolute floor (default 1 ms; 1 s for training time). Exit codes: 0 no regression, "
        "1 regression, 2 not comparable (different protocol, feature network, dataset or sample count).",
    )
    p.add_argument("baseline", help="baseline run directory or results file")
    p.add_argument("new", help="new run directory or results file")
    p.add_argument("--tolerances", metavar="FILE", help="TOML file with a [tolerances] table overriding the defaults "
                   "(e.g. fd = \"5%%\", bits_per_dim = 0.02) and an optional [timing_floor_ms] table (e.g. "
                   "latency_ms = 0.1)")
    p.add_argument("--junit", metavar="FILE", help="also write a JUnit XML report for CI systems")
    p.add_argument("--no-timing", action="store_true", help="leave out timing metrics (samples/s, latency, "
                   "training time, memory): a quality-only gate for machines whose speed varies")
    p.add_argument("--out", metavar="FILE", help="write the Markdown table here instead of standard output")
    add_gate_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from genbench.results.compare import compare_paths, to_junit, to_markdown
    from genbench.fileio import atomic_write_text

    cmp = compare_paths(args.baseline, args.new, args.tolerances, timing=not args.no_timing, alpha=args.alpha,
                        calibration_files=args.calibration, paired_boot=args.paired_boot)
    md = to_markdown(cmp)
    if args.out:
        atomic_write_text(Path(args.out), md)
    else:
        sys.stdout.write(md)
    if args.junit:
        atomic_write_text(Path(args.junit), to_junit(cmp))
    if cmp.problems:
        print(f"genbench: the two runs are not comparable ({len(cmp.problems)} differences, listed above)", file=sys.stderr)
    return cmp.exit_code


def add_gate_options(p) -> None:
    """--alpha, --calibration and --paired-boot, shared by compare and check."""
    p.add_argument("--alpha", type=_alpha, default=0.05, metavar="A",
                   help="family-wise false-alarm rate of the whole comparison (default 0.05): the chance that a clean "
                   "rerun is flagged, over all its scores together")
    p.add_argument("--calibration", action="append", metavar="FILE",
                   help="seed spreads written by `genbench calibrate` (repeatable), in addition to the built-in ones "
                   "(genbench/results/calibration/); used as training noise where a run has one seed")
    p.add_argument("--paired-boot", type=_boot, default=100, metavar="N",
                   help="replicates of the paired bootstrap of FD, KID and P/R/D/C changes, used where both runs "
                   "stored their features (run directories) and scored the same reference features (default 100; "
                   "0: no paired test, the stored intervals taken as independent)")


def _boot(s: str) -> int:
    import argparse

    try:
        n = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 0 or a whole number >= 2, got {s!r}") from None
    if n == 1 or n < 0:
        raise argparse.ArgumentTypeError(f"expected 0 (no paired test) or a whole number >= 2, got {s!r}")
    return n


def _alpha(s: str) -> float:
    import argparse

    try:
        a = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {s!r}") from None
    if not 0 < a < 1:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {s!r}")
    return a
