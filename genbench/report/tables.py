"""Leaderboard tables: per dataset, models as rows, the headline metrics as columns.

Each cell is `value ± err` (err = half the confidence interval for one seed; for several, the 95% half-width of
the mean over seeds, genbench.results.noise.mean_half_width, the interval compare and recommend use), each header
carries ↑ or ↓ (higher / lower is better), the best value of each column is bold, and the protocol of the
numbers is written under the table. On the FD / KID / precision / recall / density / coverage columns, a model
whose difference from the column's best is not significant by the paired bootstrap (genbench.results.paired_ties: the
interval of the difference, over the same reference rows, contains 0) is marked `≈` (TIE_MARK), and a line
under the table gives each tested difference ("FD: best gan (tied: gan, vae); vae - gan 3.1 [-2, 8.4]"). genbench/report/table_formats.py renders them (Markdown, LaTeX, HTML, CSV).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Optional


from genbench.reference import is_reference, role_label
from genbench.report.data import Cell, RunData, aggregate, modality_of
from genbench.report.column_ties import TIE_MARK, column_ties, tied_with_best  # noqa: F401 (TIE_MARK: re-exported)
from genbench.report.headline import headline_for, is_percent, label

UP, DOWN = "↑", "↓"
MISSING = "—"
ERROR_CHARS = 80  # error text under a table
STATUS_CHARS = 40  # error text in a table's status column


@dataclass
class Row:
    model: str
    family: str
    n_seeds: int
    status: str  # "" (all done / unknown), "failed: ...", "1 of 2 seeds failed: ..."
    failed: bool  # no seed finished
    cells: dict  # metric -> Cell
    reference: str = ""  # what a reference point bounds ("memorisation ceiling, ..."); "" for a contestant


@dataclass
class Leaderboard:
    dataset: str
    modality: Optional[str]
    columns: list  # metric names
    directions: dict  # metric -> higher_is_better
    rows: list  # Row, best first on the first column, failed last
    best: dict  # metric -> set of models with the best value
    protocol: list  # sentences, one per group of metrics sharing a protocol
    failures: list = field(default_factory=list)  # (model, seed, short error)
    skipped: list = field(default_factory=list)  # (model, metric, why) from "skipped_metrics" artifacts
    ties: dict = field(default_factory=dict)  # metric -> ColumnTie (the paired tie call on that column)
    tie_note: str = ""  # the paired tie call's protocol, or "unavailable: why" ("" when not asked for)

    @property
    def multi_seed(self) -> bool:
        return any(r.n_seeds > 1 for r in self.rows)

    @property
    def has_status(self) -> bool:
        return any(r.status for r in self.rows)


# --------------------------------------------------------------------------------------------- building
def build_leaderboards(data: RunData, ties=None) -> list[Leaderboard]:
    """The leaderboards of a run; `ties`: a genbench.results.paired_ties.PairedTies of the run for the paired tie call
    (None: no tie call, nothing said about it)."""
    cells = aggregate(data.metrics)
    out = []
    for ds in data.datasets:
        m = data.metrics[data.metrics["dataset"] == ds]
        available = set(m.loc[m["variant"] == "", "metric"])
        modality = modality_of(ds, set(m["metric"]))
        cols = headline_for(modality, available)
        jobs = data.jobs[data.jobs["dataset"] == ds] if len(data.jobs) else data.jobs
        models = sorted(set(m["model"]) | set(jobs["model"].dropna().astype(str)))
        rows, failures = [], []
        for model in models:
            jm = jobs[jobs["model"] == model]
            mm = m[m["model"] == model]
            row_cells = {c: cells[(ds, model, c, "")] for c in cols if (ds, model, c, "") in cells}
            failed_jobs = jm[jm["status"] == "failed"]
            for _, j in failed_jobs.iterrows():
                failures.append((model, int(j["seed"]), short_error(j["error"])))
            n_done = int(mm["seed"].nunique())
            status = ""
            if len(failed_jobs):
                err = short_error(failed_jobs["error"].iloc[0], STATUS_CHARS)
                status = f"failed: {err}" if n_done == 0 else f"{len(failed_jobs)} of {len(jm)} seeds failed: {err}"
            elif len(jm) and (jm["status"] != "done").any() and n_done < len(jm):
                pending = jm.loc[jm["status"] != "done", "status"].iloc[0]
                status = f"{pending} (incomplete run)" if n_done == 0 else f"{len(jm) - n_done} of {len(jm)} seeds {pending}"
            family = str((mm["family"].iloc[0] if len(mm) else jm["family"].iloc[0] if len(jm) else "") or "")
            ref = reference_text(model, modality, cells.get((ds, model, "near_copy_share", ""))) \
                if is_reference(family) else ""
            rows.append(Row(model, family, n_done, status, n_done == 0, row_cells, ref))
        contestants = [r for r in rows if not r.reference] or rows
        best = {c: best_models(contestants, c) for c in cols}
        directions = {c: next((r.cells[c].higher_is_better for r in rows if c in r.cells), True) for c in cols}
        rows.sort(key=lambda r: _rank_key(r, cols, directions))
        lb = Leaderboard(ds, modality, cols, directions, rows, best, protocol_lines(rows, cols), failures,
                         skipped_metrics(data, ds))
        if ties is not None:
            lb.ties, lb.tie_note = column_ties(ds, [r for r in contestants if not r.failed], cols, directions, ties)
        out.append(lb)
    return out


def skipped_metrics(data: RunData, dataset: str) -> list:
    """(model, metric, why) for the metrics the runner skipped (artifact kind "skipped_metrics": JSON {name: why}),
    first seed of each model."""
    a = data.artifacts
    if a.empty:
        return []
    rows = a[(a["dataset"] == dataset) & (a["kind"] == "skipped_metrics")].sort_values(["model", "seed"])
    out, seen = [], set()
    for _, r in rows.iterrows():
        try:
            blob = json.loads((data.dir / str(r["path"])).read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(blob, dict):
            continue
        for metric, why in sorted(blob.items()):
            if (r["model"], metric) not in seen:
                seen.add((r["model"], metric))
                out.append((str(r["model"]), str(metric), short_error(str(why), 120)))
    return out


def reference_text(model: str, modality: Optional[str], near_copy: Optional[Cell]) -> str:
    """What a reference point bounds, for its row: the memorisation ceiling carries its near-copy share."""
    text = role_label(model, modality)
    if near_copy is not None and math.isfinite(near_copy.value) and text.startswith("memorisation"):
        text += f", {fmt_number(near_copy.value * scale('near_copy_share', near_copy))}% near copies"
    return text


def _rank_key(r: Row, cols: list, directions: dict):
    """Contestants before reference points; within each, best first on the first column, models without it next,
    models with no finished seed last."""
    band = 1 if r.reference else 0
    if r.failed:
        return (band, 2, 0.0, r.model)
    c0 = cols[0] if cols else None
    cell = r.cells.get(c0) if c0 else None
    if cell is not None and math.isfinite(cell.value):
        return (band, 0, -cell.value if directions[c0] else cell.value, r.model)
    return (band, 1, 0.0, r.model)


def best_models(rows: list, metric: str) -> set:
    vals = {r.model: r.cells[metric].value for r in rows if metric in r.cells and math.isfinite(r.cells[metric].value)}
    if not vals:
        return set()
    hib = next(r.cells[metric].higher_is_better for r in rows if metric in r.cells)
    target = max(vals.values()) if hib else min(vals.values())
    return {m for m, v in vals.items() if v == target}


def short_error(err, limit: int = ERROR_CHARS) -> str:
    if err is None or (isinstance(err, float) and math.isnan(err)) or not str(err).strip():
        return "no error recorded"
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    # A traceback ends with the exception line; a plain message starts with it.
    text = lines[-1] if lines[0].startswith("Traceback") else lines[0]
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


# --------------------------------------------------------------------------------------------- formatting
def fmt_number(v: float, metric: str = "") -> str:
    if v is None:
        return MISSING
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "∞" if v > 0 else "-∞"
    if metric in ("nfe", "modes_covered", "classes_covered", "num_params") and float(v).is_integer():
        return f"{int(v):,}"
    a = abs(v)
    if a >= 1000:  # three significant digits, with thousands separators
        return f"{round(v, 2 - math.floor(math.log10(a))):,.0f}"
    if a == 0:
        return "0"
    s = f"{v:.3g}"
    if "e" in s and a >= 1e-4:
        s = f"{v:.{max(0, 2 - math.floor(math.log10(a)))}f}"
    return s


def fmt_err(e: float) -> str:
    """Two significant digits, never in exponent notation for large values; "" for none or zero (seeds agree)."""
    if e is None or not math.isfinite(e) or e == 0:
        return ""
    if e >= 100:
        return f"{round(e, 1 - math.floor(math.log10(e))):,.0f}"
    return f"{e:.2g}"


def scale(metric: str, cell: Cell) -> float:
    return 100.0 if is_percent(metric) and cell.unit != "%" else 1.0


def is_bound(cell: Cell) -> bool:
    """A likelihood number that is only a bound (VAE ELBO, diffusion variational bound)."""
    return bool(cell.protocol.get("kind") == "bound" or cell.protocol.get("bound") or cell.extra.get("is_upper_bound"))


def symmetric(cell: Cell) -> bool:
    """Does `value ± err` describe the interval? (Bootstrap CIs of biased statistics such as FD can be lopsided,
    or even exclude the point estimate; those are shown as [low, high].)"""
    if cell.err is None or cell.n_seeds > 1 or cell.err == 0:
        return True
    up, down = cell.hi - cell.value, cell.value - cell.lo
    return up >= 0 and down >= 0 and abs(up - down) <= 0.25 * cell.err * 2


def fmt_bound(v: float) -> str:
    if not math.isfinite(v):
        return fmt_number(v)
    if abs(v) >= 100:
        return f"{round(v, 1 - math.floor(math.log10(abs(v)))):,.0f}"
    return f"{v:.2g}"


def cell_text(metric: str, cell: Optional[Cell]) -> str:
    """`value ± err` (symmetric CI, or the 95% half-width of a mean over seeds), `value [low, high]` (lopsided CI), or `value`."""
    if cell is None:
        return MISSING
    k = scale(metric, cell)
    v = fmt_number(cell.value * k, metric)
    if not symmetric(cell):
        text = f"{v} [{fmt_bound(cell.lo * k)}, {fmt_bound(cell.hi * k)}]"
    else:
        e = fmt_err(cell.err * k) if cell.err is not None else ""
        text = f"{v} ± {e}" if e else v
    return text + " (bound)" if is_bound(cell) else text


def header(metric: str, higher_is_better: bool) -> str:
    return f"{label(metric)} {UP if higher_is_better else DOWN}"


BAND = "reference points: bounds, not ranked"


def _row_cells(lb: Leaderboard, r: Row, bold, esc) -> list:
    out = [esc(f"{r.model} ({r.reference})" if r.reference else r.model)]
    if lb.multi_seed:
        out.append(str(r.n_seeds))
    for c in lb.columns:
        text = cell_text(c, r.cells.get(c))
        if tied_with_best(lb, r.model, c):
            text += f" {TIE_MARK}"
        out.append(bold(esc(text)) if r.model in lb.best[c] else esc(text))
    if lb.has_status:
        out.append(esc(r.status or "ok"))
    return out


def _headers(lb: Leaderboard, esc=lambda s: s) -> list:
    hs = ["model"] + (["seeds"] if lb.multi_seed else [])
    hs += [esc(header(c, lb.directions[c])) for c in lb.columns]
    return hs + (["status"] if lb.has_status else [])


def protocol_lines(rows: list, cols: list) -> list:
    """One line per group of columns sharing a protocol; a column whose models were scored under different
    protocols gets a warning line naming each model's protocol (those numbers are not comparable)."""
    groups: dict[str, list] = {}
    warnings = []
    for c in cols:
        descs: dict[str, list] = {}
        for r in rows:
            if c in r.cells:
                descs.setdefault(describe_protocol(r.cells[c].protocol), []).append(r.model)
        if len(descs) > 1:
            warnings.append(f"WARNING {label(c)}: models were scored under different protocols, not comparable: "
                            + " · ".join(f"{', '.join(ms)}: {d}" for d, ms in descs.items()))
        groups.setdefault(next(iter(descs), describe_protocol(None)), []).append(label(c))
    return [f"{', '.join(ms)}: {desc}" for desc, ms in groups.items()] + precision_lines(rows) + warnings


