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
