"""`genbench recommend`: ranks a synthetic results store as expected and calls near-equal models a tie."""

import json

import pandas as pd
import pytest

from genbench.cli import main
from genbench.errors import InvalidInputError
from genbench.results.recommend import parse_weights, recommend

TIMING = json.dumps({"timing": True})


def _frame(models):
    """models: name -> dict(metric -> (value, half_width))"""
    hib = {"fd": False, "precision": True, "recall": True, "coverage": True, "samples_per_s": True,
           "latency_ms": False, "bits_per_dim": False, "num_params": False}
    rows = []
    for model, mets in models.items():
        for metric, (v, hw) in mets.items():
            rows.append(dict(dataset="fashion-mnist", model=model, seed=0, metric=metric, variant="", value=v,
                             ci_low=v - hw if hw else None, ci_high=v + hw if hw else None, unit="",
                             higher_is_better=hib[metric], protocol=TIMING if metric in ("samples_per_s", "latency_ms") else "{}"))
    return pd.DataFrame(rows)


MODELS = {
    # sharp but slow, no likelihood
    "ddpm": {"fd": (5.0, 0.3), "precision": (0.8, 0.01), "recall": (0.7, 0.01), "coverage": (0.8, 0.01),
             "samples_per_s": (20.0, 0), "latency_ms": (900.0, 0), "num_params": (2e6, 0)},
    # fast, poor quality
    "gan": {"fd": (25.0, 0.3), "precision": (0.6, 0.01), "recall": (0.2, 0.01), "coverage": (0.4, 0.01),
            "samples_per_s": (20000.0, 0), "latency_ms": (1.0, 0), "num_params": (1e6, 0)},
    # exact likelihood, middling samples
    "realnvp": {"fd": (15.0, 0.3), "precision": (0.5, 0.01), "recall": (0.5, 0.01), "coverage": (0.6, 0.01),
                "samples_per_s": (2000.0, 0), "latency_ms": (10.0, 0), "bits_per_dim": (3.2, 0.01), "num_params": (4e6, 0)},
}


def test_profiles_rank_as_expected():
    f = _frame(MODELS)
    assert recommend(f, task="high-fidelity")[0].ranked[0].model == "ddpm"
    assert recommend(f, task="real-time")[0].ranked[0].model == "gan"
    rec = recommend(f, task="density-estimation")[0]
    assert [r.model for r in rec.ranked] == ["realnvp"]
    assert "no tractable likelihood" in rec.excluded["ddpm"]
    assert recommend(f, task="diverse-augmentation")[0].ranked[0].model == "ddpm"


def test_near_equal_models_are_a_tie():
    twin = {k: (v * 1.001, max(hw, abs(v) * 0.01)) for k, (v, hw) in MODELS["ddpm"].items()}
    rec = recommend(_frame(MODELS | {"ddpm-twin": twin}), task="high-fidelity")[0]
    first = [r for r in rec.ranked if r.rank == 1]
    assert {r.model for r in first} == {"ddpm", "ddpm-twin"}
    assert "ddpm-twin" in first[0].tie_with or "ddpm" in first[0].tie_with
    assert "tie with" in rec.to_markdown()


def test_constraints_pareto_and_gives_up():
    rec = recommend(_frame(MODELS), task="high-fidelity", max_latency_ms=50)[0]
    assert "ddpm" in rec.excluded and "latency" in rec.excluded["ddpm"]
    assert rec.ranked[0].model == "realnvp"
    dominated = {"fd": (30.0, 0.3), "precision": (0.5, 0.01), "recall": (0.1, 0.01), "coverage": (0.3, 0.01),
                 "samples_per_s": (1000.0, 0), "latency_ms": (5.0, 0), "num_params": (1e6, 0)}
    full = recommend(_frame(MODELS | {"bad-gan": dominated}), task="high-fidelity")[0]
    # realnvp trades quality for speed against both others: on the front; bad-gan is beaten by gan everywhere.
    assert {r.model for r in full.ranked if r.pareto} == {"ddpm", "gan", "realnvp"}
    top = full.ranked[0]
    assert any(g.startswith("speed") for g in top.gives_up)
    rec = recommend(_frame(MODELS), weights={"quality": 1.0}, min_coverage=0.5)[0]
    assert "gan" in rec.excluded


