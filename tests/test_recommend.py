"""`genbench recommend`: ranks a synthetic results store as expected and calls near-equal models a tie."""

import json

import pandas as pd
import pytest

from genbench.cli import main
from genbench.errors import InvalidInputError
from genbench.recommend import parse_weights, recommend

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
    must come out as low <= score <= high."""
    models = {"best": {"fd": (5.0, 1.0)}, "mid": {"fd": (10.0, 1.0)}, "worst": {"fd": (25.0, 1.0)}}
    rec = recommend(_frame(models), weights={"quality": 1.0})[0]
    r = _by_model(rec)
    assert (r["mid"].score, r["mid"].low, r["mid"].high) == pytest.approx((0.75, 0.70, 0.80), abs=1e-12)
    assert (r["best"].score, r["best"].low, r["best"].high) == pytest.approx((1.0, 0.95, 1.05), abs=1e-12)
    assert (r["worst"].score, r["worst"].low, r["worst"].high) == pytest.approx((0.0, -0.05, 0.05), abs=1e-12)
    # higher is better: the ends keep their order
    models = {"a": {"precision": (0.2, 0.05)}, "b": {"precision": (0.4, 0.05)}, "c": {"precision": (0.6, 0.05)}}
    r = _by_model(recommend(_frame(models), weights={"quality": 1.0})[0])
    assert (r["b"].score, r["b"].low, r["b"].high) == pytest.approx((0.5, 0.375, 0.625), abs=1e-12)
    for x in recommend(_frame(MODELS), task="high-fidelity")[0].ranked:
        assert x.low <= x.score <= x.high, x.model
    assert [x.rank for x in rec.ranked] == [1, 2, 3]  # [0.95, 1.05], [0.70, 0.80], [-0.05, 0.05]: no overlap
