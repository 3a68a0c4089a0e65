"""Gated PixelCNN (van den Oord et al. 2016, "Conditional Image Generation with PixelCNN Decoders"): an
autoregressive model of 8-bit images with an exact likelihood,

    p(x) = prod_i prod_c p(x_{i,c} | x_{<i}, x_{i,<c})        pixels i in raster order, channels c = R, G, B,

each factor an exact distribution over the 256 levels: a 256-way softmax (`output="softmax"`, the paper's) or a
discretised logistic mixture (`output="logistic"`, Salimans et al. 2017, PixelCNN++: 3 * n_mix numbers per value,
learns much faster). log_prob is the exact log-probability of the discrete image (nats); bits/dim =
-log_prob / (D ln 2).

Causality without the blind spot of the original masked-conv PixelCNN comes from two stacks per layer:
- the *vertical* stack: convs with kernel (k//2 + 1, k) over the rows above and the current row (padding on top
  only); its output is shifted down one row before it feeds the horizontal stack, so row i sees rows < i;
- the *horizontal* stack: convs with kernel (1, k//2 + 1) over the current row to the left, plus the shifted
  vertical features. In the first layer (mask "A") the horizontal input is shifted right one pixel, so pixel i
  never sees itself; later layers (mask "B") may see position i, which then only holds information about < i.
Both use the gated activation tanh(a) * sigmoid(b); the horizontal stack has residual connections.
Options that keep causality: a vertical conv may be dilated along rows (`v_dilations`: a longer reach up the
image at the same cost), and every layer may add learned per-position biases (`pos_bias`: the model knows where in
the image it is, which matters for centred objects on an empty background).
RGB: the trunk sees only earlier pixels; the output head of channel c also gets the current pixel's channels < c
(through a 1x1 conv), so the model is fully channel-autoregressive (R, then G | R, then B | R, G).

Sampling draws pixel by pixel (nfe_per_sample = H * W trunk evaluations: the slow sampler), batched over
samples and *incremental*: after a row is complete the vertical stack is advanced by that one row, and each pixel
only recomputes one column of the horizontal stack, from cached per-layer activations, as small matrix products
(the same function as the full network, about H*W times less work than re-running it per pixel). Sampling runs in
float32 and draws each value exactly from its discrete distribution (CPU float64 inverse-CDF). `_sample_naive`
re-runs the full network per pixel; the tests check that both give the same samples.

Training minimises the exact NLL (nats/dim) with Adam, a cosine lr decay and optionally an EMA of the weights; on
a CPU the convs run channels-last and the 1x1 output convs as matrix products with the output parameters on the
last axis (`logits_last`, tested equal to `forward`). With `cpu_bf16` training runs under bf16 autocast on CPUs
that multiply bf16 natively (CUDA: `mixed_precision`); log_prob (the reported bits/dim) and sampling are float32.
The quick config (logistic output, position biases, dilations, bf16, batch 8, 1000 steps) is sized to ~80 CPU-s
of training plus ~8 CPU-s to sample 1000 28x28 images (1 thread).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from genbench.data.base import DatasetInfo
from genbench.errors import InvalidInputError
from genbench.models import register_model
from genbench.models.base import LOG_PROB_EXACT, GenerativeModel, ModelConfig, check_budget
from reference_models.nets import TrainLoop, adam, autocast, batch_indices, start_fit


def gate(h: torch.Tensor) -> torch.Tensor:
    a, b = h.chunk(2, dim=1)
    if h.dim() == 4 and h.is_contiguous(memory_format=torch.channels_last) and not h.is_contiguous():
        # channels-last halves are strided, and bf16 tanh/sigmoid on strided tensors are ~3x slower on a CPU
        a, b = a.contiguous(memory_format=torch.channels_last), b.contiguous(memory_format=torch.channels_last)
    return torch.tanh(a) * torch.sigmoid(b)


def down_shift(x: torch.Tensor) -> torch.Tensor:
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1, :]


def right_shift(x: torch.Tensor) -> torch.Tensor:
    return F.pad(x, (1, 0, 0, 0))[:, :, :, :-1]


class GatedLayer(nn.Module):
    """One gated PixelCNN layer (vertical + horizontal stacks). `first`: mask "A" (no residual, input shifted).
    `hw` (H, W): learned per-position biases of both stacks' pre-activations (where in the image a pixel is does
    not depend on the data, so this keeps the model causal; it lets a small model learn the layout of centred
    images, e.g. an empty border, much faster than from zero padding alone). `dil`: the vertical conv's dilation
    along rows (it then sees rows q - p*dil, ..., q - dil, q: a longer reach up the image at the same cost)."""

    def __init__(self, cin: int, ch: int, k: int, first: bool, hw: Optional[tuple[int, int]] = None, dil: int = 1,
                 num_classes: int = 0):
        super().__init__()
        self.p = k // 2
        self.first = first
        self.dil = dil
        self.vconv = nn.Conv2d(cin, 2 * ch, (self.p + 1, k), dilation=(dil, 1))  # padded by the caller: top p*dil, left/right p
        self.hconv = nn.Conv2d(cin, 2 * ch, (1, self.p + 1))  # padded by the caller: left p
        self.v2h = nn.Conv2d(2 * ch, 2 * ch, 1)
        self.hout = nn.Conv2d(ch, ch, 1)
        # stored (H, W, 2ch) and added as a (2ch, H, W) view: the memory order of channels-last activations
        self.vpos = nn.Parameter(torch.zeros(*hw, 2 * ch)) if hw else None
        self.hpos = nn.Parameter(torch.zeros(*hw, 2 * ch)) if hw else None
        # the paper's conditional form with a one-hot class h: V^T h, one learned (2ch,) vector per class added to
        # both stacks' pre-activations (zero at the start: the unconditional layer)
        self.vcls = nn.Parameter(torch.zeros(num_classes, 2 * ch)) if num_classes else None
        self.hcls = nn.Parameter(torch.zeros(num_classes, 2 * ch)) if num_classes else None

    def forward(self, v: torch.Tensor, h: torch.Tensor, y: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.p
        v_pre = self.vconv(F.pad(v, (p, p, p * self.dil, 0)))
        if self.vpos is not None:
            v_pre = v_pre + self.vpos.permute(2, 0, 1).to(v_pre.dtype)  # (bf16 under autocast: stay in it)
        if self.vcls is not None:
            v_pre = v_pre + self.vcls[y][:, :, None, None].to(v_pre.dtype)
        h_in = right_shift(h) if self.first else h
        h_pre = self.hconv(F.pad(h_in, (p, 0, 0, 0))) + self.v2h(down_shift(v_pre))
        if self.hpos is not None:
            h_pre = h_pre + self.hpos.permute(2, 0, 1).to(h_pre.dtype)
        if self.hcls is not None:
            h_pre = h_pre + self.hcls[y][:, :, None, None].to(h_pre.dtype)
        h_out = self.hout(gate(h_pre))
        return gate(v_pre), h_out if self.first else h + h_out


def _conv_as_matrix(w: torch.Tensor) -> torch.Tensor:
    """1x1 conv weight (Cout, Cin, 1, 1) -> the (Cout, Cin) matrix of the same map on channels-last inputs."""
    return w.flatten(1)


class GatedPixelCNN(nn.Module):
    """(N, C, H, W) image in [-1, 1] -> output parameters (N, C, P, H, W) (P = 256 logits, or 3 * n_mix logistic
    mixture parameters); those of (i, c) depend on pixels < i and on channels < c of pixel i only. With
    `num_classes` K > 0 every layer also takes the class labels y (N,) (`GatedLayer`: the conditional form)."""

    def __init__(self, c: int, ch: int, n_layers: int, k: int, hidden: int, n_out: int = 256,
                 hw: Optional[tuple[int, int]] = None, dilations: Optional[list[int]] = None, num_classes: int = 0):
        super().__init__()
        self.c = c
        dilations = list(dilations or [1] * n_layers)
        self.layers = nn.ModuleList([GatedLayer(c if i == 0 else ch, ch, k, first=(i == 0), hw=hw, dil=dilations[i],
                                                num_classes=num_classes) for i in range(n_layers)])
        self.out = nn.Conv2d(ch, hidden, 1)
        self.ctx = nn.ModuleList([nn.Conv2d(i, hidden, 1) for i in range(1, c)])  # current pixel's channels < c
        self.heads = nn.ModuleList([nn.Conv2d(hidden, n_out, 1) for _ in range(c)])

    def trunk(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        v = h = x
        for layer in self.layers:
            v, h = layer(v, h, y)
        return self.out(F.relu(h))

    def head(self, f: torch.Tensor, x: torch.Tensor, c: int) -> torch.Tensor:
        """Output parameters (N, P, ...) of channel c from trunk features f and the current pixel's channels x[:, :c]."""
        if c > 0:
            f = f + self.ctx[c - 1](x[:, :c])
        return self.heads[c](F.relu(f))

    def forward(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        f = self.trunk(x, y)
        return torch.stack([self.head(f, x, c) for c in range(self.c)], 1)

    def logits_last(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The same outputs as `forward`, laid out (N, H, W, C, P): the 1x1 output convs run as matrix products
        over channels-last features and the parameter axis is contiguous (cheaper on a CPU for training and log_prob;
        `forward` and the incremental sampler use the conv modules themselves)."""
        v = h = x
        for layer in self.layers:
            v, h = layer(v, h, y)
        f = F.linear(F.relu(h.permute(0, 2, 3, 1)), _conv_as_matrix(self.out.weight), self.out.bias)
        xl = x.permute(0, 2, 3, 1)
        outs = []
        for c in range(self.c):
            g = f if c == 0 else f + F.linear(xl[..., :c], _conv_as_matrix(self.ctx[c - 1].weight), self.ctx[c - 1].bias)
            outs.append(F.linear(F.relu(g), _conv_as_matrix(self.heads[c].weight), self.heads[c].bias))
        return torch.stack(outs, 3)


# ------------------------------------------------------------------------------- the output distributions
# Each (pixel, channel) value is one of 256 levels. Two exact discrete distributions over them:
# - "softmax": 256 free logits (van den Oord et al.): flexible, but every level is learned separately;
# - "logistic": a mixture of n_mix logistics discretised to the 256 bins (Salimans et al. 2017, PixelCNN++):
#   3 * n_mix parameters (mixture logits, means in [-1, 1], log scales); neighbouring levels share statistics,
#   so it learns far faster, and the end bins take the tails (levels 0 and 255 are common in images).
def softmax_log_prob(logits: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """log P(levels) (...) under 256-way logits (..., 256)."""
    return -F.cross_entropy(logits.reshape(-1, 256), levels.reshape(-1), reduction="none").view(levels.shape)


def logistic_mixture_log_prob(params: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """log P(levels) (...) under discretised logistic mixtures `params` (..., 3K). Level k is the bin
    [x_k - 1/255, x_k + 1/255] around x_k = k / 127.5 - 1, with the tails added to levels 0 and 255, so the
    256 probabilities sum to one exactly. With a = (upper - mu) / s and b = (lower - mu) / s:
        log(sigmoid(a) - sigmoid(b)) = logsigmoid(a) + logsigmoid(-b) + log(1 - exp(-(a - b))),
    where a - b = (2/255) / s: stable for narrow and wide logistics alike (no pdf approximation)."""
    logit_pi, mu, log_s = params.chunk(3, -1)
    inv_s = torch.exp(-log_s.clamp(min=-7.0))
    x = (levels.to(params.dtype) / 127.5 - 1).unsqueeze(-1)
    lo, hi = (levels == 0).unsqueeze(-1), (levels == 255).unsqueeze(-1)
    zero = params.new_zeros(())
    log_below_upper = torch.where(hi, zero, F.logsigmoid((x + 1 / 255 - mu) * inv_s))  # log CDF(upper edge)
    log_above_lower = torch.where(lo, zero, F.logsigmoid(-(x - 1 / 255 - mu) * inv_s))  # log (1 - CDF(lower edge))
    log_width = torch.where(lo | hi, zero, torch.log(-torch.expm1(-(2 / 255) * inv_s)))
    log_bin = log_below_upper + log_above_lower + log_width
    return torch.logsumexp(F.log_softmax(logit_pi, -1) + log_bin, -1)


def draw_softmax(logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One level per row of logits (N, 256) by inverse-CDF with a uniform from `generator` (CPU, float64)."""
    probs = torch.softmax(logits.double().cpu(), dim=1)
    u = torch.rand(probs.shape[0], generator=generator, dtype=torch.float64)
    return (torch.cumsum(probs, 1) < u[:, None]).sum(1).clamp(max=255)


def draw_logistic_mixture(params: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One level per row of mixture parameters (N, 3K), exactly from the discretised distribution: a component
    by inverse-CDF, a continuous logistic draw mu + s * logit(u), then the bin it falls in (the tails clamp to
    levels 0 and 255, as in `logistic_mixture_log_prob`). CPU float64, two uniforms per row from `generator`."""
    logit_pi, mu, log_s = params.double().cpu().chunk(3, 1)
    u = torch.rand(params.shape[0], 2, generator=generator, dtype=torch.float64)
    k = (torch.cumsum(torch.softmax(logit_pi, 1), 1) < u[:, :1]).sum(1, keepdim=True).clamp(max=logit_pi.shape[1] - 1)
    s = torch.exp(log_s.gather(1, k).clamp(min=-7.0))
    y = mu.gather(1, k) + s * (torch.log(u[:, 1:]) - torch.log1p(-u[:, 1:]))
    return torch.round((y[:, 0] + 1) * 127.5).clamp(0, 255).long()


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
    output: str = "softmax"  # "softmax" (256 logits per value) or "logistic" (discretised logistic mixture)
    n_mix: int = 5  # logistics per mixture (output "logistic")
    pos_bias: bool = False  # learned per-position biases in every layer (see GatedLayer)
    v_dilations: list = field(default_factory=list)  # per layer vertical (row) dilation; empty: all 1
    lr_final: float = 0.05
    ema_decay: float = 0.0  # > 0: the trained model is the exponential moving average of the weights
    grad_clip: float = 10.0
    log_every: int = 50
    mixed_precision: bool = True  # bf16 autocast for training on CUDA (log_prob and sampling run in float32)
    cpu_bf16: bool = False  # ... and on a CPU with native bf16 (reference_models.nets.autocast)

    @classmethod
    def for_budget(cls, budget: str, info: DatasetInfo) -> "PixelCNNConfig":
        check_budget(budget)
        _image_shape(info)
        return {
            "smoke": cls(steps=4, batch_size=8, ch=8, n_layers=2, hidden=16),
            # ~80 CPU-s training (bf16 convs) + ~8 CPU-s sampling 1000 28x28 images (1 thread, batch 500):
            # logistic-mixture output, position biases, vertical reach 20 rows (dilations), many small steps
            "quick": cls(steps=1000, batch_size=8, ch=32, n_layers=5, kernel=5, hidden=64, lr=5e-3, output="logistic",
                         n_mix=5, pos_bias=True, v_dilations=[1, 1, 2, 2, 4], ema_decay=0.995, cpu_bf16=True),
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
        if config.output not in ("softmax", "logistic"):
            raise InvalidInputError(f"pixelcnn output must be 'softmax' or 'logistic', got {config.output!r}")
        if config.v_dilations and (len(config.v_dilations) != config.n_layers or min(config.v_dilations) < 1):
            raise InvalidInputError(f"pixelcnn v_dilations must list {config.n_layers} dilations >= 1 (one per layer), "
                                    f"got {config.v_dilations}")
        if config.output == "logistic" and config.n_mix < 1:
            raise InvalidInputError(f"pixelcnn n_mix must be >= 1 for the logistic output, got {config.n_mix}")
        self._build(seed=0)

    def _build(self, seed: int) -> None:
        """A fresh network with weights initialised from `seed` (fit rebuilds it: same seed, same model)."""
        cfg = self.config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            n_out = 256 if cfg.output == "softmax" else 3 * cfg.n_mix
            hw = tuple(self.info.shape[1:]) if cfg.pos_bias else None
            self.net = GatedPixelCNN(self.info.shape[0], cfg.ch, cfg.n_layers, cfg.kernel, cfg.hidden, n_out, hw,
                                     cfg.v_dilations, num_classes=self.condition_classes or 0)

    def modules(self) -> dict[str, nn.Module]:
        return {"net": self.net}
    @property
    def nfe_per_sample(self) -> float:
        return float(self.info.shape[1] * self.info.shape[2])

    @staticmethod
    def _levels(x: torch.Tensor) -> torch.Tensor:
        return torch.round(x.float() * 255).clamp(0, 255).long()

    def _logits(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The network's output parameters (N, C, P, H, W) for x in [0, 1] (float32, as sampling uses them); y: the
        class labels of a conditional model (reference_models/cpixelcnn.py)."""
        return self.net(x * 2 - 1, y)

    def _nll(self, x: torch.Tensor, train: bool = False, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        """-log p(x) (-log p(x | y) with labels y) per example (nats). Only training runs under autocast (bf16 where
        the config allows it); the likelihood proper (log_prob) is computed in float32."""
        cfg = self.config
        with autocast(self.device, train and cfg.mixed_precision, cfg.cpu_bf16):
            params = self.net.logits_last(x * 2 - 1, y).float()  # (N, H, W, C, P)
        levels = self._levels(x).permute(0, 2, 3, 1)  # (N, H, W, C)
        log_p = softmax_log_prob if cfg.output == "softmax" else logistic_mixture_log_prob
        return -log_p(params, levels).view(x.shape[0], -1).sum(1)

    # ---- training ---------------------------------------------------------------------------------------------
    def fit(self, train, budget=None, seed=0, device="cpu", callbacks=(), labels=None):
        cfg, train, gen = start_fit(self, train, budget, seed, device)
        y_all = self._train_labels(train, labels)
        dev = self.device
        # trains channels-last on every device: faster with cuDNN and (~8%) with oneDNN on a CPU
        data = train.to(dev).contiguous(memory_format=torch.channels_last)
        y_all = None if y_all is None else y_all.to(dev)
        self.net.to(memory_format=torch.channels_last)
        opt = adam(self.net.parameters(), lr=cfg.lr)  # fused where the device has the kernel
        total = max(1, cfg.steps)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: cfg.lr_final + (1 - cfg.lr_final) * 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
        self.net.train()
        params = list(self.net.parameters())
        ema = [q.detach().clone() for q in params] if cfg.ema_decay > 0 else None
        D = self.info.dim
        loop = TrainLoop(cfg, self.history, callbacks, cfg.log_every)
        for step in loop:
            idx = batch_indices(len(data), cfg.batch_size, gen).to(dev)
            loss = self._nll(data[idx], train=True, y=None if y_all is None else y_all[idx]).mean() / D  # nats per dim
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            if ema is not None:  # warmed up: early weights are forgotten fast
                torch._foreach_lerp_(ema, [q.detach() for q in params], 1 - min(cfg.ema_decay, (1 + step) / (10 + step)))
            loop.end_step(step, loss=float(loss.detach()), bpd=float(loss.detach()) / math.log(2))
        loop.finish()
        if ema is not None:
            with torch.no_grad():
                torch._foreach_copy_(params, ema)
        # evaluate in the layout a loaded model gets on this device (GenerativeModel.to): identical numbers
        self.net.to(memory_format=self.memory_format(dev) or torch.contiguous_format)
        self.net.eval()
        return self.history

    def _train_labels(self, train: torch.Tensor, labels) -> Optional[torch.Tensor]:
        """The (N,) training labels of a conditional subclass (reference_models/cpixelcnn.py); None here."""
        if labels is not None:
            raise InvalidInputError(f"model {self.name!r} is unconditional: fit takes no labels (use 'cpixelcnn' for "
                                    "the class-conditional PixelCNN)")
        return None

    # ---- likelihood -------------------------------------------------------------------------------------------
    def log_prob(self, x: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
        self.net.eval()
        return super().log_prob(x, batch_size)

    def _log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return -self._nll(x).double()

    # ---- sampling ---------------------------------------------------------------------------------------------
    def _draw(self, params: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One level per row of output parameters (N, P)."""
        draw = draw_softmax if self.config.output == "softmax" else draw_logistic_mixture
        return draw(params, generator)

    def _sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        self.net.eval()
        x, _ = self._autoregress(n, lambda logits, r, j, c: self._draw(logits, generator))
        return x

    @torch.no_grad()
    def _autoregress(self, n: int, pick: Callable, record: bool = False,
                     y: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """The incremental sampler. `pick(params (n, P), row, col, channel) -> levels (n,)` chooses each value
        (a random draw when sampling, the data's value for a teacher-forced check). Returns x in [0, 1] and, with
        `record`, the output parameters of every position (n, C, P, H, W). `y`: the (n,) class labels of a
        conditional model (its per-class biases join the precomputed per-row terms of both stacks).

        Per row, the vertical stacks advance by one row (convs over the p + 1 rows above). Per pixel, each layer's
        horizontal conv sees a window of p + 1 columns of one row, so it runs as one matrix product on
        channels-last row buffers (window flattened to ((p+1) * C_in,)), with every term that does not depend on
        the row's own pixels (vertical contribution, biases, position bias) precomputed for the whole row: a few
        small ops per layer and pixel, which is what makes pixel-by-pixel sampling affordable on a CPU."""
        net, dev = self.net, self.device
        C, H, W = _image_shape(self.info)
        layers = net.layers
        p = layers[0].p
        top = p * max(layer.dil for layer in layers)
        chans = [C] + [layer.hout.out_channels for layer in layers]
        x = torch.zeros(n, C, H, W, device=dev)  # values in [-1, 1] as the network sees them
        # vertical-stack inputs, padded: image row q lives at row q + top, column j at column j + p
        vpad = [torch.zeros(n, chans[i], H + top, W + 2 * p, device=dev) for i in range(len(layers))]
        # the 1-row convs as matrices on channels-last windows: (2ch, Cin, 1, p+1) -> ((p+1) * Cin, 2ch)
        hmat = [layer.hconv.weight[:, :, 0].permute(0, 2, 1).flatten(1).t() for layer in layers]
        omat = [_conv_as_matrix(layer.hout.weight).t() for layer in layers]
        out_mat, head_mats = _conv_as_matrix(net.out.weight).t(), [_conv_as_matrix(h.weight).t() for h in net.heads]
        ctx_mats = [_conv_as_matrix(m.weight).t() for m in net.ctx]
        rec = torch.zeros(n, C, net.heads[0].out_channels, H, W) if record else None
        y = None if y is None else y.to(dev)
        for r in range(H):
            # 1. per layer, the part of the horizontal pre-activations fixed before row r starts, (n, W, 2ch):
            #    the shifted vertical contribution (vertical pre-activations of row r - 1) and the biases
            d = []
            if r > 0:
                vpad[0][:, :, r - 1 + top, p:p + W] = x[:, :, r - 1]
            for i, layer in enumerate(layers):
                if r == 0:  # above the image: the shifted vertical input is zero padding
                    vh = layer.v2h.bias.expand(n, W, -1)
                else:
                    # rows r-1-p*dil, ..., r-1 (the conv is dilated) -> (n, 2ch, 1, W)
                    v_pre = layer.vconv(vpad[i][:, :, r - 1 + top - p * layer.dil:r + top, :])
                    if layer.vpos is not None:
                        v_pre = v_pre + layer.vpos[r - 1:r].permute(2, 0, 1)
                    if layer.vcls is not None:
                        v_pre = v_pre + layer.vcls[y][:, :, None, None]
                    vh = layer.v2h(v_pre)[:, :, 0].transpose(1, 2)
                    if i + 1 < len(layers):
                        vpad[i + 1][:, :, r - 1 + top, p:p + W] = gate(v_pre)[:, :, 0]
                fixed = vh + layer.hconv.bias
                if layer.hpos is not None:
                    fixed = fixed + layer.hpos[r]
                if layer.hcls is not None:
                    fixed = fixed + layer.hcls[y][:, None, :]
                d.append(fixed.contiguous())
            # 2. the row, pixel by pixel, on channels-last rows padded on the left (layer 0 one more: mask A shift)
            hrow = [torch.zeros(n, W + p + 1, C, device=dev)] + [torch.zeros(n, W + p, chans[i + 1], device=dev)
                                                                 for i in range(len(layers))]
            for j in range(W):
                for i, layer in enumerate(layers):
                    window = hrow[i][:, j:j + p + 1].reshape(n, -1)  # columns j-p .. j (layer 0: j-p-1 .. j-1)
                    a, b = torch.addmm(d[i][:, j], window, hmat[i]).chunk(2, 1)
                    h_out = torch.addmm(layer.hout.bias, torch.tanh(a) * torch.sigmoid(b), omat[i])
                    if not layer.first:
                        h_out += hrow[i][:, j + p]  # residual
                    hrow[i + 1][:, j + p] = h_out
                f = torch.addmm(net.out.bias, F.relu(hrow[-1][:, j + p]), out_mat)
                for c in range(C):
                    g = f if c == 0 else f + torch.addmm(net.ctx[c - 1].bias, x[:, :c, r, j], ctx_mats[c - 1])
                    params = torch.addmm(net.heads[c].bias, F.relu(g), head_mats[c])
                    if record:
                        rec[:, c, :, r, j] = params.float().cpu()
                    k = pick(params, r, j, c).to(dev)
                    x[:, c, r, j] = k.float() / 127.5 - 1
                    hrow[0][:, j + p + 1, c] = x[:, c, r, j]
        return (x + 1) / 2, rec

    @torch.no_grad()
    def _sample_naive(self, n: int, generator: torch.Generator, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Reference sampler: the full network re-run for every pixel and channel (H*W*C passes). Same draws, in
        the same order, as `_sample`; used by the tests to check the incremental sampler."""
        self.net.eval()
        C, H, W = _image_shape(self.info)
        x = torch.zeros(n, C, H, W, device=self.device)
        for r in range(H):
            for j in range(W):
                for c in range(C):
                    logits = self.net(x, y)[:, c, :, r, j]
                    x[:, c, r, j] = self._draw(logits, generator).to(self.device).float() / 127.5 - 1
        return (x + 1) / 2
