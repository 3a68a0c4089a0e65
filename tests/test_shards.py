"""Sharded feature passes (genbench/pipeline/shards.py, genbench.metrics.stats.ShardStats): the merged
statistics give the unsharded Frechet distance to 1e-10 relative for any shard count and order."""

from __future__ import annotations

import random

import pytest
import torch

from genbench.data import get_dataset
from genbench.errors import InvalidInputError
from genbench.executors import LocalExecutor, ProcessExecutor
from genbench.metrics.frechet import frechet_distance
from genbench.metrics.stats import ShardStats, gaussian_stats
from genbench.pipeline.shards import shard_items, sharded_feature_stats


def _feats(seed: int, n: int = 4000, d: int = 48, shift: float = 0.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(d, d, generator=g, dtype=torch.float64) / d**0.5
    # ReLU features with a mean of the order of their spread, like Inception pool features
    return torch.relu(torch.randn(n, d, generator=g, dtype=torch.float64) @ w + 0.5 + shift)


@pytest.mark.parametrize("shards", [1, 2, 3, 7, 64, 101])
def test_merged_fd_equals_unsharded_for_any_count_and_order(shards):
    real, fake = _feats(0), _feats(1, shift=0.05)
    want = frechet_distance(*gaussian_stats(real), *gaussian_stats(fake))
    assert want > 0
    rng = random.Random(shards)
    for shift in (None, real.mean(0)):
        parts = [ShardStats.of(x, start=s, shift=shift, keep_features=True) for s, x in shard_items(real, shards)]
        rng.shuffle(parts)  # shards finish in any order
        merged = ShardStats.merge(parts)
        assert merged.n == real.shape[0] and torch.equal(merged.features, real)
        mu, sigma = merged.stats()
        got = frechet_distance(mu, sigma, *gaussian_stats(fake))
        assert abs(got - want) <= 1e-10 * want, (shards, shift is None, got, want)
        mu0, s0 = gaussian_stats(real)
        assert torch.allclose(mu, mu0, rtol=0, atol=1e-13) and torch.allclose(sigma, s0, rtol=0, atol=1e-13)


def test_shard_items_cover_every_row_once():
    x = torch.arange(103)
    for k in (1, 2, 10, 103, 500):
        items = shard_items(x, k)
        assert torch.equal(torch.cat([s for _, s in items]), x) and [a for a, _ in items] == sorted(a for a, _ in items)
        aligned = shard_items(x, k, align=16)
        assert torch.equal(torch.cat([s for _, s in aligned]), x) and all(a % 16 == 0 for a, _ in aligned)
        assert len(aligned) == min(k, 7)


def test_shards_of_different_shifts_or_dims_do_not_merge():
    a = ShardStats.of(_feats(0, 10, 4))
    with pytest.raises(InvalidInputError, match="cannot be merged"):
        ShardStats.merge([a, ShardStats.of(_feats(0, 10, 4), shift=torch.ones(4))])
    with pytest.raises(InvalidInputError, match="cannot be merged"):
        ShardStats.merge([a, ShardStats.of(_feats(0, 10, 5))])


def test_sharded_pass_on_workers_equals_one_pass():
    x = get_dataset("ring8").load("test").x[:3000]
    whole = sharded_feature_stats(x, "identity", shards=1, keep_features=True)
    mu0, s0 = gaussian_stats(whole.features)
    for ex in (LocalExecutor(), ProcessExecutor(workers=2, threads=1)):
        m = sharded_feature_stats(x, "identity", shards=5, executor=ex, keep_features=True)
        assert torch.equal(m.features, whole.features)
        mu, s = m.stats()
        assert torch.allclose(mu, mu0, rtol=0, atol=1e-14) and torch.allclose(s, s0, rtol=0, atol=1e-14)
