"""Timing figures in the gate (genbench.results.compare): the absolute floor of a timing change (ms of the timed call),
its boundaries for latencies, throughputs and fits, the tolerance-and-floor rule, where floors come from, and
the sub-millisecond reruns that made it necessary (issue 14)."""

import json
import math

import pytest

from genbench.results.compare import EXIT_OK, EXIT_REGRESSION, compare_frames, to_markdown
from genbench.results.tolerance import Tolerance, call_ms, load_tolerances, timing_floor_ms
from genbench.errors import InvalidInputError
from test_gate import HW_A, NO_CAL, TOL, frame, row

BUILTIN = load_tolerances()


def timing(metric, value, unit, hib=False, model="gan", **proto):
    r = row(metric, value, hib=hib, timing=True, hw=HW_A, model=model, proto=proto)
    r["unit"] = unit
    return r


def judge(base_rows, new_rows, tol=BUILTIN):
    c = compare_frames(frame(row(value=1.0), *base_rows), frame(row(value=1.0), *new_rows), tol, calibration=NO_CAL)
    return c


def one(metric, base, new, unit, tol=BUILTIN, hib=False, **proto):
    c = judge([timing(metric, base, unit, hib, **proto)], [timing(metric, new, unit, hib, **proto)], tol)
    (r,) = [r for r in c.rows if r.metric == metric]
    return r


# ---------------------------------------------------------------------------------------------- the timed call
def test_call_ms_is_the_time_of_the_timed_call():
    assert call_ms(0.25, "ms", {}) == 0.25  # one sample's latency
    assert call_ms(1.5, "s", {}) == 1500.0  # one fit
    assert call_ms(64000.0, "samples/s", {"batch_size": 64}) == pytest.approx(1.0)  # one batch of 64
    assert call_ms(128000.0, "chars/s", {"batch_size": 2, "n_chars": 256}) == pytest.approx(4.0)  # 2 x 256 chars
    assert call_ms(1000.0, "samples/s", {"batch_size": 1, "n_chars": 50}) == pytest.approx(1.0)  # n_chars: text only
    # not a time, or nothing to convert with: no floor applies
    assert call_ms(100.0, "MiB", {}) is None
    assert call_ms(100.0, "", {}) is None
    assert call_ms(1000.0, "samples/s", {}) is None
    assert call_ms(1000.0, "samples/s", {"batch_size": True}) is None
    assert call_ms(1000.0, "samples/s", {"batch_size": 0}) is None
    assert call_ms(1000.0, "chars/s", {"batch_size": 1}) is None
    assert call_ms(0.0, "ms", {}) is None and call_ms(-1.0, "ms", {}) is None
    assert call_ms(math.inf, "ms", {}) is None and call_ms(math.nan, "s", {}) is None


def test_builtin_floors_and_timing_tolerances():
    assert timing_floor_ms("latency_ms", BUILTIN) == 1.0
    assert timing_floor_ms("samples_per_s", BUILTIN) == 1.0
    assert timing_floor_ms("train_seconds", BUILTIN) == 1000.0
    assert timing_floor_ms("train_seconds", TOL) == 1000.0  # a plain dict of tolerances gets the built-in floors
    # every timing figure genbench writes has a timing tolerance, never the quality default of 2%
    for m in ("samples_per_s", "latency_ms", "chars_per_s", "chars_per_s_nocache", "first_char_latency",
              "train_seconds", "peak_memory_mb"):
        assert BUILTIN[m].relative and BUILTIN[m].amount >= 0.15, m