def test_weights_parsing_and_errors(tmp_path):
    assert parse_weights("quality=0.5, speed=0.5") == {"quality": 0.5, "speed": 0.5}
    with pytest.raises(InvalidInputError, match="Did you mean 'quality'"):
        parse_weights("qualty=1")
    with pytest.raises(InvalidInputError, match="task"):
        recommend(_frame(MODELS), task="realtime")


def test_cli(tmp_path, capsys):
    d = tmp_path / "run"
    d.mkdir()
    _frame(MODELS).to_csv(d / "results.csv", index=False)
    assert main(["recommend", "--results", str(d), "--task", "real-time"]) == 0
    out = capsys.readouterr().out
    assert out.index("**gan**") < out.index("**ddpm**")
    assert main(["recommend", "--results", str(d), "--weights", "speed=1,quality=0"]) == 0


def test_infinite_metric_ranks_last_without_nan():
    f = _frame(MODELS)
    extra = pd.DataFrame([dict(dataset="fashion-mnist", model=m, seed=0, metric="mode_kl", variant="", value=v,
                               ci_low=None, ci_high=None, unit="nats", higher_is_better=False, protocol="{}")
                          for m, v in (("ddpm", 0.01), ("gan", float("inf")), ("realnvp", 0.2))])
    rec = recommend(pd.concat([f, extra], ignore_index=True), weights={"diversity": 1.0})[0]
    assert all(r.score == r.score for r in rec.ranked)  # no NaN
    assert rec.ranked[-1].model == "gan"


def _by_model(rec):
    return {r.model: r for r in rec.ranked}


def test_scores_are_invariant_to_scaling_the_weights():
    """A model's score is the weight-normalised mean of its category scores: multiplying every weight of a profile
    by 3 changes neither the ranking nor any score or interval end (and all stay in [0, 1])."""
    f = _frame(MODELS)
    for task in ("real-time", "high-fidelity", "diverse-augmentation"):
        base = recommend(f, task=task)[0]
        tripled = recommend(f, weights={k: 3 * v for k, v in base.weights.items()})[0]
        assert [r.model for r in tripled.ranked] == [r.model for r in base.ranked]
        a, b = _by_model(base), _by_model(tripled)
        for m in a:
            for attr in ("score", "low", "high"):
                assert getattr(b[m], attr) == pytest.approx(getattr(a[m], attr), rel=1e-12, abs=1e-12), (task, m, attr)
                assert 0.0 <= getattr(b[m], attr) <= 1.0
            assert b[m].categories == pytest.approx(a[m].categories)
            assert b[m].rank == a[m].rank


def test_weighted_score_is_the_normalised_weighted_mean_of_category_scores():
    f = _frame(MODELS)
    w = {"quality": 2.0, "speed": 1.0, "diversity": 1.0}
    for r in recommend(f, weights=w)[0].ranked:
        c = r.categories
        assert r.score == pytest.approx((2 * c["quality"] + c["speed"] + c["diversity"]) / 4, rel=1e-12)


def test_speed_score_is_log_scaled_over_the_candidates():
    """10 / 100 / 1000 samples/s (the slowest and fastest candidates are the ends of the range) score 0 / 0.5 / 1
    on the log scale (a linear scale would give 0.09 for the middle one)."""
    models = {"slow": {"samples_per_s": (10.0, 0)}, "mid": {"samples_per_s": (100.0, 0)},
              "fast": {"samples_per_s": (1000.0, 0)}}
    rec = recommend(_frame(models), weights={"speed": 1.0})[0]
    r = _by_model(rec)
    assert [x.model for x in rec.ranked] == ["fast", "mid", "slow"]
    for m, want in (("slow", 0.0), ("mid", 0.5), ("fast", 1.0)):
        assert r[m].categories["speed"] == pytest.approx(want, abs=1e-12)
        assert r[m].score == pytest.approx(want, abs=1e-12)
        assert (r[m].low, r[m].high) == pytest.approx((want, want), abs=1e-12)  # no uncertainty given
    # latency: lower is better, also on a log scale
    lat = {"a": {"latency_ms": (1.0, 0)}, "b": {"latency_ms": (10.0, 0)}, "c": {"latency_ms": (100.0, 0)}}
    r = _by_model(recommend(_frame(lat), weights={"speed": 1.0})[0])
    assert [r[m].score for m in "abc"] == pytest.approx([1.0, 0.5, 0.0], abs=1e-12)


