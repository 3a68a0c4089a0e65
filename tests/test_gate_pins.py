"""More pinned details of genbench.results.compare that the mutation run showed unpinned (reports/benchmarks/mutation.md):
reading results files (missing columns, status, booleans, names pandas would take for NaN), tolerance parsing and
fallbacks, aggregate's grouping and its per-score fields, the protocol fingerprint of timings, the bookkeeping of
rows present on one side only, the unchanged guard against float rounding, and timing edge cases."""

import dataclasses
import json
import math

import pandas as pd
import pytest

from genbench.results.compare import Row, aggregate, compare_frames, protocol_fingerprint
from genbench.results.result_files import _as_bool, load_results
from genbench.results.tolerance import Tolerance, Tolerances, timing_floor_ms, tolerance_for
from test_gate import HW_A, NO_CAL, TOL, cmp, frame, row, verdict

COLS = "dataset,model,metric,value,higher_is_better"


# ---------------------------------------------------------------------------------------------- reading files
def test_a_minimal_csv_gets_the_documented_defaults(tmp_path):
    p = tmp_path / "results.csv"
    p.write_text(f"{COLS}\nring8,gan,fd,1.5,false\n")
    f = load_results(p)
    (r,) = f.to_dict("records")
    assert r["seed"] == 0 and r["variant"] == "" and r["unit"] == "" and r["protocol"] == "{}"
    assert math.isnan(r["ci_low"]) and math.isnan(r["ci_high"]) and r["higher_is_better"] is False


def test_names_that_pandas_would_read_as_missing_stay_names(tmp_path):
    p = tmp_path / "results.csv"
    p.write_text(f"{COLS},variant,unit\nring8,None,fd,1.5,false,NA,n/a\nring8,null,fd,2.5,false,,\n")
    f = load_results(p)
    assert list(f["model"]) == ["None", "null"] and list(f["variant"]) == ["NA", ""] and f["unit"].iloc[0] == "n/a"
    # and the empty value cell is a missing number
    q = tmp_path / "empty_value.csv"
    q.write_text(f"{COLS}\nring8,gan,fd,,false\n")
    assert math.isnan(load_results(q)["value"].iloc[0])


def test_only_finished_rows_are_read(tmp_path):
    p = tmp_path / "results.csv"
    p.write_text(f"{COLS},status\nring8,gan,fd,1.5,false,done\nring8,vae,fd,2.5,false,failed\n"
                 "ring8,ddpm,fd,3.5,false,\n")
    assert list(load_results(p)["model"]) == ["gan", "ddpm"]  # a blank status is an older store's finished row


@pytest.mark.parametrize("raw, expected", [("1", True), ("true", True), (" Yes ", True), ("TRUE", True),
                                           ("0", False), ("false", False), ("no", False), ("", False),
                                           (True, True), (False, False), (1, True), (0, False)])
def test_higher_is_better_is_read_from_strings_and_booleans(raw, expected):
    assert _as_bool(raw) is expected


def test_higher_is_better_strings_in_a_json_file(tmp_path):
    p = tmp_path / "results.json"
    p.write_text(json.dumps({"metrics": [dict(dataset="ring8", model="gan", metric="recall", value=0.9,
                                              higher_is_better="yes"),
                                         dict(dataset="ring8", model="gan", metric="fd", value=0.1,
                                              higher_is_better="false")]}))
    f = load_results(p).set_index("metric")
    assert f.loc["recall", "higher_is_better"] is True or f.loc["recall", "higher_is_better"] == True  # noqa: E712
    assert not f.loc["fd", "higher_is_better"]


