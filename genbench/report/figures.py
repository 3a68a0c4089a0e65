"""Report figures (matplotlib, Agg canvas; no display, no global pyplot state).

Per dataset, each drawn only when the run holds what it needs:
- `samples`: sample grids per model beside the real data (artifacts "samples_preview" / "real_preview");
- `mixture`: 2D datasets, samples over the true mixture's means with 3-std circles;
- `quality_speed`: FD (or bits/dim) against samples/s on a log axis, with the Pareto front marked;
- `precision_recall`: precision vs recall (and density vs coverage);
- `steps`: quality against sampler steps (metric variants named like "ddim-25");
- `guidance`: fidelity (conditional accuracy, precision) against diversity (intra-class FD, recall) over the
  classifier-free guidance scales of a sweep (variants named like "guidance-2");
- `class_samples`: per-class sample grids of conditional models, one panel per guidance scale
  (genbench/report/class_grids.py);
- `modes`: per-mode / per-class histograms (the histogram in a coverage metric's extra, or a
  "mode_histogram" artifact);
- `training`: training curves (artifact "history": FitHistory records with step, loss, ...).
`make_figures` writes PNGs under DIR/figures and returns them with captions, plus notes on what was skipped.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import numpy as np
from matplotlib.patches import Circle

from genbench.metrics.registry import in_category
from genbench.reference import reference_models
from genbench.report.class_grids import fig_class_samples
from genbench.report.data import Cell, RunData, aggregate
from genbench.report.headline import label

from genbench.report.figure_kit import (FIG_DIR, GUIDANCE_VARIANT, MAX_PANELS, QUALITY_FOR_SPEED, SPEED, STEP_VARIANT,
                                        _SINGULAR, FigureFile, _Artifacts, _mixture, _new, _save, _scatter_labels,
                                        _slug, _tidy_log_axis, _yerr, find_histogram, image_grid, pareto_front)

# --------------------------------------------------------------------------------------------- figures
def make_figures(data: RunData, out_dir: Optional[Path] = None) -> tuple[list[FigureFile], list[str]]:
    out_dir = Path(out_dir) if out_dir is not None else data.dir / FIG_DIR
    arts = _Artifacts(data)
    cells = aggregate(data.metrics)
    figs: list[FigureFile] = []
    for ds in data.datasets:
        for maker in (_fig_samples, _fig_mixture, _fig_quality_speed, _fig_precision_recall, _fig_steps,
                      _fig_guidance, fig_class_samples, _fig_modes, _fig_translation, _fig_training):
            f = maker(ds, data, cells, arts, out_dir)
            if f is not None:
                figs.append(f)
    if data.artifacts.empty and data.source:
        arts.notes.append("no artifacts recorded: no sample grids or training curves")
    return figs, arts.notes


def _models_with(cells: dict, ds: str, metric: str, variant: str = "") -> dict[str, Cell]:
    return {k[1]: c for k, c in cells.items() if k[0] == ds and k[2] == metric and k[3] == variant
            and math.isfinite(c.value)}


def _fig_samples(ds, data, cells, arts, out_dir) -> Optional[FigureFile]:
    samples = arts.per_model(ds, "samples_preview")
    arrays = {m: a for m, a in ((m, arts.array(p)) for m, p in samples.items()) if a is not None and a.dtype.kind == "f"}
    if not arrays or (any(a.ndim == 2 and a.shape[1] == 2 for a in arrays.values()) and _mixture(ds) is not None):
        return None  # nothing to show, or 2D points: the mixture figure shows them
    real = next((arts.array(p) for p in arts.per_model(ds, "real_preview").values()), None)
    panels = ([("real data", real)] if real is not None else []) + sorted(arrays.items())[: MAX_PANELS]
    fig, axes = _new(len(panels), panel=2.4, ncols=min(len(panels), 5))
    for ax, (name, x) in zip(axes, panels):
        if x.ndim >= 3:
            g = image_grid(x)
            ax.imshow(g, cmap="gray" if g.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        elif x.ndim == 2 and x.shape[1] >= 2:
            if real is not None and name != "real data" and real.ndim == 2:
                ax.scatter(real[:, 0], real[:, 1], s=6, c="0.75", label="real")
            ax.scatter(x[:, 0], x[:, 1], s=6, c="C0" if name != "real data" else "0.3")
            ax.set_aspect("equal", adjustable="datalim")
        ax.set_title(name, fontsize=10, color="0.3" if name == "real data" else "black")
    fig.suptitle(f"{ds}: samples", fontsize=11)
    path = _save(fig, out_dir / f"{_slug(ds)}_samples.png")
    return FigureFile(ds, "samples", f"{ds}: samples", path,
                      "Generated samples per model (preview of up to 16), real data first.")


def _fig_mixture(ds, data, cells, arts, out_dir) -> Optional[FigureFile]:
    mix = _mixture(ds)
    if mix is None:
        return None
    samples = arts.per_model(ds, "samples_preview")
    arrays = {m: a for m, a in ((m, arts.array(p)) for m, p in samples.items())
              if a is not None and a.ndim == 2 and a.shape[1] == 2}
    if not arrays:
        return None
    real = next((arts.array(p) for p in arts.per_model(ds, "real_preview").values()), None)
    panels = ([("real data", real)] if real is not None and real.ndim == 2 else []) + sorted(arrays.items())[:MAX_PANELS]
    means = mix.means.numpy()
    r3 = 3 * mix.std
    fig, axes = _new(len(panels), panel=2.8)
    pad = max(0.3, 6 * mix.std)
    for ax, (name, x) in zip(axes, panels):
        for mx, my in means:
            ax.add_patch(Circle((mx, my), r3, fill=False, ec="C3", lw=0.8))
        ax.scatter(means[:, 0], means[:, 1], marker="+", c="C3", s=30, lw=0.8, zorder=3)
        ax.scatter(x[:, 0], x[:, 1], s=5, c="0.3" if name == "real data" else "C0", zorder=2)
        ax.set_xlim(means[:, 0].min() - pad, means[:, 0].max() + pad)
        ax.set_ylim(means[:, 1].min() - pad, means[:, 1].max() + pad)
        ax.set_aspect("equal")
        ax.tick_params(labelsize=7)
        c = cells.get((ds, name, "modes_covered", ""))
        ax.set_title(name + (f" ({c.value:g}/{mix.num_modes} modes)" if c else ""), fontsize=10)
    fig.suptitle(f"{ds}: samples over the true modes (red: means, 3-std circles)", fontsize=11)
    path = _save(fig, out_dir / f"{_slug(ds)}_mixture.png")
    return FigureFile(ds, "mixture", f"{ds}: samples over the mixture's modes", path,
                      f"{len(means)} true means (+) with circles of 3 standard deviations ({r3:g}); a sample inside a "
                      "circle counts as high quality.")


def _speed_points(ds, cells, qm, sm) -> list:
    """(label, speed, quality, is_variant) for every model/variant with both numbers."""
    pts = []
    for (d, model, metric, variant), c in sorted(cells.items()):
        s = cells.get((ds, model, sm, variant))
        if d != ds or metric != qm or s is None or not (math.isfinite(c.value) and math.isfinite(s.value)):
            continue
        if s.value > 0:
            pts.append((model + (f" {variant}" if variant else ""), s.value, c.value, bool(variant)))
    return pts


def _fig_quality_speed(ds, data, cells, arts, out_dir) -> Optional[FigureFile]:
    choice = next(((qm, sm, pts) for sm in SPEED for qm in QUALITY_FOR_SPEED
                   for pts in [_speed_points(ds, cells, qm, sm)] if len(pts) >= 2), None)
    if choice is None:
        return None
    qm, sm, pts = choice
    hib = next(c.higher_is_better for k, c in cells.items() if k[0] == ds and k[2] == qm)
    xs, ys = [p[1] for p in pts], [p[2] for p in pts]
    refs = reference_models(data.metrics, ds)
    ref_idx = {i for i, p in enumerate(pts) if p[0].split(" ")[0] in refs}
    models = [i for i in range(len(pts)) if i not in ref_idx]  # reference points bound the front, never join it
    front = [models[j] for j in pareto_front([xs[i] for i in models], [ys[i] for i in models], True, hib)]
    fig, axes = _new(1, panel=6.0, height=4.2)
    ax = axes[0]
    for i, (name, x, y, var) in enumerate(pts):
        if i in ref_idx:
            first = i == min(ref_idx)
            ax.scatter([x], [y], s=40, marker="x", c="0.5", zorder=3, label="reference point" if first else None)
            continue
        on = i in front
        ax.scatter([x], [y], s=40 if not var else 22, marker="o" if not var else "s",
                   c="C3" if on else "C0", zorder=3, alpha=1.0 if not var else 0.8)
    fr = sorted(front, key=lambda i: xs[i])
    ax.plot([xs[i] for i in fr], [ys[i] for i in fr], "--", c="C3", lw=1, label="Pareto front", zorder=2)
    _scatter_labels(ax, xs, ys, [p[0] for p in pts])
    ax.set_xscale("log")
    ax.margins(x=0.15, y=0.12)
    _tidy_log_axis(ax, xs)
    ax.set_xlabel(f"{label(sm)} (log scale, higher is faster)")
    ax.set_ylabel(f"{label(qm)} ({'higher' if hib else 'lower'} is better)")
    ax.legend(loc="best", fontsize=8)
    ax.grid(True, alpha=0.3)
    ax.set_title(f"{ds}: quality vs speed", fontsize=11)
    path = _save(fig, out_dir / f"{_slug(ds)}_quality_speed.png")
    names = ", ".join(pts[i][0] for i in fr)
    return FigureFile(ds, "quality_speed", f"{ds}: quality vs speed", path,
                      f"{label(qm)} against {label(sm)}; red points and the dashed line are the Pareto front ({names})"
                      + (f"; grey crosses are reference points, not contestants "
                         f"({', '.join(pts[i][0] for i in sorted(ref_idx))})." if ref_idx else "."))


def _fig_precision_recall(ds, data, cells, arts, out_dir) -> Optional[FigureFile]:
    pairs = [(a, b) for a, b in (("precision", "recall"), ("density", "coverage"), ("precision_text", "recall_text"))
             if len(set(_models_with(cells, ds, a)) & set(_models_with(cells, ds, b))) >= 1]
    if not pairs:
        return None
    fig, axes = _new(len(pairs), panel=4.2)
    for ax, (a, b) in zip(axes, pairs):
        ca, cb = _models_with(cells, ds, a), _models_with(cells, ds, b)
        names = sorted(set(ca) & set(cb))
        xs, ys = [cb[n].value for n in names], [ca[n].value for n in names]
        for n, x, y in zip(names, xs, ys):
            ax.errorbar([x], [y], xerr=_yerr([cb[n]]), yerr=_yerr([ca[n]]), fmt="o", ms=6, capsize=2)
        _scatter_labels(ax, xs, ys, names)
        ax.set_xlabel(f"{label(b)} (diversity)")
        ax.set_ylabel(f"{label(a)} (quality)")
        top = max([1.0] + ys + xs) * 1.08
        ax.set_xlim(0, top)
        ax.set_ylim(0, top)
        ax.plot([0, top], [0, top], ":", c="0.7", lw=0.8)
        ax.grid(True, alpha=0.3)
    fig.suptitle(f"{ds}: " + "; ".join(f"{label(a)} vs {label(b)}" for a, b in pairs), fontsize=11)
    path = _save(fig, out_dir / f"{_slug(ds)}_precision_recall.png")
    return FigureFile(ds, "precision_recall", f"{ds}: precision / recall", path,
                      "Quality (up) against diversity (right); the best models sit top right.")


def _fig_steps(ds, data, cells, arts, out_dir) -> Optional[FigureFile]:
    series: dict[str, dict[str, list]] = {}  # metric -> "model sampler" -> [(steps, value)]
    for (d, model, metric, variant), c in cells.items():
        m = STEP_VARIANT.match(variant)
        if d != ds or not m or GUIDANCE_VARIANT.match(variant) or not math.isfinite(c.value):
            continue
        series.setdefault(metric, {}).setdefault(f"{model} ({m.group(1)})", []).append((int(m.group(2)), c.value, c))
    # quality first, then diversity, then likelihood, each in its declared rank order
    preference = [m for cat in ("quality", "diversity", "likelihood") for m in in_category(cat)]
    quality = [m for m in preference if m in series] + sorted(m for m in series if m not in preference
                                                                      and m not in SPEED and m != "nfe")
    metrics = quality[:3] + [m for m in SPEED if m in series][:1]
    if not metrics:
        return None
    fig, axes = _new(len(metrics), panel=4.2, height=3.4)
    for ax, metric in zip(axes, metrics):
        for name, pts in sorted(series[metric].items()):
            pts.sort()
            ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=_yerr([p[2] for p in pts]), marker="o",
                        capsize=2, label=name)
        hib = next(c.higher_is_better for k, c in cells.items() if k[0] == ds and k[2] == metric)
        ax.set_xscale("log")
        steps = sorted({p[0] for pts in series[metric].values() for p in pts})
        from matplotlib.ticker import FixedLocator, NullFormatter

        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.xaxis.set_major_locator(FixedLocator(steps))
        ax.set_xticklabels([str(t) for t in steps])
        ax.set_xlabel("sampler steps (log scale)")
        ax.set_ylabel(f"{label(metric)} ({'higher' if hib else 'lower'} is better)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{ds}: quality against sampler steps", fontsize=11)
    path = _save(fig, out_dir / f"{_slug(ds)}_steps.png")
    return FigureFile(ds, "steps", f"{ds}: sampler steps", path,
                      "Metrics of the same model at fewer or more sampler steps (metric variants such as ddim-25).")


GUIDANCE_PAIRS = (("intra_fd", "conditional_accuracy"), ("recall", "precision"))  # (diversity x, fidelity y)


def _fig_guidance(ds, data, cells, arts, out_dir) -> Optional[FigureFile]:
    """Per model with a guidance sweep: fidelity (y) against diversity (x), one point per guidance scale."""
    pts: dict[str, dict[str, dict[float, Cell]]] = {}  # model -> metric -> scale -> cell
    for (d, model, metric, variant), c in cells.items():
        m = GUIDANCE_VARIANT.match(variant)
        if d == ds and m and math.isfinite(c.value):
            pts.setdefault(model, {}).setdefault(metric, {})[float(m.group(1))] = c
    pairs = [(x, y) for x, y in GUIDANCE_PAIRS if any(x in v and y in v for v in pts.values())]
    if not pairs:
        return None
    fig, axes = _new(len(pairs), panel=4.2, height=3.6)
    for ax, (xm, ym) in zip(axes, pairs):
        for model, per in sorted(pts.items()):
            scales = sorted(set(per.get(xm, {})) & set(per.get(ym, {})))
            if not scales:
                continue
            xs = [per[xm][g].value for g in scales]
            ys = [per[ym][g].value for g in scales]
            ax.plot(xs, ys, "-o", ms=5, label=model)
            _scatter_labels(ax, xs, ys, [f"s={g:g}" for g in scales])
        hib_x = next(c.higher_is_better for k, c in cells.items() if k[0] == ds and k[2] == xm)
        ax.set_xlabel(f"{label(xm)} (diversity; {'higher' if hib_x else 'lower'} is better)")
        ax.set_ylabel(f"{label(ym)} (fidelity; higher is better)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{ds}: fidelity against diversity over the guidance scale s", fontsize=11)
    path = _save(fig, out_dir / f"{_slug(ds)}_guidance.png")
    return FigureFile(ds, "guidance", f"{ds}: classifier-free guidance", path,
                      "Each point is one guidance scale s of a sweep (0: unconditional, 1: conditional, above: "
                      "guided): guidance buys fidelity (conditional accuracy, precision) with diversity.")


def _fig_modes(ds, data, cells, arts, out_dir) -> Optional[FigureFile]:
    hists: dict[str, tuple[str, list]] = {}
    for metric in ("modes_covered", "classes_covered", "mode_kl", "class_kl"):
        for model, c in sorted(_models_with(cells, ds, metric).items()):
            h = find_histogram(c.extra)
            if h is not None and model not in hists:
                hists[model] = ("modes" if metric.startswith("mode") else "classes", h)
    for model, p in arts.per_model(ds, "mode_histogram").items():
        if model in hists:
            continue
        blob = arts.json(p)
        h = blob if isinstance(blob, list) else find_histogram(blob) if isinstance(blob, dict) else None
        if h:
            hists[model] = ("modes", [float(t) for t in h])
    if not hists:
        return None
    items = sorted(hists.items())[:MAX_PANELS]
    fig, axes = _new(len(items), panel=3.2, height=2.6)
    for ax, (model, (what, h)) in zip(axes, items):
        k = len(h)
        covered = sum(1 for t in h if t > 0)
        ax.bar(range(k), h, color="C0", width=0.85)
        empty = [i for i, t in enumerate(h) if t <= 0]
        if empty:
            ax.scatter(empty, [0] * len(empty), marker="x", c="C3", s=30, zorder=3, clip_on=False)
        if sum(h) > 0:
            ax.axhline(sum(h) / k, ls=":", c="0.4", lw=0.8)
        ax.set_title(f"{model}: {covered}/{k} {what}", fontsize=10)
        ax.set_xlabel(_SINGULAR[what] + " index", fontsize=8)
        ax.tick_params(labelsize=7)
    one = _SINGULAR[items[0][1][0]]
    fig.suptitle(f"{ds}: samples per {one} (dotted: uniform, red x: empty)", fontsize=11)
    path = _save(fig, out_dir / f"{_slug(ds)}_modes.png")
    return FigureFile(ds, "modes", f"{ds}: per-{one} histograms", path,
                      f"Samples assigned to each {one} (from the coverage metric); a red x marks an empty {one}.")


def _history_records(blob) -> list:
    if isinstance(blob, dict):
        blob = blob.get("records", [])
    return [r for r in blob if isinstance(r, dict)] if isinstance(blob, list) else []


def _fig_training(ds, data, cells, arts, out_dir) -> Optional[FigureFile]:
    curves: dict[str, list] = {}
    for model, p in arts.per_model(ds, "history").items():
        recs = _history_records(arts.json(p))
        if recs:
            curves[model] = recs
    if not curves:
        return None
    keys: list[str] = []
    for recs in curves.values():
        for r in recs:
            for k, v in r.items():
                if k not in ("step", "time", "seconds", "epoch") and isinstance(v, (int, float)) and k not in keys:
                    keys.append(k)
    keys = sorted(keys, key=lambda k: (k != "loss", keys.index(k)))[:4]
    if not keys:
        return None
    fig, axes = _new(len(keys), panel=4.2, height=3.2)
    for ax, key in zip(axes, keys):
        values: list = []
        for model, recs in sorted(curves.items()):
            pts = [(r.get("step", i), r[key]) for i, r in enumerate(recs)
                   if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], label=model, lw=1.2,
                        marker="." if len(pts) <= 30 else None)
                values += [p[1] for p in pts]
        if values and min(values) > 0 and max(values) / min(values) > 20:
            ax.set_yscale("log")  # models' losses on very different scales: keep each curve readable
        ax.set_xlabel("step")
        ax.set_ylabel(key)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{ds}: training curves", fontsize=11)
    path = _save(fig, out_dir / f"{_slug(ds)}_training.png")
    return FigureFile(ds, "training", f"{ds}: training curves", path,
                      "Loss (and any periodic metric the model logged) against the training step, first seed.")


# --------------------------------------------------------------------------------------------- translation
TRANSLATION_PREVIEW = "translation_preview"
TRANSLATION_COLUMNS = [(d, k) for d in ("a2b", "b2a") for k in ("source", "translated", "cycled")]
TRANSLATION_SHOWN = 8


def _fig_translation(ds, data, cells, arts, out_dir) -> Optional[FigureFile]:
    """Before / after grids of a translation run (artifact "translation_preview", genbench/pipeline/translation_job.py):
    per model and direction, held-out source images, their translations and the translations translated back."""
    previews = arts.per_model(ds, TRANSLATION_PREVIEW)
    blobs = {}
    for model, p in sorted(previews.items()):
        try:
            with np.load(p, allow_pickle=False) as z:
                blobs[model] = {(d, k): np.asarray(z[f"{d}_{k}"]) for d, k in TRANSLATION_COLUMNS}
        except Exception as e:  # unreadable preview: say so, draw the rest
            arts.notes.append(f"could not read {p.name}: {e}")
    if not blobs:
        return None
    fig, axes = _new(len(blobs) * len(TRANSLATION_COLUMNS), panel=1.6, ncols=len(TRANSLATION_COLUMNS))
    for r, (model, blob) in enumerate(blobs.items()):
        for c, (d, k) in enumerate(TRANSLATION_COLUMNS):
            ax = axes[r * len(TRANSLATION_COLUMNS) + c]
            ax.imshow(image_grid(blob[(d, k)], TRANSLATION_SHOWN), vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{d} {k}", fontsize=8)
            if c == 0:
                ax.set_ylabel(model, fontsize=9)
    fig.suptitle(f"{ds}: translations (held-out source, translated, translated back)", fontsize=10)
    path = _save(fig, out_dir / f"{_slug(ds)}_translations.png")
    return FigureFile(ds, "translations", f"{ds}: translations", path,
                      "Per model and direction: held-out source images, their translations, and the translations "
                      f"translated back ({TRANSLATION_SHOWN} spread over the scored held-out images).")
