"""The Gaussian diffusion process behind `ddpm` and `cfg-ddpm`: the noise schedule, the closed forms of q, the
epsilon-prediction loss, the DDPM / DDIM samplers and the variational bound's terms. The formulas are written out
in reference_models/diffusion.py's docstring; the network and the trainer are kept apart from this process."""

from __future__ import annotations

import math
from typing import Optional

import torch

from genbench.errors import InvalidInputError

SAMPLERS = ("ddpm", "ddim")

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
