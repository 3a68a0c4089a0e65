"""Pinned details of the gate (genbench.results.compare / genbench.results.noise) that the mutation run (scripts/mutate.py)
showed were free to change: aggregate's interval, new/missing rows, timing set-up, the not-comparable wording,
non-finite values, alpha's range, calibration filters and bookkeeping, the interval level, the df bookkeeping."""

import json
import math

import pandas as pd
import pytest

from genbench.results.compare import EXIT_NOT_COMPARABLE, EXIT_OK, aggregate, compare_frames, protocol_fingerprint
from genbench.errors import InvalidInputError
from genbench.results.noise import (Calibration, CalibrationEntry, SideStats, interval, load_calibration, make_calibration,
                            noise_for, p_greater)
from test_gate import HW_A, NO_CAL, TOL, cmp, frame, row, verdict

Z = 1.959963984540054


def test_aggregate_half_width_is_that_of_the_seed_mean():
    seeds = frame(*[row(value=v, seed=s, ci=0.1) for s, v in enumerate([10.0, 12.0, 14.0])])
    (a,) = aggregate(seeds).values()
    assert a.value == pytest.approx(12.0) and a.n_seeds == 3
    assert a.half_width == pytest.approx(Z * 2.0 / math.sqrt(3))  # seed sd 2 beats feature sd 0.1/1.96
    noisy = frame(*[row(value=v, seed=s, ci=Z * 5.0) for s, v in enumerate([10.0, 12.0, 14.0])])
    (b,) = aggregate(noisy).values()
    assert b.half_width == pytest.approx(Z * 5.0 / math.sqrt(3))  # feature sd 5 beats seed sd 2
    inf = frame(row(value=float("inf"), seed=0), row(value=1.0, seed=1))
    (c,) = aggregate(inf).values()
    assert c.half_width == 0.0  # no spread from a non-finite value


def test_rows_on_one_side_only_are_new_or_missing():
    base = frame(row(value=10.0), row("precision", 0.5, hib=True))
    new = frame(row(value=10.0), row("recall", 0.6, hib=True))
    c = cmp(base, new)
    miss, new_r = verdict(c, "precision"), verdict(c, "recall")
    assert (miss.verdict, miss.baseline, miss.new) == ("missing", 0.5, None)
    assert (new_r.verdict, new_r.baseline, new_r.new) == ("new", None, 0.6)
    assert c.exit_code == EXIT_OK
    two = frame(row(value=10.0), row(value=3.0, dataset="ring8"))
    c = cmp(two, frame(row(value=10.0)))
    (only,) = [r for r in c.rows if r.dataset == "ring8"]
    assert (only.model, only.verdict, only.detail) == ("*", "missing", "dataset only in the baseline run")
    c = cmp(frame(row(value=10.0)), two)
    (only,) = [r for r in c.rows if r.dataset == "ring8"]
    assert (only.verdict, only.detail) == ("new", "dataset only in the new run")


def test_another_classifier_is_a_different_feature_network():
    base = frame(row("classes_covered", 10, hib=True, proto={"classifier": "classifier:x/aaa"}))
    new = frame(row("classes_covered", 10, hib=True, proto={"classifier": "classifier:x/bbb"}))
    c = cmp(base, new)
    assert c.exit_code == EXIT_NOT_COMPARABLE and "different feature network" in c.problems[0]
    assert "classifier: 'classifier:x/aaa' -> 'classifier:x/bbb'" in c.problems[0]


def test_unpinned_features_are_said_in_the_verdict():
    p = {"features_pinned": False}
    r = verdict(cmp(frame(row(value=10.0, proto=p)), frame(row(value=10.0, proto=p))))
    assert "unpinned feature network" in r.detail
    r = verdict(cmp(frame(row(value=10.0)), frame(row(value=10.0))))
    assert "unpinned" not in r.detail


def test_timings_with_another_set_up_are_not_compared_saying_what_differs():
    base = frame(row(value=1.0), row("samples_per_s", 1000.0, hib=True, timing=True, hw=HW_A))
    other = frame(row(value=1.0), row("samples_per_s", 990.0, hib=True, timing=True, hw=HW_A,
                                      proto={"batch_size": 128}))
    r = verdict(cmp(base, other), "samples_per_s")
    assert r.verdict == "not compared" and r.detail == "different timing set-up (batch_size: 64 -> 128)"
    # where the checkpoint came from is not part of what a timing measured
    cached = frame(row(value=1.0), row("samples_per_s", 990.0, hib=True, timing=True, hw=HW_A,
                                       proto={"from_checkpoint_cache": True}))
    assert verdict(cmp(base, cached), "samples_per_s").verdict == "unchanged"


