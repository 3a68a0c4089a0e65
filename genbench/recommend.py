"""Choosing a model for a task (`genbench recommend`): rank stored results by a task profile.

Each metric belongs to one category (quality, diversity, speed, likelihood, footprint), as it declares
(genbench.metrics.registry.Output). Per dataset, every
metric is mapped to [0, 1] across the models (1 = best of them, 0 = worst; speed and size on a log scale,
since they span orders of magnitude), a category score is the mean of its metrics, and a model's score is
the profile-weighted mean of its category scores. The uncertainty of each number (its CI, or the spread over
seeds) is carried through the same mapping (its ends cut to [0, 1]), giving every score an interval: a model
whose interval overlaps that of the best model of its group is a tie with it, and is said to be (overlapping
only a neighbour that overlaps the best is not enough). The verdict says why the first model is chosen: what
puts it ahead of the runner-up, and what each model with a better key number (e.g. a lower FD) loses on.

Where the results are a run directory whose jobs stored their features, the verdict also calls ties with the
paired bootstrap (genbench.paired_ties, `paired.model_difference`): the first model against the runner-up (and
the other models of its rank), on each FD / KID / precision / recall / density / coverage of the weighted quality
and diversity categories that both were scored on with the same protocol and seeds: "tied with vae on FD:
difference 3.1 [-2, 8.4]" when the interval of the difference contains 0. The ranking itself stays the score's
(deterministic: score, then name); without stored features the verdict says the tie call is unavailable and why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import pandas as pd

from genbench.compare import aggregate
from genbench.errors import InvalidInputError
from genbench.reference import reference_models, role_label
from genbench.registry import unknown_name_message

# The categories a task profile weighs; which metrics each holds, and which are compared on a log scale, is
# declared with the metrics themselves (genbench.metrics.registry.Output: category, rank, log_scale).
CATEGORY_NAMES = ("quality", "diversity", "speed", "likelihood", "footprint")


def categories() -> dict[str, tuple[str, ...]]:
    """Category -> its declared metrics, most representative first."""
    from genbench.metrics.registry import in_category

    return {c: in_category(c) for c in CATEGORY_NAMES}


def _log_scale(metric: str) -> bool:
    from genbench.metrics.registry import output

    o = output(metric)
    return o is not None and o.log_scale


@dataclass(frozen=True)
class TaskProfile:
    name: str
    description: str
    weights: dict
    requires: tuple = ()  # categories a model must have measured to be considered


PROFILES: dict[str, TaskProfile] = {
    p.name: p
    for p in (
        TaskProfile("real-time", "latency-bound sampling: speed first, then quality",
                    {"speed": 0.6, "quality": 0.3, "diversity": 0.1}, ("speed",)),
        TaskProfile("high-fidelity", "the most realistic samples, whatever they cost",
                    {"quality": 0.7, "diversity": 0.2, "speed": 0.1}, ("quality",)),
        TaskProfile("diverse-augmentation", "data augmentation: cover the data (recall, coverage, modes) with decent quality",
                    {"diversity": 0.6, "quality": 0.3, "speed": 0.1}, ("diversity",)),
        TaskProfile("density-estimation", "likelihoods for anomaly detection / compression: an exact, low bits/dim",
                    {"likelihood": 0.8, "quality": 0.1, "speed": 0.1}, ("likelihood",)),
        TaskProfile("small-footprint", "edge deployment: few parameters and little memory, then quality",
                    {"footprint": 0.6, "quality": 0.3, "speed": 0.1}, ("footprint",)),
    )
}


def parse_weights(text: str) -> dict[str, float]:
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in part:
            raise InvalidInputError(f"--weights expects name=value pairs like quality=0.5,speed=0.5; got {part!r}")
        k, v = (s.strip() for s in part.split("=", 1))
        if k not in CATEGORY_NAMES:
            raise InvalidInputError(unknown_name_message("weight category", k, CATEGORY_NAMES))
        try:
            out[k] = float(v)
        except ValueError:
            raise InvalidInputError(f"--weights: {k}={v!r} is not a number; write it like {k}=0.5") from None
        if out[k] < 0:
            raise InvalidInputError(f"--weights: {k} must be >= 0 (weights are shares, e.g. quality=0.7,speed=0.3)")
    if not out or sum(out.values()) <= 0:
        raise InvalidInputError("--weights: give at least one positive weight, e.g. --weights quality=0.7,speed=0.3")
    return out


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


def recommend(
    frame: pd.DataFrame,
    task: Optional[str] = None,
    weights: Optional[dict] = None,
    dataset: Optional[str] = None,
    max_latency_ms: Optional[float] = None,
    min_coverage: Optional[float] = None,
    include_baselines: bool = False,
    ties=None,
) -> list[Recommendation]:
    """Rank each dataset's models for a task profile (or custom weights). Reference points (family `baseline`,
    genbench/reference.py) are left out of the ranking, and so of every score's normalisation and of the Pareto
    front, unless `include_baselines`. `ties`: a genbench.paired_ties.PairedTies of the run the frame comes from,
    for the verdict's paired tie call (None: no tie call, nothing said about it)."""
    if task is None and not weights:
        raise InvalidInputError(f"give --task (one of {', '.join(PROFILES)}) or --weights (e.g. quality=0.7,speed=0.3); "
                                "`genbench recommend --help` describes each task")
    profile = None
    if task is not None:
        if task not in PROFILES:
            raise InvalidInputError(unknown_name_message("task", task, PROFILES))
        profile = PROFILES[task]
    w = dict(weights) if weights else dict(profile.weights)
    requires = profile.requires if profile else ()
    datasets = sorted(set(frame["dataset"]))
    if dataset is not None:
        if dataset not in datasets:
            raise InvalidInputError(unknown_name_message("dataset in these results", dataset, datasets))
        datasets = [dataset]
    frame = frame[frame["variant"].fillna("") == ""]  # rank on each model's default sampler
    out = []
    for ds in datasets:
        part = frame[frame["dataset"] == ds]
        refs = {m: role_label(m) for m in reference_models(part)}
        kept = part if include_baselines else part[~part["model"].isin(refs)]
        rec = _recommend_one(kept, ds, task or "custom", w, requires, max_latency_ms, min_coverage)
        rec.references, rec.included = ({}, refs) if include_baselines else (refs, {})
        if ties is not None:
            _paired_calls(rec, ties, frame[frame["dataset"] == ds])
        out.append(rec)
    return out


