"""`genbench recommend`: rank the models of a run for a task profile or custom weights."""

from __future__ import annotations

import sys

from genbench.results.paired import DEFAULT_PAIRED_BOOT
from genbench.results.recommend import PROFILES

DEFAULT_RESULTS = "reports/quick"


def add_parser(sub) -> None:
    tasks = "; ".join(f"{p.name}: {p.description}" for p in PROFILES.values())
    p = sub.add_parser(
        "recommend",
        help="rank a run's models for a task (real-time, high-fidelity, ...)",
        description="Rank the models of a run for a task, from the stored numbers. Models whose score intervals "
        f"(from the metrics' CIs / seed spread) overlap are reported as a tie. Each dataset starts with a verdict (the "
        "chosen model, its key numbers, the runner-up and whether they tie), then the ranking with its reasons. "
        "Where the results are a run directory whose jobs stored their features, the verdict also calls ties "
        "between the first model and the runner-up with a paired bootstrap of their difference on FD, KID and "
        "precision / recall / density / coverage (the same reference rows resampled for both; 95% interval, "
        "--paired-boot replicates; same dataset, protocol and seeds): 'tied with vae on FD: difference 3.1 "
        "[-2, 8.4]' when the interval contains 0. Without stored features it says the tie call is unavailable "
        "and why. "
        "Reference points (train-copy, text-copy, gmm, ngram: family 'baseline') are not ranked unless "
        f"--include-baselines. Tasks: {tasks}.",
    )
    p.add_argument("--results", default=DEFAULT_RESULTS, metavar="DIR",
                   help="run directory or results file (default: reports/quick, here or else the committed one "
                   "beside the package)")
    p.add_argument("--task", choices=sorted(PROFILES), help="built-in task profile")
    p.add_argument("--weights", metavar="W", help="custom weights, e.g. quality=0.5,diversity=0.3,speed=0.2 "
                   "(categories: quality, diversity, speed, likelihood, footprint); overrides the task's weights")
    p.add_argument("--dataset", help="only this dataset (default: every dataset in the results)")
    p.add_argument("--max-latency-ms", type=float, help="exclude models whose one-sample latency exceeds this")
    p.add_argument("--min-coverage", type=float, help="exclude models whose coverage is below this (0..1)")
    p.add_argument("--include-baselines", action="store_true",
                   help="rank the reference points too (family 'baseline': train-copy, text-copy, gmm, ngram), which "
                   "are left out by default: they bound the leaderboard, they are not models to deploy")
    p.add_argument("--paired-boot", type=_boot, default=DEFAULT_PAIRED_BOOT, metavar="N",
                   help=f"replicates of the paired bootstrap behind the verdict's tie call (default "
                   f"{DEFAULT_PAIRED_BOOT}; 0: no paired tie call)")
    p.set_defaults(func=run)


def _boot(s: str) -> int:
    import argparse

    try:
        n = int(s)
    except ValueError:
        n = -1
    if n == 0 or n >= 2:
        return n
    raise argparse.ArgumentTypeError(f"expected 0 (no paired tie call) or a whole number >= 2, got {s!r}")


def _results_dir(results: str) -> str:
    """--results as given; the default falls back to the committed reports/quick beside the package when the
    current directory has none (so `genbench recommend --task X` answers from anywhere)."""
    from pathlib import Path

    from genbench.eval_rank import REPORTS_DIR

    if results == DEFAULT_RESULTS and not Path(results).exists() and (REPORTS_DIR / "quick").exists():
        return str(REPORTS_DIR / "quick")
    return results


def run(args) -> int:
    from genbench.results.compare import load_results
    from genbench.results.paired_ties import PairedTies
    from genbench.results.recommend import parse_weights, recommend

    weights = parse_weights(args.weights) if args.weights else None
    results = _results_dir(args.results)
    recs = recommend(load_results(results), task=args.task, weights=weights, dataset=args.dataset,
                     max_latency_ms=args.max_latency_ms, min_coverage=args.min_coverage,
                     include_baselines=args.include_baselines, ties=PairedTies(results, args.paired_boot))
    sys.stdout.write("\n".join(r.to_markdown() for r in recs))
    return 0
