"""User models for the external-model tests, referenced from suites as "tests.helpers.collapsed_model:<name>".

- `make`: a deliberately mode-collapsed sampler on ring8: every sample lies near ONE mode (a factory function;
  `mode` and `spread` are its config, `budget` is filled by genbench). Nothing to train.
- `CollapsedGM`: the same collapse as a GenerativeModel subclass that "trains" (it picks the mode nearest the
  first training point) and has state, so its checkpoints are cached.
- `DuckGauss`: a duck-typed class taking (config, info), fitting a diagonal Gaussian, state via state_dict().
- `nan_sampler`, `wrong_shape`, `int_sampler`, `scaled_sampler`: models that break the contract.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from reference_models.base import FitHistory, GenerativeModel, ModelConfig


def ring8_mode(k: int) -> torch.Tensor:
    a = 2 * math.pi * (k % 8) / 8
    return torch.tensor([math.cos(a), math.sin(a)])


class Collapsed:
    family = "toy"

    def __init__(self, info, mode: int, spread: float):
        self.info = info
        self.center = ring8_mode(mode)
        self.spread = spread

    def sample(self, n, seed=0):
        g = torch.Generator().manual_seed(int(seed))
        return self.center + self.spread * torch.randn(n, 2, generator=g)


def make(info, mode: int = 0, spread: float = 0.01, budget: str = "quick"):
    """Every sample within a few `spread` of ring8's mode `mode`."""
    assert budget in ("smoke", "quick", "standard")
    return Collapsed(info, mode, spread)


make.modalities = ("points",)


@dataclass
class CollapsedConfig(ModelConfig):
    spread: float = 0.01
    steps: int = 1


class CollapsedGM(GenerativeModel):
    name = "collapsed-gm"
    family = "toy"
    modalities = ("points",)
    Config = CollapsedConfig

    def __init__(self, config, info):
        super().__init__(config, info)
        self.net = nn.Module()
        self.net.center = nn.Parameter(torch.zeros(2), requires_grad=False)

    def modules(self):
        return {"net": self.net}

    def fit(self, train, budget=None, seed=0, device="cpu", callbacks=()):
        x0 = train[0].double()
        modes = torch.stack([ring8_mode(k) for k in range(8)]).double()
        k = int(((modes - x0) ** 2).sum(1).argmin())
        with torch.no_grad():
            self.net.center.copy_(modes[k].float())
        self.history = FitHistory(steps=1, seconds=0.0)
        self.history.log(1, loss=0.0)
        return self.history

    def _sample(self, n, generator):
        return self.net.center.detach().cpu() + self.config.spread * torch.randn(n, 2, generator=generator)


@dataclass
class DuckConfig:
    shrink: float = 1.0


class DuckGauss:
    """Not a GenerativeModel: a class taking (config, info) with fit/sample/log_prob and state_dict."""

    Config = DuckConfig
    modalities = ("points",)
    log_prob_kind = "exact"

    def __init__(self, config, info):
        self.config = config
        self.mu = np.zeros(2)
        self.sigma = np.ones(2)

    def fit(self, train, seed=0):
        x = train.double().numpy()
        self.mu, self.sigma = x.mean(0), x.std(0) * self.config.shrink

    def sample(self, n, seed=0):
        rng = np.random.default_rng(seed)
        return (self.mu + self.sigma * rng.standard_normal((n, 2))).astype(np.float32)

    def log_prob(self, x):
        x = x.double().numpy()
        return torch.from_numpy((-0.5 * ((x - self.mu) / self.sigma) ** 2 - np.log(self.sigma)
                                 - 0.5 * math.log(2 * math.pi)).sum(1))

    def state_dict(self):
        return {"mu": self.mu.tolist(), "sigma": self.sigma.tolist()}

    def load_state_dict(self, d):
        self.mu, self.sigma = np.array(d["mu"]), np.array(d["sigma"])


class _Broken:
    def __init__(self, info, kind):
        self.info, self.kind = info, kind

    def sample(self, n, seed=0):
        if self.kind == "nan":
            x = torch.zeros(n, 2)
            x[::3] = float("nan")
            return x
        if self.kind == "shape":
            return torch.zeros(n, 3)
        if self.kind == "int":
            return torch.zeros(n, 2, dtype=torch.int64)
        return 100.0 * ring8_mode(0).expand(n, 2).clone()  # "scaled": far outside the value range


def nan_sampler(info):
    return _Broken(info, "nan")


def wrong_shape(info):
    return _Broken(info, "shape")


def int_sampler(info):
    return _Broken(info, "int")


def scaled_sampler(info):
    return _Broken(info, "scaled")


for _f in (nan_sampler, wrong_shape, int_sampler, scaled_sampler):
    _f.modalities = ("points",)
