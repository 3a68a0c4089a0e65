"""Small shared building blocks for the reference models: MLPs, DCGAN-style conv encoders/decoders, a data
scaler, the training-budget helpers (steps / seconds / callbacks) and a cheap Frechet distance.

The networks know nothing about the generative family that uses them (as in lucidrains' diffusion code):
`gan.py` and `vae.py` wrap them with their losses and samplers.

Image nets handle any (C, H, W) with H and W divisible by 4 (28x28, 32x32, 8x8): two stride-2 stages take
H -> H/2 -> H/4 and back.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any, Iterable, Optional

import torch
from torch import nn

from genbench.data.base import DatasetInfo
from genbench.errors import InvalidInputError
from genbench.models.precision import cpu_native_bf16, precision_label, uses_bf16  # noqa: F401  (re-exported)


# ---------------------------------------------------------------------------------------------- networks
def mlp(in_dim: int, out_dim: int, hidden: int = 256, depth: int = 3, act: type = nn.SiLU) -> nn.Sequential:
    """`depth` hidden layers of width `hidden` with activation `act`, then a linear output layer."""
    layers: list[nn.Module] = []
    d = in_dim
    for _ in range(depth):
        layers += [nn.Linear(d, hidden), act()]
        d = hidden
    layers.append(nn.Linear(d, out_dim))
    return nn.Sequential(*layers)


def check_image_shape(info: DatasetInfo) -> tuple[int, int, int]:
    if info.modality != "image" or len(info.shape) != 3:
        raise InvalidInputError(f"dataset {info.name!r}: expected image items shaped (C, H, W), got {info.shape}")
    c, h, w = (int(s) for s in info.shape)
    if h % 4 or w % 4:
        raise InvalidInputError(
            f"dataset {info.name!r}: image size {h}x{w} is not divisible by 4; the conv reference models "
            "downsample twice by 2 (28x28, 32x32 and 8x8 work): pad or resize the images"
        )
    return c, h, w


class ConvEncoder(nn.Module):
    """(N, C, H, W) -> (N, out_dim): two stride-2 4x4 convs (H -> H/2 -> H/4) then a linear head (the DCGAN
    discriminator trunk). `norm` "batch" for encoders and DCGAN discriminators, "none" for WGAN-GP critics
    (the gradient penalty needs per-example gradients)."""

    def __init__(self, in_ch: int, h: int, w: int, out_dim: int, ch: int = 64, norm: str = "batch"):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_ch, ch, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(ch, 2 * ch, 4, 2, 1), nn.BatchNorm2d(2 * ch) if norm == "batch" else nn.Identity(), nn.LeakyReLU(0.2),
        )
        self.head = nn.Linear(2 * ch * (h // 4) * (w // 4), out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.net(x).flatten(1))


class ConvDecoder(nn.Module):
    """(N, z_dim) -> (N, out_ch, H, W): linear to (2ch, H/4, W/4), then two stride-2 4x4 transposed convs
    (the DCGAN generator). Output is unbounded: the caller applies tanh or reads likelihood parameters."""

    def __init__(self, z_dim: int, out_ch: int, h: int, w: int, ch: int = 64):
        super().__init__()
        n0 = 2 * ch * (h // 4) * (w // 4)
        self.shape0 = (2 * ch, h // 4, w // 4)
        self.fc = nn.Sequential(nn.Linear(z_dim, n0), nn.BatchNorm1d(n0), nn.ReLU())
        self.net = nn.Sequential(
            nn.ConvTranspose2d(2 * ch, ch, 4, 2, 1), nn.BatchNorm2d(ch), nn.ReLU(),
            nn.ConvTranspose2d(ch, out_ch, 4, 2, 1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.fc(z).view(-1, *self.shape0))


class Scaler(nn.Module):
    """Per-coordinate standardisation of points, fitted once on the training data and saved as buffers."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    @torch.no_grad()
    def fit(self, x: torch.Tensor) -> "Scaler":
        self.mean.copy_(x.mean(0))
        self.std.copy_(x.std(0).clamp_min(1e-6))
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.std + self.mean

    def log_abs_det(self) -> torch.Tensor:
        """log |d forward / dx| summed over coordinates (add it to a density of the scaled data)."""
        return -torch.log(self.std).sum()


