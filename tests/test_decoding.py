"""Graphed decoding (reference_models.decoding) against the eager sampling loop: the same characters and the same
generator state afterwards, through cache rebuilds, early line stops, temperature and top-k. On CPU the
orchestration runs without graph capture (use_graphs=False); the device benchmark checks the captured graphs."""

from __future__ import annotations

import pytest
import torch

from reference_models import create_model
from reference_models.decoding import StaticKV, graphed_generate

from tests.test_text_models import INFO, OPTS, VOCAB, randomize_convs


def _model(opts, **ov):
    m = create_model("transformer", INFO, "smoke", {"vocab": "".join(VOCAB), "n_layer": 2, **opts, **ov})
    return randomize_convs(m)


def _both(m, n, steps, stop, seed=7):
    ga, gb = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
    with torch.inference_mode():
        eager = m._generate_ids(n, ga, steps, stop_at_newline=stop, use_cache=True)
        graphed = graphed_generate(m, n, gb, steps, stop_at_newline=stop, use_graphs=False)
    return eager, graphed, ga, gb


@pytest.mark.parametrize("opts", OPTS)
@pytest.mark.parametrize("steps", [1, 20, 75])  # 75 > 2 x block_size 32: the window is cut back twice
def test_graphed_equals_eager_stream(opts, steps):
    m = _model(opts)
    eager, graphed, ga, gb = _both(m, 3, steps, stop=False)
    assert graphed.shape == eager.shape == (3, steps)
    assert torch.equal(graphed, eager)
    assert torch.equal(ga.get_state(), gb.get_state())  # the next batch draws the same uniforms


def test_graphed_equals_eager_with_early_line_stop():
    m = _model(OPTS[1], temperature=50.0)  # near-uniform draws: each row meets a newline after ~20 steps
    eager, graphed, ga, gb = _both(m, 3, 150, stop=True, seed=1)
    assert 40 < eager.shape[1] < 150  # the eager loop stopped early, after a cache rebuild: both cases exercised
    assert torch.equal(graphed, eager)
    assert torch.equal(ga.get_state(), gb.get_state())


def test_graphed_equals_eager_with_top_k():
    m = _model(OPTS[0], top_k=3, temperature=0.7)
    eager, graphed, ga, gb = _both(m, 2, 40, stop=False, seed=3)
    assert torch.equal(graphed, eager)


def test_sample_strings_unchanged_by_the_static_cache():
    """The static cache is the cached path: samples equal the uncached recomputation (strings)."""
    m = _model(OPTS[1], sample_mode="stream", sample_length=50)
    assert m.sample(3, seed=4, use_cache=True) == m.sample(3, seed=4, use_cache=False)


def test_static_cache_bounds():
    kv = StaticKV(4)
    k = torch.zeros(1, 2, 3, 4)
    kv.fill(k, k, None, None)
    kv.append(torch.ones(1, 2, 1, 4), torch.ones(1, 2, 1, 4), None, None)
    assert kv.length == 4 and float(kv.k[0, 0, 3].sum()) == 4.0
    with pytest.raises(ValueError, match="does not fit"):
        kv.append(torch.ones(1, 2, 1, 4), torch.ones(1, 2, 1, 4), None, None)
    with pytest.raises(ValueError, match="exceeds"):
        StaticKV(2).fill(k, k, None, None)
