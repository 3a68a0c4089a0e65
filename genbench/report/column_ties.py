"""The paired tie call on a leaderboard's columns: on each FD / KID / precision / recall / density / coverage
column, the best model is tested against the next models down the column with the paired bootstrap of their
difference (genbench.results.paired_ties), and those whose interval contains 0 are tied with it (marked `≈`, TIE_MARK);
the lines under a table and the legend that say so."""

from __future__ import annotations

import math
from dataclasses import dataclass

from genbench.report.headline import label


@dataclass
class ColumnTie:
    """The paired tie call on one column: the best model, the models tied with it (best first), and each
    TieCall made, in order (the runner-up first, going down the column until the first significant difference)."""

    best: str
    tied: list
    calls: list


TIE_MARK = "≈"
_TIE_TESTS = 3  # at most this many models below the best are tested on one column


def column_ties(dataset: str, contestants: list, cols: list, directions: dict, ties) -> tuple[dict, str]:
    """({metric: ColumnTie}, tie note) for a board: on each paired metric column the best model (the first by
    name among equal best values) is tested against the next model down the column, and on while they tie (at
    most _TIE_TESTS)."""
    from genbench.results.paired import PAIRED_METRICS

    paired_cols = [c for c in cols if c in PAIRED_METRICS]
    if not paired_cols:
        return {}, ""
    if ties.reason:
        return {}, f"unavailable: {ties.reason}"
    out = {}
    for c in paired_cols:
        hib = directions[c]
        have = sorted(((r.cells[c].value, r.model) for r in contestants if c in r.cells
                       and math.isfinite(r.cells[c].value)), key=lambda vm: (-vm[0] if hib else vm[0], vm[1]))
        if len(have) < 2:
            continue
        top = have[0][1]
        tied, calls = [top], []
        for _v, other in have[1:1 + _TIE_TESTS]:
            call = ties.calls(dataset, top, other, {c: hib})[c]
            calls.append(call)
            if not call.tied:
                break
            tied.append(other)
        out[c] = ColumnTie(top, tied, calls)
    return out, ties.protocol()


def tie_lines(lb) -> list:
    """The lines under a table (`lb`: a genbench.report.tables.Leaderboard) that give the paired tie calls: 'FD: best gan (tied: gan, vae); vae - gan 3.1
    [-2, 8.4], ...', or why the call is unavailable."""
    if not lb.tie_note:
        return []
    if lb.tie_note.startswith("unavailable"):
        return [f"Paired tie call {lb.tie_note}; bold marks the best value only."]
    out = []
    for c in lb.columns:
        t = lb.ties.get(c)
        if t is None:
            continue
        head = f"{label(c)}: best {t.best}" + (f" (tied: {', '.join(t.tied)})" if len(t.tied) > 1 else "")
        diffs = [f"{k.other} - {k.best} {k.interval_text()}" + ("" if k.tied else ", beyond noise")
                 if k.available else f"{k.other}: unavailable ({k.why})" for k in t.calls]
        out.append(head + "; " + "; ".join(diffs))
    return out


def tied_with_best(lb, model: str, metric: str) -> bool:
    t = lb.ties.get(metric)
    return t is not None and model in t.tied[1:]


def tie_note(boards: list) -> str:
    """The legend of the tie mark, when a board carries paired tie calls ("" otherwise)."""
    note = next((lb.tie_note for lb in boards if lb.tie_note and not lb.tie_note.startswith("unavailable")), "")
    if not note:
        return ""
    return (f"{TIE_MARK} marks a model tied with the column's best (bold) by the paired test: its {note}, "
            "contains 0. It is tested on FD, KID, precision, recall, density and coverage, for models scored with "
            "the same protocol and seeds whose features were stored, going down the column from the runner-up "
            f"until the first model that is not tied or cannot be tested (at most {_TIE_TESTS} models); the lines "
            "under each table give the differences (the other model - the best).")