def test_interval_ends_in_order_with_known_values():
    """FD (lower is better) 5, 10, 25 with CI half-widths 1: normalised 1 - (v - 5) / 20, so the middle model
    scores 0.75 in [0.70, 0.80]; the ends of an interval of a lower-is-better metric swap under the mapping and
    must come out as low <= score <= high. Ends past the best / worst candidate are cut at 1 / 0: a normalised
    score never leaves [0, 1]."""
    models = {"best": {"fd": (5.0, 1.0)}, "mid": {"fd": (10.0, 1.0)}, "worst": {"fd": (25.0, 1.0)}}
    rec = recommend(_frame(models), weights={"quality": 1.0})[0]
    r = _by_model(rec)
    assert (r["mid"].score, r["mid"].low, r["mid"].high) == pytest.approx((0.75, 0.70, 0.80), abs=1e-12)
    assert (r["best"].score, r["best"].low, r["best"].high) == pytest.approx((1.0, 0.95, 1.0), abs=1e-12)
    assert (r["worst"].score, r["worst"].low, r["worst"].high) == pytest.approx((0.0, 0.0, 0.05), abs=1e-12)
    # higher is better: the ends keep their order
    models = {"a": {"precision": (0.2, 0.05)}, "b": {"precision": (0.4, 0.05)}, "c": {"precision": (0.6, 0.05)}}
    r = _by_model(recommend(_frame(models), weights={"quality": 1.0})[0])
    assert (r["b"].score, r["b"].low, r["b"].high) == pytest.approx((0.5, 0.375, 0.625), abs=1e-12)
    for x in recommend(_frame(MODELS), task="high-fidelity")[0].ranked:
        assert x.low <= x.score <= x.high, x.model
    assert [x.rank for x in rec.ranked] == [1, 2, 3]  # [0.95, 1], [0.70, 0.80], [0, 0.05]: no overlap


HIB = {"fd": False, "kid": False, "precision": True, "density": True, "recall": True, "coverage": True, "samples_per_s": True, "latency_ms": False,
       "first_char_latency": False, "mode_kl": False, "bits_per_dim": False, "num_params": False}


def _rows(models):
    """Like _frame, for any metric of HIB; values may be inf or nan."""
    rows = []
    for model, mets in models.items():
        for metric, (v, hw) in mets.items():
            rows.append(dict(dataset="fashion-mnist", model=model, seed=0, metric=metric, variant="", value=v,
                             ci_low=v - hw if hw else None, ci_high=v + hw if hw else None, unit="",
                             higher_is_better=HIB[metric], protocol="{}"))
    return pd.DataFrame(rows)


def _one(models, **kw):
    return recommend(_rows(models), **kw)[0]


def test_builtin_profiles_are_normalised_frozen_and_require_their_heaviest_category():
    import dataclasses

    from genbench.results.recommend import PROFILES

    for p in PROFILES.values():
        assert sum(p.weights.values()) == pytest.approx(1.0, abs=1e-12), p.name
        assert p.requires == (max(p.weights, key=p.weights.get),), p.name
    with pytest.raises(dataclasses.FrozenInstanceError):
        PROFILES["real-time"].name = "x"


def test_weights_parsing_edges():
    for bad in ("quality=1=2", "quality=0", "", " , ", "quality=abc", "quality=-1", "quality"):
        with pytest.raises(InvalidInputError):
            parse_weights(bad)
    assert parse_weights("quality=0,speed=2") == {"quality": 0.0, "speed": 2.0}


def test_dataset_selection_and_profile_name():
    f = _frame(MODELS)
    with pytest.raises(InvalidInputError, match="dataset"):
        recommend(f, task="real-time", dataset="nope")
    [rec] = recommend(f, task="real-time", dataset="fashion-mnist")
    assert rec.dataset == "fashion-mnist" and rec.profile == "real-time"
    assert recommend(f, weights={"quality": 1.0})[0].profile == "custom"
    with pytest.raises(InvalidInputError):
        recommend(f)


def test_markdown_lists_reasons_what_is_given_up_and_exclusions():
    md = recommend(_frame(MODELS), task="high-fidelity", max_latency_ms=50)[0].to_markdown()
    assert "   - why: quality score" in md
    assert "   - gives up: speed (samples_per_s 2000 vs 2e+04 for gan)" in md
    assert "- excluded **ddpm**: latency 900 ms > 50 ms" in md
    assert "No model qualifies." not in md
    nothing = recommend(_frame(MODELS), task="high-fidelity", max_latency_ms=0.5)[0]
    assert nothing.ranked == [] and "No model qualifies." in nothing.to_markdown()


