"""The Glow image flow (Kingma & Dhariwal 2018) of reference_models/flow.py's `image_arch="glow"`: per level a
squeeze, steps of [ActNorm, invertible 1x1 convolution, affine channel coupling], a learned prior for the half that
leaves, and MLP couplings over the flattened coarse latent on top. See flow.py's docstring.
"""

from __future__ import annotations

import torch
from torch import nn

from reference_models.flow_layers import ActNorm, Sequence, _at_least_f32, squeeze, unsqueeze
from reference_models.nets import mlp



class InvConv1x1(nn.Module):
    """Glow's invertible 1x1 convolution: y[:, i] = sum_j W_ij x[:, j] at every position, W initialised to a random
    rotation (seeded by the caller's RNG state) and learned; log|det| = H W log|det W|. Computed in the input's
    dtype with autocast off (so bf16 training never rounds the flow's own values, only the coupling nets)."""

    def __init__(self, c: int):
        super().__init__()
        q, _ = torch.linalg.qr(torch.randn(c, c))
        self.weight = nn.Parameter(q)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(x.device.type, enabled=False):
            w = self.weight.to(x.dtype)
            ld = torch.linalg.slogdet(w).logabsdet * (x.shape[2] * x.shape[3])
            return torch.einsum("ij,njhw->nihw", w, x), ld.expand(x.shape[0])

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        w_inv = torch.linalg.inv(self.weight.double()).to(y.dtype)
        return torch.einsum("ij,njhw->nihw", w_inv, y)


class GlowNet(nn.Module):
    """Glow's coupling network: 3x3 conv, ReLU, 1x1 conv, ReLU, zero-initialised 3x3 conv (identity at start)."""

    def __init__(self, cin: int, cout: int, ch: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(cin, ch, 3, padding=1), nn.ReLU(), nn.Conv2d(ch, ch, 1), nn.ReLU())
        self.out = nn.Conv2d(ch, cout, 3, padding=1)
        nn.init.zeros_(self.out.weight), nn.init.zeros_(self.out.bias)

    def forward(self, x):
        # channels-last: the CPU conv kernels (oneDNN) are ~1.5-2x faster for these few channels (measured; on CUDA
        # the mixed-precision path uses channels-last too)
        return self.out(self.body(x.contiguous(memory_format=torch.channels_last)))


