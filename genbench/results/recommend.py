"""Choosing a model for a task (`genbench recommend`): rank stored results by a task profile.

Each metric belongs to one category (quality, diversity, speed, likelihood, footprint), as it declares
(genbench.metrics.registry.Output). Per dataset, every
metric is mapped to [0, 1] across the models (1 = best of them, 0 = worst; speed and size on a log scale,
since they span orders of magnitude), a category score is the mean of its metrics, and a model's score is
the profile-weighted mean of its category scores. The uncertainty of each number (its CI, or the spread over
seeds) is carried through the same mapping (its ends cut to [0, 1]), giving every score an interval: a model
whose interval overlaps that of the best model of its group is a tie with it, and is said to be (overlapping
only a neighbour that overlaps the best is not enough). The verdict says why the first model is chosen: what
puts it ahead of the runner-up, and what each model with a better key number (e.g. a lower FD) loses on
(the answer object and its words: genbench/results/recommendation.py).

Where the results are a run directory whose jobs stored their features, the verdict also calls ties with the
paired bootstrap (genbench.results.paired_ties, `paired.model_difference`): the first model against the runner-up (and
the other models of its rank), on each FD / KID / precision / recall / density / coverage of the weighted quality
and diversity categories that both were scored on with the same protocol and seeds: "tied with vae on FD:
difference 3.1 [-2, 8.4]" when the interval of the difference contains 0. The ranking itself stays the score's
(deterministic: score, then name); without stored features the verdict says the tie call is unavailable and why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import pandas as pd

from genbench.results.compare import aggregate
from genbench.errors import InvalidInputError
from genbench.reference import reference_models, role_label
from genbench.results.recommendation import (  # noqa: F401 (categories: re-exported)
    CATEGORY_NAMES, Ranked, Recommendation, _explain, _why_chosen, categories, key_numbers)
from genbench.registry import unknown_name_message

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
    front, unless `include_baselines`. `ties`: a genbench.results.paired_ties.PairedTies of the run the frame comes from,
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
