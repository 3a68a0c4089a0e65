"""Plain-sentence summaries generated from the numbers: per dataset, who leads on quality, diversity, speed and
likelihood, and what the leader gives up on the others; then how the best model sits between the reference points
(genbench/reference.py: the memorisation ceiling and the classical floor, which never "lead").

Each category is judged on its first metric (in `headline.categories()` order: the declared ranks) that the dataset's models report.
Two models *tie* when their intervals overlap (the stored confidence interval for one seed, the mean ± its 95%
half-width over seeds: genbench.results.noise.mean_half_width); a lone best model *leads*. Where the leaderboard made a
paired tie call on the sentence's metric (genbench.report.column_ties.column_ties: FD, KID, P/R/D/C of models whose
features were stored), the sentence adds the paired difference of the runner-up and whether it is a tie.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

from genbench.reference import reference_models
from genbench.report.bounds import bounds_sentence
from genbench.report.data import Cell, RunData, aggregate
from genbench.report.headline import COST_ONLY, categories, is_percent, is_ratio, label
from genbench.report.tables import cell_text


@dataclass
class Standing:
    category: str
    metric: str
    ranked: list  # [(model, Cell)] best first
    leaders: list  # models tied for the lead (one when a clear leader)

    def rank_of(self, model: str) -> Optional[int]:
        return next((i + 1 for i, (m, _) in enumerate(self.ranked) if m == model), None)

    def cell(self, model: str) -> Optional[Cell]:
        return next((c for m, c in self.ranked if m == model), None)


@dataclass
class DatasetSummary:
    dataset: str
    standings: dict  # category -> Standing
    sentences: list = field(default_factory=list)


def overlaps(a: Cell, b: Cell) -> bool:
    return a.lo <= b.hi and b.lo <= a.hi


def standings_for(cells: dict, dataset: str, exclude: frozenset = frozenset()) -> dict:
    """Per category, the dataset's models ranked on the category's first reported metric; models in `exclude`
    (the reference points) take no part."""
    out = {}
    for cat, metrics in categories().items():
        for metric in metrics:
            have = [(k[1], c) for k, c in cells.items()
                    if k[0] == dataset and k[2] == metric and k[3] == "" and math.isfinite(c.value)
                    and k[1] not in exclude]
            if not have:
                continue
            hib = have[0][1].higher_is_better
            have.sort(key=lambda mc: (-mc[1].value if hib else mc[1].value, mc[0]))
            top = have[0][1]
            leaders = [m for m, c in have if c.value == top.value or overlaps(c, top)]
            out[cat] = Standing(cat, metric, have, leaders)
            break
    return out


def _v(st: Standing, model: str) -> str:
    """The model's number as the tables show it; percentages carry a % sign (their label then drops it)."""
    text = cell_text(st.metric, st.cell(model))
    if is_percent(st.metric):
        head, sep, tail = text.partition(" ")
        return f"{head}%{sep}{tail}"
    return text


def _label(metric: str) -> str:
    return label(metric).removesuffix(" %") if is_percent(metric) else label(metric)


def _names(ms: list) -> str:
    return ms[0] if len(ms) == 1 else ", ".join(ms[:-1]) + f" and {ms[-1]}"


def _lead_sentence(st: Standing) -> str:
    lab = _label(st.metric)
    if len(st.ranked) == 1:
        m = st.ranked[0][0]
        return f"**{st.category.capitalize()}**: only {m} reports {lab} ({_v(st, m)})."
    if len(st.leaders) > 1:
        texts = [_v(st, m) for m in st.leaders]
        vals = f"{texts[0]} each" if len(set(texts)) == 1 else ", ".join(f"{m} {t}" for m, t in zip(st.leaders, texts))
        return (f"**{st.category.capitalize()}**: {_names(st.leaders)} tie on {lab} ({vals}; within their "
                f"uncertainty).")
    lead = st.leaders[0]
    nxt = st.ranked[1][0]
    return (f"**{st.category.capitalize()}**: {lead} leads on {lab} with {_v(st, lead)}, ahead of {nxt} "
            f"({_v(st, nxt)}).")