# ---------------------------------------------------------------------------------------------- boundaries
def test_latency_just_under_at_and_just_over_the_floor():
    # 0.5 -> 1.5 ms is +200% (far beyond 30%) but exactly the 1 ms floor: unchanged
    assert one("latency_ms", 0.5, 1.5, "ms").verdict == "unchanged"
    assert one("latency_ms", 0.5, 1.49, "ms").verdict == "unchanged"
    r = one("latency_ms", 0.5, 1.51, "ms")
    assert r.verdict == "regressed" and r.tolerance == "30% and 1 ms"
    # faster by more than the floor (and the tolerance): improved; by less: unchanged
    assert one("latency_ms", 1.51, 0.5, "ms").verdict == "improved"
    assert one("latency_ms", 1.49, 0.5, "ms").verdict == "unchanged"


def test_throughput_floor_is_on_the_time_of_one_batch():
    # batch 64: 64000 samples/s is 1 ms a batch, 32000 is 2 ms: -50%, a change of exactly the floor
    assert one("samples_per_s", 64000.0, 32000.0, "samples/s", hib=True, batch_size=64).verdict == "unchanged"
    assert one("samples_per_s", 64000.0, 32100.0, "samples/s", hib=True, batch_size=64).verdict == "unchanged"
    assert one("samples_per_s", 64000.0, 31900.0, "samples/s", hib=True, batch_size=64).verdict == "regressed"
    assert one("samples_per_s", 31900.0, 64000.0, "samples/s", hib=True, batch_size=64).verdict == "improved"
    # the same rates with a batch of 640 time 10 ms calls: far beyond the floor
    assert one("samples_per_s", 64000.0, 32100.0, "samples/s", hib=True, batch_size=640).verdict == "regressed"
    # chars/s: the call generates n_chars x batch_size characters (256 chars: 256000 chars/s is 1 ms)
    assert one("chars_per_s", 256000.0, 128100.0, "chars/s", hib=True, n_chars=256, batch_size=1).verdict == "unchanged"
    assert one("chars_per_s", 256000.0, 127900.0, "chars/s", hib=True, n_chars=256, batch_size=1).verdict == "regressed"


def test_a_fit_has_a_floor_of_a_second():
    assert one("train_seconds", 0.2, 1.2, "s").verdict == "unchanged"  # +500%, exactly 1000 ms
    assert one("train_seconds", 0.2, 1.19, "s").verdict == "unchanged"
    assert one("train_seconds", 0.2, 1.21, "s").verdict == "regressed"
    assert one("train_seconds", 100.0, 139.0, "s").verdict == "unchanged"  # +39 s, but within 40%
    assert one("train_seconds", 100.0, 141.0, "s").verdict == "regressed"


def test_both_the_tolerance_and_the_floor_must_be_exceeded():
    # 100 -> 129 ms: 29 ms beyond the floor, within 30%; 100 -> 131 ms: beyond both
    assert one("latency_ms", 100.0, 129.0, "ms").verdict == "unchanged"
    assert one("latency_ms", 100.0, 131.0, "ms").verdict == "regressed"
    # memory is not a time: the tolerance alone (15%), however small the figure
    assert one("peak_memory_mb", 1.0, 1.14, "MiB").verdict == "unchanged"
    r = one("peak_memory_mb", 1.0, 1.16, "MiB")
    assert r.verdict == "regressed" and r.tolerance == "15%" and "alone (no call time: no floor)" in r.detail


