"""Known 2D Gaussian mixtures (PacGAN / VEEGAN toy protocol): sampling, exact log-likelihood, mode metrics."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class GaussianMixture2D:
    """Equal-weight isotropic mixture. `means` (K, 2) float64, `std` per-coordinate standard deviation."""

    name: str
    means: torch.Tensor
    std: float

    @property
    def num_modes(self) -> int:
        return int(self.means.shape[0])

    def sample(self, n: int, seed: int) -> torch.Tensor:
        return self.sample_with_labels(n, seed)[0]

    def sample_with_labels(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(points float32 (n, 2), generating component index int64 (n,)); same points as `sample`."""
        g = torch.Generator().manual_seed(int(seed))
        k = torch.randint(0, self.num_modes, (n,), generator=g)
        eps = torch.randn(n, 2, generator=g, dtype=torch.float64)
        return (self.means[k] + self.std * eps).float(), k

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log density in nats, per point."""
        x = x.to(torch.float64)
        d2 = torch.cdist(x, self.means.to(x)) ** 2  # (N, K)
        log_comp = -d2 / (2 * self.std**2) - math.log(2 * math.pi * self.std**2)
        return torch.logsumexp(log_comp, dim=1) - math.log(self.num_modes)


def ring8() -> GaussianMixture2D:
    ang = 2 * math.pi * torch.arange(8, dtype=torch.float64) / 8  # endpoint=False: 8 distinct modes
    return GaussianMixture2D("ring8", torch.stack([torch.cos(ang), torch.sin(ang)], 1), 0.01)


def grid25() -> GaussianMixture2D:
    v = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0], dtype=torch.float64)
    gx, gy = torch.meshgrid(v, v, indexing="ij")
    return GaussianMixture2D("grid25", torch.stack([gx.reshape(-1), gy.reshape(-1)], 1), 0.05)
