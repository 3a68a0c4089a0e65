"""How one score's change between two result sets is judged (for genbench.results.compare): a quality score by its
tolerance and its noise (genbench.results.noise; the paired bootstrap of genbench.results.paired where both sets
stored their features), then Holm-Bonferroni over all of a comparison's scores; a timing only on the same hardware,
by its tolerance and an absolute floor. Each judged score is a `Row`."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Optional

import pandas as pd

from genbench.results.noise import SideStats, holm, interval, noise_for, p_greater, side_stats
from genbench.results.tolerance import Tolerance, call_ms

KEY = ["dataset", "model", "metric", "variant"]


def parse_protocol(raw) -> dict:
    """A stored protocol (JSON text or a dict) as a dict; text that is not a JSON object is kept under "raw"."""
    if isinstance(raw, dict):
        return raw
    try:
        d = json.loads(raw) if raw else {}
    except (TypeError, json.JSONDecodeError):
        return {"raw": str(raw)}
    return d if isinstance(d, dict) else {"raw": d}


@dataclass
class Row:
    dataset: str
    model: str
    metric: str
    variant: str
    baseline: Optional[float]
    new: Optional[float]
    delta: Optional[float]
    noise: float  # standard error of the change (quality); 0 for timing
    tolerance: str
    verdict: str  # "regressed" | "improved" | "unchanged" | "within noise" | "not compared" | "new" | "missing"
    higher_is_better: bool
    unit: str
    detail: str = ""
    ci: Optional[tuple] = None  # 95% confidence interval of the change
    p_value: Optional[float] = None  # one-sided, for the direction of the change
    noise_source: str = ""  # what the noise is made of
    seeds: tuple = (0, 0)  # seeds on the (baseline, new) side


@dataclass
class Side:
    stats: SideStats
    higher_is_better: bool
    unit: str
    protocol: dict
    timing: bool
    budget: str
    version: str = ""  # the metric's definition version (MetricResult.version); "" where not recorded


def metric_version(raw) -> str:
    """A stored metric version as text ("" when missing): 1, 1.0 and "1" are all "1"."""
    if raw is None or (isinstance(raw, float) and math.isnan(raw)):
        return ""
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)
    return str(raw).strip()


def sides(frame: pd.DataFrame) -> dict[tuple, Side]:
    out = {}
    frame = frame.assign(variant=frame["variant"].fillna("").astype(str))  # a frame not read by load_results
    for key, g in frame.groupby(KEY, sort=True, dropna=False):
        proto = parse_protocol(g["protocol"].iloc[0])
        budget = str(g["budget"].iloc[0]) if "budget" in g.columns else ""
        version = metric_version(g["version"].iloc[0]) if "version" in g.columns else ""
        out[tuple(key)] = Side(side_stats(g), bool(g["higher_is_better"].iloc[0]), str(g["unit"].iloc[0]), proto,
                               bool(proto.get("timing", False)), budget, version)
    return out


def judge_timing(key: tuple, x: Side, y: Side, tol: Tolerance, floor_ms: float = 0.0) -> Row:
    """Timings are compared only between runs on the same hardware and thread count, by the tolerance and the
    absolute floor: a change counts when it exceeds the (relative) tolerance *and* the timed call (one sample,
    one batch, one generation, one fit; `call_ms`) got slower or faster by more than `floor_ms`. A figure that is
    not a time (peak memory) is judged by the tolerance alone."""
    ds, model, metric, variant = key
    base, new = x.stats.mean, y.stats.mean
    hx, hy = x.protocol.get("hardware"), y.protocol.get("hardware")
    tx, ty = x.protocol.get("torch_threads"), y.protocol.get("torch_threads")
    why = ""
    if hx is None or hy is None:
        why = f"hardware not recorded ({hx or 'baseline: unknown'} vs {hy or 'new: unknown'})"
    elif hx != hy:
        why = f"different hardware ({hx} vs {hy})"
    elif tx != ty:
        why = f"different thread counts ({tx} vs {ty})"
    elif timing_setup(x.protocol) != timing_setup(y.protocol):
        px, py = timing_setup(x.protocol), timing_setup(y.protocol)
        why = "different timing set-up (" + ", ".join(
            f"{k}: {px.get(k)!r} -> {py.get(k)!r}" for k in sorted(set(px) | set(py)) if px.get(k) != py.get(k)) + ")"
    if why:
        return Row(ds, model, metric, variant, base, new, None, 0.0, str(tol), "not compared", x.higher_is_better,
                   x.unit, detail=why, noise_source="timing", seeds=(x.stats.n, y.stats.n))
    verdict, delta = by_tolerance(base, new, x.higher_is_better, tol)
    cx, cy = call_ms(base, x.unit, x.protocol), call_ms(new, y.unit, y.protocol)
    if cx is None or cy is None:
        detail = f"same hardware ({hx}); judged by the tolerance {tol} alone (no call time: no floor)"
    else:
        detail = (f"same hardware ({hx}); judged by the tolerance {tol} and the floor {floor_ms:g} ms of the timed "
                  f"call ({cx:.3g} -> {cy:.3g} ms)")
        if verdict in ("regressed", "improved") and abs(cy - cx) <= floor_ms:
            verdict = "unchanged"
            detail += f"; beyond the tolerance but within the floor (change {cy - cx:+.3g} ms)"
    tol_text = f"{tol} and {floor_ms:g} ms" if cx is not None and cy is not None and floor_ms > 0 else str(tol)
    return Row(ds, model, metric, variant, base, new, delta, 0.0, tol_text, verdict, x.higher_is_better, x.unit,
               detail=detail, noise_source="timing", seeds=(x.stats.n, y.stats.n))


def timing_setup(p: dict) -> dict:
    """What a timing measured (batch size, repeats, statistic...), without where it ran."""
    return {k: v for k, v in p.items()
            if k not in ("seed", "hardware", "torch_threads", "device_name", "from_checkpoint_cache", "source")}


def by_tolerance(base: float, new: float, higher_is_better: bool, tol: Tolerance) -> tuple[str, Optional[float]]:
    if not (math.isfinite(base) and math.isfinite(new)):
        if base == new or (math.isnan(base) and math.isnan(new)):
            return "unchanged", 0.0
        xv, yv = (-base, -new) if higher_is_better else (base, new)
        return ("regressed" if (math.isnan(yv) or yv > xv) else "improved"), None
    delta = new - base
    worse = -delta if higher_is_better else delta
    if abs(delta) <= 1e-12 * max(1.0, abs(base)) or abs(worse) <= tol.allowed(base):
        return "unchanged", delta
    return ("regressed" if worse > 0 else "improved"), delta


def paired_result(paired, key: tuple, a: dict, b: dict):
    """The paired bootstrap of one feature score's change (genbench.results.paired), or why it is unavailable."""
    from genbench.results.paired import PAIRED_METRICS

    ds, model, metric, variant = key
    x, y = a[key], b[key]
    sa, sb = [int(v) for v in x.stats.seeds], [int(v) for v in y.stats.seeds]
    metrics, stored, k = [], {}, {}
    for m in PAIRED_METRICS:  # the group's feature scores measured on the same seeds, computed together
        km = (ds, model, m, variant)
        if km in a and km in b and [int(v) for v in a[km].stats.seeds] == sa and [int(v) for v in b[km].stats.seeds] == sb:
            metrics.append(m)
            stored[m] = (a[km].stats.values, b[km].stats.values)
            p = a[km].protocol
            if m in ("precision", "recall") and "k" in p:
                k["k_pr"] = int(p["k"])
            if m in ("density", "coverage") and "k" in p:
                k["k_dc"] = int(p["k"])
            if "ball" in p:
                k["strict"] = p["ball"] == "<"
    prdc_k = {"k_pr": k.get("k_pr", 3), "k_dc": k.get("k_dc", 5), "strict": k.get("strict", False)}
    return paired.results(ds, model, variant, sa, sb, metrics, stored, prdc_k).get(metric, "not computed")


