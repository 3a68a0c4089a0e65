"""What the report shows of each metric, read from the metric declarations (`genbench.metrics.registry.Output`:
label, display format, category, whether and where a modality's leaderboard shows it). Nothing here lists
metric names: declare a metric once (docs/extending.md) and the tables, figures and summary follow.

A metric missing from a run is simply left out of its table; a run whose dataset has an unknown modality shows
every metric it has, in the declared order.
"""

from __future__ import annotations

from genbench.metrics import registry as _reg

# The categories the summary speaks of, in its order ("footprint" is for `genbench recommend` only).
SUMMARY_CATEGORIES = ("quality", "diversity", "speed", "likelihood", "memorisation")
# Categories the summary only mentions as a cost of leading elsewhere (nobody "leads" on not copying).
COST_ONLY = {"memorisation"}


def label(metric: str) -> str:
    """Column label (the arrow from higher_is_better is added by the table code)."""
    o = _reg.output(metric)
    return (o.label or o.name) if o is not None else metric


def is_percent(metric: str) -> bool:
    """A share stored in [0, 1] that the tables show as a percentage."""
    o = _reg.output(metric)
    return o is not None and o.fmt == _reg.PERCENT


def is_ratio(metric: str) -> bool:
    """Speed and size: figures put them on a log axis and the summary compares them as ratios."""
    o = _reg.output(metric)
    return o is not None and o.log_scale


def categories() -> dict[str, tuple[str, ...]]:
    """What the summary calls quality / diversity / speed / likelihood / memorisation: the first metric of each
    list that the dataset's models report is the one the sentence is about."""
    return {c: _reg.in_category(c) for c in SUMMARY_CATEGORIES}


def headline_for(modality: str | None, available: set[str]) -> list[str]:
    """Headline metrics of a modality that the run actually has (unknown modality: all it has)."""
    cols = _reg.headline(modality) if modality else []
    if cols:
        return [m for m in cols if m in available]
    known = [m for m in _reg.display_order() if m in available]
    return known + sorted(available - set(known))
