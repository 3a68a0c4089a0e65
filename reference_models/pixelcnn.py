"""Gated PixelCNN (van den Oord et al. 2016, "Conditional Image Generation with PixelCNN Decoders"): an
autoregressive model of 8-bit images with an exact likelihood,

    p(x) = prod_i prod_c p(x_{i,c} | x_{<i}, x_{i,<c})        pixels i in raster order, channels c = R, G, B,

each factor a 256-way softmax. log_prob is the exact log-probability of the discrete image (nats); bits/dim =
-log_prob / (D ln 2).

Causality without the blind spot of the original masked-conv PixelCNN comes from two stacks per layer:
- the *vertical* stack: convs with kernel (k//2 + 1, k) over the rows above and the current row (padding on top
  only); its output is shifted down one row before it feeds the horizontal stack, so row i sees rows < i;
- the *horizontal* stack: convs with kernel (1, k//2 + 1) over the current row to the left, plus the shifted
  vertical features. In the first layer (mask "A") the horizontal input is shifted right one pixel, so pixel i
  never sees itself; later layers (mask "B") may see position i, which then only holds information about < i.
Both use the gated activation tanh(a) * sigmoid(b); the horizontal stack has residual connections.
RGB: the trunk sees only earlier pixels; the softmax head of channel c also gets the current pixel's channels < c
(through a 1x1 conv), so the model is fully channel-autoregressive (R, then G | R, then B | R, G).

Sampling draws pixel by pixel (nfe_per_sample = H * W trunk evaluations: the slow sampler), batched over
samples and *incremental*: after a row is complete the vertical stack is advanced by that one row, and each pixel
only recomputes one column of the horizontal stack, from cached per-layer activations (the same arithmetic as
the full network, about H*W times less work than re-running the network per pixel). `_sample_naive` re-runs the
full network per pixel; the tests check that both give the same samples.

Training minimises the exact NLL (nats/dim) with Adam and a cosine lr decay; on a CPU the convs run channels-last
and the 1x1 output convs as matrix products with the 256-way softmax on the last axis (`logits_last`, tested equal
to `forward`). The quick config (kernel 5, batch 8, 550 steps) is sized to ~80 CPU-s with sampling of 1000 images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from genbench.data.base import DatasetInfo
from genbench.errors import InvalidInputError
from reference_models import register_model
from reference_models.base import LOG_PROB_EXACT, GenerativeModel, ModelConfig, check_budget
from reference_models.nets import TrainLoop, apply_budget, autocast, batch_indices, check_train


def gate(h: torch.Tensor) -> torch.Tensor:
    a, b = h.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


def down_shift(x: torch.Tensor) -> torch.Tensor:
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1, :]


def right_shift(x: torch.Tensor) -> torch.Tensor:
    return F.pad(x, (1, 0, 0, 0))[:, :, :, :-1]


class GatedLayer(nn.Module):
    """One gated PixelCNN layer (vertical + horizontal stacks). `first`: mask "A" (no residual, input shifted)."""

    def __init__(self, cin: int, ch: int, k: int, first: bool):
        super().__init__()
        self.p = k // 2
        self.first = first
        self.vconv = nn.Conv2d(cin, 2 * ch, (self.p + 1, k))  # padded by the caller: top p, left p, right p
        self.hconv = nn.Conv2d(cin, 2 * ch, (1, self.p + 1))  # padded by the caller: left p
        self.v2h = nn.Conv2d(2 * ch, 2 * ch, 1)
        self.hout = nn.Conv2d(ch, ch, 1)

    def forward(self, v: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.p
        v_pre = self.vconv(F.pad(v, (p, p, p, 0)))
        h_in = right_shift(h) if self.first else h
        h_pre = self.hconv(F.pad(h_in, (p, 0, 0, 0))) + self.v2h(down_shift(v_pre))
        h_out = self.hout(gate(h_pre))
        return gate(v_pre), h_out if self.first else h + h_out


def _conv_as_matrix(w: torch.Tensor) -> torch.Tensor:
    """1x1 conv weight (Cout, Cin, 1, 1) -> the (Cout, Cin) matrix of the same map on channels-last inputs."""
    return w.flatten(1)


class GatedPixelCNN(nn.Module):
    """(N, C, H, W) image in [-1, 1] -> logits (N, C, 256, H, W); the logits of (i, c) depend on pixels < i
    and on channels < c of pixel i only."""

    def __init__(self, c: int, ch: int, n_layers: int, k: int, hidden: int):
        super().__init__()
        self.c = c
        self.layers = nn.ModuleList([GatedLayer(c if i == 0 else ch, ch, k, first=(i == 0)) for i in range(n_layers)])
        self.out = nn.Conv2d(ch, hidden, 1)
        self.ctx = nn.ModuleList([nn.Conv2d(i, hidden, 1) for i in range(1, c)])  # current pixel's channels < c
        self.heads = nn.ModuleList([nn.Conv2d(hidden, 256, 1) for _ in range(c)])

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        v = h = x
        for layer in self.layers:
            v, h = layer(v, h)
        return self.out(F.relu(h))

    def head(self, f: torch.Tensor, x: torch.Tensor, c: int) -> torch.Tensor:
        """Logits (N, 256, ...) of channel c from trunk features f and the current pixel's channels x[:, :c]."""
        if c > 0:
            f = f + self.ctx[c - 1](x[:, :c])
        return self.heads[c](F.relu(f))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.trunk(x)
        return torch.stack([self.head(f, x, c) for c in range(self.c)], 1)

    def logits_last(self, x: torch.Tensor) -> torch.Tensor:
        """The same logits as `forward`, laid out (N, H, W, C, 256): the 1x1 output convs run as matrix products
        over channels-last features and the softmax axis is contiguous (cheaper on a CPU for training and log_prob;
        `forward` and the incremental sampler use the conv modules themselves)."""
        v = h = x
        for layer in self.layers:
            v, h = layer(v, h)
        f = F.linear(F.relu(h.permute(0, 2, 3, 1)), _conv_as_matrix(self.out.weight), self.out.bias)
        xl = x.permute(0, 2, 3, 1)
        outs = []
        for c in range(self.c):
            g = f if c == 0 else f + F.linear(xl[..., :c], _conv_as_matrix(self.ctx[c - 1].weight), self.ctx[c - 1].bias)
            outs.append(F.linear(F.relu(g), _conv_as_matrix(self.heads[c].weight), self.heads[c].bias))
        return torch.stack(outs, 3)