def _recommend_one(frame, ds, profile, weights, requires, max_latency_ms, min_coverage) -> Recommendation:
    agg = aggregate(frame)
    models = sorted({k[1] for k in agg})
    cats = categories()
    scored = {m for ms in cats.values() for m in ms}
    values = {}  # (model, metric) -> Aggregate
    for (d, model, metric, _variant), a in agg.items():
        if metric in scored and not math.isnan(a.value):
            values[(model, metric)] = a
    excluded: dict[str, str] = {}
    for m in models:
        lat = values.get((m, "latency_ms"))
        if max_latency_ms is not None:
            if lat is None:
                excluded[m] = "latency not measured"
            elif lat.value > max_latency_ms:
                excluded[m] = f"latency {lat.value:.3g} ms > {max_latency_ms:g} ms"
        cov = values.get((m, "coverage"))
        if min_coverage is not None and m not in excluded:
            if cov is None:
                excluded[m] = "coverage not measured"
            elif cov.value < min_coverage:
                excluded[m] = f"coverage {cov.value:.3f} < {min_coverage:g}"
        for cat in requires:
            if m not in excluded and not any((m, met) in values for met in categories()[cat]):
                excluded[m] = f"no {cat} metric measured" + (" (no tractable likelihood)" if cat == "likelihood" else "")
    kept = [m for m in models if m not in excluded]

    # Normalise each metric over the kept models: point value and interval ends.
    norm: dict[tuple, tuple[float, float, float]] = {}
    for metric in {met for (_m, met) in values}:
        present = [m for m in kept if (m, metric) in values]
        if not present:
            continue
        tr = _clipped(_transform(metric), [values[(m, metric)].value for m in present])
        pts = {m: tr(values[(m, metric)].value) for m in present}
        lo_all, hi_all = min(pts.values()), max(pts.values())
        span = hi_all - lo_all
        hib = values[(present[0], metric)].higher_is_better
        for m in present:
            a = values[(m, metric)]
            ends = [tr(a.value - a.half_width), tr(a.value + a.half_width)]
            if span <= 0:
                norm[(m, metric)] = (1.0, 1.0, 1.0)
                continue
            s = [(e - lo_all) / span for e in (pts[m], *ends)]
            if not hib:
                s = [1 - x for x in s]
            # the point lies in [0, 1] by construction; an interval end past the best (worst) candidate means
            # "could be the best (worst) of them": 1 (0), never a score outside the scale
            norm[(m, metric)] = (s[0], _unit(min(s[1:])), _unit(max(s[1:])))

    ranked = []
    total_w = sum(weights.values())
    for m in kept:
        cats, lo, hi, point = {}, 0.0, 0.0, 0.0
        for cat, wt in weights.items():
            mets = [norm[(m, met)] for met in categories()[cat] if (m, met) in norm]
            if not mets:
                cats[cat] = None
                continue  # not measured: contributes 0 (the worst) to the score
            c = sum(x[0] for x in mets) / len(mets)
            cats[cat] = c
            point += wt * c
            lo += wt * sum(x[1] for x in mets) / len(mets)
            hi += wt * sum(x[2] for x in mets) / len(mets)
        ranked.append(Ranked(m, point / total_w, lo / total_w, hi / total_w, cats))
    ranked.sort(key=lambda r: (-r.score, r.model))
    _assign_ranks(ranked)
    _mark_pareto(ranked)
    for r in ranked:
        r.reason, r.gives_up = _explain(r, ranked, weights, values)
    numbers = {r.model: key_numbers(r.model, weights, values) for r in ranked}
    return Recommendation(ds, profile, weights, ranked, excluded, numbers, why=_why_chosen(ranked, weights, values))