def test_constraint_boundaries_and_reasons():
    f = _frame(MODELS)
    assert "ddpm" not in recommend(f, task="high-fidelity", max_latency_ms=900)[0].excluded  # at the limit: kept
    assert "ddpm" in recommend(f, task="high-fidelity", max_latency_ms=899.9)[0].excluded
    rec = recommend(f, task="high-fidelity", min_coverage=0.6)[0]  # realnvp's coverage is exactly 0.6
    assert rec.excluded == {"gan": "coverage 0.400 < 0.6"}
    assert {r.model for r in rec.ranked} == {"ddpm", "realnvp"}
    no_cov = {k: v for k, v in MODELS["gan"].items() if k not in ("coverage", "latency_ms")}
    rec = recommend(_frame(MODELS | {"nocov": no_cov}), task="high-fidelity", min_coverage=0.1)[0]
    assert rec.excluded == {"nocov": "coverage not measured"}
    rec = recommend(_frame(MODELS | {"nocov": no_cov}), task="high-fidelity", max_latency_ms=1e6)[0]
    assert rec.excluded == {"nocov": "latency not measured"}


def test_nan_values_are_ignored_and_equal_values_all_score_one():
    rec = _one({"a": {"fd": (float("nan"), 0), "precision": (0.5, 0)}, "b": {"fd": (3.0, 0), "precision": (0.7, 0)},
                "c": {"fd": (5.0, 0), "precision": (0.9, 0)}}, weights={"quality": 1.0})
    r = _by_model(rec)
    assert r["a"].score == pytest.approx(0.0) and r["b"].score == pytest.approx(0.75)  # b: fd 1, precision 0.5
    same = _by_model(_one({m: {"fd": (7.0, 0.5)} for m in "xyz"}, weights={"quality": 1.0}))
    assert all((x.score, x.low, x.high) == (1.0, 1.0, 1.0) for x in same.values())


def test_log_scale_floor_and_speeds_below_one():
    r = _by_model(_one({"a": {"samples_per_s": (0.1, 0)}, "b": {"samples_per_s": (10.0, 0)},
                        "c": {"samples_per_s": (1000.0, 0)}}, weights={"speed": 1.0}))
    assert [r[m].score for m in "abc"] == pytest.approx([0.0, 0.5, 1.0], abs=1e-12)
    r = _by_model(_one({"a": {"samples_per_s": (0.0, 0)}, "b": {"samples_per_s": (1e-6, 0)},
                        "c": {"samples_per_s": (1.0, 0)}}, weights={"speed": 1.0}))
    assert [r[m].score for m in "abc"] == pytest.approx([0.0, 0.5, 1.0], abs=1e-12)  # 0 -> 1e-12 (log -12)


def test_infinite_values_map_just_past_the_finite_range():
    """+inf (lower is better) maps to the finite max + max(finite span, 1), -inf to the min - that pad."""
    r = _by_model(_one({"a": {"mode_kl": (0.01, 0)}, "b": {"mode_kl": (0.2, 0)}, "c": {"mode_kl": (float("inf"), 0)}},
                       weights={"diversity": 1.0}))  # pad 1: inf -> 1.2
    assert [r[m].score for m in "abc"] == pytest.approx([1.0, 1 - 0.19 / 1.19, 0.0], abs=1e-12)
    r = _by_model(_one({"a": {"mode_kl": (0.5, 0)}, "b": {"mode_kl": (3.0, 0)}, "c": {"mode_kl": (float("inf"), 0)}},
                       weights={"diversity": 1.0}))  # pad = span 2.5: inf -> 5.5
    assert [r[m].score for m in "abc"] == pytest.approx([1.0, 0.5, 0.0], abs=1e-12)
    r = _by_model(_one({"a": {"bits_per_dim": (-float("inf"), 0)}, "b": {"bits_per_dim": (1.0, 0)}, "c": {"bits_per_dim": (4.0, 0)}},
                       weights={"likelihood": 1.0}))  # -inf -> 1 - 3 = -2
    assert [r[m].score for m in "abc"] == pytest.approx([1.0, 0.5, 0.0], abs=1e-12)
    r = _by_model(_one({"x": {"mode_kl": (0.01, 0)}, "y": {"mode_kl": (float("inf"), 0)}}, weights={"diversity": 1.0}))
    assert r["y"].gives_up == ["diversity (score 0.00 vs 1.00 for x)"]  # no finite metric to name


