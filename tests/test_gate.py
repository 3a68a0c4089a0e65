"""The regression gate's decisions (genbench.results.compare + genbench.results.noise): boundaries, the noise formula, the
multiple-testing correction, hardware-aware timing, comparability by instrument, calibration, bad input."""

import json
import math

import pandas as pd
import pytest
from scipy import stats

from genbench.cli import main
from genbench.results.compare import EXIT_NOT_COMPARABLE, EXIT_OK, EXIT_REGRESSION, Tolerance, compare_frames
from genbench.results.noise import (Calibration, CalibrationEntry, SideStats, holm, interval, make_calibration, noise_for,
                            p_greater)

HW_A = "CPU Vendor A [avx2,amx_bf16] x2; torch 2.14"
HW_B = "CPU Vendor B [avx2,avx512_bf16] x2; torch 2.14"
FEAT = "classifier:fashion-mnist/8036818351f6"


def row(metric="fd", value=100.0, seed=0, model="gan", hw=None, ci=None, dataset="fashion-mnist", hib=False,
        proto=None, timing=False, budget="quick", variant=""):
    p = {"features": FEAT, "n_fake": 1000, "n_real": 1000, "seed": seed}
    if timing:
        p = {"timing": True, "batch_size": 64, "repeats": 3, "hardware": hw, "torch_threads": 1}
        if hw is None:
            del p["hardware"]
    p.update(proto or {})
    lo, hi = (value - ci, value + ci) if ci is not None else (None, None)
    return dict(dataset=dataset, model=model, family=model, seed=seed, metric=metric, variant=variant, value=value,
                ci_low=lo, ci_high=hi, unit="", higher_is_better=hib, protocol=json.dumps(p), budget=budget)


def frame(*rows):
    return pd.DataFrame(list(rows))


NO_CAL = Calibration()
TOL = {"fd": Tolerance(0.05, True), "precision": Tolerance(0.02, False), "default": Tolerance(0.02, True),
       "samples_per_s": Tolerance(0.30, True)}


def cmp(base, new, **kw):
    kw.setdefault("calibration", NO_CAL)
    return compare_frames(base, new, TOL, **kw)


def verdict(c, metric="fd", model="gan"):
    (r,) = [r for r in c.rows if r.metric == metric and r.model == model]
    return r


# ---------------------------------------------------------------------------------------------- tolerance edge
def test_a_change_exactly_at_the_tolerance_does_not_count_just_above_does():
    # FD 100 -> 105 is exactly the 5% tolerance; no noise at all (no CI, one seed): only the tolerance decides
    assert verdict(cmp(frame(row(value=100.0)), frame(row(value=105.0)))).verdict == "unchanged"
    assert verdict(cmp(frame(row(value=100.0)), frame(row(value=104.999)))).verdict == "unchanged"
    r = verdict(cmp(frame(row(value=100.0)), frame(row(value=105.001))))
    assert r.verdict == "regressed" and r.p_value == 0.0
    # the same change in the good direction is an improvement, and never fails the gate
    c = cmp(frame(row(value=100.0)), frame(row(value=94.0)))
    assert verdict(c).verdict == "improved" and c.exit_code == EXIT_OK
    # higher-is-better flips the direction
    c = cmp(frame(row("precision", 0.70, hib=True)), frame(row("precision", 0.67, hib=True)))
    assert verdict(c, "precision").verdict == "regressed" and c.exit_code == EXIT_REGRESSION


def test_beyond_tolerance_but_inside_the_noise_is_within_noise():
    # CI half-width 20 on each side -> feature sd 20/1.96; change 10 (> 5 tolerance) is ~0.7 se
    c = cmp(frame(row(value=100.0, ci=20.0)), frame(row(value=110.0, ci=20.0)))
    r = verdict(c)
    assert r.verdict == "within noise" and c.exit_code == EXIT_OK
    assert r.noise == pytest.approx(20.0 / 1.959963984540054 * math.sqrt(2), rel=1e-9)
    assert "training noise unknown" in r.detail and c.notes  # one seed each, no calibration


# ---------------------------------------------------------------------------------------------- noise formula
def test_seed_spread_noise_is_the_pooled_sd_of_the_seed_means():
    base = [100.0, 104.0, 96.0]  # sd 4
    new = [110.0, 116.0]  # sd sqrt(18)
    x, y = SideStats(base, [math.nan] * 3, [0, 1, 2]), SideStats(new, [math.nan] * 2, [0, 1])
    nz = noise_for(x, y, None)
    pooled = math.sqrt((32.0 + 18.0) / (2 + 1))
    assert nz.seed_sd == pytest.approx(pooled) and nz.df == 3
    assert nz.se == pytest.approx(pooled * math.sqrt(1 / 3 + 1 / 2))
    # with a calibration entry its squares join the pool with its degrees of freedom
    nz2 = noise_for(x, y, CalibrationEntry(sd=2.0, n_seeds=6, protocol=""))
    assert nz2.seed_sd == pytest.approx(math.sqrt((50.0 + 4.0 * 5) / (3 + 5))) and nz2.df == 8
    # feature noise wins when it is larger than the seed spread (then a z test)
    nz3 = noise_for(SideStats([1.0, 1.0], [19.6, 19.6], [0, 1]), SideStats([1.0], [19.6], [0]), None)
    assert nz3.sd_run == pytest.approx(19.6 / 1.959963984540054) and math.isinf(nz3.df)


