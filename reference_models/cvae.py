"""`cvae`: the class-conditional VAE on the condition protocol (genbench/models/conditions.py; docs/conditional.md):
label planes into the encoder, the label into the decoder, a learned prior p(z | y) per class, on `vae`'s image
configs (reference_models/vae.py).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from genbench.data.base import DatasetInfo
from genbench.errors import InvalidInputError
from genbench.models import register_model
from reference_models.nets import ConvDecoder, ConvEncoder, check_image_shape
from reference_models.vae import VAE, VAEConfig


@dataclass
class CVAEConfig(VAEConfig):
    @classmethod
    def for_budget(cls, budget: str, info: DatasetInfo) -> "CVAEConfig":
        cfg = cls(**dataclasses.asdict(VAEConfig.for_budget(budget, info)))  # the image VAE's configs
        cfg.prior_components, cfg.prior_type = 1, "mog"  # the prior is p(z | y) (CVAE docstring), not these
        if budget == "quick":  # Fashion-MNIST conditional accuracy 40% after vae's 1500 steps, 55% after 3000
            cfg.steps = 3000
        return cfg


class ClassPrior(nn.Module):
    """p(z | y) = N(z; mu_y, diag sigma_y^2): one learned diagonal Gaussian per class (`params(cond)` -> the
    (n, L) means and log-stds of the labels `cond`)."""

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.means = nn.Parameter(torch.zeros(num_classes, dim))
        self.log_std = nn.Parameter(torch.zeros(num_classes, dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.means.normal_()  # distinct classes from the start
            self.log_std.zero_()

    def params(self, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.means[cond], self.log_std[cond]


@register_model
class CVAE(VAE):
    """Class-conditional VAE (Sohn et al. 2015, with the class as the condition): q(z | x, y), p(x | z, y) and a
    learned class-conditional prior p(z | y) = N(mu_y, diag sigma_y^2) (`ClassPrior`). The encoder sees the
    one-hot label as K extra constant input planes, the decoder the one-hot label concatenated to z. (With a
    shared N(0, I) prior the encoder keeps the class in z and the decoder learns to ignore the label: on
    Fashion-MNIST at the quick budget such a CVAE's samples matched their label 21% of the time.) The KL term is
    the one-sample estimate log q(z | x, y) - log p(z | y), as for the mixture priors of `vae`.
    `sample(n, seed, condition=y)`: z ~ p(z | y), x ~ p(x | z, y);
    `condition=None` draws the labels uniformly over the K classes. `log_prob(x)` is a lower bound on the marginal
    log p(x) = log (1/K) sum_y p(x | y) under that uniform class prior: log (1/K) sum_y exp(IWAE_y(x)) (K IWAE
    passes); `elbo(x, labels)` is the ELBO of log p(x | y). Image datasets with labels only."""

    name = "cvae"
    family = "vae"
    modalities = ("image",)
    conditional = True
    Config = CVAEConfig

    def __init__(self, config: CVAEConfig, info: DatasetInfo):
        if config.prior_components > 1:
            raise InvalidInputError("cvae: prior_components must be 1; its prior is one learned Gaussian per class, "
                                    "p(z | y)")
        super().__init__(config, info)
        c, h, w = check_image_shape(info)
        K, L = int(info.num_classes), config.latent_dim
        self.encoder = ConvEncoder(c + K, h, w, 2 * L, config.ch)
        self.decoder = ConvDecoder(L + K, 2 * c, h, w, config.ch)
        self.prior = ClassPrior(K, L)
        self._train_y: Optional[torch.Tensor] = None

    def _need(self, cond: Optional[torch.Tensor]) -> torch.Tensor:
        if cond is None:
            raise InvalidInputError(f"model {self.name!r} is class-conditional: give the class labels")
        return F.one_hot(cond.long(), int(self.info.num_classes))

    def _encode(self, y, cond=None):
        oh = self._need(cond).to(y)
        return super()._encode(torch.cat([y, oh[:, :, None, None].expand(-1, -1, *y.shape[2:])], 1))

    def _decode(self, z, cond=None):
        return super()._decode(torch.cat([z, self._need(cond).to(z)], 1))

    def fit(self, train, budget=None, seed=0, device="cpu", callbacks=(), labels=None):
        """`vae`'s training with the labels (`labels`: (N,) integers in 0..K-1, one per training image)."""
        from genbench.models.conditions import training_labels

        y = training_labels(self, labels, len(train))
        self._train_y = y.to(device)
        try:
            return super().fit(train, budget=budget, seed=seed, device=device, callbacks=callbacks)
        finally:
            self._train_y = None

    def _batch_labels(self, idx):
        return self._train_y[idx]

    def _log_pz(self, z, prior_params=None, cond=None):
        """log p(z | y) for z (..., n, L) and the n labels `cond`."""
        if cond is None:
            raise InvalidInputError(f"model {self.name!r} is class-conditional: give the class labels")
        mu, log_std = self.prior.params(cond.long().to(z.device))
        return (-0.5 * ((z - mu) * torch.exp(-log_std)) ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)

    def _log_prob(self, x: torch.Tensor) -> torch.Tensor:
        K = int(self.info.num_classes)
        per = [self._iwae(x, torch.full((len(x),), c, dtype=torch.long, device=x.device)) for c in range(K)]
        return torch.logsumexp(torch.stack(per), 0) - math.log(K)

    @torch.inference_mode()
    def elbo(self, x: torch.Tensor, labels=None, batch_size: int = 256) -> torch.Tensor:
        """Per-example ELBO of log p(x | labels) in nats, one z per example from a `config.eval_seed` generator."""
        from genbench.models.conditions import check_condition

        if labels is None:
            raise InvalidInputError(f"model {self.name!r}: elbo(x, labels) needs the class of each example")
        c = check_condition(labels, len(x), self.condition_classes, f"model {self.name!r}")
        self.encoder.eval(), self.decoder.eval()
        gen = torch.Generator().manual_seed(self.config.eval_seed)
        out = []
        for i in range(0, len(x), batch_size):
            y = self._prep(x[i:i + batch_size].to(self.device).float())
            rec, kl = self._neg_elbo_terms(y, gen, c[i:i + batch_size].to(self.device))
            out.append((rec - kl).double().cpu())
        return torch.cat(out) if out else torch.empty(0, dtype=torch.float64)

    def _sample(self, n: int, generator: torch.Generator, condition: Optional[torch.Tensor] = None) -> torch.Tensor:
        self.decoder.eval()
        y = condition if condition is not None else torch.randint(0, int(self.info.num_classes), (n,), generator=generator)
        y = y.long().to(self.device)
        mu, log_std = self.prior.params(y)
        z = mu + torch.exp(log_std) * torch.randn(n, self.config.latent_dim, generator=generator).to(mu)
        return self._decode_sample(z, generator, y)