class RandomFeatures(nn.Module):
    """A fixed, randomly initialised conv net (seeded, never trained, not saved): cheap deterministic image
    features for checkpoint selection. Not a protocol feature extractor: use genbench.features for scores."""

    def __init__(self, c: int, h: int, w: int, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w1 = nn.Parameter(torch.randn(32, c, 3, 3, generator=g) / math.sqrt(9 * c), requires_grad=False)
        self.w2 = nn.Parameter(torch.randn(64, 32, 3, 3, generator=g) / math.sqrt(9 * 32), requires_grad=False)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x in [0, 1]
        y = torch.relu(nn.functional.conv2d(x * 2 - 1, self.w1.to(x), stride=2, padding=1))
        y = torch.relu(nn.functional.conv2d(y, self.w2.to(x), stride=2, padding=1))
        return torch.cat([y.mean((2, 3)), nn.functional.adaptive_avg_pool2d(y, 2).flatten(1)], 1)  # 64 + 256


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """FD between Gaussians fitted to feature sets a, b (float64; symmetric route via sqrt(S1) S2 sqrt(S1))."""
    a, b = a.double(), b.double()
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = torch.cov(a.T).reshape(a.shape[1], -1), torch.cov(b.T).reshape(b.shape[1], -1)
    ev, evec = torch.linalg.eigh(s1)
    r1 = (evec * ev.clamp_min(0).sqrt()) @ evec.T
    m = r1 @ s2 @ r1
    tr_sqrt = torch.linalg.eigvalsh((m + m.T) / 2).clamp_min(0).sqrt().sum()
    return float(((mu1 - mu2) ** 2).sum() + s1.trace() + s2.trace() - 2 * tr_sqrt)


def knn_coverage(real: torch.Tensor, fake: torch.Tensor, k: int = 5) -> float:
    """Share of real points whose nearest fake point lies within the real point's k-NN radius (Naeem et al.)."""
    real, fake = real.double(), fake.double()
    d_rr = torch.cdist(real, real)
    radius = d_rr.kthvalue(k + 1, dim=1).values  # +1: skip the point itself
    nearest_fake = torch.cdist(real, fake).min(1).values
    return float((nearest_fake <= radius).double().mean())


# ---------------------------------------------------------------------------------------------- training helpers
def reset_parameters(*modules: nn.Module) -> None:
    """Re-draw every layer's initial weights from torch's global RNG: `fit(seed)` calls it right after
    `torch.manual_seed(seed)` so the initialisation, too, depends only on the seed."""
    for module in modules:
        for m in module.modules():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
            if hasattr(m, "reset_running_stats"):
                m.reset_running_stats()


def apply_budget(config, budget: Optional[str], info: DatasetInfo):
    """`fit(budget=...)`: replace the config's step/time budget by that budget's defaults (others kept)."""
    if budget is not None:
        d = type(config).for_budget(budget, info)
        config.steps, config.max_seconds = d.steps, d.max_seconds
    return config


def check_train(train: torch.Tensor, info: DatasetInfo, min_items: int = 2) -> torch.Tensor:
    if not isinstance(train, torch.Tensor):
        raise InvalidInputError(f"train must be a torch.Tensor shaped (N, *{tuple(info.shape)}), got {type(train).__name__}")
    if tuple(train.shape[1:]) != tuple(info.shape):
        raise InvalidInputError(f"train items are shaped {tuple(train.shape[1:])}; the model was built for {info.name!r} items shaped {tuple(info.shape)}")
    if train.shape[0] < min_items:
        raise InvalidInputError(f"need at least {min_items} training items, got {train.shape[0]}")
    if not torch.isfinite(train).all():
        raise InvalidInputError("train holds NaN or infinite values")
    return train.float()



def start_fit(model, train: torch.Tensor, budget: Optional[str], seed: int, device) -> tuple[Any, torch.Tensor, torch.Generator]:
    """The shared start of a network model's `fit`: the budget applied to its config, the training tensor checked,
    the networks built from `seed` (`model._build(seed)`), the global RNG seeded (dropout), a data-order generator
    seeded, the model moved to `device`. Returns (config, train as float32, generator)."""
    cfg = apply_budget(model.config, budget, model.info)
    train = check_train(train, model.info)
    model._build(seed)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model.to(device)
    return cfg, train, gen

class TrainLoop:
    """Counts steps against `config.steps` and `config.max_seconds`, runs callbacks (a callback returning "stop"
    ends training) and logs into a FitHistory every `log_every` steps (and at the last step)."""

    def __init__(self, config, history, callbacks: Iterable, log_every: int = 50):
        self.steps = int(config.steps)
        self.max_seconds = config.max_seconds
        self.history = history
        self.callbacks = list(callbacks or ())
        self.log_every = max(1, int(log_every))
        self.t0 = time.perf_counter()
        self.stopped_by = "steps"

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def __iter__(self):
        for step in range(1, self.steps + 1):
            yield step
            self.history.steps = step
            if self.stopped_by != "steps":
                break
            if self.max_seconds is not None and self.elapsed() >= self.max_seconds:
                self.stopped_by = "max_seconds"
                break
        self.history.seconds = self.elapsed()

    def end_step(self, step: int, force: bool = False, **logs: float) -> None:
        """Call once per step with that step's scalars (at least loss); logs and runs the callbacks every
        `log_every` steps, at the first and last step, and when `force` (e.g. an evaluation happened)."""
        self.last_logs = logs
        if force or step % self.log_every == 0 or step == self.steps or step == 1:
            self._emit(step, logs)

    def _emit(self, step: int, logs: dict) -> None:
        rec = self.history.log(step, seconds=self.elapsed(), **logs)
        for cb in self.callbacks:
            if cb(step, dict(rec)) == "stop":
                self.stopped_by = "callback"

    def finish(self) -> None:
        """After the loop: log the final step if a time/callback stop left it unlogged; note why training ended."""
        s = self.history.steps
        if s and (not self.history.records or self.history.records[-1]["step"] != s) and getattr(self, "last_logs", None):
            self.history.log(s, seconds=self.elapsed(), **self.last_logs)
        if self.history.records:
            self.history.records[-1]["stopped_by"] = self.stopped_by


def autocast(device: torch.device, enabled: bool = True, cpu_bf16: bool = False, cache_enabled: bool = True):
    """bf16 autocast on CUDA, and on CPU when opted in and native (see `uses_bf16`); otherwise float32. On one
    machine both are deterministic (same seed, same numbers); bf16 results differ from float32 ones.
    `cache_enabled=False` for CUDA graph capture (a cached weight cast would be freed when the context exits)."""
    if uses_bf16(device, enabled, cpu_bf16):
        return torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=cache_enabled)
    return contextlib.nullcontext()


def adam(params, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """Adam with the fused kernel where torch has one for the parameters' device (same update rule; on a CPU it is
    several times cheaper than the per-tensor loop for the many small tensors of a model), else the plain one."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


def batch_indices(n: int, batch_size: int, generator: torch.Generator) -> torch.Tensor:
    """`batch_size` random item indices (with replacement) from `generator`."""
    return torch.randint(0, n, (batch_size,), generator=generator)
