"""Gaussian statistics of feature sets (mean and covariance in float64), in one shot or streamed in batches."""

from __future__ import annotations

from typing import Any, Optional

import torch

from genbench.errors import InvalidInputError
from genbench.metrics._util import as_features, resolve_device, warn

_CHUNK = 4096


def _singular_warning(n: int, d: int) -> None:
    if n <= d:
        warn(
            f"covariance from N={n} samples in dimension {d} is singular (rank <= N-1 < D); Frechet distances "
            f"from it are biased and unstable. Use N > {d} samples (N >= 10000 is customary for 2048-d FID)."
        )


def gaussian_stats(features: Any, device: Optional[str | torch.device] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (D,) and unbiased covariance (D, D) of a (N, D) feature matrix, float64 (two-pass, chunked).

    Warns (MetricWarning) when N <= D: the covariance is then singular."""
    dev = resolve_device(device, features)
    x = as_features(features, "features", dev, min_rows=2)
    n, d = x.shape
    mu = x.mean(0)
    sigma = torch.zeros(d, d, dtype=torch.float64, device=dev)
    for i in range(0, n, _CHUNK):
        xc = x[i : i + _CHUNK] - mu
        sigma.addmm_(xc.T, xc)
    sigma.div_(n - 1)
    sigma = 0.5 * (sigma + sigma.T)
    _singular_warning(n, d)
    return mu, sigma


class StreamingGaussianStats:
    """Accumulates sum(x - c), sum((x - c)(x - c)^T) and n in float64, for features that arrive in batches.

    c is the first feature row seen (a shift that keeps the one-pass formula accurate and does not depend on
    how the rows are batched), so `.mu` / `.sigma` agree with `gaussian_stats` on the concatenated rows to
    float64 rounding, whatever the batch sizes."""

    def __init__(self, dim: Optional[int] = None, device: Optional[str | torch.device] = None):
        self.dim = dim
        self.device = torch.device(device) if device is not None else None
        self.n = 0
        self._shift: Optional[torch.Tensor] = None
        self._s1: Optional[torch.Tensor] = None
        self._s2: Optional[torch.Tensor] = None

    def update(self, batch: Any) -> "StreamingGaussianStats":
        dev = self.device or resolve_device(None, batch)
        x = as_features(batch, "batch", dev, min_rows=0)
        if x.shape[0] == 0:
            return self
        if self.dim is None:
            self.dim = int(x.shape[1])
        if x.shape[1] != self.dim:
            raise InvalidInputError(f"batch has dimension {x.shape[1]}, earlier batches had {self.dim}")
        if self._shift is None:
            self.device = dev
            self._shift = x[0].clone()
            self._s1 = torch.zeros(self.dim, dtype=torch.float64, device=dev)
            self._s2 = torch.zeros(self.dim, self.dim, dtype=torch.float64, device=dev)
        xc = x.to(self.device) - self._shift
        self._s1 += xc.sum(0)
        self._s2.addmm_(xc.T, xc)
        self.n += int(x.shape[0])
        return self

    def _check(self) -> None:
        if self.n < 2:
            raise InvalidInputError(f"need at least 2 feature rows for a covariance, got {self.n}")

    @property
    def mu(self) -> torch.Tensor:
        self._check()
        return self._shift + self._s1 / self.n

    @property
    def sigma(self) -> torch.Tensor:
        self._check()
        m = self._s1 / self.n
        s = (self._s2 - self.n * torch.outer(m, m)) / (self.n - 1)
        s = 0.5 * (s + s.T)
        _singular_warning(self.n, int(self.dim))
        return s

    def stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mu, self.sigma


class ShardStats:
    """Exactly mergeable statistics of one shard of a feature pass: n, sum(x - c) and sum((x - c)(x - c)^T) in
    float64 (c: a shift common to every shard, default 0 -- passing a value near the mean, e.g. a cached
    reference mean, keeps the covariance free of cancellation), and the shard's features when a k-NN metric
    needs them. `start` is the shard's first row in the whole set, so merged features come back in the
    unsharded order whatever order the shards finished in.

    Merging adds the sums (`ShardStats.merge`), so the merged mean and covariance are those of the whole set to
    float64 rounding, for any number of shards and any order (a test checks FD to 1e-10 relative)."""

    def __init__(self, n: int, s1: torch.Tensor, s2: torch.Tensor, shift: Optional[torch.Tensor] = None,
                 features: Optional[torch.Tensor] = None, start: int = 0):
        self.n, self.s1, self.s2, self.start = int(n), s1, s2, int(start)
        self.shift = shift
        self.features = features

    @classmethod
    def of(cls, features: Any, start: int = 0, shift: Optional[torch.Tensor] = None,
           keep_features: bool = False) -> "ShardStats":
        x = as_features(features, "features", torch.device("cpu"), min_rows=0)
        d = x.shape[1]
        c = torch.zeros(d, dtype=torch.float64) if shift is None else shift.to(torch.float64).cpu()
        s1 = torch.zeros(d, dtype=torch.float64)
        s2 = torch.zeros(d, d, dtype=torch.float64)
        for i in range(0, x.shape[0], _CHUNK):
            xc = x[i : i + _CHUNK] - c
            s1 += xc.sum(0)
            s2.addmm_(xc.T, xc)
        return cls(x.shape[0], s1, s2, None if shift is None else c, x if keep_features else None, start)

    @staticmethod
    def merge(shards: list) -> "ShardStats":
        shards = sorted(shards, key=lambda s: s.start)
        if not shards:
            raise InvalidInputError("no shards to merge")
        d = shards[0].s1.shape[0]
        shifts = {None if s.shift is None else tuple(s.shift.tolist()) for s in shards}
        if any(s.s1.shape[0] != d for s in shards) or len(shifts) > 1:
            raise InvalidInputError("shards of different dimensions or shifts cannot be merged; give every shard "
                                    "the same extractor and shift")
        n = sum(s.n for s in shards)
        s1 = torch.stack([s.s1 for s in shards]).sum(0)
        s2 = torch.stack([s.s2 for s in shards]).sum(0)
        feats = None
        if all(s.features is not None for s in shards):
            feats = torch.cat([s.features for s in shards], 0)
        return ShardStats(n, s1, s2, shards[0].shift, feats, shards[0].start)

    def stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, sigma): float64 mean and unbiased covariance of every row the shard(s) saw."""
        if self.n < 2:
            raise InvalidInputError(f"need at least 2 feature rows for a covariance, got {self.n}")
        m = self.s1 / self.n
        s = (self.s2 - self.n * torch.outer(m, m)) / (self.n - 1)
        s = 0.5 * (s + s.T)
        mu = m if self.shift is None else m + self.shift
        _singular_warning(self.n, int(self.s1.shape[0]))
        return mu, s
