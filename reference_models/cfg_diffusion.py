"""Class-conditional DDPM/DDIM with classifier-free guidance (Ho & Salimans 2022), on `diffusion.py`'s process.

One network learns both the conditional and the unconditional noise model: the UNet (`unet.py`, `num_classes=K`)
adds an embedding of the class label to its time embedding, and during training each example's label is replaced
by the null label K with probability `config.label_dropout` ("label dropout", p_uncond = 0.1 in the paper).

Sampling with guidance scale s (`config.guidance`, `model.set_guidance(s)`) uses, at every step of the DDPM or DDIM
sampler of `diffusion.py` (unchanged: same schedule, same noise drawn in the same order),

    eps~(x_t, y) = eps(x_t, null) + s * (eps(x_t, y) - eps(x_t, null))

the scale convention of Imagen and diffusers' `guidance_scale` (the paper's w is s - 1):
- s = 0: the unconditional model alone, one network evaluation per step: exactly the unconditional sampler
  (`sample(n, seed)` without a condition) for the same seed, whatever the labels;
- s = 1: the conditional model alone, one evaluation per step;
- any other s: both, two evaluations per step (run as one batch of 2n), so `nfe_per_sample` doubles.
`condition=None` samples unconditionally (the null label) at any scale. `log_prob` is the variational bound of
the unconditional model (the null label): a bound on the marginal likelihood, as for `ddpm`.

Configs: `quick` is `ddpm`'s quick CPU config (a ch-32 UNet on 2x2 patches, 30 ancestral steps, bf16 where the
CPU has it) plus the label embedding, with more steps for the conditioning to be learned; `standard` is `ddpm`'s
GPU config. Labels come from the dataset (`fit(x, labels=y)`); a dataset without labels is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from genbench.data.base import DatasetInfo
from genbench.errors import InvalidInputError
from genbench.models import register_model
from reference_models.diffusion import DDPM, DDPMConfig
from reference_models.nets import autocast, check_image_shape
from reference_models.unet import UNet


@dataclass
class CFGDDPMConfig(DDPMConfig):
    label_dropout: float = 0.1  # training: share of labels replaced by the null label (p_uncond)
    guidance: float = 2.0  # sampling: scale s (0: unconditional, 1: conditional, > 1: guided; module docstring)

    @classmethod
    def for_budget(cls, budget: str, info: DatasetInfo) -> "CFGDDPMConfig":
        cfg = super().for_budget(budget, info)  # ddpm's image configs (images only: check_image_shape)
        if budget == "quick":
            cfg.steps = 1200  # the label embedding needs more steps than ddpm's 650 to take hold
        return cfg


@register_model
class CFGDDPM(DDPM):
    name = "cfg-ddpm"
    family = "diffusion"
    modalities = ("image",)
    conditional = True
    Config = CFGDDPMConfig

    def __init__(self, config: CFGDDPMConfig, info: DatasetInfo):
        self._train_labels: Optional[torch.Tensor] = None
        super().__init__(config, info)
        self.set_guidance(config.guidance)
        if not 0.0 <= config.label_dropout < 1.0:
            raise InvalidInputError(f"label_dropout must be in [0, 1), got {config.label_dropout}")

    def _build(self, seed: int) -> None:
        cfg = self.config
        check_image_shape(self.info)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = UNet(self.info.shape[0], cfg.ch, cfg.ch_mult, cfg.num_res_blocks, cfg.dropout, cfg.patch,
                            num_classes=int(self.info.num_classes))
        import copy

        self.ema = copy.deepcopy(self.net).requires_grad_(False)

    def set_guidance(self, scale: float) -> "CFGDDPM":
        """Set the guidance scale s of a trained model (no retraining); saved with the config."""
        s = float(scale)
        if not s == s or s in (float("inf"), float("-inf")) or s < 0:
            raise InvalidInputError(f"guidance scale must be a finite number >= 0, got {scale!r}")
        self.config.guidance = s
        return self

    @property
    def passes(self) -> int:
        """Network evaluations per sampler step: 1 at s = 0 or 1, else 2."""
        return 1 if self.config.guidance in (0.0, 1.0) else 2

    @property
    def nfe_per_sample(self) -> float:
        return super().nfe_per_sample * self.passes

    # ---- the noise model ------------------------------------------------------------------------------------
    def _eps(self, net: nn.Module, float32: bool = False, y: Optional[torch.Tensor] = None):
        """eps(x_t, t) for labels y (None: the null label), float32 out (bf16 autocast as `ddpm`)."""
        on = self.config.mixed_precision and not float32

        def f(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            with autocast(self.device, on, self.config.cpu_bf16):
                return net(x, t, y).float()
        return f

    def _guided_eps(self, net: nn.Module, y: Optional[torch.Tensor]):
        """The sampler's noise model at the current guidance scale (module docstring)."""
        s = self.config.guidance
        if y is None or s == 0.0:
            return self._eps(net, y=None)
        if s == 1.0:
            return self._eps(net, y=y)
        null = torch.full_like(y, int(self.info.num_classes))
        on = self.config.mixed_precision

        def f(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            with autocast(self.device, on, self.config.cpu_bf16):
                both = net(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null])).float()
            e_c, e_u = both.chunk(2)
            return e_u + s * (e_c - e_u)
        return f

    # ---- training ---------------------------------------------------------------------------------------------
    def fit(self, train, budget=None, seed=0, device="cpu", callbacks=(), labels=None):
        """`ddpm`'s training with the labels (`labels`: (N,) integers in 0..K-1, one per training image)."""
        from genbench.models.conditions import training_labels

        y = training_labels(self, labels, len(train))
        self._train_labels = y.to(device)
        try:
            return super().fit(train, budget=budget, seed=seed, device=device, callbacks=callbacks)
        finally:
            self._train_labels = None

    def _train_loss(self, eps_model, data: torch.Tensor, idx: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        y = self._train_labels[idx]
        drop = (torch.rand(len(idx), generator=generator) < self.config.label_dropout).to(y.device)
        y = torch.where(drop, torch.full_like(y, int(self.info.num_classes)), y)
        return self.process.loss(self._eps(self.net, y=y), data[idx], generator, self.config.min_snr_gamma)

    # ---- sampling ---------------------------------------------------------------------------------------------
    def _sample(self, n: int, generator: torch.Generator, condition: Optional[torch.Tensor] = None) -> torch.Tensor:
        x_T = torch.randn(n, *self.info.shape, generator=generator)
        return self.sample_from_noise(x_T, generator, condition)

    @torch.no_grad()
    def sample_from_noise(self, x_T: torch.Tensor, generator: Optional[torch.Generator] = None,
                          condition: Optional[torch.Tensor] = None) -> torch.Tensor:
        """`ddpm.sample_from_noise` with the guided noise model for labels `condition` (None: unconditional)."""
        self.ema.eval()
        x = x_T.to(self.device).float()
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        y = None if condition is None else torch.as_tensor(condition, dtype=torch.long).to(self.device)
        out = self.process.sample_loop(self._guided_eps(self.ema, y), x, self.config.sampler, self.config.sample_steps,
                                       self.config.eta, generator)
        return torch.round((out.clamp(-1, 1) + 1) * 127.5) / 255.0
