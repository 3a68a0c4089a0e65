"""`cpixelcnn`: the class-conditional gated PixelCNN on the condition protocol (genbench/models/conditions.py;
docs/conditional.md), in the PixelCNN paper's own conditional form (van den Oord et al. 2016, eq. 4):

    y = tanh(W_f * x + V_f^T h) * sigmoid(W_g * x + V_g^T h)        h: the one-hot class,

i.e. one learned vector per class and layer added to the pre-activations of both the vertical and the horizontal
stack (`GatedLayer` with `num_classes`, reference_models/pixelcnn.py). It models p(x | y) exactly; the network,
training, configs and incremental sampler are `pixelcnn`'s.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from genbench.models import register_model
from reference_models.pixelcnn import PixelCNN


@register_model
class CPixelCNN(PixelCNN):
    """Class-conditional gated PixelCNN (module docstring). `fit(train, labels=y)` minimises -log p(x | y);
    `sample(n, seed, condition=y)` draws pixel by pixel given each sample's class; `condition=None` draws the
    classes uniformly over the K classes (from the same generator). `log_prob(x)` is the exact
    log p(x) = log (1/K) sum_y p(x | y) of the model with uniform classes (K network passes);
    `log_prob_given(x, labels)` is the exact log p(x | y). Image datasets with labels only."""

    name = "cpixelcnn"
    conditional = True

    def _train_labels(self, train: torch.Tensor, labels) -> Optional[torch.Tensor]:
        from genbench.models.conditions import training_labels

        return training_labels(self, labels, len(train))

    def _log_prob(self, x: torch.Tensor) -> torch.Tensor:
        K = int(self.condition_classes)
        per = torch.stack([-self._nll(x, y=torch.full((len(x),), c, dtype=torch.long, device=x.device)).double()
                           for c in range(K)])
        return torch.logsumexp(per, 0) - math.log(K)

    @torch.no_grad()
    def log_prob_given(self, x: torch.Tensor, labels, batch_size: int = 128) -> torch.Tensor:
        """Exact log p(x | y) per example (nats, float64, CPU) for images x in [0, 1] and their class labels."""
        from genbench.models.conditions import check_condition

        x = torch.as_tensor(x)
        y = check_condition(labels, len(x), self.condition_classes, f"model {self.name!r}")
        self.net.eval()
        out = [-self._nll(x[i:i + batch_size].to(self.device).float(), y=y[i:i + batch_size].to(self.device)).double()
               for i in range(0, len(x), batch_size)]
        return torch.cat(out).cpu() if out else torch.empty(0, dtype=torch.float64)

    def _sample(self, n: int, generator: torch.Generator, condition: Optional[torch.Tensor] = None) -> torch.Tensor:
        self.net.eval()
        y = condition if condition is not None else torch.randint(0, int(self.condition_classes), (n,), generator=generator)
        x, _ = self._autoregress(n, lambda logits, r, j, c: self._draw(logits, generator), y=y.long())
        return x
