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
from genbench.errors import GenbenchError, InvalidInputError
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


class FixedJudge:
    """A judge whose log P (nats) is known: `bits` bits per character of the continuation when the prefix is the
    one the continuation was written after (its "own", from `own_of`), `bits_mis` otherwise; records its calls."""

    def __init__(self, own_of, bits=1.0, bits_mis=3.0, sample_mode="line"):
        self.own_of, self.bits, self.bits_mis, self.calls = own_of, bits, bits_mis, []
        if sample_mode is not None:
            self.sample_mode = sample_mode

    def continuation_log_prob(self, prefixes, conts):
        self.calls.append((list(prefixes), list(conts)))
        return torch.tensor([-len(c) * math.log(2) * (self.bits if self.own_of.get(c) == p else self.bits_mis)
                             for p, c in zip(prefixes, conts)], dtype=torch.float32)


def test_prefix_scores_with_a_judge_of_known_bits():
    """bpc = - sum log2 P / characters with the own prefixes; the mismatched prefixes are the next sample's
    (cyclic: p1, p2, p0); gain = mismatched bpc - bpc. Scored: the continuation, its end of line, 32 characters."""
    prefixes, samples = ["ab", "c", "dd"], ["abxx", "c" + "y" * 40, "ddz"]
    t = scored_continuations(samples, prefixes, line_mode=True)
    assert t == ["xx\n", "y" * 32, "z\n"]  # 32 characters, the end of line cut off with the rest
    judge = FixedJudge({"xx\n": "ab", "y" * 32: "c", "z\n": "dd"}, bits=1.0, bits_mis=3.0)
    r = prefix_scores(judge, samples, prefixes, line_mode=True)
    assert judge.calls == [(prefixes, t), (["c", "dd", "ab"], t)]
    assert r == {"prefix_bpc": pytest.approx(1.0, abs=1e-6), "prefix_gain": pytest.approx(2.0, abs=1e-6),
                 "mismatched_bpc": pytest.approx(3.0, abs=1e-6), "n_chars": 37, "n_samples": 3}
    # per-character weighting, not per sample: 5 characters at 2 bits and 1 at 8 -> (10 + 8) / 6 = 3 bits/char
    judge = FixedJudge({"vwxyz": "p"}, bits=2.0, bits_mis=8.0)
    r = prefix_scores(judge, ["pvwxyz", "qa"], ["p", "q"], line_mode=False)
    assert judge.calls[0][1] == ["vwxyz", "a"] and judge.calls[1][0] == ["q", "p"]
    assert r["prefix_bpc"] == pytest.approx(18 / 6, abs=1e-6) and r["n_chars"] == 6
    assert r["prefix_gain"] == pytest.approx((5 * 8 + 8) / 6 - 3, abs=1e-6)


def test_scored_continuations_and_prefix_scores_edges():
    assert scored_continuations(["a" * 50], [""], line_mode=False) == ["a" * 32]  # SCORE_CHARS is 32
    assert scored_continuations(["pq"], ["p"], line_mode=False, score_chars=5) == ["q"]
    assert scored_continuations(["pq"], ["pq"], line_mode=True) == ["\n"]
    with pytest.raises(InvalidInputError, match="2 samples for 1 prefixes"):
        scored_continuations(["a", "b"], ["a"], line_mode=True)
    with pytest.raises(InvalidInputError, match="sample 1 does not start with its prefix 'b'"):
        scored_continuations(["ax", "cx"], ["a", "b"], line_mode=True)
    judge = FixedJudge({}, bits=1.0, bits_mis=1.0)
    with pytest.raises(InvalidInputError, match="no continuation characters"):
        prefix_scores(judge, [], [], line_mode=True)
    with pytest.raises(InvalidInputError, match="no continuation characters"):
        prefix_scores(judge, ["ab", "c"], ["ab", "c"], line_mode=False)  # nothing after the prefixes
    r = prefix_scores(judge, ["ab"], ["a"], line_mode=False)  # one character is enough
    assert r["n_chars"] == 1 and r["prefix_bpc"] == pytest.approx(1.0) and r["prefix_gain"] == pytest.approx(0.0)


def _ctx(**kw):
    ctx = EvalContext(**{"modality": "text", "dataset": None, **kw})
    ctx.fake_texts, ctx.text_prefixes = ["abxx", "cyy"], ["ab", "c"]
    return ctx


