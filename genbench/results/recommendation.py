"""What `genbench recommend` answers, and in which words: the categories models are scored in, a ranked model
(`Ranked`) and the answer for one dataset (`Recommendation`); each model's reason and what it gives up, why the
first model is chosen over the runner-up and over models with a better key number, the key numbers, the verdict
and the paired tie call's sentence. The ranking itself (profiles, scores, intervals, ranks) is
genbench/results/recommend.py."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

# The categories a task profile weighs; which metrics each holds, and which are compared on a log scale, is
# declared with the metrics themselves (genbench.metrics.registry.Output: category, rank, log_scale).
CATEGORY_NAMES = ("quality", "diversity", "speed", "likelihood", "footprint")


def categories() -> dict[str, tuple[str, ...]]:
    """Category -> its declared metrics, most representative first."""
    from genbench.metrics.registry import in_category

    return {c: in_category(c) for c in CATEGORY_NAMES}


@dataclass
class Ranked:
    model: str
    score: float
    low: float
    high: float
    categories: dict  # category -> score in [0, 1]
    rank: int = 0
    tie_with: list = field(default_factory=list)
    reason: str = ""
    gives_up: list = field(default_factory=list)
    pareto: bool = False


@dataclass
class Recommendation:
    dataset: str
    profile: str
    weights: dict
    ranked: list  # [Ranked]
    excluded: dict  # model -> reason
    numbers: dict = field(default_factory=dict)  # model -> its key numbers in words ("samples/s 16,500, FD 111")
    references: dict = field(default_factory=dict)  # reference point left out -> what it bounds
    included: dict = field(default_factory=dict)  # reference point ranked (--include-baselines) -> what it bounds
    why: str = ""  # why the first model is chosen over the runner-up and over models with a better key number
    paired: list = field(default_factory=list)  # [(other model, {metric: TieCall of other - first})]
    paired_note: str = ""  # the paired tie call's protocol, or why it is unavailable ("" when not asked for)

    def verdict(self) -> str:
        """The answer first: the chosen model, its key numbers, the runner-up and whether they tie."""
        return verdict_text(self)

    def to_markdown(self) -> str:
        w = ", ".join(f"{k} {v:g}" for k, v in self.weights.items())
        lines = [f"### {self.dataset} — task `{self.profile}` (weights: {w})", "", self.verdict(), "",
                 "Ranking and reasons:", ""]
        if not self.ranked:
            lines.append("No model qualifies.")
        for r in self.ranked:
            tie = f" (tie with {', '.join(r.tie_with)}: within noise)" if r.tie_with else ""
            star = " ★ Pareto-optimal" if r.pareto else ""
            lines.append(f"{r.rank}. **{r.model}** — score {r.score:.2f} [{r.low:.2f}, {r.high:.2f}]{tie}{star}")
            lines.append(f"   - why: {r.reason}")
            if r.gives_up:
                lines.append(f"   - gives up: {'; '.join(r.gives_up)}")
        for m, why in sorted(self.excluded.items()):
            lines.append(f"- excluded **{m}**: {why}")
        pareto = [r.model for r in self.ranked if r.pareto]
        lines += ["", f"Pareto-optimal over quality / diversity / speed: {', '.join(pareto) or '(none)'}", ""]
        return "\n".join(lines)


def _explain(r: Ranked, ranked: list, weights: dict, values: dict) -> tuple[str, list]:
    measured = {c: s for c, s in r.categories.items() if s is not None}
    if not measured:
        return "nothing this task weighs was measured", []
    top = max(measured, key=lambda c: weights[c] * measured[c])
    best_metric = _best_metric_text(r.model, top, values)
    reason = f"{top} score {measured[top]:.2f} (weight {weights[top]:g})" + (f": {best_metric}" if best_metric else "")
    missing = [c for c, s in r.categories.items() if s is None]
    if missing:
        reason += f"; not measured: {', '.join(missing)}"
    gives = []
    for cat, s in measured.items():
        leader = max((o for o in ranked if o.categories.get(cat) is not None), key=lambda o: o.categories[cat])
        if leader.model != r.model and leader.categories[cat] - s > 0.1:
            met = _worst_gap_metric(r.model, leader.model, cat, values)
            if met:
                a, b = values[(r.model, met)], values[(leader.model, met)]
                unit = f" {a.unit}" if a.unit else ""
                gives.append(f"{cat} ({met} {a.value:.4g}{unit} vs {b.value:.4g} for {leader.model})")
            else:
                gives.append(f"{cat} (score {s:.2f} vs {leader.categories[cat]:.2f} for {leader.model})")
    return reason, gives


def _worst_gap_metric(model: str, leader: str, cat: str, values: dict) -> Optional[str]:
    """The metric of `cat` on which `model` trails `leader` the most (relative), or None."""
    best, gap = None, 0.0
    for met in categories()[cat]:
        a, b = values.get((model, met)), values.get((leader, met))
        if a is None or b is None or not (math.isfinite(a.value) and math.isfinite(b.value)):
            continue
        worse = (b.value - a.value) if a.higher_is_better else (a.value - b.value)
        rel = worse / max(abs(b.value), abs(a.value), 1e-12)
        if rel > gap:
            best, gap = met, rel
    return best


def _best_metric_text(model: str, cat: str, values: dict) -> str:
    for met in categories()[cat]:
        a = values.get((model, met))
        if a is not None:
            unit = f" {a.unit}" if a.unit else ""
            return f"{met} {a.value:.4g}{unit}"
    return ""


def _why_chosen(ranked: list, weights: dict, values: dict) -> str:
    """Why the first model is chosen: the category that puts it ahead of the runner-up (weight x score
    difference) with the metric the runner-up trails most there, then each model that has a better key number
    (the first metric of the heaviest category, the one the verdict shows first) and what it loses on instead."""
    from genbench.report.headline import label

    if len(ranked) < 2:
        return ""
    top, second = ranked[0], ranked[1]
    key = next((met for cat in sorted((c for c, w in weights.items() if w > 0), key=lambda c: -weights[c])
                if (met := _first_metric(top.model, cat, values)) is not None), None)
    better = []
    if key is not None:
        mine = values[(top.model, key)]
        sign = 1 if mine.higher_is_better else -1
        better = sorted((o for o in ranked[1:] if (o.model, key) in values
                         and sign * (values[(o.model, key)].value - mine.value) > 0),
                        key=lambda o: (-sign * values[(o.model, key)].value, o.model))

    def has_better(o: Ranked) -> str:
        return f"{o.model} has the better {label(key)} ({values[(o.model, key)].value:.4g} vs {values[(top.model, key)].value:.4g})"

    lead = _lead(top, second, weights, values, first=top)
    parts = [f"it leads {second.model} on {lead}" if lead else
             f"it has the same score as {second.model} ({top.score:.2f}) and comes first by name"]
    if second in better:
        parts[0] += f", although {has_better(second)}"
        better.remove(second)
    for other in better[:_WHY_MAX]:
        lead = _lead(top, other, weights, values, first=other)
        parts.append(f"{has_better(other)} but trails on {lead}" if lead else f"{has_better(other)} and the same score")
    if len(better) > _WHY_MAX:
        parts.append(f"{len(better) - _WHY_MAX} more have a better {label(key)} and a lower score")
    return "; ".join(parts)


_WHY_MAX = 3  # models with a better key number named in the verdict's reason


def _lead(top: Ranked, other: Ranked, weights: dict, values: dict, first: Ranked) -> str:
    """'quality (0.82 vs 0.35, weight 0.7; density 0.8212 vs 0.3218)': the category adding most to top's lead
    over other (weight x score difference; an unmeasured category counts 0) and the metric of it on which other
    trails most, `first`'s numbers first; "" when nothing puts top ahead (equal scores)."""
    from genbench.report.headline import label

    def score(r: Ranked, cat: str) -> float:
        s = r.categories.get(cat)
        return 0.0 if s is None else s

    cat = max(weights, key=lambda c: weights[c] * (score(top, c) - score(other, c)))
    if weights[cat] * (score(top, cat) - score(other, cat)) <= 0:
        return ""
    pair = (top, other) if first is top else (other, top)
    a, b = (f"{s:.2f}" if s is not None else "not measured" for s in (r.categories.get(cat) for r in pair))
    text = f"{cat} ({a} vs {b}, weight {weights[cat]:g}"
    met = _worst_gap_metric(other.model, top.model, cat, values)
    if met is not None:
        text += f"; {label(met)} {values[(pair[0].model, met)].value:.4g} vs {values[(pair[1].model, met)].value:.4g}"
    return text + ")"