def test_floors_come_from_the_tolerance_file(tmp_path):
    f = tmp_path / "tol.toml"
    f.write_text('[tolerances]\nlatency_ms = "10%"\n\n[timing_floor_ms]\nlatency_ms = 0.1\n')
    tol = load_tolerances(f)
    assert timing_floor_ms("latency_ms", tol) == 0.1
    assert timing_floor_ms("samples_per_s", tol) == 1.0  # the built-in default stays
    assert one("latency_ms", 0.5, 0.59, "ms", tol=tol).verdict == "unchanged"  # +18%, 0.09 ms
    assert one("latency_ms", 0.5, 0.61, "ms", tol=tol).verdict == "regressed"  # +22%, 0.11 ms
    assert one("latency_ms", 0.5, 0.61, "ms").verdict == "unchanged"  # built-in: 1 ms floor
    # a bare file (no tables) and a floor of 0: the tolerance alone
    g = tmp_path / "bare.toml"
    g.write_text('latency_ms = "10%"\n')
    assert load_tolerances(g)["latency_ms"] == Tolerance(0.10, True)
    h = tmp_path / "zero.toml"
    h.write_text('[timing_floor_ms]\ndefault = 0\n')
    assert one("latency_ms", 0.5, 0.7, "ms", tol=load_tolerances(h)).verdict == "regressed"
    for bad in ("latency_ms = -1", 'latency_ms = "1ms"', "latency_ms = true", "latency_ms = nan"):
        b = tmp_path / "bad.toml"
        b.write_text(f"[timing_floor_ms]\n{bad}\n")
        with pytest.raises(InvalidInputError, match=r"\[timing_floor_ms\] latency_ms must be a number of milliseconds"):
            load_tolerances(b)
    b.write_text('timing_floor_ms = 3\n')
    with pytest.raises(InvalidInputError, match=r"expected a \[timing_floor_ms\] table"):
        load_tolerances(b)


def test_an_unlisted_timing_figure_gets_the_timing_default_not_the_quality_default():
    tol = {"default": Tolerance(0.02, True), "timing_default": Tolerance(0.30, True)}
    assert one("decode_ms", 10.0, 12.5, "ms", tol=tol).verdict == "unchanged"  # +25%, 2.5 ms
    assert one("decode_ms", 10.0, 13.5, "ms", tol=tol).verdict == "regressed"  # +35%
    # without a timing_default the quality default applies, as before
    assert one("decode_ms", 10.0, 12.5, "ms", tol={"default": Tolerance(0.02, True)}).verdict == "regressed"
    assert one("decode_ms", 10.0, 12.5, "ms", tol={}).verdict == "regressed"  # no tolerance at all: 0


def test_a_clean_sub_millisecond_rerun_passes_and_a_real_slowdown_does_not():
    # figures of two same-machine runs of the quick suite (runs/calib-quick, seeds 0 and 1-3): a scheduler tick
    # moves a 0.02-0.5 ms call by 30-90%
    base = [timing("latency_ms", 0.4741, "ms", model="gan"), timing("latency_ms", 0.02135, "ms", model="train-copy"),
            timing("samples_per_s", 4.806e5, "samples/s", True, model="train-copy", batch_size=64),
            timing("first_char_latency", 0.2871, "ms", model="ngram"),
            timing("train_seconds", 0.1731, "s", model="text-copy")]
    new = [timing("latency_ms", 0.7399, "ms", model="gan"), timing("latency_ms", 0.03976, "ms", model="train-copy"),
           timing("samples_per_s", 2.767e5, "samples/s", True, model="train-copy", batch_size=64),
           timing("first_char_latency", 0.3249, "ms", model="ngram"),
           timing("train_seconds", 0.2729, "s", model="text-copy")]
    c = judge(base, new)
    assert c.exit_code == EXIT_OK
    timed = [r for r in c.rows if r.noise_source == "timing"]
    assert len(timed) == 5 and {r.verdict for r in timed} == {"unchanged"}
    (gan,) = [r for r in timed if r.model == "gan"]
    assert "within the floor (change +0.266 ms)" in gan.detail and "0.474 -> 0.74 ms" in gan.detail
    # a sampler that became 5 ms slower per sample is caught, and said so
    c = judge(base, [timing("latency_ms", 5.5, "ms", model="gan"), *new[1:]])
    assert c.exit_code == EXIT_REGRESSION
    (r,) = c.regressions
    assert r.model == "gan" and r.metric == "latency_ms"
    assert "judged by the tolerance 30% and the floor 1 ms of the timed call (0.474 -> 5.5 ms)" in r.detail
    assert "30% and 1 ms" in to_markdown(c)
