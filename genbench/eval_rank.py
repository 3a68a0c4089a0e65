"""Where a user's samples would rank (`genbench eval` without --out): against the committed reference leaderboard
of their dataset (`reports/<suite>/results.db` beside the package, e.g. reports/quick), metric by metric, among the
models (reference points such as train-copy are not ranked against: see genbench/reference.py).

A metric is ranked only when it was measured under the same protocol as the leaderboard's: the same feature
network (its id) and the same numbers of generated and real samples. Otherwise the line says what differs.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

REPORTS_DIR = Path(__file__).resolve().parent.parent / "reports"
SUITES = ("quick", "standard", "smoke")  # committed leaderboards searched, in order
PROTOCOL_KEYS = ("features", "n_fake", "n_real")
NOT_SAME = "the protocols differ ("


def reference_leaderboard(dataset: str, reports_dir: Path = REPORTS_DIR) -> Optional[Path]:
    """The first committed run directory (reports/quick, standard, smoke) whose results cover `dataset`."""
    from genbench.results.compare import load_results

    for suite in SUITES:
        d = reports_dir / suite
        if not (d / "results.db").exists() and not (d / "results.csv").exists():
            continue
        try:
            frame = load_results(d)
        except Exception:  # noqa: BLE001 - an unreadable committed store just means no placement
            continue
        if dataset in set(frame["dataset"]):
            return d
    return None


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _protocol_difference(mine: dict, theirs: dict) -> list[str]:
    """What differs between two protocols on the keys that make numbers comparable."""
    out = []
    for k in PROTOCOL_KEYS:
        a, b = mine.get(k), theirs.get(k)
        if a is not None and b is not None and str(a) != str(b):
            out.append(f"{k} {a} here vs {b} on the leaderboard")
        elif (a is None) != (b is None):
            out.append(f"{k} recorded on one side only")
    return out


def place_metric(row: dict, cells: dict, dataset: str, references: set) -> Optional[str]:
    """One line for one of the user's metric rows: its rank among the leaderboard's models, or why it has none.
    None when the leaderboard does not report the metric."""
    from genbench.report.headline import is_percent, label
    from genbench.report.tables import fmt_number

    metric, value = row["name"], float(row["value"])
    theirs = {k[1]: c for k, c in cells.items() if k[0] == dataset and k[2] == metric and k[3] == ""
              and k[1] not in references and math.isfinite(c.value)}
    if not theirs or not math.isfinite(value):
        return None
    lab = label(metric)
    diffs = sorted({d for c in theirs.values() for d in _protocol_difference(row.get("protocol") or {}, c.protocol)})
    if diffs:
        return f"{lab}: not ranked, {NOT_SAME}{'; '.join(diffs)})"
    hib = bool(row["higher_is_better"])
    ranked = sorted(theirs.items(), key=lambda mc: -mc[1].value if hib else mc[1].value)
    better = [(m, c) for m, c in ranked if (c.value > value if hib else c.value < value)]
    pos = len(better) + 1
    n = len(ranked) + 1
    above = better[-1] if better else None
    below = ranked[len(better)] if len(better) < len(ranked) else None

    def num(v: float) -> str:
        return f"{fmt_number(100 * v)}%" if is_percent(metric) else fmt_number(v, metric)

    def txt(mc):
        return f"{mc[0]} {num(mc[1].value)}"

    if below and below[1].value == value:
        where = f"level with {txt(below)}"
    elif above and below:
        where = f"between {txt(above)} and {txt(below)}"
    elif below:
        where = f"ahead of {txt(below)}"
    else:
        where = f"behind {txt(above)}"
    return f"{lab.removesuffix(' %')} {num(value)}: would rank {ordinal(pos)} of {n} models ({where})"


def placement_lines(result, reports_dir: Path = REPORTS_DIR) -> list[str]:
    """Lines saying where an EvalResult would rank on the committed leaderboard of its dataset (empty when there
    is none)."""
    from genbench.reference import reference_models
    from genbench.report.data import aggregate, load_run

    board = reference_leaderboard(result.dataset, reports_dir)
    if board is None:
        return []
    data = load_run(board)
    refs = reference_models(data.metrics, result.dataset) | reference_models(data.jobs, result.dataset)
    cells = aggregate(data.metrics)
    lines = [line for line in (place_metric(r, cells, result.dataset, refs) for r in result.rows) if line]
    try:
        shown = board.relative_to(Path.cwd())
    except ValueError:
        shown = board
    if not lines:
        return [f"The committed leaderboard {shown} shares no metric with these samples: nothing to rank against."]
    reasons = {line.split(NOT_SAME, 1)[1] for line in lines if NOT_SAME in line}
    if len(reasons) == 1 and all(NOT_SAME in line for line in lines):
        return [f"Not ranked against the committed leaderboard {shown} ({result.dataset}): {NOT_SAME}"
                f"{reasons.pop()}. To be ranked, give as many samples as the leaderboard's n_fake and keep its "
                "feature network (no --extractor)."]
    head = (f"Against the committed leaderboard {shown} ({result.dataset}; models only, reference points "
            f"{', '.join(sorted(refs)) or 'none'} left out):")
    return [head] + [f"  {line}" for line in lines]