def test_non_finite_values_by_direction():
    nan, inf = float("nan"), float("inf")
    assert verdict(cmp(frame(row(value=nan)), frame(row(value=nan)))).verdict == "unchanged"
    assert verdict(cmp(frame(row(value=1.0)), frame(row(value=nan)))).verdict == "regressed"
    assert verdict(cmp(frame(row(value=nan)), frame(row(value=1.0)))).verdict == "improved"
    hib = dict(metric="precision", hib=True)
    assert verdict(cmp(frame(row(value=1.0, **hib)), frame(row(value=-inf, **hib))), "precision").verdict == "regressed"
    assert verdict(cmp(frame(row(value=1.0, **hib)), frame(row(value=inf, **hib))), "precision").verdict == "improved"


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.1, 1.5])
def test_alpha_must_be_inside_zero_one(alpha):
    with pytest.raises(InvalidInputError, match="alpha"):
        cmp(frame(row()), frame(row()), alpha=alpha)


def test_unknown_noise_note_lists_at_most_six_jobs():
    def rows(n):
        return frame(*[row(value=10.0, model=f"m{i}", ci=1.0) for i in range(n)])

    six = cmp(rows(6), rows(6)).notes[0]
    seven = cmp(rows(7), rows(7)).notes[0]
    assert "for 6 job(s)" in six and "and 1 more" not in six and "fashion-mnist/m5" in six
    assert "for 7 job(s)" in seven and "and 1 more" in seven and "m6" not in seven


def test_interval_level_and_p_at_zero():
    assert interval(0.0, 1.0, math.inf) == (pytest.approx(-Z), pytest.approx(Z))
    lo, hi = interval(0.0, 1.0, math.inf, level=0.5)
    assert hi == pytest.approx(0.6744897501960817) and lo == pytest.approx(-hi)
    assert p_greater(0.0, 0.0, 3) == 1.0  # no change and no noise: nothing to reject
    assert p_greater(0.0, 1.0, math.inf) == pytest.approx(0.5)


def test_degrees_of_freedom_bookkeeping():
    two, one = SideStats([1.0, 3.0], [math.nan] * 2, [0, 1]), SideStats([5.0], [math.nan], [0])
    nz = noise_for(two, one, None)
    assert nz.df == 1 and nz.seed_sd == pytest.approx(math.sqrt(2.0)) and nz.seed_source == "seeds (2 + 1)"
    nz = noise_for(one, two, None)
    assert nz.df == 1 and nz.seed_source == "seeds (1 + 2)"
    # a calibration of two seeds (df 1) counts
    nz = noise_for(one, SideStats([5.0], [math.nan], [0]), CalibrationEntry(3.0, 2, ""))
    assert nz.df == 1 and nz.seed_sd == pytest.approx(3.0) and nz.seed_source == "calibration (2 seeds)"
    assert "seeds sd 3 from calibration (2 seeds)" in nz.describe()


def test_make_calibration_keeps_only_clean_repeated_scores():
    fp = protocol_fingerprint
    rows = [row(value=v, seed=s) for s, v in enumerate([1.0, 2.0, 6.0])]  # mean 3, median 2
    rows += [row("precision", v, seed=s, hib=True) for s, v in enumerate([0.5, float("inf"), 0.6])]  # non-finite
    rows += [row("recall", 0.5, seed=s, hib=True, proto={"n_fake": 1000 + s}) for s in range(3)]  # protocols differ
    rows += [row("fd", v, seed=s, variant="ddim-10") for s, v in enumerate([1.0, 1.0, 4.0])]
    blob = make_calibration(frame(*rows), {"suite": "t"}, fp)
    got = {(r["metric"], r["variant"]): r for r in blob["spreads"]}
    assert set(got) == {("fd", ""), ("fd", "ddim-10")}
    assert got[("fd", "")]["mean"] == pytest.approx(3.0) and got[("fd", "")]["sd"] == pytest.approx(math.sqrt(7.0))
    assert blob["made_by"]["date"] and blob["made_by"]["suite"] == "t"
    assert make_calibration(frame(*rows), {"date": "2020-01-01"}, fp)["made_by"]["date"] == "2020-01-01"
    few = [row(value=v, seed=s) for s, v in enumerate([1.0, 2.0, 3.0])] + [row("kid", 1.0, seed=s) for s in (0, 1)]
    assert {r["metric"] for r in make_calibration(frame(*few), {}, fp)["spreads"]} == {"fd"}