def test_one_sided_p_and_interval_match_scipy():
    assert p_greater(2.0, 1.0, math.inf) == pytest.approx(stats.norm.sf(2.0))
    assert p_greater(2.0, 1.0, 4) == pytest.approx(stats.t.sf(2.0, 4))
    assert p_greater(0.1, 0.0, 3) == 0.0 and p_greater(-0.1, 0.0, 3) == 1.0
    lo, hi = interval(1.0, 0.5, 5)
    q = stats.t.ppf(0.975, 5)
    assert (lo, hi) == (pytest.approx(1 - q * 0.5), pytest.approx(1 + q * 0.5))


def test_holm_against_a_worked_example():
    # p sorted: .001 (<= .05/4), .01 (<= .05/3), .03 (> .05/2 = .025): stop; the rest are kept
    assert holm([0.03, 0.001, 0.5, 0.01], 0.05) == [False, True, False, True]
    assert holm([0.0125, 0.0125, 0.0125, 0.0125], 0.05) == [True] * 4
    assert holm([0.0126, 0.0, 0.9, 0.9], 0.05) == [True, True, False, False]  # .0126 <= .05/3
    assert holm([0.02, 0.0, 0.9, 0.9], 0.05) == [False, True, False, False]  # .02 > .05/3


def test_many_scores_need_more_evidence_than_one():
    """A 3-sigma change is a regression when it is the only score, not among 200 clean ones (family-wise)."""
    def rows(shift, n_other):
        b = [row(value=10.0, ci=1.96)]  # tolerance 5% = 0.5, far below the shifts tested
        n = [row(value=10.0 + shift, ci=1.96)]
        for i in range(n_other):
            b.append(row(value=50.0, ci=1.96, model=f"m{i}"))
            n.append(row(value=50.0, ci=1.96, model=f"m{i}"))
        return frame(*b), frame(*n)

    se = math.sqrt(2.0)
    assert cmp(*rows(3.0 * se, 0)).exit_code == EXIT_REGRESSION
    assert cmp(*rows(3.0 * se, 200)).exit_code == EXIT_OK
    assert cmp(*rows(6.0 * se, 200)).exit_code == EXIT_REGRESSION
    # --alpha: a looser family-wise rate flags the 3-sigma change again
    assert cmp(*rows(3.0 * se, 200), alpha=0.5).exit_code == EXIT_REGRESSION


def test_calibration_supplies_training_noise_for_single_seed_runs():
    fp = json.dumps({"dataset": "fashion-mnist"}, sort_keys=True)
    base, new = frame(row(value=100.0, ci=1.0)), frame(row(value=115.0, ci=1.0))
    assert cmp(base, new).exit_code == EXIT_REGRESSION  # sampling noise only: 15 is far beyond it
    from genbench.results.compare import protocol_fingerprint

    fp = protocol_fingerprint(base["protocol"].iloc[0])
    cal = Calibration({("quick", "fashion-mnist", "gan", "fd", ""): CalibrationEntry(8.0, 6, fp)}, [("x.json", {})])
    c = cmp(base, new, calibration=cal)
    r = verdict(c)
    assert r.verdict == "within noise" and c.exit_code == EXIT_OK and "calibration (6 seeds)" in r.noise_source
    assert r.noise == pytest.approx(8.0 * math.sqrt(2))
    # a calibration measured under another protocol (another budget here) does not apply
    other = Calibration({("standard", "fashion-mnist", "gan", "fd", ""): CalibrationEntry(8.0, 6, fp)}, [])
    assert cmp(base, new, calibration=other).exit_code == EXIT_REGRESSION


# ---------------------------------------------------------------------------------------------- comparability
def test_not_comparable_wins_over_a_regression():
    base = frame(row(value=100.0), row("precision", 0.7, hib=True))
    new = frame(row(value=300.0), row("precision", 0.7, hib=True, proto={"n_fake": 500}))
    c = cmp(base, new)
    assert verdict(c).verdict == "regressed" and c.problems
    assert c.exit_code == EXIT_NOT_COMPARABLE


def test_the_instrument_decides_comparability_not_its_accuracy():
    base = frame(row("classes_covered", 10, hib=True, proto={"classifier_accuracy": 0.914, "precision": "bf16-autocast"}))
    same_weights = frame(row("classes_covered", 10, hib=True, proto={"classifier_accuracy": 0.9151}))
    assert cmp(base, same_weights).exit_code == EXIT_OK
    other_weights = frame(row("classes_covered", 10, hib=True, proto={"features": "classifier:fashion-mnist/aaaaaaaaaaaa"}))
    c = cmp(base, other_weights)
    assert c.exit_code == EXIT_NOT_COMPARABLE and "different feature network" in c.problems[0]