def _first_metric(model: str, cat: str, values: dict) -> Optional[str]:
    return next((m for m in categories()[cat] if (model, m) in values), None)


def key_numbers(model: str, weights: dict, values: dict) -> str:
    """The model's first number of each weighted category, heaviest weight first: "samples/s 16,500, FD 111"."""
    from genbench.report.headline import label
    from genbench.report.tables import fmt_number

    out = []
    for cat in sorted((c for c, w in weights.items() if w > 0), key=lambda c: -weights[c]):
        met = next((m for m in categories()[cat] if (model, m) in values), None)
        if met is not None:
            out.append(f"{label(met)} {fmt_number(values[(model, met)].value, met)}")
    return ", ".join(out)


def verdict_text(rec: Recommendation) -> str:
    """'**Verdict**: use **gan** (samples/s 16,500, FD 111; score 0.78 [...]). Runner-up: vae (...). They tie ...'"""
    left_out = ""
    if rec.references:
        left_out = (" Reference points left out: " + ", ".join(f"{m} ({why})" for m, why in sorted(rec.references.items()))
                    + "; `--include-baselines` ranks them too.")
    if not rec.ranked:
        if rec.excluded:
            return (f"**Verdict**: no model qualifies ({len(rec.excluded)} excluded, reasons below): relax "
                    "--max-latency-ms / --min-coverage or pick another --task." + left_out)
        if rec.references:
            return "**Verdict**: no model to rank besides the reference points." + left_out
        return "**Verdict**: no model was scored on this dataset: check the run's failed jobs (`genbench report`)."
    top = rec.ranked[0]
    text = f"**Verdict**: use **{top.model}** ({_numbers(rec, top)})."
    if top.model in rec.included:
        text += f" Note: {top.model} is a reference point ({rec.included[top.model]}), not a model to deploy."
    if rec.why:
        text += f" Why {top.model}: {rec.why}."
    if len(rec.ranked) == 1:
        return text + " It is the only model that qualifies." + left_out
    second = rec.ranked[1]
    if second.rank == top.rank:
        tied = [r.model for r in rec.ranked if r.rank == top.rank and r is not top]
        text += (f" Runner-up: {second.model} ({_numbers(rec, second)}). They tie within noise"
                 + (f" (with {', '.join(tied[1:])} too)" if len(tied) > 1 else "")
                 + ": choose among them on what the task leaves out (cost, licence, familiarity).")
    else:
        text += f" Runner-up: {second.model} ({_numbers(rec, second)}), behind beyond noise."
    return text + paired_text(rec) + left_out


