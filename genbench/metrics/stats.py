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
