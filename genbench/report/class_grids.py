"""Per-class sample grids of conditional runs (issue #23; docs/conditional.md): one panel per conditional model and
guidance scale, one row per class, holding the samples generated for that class.

The panels come from the sample previews (artifact "samples_preview", and "samples_preview:guidance-<s>" of a
guidance sweep): the first 64 samples of the job's lowest seed, with their conditions as `y`
(genbench/pipeline/scorers.py). The run asks for the classes in a fixed shuffled order, so a preview holds about
64/K samples of each class; a row shows up to `PER_CLASS` of them in preview order and leaves the rest blank.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import numpy as np

from genbench.report.figure_kit import GUIDANCE_VARIANT, MAX_PANELS, FigureFile, _new, _save, _slug

PER_CLASS = 6
KIND = "samples_preview"


def class_grid(x: np.ndarray, y: np.ndarray, num_classes: int, per_class: int = PER_CLASS) -> np.ndarray:
    """Images x (N, C, H, W) or (N, H, W) in [0, 1] and their class labels y (N,) -> one tiled image whose row c
    holds the first `per_class` items of class c (in their order in x), on a white background with 1-pixel
    gutters: (K * (H + 1) + 1, per_class * (W + 1) + 1), with a trailing RGB axis for 3-channel items."""
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y).reshape(-1)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or len(x) != len(y):
        raise ValueError(f"class_grid needs images (N, C, H, W) and N labels, got {x.shape} and {y.shape}")
    _, c, h, w = x.shape
    grid = np.ones((c, num_classes * (h + 1) + 1, per_class * (w + 1) + 1), np.float32)
    for k in range(num_classes):
        for q, i in enumerate(np.flatnonzero(y == k)[:per_class]):
            grid[:, 1 + k * (h + 1): 1 + k * (h + 1) + h, 1 + q * (w + 1): 1 + q * (w + 1) + w] = x[i]
    grid = np.clip(grid, 0, 1)
    return grid[0] if c == 1 else np.transpose(grid[:3], (1, 2, 0))


def _labelled_preview(arts, p: Path) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """(x, y) of an image preview that carries conditions; None for unconditional, text or point previews."""
    if p.suffix != ".npz":
        return None
    try:
        with np.load(p, allow_pickle=False) as z:
            if "y" not in z.files:
                return None
            x, y = np.asarray(z["x"]), np.asarray(z["y"])
    except Exception as e:  # unreadable preview: say so, draw the rest
        arts.notes.append(f"could not read {p.name}: {e}")
        return None
    if x.ndim not in (3, 4) or x.dtype.kind != "f" or y.dtype.kind not in "iu" or len(x) != len(y):
        return None
    return x, y


def _num_classes(dataset: str, labels: list) -> int:
    try:
        from genbench.data import get_dataset

        k = get_dataset(dataset).info.num_classes
        if k:
            return int(k)
    except Exception:  # user dataset / registry unavailable: the labels seen
        pass
    return int(max(int(y.max()) for y in labels if len(y)) + 1)


def _panel_order(kind: str) -> float:
    m = GUIDANCE_VARIANT.match(kind.split(":", 1)[1]) if ":" in kind else None
    return -math.inf if m is None else float(m.group(1))


def fig_class_samples(ds, data, cells, arts, out_dir) -> Optional[FigureFile]:
    """The per-class grids of every conditional model of dataset `ds` (module docstring), or None."""
    a = data.artifacts
    if a.empty:
        return None
    kinds = sorted({str(k) for k in a[a["dataset"] == ds]["kind"]
                    if str(k) == KIND or (str(k).startswith(KIND + ":") and GUIDANCE_VARIANT.match(str(k)[len(KIND) + 1:]))},
                   key=_panel_order)
    panels = []
    for kind in kinds:
        for model, p in arts.per_model(ds, kind).items():
            xy = _labelled_preview(arts, p)
            if xy is not None:
                title = model if kind == KIND else f"{model}, s = {_panel_order(kind):g}"
                panels.append((model, _panel_order(kind), title, xy))
    if not panels:
        return None
    panels.sort(key=lambda t: (t[0], t[1]))
    if len(panels) > MAX_PANELS:
        arts.notes.append(f"{ds}: per-class sample grids of {len(panels)} models and scales; the first {MAX_PANELS} "
                          "are drawn")
        panels = panels[:MAX_PANELS]
    K = _num_classes(ds, [xy[1] for *_, xy in panels])
    fig, axes = _new(len(panels), panel=2.2, ncols=min(len(panels), 4), height=3.4)
    for ax, (_, _, title, (x, y)) in zip(axes, panels):
        g = class_grid(x, y, K)
        ax.imshow(g, cmap="gray" if g.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
        h = (g.shape[0] - 1) / K
        ax.set_yticks([h * (k + 0.5) for k in range(K)], [str(k) for k in range(K)], fontsize=6)
        ax.set_xticks([])
        ax.set_title(title, fontsize=9)
    fig.suptitle(f"{ds}: samples per class (row = the class asked for)", fontsize=11)
    path = _save(fig, out_dir / f"{_slug(ds)}_class_samples.png")
    return FigureFile(ds, "class_samples", f"{ds}: samples per class", path,
                      f"Conditional models: row c holds up to {PER_CLASS} of the preview samples generated for class "
                      "c (the first 64 samples of the lowest seed; blank where the preview has fewer); guidance "
                      "sweeps get one panel per scale s.")