def test_the_metric_in_line_and_stream_mode_with_its_protocol_and_declaration():
    own = {"xx\n": "ab", "yy\n": "c", "xx": "ab", "yy": "c"}
    ctx = _ctx(condition_protocol={"prefix_length": 2}, extra_protocol={"note": "x"})
    ctx.prefix_judge = (FixedJudge(own, 1.0, 2.0), {"judge": "fixed"})
    res = {m.name: m for m in compute_metrics(["prefix_bpc"], ctx, strict=True)}
    bpc, gain = res["prefix_bpc"], res["prefix_gain"]
    assert bpc.value == pytest.approx(1.0, abs=1e-6) and gain.value == pytest.approx(1.0, abs=1e-6)
    assert not bpc.higher_is_better and gain.higher_is_better and bpc.unit == gain.unit == "bits/char"
    assert bpc.extra == {"n_chars": 6, "n_samples": 2}
    assert gain.extra == {"n_chars": 6, "n_samples": 2, "mismatched_bpc": pytest.approx(2.0, abs=1e-6)}
    assert bpc.protocol == {"prefix_length": 2, "judge": "fixed", "score_chars": 32, "reference_split": "test",
                            "continuation": "the sample after its prefix, with its end-of-line, first 32 characters",
                            "note": "x"}
    assert gain.protocol == {**bpc.protocol, "mismatched": "the prefix of the next sample (cyclic)"}
    # a judge sampling running text (no sample_mode: "stream"): no end of line, and the dataset named
    ctx = _ctx(modality=None, dataset="some-set")
    ctx.prefix_judge = (FixedJudge(own, 1.0, 2.0, sample_mode=None), {})
    res = {m.name: m for m in compute_metrics(["prefix_bpc"], ctx, strict=True)}
    assert res["prefix_bpc"].extra["n_chars"] == 4
    assert res["prefix_bpc"].protocol == {"score_chars": 32, "reference_split": "test", "dataset": "some-set",
                                          "continuation": "the sample after its prefix, first 32 characters"}
    spec = METRICS.get("prefix_bpc")
    assert spec.unit == "bits/char" and spec.higher_is_better is False
    assert [(o.name, o.higher_is_better, o.category) for o in spec.declared] == [("prefix_bpc", False, "quality"),
                                                                                 ("prefix_gain", True, None)]


def test_the_metric_is_skipped_with_a_reason():
    cases = [(_ctx(modality="image"), "applies to text data, not 'image'"),
             (_ctx(), "no dataset named, so no reference judge"),
             (_ctx(condition_protocol=None), "no dataset named")]
    ctx = _ctx()
    ctx.text_prefixes = []
    cases.append((ctx, "prefix_length"))
    ctx = _ctx()
    ctx.fake_texts = ["abxx", "dyy"]
    ctx.prefix_judge = (FixedJudge({}), {})
    cases.append((ctx, "sample 1 does not start with its prefix"))
    for ctx, why in cases:
        assert compute_metrics(["prefix_bpc"], ctx) == []
        assert why in ctx.skipped["prefix_bpc"], ctx.skipped


def test_the_reference_judge_is_fitted_once_per_dataset_and_states_its_protocol():
    _need_names()
    from genbench.metrics.text_prefix import reference_judge

    j, proto = reference_judge("names")
    assert reference_judge("names")[0] is j  # cached
    train = get_dataset("names").load("train")
    assert proto["judge_order"] == 5 and proto["judge_context"] == j.default_context()
    assert proto["judge"] == "ngram (interpolated modified Kneser-Ney, order 5)"
    assert proto["judge_trained_on"].startswith(f"names train split ({len(train.text)} characters, sha256 ")
    assert proto["judge_trained_on"].endswith(", seed 0")
    fresh = create_model("ngram", get_dataset("names").info, "quick")
    fresh.fit(train, seed=0)
    lp = j.continuation_log_prob(["ma", "jo"], ["ry\n", "hn\n"])
    assert torch.equal(lp, fresh.continuation_log_prob(["ma", "jo"], ["ry\n", "hn\n"]))
    assert float(lp[0]) > -8 * math.log(2) * 3  # a fitted judge: fewer than 8 bits a character for a real name
