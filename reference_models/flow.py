"""RealNVP: a normalizing flow of affine coupling layers (Dinh, Sohl-Dickstein & Bengio 2017) with an exact
change-of-variables likelihood.

    z = f(x) invertible,  log p(x) = log N(f(x); 0, I) + log |det df/dx|

An affine coupling keeps part of the input (x_a) and transforms the rest: y_b = x_b * exp(s(x_a)) + t(x_a), whose
Jacobian is triangular, log|det| = sum s(x_a); the inverse is x_b = (y_b - t(x_a)) * exp(-s(x_a)). `s` and `t` come
from one network (any network: it is never inverted); s = scale * tanh(raw) keeps the scales bounded. In the image
flows every coupling is followed by ActNorm (per-feature affine y = (x + b) e^{l}, initialised from the first batch
so that its output has zero mean and unit variance; log|det| = sum l).

Points (`PointFlow`): standardise (log|det| of the scaling added), then `n_layers` x [coupling, learned invertible
linear map]. Each coupling changes the second half of the coordinates given the first; the linear map after it
(`LULinear`: y = x W^T + b, W = P L U with a fixed permutation P, unit lower-triangular L and upper-triangular U, so
log|det| = sum log|diag U| costs nothing: Glow's "invertible 1x1 convolution" applied to the coordinates) decides
which directions the next coupling sees and changes. In 2-D the classic alternation of halves (mixing="alternate":
reverse + ActNorm) lets every coupling condition on one of two fixed axes only, which makes separate modes slow to
carve; a learned mixing lets each coupling cut along its own direction (with the other quick changes: ring8 HQ share
0.36 -> 0.89; grid25 stays near 0.3-0.75 depending on the initialisation: the random LU rotations and the
training seed both swing it, and fixed 22.5/45/67.5-degree rotations did not remove the spread). The coupling MLPs see Fourier features of the kept coordinates, times `cond_gain` (a steeper start for the
step-like shifts that separate modes). `log_prob` is the exact log density in the data's units (nats). A 2-D coupling
stack is bound by per-op overhead on a CPU: the couplings slice instead of masking and Adam runs fused; fewer
couplings trained for more steps beat a deep stack at equal CPU, and tight gradient clipping (`grad_clip`) keeps the
sharp couplings from blowing up.

Images (`ImageFlow`): the multi-scale RealNVP architecture. Pre-processing (all Jacobians counted exactly):
    y = (255 x + u) / 256, u ~ U[0, 1)^D              uniform dequantisation, y in [0, 1)^D
    p = alpha + (1 - 2 alpha) y                       log|det| = D log(1 - 2 alpha)            (alpha = 0.05)
    w = logit(p)                                      log|det| = -sum(log p + log(1 - p))
then per scale: 3 checkerboard couplings, squeeze (C, H, W) -> (4C, H/2, W/2), 3 channel couplings, and half of the
channels factored out to the Gaussian; the last scale has 4 checkerboard couplings. Coupling nets are small
ResNets (3x3 convs) that see the masked input and the mask. `n_scales` needs H, W divisible by 2^(n_scales-1).
`squeeze_first` (as in Glow) squeezes the image once before the first scale, so that every coupling works at half
the resolution (4x fewer positions, 4C channels).

`image_arch="glow"` (`GlowImageFlow`, Kingma & Dhariwal 2018, used by the quick CPU config) replaces the fixed
masks by learned mixing: per level, squeeze, then `glow_steps` x [ActNorm, invertible 1x1 conv (log|det| =
H W log|det W|), affine coupling of one channel half given the other (conv 3x3 -> 1x1 -> 3x3 net)], a last coupling
that is the learned prior of the half that leaves given the half that stays, and half of the channels factored
out. The kept half of the last level is flattened and goes through `top` MLP couplings (fixed random permutations
between them): they see the whole coarse latent at once, which is what gives the samples a coherent global shape
at a CPU budget (Fashion-MNIST, 2000 samples, classifier FD: 515 without them after 1500 steps, 172 with them
after 1000 steps; the realnvp masks at the same budget: 341).

Training: Adam on the mean negative log-likelihood, linear lr warm-up (`warmup` steps) then cosine decay. With
`mixed_precision` (and `cpu_bf16` on a CPU) the coupling nets run in bf16 autocast during training only; the flow's
own values, log-dets, log_prob and sampling stay float32 (the 1x1 convs disable autocast).

Likelihood convention: log p_y(y) is the exact density of the dequantised image on the [0, 1] scale, and
    log_prob(x) = log p_y((255 x + u) / 256) - D ln 256
is the *dequantised* log-likelihood that the RealNVP paper reports as its "exact" bits/dim: for each u it is exact
for the continuous model, and its expectation over u is a lower bound on the log-probability of the discrete 8-bit
image (Theis et al. 2016). `config.dequant_samples` u draws are averaged (from a generator seeded by
`config.eval_seed`, so log_prob is reproducible); log_prob_kind is "exact" in that sense. Sampling inverts the flow
and quantises: k = clamp(floor(256 y), 0, 255), x = k / 255. `forward` / `inverse` are exact inverses
(inverse(forward(x)) == x up to float error).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from genbench.data.base import DatasetInfo
from genbench.errors import InvalidInputError
from genbench.models import register_model
from genbench.models.base import LOG_PROB_EXACT, GenerativeModel, ModelConfig, check_budget
from reference_models.nets import Scaler, TrainLoop, adam, autocast, batch_indices, start_fit


from reference_models.flow_layers import (ActNorm, AffineCoupling, PointFlow, ResNetST, Sequence, _at_least_f32,
                                          checkerboard, squeeze, std_normal_log_prob, unsqueeze, warmup_cosine)
from reference_models.glow import GlowImageFlow


class ImageFlow(nn.Module):
    """Multi-scale RealNVP on logit-space images (N, C, H, W) -> (z (N, D) in a fixed order, log|det|)."""

    def __init__(self, c: int, h: int, w: int, n_scales: int, ch: int, blocks: int, squeeze_first: bool = False):
        super().__init__()
        self.squeeze_first = squeeze_first
        if squeeze_first:
            c, h, w = 4 * c, h // 2, w // 2
        self.scales = nn.ModuleList()
        self.shapes = []  # (factored-out shape, kept shape) per scale
        for s in range(n_scales):
            last = s == n_scales - 1
            n_checker = 4 if last else 3
            pre = []
            for i in range(n_checker):
                pre += [AffineCoupling(ResNetST(c + 1, 2 * c, ch, blocks), checkerboard(h, w, i % 2), c, True, 4), ActNorm(c, 4)]
            if last:
                self.scales.append(nn.ModuleList([Sequence(pre), Sequence([])]))
                self.shapes.append(((c, h, w), None))
                break
            c4 = 4 * c
            post = []
            for i in range(3):
                mask = torch.zeros(1, c4, 1, 1)
                mask[:, : c4 // 2] = 1.0 if i % 2 == 0 else 0.0
                mask[:, c4 // 2:] = 0.0 if i % 2 == 0 else 1.0
                post += [AffineCoupling(ResNetST(c4, 2 * c4, ch, blocks), mask, c4, False, 4), ActNorm(c4, 4)]
            self.scales.append(nn.ModuleList([Sequence(pre), Sequence(post)]))
            c, h, w = 2 * c, h // 2, w // 2
            self.shapes.append(((c, h, w), (c, h, w)))

    def forward(self, x):
        zs, total = [], torch.zeros(x.shape[0], device=x.device)
        if self.squeeze_first:
            x = squeeze(x)  # a permutation: log|det| = 0
        for (pre, post), (out_shape, keep_shape) in zip(self.scales, self.shapes):
            x, ld = pre(x)
            total = total + ld
            if keep_shape is None:
                zs.append(x.flatten(1))
                break
            x, ld = post(squeeze(x))
            total = total + ld
            zs.append(x[:, out_shape[0]:].flatten(1))  # factor out half of the channels
            x = x[:, : out_shape[0]]
        return torch.cat(zs, 1), total

    def inverse(self, z):
        sizes = [math.prod(o) for o, _ in self.shapes]
        parts = list(torch.split(z, sizes, dim=1))
        x = None
        for (pre, post), (out_shape, keep_shape), zp in reversed(list(zip(self.scales, self.shapes, parts))):
            zp = zp.reshape(-1, *out_shape)
            if keep_shape is None:
                x = pre.inverse(zp)
                continue
            x = unsqueeze(post.inverse(torch.cat([x, zp], 1)))
            x = pre.inverse(x)
        return unsqueeze(x) if self.squeeze_first else x




# ---------------------------------------------------------------------------------------------- the model
@dataclass
class RealNVPConfig(ModelConfig):
    steps: int = 10000
    batch_size: int = 64
    lr: float = 1e-3
    n_layers: int = 8  # points: couplings
    hidden: int = 128  # points: coupling MLP width
    depth: int = 2  # points: coupling MLP hidden layers
    mixing: str = "lu"  # points: between couplings, "lu" (learned invertible linear map) or "alternate" (reverse + ActNorm)
    cond_gain: float = 1.0  # points: the coupling nets see cond_gain * features (steeper start for step-like shifts)
    x_freqs: int = 0  # points: Fourier features sin/cos(2^k x), k < x_freqs, as coupling-net inputs (0: none)
    n_scales: int = 2  # images: scales of the multi-scale architecture
    ch: int = 32  # images: coupling ResNet channels
    blocks: int = 2  # images: coupling ResNet residual blocks
    alpha: float = 0.05  # images: logit transform margin
    dequant_samples: int = 1  # images: u draws averaged by log_prob
    weight_decay: float = 5e-5
    grad_clip: float = 100.0
    lr_final: float = 0.05  # cosine decay to lr * lr_final
    warmup: int = 0  # steps of linear lr warm-up before the cosine decay
    squeeze_first: bool = False  # images (realnvp): squeeze (C, H, W) -> (4C, H/2, W/2) before the first scale
    image_arch: str = "realnvp"  # images: "realnvp" (ImageFlow: checkerboard / channel masks) or "glow" (GlowImageFlow)
    glow_steps: int = 4  # images (glow): [ActNorm, 1x1 conv, coupling] steps per level (n_scales levels; width ch)
    top: int = 6  # images (glow): MLP couplings on the flattened coarse latent
    top_hidden: int = 512  # images (glow): their MLP width
    top_depth: int = 2  # images (glow): their MLP hidden layers
    eval_seed: int = 0
    log_every: int = 50
    mixed_precision: bool = False  # bf16 autocast of the coupling nets in training, on CUDA (log-dets stay float32)
    cpu_bf16: bool = False  # with mixed_precision: also on a CPU with native bf16 (reference_models.nets.autocast)

    @classmethod
    def for_budget(cls, budget: str, info: DatasetInfo) -> "RealNVPConfig":
        check_budget(budget)
        if info.modality == "points":
            return {
                "smoke": cls(steps=30, batch_size=64, n_layers=2, hidden=32, depth=1),
                # ~32-37 CPU-s (1 thread): 3000 steps of ~11 ms (8 couplings + LU mixing, MLP 64x2, batch 512). The
                # result is very sensitive to the initialisation; HQ share on training seeds 0/1 -- batch 256 x 4500
                # steps at lr 3e-3: grid25 0.30/0.74, ring8 0.89/0.65; at lr 1.5e-3: grid25 0.65/0.70, ring8 0.92/0.79;
                # this config: grid25 0.71/0.70, ring8 0.83/0.86 (grid25 still short of the 0.8 bar)
                "quick": cls(steps=3000, batch_size=512, n_layers=8, hidden=64, depth=2, x_freqs=3, cond_gain=3.0,
                             grad_clip=2.0, lr=1.5e-3),
                "standard": cls(steps=30000, batch_size=512, n_layers=16, hidden=256, depth=3, x_freqs=3, cond_gain=3.0,
                                grad_clip=2.0, warmup=500),
            }[budget]
        _image_shape(info, 2)
        return {
            "smoke": cls(steps=4, batch_size=8, n_scales=2, ch=8, blocks=1),
            # 75-88 CPU-s (1 thread, bf16 on a native-bf16 CPU; shared machine at load 5-7) on 28x28: Glow levels at
            # 14x14 and 7x7, 6 MLP couplings on the 196-d top; Fashion-MNIST classifier FD 166.8, 3.67 bits/dim
            "quick": cls(steps=1000, batch_size=32, n_scales=2, ch=48, image_arch="glow", glow_steps=4, top=6,
                         top_hidden=512, top_depth=2, lr=3e-3, warmup=50, mixed_precision=True, cpu_bf16=True),
            "standard": cls(steps=60000, batch_size=64, n_scales=3, ch=64, blocks=4, mixed_precision=True),
        }[budget]


def _image_shape(info: DatasetInfo, n_scales: int, squeeze_first: bool = False) -> tuple[int, int, int]:
    if info.modality != "image" or len(info.shape) != 3:
        raise InvalidInputError(f"dataset {info.name!r}: expected image items shaped (C, H, W), got {info.shape}")
    c, h, w = (int(s) for s in info.shape)
    f = 2 ** (n_scales - 1 + int(squeeze_first))
    if h % f or w % f:
        raise InvalidInputError(f"dataset {info.name!r}: RealNVP with n_scales={n_scales}"
                                f"{' and squeeze_first' if squeeze_first else ''} needs H and W divisible by {f}, "
                                f"got {h}x{w}; lower n_scales (or set squeeze_first=False) or pad the images")
    return c, h, w


@register_model
class RealNVP(GenerativeModel):
    name = "realnvp"
    family = "flow"
    log_prob_kind = LOG_PROB_EXACT
    Config = RealNVPConfig

    def __init__(self, config: RealNVPConfig, info: DatasetInfo):
        super().__init__(config, info)
        self.is_image = info.modality == "image"
        if self.is_image:
            if config.image_arch not in ("realnvp", "glow"):
                raise InvalidInputError(f"image_arch must be 'realnvp' or 'glow', got {config.image_arch!r}")
            _image_shape(info, config.n_scales, config.squeeze_first or config.image_arch == "glow")
        self.scaler = None if self.is_image else Scaler(info.dim)
        self._build(seed=0)

    def _build(self, seed: int) -> None:
        """A fresh flow with weights initialised from `seed` (fit rebuilds it: same seed, same model)."""
        cfg = self.config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if self.is_image and cfg.image_arch == "glow":
                self.flow = GlowImageFlow(*self.info.shape, cfg.n_scales, cfg.glow_steps, cfg.ch, cfg.top, cfg.top_hidden,
                                          cfg.top_depth)
            elif self.is_image:
                self.flow = ImageFlow(*self.info.shape, cfg.n_scales, cfg.ch, cfg.blocks, cfg.squeeze_first)
            else:
                self.flow = PointFlow(self.info.dim, cfg.n_layers, cfg.hidden, cfg.depth, cfg.x_freqs, cfg.cond_gain,
                                      cfg.mixing)

    def modules(self) -> dict[str, nn.Module]:
        m = {"flow": self.flow}
        if self.scaler is not None:
            m["scaler"] = self.scaler
        return m

    # ---- the bijection data -> base ---------------------------------------------------------------------------
    def preprocess(self, x: torch.Tensor, u: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Data -> flow input and its log|det| (per example). Images: dequantise with `u` (U[0,1) noise; zeros if
        None), scale to [alpha, 1 - alpha], logit. Points: standardise."""
        if not self.is_image:
            return self.scaler(x), self.scaler.log_abs_det().expand(x.shape[0])
        a = self.config.alpha
        y = (255.0 * x + (u if u is not None else 0.0)) / 256.0
        p = a + (1 - 2 * a) * y
        w = torch.log(p) - torch.log1p(-p)
        ld = x[0].numel() * math.log(1 - 2 * a) - (torch.log(p) + torch.log1p(-p)).flatten(1).sum(1)
        return w, ld

    def forward(self, x: torch.Tensor, u: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x (data; images dequantised with u) -> (z, log|det dz/dy|) where y is x on the [0, 1] dequantised scale
        for images and x itself for points."""
        w, ld0 = self.preprocess(x, u)
        # bf16 coupling nets only while training: log_prob and sampling (inverse) run in float32
        with autocast(self.device, self.config.mixed_precision and self.flow.training, self.config.cpu_bf16):
            z, ld = self.flow(w)
        return _at_least_f32(z).flatten(1), ld0 + ld

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        """z (N, D) -> data. Images: the continuous dequantised value y in [0, 1] (not yet quantised)."""
        w = self.flow.inverse(z)
        if not self.is_image:
            return self.scaler.inverse(w)
        a = self.config.alpha
        return (torch.sigmoid(w) - a) / (1 - 2 * a)

    def _continuous_log_prob(self, x: torch.Tensor, u: Optional[torch.Tensor]) -> torch.Tensor:
        z, ld = self.forward(x, u)
        return std_normal_log_prob(z) + ld

    # ---- training ---------------------------------------------------------------------------------------------
    def fit(self, train, budget=None, seed=0, device="cpu", callbacks=()):
        cfg, train, gen = start_fit(self, train, budget, seed, device)
        dev = self.device
        if self.scaler is not None:
            self.scaler.fit(train.to(dev))
        data = train.to(dev)
        if self.memory_format(dev) == torch.channels_last:  # the weights were made channels-last by self.to
            data = data.contiguous(memory_format=torch.channels_last)
        params = list(self.flow.parameters())
        opt = adam(params, cfg.lr, cfg.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, cfg.steps, cfg.warmup, cfg.lr_final))
        self.flow.train()
        D = self.info.dim
        loop = TrainLoop(cfg, self.history, callbacks, cfg.log_every)
        for step in loop:
            x = data[batch_indices(len(data), cfg.batch_size, gen).to(dev)]
            u = torch.rand(x.shape, generator=gen).to(dev) if self.is_image else None
            lp = self._continuous_log_prob(x, u)
            if self.is_image:
                lp = lp - D * math.log(256.0)
            loss = -lp.mean() / D  # nats per dimension
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            sched.step()
            logs = {"loss": float(loss.detach()), "nll": float(loss.detach()) * D}
            if self.is_image:
                logs["bpd"] = float(loss.detach()) / math.log(2)
            loop.end_step(step, **logs)
        loop.finish()
        self.flow.eval()
        return self.history

    # ---- likelihood -------------------------------------------------------------------------------------------
    def log_prob(self, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Exact log density (points) / dequantised 8-bit log-likelihood (images), nats per example."""
        self._eval_gen = torch.Generator().manual_seed(self.config.eval_seed)
        self.flow.eval()
        try:
            return super().log_prob(x, batch_size)
        finally:
            self._eval_gen = None

    def _log_prob(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if not self.is_image:
            return self._continuous_log_prob(x, None).double()
        K = max(1, int(self.config.dequant_samples))
        lps = [self._continuous_log_prob(x, torch.rand(x.shape, generator=self._eval_gen).to(x)).double() for _ in range(K)]
        return torch.stack(lps).mean(0) - self.info.dim * math.log(256.0)

    # ---- sampling ---------------------------------------------------------------------------------------------
    def _sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        self.flow.eval()
        z = torch.randn(n, self.info.dim, generator=generator).to(self.device)
        x = self.inverse(z)
        if self.is_image:
            return torch.floor(256.0 * x).clamp(0, 255) / 255.0
        return x