def test_ties_touching_intervals_and_equal_scores():
    # speeds 10, 10, 1000 without uncertainty: the two slow models have equal zero-width intervals: a tie
    rec = _one({"a": {"samples_per_s": (10.0, 0)}, "b": {"samples_per_s": (10.0, 0)}, "c": {"samples_per_s": (1000.0, 0)}},
               weights={"speed": 1.0})
    assert [(x.model, x.rank, x.tie_with) for x in rec.ranked] == [("c", 1, []), ("a", 2, ["b"]), ("b", 2, ["a"])]
    # FD 0 +- 5 and 10 +- 5 over a span of 20: [0.75, 1.25] and [0.25, 0.75] touch at 0.75: a tie
    rec = _one({"a": {"fd": (0.0, 5.0)}, "b": {"fd": (10.0, 5.0)}, "c": {"fd": (20.0, 0)}}, weights={"quality": 1.0})
    assert [(x.model, x.rank, x.tie_with) for x in rec.ranked] == [("a", 1, ["b"]), ("b", 1, ["a"]), ("c", 3, [])]


def test_pareto_front_with_missing_categories_equal_coordinates_and_twins():
    """x: best quality, speed not measured (counts as worst); v equals y in quality and is slower: dominated;
    z and its twin z2 are identical: neither dominates the other."""
    rec = _one({"x": {"fd": (5.0, 0)}, "y": {"fd": (10.0, 0), "samples_per_s": (100.0, 0)},
                "v": {"fd": (10.0, 0), "samples_per_s": (10.0, 0)}, "z": {"fd": (20.0, 0), "samples_per_s": (1000.0, 0)},
                "z2": {"fd": (20.0, 0), "samples_per_s": (1000.0, 0)}}, weights={"quality": 1.0, "speed": 1.0})
    assert {x.model for x in rec.ranked if x.pareto} == {"x", "y", "z", "z2"}


def test_reasons_and_what_is_given_up():
    f = _frame(MODELS)
    r = _by_model(recommend(f, task="high-fidelity")[0])
    assert r["ddpm"].reason == "quality score 1.00 (weight 0.7): fd 5"
    assert r["ddpm"].gives_up == ["speed (samples_per_s 20 vs 2e+04 for gan)"]  # not what it leads
    assert r["gan"].gives_up == ["quality (fd 25 vs 5 for ddpm)", "diversity (recall 0.2 vs 0.7 for ddpm)"]
    assert _by_model(recommend(f, task="real-time")[0])["gan"].reason == "speed score 1.00 (weight 0.6): samples_per_s 2e+04"
    r = _by_model(recommend(f, weights={"quality": 1.0, "likelihood": 1.0})[0])
    assert r["ddpm"].reason.endswith("; not measured: likelihood") and "not measured" not in r["realnvp"].reason
    twin = {k: (v * 1.001, max(hw, abs(v) * 0.01)) for k, (v, hw) in MODELS["ddpm"].items()}
    r = _by_model(recommend(_frame(MODELS | {"ddpm-twin": twin}), task="high-fidelity")[0])
    assert r["ddpm"].gives_up == ["speed (samples_per_s 20 vs 2e+04 for gan)"]  # 0.001 behind the twin: not named
    # the metric named is the one the model trails most, relative to the larger value; ties go to the first listed
    r = _by_model(_one({"A": {"samples_per_s": (1000.0, 0), "latency_ms": (100.0, 0), "first_char_latency": (50.0, 0)},
                        "B": {"samples_per_s": (500.0, 0), "latency_ms": (1.0, 0), "first_char_latency": (10.0, 0)}},
                       weights={"speed": 1.0}))
    assert r["A"].gives_up == ["speed (latency_ms 100 vs 1 for B)"]  # 0.99 > 0.8; A is faster in samples/s
    r = _by_model(_one({"C": {"fd": (10.0, 0), "precision": (0.2, 0)}, "D": {"fd": (3.5, 0), "precision": (0.8, 0)}},
                       weights={"quality": 1.0}))
    assert r["C"].gives_up == ["quality (precision 0.2 vs 0.8 for D)"]  # 0.6 / 0.8 = 0.75 > 6.5 / 10
    r = _by_model(_one({"F": {"samples_per_s": (10.0, 0), "latency_ms": (100.0, 0)},
                        "G": {"samples_per_s": (100.0, 0), "latency_ms": (10.0, 0)}}, weights={"speed": 1.0}))
    assert r["F"].gives_up == ["speed (samples_per_s 10 vs 100 for G)"]  # 90 / 100 both