class ChannelCoupling(nn.Module):
    """Affine coupling on channel halves written with slices (no masks): x = [x_a, x_b] (x_a: the first c // 2
    channels), y_b = x_b * exp(s) + t with (s, t) = net(x_a), s = scale * tanh(raw). Used after a 1x1 conv, which
    decides what the halves hold; as the last step of a level it is Glow's learned prior of the half that leaves
    (x_b) given the half that stays."""

    def __init__(self, c: int, ch: int):
        super().__init__()
        self.ca = c // 2
        self.net = GlowNet(self.ca, 2 * (c - self.ca), ch)
        self.scale = nn.Parameter(torch.ones(1, c - self.ca, 1, 1))

    def _st(self, xa: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raw_s, t = _at_least_f32(self.net(xa)).chunk(2, dim=1)
        return self.scale * torch.tanh(raw_s), t

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xa, xb = x[:, : self.ca], x[:, self.ca:]
        s, t = self._st(xa)
        return torch.cat([xa, xb * torch.exp(s) + t], 1), s.flatten(1).sum(1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        ya, yb = y[:, : self.ca], y[:, self.ca:]
        s, t = self._st(ya)
        return torch.cat([ya, (yb - t) * torch.exp(-s)], 1)


class VectorCoupling(nn.Module):
    """Affine coupling on flat vectors (N, D): the even (parity 0) or odd coordinates condition the others through
    an MLP, y_b = x_b * exp(s) + t, s = scale * tanh(raw); the last layer starts at zero (identity)."""

    def __init__(self, dim: int, parity: int, hidden: int, depth: int):
        super().__init__()
        keep = [j for j in range(dim) if j % 2 == parity]
        change = [j for j in range(dim) if j % 2 != parity]
        self.register_buffer("keep", torch.tensor(keep))
        self.register_buffer("change", torch.tensor(change))
        self.register_buffer("order", torch.argsort(torch.tensor(keep + change)))  # [x_keep, y_b] -> y
        self.net = mlp(len(keep), 2 * len(change), hidden, depth, act=nn.ReLU)
        nn.init.zeros_(self.net[-1].weight), nn.init.zeros_(self.net[-1].bias)
        self.scale = nn.Parameter(torch.ones(1, len(change)))

    def _st(self, xa: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raw_s, t = _at_least_f32(self.net(xa)).chunk(2, dim=1)
        return self.scale * torch.tanh(raw_s), t

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xa = x[:, self.keep]
        s, t = self._st(xa)
        return torch.cat([xa, x[:, self.change] * torch.exp(s) + t], 1)[:, self.order], s.sum(1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        ya = y[:, self.keep]
        s, t = self._st(ya)
        return torch.cat([ya, (y[:, self.change] - t) * torch.exp(-s)], 1)[:, self.order]


class Permutation(nn.Module):
    """A fixed random permutation of the coordinates of (N, D) vectors (seeded by the caller's RNG; log|det| = 0)."""

    def __init__(self, dim: int):
        super().__init__()
        perm = torch.randperm(dim)
        self.register_buffer("perm", perm)
        self.register_buffer("inv", torch.argsort(perm))

    def forward(self, x):
        return x[:, self.perm], None

    def inverse(self, y):
        return y[:, self.inv]


class GlowImageFlow(nn.Module):
    """Glow-style multi-scale flow with a global top (N, C, H, W) -> (z (N, D), log|det|):

        squeeze; per level: `steps` x [ActNorm, invertible 1x1 conv, channel coupling] and a prior coupling, then
        half of the channels leave to the Gaussian; the other half is squeezed for the next level. After the last
        level the kept half is flattened and goes through `top` x [fixed permutation, MLP coupling, ActNorm].

    The conv couplings model local structure; the MLP couplings see the whole coarse latent at once, which is what
    gives the samples a coherent global shape at a small budget (3x3 convs alone, at this depth, reach only part of
    the image). Needs H, W divisible by 2^levels."""

    def __init__(self, c: int, h: int, w: int, levels: int, steps: int, ch: int, top: int, top_hidden: int,
                 top_depth: int):
        super().__init__()
        self.levels = nn.ModuleList()
        self.shapes = []  # (C, H, W) of each level's input; the second half of its channels leaves at its end
        for _ in range(levels):
            c, h, w = 4 * c, h // 2, w // 2
            layers = []
            for _ in range(steps):
                layers += [ActNorm(c, 4), InvConv1x1(c), ChannelCoupling(c, ch)]
            layers.append(ChannelCoupling(c, ch))  # the prior of the half that leaves, given the half that stays
            self.levels.append(Sequence(layers))
            self.shapes.append((c, h, w))
            c = c // 2
        dim = c * h * w
        layers = []
        for i in range(top):
            layers += [Permutation(dim), VectorCoupling(dim, i % 2, top_hidden, top_depth), ActNorm(dim, 2)]
        self.top = Sequence(layers)

    def forward(self, x):
        zs, total = [], torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
        for level, (c, _, _) in zip(self.levels, self.shapes):
            x, ld = level(squeeze(x))
            total = total + ld
            zs.append(x[:, c // 2:].flatten(1))  # factor out half of the channels
            x = x[:, : c // 2]
        x, ld = self.top(x.flatten(1))
        return torch.cat(zs + [x], 1), total + ld

    def inverse(self, z):
        sizes = [(c - c // 2) * h * w for c, h, w in self.shapes]
        parts = list(torch.split(z, sizes + [z.shape[1] - sum(sizes)], dim=1))
        x = self.top.inverse(parts[-1])
        for level, (c, h, w), zp in reversed(list(zip(self.levels, self.shapes, parts))):
            x = torch.cat([x.reshape(-1, c // 2, h, w), zp.reshape(-1, c - c // 2, h, w)], 1)
            x = unsqueeze(level.inverse(x))
        return x