# ---------------------------------------------------------------------------------------------- the model
@dataclass
class PixelCNNConfig(ModelConfig):
    steps: int = 20000
    batch_size: int = 32
    lr: float = 1e-3
    ch: int = 32  # channels of both stacks
    n_layers: int = 6
    kernel: int = 3  # k of the (k//2+1, k) vertical and (1, k//2+1) horizontal kernels
    hidden: int = 64  # width of the output 1x1 convs
    lr_final: float = 0.05
    grad_clip: float = 10.0
    log_every: int = 50
    mixed_precision: bool = True  # bf16 autocast for training/log_prob on CUDA only (sampling runs in float32)

    @classmethod
    def for_budget(cls, budget: str, info: DatasetInfo) -> "PixelCNNConfig":
        check_budget(budget)
        _image_shape(info)
        return {
            "smoke": cls(steps=4, batch_size=8, ch=8, n_layers=2, hidden=16),
            # ~63 CPU-s training + ~13 CPU-s sampling 1000 28x28 images (1 thread); kernel 5 for a wider context
            "quick": cls(steps=550, batch_size=8, ch=32, n_layers=5, kernel=5, hidden=64, lr=2e-3),
            "standard": cls(steps=60000, batch_size=64, ch=128, n_layers=12, kernel=5, hidden=256, lr=5e-4),
        }[budget]


