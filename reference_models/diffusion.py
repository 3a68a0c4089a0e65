"""DDPM: denoising diffusion probabilistic model with epsilon prediction (Ho et al. 2020), DDPM and DDIM samplers
(Song et al. 2021) with any number of steps, and the variational bound as `log_prob`.

Three objects, kept apart (as in lucidrains' denoising-diffusion-pytorch):
- the network (`reference_models/unet.py`: a small UNet for images, an MLP for points) predicts the noise;
- `GaussianDiffusion` is the process: the schedule, the closed forms, the loss, the samplers and the bound;
- `DDPM` (registered as "ddpm") is the trainer / genbench model around them.

The process (t = 1..T; code indexes them i = t - 1 = 0..T-1; alpha_bar_0 := 1):
    q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I)          alpha_t = 1 - beta_t, alpha_bar_t = prod alpha_s
    q(x_t | x_0)     = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)                                    `q_mean_var`
    q(x_{t-1} | x_t, x_0) = N(mu~, beta~_t I),  beta~_t = beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t),
        mu~ = sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t) x_0 + sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) x_t
                                                                                               `q_posterior_mean_var`
    loss = E_{t, x_0, eps} || eps - eps_theta(sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps, t) ||^2    ("L_simple")
        optionally weighted per t by min(SNR_t, gamma) / SNR_t, SNR_t = alpha_bar_t / (1 - alpha_bar_t) ("min-SNR-gamma",
        Hang et al. 2023; `config.min_snr_gamma`): still epsilon prediction, but the nearly-clean timesteps stop
        dominating the gradient, so short runs learn the global shapes (the high-noise steps) sooner.
    p(x_{t-1} | x_t) = q(x_{t-1} | x_t, x0_hat) with x0_hat = (x_t - sqrt(1 - alpha_bar_t) eps_theta) / sqrt(alpha_bar_t)
        (the "fixed small" variance beta~_t; with `config.clip_x0` images clip x0_hat to [-1, 1]).

Samplers (`config.sampler`, `config.sample_steps`, `config.clip_x0`; `model.set_sampler("ddim", 25, clip_x0=True)`
changes them on a trained model):
- "ddpm": ancestral sampling on a respaced chain (Nichol & Dhariwal 2021): the chosen timesteps tau_1 < ... < tau_S
  define new betas 1 - alpha_bar_{tau_k} / alpha_bar_{tau_{k-1}}; with S = T it is the original chain.
- "ddim": x_{prev} = sqrt(alpha_bar_prev) x0_hat + sqrt(1 - alpha_bar_prev - sigma^2) eps_hat + sigma z with
  sigma = eta sqrt(beta~) (eta = `config.eta`). eta = 0 is deterministic given x_T (`sample_from_noise`). eta = 1
  has exactly the DDPM ancestral update (the DDIM mean with sigma^2 = beta~ *is* mu~(x_t, x0_hat)), and both draw
  the same noise in the same order, so DDIM(eta=1, S steps) and DDPM(S steps) give the same samples.
Every step is one network evaluation: `nfe_per_sample == sample_steps`. The last step returns the mean (no noise).
Clipping x0_hat matters for few-step samplers: deterministic DDIM needs it (an unclipped x0_hat at high noise is
eps_theta's error amplified by sqrt((1 - alpha_bar) / alpha_bar)), while the stochastic ancestral sampler corrects
such errors with its noise and did better without clipping in our short CPU runs.

Precision: the network runs under bf16 autocast on CUDA (`mixed_precision`) and, when `cpu_bf16` is set, on CPUs that
multiply bf16 natively; the schedule and closed forms are float64 / float32, and `log_prob` always evaluates the
network in float32.

Likelihood (`log_prob`, kind "bound"): the variational bound of the full T-step chain,
    log p(x_0) >= -KL(q(x_T|x_0) || N(0, I)) - sum_{t=2..T} KL(q(x_{t-1}|x_t,x_0) || p(x_{t-1}|x_t)) + E_q log p(x_0|x_1).
- images: p(x_0 | x_1) is the DDPM paper's *discrete decoder*: each pixel's Gaussian N(mu_theta(x_1), sigma_1^2)
  integrated over its 8-bit bin of width 2/255 (edge bins take the tails), so the bound is on the log-probability
  of the discrete 8-bit image, the base.py convention (bits/dim = -log_prob / (D ln 2)).
- points: p(x_0 | x_1) is the Gaussian N(mu_theta(x_1), sigma_1^2) on standardised coordinates, plus the
  standardisation's log-Jacobian: a bound on the continuous log density (nats).
  sigma_1^2 = beta~_2 (beta~_1 = 0; improved-diffusion's "clipped" log-variance).
Each KL term uses one x_t ~ q(x_t|x_0). With `config.vlb_timesteps = K < T` the sum over t is estimated from K
timesteps (the decoder term exactly, plus K - 1 KL terms, one per block of the remaining T - 1, each scaled by its
block size): an unbiased estimate of the same bound, cheap enough for CPU; K = None (or >= T) sums all T terms. The noise comes from a generator seeded by
`config.eval_seed`, so log_prob is reproducible.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from genbench.data.base import DatasetInfo
from genbench.errors import InvalidInputError
from genbench.models import register_model
from genbench.models.base import LOG_PROB_BOUND, GenerativeModel, ModelConfig, check_budget
from reference_models.nets import Scaler, TrainLoop, adam, apply_budget, autocast, batch_indices, check_image_shape, check_train
from reference_models.unet import MLPDenoiser, UNet

SAMPLERS = ("ddpm", "ddim")


# ---------------------------------------------------------------------------------------------- the process
def beta_schedule(kind: str, T: int) -> torch.Tensor:
    """float64 betas (T,). "linear": Ho et al.'s 1e-4..0.02 rescaled by 1000/T (so any T spans the same
    noise range); "cosine": Nichol & Dhariwal's alpha_bar(t) = cos^2((t/T + s)/(1 + s) pi/2), betas capped at 0.999."""
    if kind == "linear":
        scale = 1000.0 / T
        return torch.linspace(scale * 1e-4, scale * 0.02, T, dtype=torch.float64)
    if kind == "cosine":
        s = 0.008
        f = lambda u: math.cos((u + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
        return torch.tensor([min(1 - f((i + 1) / T) / f(i / T), 0.999) for i in range(T)], dtype=torch.float64)
    raise InvalidInputError(f"unknown beta schedule {kind!r}; use 'linear' or 'cosine'")


def normal_kl(mean1, logvar1, mean2, logvar2) -> torch.Tensor:
    """Elementwise KL(N(mean1, e^logvar1) || N(mean2, e^logvar2))."""
    return 0.5 * (logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2) - 1.0)


def discretized_gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """Elementwise log P(x) for 8-bit values x = 2k/255 - 1 under N(mean, e^{2 log_scale}) integrated over the bin
    [x - 1/255, x + 1/255]; level 0 takes (-inf, -1 + 1/255], level 255 [1 - 1/255, inf): the 256 masses sum to 1."""
    inv = torch.exp(-log_scale)
    a = torch.where(x < -0.999, torch.full_like(x, -math.inf), (x - 1 / 255 - mean) * inv)
    b = torch.where(x > 0.999, torch.full_like(x, math.inf), (x + 1 / 255 - mean) * inv)
    # log(Phi(b) - Phi(a)) computed on the side of the distribution where it does not cancel
    flip = (a + b) > 0  # bin mostly right of the mean: use Phi(-a) - Phi(-b)
    lo, hi = torch.where(flip, -b, a), torch.where(flip, -a, b)
    log_hi, log_lo = torch.special.log_ndtr(hi), torch.special.log_ndtr(lo)
    return log_hi + torch.log1p(-torch.exp((log_lo - log_hi).clamp(max=-1e-12))).clamp_min(-1e4)


class GaussianDiffusion:
    """The DDPM process for a fixed schedule; every method takes the noise model `eps_model(x_t, t_index)`."""

    def __init__(self, betas: torch.Tensor, clip_x0: bool):
        b = betas.double()
        self.T = len(b)
        self.clip_x0 = clip_x0
        self.betas = b
        self.alphas = 1 - b
        self.alpha_bar = torch.cumprod(self.alphas, 0)
        self.alpha_bar_prev = torch.cat([torch.ones(1, dtype=torch.float64), self.alpha_bar[:-1]])
        self.post_var = b * (1 - self.alpha_bar_prev) / (1 - self.alpha_bar)  # beta~ (post_var[0] = 0)
        self.post_logvar_clipped = torch.log(torch.cat([self.post_var[1:2], self.post_var[1:]]))

    @staticmethod
    def _at(v: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """v[t] shaped to broadcast against x (float32 on x's device)."""
        return v.to(x.device)[t].to(x.dtype).view(-1, *([1] * (x.dim() - 1)))

    # ---- closed forms -----------------------------------------------------------------------------------------
    def q_mean_var(self, x0: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of q(x_t | x_0) (t: 0-based indices)."""
        return self._at(self.alpha_bar.sqrt(), t, x0) * x0, self._at(1 - self.alpha_bar, t, x0).expand_as(x0)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self._at(self.alpha_bar.sqrt(), t, x0) * x0 + self._at((1 - self.alpha_bar).sqrt(), t, x0) * noise

    def q_posterior_mean_var(self, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of q(x_{t-1} | x_t, x_0) (t: 0-based indices; at t = 0 the mean is x_0, variance 0)."""
        c0 = self.alpha_bar_prev.sqrt() * self.betas / (1 - self.alpha_bar)
        ct = self.alphas.sqrt() * (1 - self.alpha_bar_prev) / (1 - self.alpha_bar)
        mean = self._at(c0, t, x0) * x0 + self._at(ct, t, xt) * xt
        return mean, self._at(self.post_var, t, x0).expand_as(x0)

    def predict_x0(self, xt: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        x0 = (xt - self._at((1 - self.alpha_bar).sqrt(), t, xt) * eps) / self._at(self.alpha_bar.sqrt(), t, xt)
        return x0.clamp(-1, 1) if self.clip_x0 else x0

    # ---- training ---------------------------------------------------------------------------------------------
    def loss(self, eps_model, x0: torch.Tensor, generator: torch.Generator, min_snr_gamma: Optional[float] = None) -> torch.Tensor:
        """The epsilon-prediction loss on a batch: t ~ U{0..T-1}, eps ~ N(0, I), both drawn from `generator` (CPU).
        `min_snr_gamma` = None: L_simple (every t weighted 1). gamma > 0: each example's squared error is weighted by
        min(SNR_t, gamma) / SNR_t with SNR_t = alpha_bar_t / (1 - alpha_bar_t) ("min-SNR", Hang et al. 2023): the
        low-noise steps, whose x0 error is tiny, stop dominating the gradient, which speeds up convergence."""
        t = torch.randint(0, self.T, (x0.shape[0],), generator=generator).to(x0.device)
        noise = torch.randn(x0.shape, generator=generator).to(x0.device)
        pred = eps_model(self.q_sample(x0, t, noise), t)
        per_example = ((pred.float() - noise) ** 2).flatten(1).mean(1)
        if min_snr_gamma is None:
            return per_example.mean()
        snr = self.alpha_bar / (1 - self.alpha_bar)
        weight = (snr.clamp(max=min_snr_gamma) / snr).to(x0.device)[t].float()
        return (weight * per_example).mean()

    # ---- sampling ---------------------------------------------------------------------------------------------
    def timesteps(self, steps: int) -> list[int]:
        """`steps` evenly spaced 0-based timesteps from T-1 down to 0 (all T when steps == T)."""
        if not 1 <= steps <= self.T:
            raise InvalidInputError(f"sample_steps must be between 1 and T={self.T}, got {steps}")
        ts = sorted({int(round(v)) for v in torch.linspace(0, self.T - 1, steps, dtype=torch.float64).tolist()})
        return ts[::-1]

    @torch.no_grad()
    def sample_loop(self, eps_model, x: torch.Tensor, sampler: str, steps: int, eta: float,
                    generator: Optional[torch.Generator]) -> torch.Tensor:
        """Run the reverse chain from x = x_T. "ddpm": ancestral on the respaced chain; "ddim": DDIM with `eta`.
        Noise is drawn from `generator` (CPU) for every step but the last; with ddim eta=0 nothing is drawn."""
        if sampler not in SAMPLERS:
            raise InvalidInputError(f"unknown sampler {sampler!r}; use one of {SAMPLERS}")
        ts = self.timesteps(steps)
        ab = self.alpha_bar
        for k, i in enumerate(ts):
            prev = ts[k + 1] if k + 1 < len(ts) else None
            ab_t = float(ab[i])
            ab_prev = float(ab[prev]) if prev is not None else 1.0
            t = torch.full((x.shape[0],), i, device=x.device, dtype=torch.long)
            eps = eps_model(x, t).float()
            x0 = (x - math.sqrt(1 - ab_t) * eps) / math.sqrt(ab_t)
            if self.clip_x0:
                x0 = x0.clamp(-1, 1)
            beta = 1 - ab_t / ab_prev  # the respaced chain's beta for this step
            post_var = beta * (1 - ab_prev) / (1 - ab_t)
            if sampler == "ddpm":
                mean = (math.sqrt(ab_prev) * beta / (1 - ab_t)) * x0 + (math.sqrt(1 - beta) * (1 - ab_prev) / (1 - ab_t)) * x
                var = post_var
            else:
                var = eta**2 * post_var
                eps_c = (x - math.sqrt(ab_t) * x0) / math.sqrt(1 - ab_t)  # eps consistent with the (clipped) x0
                mean = math.sqrt(ab_prev) * x0 + math.sqrt(max(1 - ab_prev - var, 0.0)) * eps_c
            if prev is not None and var > 0:
                x = mean + math.sqrt(var) * torch.randn(x.shape, generator=generator).to(x)
            else:
                x = mean
        return x

    # ---- the variational bound --------------------------------------------------------------------------------
    def vlb_terms(self, eps_model, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, image: bool) -> torch.Tensor:
        """Per-example L_t in nats for 0-based t: t > 0 -> KL(q(x_{t-1}|x_t,x0) || p(x_{t-1}|x_t));
        t == 0 -> -log p(x0 | x1) (discrete decoder for images, Gaussian for points)."""
        xt = self.q_sample(x0, t, noise)
        eps = eps_model(xt, t).float()
        x0_hat = self.predict_x0(xt, t, eps)
        p_mean, _ = self.q_posterior_mean_var(x0_hat, xt, t)
        p_logvar = self._at(self.post_logvar_clipped, t, x0).expand_as(x0)
        q_mean, q_var = self.q_posterior_mean_var(x0, xt, t)
        q_logvar = torch.log(q_var.clamp_min(1e-30))
        kl = normal_kl(q_mean, q_logvar, p_mean, p_logvar).flatten(1).sum(1)
        if image:
            dec = -discretized_gaussian_log_prob(x0, p_mean, 0.5 * p_logvar).flatten(1).sum(1)
        else:
            dec = (0.5 * ((x0 - p_mean) ** 2 * torch.exp(-p_logvar) + p_logvar + math.log(2 * math.pi))).flatten(1).sum(1)
        return torch.where(t == 0, dec, kl)

    def prior_kl(self, x0: torch.Tensor) -> torch.Tensor:
        """KL(q(x_T | x_0) || N(0, I)) per example (the L_T term; no parameters)."""
        tT = torch.full((x0.shape[0],), self.T - 1, device=x0.device, dtype=torch.long)
        m, v = self.q_mean_var(x0, tT)
        return normal_kl(m, torch.log(v), torch.zeros_like(m), torch.zeros_like(m)).flatten(1).sum(1)


# ---------------------------------------------------------------------------------------------- the model
@dataclass
class DDPMConfig(ModelConfig):
    steps: int = 20000
    batch_size: int = 128
    lr: float = 2e-4
    timesteps: int = 1000  # T of the chain the network is trained on
    schedule: str = "linear"  # "linear" | "cosine"
    sampler: str = "ddpm"  # "ddpm" (ancestral) | "ddim"
    sample_steps: int = 1000  # network evaluations per sample (<= timesteps)
    min_snr_gamma: Optional[float] = None  # loss weighting: None = L_simple; gamma = min-SNR-gamma weights (GaussianDiffusion.loss)
    eta: float = 0.0  # DDIM stochasticity (0: deterministic given x_T; 1: same as DDPM)
    clip_x0: bool = True  # images: clip x0_hat to [-1, 1] in p(x_{t-1} | x_t) (sampling and the bound alike)
    hidden: int = 256  # points: MLP width
    depth: int = 3  # points: residual blocks
    ch: int = 32  # images: UNet base channels
    ch_mult: tuple = (1, 2, 2)  # images: channel multiplier per resolution
    num_res_blocks: int = 1
    patch: int = 1  # images: UNet space-to-depth factor (2: the convs run at half resolution, ~4x cheaper)
    dropout: float = 0.0
    ema_decay: float = 0.999  # sampling and log_prob use the EMA of the weights (warmed up: min(decay, (1+s)/(10+s)))
    grad_clip: float = 1.0
    warmup_steps: int = 100  # linear learning-rate warm-up
    lr_final: float = 0.1  # then cosine decay to lr * lr_final at `steps`
    vlb_timesteps: Optional[int] = None  # log_prob: None = exact sum over all T terms; K = stratified K-term estimate
    eval_seed: int = 0  # seeds the noise of log_prob
    log_every: int = 50
    mixed_precision: bool = True  # bf16 autocast for the network on CUDA (training and sampling; log_prob in float32)
    cpu_bf16: bool = False  # ... and on CPU too, where it multiplies bf16 natively (reference_models.nets.autocast)

    def __post_init__(self):
        self.ch_mult = tuple(self.ch_mult)

    @classmethod
    def for_budget(cls, budget: str, info: DatasetInfo) -> "DDPMConfig":
        check_budget(budget)
        if info.modality == "points":
            return {
                "smoke": cls(steps=30, batch_size=64, hidden=32, depth=1, timesteps=50, sample_steps=50, warmup_steps=5),
                "quick": cls(steps=5000, batch_size=256, lr=1e-3, hidden=128, depth=3, timesteps=250, sample_steps=250,
                             ema_decay=0.995),
                "standard": cls(steps=40000, batch_size=512, lr=1e-3, hidden=512, depth=4, timesteps=1000, sample_steps=1000),
            }[budget]
        check_image_shape(info)
        return {
            "smoke": cls(steps=4, batch_size=8, ch=8, ch_mult=(1, 2), timesteps=50, sampler="ddim", sample_steps=5,
                         vlb_timesteps=5, warmup_steps=1),
            # quick (CPU, 1 thread: 59.7 train CPU-s + 19.4 per 1000 samples at load 1.6, ~95 under load 4; FD 162.7
            # on 5000 samples, bench_model_quality.py): a ch-32 UNet on 2x2 patches (14x14
            # convs) in bf16 where the CPU has it, min-SNR-5 weighting, a fast EMA for the short run. Many small
            # batches beat fewer large ones at equal CPU (650 x 32 in ~73 CPU-s: FD 160 on 2000 samples; 400 x 64 in
            # ~72: 248). The stochastic ancestral sampler without x0 clipping beat clipped DDIM (10-40 steps); 30
            # evenly spaced steps (~23 CPU-s per 1000 images) matched 40 (179.9 vs 179.9 on a 600-step model), 25 lost
            # (191); spacings denser near t = 0 did not buy steps (400-step model, 40 even steps: 251; 20 steps at
            # t ~ (k/19)^2: 352, ^1.5: 307).
            "quick": cls(steps=650, batch_size=32, lr=1e-3, ch=32, ch_mult=(1, 2, 2), patch=2, timesteps=1000,
                         min_snr_gamma=5.0, sampler="ddpm", sample_steps=30, clip_x0=False, vlb_timesteps=10,
                         ema_decay=0.99, warmup_steps=20, cpu_bf16=True),
            "standard": cls(steps=100000, batch_size=128, lr=2e-4, ch=64, ch_mult=(1, 2, 2), num_res_blocks=2, dropout=0.1,
                            timesteps=1000, sampler="ddpm", sample_steps=1000, vlb_timesteps=200, ema_decay=0.9995),
        }[budget]


@register_model
class DDPM(GenerativeModel):
    name = "ddpm"
    family = "diffusion"
    log_prob_kind = LOG_PROB_BOUND
    Config = DDPMConfig

    def __init__(self, config: DDPMConfig, info: DatasetInfo):
        super().__init__(config, info)
        self.is_image = info.modality == "image"
        if self.is_image:
            check_image_shape(info)
        self.scaler = None if self.is_image else Scaler(info.dim)
        self._build(seed=0)
        self.process = GaussianDiffusion(beta_schedule(config.schedule, config.timesteps),
                                         clip_x0=self.is_image and config.clip_x0)
        self.set_sampler(config.sampler, config.sample_steps, config.eta)

    def _build(self, seed: int) -> None:
        """Fresh networks with weights initialised from `seed` (fit rebuilds them: same seed, same model)."""
        cfg = self.config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if self.is_image:
                self.net = UNet(self.info.shape[0], cfg.ch, cfg.ch_mult, cfg.num_res_blocks, cfg.dropout, cfg.patch)
            else:
                self.net = MLPDenoiser(self.info.dim, cfg.hidden, cfg.depth)
        self.ema = copy.deepcopy(self.net).requires_grad_(False)

    def model_modules(self) -> dict[str, nn.Module]:
        return {"ema": self.ema}  # the sampler's weights; the raw training weights are a same-sized copy

    def modules(self) -> dict[str, nn.Module]:
        m = {"net": self.net, "ema": self.ema}
        if self.scaler is not None:
            m["scaler"] = self.scaler
        return m

    def set_sampler(self, sampler: str, steps: Optional[int] = None, eta: Optional[float] = None,
                    clip_x0: Optional[bool] = None) -> "DDPM":
        """Choose the sampler of a trained model (no retraining): e.g. set_sampler("ddim", 25, clip_x0=True) (few-step
        DDIM wants clipping). Updates the config, so a saved model keeps it; clip_x0 also changes the bound."""
        if sampler not in SAMPLERS:
            raise InvalidInputError(f"unknown sampler {sampler!r}; use one of {SAMPLERS}")
        steps = int(self.config.sample_steps if steps is None else steps)
        self.process.timesteps(steps)  # validates 1 <= steps <= T
        self.config.sampler, self.config.sample_steps = sampler, steps
        if eta is not None:
            self.config.eta = float(eta)
        if clip_x0 is not None:
            self.config.clip_x0 = bool(clip_x0)
            self.process.clip_x0 = self.is_image and self.config.clip_x0
        return self

    @property
    def nfe_per_sample(self) -> float:
        return float(len(self.process.timesteps(self.config.sample_steps)))

    # ---- data <-> model space ---------------------------------------------------------------------------------
    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2 - 1 if self.is_image else self.scaler(x)

    def _eps(self, net: nn.Module, float32: bool = False):
        """The noise model eps(x_t, t) in float32; the network runs under bf16 autocast where the config asks for
        it, unless `float32` (the variational bound is always evaluated in float32)."""
        on = self.config.mixed_precision and not float32

        def f(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            with autocast(self.device, on, self.config.cpu_bf16):
                return net(x, t).float()
        return f

    # ---- training ---------------------------------------------------------------------------------------------
    def fit(self, train, budget=None, seed=0, device="cpu", callbacks=()):
        cfg = apply_budget(self.config, budget, self.info)
        train = check_train(train, self.info)
        self._build(seed)
        torch.manual_seed(seed)  # dropout
        gen = torch.Generator().manual_seed(seed)
        self.to(device)
        dev = self.device
        if self.scaler is not None:
            self.scaler.fit(train.to(dev))
        data = self._prep(train.to(dev))
        if self.memory_format(dev) == torch.channels_last:  # the weights were made channels-last by self.to
            data = data.contiguous(memory_format=torch.channels_last)
        opt = adam(self.net.parameters(), lr=cfg.lr)  # fused where the device has the kernel
        total, warm = max(1, cfg.steps), max(1, cfg.warmup_steps)
        sched = torch.optim.lr_scheduler.LambdaLR(  # linear warm-up, then cosine decay to lr * lr_final
            opt, lambda s: min(1.0, (s + 1) / warm) * (cfg.lr_final + (1 - cfg.lr_final) * 0.5 * (1 + math.cos(math.pi * min(s, total) / total))))
        self.net.train()
        eps_model = self._eps(self.net)
        loop = TrainLoop(cfg, self.history, callbacks, cfg.log_every)
        for step in loop:
            idx = batch_indices(len(data), cfg.batch_size, gen).to(dev)
            loss = self._train_loss(eps_model, data, idx, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            gnorm = torch.nn.utils.clip_grad_norm_(self.net.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            self._update_ema(min(cfg.ema_decay, (1 + step) / (10 + step)))
            loop.end_step(step, loss=float(loss.detach()), grad_norm=float(gnorm))
        loop.finish()
        self.net.eval(), self.ema.eval()
        return self.history

    def _train_loss(self, eps_model, data: torch.Tensor, idx: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The loss of one training batch `data[idx]` (the class-conditional subclass adds its labels here)."""
        return self.process.loss(eps_model, data[idx], generator, self.config.min_snr_gamma)

    @torch.no_grad()
    def _update_ema(self, decay: float) -> None:
        for pe, p in zip(self.ema.parameters(), self.net.parameters()):
            pe.mul_(decay).add_(p.detach(), alpha=1 - decay)
        for be, b in zip(self.ema.buffers(), self.net.buffers()):
            be.copy_(b)

    # ---- sampling ---------------------------------------------------------------------------------------------
    def _sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        x_T = torch.randn(n, *self.info.shape, generator=generator)
        return self.sample_from_noise(x_T, generator)

    @torch.no_grad()
    def sample_from_noise(self, x_T: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Run the configured sampler from the given x_T (model space, N(0, I)); returns data-space samples
        (images snapped to the 256 levels). DDIM with eta = 0 uses no generator: the output is a function of x_T."""
        self.ema.eval()
        x = x_T.to(self.device).float()
        if self.is_image and self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        y = self.process.sample_loop(self._eps(self.ema), x, self.config.sampler, self.config.sample_steps,
                                     self.config.eta, generator)
        if self.is_image:
            return torch.round((y.clamp(-1, 1) + 1) * 127.5) / 255.0
        return self.scaler.inverse(y)

    # ---- likelihood -------------------------------------------------------------------------------------------
    def log_prob(self, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Variational bound in nats per example (module docstring); reproducible through `config.eval_seed`."""
        self._eval_gen = torch.Generator().manual_seed(self.config.eval_seed)
        self.ema.eval()
        try:
            return super().log_prob(x, batch_size)
        finally:
            self._eval_gen = None

    def _log_prob(self, x: torch.Tensor) -> torch.Tensor:
        p, gen, n = self.process, self._eval_gen, x.shape[0]
        x0 = self._prep(x.float())
        eps_model = self._eps(self.ema, float32=True)
        K = self.config.vlb_timesteps
        groups = [(torch.zeros(n, dtype=torch.long), 1.0)]  # the decoder term, always exact
        if K is None or K >= p.T:
            groups += [(torch.full((n,), i, dtype=torch.long), 1.0) for i in range(1, p.T)]
        else:  # the KL terms t = 1..T-1: one t per stratum per example, weighted by the stratum size
            K = max(1, K - 1)
            edges = [1 + round(j * (p.T - 1) / K) for j in range(K + 1)]
            for lo, hi in zip(edges[:-1], edges[1:]):
                if hi > lo:
                    groups.append((torch.randint(lo, hi, (n,), generator=gen), float(hi - lo)))
        total = p.prior_kl(x0).double()
        for t, w in groups:
            noise = torch.randn(x0.shape, generator=gen).to(x0)
            total = total + w * p.vlb_terms(eps_model, x0, t.to(x0.device), noise, self.is_image).double()
        lp = -total
        if not self.is_image:
            lp = lp + float(self.scaler.log_abs_det())
        return lp
