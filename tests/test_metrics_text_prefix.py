"""`prefix_bpc` / `prefix_gain` (genbench/metrics/text_prefix.py, issue #23): against a brute-force sum of an
independent (dict-based) Kneser-Ney's exact probabilities, a model following its prefixes against one ignoring
them, the held-out prefix draw, and `genbench run` of a names table with `prefix_length` (the scores with their
protocol, the prefixes kept, and failed jobs with clear errors for text-copy and a prefix longer than the context)."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch

from genbench.data import get_dataset
from genbench.data.base import TextSplit
from genbench.errors import GenbenchError
from genbench.metrics.context import EvalContext
from genbench.metrics.registry import METRICS, compute_metrics
from genbench.metrics.text_prefix import SCORE_CHARS, prefix_scores, scored_continuations
from genbench.models.conditions import PREFIX_SEED, draw_prefixes
from genbench.runner import Runner
from genbench.results.store import ResultsStore
from genbench.suite import load_suite
from reference_models import create_model
from reference_models.text_base import training_text
from helpers.dummy_suite import suite_toml
from test_text_models import naive_kn
from test_text_prefix import INFO, SPLIT, TEXT  # the toy data: lines whose class decides the continuation

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py
ORDER = 4


@pytest.fixture(scope="module")
def judge():
    m = create_model("ngram", INFO, "smoke", {"order": ORDER})
    m.fit(SPLIT, seed=0)
    assert m.sample_mode == "line"
    return m


def brute_force_log2(p, prefix: str, cont: str) -> float:
    """log2 P(cont | "\\n" + prefix): the product of the naive model's next-character probabilities, each given
    the last ORDER - 1 characters before it (missing context is "\\n", the model's start-of-text)."""
    hist = "\n" * ORDER + prefix
    total = 0.0
    for ch in cont:
        total += math.log2(p(ch, tuple(hist[-(ORDER - 1):])))
        hist += ch
    return total


def test_prefix_scores_equal_a_brute_force_sum_of_an_independent_kneser_ney(judge):
    p = naive_kn(training_text(SPLIT, "line", 0), sorted(set(TEXT)), ORDER)
    prefixes = ["a=", "b=", "a=x", "b", "=", "a=", "b=p"]
    samples = ["a=xyxy", "b=xy", "a=xyxyxyxyxyxyxyxyxyxyxyxyxyxyxyxyxyxy", "b=pqpq", "=pq", "a=", "b=pqpqb=pqpq"]
    t = scored_continuations(samples, prefixes, line_mode=True)
    assert t[0] == "xyxy\n" and t[5] == "\n" and len(t[2]) == SCORE_CHARS and "\n" not in t[2]
    own = sum(brute_force_log2(p, pr, c) for pr, c in zip(prefixes, t))
    other = prefixes[1:] + prefixes[:1]
    mis = sum(brute_force_log2(p, pr, c) for pr, c in zip(other, t))
    n = sum(map(len, t))
    r = prefix_scores(judge, samples, prefixes, line_mode=True)
    assert r["n_chars"] == n
    assert r["prefix_bpc"] == pytest.approx(-own / n, abs=1e-9)
    assert r["prefix_gain"] == pytest.approx((own - mis) / n, abs=1e-9)


def test_a_model_ignoring_its_prefix_scores_worse_than_one_following_it(judge):
    rng = random.Random(1)
    prefixes = [rng.choice(["a=", "b="]) for _ in range(200)]
    follow = [pr + ("xyxy" if pr == "a=" else "pqpq") for pr in prefixes]
    ignore = [pr + rng.choice(["xyxy", "pqpq"]) for pr in prefixes]  # a right-looking continuation, any prefix
    f = prefix_scores(judge, follow, prefixes, line_mode=True)
    g = prefix_scores(judge, ignore, prefixes, line_mode=True)
    assert f["prefix_bpc"] < g["prefix_bpc"] - 0.5, (f, g)
    assert f["prefix_gain"] > 0.5 and abs(g["prefix_gain"]) < 0.25, (f, g)


def test_metric_through_an_eval_context_states_its_protocol(judge):
    ctx = EvalContext(modality="text", dataset="tiny-text", condition_protocol={"prefix_length": 2})
    ctx.fake_texts, ctx.text_prefixes = ["a=xyxy", "b=pqpq"], ["a=", "b="]
    ctx.prefix_judge = (judge, {"judge": "test n-gram"})
    res = {m.name: m for m in compute_metrics(["prefix_bpc"], ctx, strict=True)}
    assert set(res) == {"prefix_bpc", "prefix_gain"} and not res["prefix_bpc"].higher_is_better
    assert res["prefix_bpc"].protocol["judge"] == "test n-gram" and res["prefix_bpc"].protocol["prefix_length"] == 2
    assert res["prefix_bpc"].value == pytest.approx(prefix_scores(judge, ctx.fake_texts, ["a=", "b="], True)["prefix_bpc"])
    ctx2 = EvalContext(modality="text", dataset="tiny-text")
    ctx2.fake_texts = ["a=xyxy"]
    compute_metrics(["prefix_bpc"], ctx2)
    assert "prefix_length" in ctx2.skipped["prefix_bpc"]
    assert METRICS.get("prefix_bpc").modalities == ("text",)


def test_prefixes_are_held_out_line_starts_in_a_fixed_order():
    lines = ["Anna", "Bo", "Carl", "Dorothea", "Ed"]
    sp = TextSplit("".join(x + "\n" for x in lines), sorted(set("".join(lines) + "\n")), INFO, "test", source="t")
    got = draw_prefixes(sp, 7, 2, "line")
    cands = ["An", "Ca", "Do"]  # lines longer than the prefix
    order = torch.randperm(3, generator=torch.Generator().manual_seed(PREFIX_SEED)).tolist()
    assert got == [cands[order[i % 3]] for i in range(7)] == draw_prefixes(sp, 7, 2, "line")
    stream = draw_prefixes(sp, 4, 6, "stream")
    assert all(sp.text.startswith(s) or ("\n" + s) in sp.text for s in stream) and all(len(s) == 6 for s in stream)
    with pytest.raises(GenbenchError, match="shorter prefix_length"):
        draw_prefixes(sp, 3, 8, "line")


def _need_names():
    ok, why = get_dataset("names").available()
    if not ok:
        pytest.skip(f"names not available: {why}")


def test_genbench_run_asks_for_prefixes_and_fails_models_that_cannot_take_them(tmp_path):
    _need_names()
    text = suite_toml({"names": {"features": "char-ngram", "n_samples": 40, "metrics": ["prefix_bpc", "novelty"],
                                 "prefix_length": 3}},
                      {"ngram": {}, "text-copy": {}, "transformer": {"overrides": {"steps": 2, "block_size": 3}}},
                      n_bootstrap=0, speed={"batch_size": 8, "repeats": 1, "warmup": 0})
    (tmp_path / "s.toml").write_text(text)
    out = tmp_path / "out"
    s = Runner(load_suite(tmp_path / "s.toml"), out, device="cpu", quiet=True, log=lambda m: None).run()
    failed = dict(s.failed)
    assert set(failed) == {"names/text-copy/seed0", "names/transformer/seed0"}, failed
    assert "cannot continue a text prefix" in failed["names/text-copy/seed0"]
    assert "does not fit" in failed["names/transformer/seed0"] and "prefix_length <= 2" in failed["names/transformer/seed0"]
    store = ResultsStore(out)
    f = store.metrics_frame()
    f = f[f.model == "ngram"].set_index("metric")
    proto = json.loads(f.loc["prefix_bpc", "protocol"])
    assert proto["prefix_length"] == 3 and proto["judge_order"] == 5 and proto["score_chars"] == SCORE_CHARS
    arts = store.artifacts("names/ngram/seed0").set_index("kind")
    prefixes = json.loads((out / arts.loc["text_prefixes", "path"]).read_text())
    samples = json.loads((out / arts.loc["samples_preview", "path"]).read_text())
    assert prefixes == draw_prefixes(get_dataset("names").load("test"), 40, 3, "line")
    assert all(x.startswith(p) for x, p in zip(samples, prefixes))
    # the judge scored the model's continuations exactly as prefix_scores does with the same n-gram
    from genbench.metrics.text_prefix import reference_judge

    j, _ = reference_judge("names")
    from reference_models import load_model

    jobs = store.jobs_frame().set_index("job_id")
    m = load_model(out / jobs.loc["names/ngram/seed0", "checkpoint_path"])
    full = m.sample(8, seed=0, batch_size=8, condition=prefixes[:8])  # the first chunk: seed 0 * 1000003 + 0
    assert full == samples[:8]
    assert float(f.loc["prefix_bpc", "value"]) > 0 and math.isfinite(float(f.loc["prefix_gain", "value"]))


def test_suite_refuses_prefix_settings_that_do_not_apply(tmp_path):
    from genbench.suite import SuiteError

    bad = [({"names": {"features": "char-ngram", "n_samples": 40, "metrics": ["prefix_bpc"]}}, "add prefix_length"),
           ({"ring8": {"features": "identity", "n_samples": 40, "metrics": ["fd"], "prefix_length": 3}},
            "prefixes apply to text")]
    for ds, msg in bad:
        (tmp_path / "s.toml").write_text(suite_toml(ds, {"ngram": {}}))
        with pytest.raises(SuiteError, match=msg):
            load_suite(tmp_path / "s.toml")
