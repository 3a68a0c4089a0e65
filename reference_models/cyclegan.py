"""CycleGAN (Zhu et al. 2017): unpaired image-to-image translation with two generators and two discriminators.

    G: a -> b,  F: b -> a,  D_b judges b images,  D_a judges a images.
    L_G = LSGAN(D_b(G(a)), 1) + LSGAN(D_a(F(b)), 1)
        + lambda_cycle * (|F(G(a)) - a|_1 + |G(F(b)) - b|_1)          (cycle consistency)
        + lambda_identity * (|G(b) - b|_1 + |F(a) - a|_1)             (identity: keep what is already right;
                                                                          quick x1, standard the paper's x5)
    L_D = 0.5 * (LSGAN(D(real), 1) + LSGAN(D(buffer(fake)), 0))         per discriminator

LSGAN: mean squared error to the target label (config.loss "lsgan"; "ns": the non-saturating log loss).
The image buffer (Shrivastava et al. 2017) keeps `buffer_size` earlier fakes; each fake shown to a discriminator is,
with probability 1/2, swapped for a stored one. Generators: a small ResNet for 28-32 px images (7x7 conv, `n_down`
stride-2 downsamplings, `n_res` residual blocks, `n_down` upsamplings, 7x7 conv, instance norm, sigmoid output in
[0, 1]; with `skips`, U-Net skips: `ResnetGenerator`); quick uses one downsampling with skips (it keeps the digits
far better in 1000 steps: docs/translation.md), standard the paper's two without. With `residual` (off in every
budget; tried for issue #19, docs/translation.md) the generator's output is sigmoid(colour(2x - 1) + head(h)): a
per-pixel 1x1 colour map of the input that starts as 2 x identity, plus the network's correction, whose last conv
starts at zero, so training starts from the input's spatial structure. Discriminators: a PatchGAN of `d_layers`
convs (3: the usual 3-layer one; 2 or 1: a smaller receptive field). Adam (lr, beta1 0.5); the learning rate
falls linearly to 0 over the last `1 - lr_decay_start` of the steps. All randomness comes from `fit(seed=)` (batches, buffer, init).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genbench.data.base import DatasetInfo
from genbench.errors import InvalidInputError
from genbench.models import register_model
from genbench.models.base import ModelConfig, check_budget
from genbench.models.translation import TranslationModel, check_domain_images
from reference_models.nets import TrainLoop, apply_budget, batch_indices, reset_parameters

LOSSES = ("lsgan", "ns")


@dataclass
class CycleGANConfig(ModelConfig):
    steps: int = 1000
    batch_size: int = 8
    lr: float = 5e-4  # quick: 1000 steps only (the paper's 2e-4 is the standard config's)
    beta1: float = 0.5
    lr_decay_start: float = 0.5
    loss: str = "lsgan"
    ch: int = 8  # generator base channels (x2 per downsampling)
    n_res: int = 2  # generator residual blocks
    n_down: int = 1  # generator stride-2 downsamplings (residual blocks at 1/2**n_down of the image side)
    skips: bool = True  # generator U-Net skips (encoder features concatenated into the decoder)
    residual: bool = False  # generator output = sigmoid(colour map of the input + head); the head starts at zero
    d_layers: int = 3  # discriminator conv layers before the 1-channel output (conv receptive field 26/18/10 px)
    d_ch: int = 16  # discriminator base channels
    lambda_cycle: float = 10.0
    lambda_identity: float = 1.0  # quick (docs/translation.md); the paper's 0.5 x lambda_cycle = 5 in standard
    buffer_size: int = 50
    log_every: int = 50

    @classmethod
    def for_budget(cls, budget: str, info: DatasetInfo) -> "CycleGANConfig":
        check_budget(budget)
        if budget == "smoke":
            return cls(steps=4, batch_size=4, ch=8, n_res=1, d_ch=8, log_every=1)
        if budget == "standard":
            return cls(steps=20000, batch_size=32, lr=2e-4, ch=32, n_res=6, n_down=2, skips=False, d_ch=64,
                       lambda_identity=5.0)
        return cls()


def _norm(c: int) -> nn.Module:
    return nn.InstanceNorm2d(c, affine=True)


class ResBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), _norm(c), nn.ReLU(True),
                                  nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), _norm(c))

    def forward(self, x):
        return x + self.body(x)


class ZeroConv2d(nn.Conv2d):
    """A conv layer whose weights and bias start at zero (also after `reset_parameters`): the residual generator's
    head, so that its correction starts at zero."""

    def reset_parameters(self):
        nn.init.zeros_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)


RESIDUAL_GAIN = 2.0  # the residual generator's colour map starts as sigmoid(2 * (2x - 1)): contrast kept, unsaturated


class ColourMap(nn.Conv2d):
    """A per-pixel linear map of the channels (1x1 conv) that starts as RESIDUAL_GAIN x identity, bias 0."""

    def __init__(self, channels: int):
        super().__init__(channels, channels, 1)

    def reset_parameters(self):
        with torch.no_grad():
            self.weight.copy_(RESIDUAL_GAIN * torch.eye(self.in_channels).reshape(self.weight.shape))
            self.bias.zero_()


class ResnetGenerator(nn.Module):
    """7x7 conv, `n_down` stride-2 downsamplings, `n_res` residual blocks, `n_down` upsamplings, 7x7 conv. With
    `skips`, each upsampling's output is concatenated with the encoder's features at that resolution (U-Net skips,
    the pix2pix/CycleGAN "unet" generator's idea) and mixed back by a 1x1 conv, so fine spatial detail (the digit's
    strokes) need not pass through the bottleneck."""

    def __init__(self, channels: int, ch: int, n_res: int, n_down: int = 2, skips: bool = False,
                 residual: bool = False):
        super().__init__()
        self.skips, self.residual = bool(skips), bool(residual)
        self.stem = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(channels, ch, 7), _norm(ch), nn.ReLU(True))
        self.down = nn.ModuleList(
            nn.Sequential(nn.Conv2d(ch * 2 ** i, ch * 2 ** (i + 1), 3, stride=2, padding=1), _norm(ch * 2 ** (i + 1)),
                          nn.ReLU(True)) for i in range(n_down))
        self.res = nn.Sequential(*[ResBlock(ch * 2 ** n_down) for _ in range(n_res)])
        self.up = nn.ModuleList(
            nn.Sequential(nn.ConvTranspose2d(ch * 2 ** (i + 1), ch * 2 ** i, 3, stride=2, padding=1, output_padding=1),
                          _norm(ch * 2 ** i), nn.ReLU(True)) for i in reversed(range(n_down)))
        self.mix = nn.ModuleList(
            nn.Sequential(nn.Conv2d(ch * 2 ** (i + 1), ch * 2 ** i, 1), _norm(ch * 2 ** i), nn.ReLU(True))
            for i in reversed(range(n_down))) if self.skips else None
        self.head = nn.Sequential(nn.ReflectionPad2d(3), (ZeroConv2d if self.residual else nn.Conv2d)(ch, channels, 7))
        self.colour = ColourMap(channels) if self.residual else None

    def forward(self, x):  # x in [0, 1]; sides divisible by 2**n_down come back the same size
        x = x * 2.0 - 1.0
        h = self.stem(x)
        feats = []
        for down in self.down:
            feats.append(h)
            h = down(h)
        h = self.res(h)
        for j, up in enumerate(self.up):
            h = up(h)
            if self.skips:
                h = self.mix[j](torch.cat([h, feats[-1 - j]], 1))
        if self.residual:  # a per-pixel colour map of the input plus a learned correction (zero at the start)
            return torch.sigmoid(self.colour(x) + self.head(h))
        return torch.sigmoid(self.head(h))


class PatchDiscriminator(nn.Module):
    """PatchGAN: `layers` convs (4x4 stride 2, 4x4 stride 2, then 3x3) and a 3x3 conv to one logit per patch.
    Conv receptive field (the instance norms aside): 26 px with 3 layers, 18 with 2, 10 with 1."""

    def __init__(self, channels: int, ch: int, layers: int = 3):
        super().__init__()
        if not 1 <= int(layers) <= 3:
            raise InvalidInputError(f"cyclegan: d_layers must be 1, 2 or 3, got {layers}")
        mods, c_in = [nn.Conv2d(channels, ch, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)], ch
        if layers >= 2:
            mods += [nn.Conv2d(ch, 2 * ch, 4, stride=2, padding=1), _norm(2 * ch), nn.LeakyReLU(0.2, True)]
            c_in = 2 * ch
        if layers >= 3:
            mods += [nn.Conv2d(2 * ch, 4 * ch, 3, padding=1), _norm(4 * ch), nn.LeakyReLU(0.2, True)]
            c_in = 4 * ch
        self.net = nn.Sequential(*mods, nn.Conv2d(c_in, 1, 3, padding=1))

    def forward(self, x):
        return self.net(x * 2.0 - 1.0)


class ImageBuffer:
    """Shrivastava et al.'s history of generated images: returns a batch where each image is, once the buffer
    is full, with probability 1/2 replaced by a stored one (which the new image replaces)."""

    def __init__(self, size: int, generator: torch.Generator):
        self.size = int(size)
        self.g = generator
        self.items: list = []

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        if self.size <= 0:
            return batch
        out = []
        for img in batch.detach():
            if len(self.items) < self.size:
                self.items.append(img.clone())
                out.append(img)
            elif float(torch.rand((), generator=self.g)) < 0.5:
                j = int(torch.randint(0, self.size, (), generator=self.g))
                out.append(self.items[j].clone())
                self.items[j] = img.clone()
            else:
                out.append(img)
        return torch.stack(out)


def _gan_loss(kind: str, logits: torch.Tensor, real: bool) -> torch.Tensor:
    if kind == "lsgan":
        return F.mse_loss(logits, torch.full_like(logits, 1.0 if real else 0.0))
    return F.softplus(-logits).mean() if real else F.softplus(logits).mean()


@register_model
class CycleGAN(TranslationModel):
    name = "cyclegan"
    family = "gan"
    Config = CycleGANConfig

    def __init__(self, config: CycleGANConfig, info: DatasetInfo):
        super().__init__(config, info)
        if config.loss not in LOSSES:
            raise InvalidInputError(f"cyclegan: loss {config.loss!r} is not one of {LOSSES}")
        c, h, w = (int(s) for s in info.shape)
        k = 2 ** int(config.n_down)
        if h % k or w % k:
            raise InvalidInputError(f"cyclegan with n_down={config.n_down} needs image sides divisible by {k}, "
                                    f"got {h}x{w}")
        gen = (c, config.ch, config.n_res, config.n_down, config.skips, config.residual)
        self.G = ResnetGenerator(*gen)  # a -> b
        self.F = ResnetGenerator(*gen)  # b -> a
        self.D_a = PatchDiscriminator(c, config.d_ch, config.d_layers)
        self.D_b = PatchDiscriminator(c, config.d_ch, config.d_layers)

    def modules(self):
        return {"G": self.G, "F": self.F, "D_a": self.D_a, "D_b": self.D_b}

    def model_modules(self):
        return {"G": self.G, "F": self.F}

    def _translate(self, x, direction):
        net = self.G if direction == "a2b" else self.F
        was = net.training
        net.eval()
        try:
            return net(x)
        finally:
            net.train(was)

    def fit(self, train, budget=None, seed=0, device="cpu", callbacks=()):
        cfg = apply_budget(self.config, budget, self.info)
        shape = tuple(self.info.shape)
        a = check_domain_images(train.domain("a"), shape, "cyclegan.fit (domain a)").float()
        b = check_domain_images(train.domain("b"), shape, "cyclegan.fit (domain b)").float()
        if len(a) < 2 or len(b) < 2:
            raise InvalidInputError(f"cyclegan.fit needs at least 2 images per domain, got {len(a)} and {len(b)}")
        self.to(device)
        dev = self.device
        torch.manual_seed(int(seed))
        reset_parameters(*self.modules().values())
        g = torch.Generator().manual_seed(int(seed) + 1)
        opt_g = torch.optim.Adam(list(self.G.parameters()) + list(self.F.parameters()), lr=cfg.lr,
                                 betas=(cfg.beta1, 0.999))
        opt_d = torch.optim.Adam(list(self.D_a.parameters()) + list(self.D_b.parameters()), lr=cfg.lr,
                                 betas=(cfg.beta1, 0.999))
        decay_from = int(cfg.lr_decay_start * cfg.steps)

        def lr_at(step: int) -> float:
            if step <= decay_from or cfg.steps <= decay_from:
                return cfg.lr
            return cfg.lr * max(0.0, (cfg.steps - step) / (cfg.steps - decay_from))

        buf_a, buf_b = ImageBuffer(cfg.buffer_size, g), ImageBuffer(cfg.buffer_size, g)
        loop = TrainLoop(cfg, self.history, callbacks, cfg.log_every)
        for m in self.modules().values():
            m.train()
        for step in loop:
            for opt in (opt_g, opt_d):
                for group in opt.param_groups:
                    group["lr"] = lr_at(step)
            ra = a[batch_indices(len(a), cfg.batch_size, g)].to(dev)
            rb = b[batch_indices(len(b), cfg.batch_size, g)].to(dev)
            # generators
            fb, fa = self.G(ra), self.F(rb)
            adv = _gan_loss(cfg.loss, self.D_b(fb), True) + _gan_loss(cfg.loss, self.D_a(fa), True)
            cyc = (self.F(fb) - ra).abs().mean() + (self.G(fa) - rb).abs().mean()
            idt = (self.G(rb) - rb).abs().mean() + (self.F(ra) - ra).abs().mean() if cfg.lambda_identity else \
                torch.zeros((), device=dev)
            loss_g = adv + cfg.lambda_cycle * cyc + cfg.lambda_identity * idt
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
            # discriminators, on buffered fakes
            pa, pb = buf_a(fa.detach().cpu()).to(dev), buf_b(fb.detach().cpu()).to(dev)
            loss_d = 0.5 * (_gan_loss(cfg.loss, self.D_a(ra), True) + _gan_loss(cfg.loss, self.D_a(pa), False)
                            + _gan_loss(cfg.loss, self.D_b(rb), True) + _gan_loss(cfg.loss, self.D_b(pb), False))
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            loop.end_step(step, loss=loss_g.item(), loss_d=loss_d.item(), cycle=cyc.item(), identity=idt.item(),
                          adv=adv.item())
        loop.finish()
        for m in self.modules().values():
            m.eval()
        return self.history