def _image_shape(info: DatasetInfo) -> tuple[int, int, int]:
    if info.modality != "image" or len(info.shape) != 3:
        raise InvalidInputError(f"pixelcnn models images; dataset {info.name!r} has {info.modality} items shaped {info.shape}")
    return tuple(int(s) for s in info.shape)


@register_model
class PixelCNN(GenerativeModel):
    name = "pixelcnn"
    family = "autoregressive"
    modalities = ("image",)
    log_prob_kind = LOG_PROB_EXACT
    Config = PixelCNNConfig

    def __init__(self, config: PixelCNNConfig, info: DatasetInfo):
        super().__init__(config, info)
        _image_shape(info)
        self._build(seed=0)

    def _build(self, seed: int) -> None:
        """A fresh network with weights initialised from `seed` (fit rebuilds it: same seed, same model)."""
        cfg = self.config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = GatedPixelCNN(self.info.shape[0], cfg.ch, cfg.n_layers, cfg.kernel, cfg.hidden)

    def modules(self) -> dict[str, nn.Module]:
        return {"net": self.net}

    @property
    def nfe_per_sample(self) -> float:
        return float(self.info.shape[1] * self.info.shape[2])

    @staticmethod
    def _levels(x: torch.Tensor) -> torch.Tensor:
        return torch.round(x.float() * 255).clamp(0, 255).long()

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        with autocast(self.device, self.config.mixed_precision):
            return self.net(x * 2 - 1).float()

    def _nll(self, x: torch.Tensor) -> torch.Tensor:
        """-log p(x) per example (nats)."""
        with autocast(self.device, self.config.mixed_precision):
            logits = self.net.logits_last(x * 2 - 1).float()  # (N, H, W, C, 256)
        levels = self._levels(x).permute(0, 2, 3, 1)  # (N, H, W, C)
        ce = F.cross_entropy(logits.reshape(-1, 256), levels.reshape(-1), reduction="none")
        return ce.view(x.shape[0], -1).sum(1)

    # ---- training ---------------------------------------------------------------------------------------------
    def fit(self, train, budget=None, seed=0, device="cpu", callbacks=()):
        cfg = apply_budget(self.config, budget, self.info)
        train = check_train(train, self.info)
        self._build(seed)
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        self.to(device)
        dev = self.device
        # channels-last convs: faster with cuDNN and (~8%) with oneDNN on a CPU
        data = train.to(dev).contiguous(memory_format=torch.channels_last)
        self.net.to(memory_format=torch.channels_last)
        opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr)
        total = max(1, cfg.steps)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: cfg.lr_final + (1 - cfg.lr_final) * 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
        self.net.train()
        D = self.info.dim
        loop = TrainLoop(cfg, self.history, callbacks, cfg.log_every)
        for step in loop:
            x = data[batch_indices(len(data), cfg.batch_size, gen).to(dev)]
            loss = self._nll(x).mean() / D  # nats per dimension
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            loop.end_step(step, loss=float(loss.detach()), bpd=float(loss.detach()) / math.log(2))
        loop.finish()
        self.net.to(memory_format=torch.contiguous_format)  # evaluate as a loaded model does: identical numbers
        self.net.eval()
        return self.history

    # ---- likelihood -------------------------------------------------------------------------------------------
    def log_prob(self, x: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
        self.net.eval()
        return super().log_prob(x, batch_size)

    def _log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return -self._nll(x).double()

    # ---- sampling ---------------------------------------------------------------------------------------------
    @staticmethod
    def _draw(logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One level per row of logits (N, 256) by inverse-CDF with a uniform from `generator` (CPU)."""
        probs = torch.softmax(logits.double().cpu(), dim=1)
        u = torch.rand(probs.shape[0], generator=generator, dtype=torch.float64)
        return (torch.cumsum(probs, 1) < u[:, None]).sum(1).clamp(max=255)

    def _sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        self.net.eval()
        x, _ = self._autoregress(n, lambda logits, r, j, c: self._draw(logits, generator))
        return x

    @torch.no_grad()
    def _autoregress(self, n: int, pick: Callable, record: bool = False) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """The incremental sampler. `pick(logits (n, 256), row, col, channel) -> levels (n,)` chooses each value
        (a random draw when sampling, the data's value for a teacher-forced check). Returns x in [0, 1] and, with
        `record`, the logits of every position (n, C, 256, H, W)."""
        net, dev = self.net, self.device
        C, H, W = _image_shape(self.info)
        layers = net.layers
        p = layers[0].p
        chans = [C] + [layer.hout.out_channels for layer in layers]
        x = torch.zeros(n, C, H, W, device=dev)  # values in [-1, 1] as the network sees them
        # vertical-stack inputs, padded: image row q lives at row q + p, column j at column j + p
        vpad = [torch.zeros(n, chans[i], H + p, W + 2 * p, device=dev) for i in range(len(layers))]
        rec = torch.zeros(n, C, 256, H, W) if record else None
        for r in range(H):
            # 1. the shifted vertical contribution for row r: vertical pre-activations of row r - 1
            if r == 0:
                d = [layer.v2h(torch.zeros(n, layer.v2h.in_channels, 1, W, device=dev)) for layer in layers]
            else:
                vpad[0][:, :, r - 1 + p, p:p + W] = x[:, :, r - 1]
                d = []
                for i, layer in enumerate(layers):
                    v_pre = layer.vconv(vpad[i][:, :, r - 1:r + p, :])  # rows r-1-p .. r-1  -> (n, 2ch, 1, W)
                    d.append(layer.v2h(v_pre))
                    if i + 1 < len(layers):
                        vpad[i + 1][:, :, r - 1 + p, p:p + W] = gate(v_pre)[:, :, 0]
            # 2. the row, pixel by pixel: horizontal inputs padded on the left (layer 0 one more: mask A shift)
            hpad = [torch.zeros(n, C, 1, W + p + 1, device=dev)] + [torch.zeros(n, chans[i + 1], 1, W + p, device=dev)
                                                                    for i in range(len(layers))]
            for j in range(W):
                for i, layer in enumerate(layers):
                    h_pre = layer.hconv(hpad[i][:, :, :, j:j + p + 1]) + d[i][:, :, :, j:j + 1]
                    h_out = layer.hout(gate(h_pre))
                    if not layer.first:
                        h_out = h_out + hpad[i][:, :, :, j + p:j + p + 1]
                    hpad[i + 1][:, :, :, j + p:j + p + 1] = h_out
                f = net.out(F.relu(hpad[-1][:, :, :, j + p:j + p + 1]))
                for c in range(C):
                    logits = net.head(f, x[:, :, r:r + 1, j:j + 1], c)[:, :, 0, 0]
                    if record:
                        rec[:, c, :, r, j] = logits.float().cpu()
                    k = pick(logits, r, j, c).to(dev)
                    x[:, c, r, j] = k.float() / 127.5 - 1
                    hpad[0][:, c, 0, j + p + 1] = x[:, c, r, j]
        return (x + 1) / 2, rec

    @torch.no_grad()
    def _sample_naive(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Reference sampler: the full network re-run for every pixel and channel (H*W*C passes). Same draws, in
        the same order, as `_sample`; used by the tests to check the incremental sampler."""
        self.net.eval()
        C, H, W = _image_shape(self.info)
        x = torch.zeros(n, C, H, W, device=self.device)
        for r in range(H):
            for j in range(W):
                for c in range(C):
                    logits = self.net(x)[:, c, :, r, j]
                    x[:, c, r, j] = self._draw(logits, generator).to(self.device).float() / 127.5 - 1
        return (x + 1) / 2
