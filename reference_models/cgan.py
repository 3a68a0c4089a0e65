"""`cgan`: the class-conditional GAN on the condition protocol (genbench/models/conditions.py; docs/conditional.md):
the label as a one-hot vector beside z in the generator, a projection discriminator D(x, y), hinge loss, on
`gan`'s image configs (reference_models/gan.py).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from genbench.data.base import DatasetInfo
from genbench.errors import InvalidInputError
from genbench.models import register_model
from reference_models.nets import ConvDecoder, ConvEncoder, autocast, batch_indices, check_image_shape

LOSSES = ("ns", "hinge", "wgan-gp")
from reference_models.gan import GAN, GANConfig


class ProjectionDiscriminator(nn.Module):
    """D(x, y) = w . phi(x) + b + e_y . phi(x) (Miyato & Koyama 2018): the DCGAN trunk's features phi(x) (`ConvEncoder`'s
    convs), a linear head, and the inner product of phi(x) with a learned embedding e_y of the label."""

    def __init__(self, c: int, h: int, w: int, num_classes: int, ch: int, norm: str = "batch"):
        super().__init__()
        self.trunk = ConvEncoder(c, h, w, 1, ch, norm=norm)
        self.embed = nn.Parameter(torch.zeros(num_classes, self.trunk.head.in_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:  # the trunk resets itself; the projection starts small
        with torch.no_grad():
            self.embed.normal_(0.0, 0.02)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        phi = self.trunk.net(x).flatten(1)
        return self.trunk.head(phi) + (self.embed[y].to(phi) * phi).sum(1, keepdim=True)


@dataclass
class CGANConfig(GANConfig):
    @classmethod
    def for_budget(cls, budget: str, info: DatasetInfo) -> "CGANConfig":
        cfg = cls(**dataclasses.asdict(GANConfig.for_budget(budget, info)))  # the image GAN's configs
        cfg.loss = "hinge"  # the projection discriminator's loss (Miyato & Koyama 2018)
        return cfg


@register_model
class CGAN(GAN):
    """Class-conditional GAN (module docstring of `genbench.models.conditions`): the generator G(z, y) takes the
    one-hot label concatenated to z (cGAN, Mirza & Osindero 2014), the discriminator is a projection discriminator
    D(x, y) (`ProjectionDiscriminator`). Training draws each real batch with its labels and the fakes for labels
    drawn from the training labels (same class frequencies); the held-out checkpoint selection generates a fixed
    balanced set of labels (i mod K). `condition=None` draws the labels uniformly over the K classes. Image
    datasets with labels only; `pack` must be 1 and `loss` "ns" or "hinge" (the default)."""

    name = "cgan"
    family = "gan"
    modalities = ("image",)
    conditional = True
    Config = CGANConfig

    def __init__(self, config: CGANConfig, info: DatasetInfo):
        super().__init__(config, info)
        if config.pack != 1:
            raise InvalidInputError(f"cgan: pack must be 1 (the projection discriminator scores single samples), "
                                    f"got {config.pack}")
        if config.loss == "wgan-gp":
            raise InvalidInputError("cgan: loss 'wgan-gp' is not supported (interpolates have no single label); "
                                    "use 'hinge' or 'ns'")
        c, h, w = check_image_shape(info)
        K = int(info.num_classes)
        self.G = ConvDecoder(config.z_dim + K, c, h, w, config.ch)
        self.D = ProjectionDiscriminator(c, h, w, K, config.ch)
        self.G_ema = copy.deepcopy(self.G).requires_grad_(False).eval()
        self.G_best = copy.deepcopy(self.G).requires_grad_(False).eval()
        self._all_labels: Optional[torch.Tensor] = None
        self._train_y: Optional[torch.Tensor] = None

    def fit(self, train, budget=None, seed=0, device="cpu", callbacks=(), labels=None):
        """`gan`'s training with the labels (`labels`: (N,) integers in 0..K-1, one per training image)."""
        from genbench.models.conditions import training_labels

        self._all_labels = training_labels(self, labels, len(train))
        try:
            return super().fit(train, budget=budget, seed=seed, device=device, callbacks=callbacks)
        finally:
            self._all_labels = self._train_y = None

    def _split_labels(self, keep, device) -> None:
        y = self._all_labels if keep is None else self._all_labels[keep]
        self._train_y = y.to(device)

    def _batch_labels(self, idx, n, gen):
        y_fake = self._train_y[batch_indices(len(self._train_y), n, gen).to(self._train_y.device)]
        return (None if idx is None else self._train_y[idx]), y_fake

    def _eval_labels(self, start: int, n: int) -> torch.Tensor:
        return (torch.arange(start, start + n) % int(self.info.num_classes)).to(self.device)

    def _sample(self, n: int, generator: torch.Generator, condition: Optional[torch.Tensor] = None) -> torch.Tensor:
        G = self.G_best if self.config.checkpoint == "best" else self.G_ema
        G.eval()
        z = torch.randn(n, self.config.z_dim, generator=generator)
        y = condition if condition is not None else torch.randint(0, int(self.info.num_classes), (n,), generator=generator)
        with autocast(self.device, self.config.mixed_precision):
            out = self._generate(G, z.to(self.device), y.long().to(self.device))
        return torch.round(self._to_data(out.float()).clamp(0, 1) * 255) / 255
