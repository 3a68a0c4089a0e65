"""DDPM: denoising diffusion probabilistic model with epsilon prediction (Ho et al. 2020), DDPM and DDIM samplers
(Song et al. 2021) with any number of steps, and the variational bound as `log_prob`.

Three objects, kept apart (as in lucidrains' denoising-diffusion-pytorch):
- the network (`reference_models/unet.py`: a small UNet for images, an MLP for points) predicts the noise;
- `GaussianDiffusion` (`reference_models/gaussian_diffusion.py`) is the process: the schedule, the closed forms,
  the loss, the samplers and the bound;
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
from reference_models.gaussian_diffusion import (  # noqa: F401 (re-exported)
    SAMPLERS, GaussianDiffusion, beta_schedule, discretized_gaussian_log_prob, normal_kl)
from reference_models.nets import Scaler, TrainLoop, adam, autocast, batch_indices, check_image_shape, start_fit
from reference_models.unet import MLPDenoiser, UNet


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
        cfg, train, gen = start_fit(self, train, budget, seed, device)
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
