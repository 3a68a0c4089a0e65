"""End to end: a real (tiny) `genbench run` store -> the report the runner writes at the end of the run."""

import json
import math

import pytest

import runner_dummies
from genbench.report import load_run
from genbench.runner import Runner
from genbench.results.store import ResultsStore
from genbench.suite import load_suite
from helpers.dummy_suite import RING8_ALL, write_suite



@pytest.fixture(autouse=True)
def dummies():
    runner_dummies.register()
    yield
    runner_dummies.unregister()


def test_runner_store_renders(tmp_path):
    p = write_suite(tmp_path / "e2e.toml", {"ring8": dict(RING8_ALL)}, {"dummy-gauss": {}, "dummy-nan": {}}, name="e2e",
                    speed={"batch_size": 64, "repeats": 2, "warmup": 1})
    out = tmp_path / "out"
    Runner(load_suite(p), out, device="cpu", quiet=True, log=lambda m: None).run()
    from genbench.report import write_report

    paths = write_report(out)
    md = (out / "leaderboard.md").read_text()
    f = ResultsStore(out).metrics_frame().set_index("metric")
    fd = f.loc["fd"]
    # the table's FD cell is the store's number (3 significant digits) with its interval
    row = next(ln for ln in md.splitlines() if ln.startswith("| dummy-gauss"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    header = next(ln for ln in md.splitlines() if ln.startswith("| model"))
    heads = [c.strip() for c in header.strip("|").split("|")]
    fd_cell = cells[heads.index("FD ↓")].strip("*")
    assert fd_cell.split(" ")[0] == f"{fd.value:.3g}"
    half = (fd.ci_high - fd.ci_low) / 2
    if "±" in fd_cell:
        assert fd_cell.split("± ")[1] == f"{half:.2g}"
    else:
        assert fd_cell.endswith(f"[{fd.ci_low:.2g}, {fd.ci_high:.2g}]")
    modes = f.loc["modes_covered"]
    assert cells[heads.index("modes covered ↑")].strip("*") == f"{modes.value:g}"
    # the failed model is listed with the runner's error
    nan_row = next(ln for ln in md.splitlines() if ln.startswith("| dummy-nan"))
    assert "failed:" in nan_row and "NaN" in md.split("Failed: dummy-nan (seed 0):")[1].splitlines()[0]
    # protocol line names the feature network and sample counts the metrics recorded
    proto = json.loads(fd.protocol)
    assert f"features {proto['features']}; {proto['n_fake']:,} generated vs {proto['n_real']:,} real samples" in md
    names = {q.name for q in paths}
    assert {"leaderboard.md", "report.html", "ring8_mixture.png", "ring8_training.png", "ring8_modes.png"} <= names
    assert all(q.stat().st_size > 0 for q in paths)
    data = load_run(out)
    assert data.schema_version == 1 and not data.notes
    assert math.isfinite(fd.value)