def test_what_is_given_up_needs_a_gap_of_more_than_a_tenth():
    """Four quality metrics, each led by a different model (P, Q, R, S: category score 1/4 each); M scores 0.6 on
    fd only: 0.15, exactly 0.1 behind the leader -- not named as given up (the threshold is strict)."""
    ten = (10.0, 0)
    rec = _one({"P": {"fd": (0.0, 0), "kid": ten, "precision": (0.0, 0), "density": (0.0, 0)},
                "Q": {"fd": ten, "kid": (0.0, 0), "precision": (0.0, 0), "density": (0.0, 0)},
                "R": {"fd": ten, "kid": ten, "precision": (1.0, 0), "density": (0.0, 0)},
                "S": {"fd": ten, "kid": ten, "precision": (0.0, 0), "density": (1.0, 0)},
                "M": {"fd": (4.0, 0), "kid": ten, "precision": (0.0, 0), "density": (0.0, 0)}}, weights={"quality": 1.0})
    r = _by_model(rec)
    assert r["M"].categories["quality"] == 0.15 and r["P"].categories["quality"] == 0.25
    assert 0.25 - 0.15 == 0.1  # exactly, in binary floating point
    assert r["M"].gives_up == []
    assert r["Q"].gives_up == []  # tied leaders


def test_normalised_intervals_stay_in_zero_one_when_the_noise_exceeds_the_spread():
    """Two models 0.01 apart with CIs of +-0.5 (a 3-seed smoke run looks like this): per metric the point is 1 or 0
    and the interval is cut to [0, 1] (it was [-49, 51]); a category and the weighted score stay in [0, 1] too,
    and the CLI prints no interval end outside it."""
    import re

    models = {"a": {"precision": (0.51, 0.5), "recall": (0.3, 0.5)}, "b": {"precision": (0.50, 0.5), "recall": (0.31, 0.5)}}
    r = _by_model(_one(models, weights={"quality": 0.5, "diversity": 0.5}))
    assert (r["a"].score, r["a"].low, r["a"].high) == pytest.approx((0.5, 0.0, 1.0), abs=1e-12)
    assert (r["b"].score, r["b"].low, r["b"].high) == pytest.approx((0.5, 0.0, 1.0), abs=1e-12)
    # one-sided: only the end past the range is cut
    r = _by_model(_one({"a": {"precision": (0.9, 0.05)}, "b": {"precision": (0.5, 0.0)}, "c": {"precision": (0.1, 0.05)}},
                       weights={"quality": 1.0}))
    assert (r["a"].low, r["a"].high, r["c"].low, r["c"].high) == pytest.approx((0.9375, 1.0, 0.0, 0.0625), abs=1e-12)
    md = _one(models, weights={"quality": 1.0}).to_markdown() + _one(MODELS | models, task="high-fidelity").to_markdown()
    ends = [float(x) for pair in re.findall(r"\[(-?[\d.]+), (-?[\d.]+)\]", md) for x in pair]
    assert ends and all(0.0 <= x <= 1.0 for x in ends), ends


def test_a_tie_needs_the_intervals_to_overlap_not_a_chain_of_neighbours():
    """FD over a span of 20 (d at 20): A [0.85, 1], B [0.60, 0.90], C [0.35, 0.65]. A~B and B~C overlap, A and C do
    not: C is behind beyond noise (the old ranking chained the overlaps and put all three level)."""
    rec = _one({"A": {"fd": (0.0, 3.0)}, "B": {"fd": (5.0, 3.0)}, "C": {"fd": (10.0, 3.0)}, "d": {"fd": (20.0, 0)}},
               weights={"quality": 1.0})
    assert [(x.model, x.rank, x.tie_with) for x in rec.ranked] == [
        ("A", 1, ["B"]), ("B", 1, ["A"]), ("C", 3, []), ("d", 4, [])]
    assert "They tie within noise:" in rec.verdict() and "(with" not in rec.verdict()
    # each member ties with the leader; two members whose intervals miss each other are not said to tie:
    # A [0.85, 1], B 0.95 [0.90, 1], C 0.80 [0.72, 0.88]
    rec = _one({"A": {"fd": (0.0, 3.0)}, "B": {"fd": (1.0, 1.0)}, "C": {"fd": (4.0, 1.6)}, "d": {"fd": (20.0, 0)}},
               weights={"quality": 1.0})
    assert [(x.model, x.rank, x.tie_with) for x in rec.ranked] == [
        ("A", 1, ["B", "C"]), ("B", 1, ["A"]), ("C", 1, ["A"]), ("d", 4, [])]
    assert "They tie within noise (with C too)" in rec.verdict()
    # a new group starts at the first model that misses the leader, and is led by it
    rec = _one({"A": {"fd": (0.0, 1.0)}, "B": {"fd": (5.0, 1.0)}, "C": {"fd": (6.0, 1.0)}, "D": {"fd": (20.0, 0)}},
               weights={"quality": 1.0})
    assert [(x.model, x.rank) for x in rec.ranked] == [("A", 1), ("B", 2), ("C", 2), ("D", 4)]
    assert "behind beyond noise" in rec.verdict()


