"""`genbench check --confirm-seeds N`: a flagged job is rerun with N more seeds and judged again on all of them.
One seed's failed training (a rare outcome: reports/benchmarks/gate.md) then no longer fails the gate, while a
regression that every seed shows still does (issue 14)."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # "tests.helpers.lottery_model" must import as the suite names it
    sys.path.insert(0, str(ROOT))

from genbench.cli import main  # noqa: E402
from genbench.results.compare import load_results  # noqa: E402
from genbench.external import unregister_external  # noqa: E402
from tests.helpers.dummy_suite import suite_toml  # noqa: E402

SUITE = suite_toml({"ring8": {"features": "identity", "n_samples": 300, "metrics": ["fd", "prdc", "mode_coverage"]}},
                   {"lottery": {"model": "tests.helpers.lottery_model:lottery"}}, name="lottery", n_bootstrap=10,
                   speed={"batch_size": 100, "repeats": 1, "warmup": 0})


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    d = tmp_path_factory.mktemp("lottery")
    (d / "suite.toml").write_text(SUITE)
    mp = pytest.MonkeyPatch()
    mp.delenv("GENBENCH_TEST_BAD_SEEDS", raising=False)
    assert main(["run", str(d / "suite.toml"), "--out", str(d / "base"), "--quiet"]) == 0
    mp.undo()
    yield d / "base"
    unregister_external("lottery")


def check(baseline, out, bad, confirm, monkeypatch, capsys):
    monkeypatch.setenv("GENBENCH_TEST_BAD_SEEDS", bad)
    rc = main(["check", "--baseline", str(baseline), "--no-timing", "--trust-baseline", "--out", str(out),
               "--confirm-seeds", str(confirm)])
    return rc, capsys.readouterr().out


def test_one_bad_seed_is_flagged_without_confirmation_and_passes_with_it(baseline, tmp_path, monkeypatch, capsys):
    rc, out = check(baseline, tmp_path / "plain", "0", 0, monkeypatch, capsys)
    assert rc == 1 and "ring8/lottery" in out and "Confirmation" not in out
    assert set(load_results(tmp_path / "plain")["seed"]) == {0}

    rc, out = check(baseline, tmp_path / "confirmed", "0", 2, monkeypatch, capsys)
    assert rc == 0, out
    assert ("Confirmation: 1 flagged job(s) (ring8/lottery) were rerun with 2 more seed(s) [1, 2] and judged again "
            "on all their seeds: 0 of ") in out
    assert "seeds (1 + 3)" in out  # the new side's three seeds measured the training noise
    assert set(load_results(tmp_path / "confirmed")["seed"]) == {0, 1, 2}
    assert (tmp_path / "confirmed" / "check.md").read_text().count("Confirmation:") == 1


def test_a_regression_on_every_seed_is_confirmed(baseline, tmp_path, monkeypatch, capsys):
    rc, out = check(baseline, tmp_path / "bad", "0,1,2", 2, monkeypatch, capsys)
    assert rc == 1
    line = next(x for x in out.splitlines() if x.startswith("Confirmation:"))
    n = int(line.split("still regress")[0].split(": ")[-1].split(" of ")[1].split()[0])
    assert f"{n} of {n} flagged score(s) still regress" in line and n >= 2
    assert "REGRESSION (exit 1)" in out and "ring8/lottery recall" in out


def test_an_unflagged_check_runs_no_more_seeds_and_bad_counts_are_refused(baseline, tmp_path, monkeypatch, capsys):
    rc, out = check(baseline, tmp_path / "clean", "", 2, monkeypatch, capsys)
    assert rc == 0 and "Confirmation" not in out
    assert set(load_results(tmp_path / "clean")["seed"]) == {0}
    with pytest.raises(SystemExit):
        main(["check", "--baseline", str(baseline), "--confirm-seeds", "-1"])
    assert "expected a whole number >= 0, got '-1'" in capsys.readouterr().err
