"""What `make run` (`genbench run --leaderboard --against DIR`) prints at the end: a compact leaderboard per dataset
for the terminal (the models ranked on one headline metric, ties within noise marked, then the reference points'
band), and the regression check against a reference run, one line per dataset and the verdict.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path
from typing import Optional

from genbench.report.headline import label
from genbench.report.tables import Leaderboard, Row, cell_text

# The metric each modality is ranked on in the terminal, in order of preference (else the table's first column).
TERMINAL_HEADLINE = {
    "image": ("fd", "kid", "precision"),
    "points": ("mode_kl", "fd", "hq_share"),
    "text": ("bits_per_char", "fd_text", "novelty"),
}
SPEED = ("samples_per_s", "chars_per_s")


def headline_metric(lb: Leaderboard) -> Optional[str]:
    prefs = TERMINAL_HEADLINE.get(lb.modality or "", ())
    return next((m for m in prefs if m in lb.columns), lb.columns[0] if lb.columns else None)


def _ranked(rows: list, metric: str, higher_is_better: bool) -> list[tuple[str, Row]]:
    """(rank text, row) best first; a model within noise of the one above shares its rank ("2=")."""
    have = [r for r in rows if metric in r.cells and r.cells[metric].value == r.cells[metric].value]
    have.sort(key=lambda r: (-r.cells[metric].value if higher_is_better else r.cells[metric].value, r.model))
    out, rank, prev = [], 0, None
    for i, r in enumerate(have):
        c = r.cells[metric]
        tie = prev is not None and c.lo <= prev.hi and prev.lo <= c.hi
        rank = rank if tie else i + 1
        out.append((f"{rank}{'=' if tie else '.'}", r))
        prev = c
    if len(out) > 1 and out[1][0].endswith("="):
        out[0] = (out[0][0].replace(".", "="), out[0][1])
    for r in rows:  # models without the metric (failed, or not measured) last
        if r not in have:
            out.append(("-", r))
    return out


def _line(rank: str, r: Row, metric: str, speed: Optional[str], widths: tuple) -> str:
    text = (f"  {rank:>4} {r.model:<{widths[0]}}  {label(metric)} "
            f"{cell_text(metric, r.cells.get(metric)):<{widths[1]}}")
    if speed and speed in r.cells:
        text += f"   {label(speed)} {cell_text(speed, r.cells[speed]):>{widths[2]}}"
    if r.status:
        text += f"   [{r.status}]"
    return text


def board_text(lb: Leaderboard) -> list[str]:
    """One dataset: heading, ranked models, the reference points' band."""
    metric = headline_metric(lb)
    head = f"{lb.dataset}" + (f" ({lb.modality})" if lb.modality else "")
    if metric is None:
        return [head, "  no metrics recorded"]
    hib = lb.directions.get(metric, True)
    speed = next((m for m in SPEED if m in lb.columns), None)
    models = [r for r in lb.rows if not r.reference]
    refs = [r for r in lb.rows if r.reference]
    width = (max((len(r.model) for r in lb.rows), default=5),
             max((len(cell_text(metric, r.cells.get(metric))) for r in lb.rows), default=1),
             max((len(cell_text(speed, r.cells[speed])) for r in lb.rows if speed in r.cells), default=1))
    lines = [f"{head}: models ranked on {label(metric)} ({'higher' if hib else 'lower'} is better; '=' ties within "
             "noise)"]
    lines += [_line(rank, r, metric, speed, width) for rank, r in _ranked(models, metric, hib)]
    if not models:
        lines.append("  (no models, only reference points)")
    if refs:
        lines.append("  reference points (bounds, not ranked):")
        lines += [_line("", r, metric, speed, width) + f"   <- {r.reference}" for r in refs]
    return lines