def precision_lines(rows: list) -> list:
    """A line naming the models whose networks ran in reduced precision (the runner records `precision`, e.g.
    "bf16-autocast", in each result's protocol; float32 is not recorded), or nothing when all ran in float32."""
    by_prec: dict[str, list] = {}
    for r in rows:
        precs = {(cell.protocol or {}).get("precision") for cell in r.cells.values()} - {None, "", "float32"}
        for prec in sorted(precs):
            by_prec.setdefault(prec, []).append(r.model)
    return [f"models run in {prec}: {', '.join(ms)} (the others in float32)" for prec, ms in by_prec.items()]


def describe_protocol(p: Optional[dict]) -> str:
    """Feature network, sample counts, reference split (and k, sampler, CI, timing set-up) in words."""
    if p is None:
        return "no protocol recorded"
    if not p:
        return "protocol not recorded (older store)"
    parts = []
    if p.get("timing"):
        t = f"timed on {p.get('device_name') or p.get('device') or '?'}"
        if p.get("batch_size") is not None:
            t += f", batch {p['batch_size']}"
        if p.get("repeats") is not None:
            t += f", {p.get('statistic', 'median')} of {p['repeats']} repeats"
        parts.append(t)
    feat = next((p[k] for k in ("features", "feature_extractor", "feature_network", "extractor", "feature_protocol")
                 if p.get(k)), None)
    if isinstance(feat, dict):
        feat = feat.get("id") or feat.get("name") or str(feat)
    if feat:
        parts.append(f"features {feat}" + (" (UNPINNED: weights not hash-pinned, so the numbers may differ from "
                                           "machine to machine)" if p.get("features_pinned") is False else ""))
    if p.get("classifier") and p["classifier"] != feat:
        parts.append(f"classifier {p['classifier']}")
    n_fake = next((p[k] for k in ("n_fake", "n_samples", "num_samples", "n_generated") if p.get(k) is not None), None)
    n_real = next((p[k] for k in ("n_real", "n_reference") if p.get(k) is not None), None)
    if n_fake is not None and n_real is not None:
        parts.append(f"{_count(n_fake)} generated vs {_count(n_real)} real samples")
    elif n_fake is not None:
        parts.append(f"{_count(n_fake)} samples")
    elif n_real is not None:
        parts.append(f"{_count(n_real)} real samples")
    if p.get("n_train") is not None:
        parts.append(f"against {_count(p['n_train'])} training samples")
    if p.get("near_copy"):
        parts.append(f"near copy: {p['near_copy']}")
    if p.get("n_eval") is not None:
        parts.append(f"{_count(p['n_eval'])} held-out items")
    if p.get("n_chars") is not None and not p.get("timing"):
        parts.append(f"{_count(p['n_chars'])} characters")
    split = next((p[k] for k in ("reference_split", "real_split", "split", "eval_split") if p.get(k)), None)
    if split:
        parts.append(f"reference split {split}")
    if p.get("mixture"):
        parts.append(f"mixture {p['mixture']}")
    if p.get("high_quality"):
        parts.append(f"high quality = {p['high_quality']}")
    for k, name in (("k", "k"), ("subsets", "subsets"), ("sampler", "sampler"), ("steps", "steps"),
                    ("context", "context"), ("stride", "stride")):
        if p.get(k) not in (None, ""):
            parts.append(f"{name} {p[k]}")
    if p.get("n_bootstrap"):
        alpha = p.get("bootstrap_alpha", 0.05)
        parts.append(f"{100 * (1 - float(alpha)):g}% bootstrap CI ({p['n_bootstrap']} resamples)")
    if p.get("definition") and not parts:
        parts.append(str(p["definition"]))
    if not parts:
        keys = [k for k in sorted(p) if k not in ("seed", "dataset")][:5]
        parts = [f"{k} {p[k]}" for k in keys] or ["no protocol details"]
    return "; ".join(str(x) for x in parts)


def _count(n) -> str:
    try:
        return f"{int(n):,}"
    except (TypeError, ValueError):
        return str(n)


SPREAD_NOTE = ("One seed: ± is half the width of the stored confidence interval, or [low, high] when that "
               "interval is lopsided about the value; several seeds: mean ± the 95% half-width of the mean (1.96 x the larger of the seed spread and the bootstrap noise, / sqrt(seeds)); bold marks the best value of each column; (bound) marks a likelihood that is "
               "only an upper bound on bits (ELBO / variational bound), not an exact value.")
