"""`genbench eval` (users' samples scored with the leaderboard's protocol, optionally added to a run) and
`genbench check` (rerun a baseline's suite and compare in one step)."""

import json
import shutil
import sqlite3
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # "tests.helpers.collapsed_model" must import as the suites name it
    sys.path.insert(0, str(ROOT))

from genbench.cli import main  # noqa: E402
from genbench.data import get_dataset  # noqa: E402
from genbench.evaluate import evaluate_samples  # noqa: E402
from genbench.models import unregister_external  # noqa: E402
from genbench.results.store import ResultsStore  # noqa: E402
from tests.helpers.collapsed_model import make  # noqa: E402
from tests.helpers.dummy_suite import write_suite  # noqa: E402

HELPERS = "tests.helpers.collapsed_model"
SUITE_TABLES = ({"ring8": {"features": "identity", "n_samples": 200, "metrics": ["fd", "prdc", "mode_coverage"]}},
                {"collapsed": {"model": f"{HELPERS}:make"}, "cgm": {"model": f"{HELPERS}:CollapsedGM"}})
# Timing on a shared 2-core machine varies far more than the default tolerances allow.
LOOSE_TIMING = """
[tolerances]
samples_per_s = "-99%"
latency_ms = "1000%"
train_seconds = "1000%"
peak_memory_mb = "1000%"
"""


@pytest.fixture(scope="module")
def ring8():
    return get_dataset("ring8")


@pytest.fixture(scope="module")
def files(tmp_path_factory, ring8):
    d = tmp_path_factory.mktemp("samples")
    np.savez(d / "true.npz", x=ring8.mixture.sample(500, seed=99).numpy())  # fresh draws of the true mixture
    np.savez(d / "collapsed.npz", x=make(ring8.info, mode=2).sample(500, seed=3).numpy())
    np.save(d / "images.npy", np.zeros((10, 1, 8, 8), dtype=np.uint8))
    write_suite(d / "suite.toml", *SUITE_TABLES, name="tiny", speed={"batch_size": 100, "repeats": 2, "warmup": 0})
    (d / "tol.toml").write_text(LOOSE_TIMING)
    return d


