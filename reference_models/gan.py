"""GAN: a generator G(z) trained against a discriminator D(x) (Goodfellow et al. 2014; DCGAN, Radford et al. 2016).

    D step:  maximise  log D(x_real) + log(1 - D(G(z)))       (losses below, written as minimisation)
    G step:  maximise  log D(G(z))                            ("non-saturating" loss, the default)

Losses (config.loss), with logits d = D(.):
- "ns":      L_D = softplus(-d_real) + softplus(d_fake);   L_G = softplus(-d_gen)
- "hinge":   L_D = relu(1 - d_real) + relu(1 + d_fake);    L_G = -d_gen
- "wgan-gp": L_D = d_fake - d_real + gp_weight * (|grad_x D(x_hat)| - 1)^2 at random interpolates x_hat;
             L_G = -d_gen   (Gulrajani et al. 2017; the critic has no batch norm)

Networks: images use DCGAN-style convs (reference_models/nets.py: ConvDecoder + tanh, ConvEncoder); points use
MLPs on standardised coordinates. `pack` > 1 is PacGAN (Lin et al. 2018): D sees `pack` samples concatenated,
real with real and fake with fake, which penalises mode collapse.

Optimiser: Adam for both nets; `lr_d` > `lr` is the two-timescale update rule (TTUR, Heusel et al. 2017: a faster
discriminator); `lr_decay_start` < 1 lets both learning rates fall linearly to 0 over the last part of training,
which lets G settle onto the modes instead of circling them (the point configs decay over the whole run).

GANs oscillate and diverge, so training keeps two generators, both an exponential moving average (EMA) of the
generator weights (Yazici et al. 2019):
- "last": the EMA generator at the end of training;
- "best": the EMA generator at the evaluation step with the best cheap held-out score (points: k-NN coverage
  of a held-out slice of train, higher is better; images: Frechet distance on fixed random conv features
  against the held-out slice, lower is better). The held-out slice (min(1000, N/10) items) is not trained on.
`history.checkpoints` records both with step and score; `config.checkpoint` ("best", the default, or "last")
picks the one `sample` uses. No likelihood: log_prob_kind "none".

`cgan` (class `CGAN`, reference_models/cgan.py) is the class-conditional GAN of the conditional track (docs/conditional.md): G(z, y)
with the one-hot label concatenated to z, a projection discriminator D(x, y) (Miyato & Koyama 2018), hinge loss,
on the image GAN's configs; `sample(n, seed, condition=y)`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from genbench.data.base import DatasetInfo
from genbench.errors import InvalidInputError
from genbench.models import register_model
from genbench.models.base import LOG_PROB_NONE, GenerativeModel, ModelConfig, check_budget
from reference_models.nets import (ConvDecoder, ConvEncoder, RandomFeatures, Scaler, TrainLoop, apply_budget,
                                   autocast, batch_indices, check_image_shape, check_train, frechet_distance,
                                   knn_coverage, mlp, reset_parameters)

LOSSES = ("ns", "hinge", "wgan-gp")


@dataclass
class GANConfig(ModelConfig):
    steps: int = 4000
    batch_size: int = 256
    lr: float = 2e-4  # generator; discriminator uses lr_d or lr
    lr_d: Optional[float] = None
    beta1: float = 0.5
    beta2: float = 0.999
    lr_decay_start: float = 1.0  # fraction of steps after which both lrs fall linearly to 0 (1.0 = constant lr)
    loss: str = "ns"  # "ns" | "hinge" | "wgan-gp"
    gp_weight: float = 10.0
    d_steps: int = 1  # discriminator updates per generator update
    z_dim: int = 64
    hidden: int = 256  # points: MLP width
    depth: int = 3  # points: MLP hidden layers
    ch: int = 64  # images: base conv channels
    pack: int = 1  # PacGAN packing degree (1 = plain GAN)
    ema_decay: float = 0.999
    eval_every: int = 500  # steps between held-out evaluations for the "best" checkpoint
    eval_samples: int = 1000
    checkpoint: str = "best"  # which generator `sample` uses: "best" or "last"
    log_every: int = 50
    mixed_precision: bool = True  # bf16 autocast, CUDA only

    @classmethod
    def for_budget(cls, budget: str, info: DatasetInfo) -> "GANConfig":
        check_budget(budget)
        if info.modality == "points":
            return {
                "smoke": cls(steps=30, batch_size=64, hidden=64, depth=2, z_dim=8, eval_every=15, eval_samples=200, lr=1e-3),
                # ~24 CPU-s (1 thread): a narrow G/D, large batches, TTUR (D lr 2x G lr) and a linear lr decay to 0,
                # which sharpens the modes (ring8 HQ share 0.06 -> ~0.9)
                "quick": cls(steps=5000, batch_size=512, hidden=128, depth=3, z_dim=8, pack=2, lr=2e-3, lr_d=4e-3,
                             lr_decay_start=0.0, eval_every=250, eval_samples=1000, max_seconds=None),
                "standard": cls(steps=20000, batch_size=512, hidden=512, depth=3, z_dim=16, pack=2, lr=2e-4, eval_every=1000, eval_samples=2500),
            }[budget]
        c, h, w = check_image_shape(info)
        small = h * w <= 64
        return {
            "smoke": cls(steps=4, batch_size=16, ch=8, z_dim=16, eval_every=2, eval_samples=64, ema_decay=0.9),
            # fashion-mnist: ~65 CPU-s (1 thread) for training incl. 10 held-out evaluations (~0.25 s each)
            "quick": cls(steps=2400, batch_size=64, ch=16 if not small else 32, z_dim=64, lr=5e-4, ema_decay=0.99,
                         eval_every=250, eval_samples=1000, max_seconds=None),
            "standard": cls(steps=30000, batch_size=128, ch=64, z_dim=128, eval_every=2000, eval_samples=5000, ema_decay=0.9995),
        }[budget]


@register_model
class GAN(GenerativeModel):
    name = "gan"
    family = "gan"
    log_prob_kind = LOG_PROB_NONE
    Config = GANConfig

    def __init__(self, config: GANConfig, info: DatasetInfo):
        super().__init__(config, info)
        if config.loss not in LOSSES:
            raise InvalidInputError(f"GAN loss {config.loss!r} is unknown; choose one of {LOSSES}")
        if config.checkpoint not in ("best", "last"):
            raise InvalidInputError(f"GAN checkpoint {config.checkpoint!r} is unknown; choose 'best' or 'last'")
        if config.pack < 1:
            raise InvalidInputError(f"GAN pack must be >= 1, got {config.pack}")
        self.is_image = info.modality == "image"
        if self.is_image:
            c, h, w = check_image_shape(info)
            self.G = ConvDecoder(config.z_dim, c, h, w, config.ch)
            norm = "none" if config.loss == "wgan-gp" else "batch"
            self.D = ConvEncoder(c * config.pack, h, w, 1, config.ch, norm=norm)
            self.scaler = None
        else:
            d = info.dim
            self.G = mlp(config.z_dim, d, config.hidden, config.depth, nn.ReLU)
            self.D = mlp(d * config.pack, 1, config.hidden, config.depth, lambda: nn.LeakyReLU(0.2))
            self.scaler = Scaler(d)
        self.G_ema = copy.deepcopy(self.G).requires_grad_(False).eval()
        self.G_best = copy.deepcopy(self.G).requires_grad_(False).eval()

    # ---- networks -------------------------------------------------------------------------------------------
    def model_modules(self) -> dict[str, nn.Module]:
        return {"G": self.G}  # D and the EMA / best copies of G are training machinery: one generator counts

    def modules(self) -> dict[str, nn.Module]:
        m = {"G": self.G, "D": self.D, "G_ema": self.G_ema, "G_best": self.G_best}
        if self.scaler is not None:
            m["scaler"] = self.scaler
        return m

    def _generate(self, G: nn.Module, z: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Generator output in the model's internal space ([-1, 1] images, standardised points); `y`: the class
        labels of a conditional GAN (one-hot, concatenated to z)."""
        if y is not None:
            z = torch.cat([z, F.one_hot(y, int(self.info.num_classes)).to(z)], 1)
        out = G(z)
        return torch.tanh(out) if self.is_image else out

    def _to_data(self, y: torch.Tensor) -> torch.Tensor:
        return (y + 1) / 2 if self.is_image else self.scaler.inverse(y)

    def _from_data(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2 - 1 if self.is_image else self.scaler(x)

    def _pack(self, x: torch.Tensor) -> torch.Tensor:
        p = self.config.pack
        return x.reshape(x.shape[0] // p, p * x.shape[1], *x.shape[2:])

    # ---- training -------------------------------------------------------------------------------------------
    def _disc(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        """D's logits: of packed samples, or of samples and their labels (conditional GAN: projection D)."""
        return self.D(self._pack(x)) if y is None else self.D(x, y)

    def _d_loss(self, real: torch.Tensor, fake: torch.Tensor, gen: torch.Generator,
                y_real: Optional[torch.Tensor] = None, y_fake: Optional[torch.Tensor] = None) -> torch.Tensor:
        cfg = self.config
        d_real, d_fake = self._disc(real, y_real), self._disc(fake, y_fake)
        if cfg.loss == "ns":
            return F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
        if cfg.loss == "hinge":
            return F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()
        # wgan-gp: gradient penalty at random interpolates (computed in float32)
        pr, pf = self._pack(real), self._pack(fake)
        eps = torch.rand(pr.shape[0], *([1] * (pr.dim() - 1)), generator=gen).to(pr)
        x_hat = (eps * pr + (1 - eps) * pf).requires_grad_(True)
        (grad,) = torch.autograd.grad(self.D(x_hat).float().sum(), x_hat, create_graph=True)
        gp = ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
        return d_fake.mean() - d_real.mean() + cfg.gp_weight * gp

    def _g_loss(self, fake: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        d_gen = self._disc(fake, y)
        return F.softplus(-d_gen).mean() if self.config.loss == "ns" else -d_gen.mean()

    def fit(self, train, budget=None, seed=0, device="cpu", callbacks=()):
        cfg = apply_budget(self.config, budget, self.info)
        train = check_train(train, self.info, min_items=max(2, cfg.pack))
        torch.manual_seed(seed)
        reset_parameters(self.G, self.D)
        gen = torch.Generator().manual_seed(seed)
        self.to(device)
        dev = self.device
        channels_last = self.memory_format(dev) == torch.channels_last  # weights: set by self.to

        # held-out slice for checkpoint selection (never trained on)
        perm = torch.randperm(len(train), generator=gen)
        n_hold = min(1000, len(train) // 10) if len(train) >= 20 else 0
        held = train[perm[:n_hold]] if n_hold else train
        train = train[perm[n_hold:]] if n_hold else train
        self._split_labels(perm[n_hold:] if n_hold else None, dev)
        if self.scaler is not None:
            self.scaler.fit(train.to(dev))
        data = self._from_data(train.to(dev))  # the fitted scaler lives on dev
        if channels_last:
            data = data.contiguous(memory_format=torch.channels_last)
        held_feats = self._eval_features(held.to(dev))
        eval_z = torch.randn(cfg.eval_samples, cfg.z_dim, generator=torch.Generator().manual_seed(12345)).to(dev)

        opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
        opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.lr_d or cfg.lr, betas=(cfg.beta1, cfg.beta2))
        sched = [torch.optim.lr_scheduler.LambdaLR(o, lambda i: self._lr_factor(i, cfg)) for o in (opt_g, opt_d)]
        self.G.train(), self.D.train()
        self.G_ema.load_state_dict(self.G.state_dict())
        self.G_best.load_state_dict(self.G.state_dict())
        bsz = max(cfg.pack, cfg.batch_size - cfg.batch_size % cfg.pack)
        best = {"step": 0, "value": None}
        self.history.checkpoints = {}
        loop = TrainLoop(cfg, self.history, callbacks, cfg.log_every)
        for step in loop:
            for _ in range(cfg.d_steps):
                idx = batch_indices(len(data), bsz, gen).to(dev)
                real = data[idx]
                z = torch.randn(bsz, cfg.z_dim, generator=gen).to(dev)
                y_real, y_fake = self._batch_labels(idx, bsz, gen)  # (None, None) and no draw when unconditional
                with autocast(dev, cfg.mixed_precision):
                    with torch.no_grad():
                        fake = self._generate(self.G, z, y_fake)
                    loss_d = self._d_loss(real, fake, gen, y_real, y_fake)
                opt_d.zero_grad(set_to_none=True)
                loss_d.float().backward()
                opt_d.step()
            z = torch.randn(bsz, cfg.z_dim, generator=gen).to(dev)
            y_gen = self._batch_labels(None, bsz, gen)[1]
            self.D.requires_grad_(False)
            with autocast(dev, cfg.mixed_precision):
                loss_g = self._g_loss(self._generate(self.G, z, y_gen), y_gen)
            opt_g.zero_grad(set_to_none=True)
            loss_g.float().backward()
            opt_g.step()
            lr_used = opt_g.param_groups[0]["lr"]
            for sc in sched:
                sc.step()
            self.D.requires_grad_(True)
            self._update_ema(step)
            loss_d, loss_g = loss_d.detach(), loss_g.detach()
            logs = {"loss": float(loss_d) + float(loss_g), "loss_d": float(loss_d), "loss_g": float(loss_g), "lr": lr_used}
            if step % cfg.eval_every == 0 or step == loop.steps:
                score = self._evaluate(eval_z, held_feats)
                logs["select_score"] = score
                if self._no_worse(score, best["value"]):  # ties go to the later checkpoint
                    best = {"step": step, "value": score}
                    self.G_best.load_state_dict(self.G_ema.state_dict())
            loop.end_step(step, force="select_score" in logs, **logs)
        loop.finish()
        last_step = self.history.steps
        if not self.history.records or "select_score" not in self.history.records[-1] or self.history.records[-1]["step"] != last_step:
            score = self._evaluate(eval_z, held_feats)  # stopped early by time/callback: score the last EMA too
            if self._no_worse(score, best["value"]):
                best = {"step": last_step, "value": score}
                self.G_best.load_state_dict(self.G_ema.state_dict())
            last_score = score
        else:
            last_score = self.history.records[-1]["select_score"]
        metric = {"name": self._select_metric, "higher_is_better": self._higher_is_better, "held_out_items": int(len(held))}
        self.history.checkpoints = {
            "best": {"label": "best EMA generator by held-out score", "step": best["step"], "score": best["value"], **metric},
            "last": {"label": "EMA generator at the end of training", "step": last_step, "score": last_score, **metric},
            "used_for_sampling": cfg.checkpoint,
        }
        self.G.eval()
        return self.history

    @staticmethod
    def _lr_factor(i: int, cfg: GANConfig) -> float:
        """lr multiplier after `i` completed steps: 1, then linear to 0 over the last (1 - lr_decay_start) of steps."""
        start = cfg.lr_decay_start * cfg.steps
        if cfg.lr_decay_start >= 1 or i < start:
            return 1.0
        return max(0.0, (cfg.steps - i) / max(1.0, cfg.steps - start))

    # ---- labels (the conditional GAN below overrides these; the unconditional GAN draws nothing for them) -----
    def _split_labels(self, keep: Optional[torch.Tensor], device) -> None:
        """The training labels of the items kept for training (`keep`: their indices, None: all)."""

    def _batch_labels(self, idx: Optional[torch.Tensor], n: int, gen: torch.Generator):
        """(labels of the real batch `idx`, labels to generate n fakes for); (None, None) for an unconditional GAN."""
        return None, None

    def _eval_labels(self, start: int, n: int) -> Optional[torch.Tensor]:
        """Labels of held-out evaluation samples start..start+n-1 (None: unconditional)."""
        return None

    @torch.no_grad()
    def _update_ema(self, step: int) -> None:
        decay = min(self.config.ema_decay, (1 + step) / (10 + step))  # short warm-up: early EMA follows G
        for pe, p in zip(self.G_ema.parameters(), self.G.parameters()):
            pe.lerp_(p.detach().float(), 1 - decay)
        for be, b in zip(self.G_ema.buffers(), self.G.buffers()):
            be.copy_(b)  # batch-norm running statistics are copied, not averaged

    # ---- checkpoint selection -------------------------------------------------------------------------------
    def _no_worse(self, score: float, best: Optional[float]) -> bool:
        return best is None or (score >= best if self._higher_is_better else score <= best)

    @property
    def _higher_is_better(self) -> bool:
        return not self.is_image

    @property
    def _select_metric(self) -> str:
        return "fd_random_conv_features" if self.is_image else "knn_coverage_k5"

    @torch.no_grad()
    def _eval_features(self, x: torch.Tensor) -> torch.Tensor:
        if not self.is_image:
            return x.double().cpu()
        c, h, w = self.info.shape
        feats = RandomFeatures(c, h, w).to(x.device)
        return torch.cat([feats(x[i:i + 500].float()).double().cpu() for i in range(0, len(x), 500)])

    @torch.no_grad()
    def _evaluate(self, eval_z: torch.Tensor, held_feats: torch.Tensor) -> float:
        was = self.G_ema.training
        self.G_ema.eval()
        x = torch.cat([self._to_data(self._generate(self.G_ema, eval_z[i:i + 500], self._eval_labels(i, len(eval_z[i:i + 500])))
                                     .float()) for i in range(0, len(eval_z), 500)])
        self.G_ema.train(was)
        if self.is_image:
            return frechet_distance(held_feats, self._eval_features(x.clamp(0, 1)))
        return knn_coverage(held_feats, x.double().cpu())

    # ---- sampling -------------------------------------------------------------------------------------------
    def _sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        G = self.G_best if self.config.checkpoint == "best" else self.G_ema
        G.eval()
        z = torch.randn(n, self.config.z_dim, generator=generator).to(self.device)
        with autocast(self.device, self.config.mixed_precision):
            y = self._generate(G, z)
        x = self._to_data(y.float())
        if self.is_image:  # 8-bit levels k/255, like the data
            x = torch.round(x.clamp(0, 1) * 255) / 255
        return x
