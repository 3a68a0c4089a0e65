"""Translation baselines that bound the scores of a translation model (genbench/models/translation.py):

- `identity`: returns its input. Nothing changes, so the cycle error is exactly 0 and the output keeps the
  source domain's look: no realism in the target domain (a large FD).
- `colour-transfer`: classical per-channel histogram matching, no learning. `fit` records the sorted pixel values
  of each channel of each training domain (a fixed grid of QUANTILES quantiles); translating maps every pixel
  value of channel c through the source domain's CDF and the target domain's inverse CDF (piecewise linear
  between quantiles). It moves the colour distribution, not texture or spatial structure.
- `paired-oracle`: the upper bound. It looks each input up in the paired held-out split of its dataset (by its
  exact bytes) and returns the same item in the other domain; inputs outside that split raise InvalidInputError.
  Its content kept equals the target classifier's held-out accuracy and its FD is a real-vs-real FD.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

from genbench.data.base import DatasetInfo
from genbench.errors import InvalidInputError
from genbench.models import register_model
from genbench.models.base import ModelConfig, check_budget
from genbench.models.translation import TranslationModel, check_domain_images

QUANTILES = 257


@dataclass
class NoConfig(ModelConfig):
    steps: int = 0

    @classmethod
    def for_budget(cls, budget: str, info: DatasetInfo) -> "NoConfig":
        check_budget(budget)
        return cls()


@register_model
class IdentityTranslator(TranslationModel):
    name = "identity"
    family = "baseline"
    Config = NoConfig

    def _translate(self, x, direction):
        return x.clone()


class _Quantiles(torch.nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.register_buffer("qa", torch.zeros(channels, QUANTILES, dtype=torch.float64))
        self.register_buffer("qb", torch.zeros(channels, QUANTILES, dtype=torch.float64))


def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear interpolation y(x) through (xp, fp) (xp ascending, may repeat), clamped at the ends."""
    idx = torch.searchsorted(xp, x.contiguous(), right=True).clamp(1, len(xp) - 1)
    x0, x1, f0, f1 = xp[idx - 1], xp[idx], fp[idx - 1], fp[idx]
    w = torch.where(x1 > x0, (x - x0) / (x1 - x0).clamp_min(1e-12), torch.full_like(x, 0.5))
    return torch.where(x <= xp[0], fp[0], torch.where(x >= xp[-1], fp[-1], f0 + w.clamp(0, 1) * (f1 - f0)))


@register_model
class ColourTransfer(TranslationModel):
    name = "colour-transfer"
    family = "baseline"
    Config = NoConfig

    def __init__(self, config, info):
        super().__init__(config, info)
        self.q = _Quantiles(int(info.shape[0]))

    def modules(self):
        return {"quantiles": self.q}

    def fit(self, train, budget=None, seed=0, device="cpu", callbacks=()):
        levels = torch.linspace(0, 1, QUANTILES, dtype=torch.float64)
        for which, buf in (("a", self.q.qa), ("b", self.q.qb)):
            x = check_domain_images(train.domain(which), tuple(self.info.shape), f"{self.name}.fit (domain {which})")
            flat = x.double().transpose(0, 1).reshape(x.shape[1], -1)
            buf.copy_(torch.quantile(flat, levels, dim=1).T)
        self.history.steps = 1
        return self.history

    def _translate(self, x, direction):
        src, dst = (self.q.qa, self.q.qb) if direction == "a2b" else (self.q.qb, self.q.qa)
        levels = torch.linspace(0, 1, QUANTILES, dtype=torch.float64)
        out = torch.empty_like(x)
        for c in range(x.shape[1]):
            v = x[:, c].double().reshape(-1)
            u = _interp(v, src[c], levels)  # source CDF
            out[:, c] = _interp(u, levels, dst[c]).reshape(x[:, c].shape).to(x.dtype)  # target inverse CDF
        return out


def _key(img: torch.Tensor) -> str:
    return hashlib.sha256(torch.round(img.double() * 255.0).to(torch.uint8).numpy().tobytes()).hexdigest()


@register_model
class PairedOracle(TranslationModel):
    name = "paired-oracle"
    family = "baseline"
    Config = NoConfig

    def __init__(self, config, info):
        super().__init__(config, info)
        self._table = None

    def _lookup(self):
        if self._table is None:
            from genbench.data import get_dataset

            test = get_dataset(self.info.name).load("test")
            if not getattr(test, "paired", False):
                raise InvalidInputError(f"paired-oracle: the test split of {self.info.name!r} is not paired")
            self._table = {"a2b": ({_key(x): i for i, x in enumerate(test.a)}, test.b),
                           "b2a": ({_key(x): i for i, x in enumerate(test.b)}, test.a)}
        return self._table

    def _translate(self, x, direction):
        index, target = self._lookup()[direction]
        rows = []
        for img in x.cpu():
            i = index.get(_key(img))
            if i is None:
                raise InvalidInputError(f"paired-oracle: an input image is not in the paired held-out split of "
                                        f"{self.info.name!r}; the oracle translates only those images")
            rows.append(i)
        return target[torch.tensor(rows, dtype=torch.long)].clone()