def judge(key: tuple, x: Side, y: Side, tol: Tolerance, cal, paired=None, hardware: str = "") -> Row:
    """A quality score, before the multiple-testing decision: verdict 'pending' with the one-sided p-value of
    its change in the direction it went (`decide` settles it). `paired`: its paired-bootstrap result
    (genbench.results.paired.PairedResult), or why that is unavailable (a string), or None for a score it does not apply to."""
    ds, model, metric, variant = key
    base, new = x.stats.mean, y.stats.mean
    seeds = (x.stats.n, y.stats.n)
    if not (math.isfinite(base) and math.isfinite(new)):
        # e.g. mode_kl is +inf for a model that covers no mode: equal infinities are unchanged; a move to or from
        # infinity is judged by direction alone.
        verdict, _ = by_tolerance(base, new, x.higher_is_better, tol)
        return Row(ds, model, metric, variant, base, new, None if verdict != "unchanged" else 0.0, 0.0, str(tol),
                   verdict, x.higher_is_better, x.unit, "non-finite value", seeds=seeds)
    pr = paired if paired is not None and not isinstance(paired, str) else None
    nz = noise_for(x.stats, y.stats, cal, pr.sd if pr is not None else None, hardware)
    delta = new - base
    worse = -delta if x.higher_is_better else delta  # > 0: the new value is worse
    allowed = tol.allowed(base)
    detail = f"tolerance {tol} (= {allowed:.3g}); noise: {nz.describe()}"
    if pr is not None:
        detail += f"; {pr.describe()}"
    elif isinstance(paired, str):
        detail += f"; paired test unavailable: {paired}"
    row = Row(ds, model, metric, variant, base, new, delta, nz.se, str(tol), "pending", x.higher_is_better, x.unit,
              detail, interval(delta, nz.se, nz.df), p_greater(abs(worse), nz.se, nz.df), nz.source, seeds)
    unchanged = abs(delta) <= 1e-12 * max(1.0, abs(base)) or abs(worse) <= allowed  # below the smallest change
    row._decision = (worse > 0, not unchanged)  # type: ignore[attr-defined]
    return row


def decide(rows: list[Row], alpha: float) -> None:
    """Holm-Bonferroni over every finite quality score compared (the family), at family-wise level `alpha`. A score
    whose change exceeds its tolerance is 'regressed' / 'improved' when its test rejects, else 'within noise'; a
    change within the tolerance is 'unchanged' whatever its test says."""
    rejected = holm([r.p_value for r in rows], alpha)
    for r, sig in zip(rows, rejected):
        worse, beyond = r.__dict__.pop("_decision")
        if not beyond:
            r.verdict = "unchanged"
            continue
        r.verdict = ("regressed" if worse else "improved") if sig else "within noise"
        r.detail += f"; p = {r.p_value:.2g} (Holm over {len(rows)} scores, family-wise alpha {alpha:g})"