def test_load_calibration_records_its_sources(tmp_path):
    rows = [row(value=v, seed=s) for s, v in enumerate([1.0, 2.0, 3.0])]
    blob = make_calibration(frame(*rows), {"suite": "quick", "machine": "M"}, protocol_fingerprint)
    f = tmp_path / "c.json"
    f.write_text(json.dumps(blob))
    cal = load_calibration([f], builtin=False)
    assert len(cal.entries) == 1 and cal.sources == [(str(f), blob["made_by"])]
    assert cal.describe() == f"c.json (3 seeds of suite 'quick' on M, {blob['made_by']['date']})"
    assert Calibration().describe() == "none"
    del blob["made_by"]
    f.write_text(json.dumps(blob))
    cal = load_calibration([f], builtin=False)
    assert cal.sources == [(str(f), {})] and "? seeds" in cal.describe()
    assert len(load_calibration().entries) > 200  # the committed quick calibration


def test_infinite_baseline_of_a_higher_is_better_score_going_finite_is_a_regression():
    hib = dict(metric="precision", hib=True)
    r = verdict(cmp(frame(row(value=float("inf"), **hib)), frame(row(value=3.0, **hib))), "precision")
    assert r.verdict == "regressed" and r.delta is None
    same = verdict(cmp(frame(row(value=float("inf"), **hib)), frame(row(value=float("inf"), **hib))), "precision")
    assert same.verdict == "unchanged" and same.delta == 0.0


def test_a_protocol_key_on_one_side_only_is_named():
    c = cmp(frame(row(value=1.0)), frame(row(value=1.0, proto={"k": 5})))
    assert c.exit_code == EXIT_NOT_COMPARABLE and "k: None -> 5" in c.problems[0]


def test_zero_tolerance_still_ignores_float_rounding():
    from genbench.results.compare import Tolerance

    tol = {"default": Tolerance(0.0, False)}
    base, tiny, real = frame(row(value=1e6)), frame(row(value=1e6 + 1e-7)), frame(row(value=1e6 + 1.0))
    assert verdict(compare_frames(base, tiny, tol, calibration=NO_CAL)).verdict == "unchanged"
    assert verdict(compare_frames(base, real, tol, calibration=NO_CAL)).verdict == "regressed"


def test_environments_are_read_from_the_timings_and_compared(tmp_path):
    from genbench.results.compare import compare_paths, environment_of, to_markdown

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    frame(row(value=1.0), row("samples_per_s", 10.0, hib=True, timing=True, hw=HW_A)).to_csv(a / "results.csv", index=False)
    frame(row(value=1.0), row("samples_per_s", 10.0, hib=True, timing=True, hw="CPU other")).to_csv(b / "results.csv", index=False)
    c = compare_paths(a, b)
    assert c.env == {"baseline": HW_A, "new": "CPU other", "differs": True}
    assert "the environments differ" in to_markdown(c)
    assert compare_paths(a, a).env["differs"] is False
    assert environment_of(a, frame(row(value=1.0))).startswith("unknown (no hardware recorded")
    assert environment_of(a, pd.DataFrame()) == "unknown"


# ---------------------------------------------------------------------------------------------- issue 24 (sixth session)
def test_mean_half_width_uses_the_seed_spread_from_two_seeds_and_the_ci_for_one():
    from genbench.results.noise import mean_half_width

    two = SideStats([1.0, 3.0], [0.2, 0.2], [0, 1])  # seed sd sqrt(2) beats feature sd 0.2 / 1.96
    assert mean_half_width(two) == pytest.approx(Z * math.sqrt(2.0) / math.sqrt(2.0))
    assert mean_half_width(SideStats([1.0], [0.4], [0])) == pytest.approx(0.4)  # one seed: its CI half-width