def test_disjoint_jobs_and_datasets_are_not_comparable():
    c = cmp(frame(row(model="gan")), frame(row(model="vae")))
    assert c.exit_code == EXIT_NOT_COMPARABLE and "no (dataset, model) in common" in c.problems[0]
    c = cmp(frame(row(dataset="ring8")), frame(row(dataset="grid25")))
    assert c.exit_code == EXIT_NOT_COMPARABLE and "no dataset in common" in c.problems[0]


# ---------------------------------------------------------------------------------------------- timing
def test_timings_on_other_hardware_are_not_compared_and_never_fail():
    base = frame(row(value=100.0), row("samples_per_s", 1000.0, hib=True, timing=True, hw=HW_A))
    slow = frame(row(value=100.0), row("samples_per_s", 100.0, hib=True, timing=True, hw=HW_B))
    c = cmp(base, slow)
    r = verdict(c, "samples_per_s")
    assert r.verdict == "not compared" and c.exit_code == EXIT_OK and not c.problems
    assert HW_A in r.detail and HW_B in r.detail
    # same hardware: judged by the tolerance (-30%)
    same = frame(row(value=100.0), row("samples_per_s", 650.0, hib=True, timing=True, hw=HW_A))
    assert verdict(cmp(base, same), "samples_per_s").verdict == "regressed"
    ok = frame(row(value=100.0), row("samples_per_s", 750.0, hib=True, timing=True, hw=HW_A))
    assert verdict(cmp(base, ok), "samples_per_s").verdict == "unchanged"
    # an older store that recorded no hardware: not compared, saying so
    old = frame(row(value=100.0), row("samples_per_s", 1000.0, hib=True, timing=True, hw=None))
    assert "hardware not recorded" in verdict(cmp(old, base), "samples_per_s").detail
    # other thread counts: not compared either
    t2 = frame(row(value=100.0), row("samples_per_s", 100.0, hib=True, timing=True, hw=HW_A, proto={"torch_threads": 2}))
    assert verdict(cmp(base, t2), "samples_per_s").verdict == "not compared"


# ---------------------------------------------------------------------------------------------- calibration file
def test_make_calibration_needs_three_seeds_and_measures_the_sd():
    from genbench.results.compare import protocol_fingerprint
    from genbench.errors import InvalidInputError

    f = frame(*[row(value=v, seed=s) for s, v in enumerate([100.0, 104.0, 96.0])],
              *[row("samples_per_s", 10.0, seed=s, timing=True, hw=HW_A) for s in range(3)])
    blob = make_calibration(f, {"suite": "t"}, protocol_fingerprint)
    (e,) = blob["spreads"]  # timing rows are left out
    assert e["sd"] == pytest.approx(4.0) and e["n_seeds"] == 3 and e["metric"] == "fd"
    with pytest.raises(InvalidInputError, match="at least 3 seeds"):
        make_calibration(frame(row(seed=0), row(seed=1)), {}, protocol_fingerprint)


def test_calibrate_command_and_compare_with_it(tmp_path, capsys):
    many = frame(*[row(value=v, seed=s, ci=0.5) for s, v in enumerate([100.0, 110.0, 90.0, 105.0])])
    d = tmp_path / "sweep"
    d.mkdir()
    many.to_csv(d / "results.csv", index=False)
    assert main(["calibrate", str(d), "--out", str(tmp_path / "cal.json")]) == 0
    cal = json.loads((tmp_path / "cal.json").read_text())
    assert cal["spreads"][0]["n_seeds"] == 4 and cal["made_by"]["seeds"] == [0, 1, 2, 3]
    b, n = tmp_path / "b", tmp_path / "n"
    b.mkdir(), n.mkdir()
    frame(row(value=100.0, ci=0.5)).to_csv(b / "results.csv", index=False)
    frame(row(value=118.0, ci=0.5)).to_csv(n / "results.csv", index=False)
    assert main(["compare", str(b), str(n)]) == EXIT_REGRESSION
    capsys.readouterr()
    assert main(["compare", str(b), str(n), "--calibration", str(tmp_path / "cal.json")]) == EXIT_OK
    out = capsys.readouterr().out
    assert "no regression" in out and "calibration (4 seeds)" in out
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert main(["compare", str(b), str(n), "--calibration", str(bad)]) == EXIT_NOT_COMPARABLE  # exit 2, message
    assert "not a genbench calibration" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # argparse: exit 2 with a message
        main(["compare", str(b), str(n), "--alpha", "2"])
    assert e.value.code == 2 and "between 0 and 1" in capsys.readouterr().err


def test_verdict_explains_a_regression():
    from genbench.results.compare import to_markdown

    base = frame(*[row(value=v, seed=s, ci=1.0) for s, v in enumerate([100.0, 102.0, 98.0])])
    new = frame(row(value=140.0, ci=1.0, seed=0))
    c = cmp(base, new, env={"baseline": HW_A, "new": HW_B, "differs": True})
    md = to_markdown(c)
    assert c.exit_code == EXIT_REGRESSION
    assert "Verdict: REGRESSION" in md and "95% CI" in md and "seeds (3 + 1)" in md
    assert "the environments differ" in md and HW_A in md and HW_B in md