def _cost_clause(model: str, st: Standing) -> str:
    """What `model` (a leader elsewhere, not among this category's leaders) gives up on it."""
    lab = _label(st.metric)
    mine = st.cell(model)
    if mine is None:
        return f"it has no {st.category} number ({lab} not reported)"
    best_m = st.leaders[0]
    best = st.cell(best_m)
    rank = f"rank {st.rank_of(model)} of {len(st.ranked)}"
    if is_ratio(st.metric) and mine.value > 0 and best.value > 0:
        ratio = best.value / mine.value if best.higher_is_better else mine.value / best.value
        word = "slower" if st.category == "speed" else "worse"
        return (f"on {st.category} it is {_ratio(ratio)}× {word} than {best_m} ({_v(st, model)} vs "
                f"{_v(st, best_m)} {lab}; {rank})")
    return f"on {st.category} it has {lab} {_v(st, model)} against {_v(st, best_m)} for {best_m} ({rank})"


def _ratio(r: float) -> str:
    return f"{r:,.0f}" if r >= 10 else f"{r:.1f}"


def _paired_clause(st: Standing, board) -> str:
    """' By the paired test, vae - gan is 39.6 [20.9, 55.7] (...): beyond noise.' when the board made the paired
    call between this standing's first two models on its metric ("" otherwise)."""
    t = board.ties.get(st.metric) if board is not None else None
    if t is None or len(st.ranked) < 2 or t.best != st.ranked[0][0] or not t.calls:
        return ""
    c = t.calls[0]
    if c.other != st.ranked[1][0] or not c.available:
        return ""
    verdict = "a tie (the interval contains 0)" if c.tied else "beyond noise"
    return f" By the paired test, {c.other} - {c.best} is {c.interval_text()} ({board.tie_note}): {verdict}."


def summarise(data: RunData, boards: Optional[list] = None) -> list[DatasetSummary]:
    """`boards`: the run's leaderboards (genbench.report.tables), whose paired tie calls the sentences quote."""
    by_ds = {b.dataset: b for b in boards or []}
    cells = aggregate(data.metrics)
    out = []
    for ds in data.datasets:
        refs = frozenset(reference_models(data.metrics, ds) | reference_models(data.jobs, ds))
        st = standings_for(cells, ds, refs)
        s = DatasetSummary(ds, st)
        if not set(st) - COST_ONLY:
            s.sentences.append(
                f"Only reference points ({', '.join(sorted(refs))}) were scored here: no model to rank against them."
                if set(standings_for(cells, ds)) - COST_ONLY else
                "No metrics were recorded for this dataset (its jobs failed or have not finished).")
        for cat, standing in st.items():
            if cat in COST_ONLY:
                continue
            sentence = _lead_sentence(standing) + _paired_clause(standing, by_ds.get(ds))
            if len(standing.ranked) > 1 and len(standing.leaders) == 1:
                lead = standing.leaders[0]
                others = [o for c2, o in st.items() if c2 != cat]
                also = [("leads" if o.leaders == [lead] else "shares the lead") + f" on {o.category}"
                        for o in others if lead in o.leaders and o.category not in COST_ONLY]
                costs = [_cost_clause(lead, o) for o in others if lead not in o.leaders
                         and not (o.category in COST_ONLY and o.cell(lead) is None)]
                if also:
                    sentence += f" It also {_names(also)}."
                if costs:
                    sentence += f" What it costs: {'; '.join(costs)}."
                elif others:
                    sentence += " It gives up nothing measured here."
            s.sentences.append(sentence)
        bounds = bounds_sentence(cells, ds, st, refs)
        if bounds:
            s.sentences.append(bounds)
        out.append(s)
    return out


def to_markdown(summaries: list) -> str:
    out = ["## Summary", ""]
    for s in summaries:
        out.append(f"### {s.dataset}")
        out.append("")
        out += [f"- {t}" for t in s.sentences]
        out.append("")
    return "\n".join(out)
