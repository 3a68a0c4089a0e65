"""The drawing kit of the report's figures (genbench/report/figures.py): a figure's file and caption, an Agg
canvas without pyplot state, reading a run's artifacts (previews, histories, histograms), image grids, the
Pareto front, and axis helpers.
"""

from __future__ import annotations

import io
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from genbench.fileio import atomic_write_bytes
from genbench.report.data import RunData

FIG_DIR = "figures"
QUALITY_FOR_SPEED = ("fd", "bits_per_dim", "fd_text", "bits_per_char")
SPEED = ("samples_per_s", "chars_per_s")
HIST_KEYS = ("histogram", "mode_histogram", "class_histogram", "per_mode", "per_class", "counts")
STEP_VARIANT = re.compile(r"^([A-Za-z_]+)-(\d+)$")
GUIDANCE_VARIANT = re.compile(r"^guidance-([0-9.]+)$")
MAX_PANELS = 8
_SINGULAR = {"modes": "mode", "classes": "class"}
@dataclass(frozen=True)
class FigureFile:
    dataset: str
    kind: str
    title: str
    path: Path
    caption: str


def _new(n_panels: int, panel: float = 3.0, ncols: Optional[int] = None, height: Optional[float] = None):
    ncols = ncols or min(n_panels, 4)
    nrows = math.ceil(n_panels / ncols)
    fig = Figure(figsize=(panel * ncols + 0.4, (height or panel) * nrows + 0.6), dpi=100)
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(nrows, ncols, i + 1) for i in range(n_panels)]
    return fig, axes


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return atomic_write_bytes(path, buf.getvalue())


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", s).strip("_") or "x"


# --------------------------------------------------------------------------------------------- artifacts
class _Artifacts:
    def __init__(self, data: RunData):
        self.data = data
        self.notes: list[str] = []

    def rows(self, dataset: str, kind: str):
        a = self.data.artifacts
        if a.empty:
            return a
        a = a[(a["dataset"] == dataset) & (a["kind"] == kind)]
        return a.sort_values(["model", "seed", "path"], na_position="last")

    def per_model(self, dataset: str, kind: str) -> dict:
        """{model: path} for the lowest seed of each model that has this artifact and whose file exists."""
        out = {}
        for _, r in self.rows(dataset, kind).iterrows():
            if r["model"] in out:
                continue
            p = self.path(r["path"])
            if p is not None:
                out[str(r["model"])] = p
        return out

    def path(self, rel) -> Optional[Path]:
        p = Path(str(rel))
        p = p if p.is_absolute() else self.data.dir / p
        if not p.is_file():
            msg = f"artifact {rel} is listed in the store but missing on disk"
            if msg not in self.notes:
                self.notes.append(msg)
            return None
        return p

    def array(self, p: Path) -> Optional[np.ndarray]:
        if p.suffix != ".npz":  # text previews are JSON lists of strings: shown as text in the HTML
            return None
        try:
            with np.load(p, allow_pickle=False) as z:
                return np.asarray(z["x"])
        except Exception as e:  # unreadable preview: say so, draw the rest
            self.notes.append(f"could not read {p.name}: {e}")
            return None

    def json(self, p: Path):
        try:
            return json.loads(p.read_text())
        except (OSError, json.JSONDecodeError) as e:
            self.notes.append(f"could not read {p.name}: {e}")
            return None


# --------------------------------------------------------------------------------------------- helpers
def image_grid(x: np.ndarray, n: int = 16) -> np.ndarray:
    """(N, C, H, W) or (N, H, W) in [0, 1] -> one tiled (rows*H, cols*W[, 3]) image of up to n items."""
    x = np.asarray(x, dtype=np.float32)[:n]
    if x.ndim == 3:
        x = x[:, None]
    k, c, h, w = x.shape
    cols = int(math.ceil(math.sqrt(k)))
    rows = int(math.ceil(k / cols))
    grid = np.ones((c, rows * (h + 1) + 1, cols * (w + 1) + 1), np.float32)
    for i in range(k):
        r, q = divmod(i, cols)
        grid[:, 1 + r * (h + 1): 1 + r * (h + 1) + h, 1 + q * (w + 1): 1 + q * (w + 1) + w] = x[i]
    grid = np.clip(grid, 0, 1)
    return grid[0] if c == 1 else np.transpose(grid[:3], (1, 2, 0))


def pareto_front(xs, ys, x_higher_better: bool = True, y_higher_better: bool = False) -> list[int]:
    """Indices of the points no other point beats on both axes (ties on both count as non-dominated)."""
    sx = [x if x_higher_better else -x for x in xs]
    sy = [y if y_higher_better else -y for y in ys]
    front = []
    for i in range(len(sx)):
        dominated = any(sx[j] >= sx[i] and sy[j] >= sy[i] and (sx[j] > sx[i] or sy[j] > sy[i])
                        for j in range(len(sx)) if j != i)
        if not dominated:
            front.append(i)
    return front


def find_histogram(extra: dict) -> Optional[list]:
    for k in HIST_KEYS:
        v = extra.get(k)
        if isinstance(v, dict):
            v = [v[key] for key in sorted(v, key=lambda s: (len(str(s)), str(s)))]
        if isinstance(v, list) and v and all(isinstance(t, (int, float)) for t in v):
            return [float(t) for t in v]
    return None


def _mixture(dataset: str):
    try:
        from genbench.data import get_dataset

        return getattr(get_dataset(dataset), "mixture", None)
    except Exception:  # user dataset / registry unavailable: no mixture figure
        return None


def _yerr(cells) -> list:
    """Asymmetric error bars from each cell's interval (a bootstrap CI can be lopsided)."""
    return [[max(c.value - c.lo, 0.0) for c in cells], [max(c.hi - c.value, 0.0) for c in cells]]


def _tidy_log_axis(ax, xs) -> None:
    """Log x axis: no crowded minor labels; within one decade, label the two ends instead."""
    from matplotlib.ticker import FixedLocator, NullFormatter

    ax.xaxis.set_minor_formatter(NullFormatter())
    lo, hi = min(xs), max(xs)
    if hi / lo < 10:
        from genbench.report.tables import fmt_number

        ticks = sorted({lo, hi})
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.set_xticklabels([fmt_number(t) for t in ticks])


def _scatter_labels(ax, xs, ys, names):
    for x, y, n in zip(xs, ys, names):
        ax.annotate(n, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
