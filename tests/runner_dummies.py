"""Tiny models for the runner tests (not test files themselves): a diagonal Gaussian that follows the model
contract exactly, a variant whose samples are NaN, one whose samples have the wrong shape, and one whose
training loss diverges. `register()` adds them to the model registry; `unregister()` removes them.

Subprocess tests import this module through `python -c "import runner_dummies; ..."` with tests/ on PYTHONPATH.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import nn

from genbench.models import MODELS, register_model
from genbench.models.base import LOG_PROB_EXACT, FitHistory, GenerativeModel, ModelConfig, image_log_prob_offset


@dataclass
class DummyConfig(ModelConfig):
    steps: int = 5
    sleep: float = 0.0  # seconds per training step (lets the kill test catch a run mid-way)
    jitter: float = 0.05  # seed-dependent perturbation of the fitted mean (different seeds, different numbers)


class DummyGauss(GenerativeModel):
    name = "dummy-gauss"
    family = "dummy"
    modalities = ("points", "image")
    log_prob_kind = LOG_PROB_EXACT
    Config = DummyConfig

    def __init__(self, config, info):
        super().__init__(config, info)
        self.net = nn.Module()
        self.net.mu = nn.Parameter(torch.zeros(info.dim))
        self.net.log_sigma = nn.Parameter(torch.zeros(info.dim))

    def modules(self):
        return {"net": self.net}

    def fit(self, train, budget=None, seed=0, device="cpu", callbacks=()):
        t0 = time.perf_counter()
        self.to(device)
        x = train.reshape(len(train), -1).double()
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            self.net.mu.copy_(x.mean(0) + self.config.jitter * torch.randn(x.shape[1], generator=g, dtype=torch.float64))
            self.net.log_sigma.copy_(x.std(0).clamp_min(1e-3).log())
        self.history = FitHistory()
        for step in range(1, self.config.steps + 1):
            if self.config.sleep:
                time.sleep(self.config.sleep)
            loss = self._loss(step)
            self.history.log(step, loss=loss)
            for cb in callbacks:
                if cb(step, {"loss": loss}) == "stop":
                    break
        self.history.steps = self.config.steps
        self.history.seconds = time.perf_counter() - t0
        return self.history

    def _loss(self, step: int) -> float:
        return 1.0 / step

    def _sample(self, n, generator):
        z = torch.randn(n, self.info.dim, generator=generator)
        x = self.net.mu.detach().cpu() + self.net.log_sigma.detach().cpu().exp() * z
        return x.reshape(n, *self.info.shape)

    def _log_prob(self, x):
        x = x.reshape(len(x), -1).double()
        mu, ls = self.net.mu.double(), self.net.log_sigma.double()
        lp = (-0.5 * ((x - mu) / ls.exp()) ** 2 - ls - 0.5 * math.log(2 * math.pi)).sum(1)
        if self.info.modality == "image":
            lp = lp - image_log_prob_offset(self.info)  # density on [0, 1] -> 8-bit log-probability
        return lp


class DummyNaN(DummyGauss):
    name = "dummy-nan"

    def _sample(self, n, generator):
        return torch.full((n, *self.info.shape), float("nan"))


class DummyBadShape(DummyGauss):
    name = "dummy-badshape"

    def _sample(self, n, generator):
        return torch.zeros(n, self.info.dim + 1)


class DummyDiverge(DummyGauss):
    name = "dummy-diverge"

    def _loss(self, step: int) -> float:
        return float("inf") if step >= 3 else 1.0


DUMMIES = (DummyGauss, DummyNaN, DummyBadShape, DummyDiverge)


def register() -> None:
    for cls in DUMMIES:
        if cls.name not in MODELS:
            register_model(cls)


def unregister() -> None:
    for cls in DUMMIES:
        MODELS._items.pop(cls.name, None)


def pid_reporting_job(item):
    """Job function for the executor tests: item = (name, seconds, pid_dir). Writes its worker's PID to
    pid_dir/name.pid, sleeps, returns the name."""
    import os
    from pathlib import Path

    name, seconds, pid_dir = item
    (Path(pid_dir) / f"{name}.pid").write_text(str(os.getpid()))
    time.sleep(seconds)
    return name