def _fidelity_case():
    """Normalised over the three: FD (gan 120, vae 160, ddpm 170) -> 1, 0.2, 0; precision (0.8, 0.7, 0.3 for vae,
    ddpm, gan) -> 1, 0.8, 0; density (0.8, 0.6, 0.2) -> 1, 2/3, 0; recall (0.1, 0.5, 0.3) -> 0, 1, 0.5; samples/s
    (1000, 10, 10000, log) -> 2/3, 0, 1. Quality: vae 0.733, ddpm 0.489, gan 0.333; high-fidelity scores: vae 0.580,
    ddpm 0.542, gan 0.433."""
    return {"vae": {"fd": (160.0, 0), "precision": (0.8, 0), "density": (0.8, 0), "recall": (0.1, 0),
                    "samples_per_s": (1000.0, 0)},
            "ddpm": {"fd": (170.0, 0), "precision": (0.7, 0), "density": (0.6, 0), "recall": (0.5, 0),
                     "samples_per_s": (10.0, 0)},
            "gan": {"fd": (120.0, 0), "precision": (0.3, 0), "density": (0.2, 0), "recall": (0.3, 0),
                    "samples_per_s": (10000.0, 0)}}


def test_the_verdict_says_why_the_choice_beats_a_model_with_a_better_key_number():
    """vae is chosen although gan has the better FD: the verdict says so and why (gan's quality, on density above
    all). Against ddpm, vae's lead comes from quality (0.7 x 0.244 = 0.171) rather than speed (0.1 x 0.667) while
    diversity counts against it; ddpm trails most on density (0.2 / 0.8 relative, precision 0.1 / 0.8)."""
    rec = _one(_fidelity_case(), task="high-fidelity")
    assert [(x.model, round(x.score, 3)) for x in rec.ranked] == [("vae", 0.58), ("ddpm", 0.542), ("gan", 0.433)]
    assert rec.why == (
        "it leads ddpm on quality (0.73 vs 0.49, weight 0.7; density 0.8 vs 0.6); "
        "gan has the better FD (120 vs 160) but trails on quality (0.33 vs 0.73, weight 0.7; density 0.2 vs 0.8)")
    v = rec.verdict()
    assert "Why vae: " + rec.why + "." in v
    assert v.index("use **vae**") < v.index("Why vae") < v.index("Runner-up")
    assert "Why vae" in rec.to_markdown()
    # gan as the runner-up (without ddpm and recall): its better FD is named with the lead
    case = {m: {k: x for k, x in mets.items() if k != "recall"} for m, mets in _fidelity_case().items() if m != "ddpm"}
    rec = _one(case, task="high-fidelity")
    assert rec.why == ("it leads gan on quality (0.67 vs 0.33, weight 0.7; density 0.8 vs 0.2), "
                       "although gan has the better FD (120 vs 160)")


