"""VAE: a latent-variable model p(x) = integral p(x|z) p(z) dz trained by maximising the ELBO (Kingma & Welling
2014), with an importance-weighted bound for `log_prob` (IWAE, Burda et al. 2016).

    q(z|x) = N(mu(x), diag sigma(x)^2)          encoder        p(z) = N(0, I)  (or a learned Gaussian mixture)
    ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || p(z))  <=  log p(x)     (reparameterised z = mu + sigma * eps)
    IWAE_K(x) = E[ log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x) ],  z_k ~ q(z|x)    ELBO = IWAE_1 <= IWAE_K <= log p(x)

Likelihood p(x|z) ("a proper likelihood for the data"):
- images (8-bit, scaled to [-1, 1] inside the model): per-pixel *discretised logistic* over the 256 levels
  (PixelCNN++, Salimans et al. 2017): the decoder outputs a mean and a log-scale per pixel, each level gets the
  logistic mass of its bin [x - 1/255, x + 1/255] (the edge levels take the tails), so p(x|z) is a probability
  of the discrete image and `log_prob` is directly the log-probability of the 8-bit image in nats.
- points: Gaussian with a learned per-dimension variance (decoder outputs mean and log-std), on standardised
  coordinates; `log_prob` adds the standardisation's log-Jacobian, so it is a density in the data's units.

`log_prob` is a lower bound (log_prob_kind "bound"): the IWAE bound with `config.iw_samples` samples; `elbo(x)`
gives the ELBO. Both draw their z from a generator seeded by `config.eval_seed`, so they are reproducible.
Sampling: z ~ N(0, I), x ~ p(x|z) (with `sample_noise=False`, the decoder mean instead: smoother but not a draw
from the model).

Prior: `prior_components` > 1 replaces N(0, I) by a learned mixture of that many diagonal Gaussians (with a
N(0, I) prior, prior samples between the encoder's clusters decode off the data's modes):
- `prior_type="mog"`: free means, stds and weights;
- `prior_type="vamp"`: the VampPrior (Tomczak & Welling 2018), p(z) = sum_k pi_k q(z | u_k), the encoder's own
  posteriors at K learned pseudo-inputs u_k, initialised at K random training items. The quick 2D config uses it:
  its components start (and stay) where the encoder puts data, which the free mixture reaches only slowly. The
  quick image config uses it too (64 pseudo-images): with N(0, I), Fashion-MNIST samples missed 3 of 10 classes.
The KL term is then the one-sample estimate log q(z|x) - log p(z) (analytic for N(0, I)).

Training: the KL weight rises from 0 to 1 over the first `kl_warmup` share of the steps; the learning rate decays
by a cosine to `lr * lr_final`; `init_log_scale` starts the decoder's log-scale at that value (a confident
decoder, so reconstructions must come through the latent from the first steps: the quick 2D config uses -3).

`cvae` (class `CVAE`, reference_models/cvae.py) is the class-conditional VAE of the conditional track (docs/conditional.md):
q(z | x, y), p(x | z, y) and a learned prior p(z | y) per class, on the image VAE's configs;
`sample(n, seed, condition=y)`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from genbench.data.base import DatasetInfo
from genbench.errors import InvalidInputError
from genbench.models import register_model
from genbench.models.base import LOG_PROB_BOUND, GenerativeModel, ModelConfig, check_budget
from reference_models.nets import (ConvDecoder, ConvEncoder, Scaler, TrainLoop, apply_budget, autocast, batch_indices,
                                   check_image_shape, check_train, mlp, reset_parameters)


@dataclass
class VAEConfig(ModelConfig):
    steps: int = 5000
    batch_size: int = 256
    lr: float = 1e-3
    latent_dim: int = 2
    hidden: int = 256  # points: MLP width
    depth: int = 3  # points: MLP hidden layers
    ch: int = 32  # images: base conv channels
    kl_warmup: float = 0.2  # share of the steps over which the KL weight rises linearly from 0 to 1
    lr_final: float = 0.05  # cosine decay of the learning rate to lr * lr_final
    min_log_scale: float = -7.0  # floor of the decoder's log-std / logistic log-scale
    init_log_scale: Optional[float] = None  # start the decoder's log-scale there (its output bias) instead of ~0
    prior_components: int = 1  # 1: p(z) = N(0, I); > 1: a learned mixture of that many diagonal Gaussians
    prior_type: str = "mog"  # with prior_components > 1: "mog" (free means / stds) | "vamp" (VampPrior: q(z|u_k))
    iw_samples: int = 64  # K of the importance-weighted bound used by log_prob
    eval_seed: int = 0  # seeds the z draws of log_prob / elbo
    sample_noise: bool = True  # False: sample returns the decoder mean (not a draw from p(x|z))
    log_every: int = 50
    mixed_precision: bool = True  # bf16 autocast for the networks, CUDA only (likelihoods in float32)

    @classmethod
    def for_budget(cls, budget: str, info: DatasetInfo) -> "VAEConfig":
        check_budget(budget)
        if info.modality == "points":
            return {
                "smoke": cls(steps=30, batch_size=64, hidden=64, depth=2, iw_samples=8),
                "quick": cls(steps=3000, batch_size=256, hidden=256, depth=3, lr=5e-3, prior_components=64, prior_type="vamp",
                             init_log_scale=-3.0),
                "standard": cls(steps=30000, batch_size=512, hidden=512, depth=4, prior_components=64),
            }[budget]
        c, h, w = check_image_shape(info)
        return {
            "smoke": cls(steps=4, batch_size=16, ch=8, latent_dim=4, iw_samples=4),
            "quick": cls(steps=1500, batch_size=64, ch=32, latent_dim=16, prior_components=64, prior_type="vamp"),
            "standard": cls(steps=50000, batch_size=128, ch=64, latent_dim=32, iw_samples=128),
        }[budget]


def discretized_logistic_log_prob(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """Elementwise log P(x) for 8-bit values x = 2k/255 - 1 (k = 0..255) under a logistic(mean, exp(log_scale))
    discretised into the 256 bins of width 2/255; level 0 takes (-inf, -1 + 1/255], level 255 [1 - 1/255, inf).
    The probabilities of the 256 levels sum to 1 exactly."""
    centered = x - mean
    inv_s = torch.exp(-log_scale)
    plus_in = inv_s * (centered + 1.0 / 255)
    min_in = inv_s * (centered - 1.0 / 255)
    log_cdf_plus = plus_in - F.softplus(plus_in)  # log sigmoid(plus_in): level 0
    log_one_minus_cdf_min = -F.softplus(min_in)  # log (1 - sigmoid(min_in)): level 255
    cdf_delta = torch.sigmoid(plus_in) - torch.sigmoid(min_in)
    mid_in = inv_s * centered  # when the bin mass underflows, use density * bin width
    log_pdf_mid = mid_in - log_scale - 2.0 * F.softplus(mid_in)
    log_mid = torch.where(cdf_delta > 1e-5, torch.log(cdf_delta.clamp_min(1e-12)), log_pdf_mid + math.log(2.0 / 255))
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, log_mid))


PRIOR_TYPES = ("mog", "vamp")


def mixture_log_prob(z: torch.Tensor, logits: torch.Tensor, means: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log sum_k softmax(logits)_k N(z; means_k, diag exp(log_std_k)^2) for z (..., L); means, log_std (K, L)."""
    zz = z.unsqueeze(-2)  # (..., 1, L)
    comp = (-0.5 * ((zz - means) * torch.exp(-log_std)) ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)  # (..., K)
    return torch.logsumexp(comp + torch.log_softmax(logits, 0), -1)