def leaderboard_text(run_dir: str | Path) -> str:
    """The compact terminal leaderboard of a run directory."""
    from genbench.report.data import load_run
    from genbench.report.tables import build_leaderboards

    boards = build_leaderboards(load_run(run_dir))
    out = ["", "Leaderboard (full tables: leaderboard.md and report.html in the run directory)", ""]
    for lb in boards:
        out += board_text(lb) + [""]
    if not boards:
        out.append("No results recorded yet.")
    return "\n".join(out)


def check_text(baseline: str | Path, new: str | Path) -> tuple[str, int]:
    """The quality regression check of `new` against `baseline` (genbench.results.compare without timings: a single
    run's sub-millisecond latencies move by more than the timing tolerances with machine load, even on the same
    hardware, so they would make a clean rerun look like a regression; `genbench compare` judges timings): one line
    per dataset, then the verdict. Returns (text, compare's exit code: 0 ok, 1 regression, 2 not comparable)."""
    from genbench.results.compare import compare_paths
    from genbench.results.compare_output import explain, verdict_line

    cmp = compare_paths(baseline, new, timing=False)
    out = ["", f"Regression check against {baseline} (quality; timings: genbench compare {baseline} {new}):"]
    keyed = {p: _problem_dataset(p) for p in cmp.problems}
    for ds in sorted({r.dataset for r in cmp.rows} | {d for d in keyed.values() if d}):
        bad = sum(1 for d in keyed.values() if d == ds)
        out.append(f"  {ds}: {_dataset_counts([r for r in cmp.rows if r.dataset == ds], bad)}")
    out += [f"  not comparable: {p}" for p, d in keyed.items() if not d]
    out += [f"  regressed: {explain(r)}" for r in cmp.regressions]
    verdict = re.sub(r"\s*\(exit \d\)", "", verdict_line(cmp)).rstrip(".")
    out.append(f"Verdict: {verdict} (full table: genbench compare {baseline} {new})")
    return "\n".join(out), cmp.exit_code


def _problem_dataset(problem: str) -> Optional[str]:
    """The dataset a comparability problem ("ds/model/metric: different ...") is about, or None."""
    key = problem.split(":")[0]
    return key.split("/")[0] if "/" in key and " " not in key else None


def _dataset_counts(rows: list, n_bad: int) -> str:
    if n_bad:
        return f"NOT COMPARABLE ({n_bad} score(s) under a different protocol)"
    c = Counter(r.verdict for r in rows)
    parts = [f"{c['regressed']} regressed" if c["regressed"] else "no regression",
             f"{c['improved']} improved" if c["improved"] else "",
             f"{c['unchanged'] + c['within noise']} unchanged or within noise",
             f"{c['not compared']} timing(s) not compared (other or unrecorded hardware)" if c["not compared"] else "",
             f"{c['new']} new" if c["new"] else "", f"{c['missing']} missing" if c["missing"] else ""]
    return ", ".join(p for p in parts if p)


def finish_run(out: Path, leaderboard: bool, against: Optional[str]) -> None:
    """The end of `genbench run --leaderboard --against DIR`: print the leaderboard, then the check. A regression
    is reported, not raised: the run's exit status stays about its jobs (see `genbench compare` for a gate). The
    results are on disk by now, so neither part failing stops the run: each says how to redo it."""
    if leaderboard:
        try:
            print(leaderboard_text(out))
        except Exception as e:  # noqa: BLE001 - the results are recorded; the report can be rebuilt
            print(f"genbench run: warning: the leaderboard could not be printed ({type(e).__name__}: {e}); see "
                  f"`genbench report {out}`", file=sys.stderr)
    if against:
        base = Path(against)
        if not base.exists():
            print(f"\nRegression check skipped: no reference results at {base} (pass --against DIR with a "
                  "`genbench run` directory, e.g. the committed reports/quick)")
            return
        try:
            text, _code = check_text(base, out)
        except Exception as e:  # noqa: BLE001 - e.g. a reference directory that holds no results
            print(f"\nRegression check could not run ({type(e).__name__}: {e}); run it by hand with "
                  f"`genbench compare {base} {out}`")
            return
        print(text)
