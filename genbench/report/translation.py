"""The translation section's figure: before / after grids per model (artifact "translation_preview", written by
genbench/pipeline/translation_job.py): for each direction the held-out source images, their translations and the
images translated back."""

from __future__ import annotations

from typing import Optional

import numpy as np

PREVIEW_KIND = "translation_preview"
COLUMNS = [(d, k) for d in ("a2b", "b2a") for k in ("source", "translated", "cycled")]
N_SHOWN = 8


def fig_translation(ds, data, cells, arts, out_dir) -> Optional[object]:
    from genbench.report.figures import FigureFile, _new, _save, _slug, image_grid

    previews = arts.per_model(ds, PREVIEW_KIND)
    blobs = {}
    for model, p in sorted(previews.items()):
        try:
            with np.load(p, allow_pickle=False) as z:
                blobs[model] = {(d, k): np.asarray(z[f"{d}_{k}"]) for d, k in COLUMNS}
        except Exception as e:  # unreadable preview: say so, draw the rest
            arts.notes.append(f"could not read {p.name}: {e}")
    if not blobs:
        return None
    fig, axes = _new(len(blobs) * len(COLUMNS), panel=1.6, ncols=len(COLUMNS))
    for r, (model, blob) in enumerate(blobs.items()):
        for c, (d, k) in enumerate(COLUMNS):
            ax = axes[r * len(COLUMNS) + c]
            ax.imshow(image_grid(blob[(d, k)], N_SHOWN), vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{d} {k}", fontsize=8)
            if c == 0:
                ax.set_ylabel(model, fontsize=9)
    fig.suptitle(f"{ds}: translations (held-out source, translated, translated back)", fontsize=10)
    path = _save(fig, out_dir / f"{_slug(ds)}_translations.png")
    return FigureFile(ds, "translations", f"{ds}: translations", path,
                      "Per model and direction: held-out source images, their translations, and the translations "
                      f"translated back (first {N_SHOWN} of each).")
