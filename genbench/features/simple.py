"""`identity` (low-dimensional data such as the 2-D toy mixtures) and `random-conv` (plumbing tests only)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from genbench.errors import InvalidInputError
from genbench.features.base import FeatureExtractor, check_finite, prepare_images


class IdentityExtractor(FeatureExtractor):
    weightless = True
    """Features = the samples themselves, flattened to (N, D), in float64. `dim` is D of the last extracted
    set (0 before the first call) unless given."""

    name = "identity"
    default_batch_size = 65536

    def __init__(self, device="cpu", dim: int | None = None):
        super().__init__(device)
        self._fixed_dim = dim
        self.dim = int(dim) if dim else 0

    @property
    def protocol(self) -> dict:
        return {"id": "identity", "extractor": "identity", "version": "1", "transform": "flatten, float64",
                "dim": self.dim or "same as input"}

    def _prepare(self, samples: torch.Tensor) -> torch.Tensor:
        if samples.dim() < 1:
            raise InvalidInputError(f"identity: expected samples of shape (N, ...), got a scalar")
        if not (samples.is_floating_point() or samples.dtype in (torch.uint8, torch.int8, torch.int16, torch.int32,
                                                                 torch.int64, torch.bool)):
            raise InvalidInputError(f"identity: unsupported dtype {samples.dtype}")
        x = samples.reshape(samples.shape[0], -1).to(torch.float64)
        check_finite(x, "identity")
        d = int(x.shape[1])
        if self._fixed_dim and d != self._fixed_dim:
            raise InvalidInputError(f"identity was set up for {self._fixed_dim}-d samples, got {d}-d "
                                    f"(shape {tuple(samples.shape)})")
        self.dim = d
        return x

    def forward_batch(self, x: torch.Tensor) -> torch.Tensor:
        return x


class RandomConvExtractor(FeatureExtractor):
    weightless = True  # weights drawn from a fixed seed
    """A fixed-seed, untrained two-layer conv net: cheap features for plumbing tests of the pipeline. Its numbers
    mean nothing about sample quality; the protocol says so. Weights are drawn (He-normal, from a seeded
    torch.Generator) per input channel count C, so any (N, C, H, W) image in [0, 1] is accepted."""

    name = "random-conv"
    dim = 128
    default_batch_size = 512

    def __init__(self, device="cpu", seed: int = 0):
        super().__init__(device)
        self.seed = int(seed)
        self._weights: dict[int, tuple[torch.Tensor, ...]] = {}

    @property
    def protocol(self) -> dict:
        return {"id": f"random-conv/seed{self.seed}/v1", "extractor": "random-conv", "version": "1",
                "seed": self.seed, "dim": self.dim,
                "network": "untrained conv3x3(16, stride 2)-relu-conv3x3(32, stride 2)-relu-avgpool 2x2, He-normal",
                "purpose": "PLUMBING TESTS ONLY: random weights, the numbers say nothing about sample quality"}

    def _params(self, c: int) -> tuple[torch.Tensor, ...]:
        if c not in self._weights:
            g = torch.Generator().manual_seed(self.seed * 1009 + c)
            w1 = torch.randn(16, c, 3, 3, generator=g, dtype=torch.float32) * math.sqrt(2.0 / (9 * c))
            b1 = torch.randn(16, generator=g) * 0.1
            w2 = torch.randn(32, 16, 3, 3, generator=g, dtype=torch.float32) * math.sqrt(2.0 / (9 * 16))
            b2 = torch.randn(32, generator=g) * 0.1
            self._weights[c] = tuple(t.to(self.device, torch.float64) for t in (w1, b1, w2, b2))
        return self._weights[c]

    def _prepare(self, samples: torch.Tensor) -> torch.Tensor:
        x = prepare_images(samples, "random-conv")
        if x.shape[2] < 4 or x.shape[3] < 4:
            raise InvalidInputError(f"random-conv: images must be at least 4x4, got {tuple(x.shape[2:])}")
        return x

    def forward_batch(self, x: torch.Tensor) -> torch.Tensor:
        w1, b1, w2, b2 = self._params(int(x.shape[1]))
        x = x.to(self.device, torch.float64)  # float64: batch-size independent to ~1e-16
        h = F.relu(F.conv2d(x * 2 - 1, w1, b1, stride=2, padding=1))
        h = F.relu(F.conv2d(h, w2, b2, stride=2, padding=1))
        return F.adaptive_avg_pool2d(h, 2).flatten(1)