def test_the_reason_for_the_choice_edges():
    # one model: nothing to explain
    assert _one({"a": {"fd": (1.0, 0)}}, weights={"quality": 1.0}).why == ""
    assert "Why" not in _one({"a": {"fd": (1.0, 0)}}, weights={"quality": 1.0}).verdict()
    # equal scores: first by name
    rec = _one({"b": {"fd": (1.0, 0)}, "a": {"fd": (1.0, 0)}}, weights={"quality": 1.0})
    assert rec.why == "it has the same score as b (1.00) and comes first by name"
    # a category the runner-up did not measure counts 0 and says so; no metric to name when none is shared
    rec = _one({"a": {"fd": (1.0, 0), "samples_per_s": (100.0, 0)}, "b": {"fd": (1.0, 0)}},
               weights={"quality": 0.5, "speed": 0.5})
    assert rec.why == "it leads b on speed (1.00 vs not measured, weight 0.5)"
    # higher-is-better key number; more than three better models: the rest counted
    models = {"top": {"precision": (0.5, 0), "samples_per_s": (1000.0, 0)}}
    for i, p in enumerate((0.9, 0.8, 0.7, 0.6, 0.55)):
        models[f"m{i}"] = {"precision": (p, 0), "samples_per_s": (1.0, 0)}
    models["slow"] = {"precision": (0.1, 0), "samples_per_s": (1.0, 0)}
    rec = _one(models, weights={"quality": 0.6, "speed": 0.4})  # top: 0.6 x 0.5 + 0.4 = 0.7, m0 0.6
    assert rec.ranked[0].model == "top" and rec.ranked[1].model == "m0"
    trails = "but trails on speed (0.00 vs 1.00, weight 0.4; samples/s 1 vs 1000)"
    assert rec.why == ("it leads m0 on speed (1.00 vs 0.00, weight 0.4; samples/s 1000 vs 1), although m0 has the "
                       f"better precision (0.9 vs 0.5); m1 has the better precision (0.8 vs 0.5) {trails}; "
                       f"m2 has the better precision (0.7 vs 0.5) {trails}; m3 has the better precision (0.6 vs 0.5) "
                       f"{trails}; 1 more have a better precision and a lower score")


def test_reference_points_are_left_out_by_default():
    """A `baseline`-family model with the best numbers is neither ranked nor part of the normalisation unless
    asked: without it gan's FD 25 is the worst (0); with it ranked, train-copy leads and is flagged."""
    f = _frame(MODELS | {"train-copy": {k: (v, 0) for k, v in {"fd": 1.0, "precision": 0.99, "recall": 0.99,
                                                                  "coverage": 0.99, "samples_per_s": 1e6}.items()}})
    f["family"] = ["baseline" if m == "train-copy" else "x" for m in f["model"]]
    rec = recommend(f, task="high-fidelity")[0]
    assert "train-copy" not in [r.model for r in rec.ranked] and set(rec.references) == {"train-copy"}
    assert rec.included == {}
    assert rec.ranked[0].model == "ddpm"
    both = recommend(f, task="high-fidelity", include_baselines=True)[0]
    assert both.ranked[0].model == "train-copy" and set(both.included) == {"train-copy"} and both.references == {}
    assert "not a model to deploy" in both.verdict()
    assert rec.verdict().endswith(" Reference points left out: train-copy (memorisation ceiling); "
                                  "`--include-baselines` ranks them too.")
    assert both.verdict().startswith("**Verdict**: use **train-copy** (") and "Note: train-copy is a reference point" in both.verdict()
    only = recommend(f[f["model"] == "train-copy"], task="high-fidelity")[0]
    assert only.ranked == [] and only.verdict() == (
        "**Verdict**: no model to rank besides the reference points. Reference points left out: train-copy "
        "(memorisation ceiling); `--include-baselines` ranks them too.")


def test_key_numbers_heaviest_weight_first_without_zero_weights():
    rec = recommend(_frame(MODELS), weights={"quality": 0.3, "speed": 0.6, "diversity": 0.0})[0]
    assert rec.numbers["realnvp"] == "samples/s 2,000, FD 15"
    assert rec.verdict().startswith("**Verdict**: use **gan** (samples/s 20,000, FD 25; score ")


def test_the_reason_for_the_choice_counts_only_weighted_categories_and_exactly_three_better_models():
    # nothing weighted is measured: both score 0, a first by name; b's better FD (weight 0) is not named
    rec = _one({"a": {"fd": (2.0, 0)}, "b": {"fd": (1.0, 0)}}, weights={"speed": 1.0, "quality": 0.0})
    assert rec.why == "it has the same score as b (0.00) and comes first by name"
    # exactly three models with a better key number besides the runner-up: all named, no "more" clause
    models = {"top": {"precision": (0.5, 0), "samples_per_s": (1000.0, 0)}}
    for i, p in enumerate((0.9, 0.8, 0.7, 0.6)):
        models[f"m{i}"] = {"precision": (p, 0), "samples_per_s": (1.0, 0)}
    models["slow"] = {"precision": (0.1, 0), "samples_per_s": (1.0, 0)}
    rec = _one(models, weights={"quality": 0.6, "speed": 0.4})
    assert [x.model for x in rec.ranked][:2] == ["top", "m0"]
    assert rec.why.count("has the better precision") == 4 and "more have" not in rec.why
