"""Injected regressions for the gate's tests and benchmark (tests/test_gate_e2e.py, benchmarks/bench_gate.py).

Each is a built-in model with one thing broken, put in the model registry under the built-in's own name for the
duration of a `with injected(...)` block, so a run's results carry the same (dataset, model) keys as the clean
baseline's and `genbench compare` must tell the damage from noise:
- `BlurredVAE`: the VAE with its decoder output blurred (images: 3x3 box filter) or shifted (points: +`SHIFT` on
  the first coordinate);
- GAN trained for a quarter of its steps, and DDPM sampled with far fewer steps: plain config overrides
  (`overrides = { steps = ... }`, `{ sample_steps = ... }`), no code needed.
Run with one worker (in-process): spawned workers would not see the replaced registry entry.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F

from reference_models.vae import VAE

SHIFT = 0.25


class BlurredVAE(VAE):
    name = "vae"

    def _sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        x = super()._sample(n, generator)
        if self.info.modality == "image":
            return F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
        x = x.clone()
        x[:, 0] += SHIFT
        return x


@contextmanager
def injected(cls):
    """Register `cls` under its built-in name for the block, then restore the built-in."""
    from reference_models import MODELS, get_model_class

    old = get_model_class(cls.name)
    MODELS.register(cls.name, cls, replace=True)
    try:
        yield cls
    finally:
        MODELS.register(cls.name, old, replace=True)