def test_side_stats_reads_values_half_widths_and_seeds():
    from genbench.results.noise import side_stats

    g = pd.DataFrame({"value": [1.0, 2.0], "ci_low": [0.5, 1.0], "ci_high": [1.5, 4.0], "seed": [3, 7]})
    st = side_stats(g)
    assert st.values == [1.0, 2.0] and st.half_widths == [0.5, 1.5] and st.seeds == [3, 7]
    assert side_stats(g.drop(columns="seed")).seeds == []


def test_calibration_entries_are_immutable():
    import dataclasses

    e = CalibrationEntry(1.0, 3, "p")
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.sd = 2.0
    assert hash(e) == hash(CalibrationEntry(1.0, 3, "p"))


def test_make_calibration_rows_are_sorted_and_keep_a_missing_variant():
    rows = [row("kid", v, seed=s) for s, v in enumerate([1.0, 2.0, 3.0])]
    rows += [row("fd", v, seed=s, variant=None) for s, v in enumerate([1.0, 2.0, 4.0])]
    blob = make_calibration(frame(*rows), {}, protocol_fingerprint)
    assert [(r["metric"], r["variant"]) for r in blob["spreads"]] == [("fd", ""), ("kid", "")]
    assert blob["spreads"][0]["sd"] == pytest.approx(math.sqrt(7.0 / 3.0))


def test_noise_source_and_describe_name_the_sampling_and_the_hardware():
    one = SideStats([5.0], [math.nan], [0])
    nz = noise_for(one, one, None, paired_sd=0.5, hardware="differs")
    assert nz.sampling == "paired bootstrap"
    assert nz.source == "features (paired bootstrap) + training unknown + hardware differs"
    assert nz.describe() == ("features: paired bootstrap sd of the change 0.5 (shared reference features); training "
                             "noise unknown (one seed per side and no calibration); hardware: the environments differ "
                             "(another draw of training, covered by the seed spread)")
    same = noise_for(one, one, None, hardware="same")
    assert same.sampling == "bootstrap CIs" and same.source == "features (bootstrap CIs) + training unknown"
    assert same.describe() == ("features sd 0; training noise unknown (one seed per side and no calibration); "
                               "hardware: same environment")
    assert noise_for(one, one, None).describe() == ("features sd 0; training noise unknown (one seed per side and no "
                                                    "calibration)")


def test_a_seed_spread_equal_to_the_feature_noise_keeps_its_degrees_of_freedom():
    flat = SideStats([1.0, 1.0], [math.nan] * 2, [0, 1])  # seed sd 0 = feature sd 0: the t test on 2 df
    nz = noise_for(flat, flat, None)
    assert nz.seed_sd == 0.0 and nz.feature_sd == 0.0 and nz.df == 2.0


def test_paired_noise_combines_the_seed_spread_and_the_paired_sd():
    """se = max(seed sd * sqrt(1/n_base + 1/n_new), paired sd); df from the seeds when their part is the larger
    (ties included), inf (z test) when the paired sd is; sd_run = se / sqrt(1/n_base + 1/n_new)."""
    x = SideStats([0.0, 2.0], [math.nan] * 2, [0, 1])  # sum of squares 2
    y = SideStats([1.0, 3.0, 1.0, 3.0], [math.nan] * 4, [0, 1, 2, 3])  # sum of squares 4
    k = math.sqrt(1 / 2 + 1 / 4)
    seed_sd = math.sqrt(6.0 / 4.0)
    nz = noise_for(x, y, None, paired_sd=0.5)  # the seeds dominate
    assert nz.se == pytest.approx(seed_sd * k) and nz.df == 4.0 and nz.sd_run == pytest.approx(seed_sd)
    nz = noise_for(x, y, None, paired_sd=3.0)  # the paired sd dominates
    assert nz.se == pytest.approx(3.0) and math.isinf(nz.df) and nz.sd_run == pytest.approx(3.0 / k)
    two = SideStats([1.0, 3.0], [math.nan] * 2, [0, 1])  # k = 1, seed sd sqrt(2)
    tie = noise_for(x, two, None, paired_sd=math.sqrt(2.0))
    assert tie.se == math.sqrt(2.0) and tie.df == 2.0
    one = SideStats([5.0], [math.nan], [0])
    nz = noise_for(one, one, None, paired_sd=0.0)  # no seed spread: a z test even at a zero paired sd
    assert nz.se == 0.0 and math.isinf(nz.df) and nz.seed_sd is None