def paired_text(rec: Recommendation) -> str:
    """' Paired tie call (...): tied with vae on FD: difference 3.1 [-2, 8.4]; ahead of vae on density: ...'
    ("" when no tie call was asked for)."""
    from genbench.report.headline import label

    if not rec.paired_note:
        return ""
    top = rec.ranked[0].model
    if rec.paired_note.startswith("unavailable"):
        return (f" Paired tie call {rec.paired_note}; the tie above rests on the score intervals only.")
    parts, missing = [], {}
    for other, calls in rec.paired:
        for met, c in calls.items():
            if not c.available:
                missing.setdefault(c.why, []).append(f"{label(met)} vs {other}")
                continue
            word = "tied with" if c.tied else ("ahead of" if c.best_ahead else "behind")
            parts.append(f"{word} {other} on {label(met)}: difference {c.interval_text()}")
    text = ""
    if parts:
        text = (f" Paired tie call for {top} (difference = the other model - {top}; {rec.paired_note}): "
                + "; ".join(parts) + ".")
    elif not missing:
        return (f" Paired tie call: {top} and {rec.ranked[1].model} share no FD, KID or precision / recall / "
                "density / coverage score in the weighted categories.")
    for what, why in _grouped_reasons(missing):
        text += f" Paired tie call unavailable for {what}: {why}."
    return text


def _grouped_reasons(missing: dict) -> list:
    """[(what, why)]: reasons that differ only in their numbers and the metric they start with (e.g. "precision
    recomputed from the stored features (0.908) differs ...") are given once, the first in full."""
    import re

    groups: dict = {}
    for why, what in missing.items():
        key = re.sub(r"[-+]?\d[\d.e+-]*", "#", re.sub(r"^\w+ ", "", why))
        groups.setdefault(key, []).append((why, what))
    out = []
    for items in groups.values():
        whats = [w for _why, ws in items for w in ws]
        why = items[0][0] + (" (likewise for the others)" if len(items) > 1 else "")
        out.append((", ".join(whats), why))
    return out


def _numbers(rec: Recommendation, r: Ranked) -> str:
    nums = rec.numbers.get(r.model, "")
    return (nums + "; " if nums else "") + f"score {r.score:.2f} [{r.low:.2f}, {r.high:.2f}]"
