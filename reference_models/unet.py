"""Noise-prediction networks for `diffusion.py`: they know nothing about diffusion, only map (x_t, t) -> a tensor
shaped like x_t (the predicted noise).

- `UNet` (images): DDPM-style (Ho et al. 2020) without attention, small enough for CPU: a sinusoidal time
  embedding fed to every residual block (GroupNorm, SiLU, 3x3 convs), `len(ch_mult)` resolutions joined by
  stride-2 convs down and nearest-upsample + conv up, skip connections from every down block to the matching up
  block. Sizes H -> H/2 -> H/4 for three levels (28x28 -> 14 -> 7, 32x32 -> 16 -> 8, 8x8 -> 4 -> 2).
  `patch` = p > 1 first folds each p x p pixel patch into channels (space-to-depth, "pixel unshuffle": 28x28x1
  -> 14x14x4 for p = 2) and unfolds the output the same way, so every convolution runs on (H/p) x (W/p): about
  p^2 times cheaper, at the cost of fine detail (the CPU `quick` config uses it).
  `num_classes` = K > 0 makes it class-conditional (classifier-free guidance, `cfg_diffusion.py`): a learned
  embedding of the label y in 0..K-1, or of the null label K ("no condition"), is added to the time embedding.
- `MLPDenoiser` (points): the time embedding added to the first layer of a residual MLP.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps t (N,) -> (N, dim) (Transformer positions)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    return F.pad(emb, (0, dim % 2))


def _groups(ch: int) -> int:
    return math.gcd(ch, 8)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, temb_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(cin), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.temb = nn.Linear(temb_dim, cout)
        self.norm2 = nn.GroupNorm(_groups(cout), cout)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        nn.init.zeros_(self.conv2.weight), nn.init.zeros_(self.conv2.bias)  # each block starts as the identity
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.temb(F.silu(temb))[:, :, None, None]
        h = self.conv2(self.drop(F.silu(self.norm2(h))))
        return self.skip(x) + h


class UNet(nn.Module):
    def __init__(self, in_ch: int, ch: int = 32, ch_mult: tuple = (1, 2, 2), num_res_blocks: int = 1, dropout: float = 0.0,
                 patch: int = 1, num_classes: int = 0):
        super().__init__()
        self.ch = ch
        self.num_classes = int(num_classes)
        self.patch = int(patch)
        if self.patch < 1:
            raise ValueError(f"patch must be >= 1, got {patch}")
        in_ch = in_ch * self.patch**2  # channels after space-to-depth
        temb_dim = 4 * ch
        self.temb = nn.Sequential(nn.Linear(ch, temb_dim), nn.SiLU(), nn.Linear(temb_dim, temb_dim))
        if self.num_classes > 0:  # labels 0..K-1 and the null label K
            self.class_emb = nn.Embedding(self.num_classes + 1, temb_dim)
        self.conv_in = nn.Conv2d(in_ch, ch, 3, padding=1)
        self.down = nn.ModuleList()
        chans = [ch]  # channels of every skip tensor, in push order
        cur = ch
        for i, m in enumerate(ch_mult):
            for _ in range(num_res_blocks):
                self.down.append(ResBlock(cur, ch * m, temb_dim, dropout))
                cur = ch * m
                chans.append(cur)
            if i < len(ch_mult) - 1:
                self.down.append(nn.Conv2d(cur, cur, 3, stride=2, padding=1))
                chans.append(cur)
        self.mid = nn.ModuleList([ResBlock(cur, cur, temb_dim, dropout), ResBlock(cur, cur, temb_dim, dropout)])
        self.up = nn.ModuleList()
        for i, m in reversed(list(enumerate(ch_mult))):
            for _ in range(num_res_blocks + 1):
                self.up.append(ResBlock(cur + chans.pop(), ch * m, temb_dim, dropout))
                cur = ch * m
            if i > 0:
                self.up.append(nn.Conv2d(cur, cur, 3, padding=1))  # after a nearest x2 upsample
        self.norm_out = nn.GroupNorm(_groups(cur), cur)
        self.conv_out = nn.Conv2d(cur, in_ch, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight), nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """x (N, C, H, W), t (N,) timesteps, y (N,) labels (class-conditional nets only; None: the null label)."""
        temb = self.temb(timestep_embedding(t, self.ch))
        if self.num_classes > 0:
            if y is None:
                y = torch.full((x.shape[0],), self.num_classes, dtype=torch.long, device=x.device)
            temb = temb + self.class_emb(y)
        elif y is not None:
            raise ValueError("this UNet is unconditional (num_classes=0): it takes no labels")
        if self.patch > 1:
            if x.shape[-2] % self.patch or x.shape[-1] % self.patch:
                raise ValueError(f"image size {tuple(x.shape[-2:])} is not divisible by patch={self.patch}")
            x = F.pixel_unshuffle(x, self.patch)
        h = self.conv_in(x)
        hs = [h]
        for layer in self.down:
            h = layer(h, temb) if isinstance(layer, ResBlock) else layer(h)
            hs.append(h)
        for layer in self.mid:
            h = layer(h, temb)
        for layer in self.up:
            if isinstance(layer, ResBlock):
                h = layer(torch.cat([h, hs.pop()], 1), temb)
            else:
                skip_hw = hs[-1].shape[-2:]
                h = layer(F.interpolate(h, size=skip_hw, mode="nearest"))
        out = self.conv_out(F.silu(self.norm_out(h)))
        return F.pixel_shuffle(out, self.patch) if self.patch > 1 else out


class MLPDenoiser(nn.Module):
    """(x (N, d), t (N,)) -> (N, d): residual MLP with the time embedding added at the input layer.

    The coordinates enter with Fourier features sin/cos(2^k x), k < `x_freqs` (plain MLPs are slow to learn the
    sharp functions that narrow modes need near t = 0: "spectral bias", Tancik et al. 2020)."""

    def __init__(self, dim: int, hidden: int = 256, depth: int = 3, temb_dim: int = 64, x_freqs: int = 8):
        super().__init__()
        self.temb_dim = temb_dim
        self.register_buffer("freqs", 2.0 ** torch.arange(x_freqs, dtype=torch.float32))
        self.inp = nn.Linear(dim * (1 + 2 * x_freqs), hidden)
        self.temb = nn.Sequential(nn.Linear(temb_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.blocks = nn.ModuleList([nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
                                     for _ in range(depth)])
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        xf = (x[:, :, None] * self.freqs).flatten(1)
        h = self.inp(torch.cat([x, torch.sin(xf), torch.cos(xf)], 1)) + self.temb(timestep_embedding(t, self.temb_dim))
        for b in self.blocks:
            h = h + b(h)
        return self.out(h)