_PAIRED_OTHERS = 3  # models besides the runner-up (those sharing the first rank) given a paired call


def _paired_calls(rec: Recommendation, ties, frame: pd.DataFrame) -> None:
    """The paired tie call of the first model against the runner-up and the others of its rank, on the paired
    metrics of the weighted quality / diversity categories that both models have (module docstring)."""
    if len(rec.ranked) < 2:
        return
    rec.paired_note = f"unavailable: {ties.reason}" if ties.reason else ties.protocol()
    top = rec.ranked[0]
    others = [rec.ranked[1]] + [r for r in rec.ranked[2:] if r.rank == top.rank][:_PAIRED_OTHERS]
    cats = categories()
    wanted = [m for c in ("quality", "diversity") if rec.weights.get(c, 0) > 0 for m in cats[c]]
    have = frame[frame["value"].notna()]
    by_model = {m: set(g["metric"]) for m, g in have.groupby("model")}
    hib = {str(m): bool(v) for m, v in have.groupby("metric")["higher_is_better"].first().items()}
    for o in others:
        common = by_model.get(top.model, set()) & by_model.get(o.model, set())
        metrics = {m: hib[m] for m in wanted if m in common}
        calls = ties.calls(rec.dataset, top.model, o.model, metrics)
        rec.paired.append((o.model, calls))


def _unit(x: float) -> float:
    return min(max(x, 0.0), 1.0)


def _assign_ranks(ranked: list) -> None:
    """Ranks over models sorted best first: a model shares the rank of the best model of the current group only
    when its own interval overlaps that model's; overlapping a neighbour that overlaps the leader is not enough
    (ties are not transitive: A ~ B and B ~ C with A clearly ahead of C must not put A and C level). `tie_with`
    lists the models of the same rank whose intervals overlap the model's own."""
    leader = None
    for i, r in enumerate(ranked):
        if leader is not None and _overlap(leader, r):
            r.rank = leader.rank
        else:
            r.rank, leader = i + 1, r
    for r in ranked:
        r.tie_with = [o.model for o in ranked if o is not r and o.rank == r.rank and _overlap(o, r)]


def _transform(metric: str):
    if _log_scale(metric):
        return lambda v: math.log10(max(v, 1e-12))
    return lambda v: v


def _clipped(tr, raw: list):
    """Infinite values (e.g. mode_kl of a model that covers no mode) map to just past the finite extremes, so
    they rank last (or first) without turning every score into NaN."""
    finite = [tr(v) for v in raw if math.isfinite(v)]
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
    pad = max(hi - lo, 1.0)

    def f(v: float) -> float:
        if math.isinf(v):
            return hi + pad if v > 0 else lo - pad
        return tr(v)

    return f


def _overlap(a: Ranked, b: Ranked) -> bool:
    return a.low <= b.high and b.low <= a.high


def _mark_pareto(ranked: list) -> None:
    axes = ("quality", "diversity", "speed")
    pts = {r.model: tuple((r.categories.get(a) if r.categories.get(a) is not None else -1.0) for a in axes) for r in ranked}
    for r in ranked:
        p = pts[r.model]
        r.pareto = not any(
            all(q[i] >= p[i] for i in range(3)) and any(q[i] > p[i] for i in range(3))
            for m, q in pts.items() if m != r.model
        )


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
