"""The summary's sentence on the reference points: how far the best model is from the memorisation ceiling and how
far above the classical floor, on the first category (quality, then likelihood, then diversity) where the best
model and a reference point share a metric. Differences within both numbers' intervals are called level."""

from __future__ import annotations

import math
from typing import Optional

from genbench.reference import CEILING, FLOOR, ROLE_LABELS, role_of
from genbench.report.data import Cell
from genbench.report.headline import is_percent, label
from genbench.report.tables import cell_text, fmt_number, scale

ORDER = ("quality", "likelihood", "diversity")


def bounds_sentence(cells: dict, dataset: str, standings: dict, refs: frozenset) -> Optional[str]:
    """'**Against the reference points**: vae (FD 143 ± 17) is 129 worse than the memorisation ceiling
    (train-copy, 14.4 ± 9.3) and 50 better than the classical floor (gmm, 193 ± 15).' or None."""
    if not refs:
        return None
    for cat in ORDER:
        st = standings.get(cat)
        if st is None or not st.leaders:
            continue
        best = st.leaders[0]
        mine = st.cell(best)
        parts = [_against(role, m, cells[(dataset, m, st.metric, "")], mine, st.metric)
                 for role in (CEILING, FLOOR) for m in sorted(refs)
                 if role_of(m) == role and (dataset, m, st.metric, "") in cells
                 and math.isfinite(cells[(dataset, m, st.metric, "")].value)]
        if not parts:
            continue
        tie = [m for m in st.leaders if m != best]
        who = f"{best}" + (f" (level within noise with {', '.join(tie)})" if tie else "")
        return (f"**Against the reference points**: the best model, {who}, has {_lab(st.metric)} "
                f"{cell_text(st.metric, mine)}: {' and '.join(parts)}.")
    return None


def _lab(metric: str) -> str:
    return label(metric).removesuffix(" %") + (" (%)" if is_percent(metric) else "")


def _against(role: str, ref: str, theirs: Cell, mine: Cell, metric: str) -> str:
    """'129 worse than the memorisation ceiling (train-copy, 14.4 ± 9.3)', or 'level with ...' within noise."""
    where = f"the {ROLE_LABELS[role]} ({ref}, {cell_text(metric, theirs)})"
    if mine.lo <= theirs.hi and theirs.lo <= mine.hi:
        return f"level with {where} within noise"
    diff = (mine.value - theirs.value) * scale(metric, mine)
    better = diff > 0 if mine.higher_is_better else diff < 0
    return f"{fmt_number(abs(diff))} {'better' if better else 'worse'} than {where}"
