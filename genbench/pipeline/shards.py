"""Sharded feature passes: split a large sample set into shards, featurise them on the executor's workers
(genbench/executors.py: local, process or Ray), and merge their exactly mergeable statistics
(genbench.metrics.stats.ShardStats: n, sum x, sum x x^T in float64, plus the features when a k-NN metric needs
them). The merged mean and covariance equal the unsharded ones to float64 rounding for any shard count and
finishing order. `genbench stats build --shards N --executor process|ray` uses it for reference sets."""

from __future__ import annotations

from typing import Any, Optional

import torch

from genbench.metrics.stats import ShardStats


class ShardTask:
    """Featurise one shard in a worker: builds the extractor by name there (cached per process)."""

    _extractors: dict = {}

    def __init__(self, extractor: str, device: str, batch_size: int = 256, keep_features: bool = False,
                 shift: Optional[torch.Tensor] = None):
        self.extractor, self.device, self.batch_size = extractor, device, int(batch_size)
        self.keep_features, self.shift = bool(keep_features), shift

    def __call__(self, item: tuple) -> ShardStats:
        start, samples = item
        key = (self.extractor, self.device)
        if key not in ShardTask._extractors:
            from genbench.features import get_extractor

            ShardTask._extractors[key] = get_extractor(self.extractor, device=self.device)
        ext = ShardTask._extractors[key]
        feats = ext.extract(samples, batch_size=self.batch_size).double().cpu()
        return ShardStats.of(feats, start=start, shift=self.shift, keep_features=self.keep_features)


def shard_items(samples: Any, shards: int, align: int = 1) -> list:
    """(start row, samples[start:stop]) for up to `shards` near-equal contiguous shards whose boundaries are
    multiples of `align` (the extraction batch size: then every batch is the one an unsharded pass forms, and
    the features are the same bits)."""
    n = len(samples)
    blocks = -(-n // max(1, int(align)))
    shards = max(1, min(int(shards), blocks))
    bounds = sorted({min(n, round(i * blocks / shards) * int(align)) for i in range(shards + 1)})
    return [(bounds[i], samples[bounds[i]:bounds[i + 1]]) for i in range(len(bounds) - 1)]


def sharded_feature_stats(samples: Any, extractor: str, device: str = "cpu", shards: int = 4, executor=None,
                          keep_features: bool = False, batch_size: int = 256,
                          shift: Optional[torch.Tensor] = None) -> ShardStats:
    """Featurise `samples` in `shards` shards on `executor` (default: in this process) and merge. A shard that
    fails raises (a partial reference would be wrong)."""
    from genbench.executors import LocalExecutor

    ex = executor or LocalExecutor()
    task = ShardTask(extractor, device, batch_size, keep_features, shift)
    out = []
    for item, result, err in ex.map_unordered(task, shard_items(samples, shards, align=batch_size)):
        if err is not None:
            raise RuntimeError(f"feature shard starting at row {item[0]} failed: {err}") from err
        out.append(result)
    return ShardStats.merge(out)


__all__ = ["ShardTask", "shard_items", "sharded_feature_stats"]