# ---------------------------------------------------------------------------------------------- tolerances
def test_tolerance_parsing_and_fallbacks():
    assert Tolerance.parse("0.5") == Tolerance(0.5, False)  # a number in a string is absolute
    assert Tolerance.parse(" 5% ") == Tolerance(0.05, True)
    assert Tolerance.parse(-3) == Tolerance(3.0, False)
    t = Tolerance(0.1, True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.amount = 1.0  # shared defaults must not be changed by one comparison
    assert tolerance_for("fd", {}) == Tolerance(0.0, False)  # nothing given: any change counts
    tol = {"default": Tolerance(0.02, True), "timing_default": Tolerance(0.3, True)}
    assert tolerance_for("x", tol) == Tolerance(0.02, True)  # a quality score never gets the timing default
    assert tolerance_for("x", tol, timing=True) == Tolerance(0.3, True)
    assert timing_floor_ms("latency_ms", Tolerances({}, floors_ms={})) == 0.0  # no floor table: no floor
    assert timing_floor_ms("latency_ms", Tolerances({}, floors_ms={"default": 2.0})) == 2.0


# ---------------------------------------------------------------------------------------------- aggregate
def test_aggregate_fields_of_one_seed_and_sorted_keys():
    f = frame(row("samples_per_s", 10.0, model="vae", hib=True, timing=True, hw=HW_A),
              row("fd", 3.0, model="gan", variant="v2"), row("fd", 2.0, model="gan"))
    f.loc[0, "unit"] = "samples/s"
    agg = aggregate(f)
    assert list(agg) == sorted(agg)  # score order: dataset, model, metric, variant
    s = agg[("fashion-mnist", "vae", "samples_per_s", "")]
    assert s.timing is True and s.higher_is_better is True and s.unit == "samples/s" and s.n_seeds == 1
    q = agg[("fashion-mnist", "gan", "fd", "")]
    assert q.timing is False and q.higher_is_better is False and q.half_width == 0.0 and q.protocol["n_fake"] == 1000


def test_aggregate_keeps_a_score_whose_variant_is_missing():
    f = frame(row("fd", 3.0))
    f["variant"] = None  # a frame not read through load_results
    assert len(aggregate(f)) == 1


def test_the_protocol_fingerprint_of_a_timing_says_so():
    p = {"timing": True, "batch_size": 64, "hardware": HW_A, "torch_threads": 2, "seed": 3}
    assert json.loads(protocol_fingerprint(json.dumps(p))) == {"timing": True}  # batch_size is volatile
    assert "timing" not in json.loads(protocol_fingerprint(json.dumps({"n_fake": 10})))


# ---------------------------------------------------------------------------------------------- one side only
def test_rows_on_one_side_only_carry_their_seeds_and_no_noise():
    base = frame(row(value=1.0, seed=0), row(value=1.2, seed=1), row("precision", 0.5, hib=True))
    new = frame(row(value=1.1), row("recall", 0.7, hib=True), row("recall", 0.8, hib=True, seed=1),
                row("recall", 0.9, hib=True, seed=2))
    c = cmp(base, new)
    missing, added = verdict(c, "precision"), verdict(c, "recall")
    assert missing.verdict == "missing" and missing.seeds == (1, 0) and missing.noise == 0.0
    assert added.verdict == "new" and added.seeds == (0, 3) and added.noise == 0.0 and added.new == pytest.approx(0.8)
    assert missing.baseline == 0.5 and missing.new is None and added.baseline is None
    c = cmp(frame(row(), row(dataset="ring8")), frame(row()))
    (only,) = [r for r in c.rows if r.dataset == "ring8"]
    assert only.seeds == (0, 0) and only.noise == 0.0 and only.higher_is_better is True
    assert Row("d", "m", "x", "", 1.0, 1.0, 0.0, 0.0, "", "unchanged", True, "").seeds == (0, 0)


# ---------------------------------------------------------------------------------------------- float rounding
@pytest.mark.parametrize("judge", ["quality", "timing"])
def test_a_change_of_float_rounding_is_unchanged_even_with_zero_tolerance(judge):
    zero = {"fd": Tolerance(0.0, False), "latency_ms": Tolerance(0.0, False)}
    floors = Tolerances(zero, floors_ms={"default": 0.0})
    metric = "fd" if judge == "quality" else "latency_ms"
    kw = dict(timing=True, hw=HW_A) if judge == "timing" else {}

    def v(base, new):
        c = compare_frames(frame(row(metric, base, **kw)), frame(row(metric, new, **kw)), floors, calibration=NO_CAL)
        return verdict(c, metric).verdict

    # the guard is 1e-12 relative to max(1, |baseline|)
    assert v(0.0, 1e-12) == "unchanged"
    assert v(0.0, 1.5e-12) == "regressed"
    assert v(1e6, 1e6 + 1e-7) == "unchanged"  # 1e-7 < 1e-12 * 1e6
    assert v(1e6, 1e6 + 1e-5) == "regressed"
    assert v(1.0, 1.0 - 0.5) == "improved"  # a change smaller than 1 still counts


def test_timing_at_exactly_the_tolerance_is_unchanged():
    tol = Tolerances({"samples_per_s": Tolerance(0.25, True)}, floors_ms={"default": 0.0})
    t = dict(timing=True, hw=HW_A, hib=True)
    base = frame(row(value=1.0), row("samples_per_s", 100.0, **t))

    def v(new):
        c = compare_frames(base, frame(row(value=1.0), row("samples_per_s", new, **t)), tol, calibration=NO_CAL)
        return verdict(c, "samples_per_s").verdict

    assert v(75.0) == "unchanged" and v(74.9) == "regressed" and v(125.0) == "unchanged" and v(125.1) == "improved"


def test_a_timing_on_one_side_is_still_judged_as_a_timing():
    base = frame(row(value=1.0), row("samples_per_s", 1000.0, hib=True, timing=True, hw=HW_A))
    new = frame(row(value=1.0), row("samples_per_s", 10.0, hib=True, proto={"n_fake": 1000}))
    c = cmp(base, new)
    r = verdict(c, "samples_per_s")
    assert r.noise_source == "timing" and r.verdict == "not compared" and not c.problems
    c = cmp(new, base)
    assert verdict(c, "samples_per_s").noise_source == "timing" and not c.problems


def test_timing_rows_report_no_noise_and_their_seeds():
    t = dict(timing=True, hw=HW_A, hib=True)
    base = frame(row(value=1.0), *[row("samples_per_s", 1000.0, seed=s, **t) for s in range(3)])
    for new_t in (t, dict(t, hw="other")):
        new = frame(row(value=1.0), *[row("samples_per_s", 1000.0, seed=s, **new_t) for s in range(2)])
        r = verdict(cmp(base, new), "samples_per_s")
        assert r.noise == 0.0 and r.seeds == (3, 2) and r.noise_source == "timing"


def test_timing_set_up_difference_names_keys_from_either_side():
    base = frame(row(value=1.0), row("samples_per_s", 1000.0, hib=True, timing=True, hw=HW_A))
    new = frame(row(value=1.0), row("samples_per_s", 1000.0, hib=True, timing=True, hw=HW_A,
                                    proto={"statistic": "median"}))
    r = verdict(cmp(base, new), "samples_per_s")
    assert r.detail == "different timing set-up (statistic: None -> 'median')"
    r = verdict(cmp(new, base), "samples_per_s")
    assert r.detail == "different timing set-up (statistic: 'median' -> None)"


def test_job_lists_name_six_and_count_the_rest():
    from genbench.results.compare import _jobs

    six = [("d", f"m{i}") for i in range(6)]
    assert _jobs(six) == "d/m0, d/m1, d/m2, d/m3, d/m4, d/m5"
    assert _jobs(six + [("d", "m6"), ("d", "m7")]) == "d/m0, d/m1, d/m2, d/m3, d/m4, d/m5 and 2 more"


def test_compare_keeps_a_score_whose_variant_is_missing():
    base, new = frame(row(value=1.0)), frame(row(value=1.0))
    base["variant"] = None
    new["variant"] = None
    c = compare_frames(base, new, TOL, calibration=NO_CAL)
    assert [r.verdict for r in c.rows] == ["unchanged"]


def test_a_record_without_its_name_is_refused(tmp_path):
    from genbench.errors import InvalidInputError

    p = tmp_path / "results.json"
    p.write_text(json.dumps([dict(dataset="ring8", model="gan", metric="fd", value=1.0, higher_is_better=False),
                             dict(dataset="ring8", model=None, metric="fd", value=1.0, higher_is_better=False)]))
    with pytest.raises(InvalidInputError, match=r"1 record\(s\) have no model \(the first is record 2\)"):
        load_results(p)


def test_display_fields_of_rows_judged_without_a_test():
    # a tolerance with no floor is shown alone; a timing judged by tolerance has no noise
    t = dict(timing=True, hw=HW_A)
    tol = Tolerances({"latency_ms": Tolerance(0.3, True)}, floors_ms={"default": 0.0})
    base, new = frame(row("latency_ms", 1.0, **t)), frame(row("latency_ms", 2.0, **t))
    base["unit"] = new["unit"] = "ms"
    r = verdict(compare_frames(base, new, tol, calibration=NO_CAL), "latency_ms")
    assert r.tolerance == "30%" and r.verdict == "regressed" and r.noise == 0.0 and r.delta == 1.0
    # equal non-finite values: unchanged with a change of 0 (timing) / no noise (quality)
    nan = float("nan")
    r = verdict(cmp(frame(row("latency_ms", nan, **t)), frame(row("latency_ms", nan, **t))), "latency_ms")
    assert r.verdict == "unchanged" and r.delta == 0.0
    r = verdict(cmp(frame(row(value=float("inf"))), frame(row(value=1.0))))
    assert r.verdict == "improved" and r.noise == 0.0 and r.delta is None and r.detail == "non-finite value"


def test_compare_paths_judges_timings_by_default(tmp_path):
    from genbench.results.compare import compare_paths

    t = dict(timing=True, hw=HW_A, hib=True)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        frame(row(value=1.0), row("samples_per_s", 10.0, **t)).to_csv(tmp_path / name / "results.csv", index=False)
    assert "samples_per_s" in {r.metric for r in compare_paths(tmp_path / "a", tmp_path / "b").rows}
    assert "samples_per_s" not in {r.metric for r in compare_paths(tmp_path / "a", tmp_path / "b", timing=False).rows}


@pytest.mark.parametrize("blob, got", [([{"dataset": "ring8"}, 1], "got list"), ("hello", "got str"),
                                       ({"runs": []}, 'got an object without a "metrics" list')])
def test_json_that_is_not_a_list_of_records_says_what_it_got(tmp_path, blob, got):
    from genbench.errors import InvalidInputError

    p = tmp_path / "results.json"
    p.write_text(json.dumps(blob))
    with pytest.raises(InvalidInputError, match="expected a genbench results.json") as e:
        load_results(p)
    assert str(e.value).endswith(got)


def test_aggregate_of_two_seeds_uses_their_spread():
    (a,) = aggregate(frame(row(value=10.0, seed=0), row(value=12.0, seed=1))).values()
    assert a.n_seeds == 2 and a.half_width == pytest.approx(1.959963984540054 * math.sqrt(2.0) / math.sqrt(2.0))


def test_the_protocol_fingerprint_is_canonical():
    # calibration files written by one run are matched by another: the order of the entries must not matter
    a = protocol_fingerprint(json.dumps({"n_fake": 10, "features": "identity", "k": 5}))
    b = protocol_fingerprint(json.dumps({"k": 5, "features": "identity", "n_fake": 10}))
    assert a == b == '{"features": "identity", "k": 5, "n_fake": 10}'


def test_a_timing_without_a_call_time_on_one_side_is_judged_by_its_tolerance():
    t = dict(timing=True, hw=HW_A)
    base, new = frame(row("latency_ms", 0.0, **t)), frame(row("latency_ms", 5.0, **t))
    base["unit"] = new["unit"] = "ms"
    for b, n in ((base, new), (new, base)):
        r = verdict(compare_frames(b, n, TOL, calibration=NO_CAL), "latency_ms")
        assert "judged by the tolerance 2% alone (no call time: no floor)" in r.detail
        assert r.tolerance == "2%"


def test_a_changed_metric_definition_is_not_comparable_an_unrecorded_one_is_no_reason():
    """MetricResult.version is bumped when a metric's definition changes: numbers of two versions are never
    compared (exit 2, naming the versions). A set that does not record versions (an older CSV) is compared."""
    base, new = row(), row(value=100.0)
    c = cmp(frame({**base, "version": 1}), frame({**new, "version": "2"}))
    assert c.exit_code == 2 and not c.rows
    assert c.problems == ["fashion-mnist/gan/fd: different metric definition (metric version: '1' -> '2')"]
    for a, b in ((1, "1"), (1.0, "1"), (float("nan"), "2"), (None, 2)):  # the same version, or one not recorded
        c = cmp(frame({**base, "version": a}), frame({**new, "version": b}))
        assert c.exit_code == 0 and not c.problems, (a, b)
    c = cmp(frame(base), frame({**new, "version": "2"}))  # no version column on one side
    assert c.exit_code == 0
    # with another protocol change too, both are named
    c = cmp(frame({**base, "version": 1}), frame({**row(proto={"n_fake": 500}), "version": 2}))
    assert c.problems == ["fashion-mnist/gan/fd: different sample count (metric version: '1' -> '2', n_fake: 1000 -> 500)"]