def mixture_sample(n: int, logits: torch.Tensor, means: torch.Tensor, log_std: torch.Tensor,
                   generator: torch.Generator) -> torch.Tensor:
    """n draws from that mixture (randomness from the CPU `generator`), on the means' device."""
    k = torch.multinomial(torch.softmax(logits.detach().float().cpu(), 0), n, replacement=True, generator=generator)
    eps = torch.randn(n, means.shape[1], generator=generator)
    return (means.detach().cpu()[k] + torch.exp(log_std.detach().cpu()[k]) * eps).to(means.device)


class MixturePrior(nn.Module):
    """p(z) = sum_k pi_k N(z; mu_k, diag sigma_k^2), all learned (a mixture-of-Gaussians prior, as in GMVAE):
    the prior can put its mass where the encoder puts the data, so samples from the prior do not fall into the
    "holes" between well-separated clusters. `params(encode)` -> (logits, means, log_std)."""

    def __init__(self, k: int, dim: int):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(k))
        self.means = nn.Parameter(torch.zeros(k, dim))
        self.log_std = nn.Parameter(torch.zeros(k, dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.logits.zero_()
            self.means.normal_()
            self.log_std.zero_()

    def params(self, encode=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.logits, self.means, self.log_std


class VampPrior(nn.Module):
    """VampPrior (Tomczak & Welling 2018): p(z) = sum_k pi_k q(z | u_k), a mixture of the encoder's own posteriors
    at K learned *pseudo-inputs* u_k (in model space), initialised at K random training items by `init_from`.
    The prior's components sit wherever the encoder puts data, and move with it as the encoder trains: the
    KL term cannot be cut by pushing the posteriors away from a fixed prior, and the prior has no empty
    components between clusters. The weights pi_k are learned too."""

    def __init__(self, k: int, item_shape: tuple):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(k))
        self.pseudo = nn.Parameter(torch.zeros(k, *item_shape))

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.logits.zero_()
            self.pseudo.normal_()

    @torch.no_grad()
    def init_from(self, data: torch.Tensor, generator: torch.Generator) -> None:
        idx = torch.randperm(len(data), generator=generator)[: len(self.pseudo)] % len(data)
        if len(idx) < len(self.pseudo):  # fewer items than components: repeat them
            idx = idx.repeat(math.ceil(len(self.pseudo) / len(idx)))[: len(self.pseudo)]
        self.pseudo.copy_(data[idx.to(data.device)])

    def params(self, encode) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        means, log_std = encode(self.pseudo)
        return self.logits, means, log_std


@register_model
class VAE(GenerativeModel):
    name = "vae"
    family = "vae"
    log_prob_kind = LOG_PROB_BOUND
    Config = VAEConfig

    def __init__(self, config: VAEConfig, info: DatasetInfo):
        super().__init__(config, info)
        self.is_image = info.modality == "image"
        L = config.latent_dim
        if self.is_image:
            c, h, w = check_image_shape(info)
            self.encoder = ConvEncoder(c, h, w, 2 * L, config.ch)
            self.decoder = ConvDecoder(L, 2 * c, h, w, config.ch)
            self.scaler = None
        else:
            d = info.dim
            self.encoder = mlp(d, 2 * L, config.hidden, config.depth)
            self.decoder = mlp(L, 2 * d, config.hidden, config.depth)
            self.scaler = Scaler(d)
        if config.prior_type not in PRIOR_TYPES:
            raise InvalidInputError(f"unknown prior_type {config.prior_type!r}; use one of {PRIOR_TYPES}")
        self.prior: Optional[nn.Module] = None
        if config.prior_components > 1:
            self.prior = (VampPrior(config.prior_components, tuple(info.shape)) if config.prior_type == "vamp"
                          else MixturePrior(config.prior_components, L))
        self._eval_gen: Optional[torch.Generator] = None

    def modules(self) -> dict[str, nn.Module]:
        m = {"encoder": self.encoder, "decoder": self.decoder}
        if self.scaler is not None:
            m["scaler"] = self.scaler
        if self.prior is not None:
            m["prior"] = self.prior
        return m

    # ---- the model ------------------------------------------------------------------------------------------
    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        """Data -> model space: images k/255 -> 2k/255 - 1, points standardised."""
        return x * 2 - 1 if self.is_image else self.scaler(x)

    def _encode(self, y: torch.Tensor, cond: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z|x) parameters; `cond`: class labels (conditional VAE only, below)."""
        with autocast(self.device, self.config.mixed_precision):
            h = self.encoder(y)
        mu, log_sigma = h.float().chunk(2, dim=1)
        return mu, log_sigma.clamp(-10, 5)

    def _decode(self, z: torch.Tensor, cond: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """p(x|z) parameters; `cond`: class labels (conditional VAE only, below)."""
        with autocast(self.device, self.config.mixed_precision):
            h = self.decoder(z)
        mean, log_scale = h.float().chunk(2, dim=1)
        return mean, log_scale.clamp_min(self.config.min_log_scale)

    def _log_px_z(self, y: torch.Tensor, z: torch.Tensor, cond: Optional[torch.Tensor] = None) -> torch.Tensor:
        """log p(y|z) per example (model space; images: log-probability of the 8-bit image)."""
        mean, log_scale = self._decode(z, cond)
        if self.is_image:
            lp = discretized_logistic_log_prob(y, mean, log_scale)
        else:
            lp = -0.5 * ((y - mean) * torch.exp(-log_scale)) ** 2 - log_scale - 0.5 * math.log(2 * math.pi)
        return lp.flatten(1).sum(1)

    def _log_pz(self, z: torch.Tensor, prior_params=None, cond: Optional[torch.Tensor] = None) -> torch.Tensor:
        """log p(z); `prior_params` (from `self.prior.params`) saves re-encoding VampPrior pseudo-inputs."""
        if self.prior is not None:
            return mixture_log_prob(z, *(prior_params or self.prior.params(self._encode)))
        return (-0.5 * z**2 - 0.5 * math.log(2 * math.pi)).sum(-1)

    def _neg_elbo_terms(self, y: torch.Tensor, generator: Optional[torch.Generator],
                        cond: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(reconstruction log-likelihood, KL) per example, one reparameterised z each. The KL is analytic for
        the N(0, I) prior and the one-sample estimate log q(z|x) - log p(z) for a mixture prior."""
        if isinstance(self.prior, VampPrior):  # encode the batch and the pseudo-inputs in one pass
            mu, log_sigma = self._encode(torch.cat([y, self.prior.pseudo]))
            mu, log_sigma, prior_mu, prior_log_sigma = mu[:len(y)], log_sigma[:len(y)], mu[len(y):], log_sigma[len(y):]
            prior_params = (self.prior.logits, prior_mu, prior_log_sigma)
        else:
            mu, log_sigma = self._encode(y, cond)
            prior_params = None
        eps = torch.randn(mu.shape, generator=generator).to(mu) if generator is not None else torch.randn_like(mu)
        z = mu + torch.exp(log_sigma) * eps
        rec = self._log_px_z(y, z, cond)
        if self.prior is None:
            kl = 0.5 * (mu**2 + torch.exp(2 * log_sigma) - 1 - 2 * log_sigma).sum(1)
        else:
            log_q = (-0.5 * eps**2 - log_sigma - 0.5 * math.log(2 * math.pi)).sum(1)
            kl = log_q - self._log_pz(z, prior_params, cond)
        return rec, kl

    def _jacobian(self) -> float:
        """Added to model-space log-likelihoods to express them in the data's units (points only)."""
        return 0.0 if self.is_image else float(self.scaler.log_abs_det())

    # ---- training -------------------------------------------------------------------------------------------
    def fit(self, train, budget=None, seed=0, device="cpu", callbacks=()):
        cfg = apply_budget(self.config, budget, self.info)
        train = check_train(train, self.info)
        torch.manual_seed(seed)
        reset_parameters(*self.modules().values())
        if cfg.init_log_scale is not None:  # a confident decoder from the start: the latent must carry the data
            last = self.decoder.net[-1] if self.is_image else self.decoder[-1]
            with torch.no_grad():
                last.bias[last.bias.shape[0] // 2:].fill_(cfg.init_log_scale)
        gen = torch.Generator().manual_seed(seed)
        self.to(device)
        dev = self.device
        if self.scaler is not None:
            self.scaler.fit(train.to(dev))
        data = self._prep(train.to(dev))
        if isinstance(self.prior, VampPrior):
            self.prior.init_from(data, gen)
        if self.memory_format(dev) == torch.channels_last:  # the weights were made channels-last by self.to
            data = data.contiguous(memory_format=torch.channels_last)
        params = [p for m in self.modules().values() for p in m.parameters()]
        opt = torch.optim.Adam(params, lr=cfg.lr)
        total = max(1, cfg.steps)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: cfg.lr_final + (1 - cfg.lr_final) * 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
        warm = max(1, int(cfg.kl_warmup * total)) if cfg.kl_warmup > 0 else 0
        self.encoder.train(), self.decoder.train()
        loop = TrainLoop(cfg, self.history, callbacks, cfg.log_every)
        for step in loop:
            idx = batch_indices(len(data), cfg.batch_size, gen).to(dev)
            y = data[idx]
            rec, kl = self._neg_elbo_terms(y, gen, self._batch_labels(idx))
            beta = min(1.0, step / warm) if warm else 1.0
            loss = -(rec - beta * kl).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 100.0)
            opt.step()
            sched.step()
            neg_elbo = float(-(rec - kl).mean().detach()) - self._jacobian()
            logs = {"loss": float(loss.detach()), "neg_elbo": neg_elbo, "kl": float(kl.mean().detach()), "beta": beta}
            if self.is_image:
                logs["bpd_bound"] = neg_elbo / (self.info.dim * math.log(2))
            loop.end_step(step, **logs)
        loop.finish()
        self.encoder.eval(), self.decoder.eval()
        return self.history

    # ---- likelihood -----------------------------------------------------------------------------------------
    def log_prob(self, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """IWAE bound with `config.iw_samples` importance samples, nats per example (see module docstring)."""
        self._eval_gen = torch.Generator().manual_seed(self.config.eval_seed)
        try:
            self.encoder.eval(), self.decoder.eval()
            return super().log_prob(x, batch_size)
        finally:
            self._eval_gen = None

    def _batch_labels(self, idx: torch.Tensor) -> Optional[torch.Tensor]:
        """The labels of training batch `idx` (conditional VAE); None for the unconditional VAE."""
        return None

    def _log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return self._iwae(x)

    def _iwae(self, x: torch.Tensor, cond: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The IWAE bound of log p(x) (of log p(x|cond) for a conditional VAE), nats per example."""
        y = self._prep(x.float())
        mu, log_sigma = self._encode(y, cond)
        sigma = torch.exp(log_sigma)
        K, B, L = self.config.iw_samples, y.shape[0], mu.shape[1]
        prior_params = self.prior.params(self._encode) if isinstance(self.prior, (MixturePrior, VampPrior)) else None
        chunk = max(1, 4096 // max(1, B))  # importance samples per decoder pass
        log_w = []
        for k0 in range(0, K, chunk):
            k = min(chunk, K - k0)
            eps = torch.randn(k, B, L, generator=self._eval_gen).to(mu)
            z = mu + sigma * eps  # (k, B, L)
            log_q = (-0.5 * eps**2 - log_sigma - 0.5 * math.log(2 * math.pi)).sum(-1)
            log_pz = self._log_pz(z, prior_params, cond)
            yk = y.unsqueeze(0).expand(k, *y.shape).reshape(k * B, *y.shape[1:])
            ck = None if cond is None else cond.unsqueeze(0).expand(k, B).reshape(k * B)
            log_px = self._log_px_z(yk, z.reshape(k * B, L), ck).view(k, B)
            log_w.append(log_px + log_pz - log_q)
        lw = torch.cat(log_w, 0).double()
        return torch.logsumexp(lw, 0) - math.log(K) + self._jacobian()

    @torch.inference_mode()
    def elbo(self, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Per-example ELBO in nats (same units as log_prob), one z per example from a `config.eval_seed` generator."""
        self.encoder.eval(), self.decoder.eval()
        gen = torch.Generator().manual_seed(self.config.eval_seed)
        out = []
        for i in range(0, len(x), batch_size):
            y = self._prep(x[i:i + batch_size].to(self.device).float())
            rec, kl = self._neg_elbo_terms(y, gen)
            out.append((rec - kl).double().cpu() + self._jacobian())
        return torch.cat(out) if out else torch.empty(0, dtype=torch.float64)

    # ---- sampling -------------------------------------------------------------------------------------------
    def _sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        self.decoder.eval()
        if self.prior is not None:
            self.encoder.eval()
            z = mixture_sample(n, *self.prior.params(self._encode), generator)
        else:
            z = torch.randn(n, self.config.latent_dim, generator=generator).to(self.device)
        return self._decode_sample(z, generator)

    def _decode_sample(self, z: torch.Tensor, generator: torch.Generator,
                       cond: Optional[torch.Tensor] = None) -> torch.Tensor:
        """A draw from p(x|z) (the decoder mean with `sample_noise=False`) in the data's units."""
        mean, log_scale = self._decode(z, cond)
        if self.is_image:
            if self.config.sample_noise:  # logistic noise by inverse CDF, then snap to the 256 levels
                u = torch.rand(mean.shape, generator=generator).clamp(1e-5, 1 - 1e-5).to(mean)
                mean = mean + torch.exp(log_scale) * (torch.log(u) - torch.log1p(-u))
            k = torch.round((mean.clamp(-1, 1) + 1) * 127.5)
            return k / 255.0
        y = mean
        if self.config.sample_noise:
            y = y + torch.exp(log_scale) * torch.randn(mean.shape, generator=generator).to(mean)
        return self.scaler.inverse(y)