@pytest.fixture(scope="module")
def baseline(files, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "baseline"
    assert main(["run", str(files / "suite.toml"), "--out", str(out), "--quiet"]) == 0
    yield out
    for n in ("collapsed", "cgm"):
        unregister_external(n)


def _values(frame, model):
    f = frame[(frame.model == model) & (frame.variant == "")]
    return f.set_index("metric")["value"]


def test_eval_true_samples_cover_every_mode_collapsed_one(files, capsys):
    assert main(["eval", "--samples", str(files / "true.npz"), "--dataset", "ring8", "--metrics",
                 "fd,mode_coverage", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "user:true on ring8: 500 samples" in out
    assert "| modes_covered | 8 " in out
    assert "protocol: built-in suite 'quick': features identity, reference split test, n_real 500, n_fake 500" in out
    assert "500 samples instead of the protocol's 2000" in out and "metrics fd, prdc" in out

    r = evaluate_samples(files / "collapsed.npz", "ring8", metrics=["fd", "mode_coverage"])
    vals = {row["name"]: row["value"] for row in r.rows}
    assert vals["modes_covered"] == 1 and r.model == "user:collapsed"
    t = evaluate_samples(files / "true.npz", "ring8", metrics=["fd", "mode_coverage"])
    tv = {row["name"]: row["value"] for row in t.rows}
    assert tv["modes_covered"] == 8 and tv["fd"] < 0.05 < vals["fd"]  # true samples are far closer
    # the same samples, scored again: the same numbers
    assert [row["value"] for row in evaluate_samples(files / "true.npz", "ring8", metrics=["fd", "mode_coverage"]).rows] \
        == [row["value"] for row in t.rows]


def test_eval_against_user_reference_data(files, tmp_path):
    for n in ("true", "collapsed"):  # 150 of each keeps the 100 bootstrap replicates of P/R/D/C quick
        np.save(tmp_path / f"{n}.npy", np.load(files / f"{n}.npz")["x"][:150])
    r = evaluate_samples(tmp_path / "collapsed.npy", str(tmp_path / "true.npy"), metrics=["fd", "prdc"])
    vals = {row["name"]: row["value"] for row in r.rows}
    assert r.protocol.source == "genbench's defaults for points data"
    assert vals["precision"] > 0.8 and vals["recall"] < 0.3  # one mode of eight: precise, not diverse


def test_eval_errors_are_clear(files, baseline, capsys):
    assert main(["eval", "--samples", str(files / "images.npy"), "--dataset", "ring8"]) == 2
    assert "holds image data, but points data is needed" in capsys.readouterr().err
    assert main(["eval", "--samples", str(files / "true.npz"), "--dataset", "rign8"]) == 2
    assert "Did you mean 'ring8'" in capsys.readouterr().err
    assert main(["eval", "--samples", str(files / "true.npz"), "--dataset", "ring8", "--out", str(files)]) == 2
    assert "no results.db there" in capsys.readouterr().err
    assert main(["eval", "--samples", str(files / "true.npz"), "--dataset", "grid25", "--out", str(baseline)]) == 2
    assert "has no dataset 'grid25' (it has: ring8)" in capsys.readouterr().err


def test_eval_into_a_run_adds_user_rows_to_its_leaderboard(files, baseline, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(baseline, run)
    assert main(["eval", "--samples", str(files / "collapsed.npz"), "--dataset", "ring8", "--out", str(run),
                 "--name", "mine", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "recorded as 'user:mine' (family 'user')" in out
    assert "protocol: the run in" in out and "scored the first 200 of 500 samples" in out

    store = ResultsStore(run)
    f = store.metrics_frame()
    mine = f[f.model == "user:mine"]
    assert set(mine.family) == {"user"} and set(mine.dataset) == {"ring8"}
    assert {"fd", "precision", "recall", "density", "coverage", "modes_covered"} <= set(mine.metric)
    assert _values(f, "user:mine")["modes_covered"] == 1
    # same protocol as the run's own rows, so compare/report treat them alike
    p_user = json.loads(mine[mine.metric == "fd"].protocol.iloc[0])
    p_run = json.loads(f[(f.model == "collapsed") & (f.metric == "fd")].protocol.iloc[0])
    assert p_user == p_run
    # a collapsed sampler on mode 2 vs the run's collapsed model on mode 0: same kind of numbers
    assert abs(_values(f, "user:mine")["recall"] - _values(f, "collapsed")["recall"]) < 0.1
    # exports rewritten, artifacts recorded
    csv = pd.read_csv(run / "results.csv")
    assert (csv.model == "user:mine").sum() == len(mine)
    blob = json.loads((run / "results.json").read_text())
    assert any(j["model"] == "user:mine" and j["status"] == "done" for j in blob["jobs"])
    arts = store.artifacts("ring8/user:mine/seed0").set_index("kind")
    assert np.load(run / arts.loc["samples_preview", "path"])["x"].shape == (64, 2)
    # evaluating again under the same name replaces the rows
    assert main(["eval", "--samples", str(files / "true.npz"), "--dataset", "ring8", "--out", str(run),
                 "--name", "mine", "--quiet"]) == 0
    f2 = ResultsStore(run).metrics_frame()
    assert len(f2[f2.model == "user:mine"]) == len(mine) and _values(f2, "user:mine")["modes_covered"] == 8
    # the run's own jobs are untouched
    pd.testing.assert_frame_equal(f[f.model != "user:mine"].reset_index(drop=True),
                                  f2[f2.model != "user:mine"].reset_index(drop=True))


def test_check_unchanged_rerun_passes_and_injected_regression_fails(files, baseline, tmp_path, capsys):
    junit = tmp_path / "check.xml"
    # timing figures are left out: on a loaded machine latency can move 70x between two runs
    rc = main(["check", "--baseline", str(baseline), "--tolerances", str(files / "tol.toml"), "--no-timing",
               "--junit", str(junit), "--out", str(tmp_path / "new"), "--trust-baseline"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "0 regressed" in out and (tmp_path / "new" / "check.md").exists()
    suite = ET.parse(junit).getroot()
    assert suite.get("failures") == "0" and int(suite.get("tests")) > 10

    # a baseline whose collapsed model had a much better FD: the rerun is a regression (exit 1)
    bad = tmp_path / "better-baseline"
    shutil.copytree(baseline, bad)
    with sqlite3.connect(bad / "results.db") as c:
        c.execute("UPDATE metrics SET value = value / 4, ci_low = ci_low / 4, ci_high = ci_high / 4 "
                  "WHERE name = 'fd' AND job_id LIKE '%/collapsed/%'")
    rc = main(["check", "--baseline", str(bad / "results.db"), "--tolerances", str(files / "tol.toml"),
               "--no-timing", "--junit", str(junit), "--out", str(tmp_path / "new2"), "--trust-baseline"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "1 regressed" in out and "| ring8     | collapsed | fd " in out
    suite = ET.parse(junit).getroot()
    assert suite.get("failures") == "1"
    assert [tc.get("name") for tc in suite.iter("testcase") if tc.find("failure") is not None] == ["fd"]

    # --out must not be the baseline itself; a results.csv carries no suite
    assert main(["check", "--baseline", str(baseline), "--out", str(baseline), "--trust-baseline"]) == 2
    assert "is the baseline's directory" in capsys.readouterr().err
    assert main(["check", "--baseline", str(baseline / "results.csv")]) == 2
    assert "--suite NAME_OR_PATH" in capsys.readouterr().err


EVIL_MODULE = """
from pathlib import Path
Path({marker!r}).write_text("imported")  # importing this module is the attack


def make(info):
    raise RuntimeError("never reached")
"""


def test_check_refuses_baseline_factories_without_trust_baseline(files, baseline, tmp_path, capsys, monkeypatch):
    from genbench.check import baseline_suite

    # a shared baseline whose stored suite names a module that runs code when imported
    marker = tmp_path / "imported.txt"
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "genbench_evil_probe.py").write_text(EVIL_MODULE.format(marker=str(marker)))
    monkeypatch.syspath_prepend(str(pkg))
    evil = tmp_path / "evil-baseline"
    shutil.copytree(baseline, evil)
    with sqlite3.connect(evil / "results.db") as c:
        c.execute("UPDATE runs SET suite_toml = replace(suite_toml, ?, ?)", (f"{HELPERS}:make", "genbench_evil_probe:make"))
    for args in ([], ["--out", str(tmp_path / "o")]):
        rc = main(["check", "--baseline", str(evil), "--no-timing", *args])
        err = capsys.readouterr().err
        assert rc == 2 and "Traceback" not in err
        assert "collapsed = 'genbench_evil_probe:make'" in err and f"cgm = '{HELPERS}:CollapsedGM'" in err
        assert "--trust-baseline" in err and "--suite" in err
        assert not marker.exists()  # refused before anything was imported
    assert not (tmp_path / "o").exists()  # nor was any work done
    # the user's own suite file is trusted: the baseline's stored names are never read
    s = baseline_suite(evil, suite=str(files / "suite.toml"))
    assert {m.name for m in s.models} == {"collapsed", "cgm"} and not marker.exists()
    # --trust-baseline: the stored names are imported as written (here: the attack runs)
    s = baseline_suite(evil, trust_baseline=True)
    assert marker.exists() and {m.factory for m in s.models} == {"genbench_evil_probe:make", f"{HELPERS}:CollapsedGM"}
    for n in ("collapsed", "cgm"):  # the module's other tests use the real factories
        unregister_external(n)
    # the help says so
    with pytest.raises(SystemExit):
        main(["check", "--help"])
    assert "--trust-baseline" in capsys.readouterr().out
