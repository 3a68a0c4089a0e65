"""Per-class sample grids in the report (issue #23; genbench/report/class_grids.py): every sample lands in the row
of its class and in preview order, blanks where a class has fewer, one panel per conditional model and guidance
scale, none for unconditional previews; and a real conditional run gets the figure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from genbench.report.class_grids import class_grid
from genbench.report.data import ARTIFACT_COLUMNS, RunData


def test_each_sample_lands_in_its_class_row_in_preview_order():
    # item i is a constant 2x3 image of value (i + 1) / 10, so every cell says which item it holds
    y = np.array([2, 0, 2, 2, 1, 0, 2])
    x = np.stack([np.full((1, 2, 3), (i + 1) / 10, np.float32) for i in range(len(y))])
    g = class_grid(x, y, num_classes=4, per_class=2)
    assert g.shape == (4 * 3 + 1, 2 * 4 + 1)
    want = {(0, 0): 1, (0, 1): 5, (1, 0): 4, (2, 0): 0, (2, 1): 2}  # (row, column) -> item; item 3 and 6: beyond 2
    for r in range(4):
        for q in range(2):
            cell = g[1 + r * 3: 1 + r * 3 + 2, 1 + q * 4: 1 + q * 4 + 3]
            assert np.all(cell == ((want[(r, q)] + 1) / 10 if (r, q) in want else 1.0)), (r, q)
    gutters = np.ones_like(g, bool)
    gutters[[1 + r * 3 + k for r in range(4) for k in range(2)]] = False
    assert np.all(g[gutters] == 1.0)  # the row gutters are white
    rgb = class_grid(np.repeat(x, 3, axis=1), y, num_classes=4, per_class=2)
    assert rgb.shape == (*g.shape, 3) and np.array_equal(rgb[..., 1], g)
    with pytest.raises(ValueError, match="N labels"):
        class_grid(x, y[:3], num_classes=4)


def _run(tmp_path, previews: dict) -> RunData:
    rows = []
    for (model, kind), arrays in previews.items():
        rel = f"artifacts/{model}_{kind.replace(':', '_')}.npz"
        (tmp_path / "artifacts").mkdir(exist_ok=True)
        np.savez(tmp_path / rel, **arrays)
        rows.append({"job_id": model, "kind": kind, "path": rel, "dataset": "digits", "model": model, "family": "",
                     "seed": 0})
    metrics = pd.DataFrame([{"dataset": "digits", "model": m, "metric": "fd", "variant": "", "value": 1.0, "seed": 0}
                            for m in {m for m, _ in previews}])
    return RunData(tmp_path, metrics, pd.DataFrame(), pd.DataFrame(rows, columns=ARTIFACT_COLUMNS), pd.DataFrame(),
                   None, "results.db")


def test_one_panel_per_conditional_model_and_guidance_scale(tmp_path):
    from genbench.report.class_grids import fig_class_samples
    from genbench.report.figure_kit import _Artifacts

    rng = np.random.default_rng(0)
    x = rng.random((64, 1, 8, 8)).astype(np.float32)
    y = np.arange(64) % 10
    data = _run(tmp_path, {("cfg-ddpm", "samples_preview"): {"x": x, "y": y},
                           ("cfg-ddpm", "samples_preview:guidance-4"): {"x": x, "y": y},
                           ("cfg-ddpm", "samples_preview:guidance-0.5"): {"x": x, "y": y},
                           ("cfg-ddpm", "samples_preview:ddim-10"): {"x": x, "y": y},  # not a guidance scale
                           ("cgan", "samples_preview"): {"x": x, "y": y},
                           ("gan", "samples_preview"): {"x": x}})  # unconditional: no labels, no panel
    fig = fig_class_samples("digits", data, {}, _Artifacts(data), tmp_path / "figs")
    assert fig is not None and fig.kind == "class_samples" and fig.path.stat().st_size > 1000
    import matplotlib.image

    img = matplotlib.image.imread(fig.path)
    assert img.shape[1] > img.shape[0]  # 4 panels side by side: cfg-ddpm, s = 0.5, s = 4, then cgan
    (tmp_path / "u").mkdir()
    only_uncond = _run(tmp_path / "u", {("gan", "samples_preview"): {"x": x}})
    assert fig_class_samples("digits", only_uncond, {}, _Artifacts(only_uncond), tmp_path / "figs2") is None


def test_panel_titles_in_model_then_scale_order(tmp_path, monkeypatch):
    import genbench.report.class_grids as cg
    from genbench.report.figure_kit import _Artifacts

    x = np.zeros((20, 1, 4, 4), np.float32)
    y = np.arange(20) % 10
    data = _run(tmp_path, {("cfg-ddpm", "samples_preview:guidance-4"): {"x": x, "y": y},
                           ("cfg-ddpm", "samples_preview"): {"x": x, "y": y},
                           ("cfg-ddpm", "samples_preview:guidance-0"): {"x": x, "y": y},
                           ("cgan", "samples_preview"): {"x": x, "y": y}})
    titles = []
    real_new = cg._new

    def spy(n, **kw):
        fig, axes = real_new(n, **kw)
        for ax in axes:
            orig = ax.set_title
            ax.set_title = lambda t, *a, _o=orig, **k: (titles.append(t), _o(t, *a, **k))[1]
        return fig, axes

    monkeypatch.setattr(cg, "_new", spy)
    cg.fig_class_samples("digits", data, {}, _Artifacts(data), tmp_path / "figs")
    assert titles == ["cfg-ddpm", "cfg-ddpm, s = 0", "cfg-ddpm, s = 4", "cgan"]
