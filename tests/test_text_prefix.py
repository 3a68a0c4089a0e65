"""Prefix conditioning of the character-level text models (issue #23; reference_models/text_prefix.py): every sample
starts with its prefix, same seed -> same samples (and after save/load), empty prefixes give the unconditional
samples, a prefix longer than the context is cropped, the continuation likelihood against a direct sum of the
network's log-probabilities, clear errors, and that training makes the continuation follow the prefix."""

from __future__ import annotations

import random

import pytest
import torch

from genbench.data.base import DatasetInfo, TextSplit
from genbench.errors import InvalidInputError
from reference_models import create_model, load_model

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py
INFO = DatasetInfo(name="tiny-text", modality="text", shape=(), value_range=(0, 0))
_r = random.Random(0)
# the class of a line ("a" or "b") decides its continuation after "="
LINES = [k + "=" + ("xyxy" if k == "a" else "pqpq") for k in (_r.choice("ab") for _ in range(200))]
TEXT = "".join(ln + "\n" for ln in LINES)
SPLIT = TextSplit(TEXT, sorted(set(TEXT)), INFO, "train", source="test")
MODELS = ["lstm", "transformer", "ngram"]


@pytest.fixture(scope="module", params=MODELS)
def model(request):
    m = create_model(request.param, INFO, "smoke", {} if request.param == "ngram" else {"steps": 60, "lr": 1e-2})
    m.fit(SPLIT, seed=0)
    return m


def test_samples_start_with_their_prefix_and_are_reproducible(model, tmp_path):
    prefixes = ["a=", "b=", "", "a=x", "b", "a=", "=p", "ab"]
    s = model.sample(8, seed=3, condition=prefixes)
    assert len(s) == 8 and all(x.startswith(p) and "\n" not in x for x, p in zip(s, prefixes))
    assert s == model.sample(8, seed=3, condition=tuple(prefixes))
    assert s == model.sample(8, seed=3, batch_size=8, condition=prefixes)
    assert model.sample(6, seed=1) == model.sample(6, seed=1, condition=[""] * 6)  # no prefix: the unconditional path
    model.save(tmp_path / "m")
    assert load_model(tmp_path / "m").sample(8, seed=3, condition=prefixes) == s


def test_continuation_log_prob_is_the_direct_sum_of_the_networks_log_probs(model):
    pairs = [("a=", "xyxy\n"), ("b=", "xyxy"), ("", "b=pq"), ("a=xy", "")]
    got = model.continuation_log_prob([p for p, _ in pairs], [c for _, c in pairs])
    for (p, c), g in zip(pairs, got):
        seq = torch.cat([torch.tensor([model.newline_id]), model.encode(p + c)])
        with torch.no_grad():
            lp = model._window_target_logprobs(seq[None, :-1], seq[None, 1:])[0].double()
        assert float(g) == pytest.approx(float(lp[len(p):].sum()), abs=1e-6)
    with pytest.raises(InvalidInputError, match="two lists of strings of the same length"):
        model.continuation_log_prob(["a="], ["x", "y"])


def test_training_makes_the_continuation_follow_the_prefix(model):
    """After "a=" the data always continue "xyxy", after "b=" "pqpq": both the continuation's likelihood and the
    samples follow the prefix (measured after 60 steps: log P("xyxy" | "a=") -0.17 nats against -7.5 for
    P("xyxy" | "b=") with the lstm, -0.03 against -6.4 with the transformer; all of 10 + 10 samples at seed 1 of
    either continue right)."""
    lp = model.continuation_log_prob(["a=", "b=", "b=", "a="], ["xyxy", "xyxy", "pqpq", "pqpq"])
    assert lp[0] > lp[1] + 3 and lp[2] > lp[3] + 3, lp.tolist()
    s = model.sample(40, seed=5, condition=["a="] * 20 + ["b="] * 20)
    right = sum(x[2:].startswith("xy") for x in s[:20]) + sum(x[2:].startswith("pq") for x in s[20:])
    assert right >= 32, s


def test_a_prefix_longer_than_the_context_is_cropped_to_its_end():
    m = create_model("transformer", INFO, "smoke", {"steps": 2, "sample_mode": "stream", "sample_length": 5})
    m.fit(SPLIT, seed=0)
    C = m.max_context
    p1, p2 = "a" * 10 + "b=pq" * C, "b" * 10 + "b=pq" * C  # equal in their last C characters
    a, b = m.sample(3, seed=2, condition=[p1] * 3), m.sample(3, seed=2, condition=[p2] * 3)
    assert [x[len(p1):] for x in a] == [x[len(p2):] for x in b] and all(len(x) == len(p1) + 5 for x in a)


def test_bad_prefixes_are_clear_errors(model):
    with pytest.raises(InvalidInputError, match="2 prefixes for 3 samples"):
        model.sample(3, seed=0, condition=["a", "b"])
    with pytest.raises(InvalidInputError, match="list of 2 prefix strings"):
        model.sample(2, seed=0, condition="ab")
    with pytest.raises(InvalidInputError, match="list of 2 prefix strings"):
        model.sample(2, seed=0, condition=[1, 2])
    with pytest.raises(InvalidInputError, match=r"prefix 1 must be one line"):
        model.sample(2, seed=0, condition=["a", "b\na"])
    with pytest.raises(InvalidInputError, match="not in the model's vocabulary"):
        model.sample(1, seed=0, condition=["a=Z"])


def test_text_copy_cannot_continue_a_prefix():
    m = create_model("text-copy", INFO, "smoke")
    m.fit(SPLIT, seed=0)
    with pytest.raises(InvalidInputError, match="cannot continue a prefix"):
        m.sample(2, seed=0, condition=["a", "b"])
