"""Building blocks of the flows in reference_models/flow.py (RealNVP, Glow): the bijections (ActNorm, affine
coupling, LU-decomposed linear map, reversal, composition), the point-cloud flow and its coupling networks, the
ResNet that computes coupling scales and shifts, and the image reshapes (checkerboard masks, squeeze). Every
bijection returns (output, log|det Jacobian|) and has an exact inverse; see flow.py's docstring for the maths.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from genbench.errors import InvalidInputError
from reference_models.nets import mlp

LOG_2PI = math.log(2 * math.pi)


def _at_least_f32(x: torch.Tensor) -> torch.Tensor:
    """Undo autocast's bf16 outputs without downcasting float64 (used by the exactness tests)."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def std_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    return (-0.5 * (z**2 + LOG_2PI)).flatten(1).sum(1)


def warmup_cosine(step: int, total: int, warmup: int, final: float) -> float:
    """lr multiplier: linear warm-up over `warmup` steps, then cosine decay from 1 to `final` at `total` steps."""
    if step < warmup:
        return (step + 1) / warmup
    span = max(1, total - warmup)
    return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * min(step - warmup, span) / span))


# ---------------------------------------------------------------------------------------------- bijections
class ActNorm(nn.Module):
    """y = (x + bias) * exp(log_scale) per feature (dim 1); data-dependent init on the first training batch."""

    def __init__(self, num_features: int, ndim: int):
        super().__init__()
        shape = (1, num_features) + (1,) * (ndim - 2)
        self.bias = nn.Parameter(torch.zeros(shape))
        self.log_scale = nn.Parameter(torch.zeros(shape))
        self.register_buffer("initialized", torch.tensor(False))
        self.reduce = [0] + list(range(2, ndim))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training and not bool(self.initialized):
            with torch.no_grad():
                self.bias.copy_(-x.mean(self.reduce, keepdim=True))
                self.log_scale.copy_(-torch.log(x.std(self.reduce, keepdim=True).clamp_min(1e-6)))
                self.initialized.fill_(True)
        per_item = x[0].numel() // self.bias.numel()  # positions sharing each scale
        return (x + self.bias) * torch.exp(self.log_scale), self.log_scale.sum().expand(x.shape[0]) * per_item

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * torch.exp(-self.log_scale) - self.bias


class AffineCoupling(nn.Module):
    """y = mask * x + (1 - mask) * (x * exp(s) + t) with (s, t) = net(mask * x [, mask]).

    `mask` is a fixed 0/1 tensor broadcastable to x (points: per coordinate; images: checkerboard over (H, W) or
    half of the channels). With `mask_input` the net also receives the mask as an extra channel (images)."""

    def __init__(self, net: nn.Module, mask: torch.Tensor, num_features: int, mask_input: bool, ndim: int):
        super().__init__()
        self.net = net
        self.register_buffer("mask", mask)
        self.mask_input = mask_input
        self.scale = nn.Parameter(torch.ones((1, num_features) + (1,) * (ndim - 2)))

    def _st(self, x_masked: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        inp = x_masked
        if self.mask_input:
            inp = torch.cat([x_masked, self.mask.expand(x_masked.shape[0], 1, *x_masked.shape[2:])], 1)
        raw_s, t = _at_least_f32(self.net(inp)).chunk(2, dim=1)
        s = self.scale * torch.tanh(raw_s)
        keep = 1 - self.mask
        return s * keep, t * keep

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s, t = self._st(x * self.mask)
        return x * torch.exp(s) + t, s.flatten(1).sum(1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        s, t = self._st(y * self.mask)  # masked part is unchanged, so the net sees the same input
        return (y - t) * torch.exp(-s)


class LULinear(nn.Module):
    """A learned invertible linear map of (N, d) points, y = x W^T + b, with W = P L U in Glow's LU parametrisation
    (the "invertible 1x1 convolution" of Kingma & Dhariwal 2018, here on the coordinates): P a fixed permutation,
    L unit lower-triangular, U upper-triangular with diagonal sign * exp(log_diag). log|det W| = sum(log_diag),
    and W stays invertible whatever the parameters. Initialised at a random rotation (seeded; the LU factors of a
    random orthogonal matrix), so the layer starts volume-preserving and mixes the coordinates for the next
    coupling; training then learns which directions each coupling sees."""

    def __init__(self, dim: int, seed: int):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        q, r = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
        p, lower, upper = torch.linalg.lu(q * torch.sign(torch.diagonal(r)))
        diag = torch.diagonal(upper)
        self.register_buffer("p", p.float())
        self.register_buffer("sign", torch.sign(diag).float())
        self.register_buffer("l_mask", torch.tril(torch.ones(dim, dim), -1))
        self.register_buffer("eye", torch.eye(dim))
        self.lower = nn.Parameter(lower.float() * self.l_mask)
        self.upper = nn.Parameter(torch.triu(upper, 1).float())
        self.log_diag = nn.Parameter(torch.log(diag.abs()).float())
        self.bias = nn.Parameter(torch.zeros(1, dim))

    def weight(self) -> torch.Tensor:
        lower = self.lower * self.l_mask + self.eye
        upper = self.upper * self.l_mask.T + torch.diag(self.sign * torch.exp(self.log_diag))
        return self.p @ lower @ upper

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.addmm(self.bias, x, self.weight().T), self.log_diag.sum().expand(x.shape[0])

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        w_inv = torch.linalg.inv(self.weight().double()).to(y.dtype)
        return (y - self.bias) @ w_inv.T


class Reverse(nn.Module):
    """Reverses the order of the coordinates (a permutation: log|det| = 0), so that the next coupling changes the
    half that the previous one kept (the classic RealNVP alternation)."""

    def forward(self, x):
        return x.flip(1), None

    def inverse(self, y):
        return y.flip(1)


class Sequence(nn.Module):
    def __init__(self, layers):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x):
        total = torch.zeros(x.shape[0], device=x.device)
        for layer in self.layers:
            x, ld = layer(x)
            if ld is not None:  # None: volume-preserving layer
                total = total + ld
        return x, total

    def inverse(self, y):
        for layer in reversed(self.layers):
            y = layer.inverse(y)
        return y


# ---------------------------------------------------------------------------------------------- networks
class FourierFeatures(nn.Module):
    """x -> [x, sin(2^k x), cos(2^k x)], k < n (n = 0: x itself)."""

    def __init__(self, n: int):
        super().__init__()
        self.register_buffer("freqs", 2.0 ** torch.arange(n, dtype=torch.float32))

    def forward(self, x):
        if not len(self.freqs):
            return x
        f = self.freqs if self.freqs.dtype == x.dtype else self.freqs.to(x.dtype)
        xf = (x[:, :, None] * f).flatten(1)
        return torch.cat([x, torch.sin(xf), torch.cos(xf)], 1)


class PointCoupling(nn.Module):
    """Affine coupling for (N, d) points written with slices instead of masks (fewer ops per step, which is what a
    small MLP flow costs on a CPU): the first d // 2 coordinates x_a pass unchanged and condition the others,
    y_b = x_b * exp(s) + t, (s, t) = net(gain * features(x_a)), s = scale * tanh(raw). The net is a ReLU MLP (its
    kinks make step-like shifts cheap to learn: grid25 HQ 0.56 with SiLU -> 0.74 at equal steps); its last layer
    starts at zero (every coupling starts as the identity). `gain` > 1 steepens the net's input: the shifts t(x_a) that move
    mass into separate modes are step-like, and Adam changes each weight by about lr per step, so a slope of 10
    from a unit-scale input takes thousands of steps."""

    def __init__(self, dim: int, hidden: int, depth: int, x_freqs: int, gain: float = 1.0):
        super().__init__()
        if dim < 2:
            raise InvalidInputError(f"a coupling flow needs points with at least 2 coordinates, got {dim}")
        self.ka = dim // 2
        self.gain = float(gain)
        self.features = FourierFeatures(x_freqs)
        self.net = mlp(self.ka * (1 + 2 * x_freqs), 2 * (dim - self.ka), hidden, depth, act=nn.ReLU)
        nn.init.zeros_(self.net[-1].weight), nn.init.zeros_(self.net[-1].bias)
        self.scale = nn.Parameter(torch.ones(1, dim - self.ka))

    def _st(self, xa: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(xa)
        raw_s, t = self.net(h * self.gain if self.gain != 1.0 else h).chunk(2, dim=1)
        return self.scale * torch.tanh(raw_s), t

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xa = x[:, : self.ka]
        s, t = self._st(xa)
        return torch.cat([xa, x[:, self.ka:] * torch.exp(s) + t], 1), s.sum(1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        ya = y[:, : self.ka]
        s, t = self._st(ya)
        return torch.cat([ya, (y[:, self.ka:] - t) * torch.exp(-s)], 1)


class PointFlow(nn.Module):
    """Coupling stack for (N, d) points (already standardised): x -> (z, log|det dz/dx|), `n_layers` x [coupling,
    mixing]. mixing "lu": a learned invertible linear map (LULinear, Glow-style) after every coupling; "alternate":
    the classic RealNVP alternation (reverse the coordinates, ActNorm). In 2-D the alternation lets each coupling
    see only one of two fixed axes; a learned mixing lets it condition on any direction (what lets a few couplings
    carve several modes). With `x_freqs` > 0 the coupling MLPs see Fourier features of the kept coordinates."""

    def __init__(self, dim: int, n_layers: int, hidden: int, depth: int, x_freqs: int = 0, gain: float = 1.0,
                 mixing: str = "lu"):
        super().__init__()
        if mixing not in ("lu", "alternate"):
            raise InvalidInputError(f"points mixing must be 'lu' or 'alternate', got {mixing!r}")
        layers = []
        for i in range(n_layers):
            layers.append(PointCoupling(dim, hidden, depth, x_freqs, gain))
            layers += [LULinear(dim, seed=1000 + i)] if mixing == "lu" else [Reverse(), ActNorm(dim, 2)]
        self.flow = Sequence(layers)

    def forward(self, x):
        return self.flow(x)

    def inverse(self, z):
        return self.flow.inverse(z)


class ResNetST(nn.Module):
    """Coupling network for images: 3x3 conv in, `blocks` residual blocks, zero-initialised 3x3 conv out
    (so every coupling starts as the identity)."""

    def __init__(self, cin: int, cout: int, ch: int, blocks: int):
        super().__init__()
        self.inp = nn.Conv2d(cin, ch, 3, padding=1)
        self.blocks = nn.ModuleList([nn.Sequential(nn.ReLU(), nn.Conv2d(ch, ch, 3, padding=1), nn.ReLU(), nn.Conv2d(ch, ch, 3, padding=1))
                                     for _ in range(blocks)])
        self.out = nn.Sequential(nn.ReLU(), nn.Conv2d(ch, cout, 3, padding=1))
        nn.init.zeros_(self.out[1].weight), nn.init.zeros_(self.out[1].bias)

    def forward(self, x):
        h = self.inp(x)
        for b in self.blocks:
            h = h + b(h)
        return self.out(h)


def checkerboard(h: int, w: int, parity: int) -> torch.Tensor:
    i, j = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return ((i + j + parity) % 2).float().view(1, 1, h, w)


def squeeze(x: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    return x.view(n, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(n, 4 * c, h // 2, w // 2)


def unsqueeze(x: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    return x.view(n, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(n, c // 4, 2 * h, 2 * w)
