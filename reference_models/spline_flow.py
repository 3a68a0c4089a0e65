"""Neural spline flow for points (`nsf`; Durkan, Bekasov, Murray & Papamakarios 2019): coupling layers whose
elementwise transform is a monotonic rational-quadratic spline (reference_models/splines.py) instead of RealNVP's
affine map, with an exact change-of-variables likelihood.

    z = f(x) invertible,  log p(x) = log N(f(x); 0, I) + log |det df/dx|

The points are standardised (log|det| of the scaling counted), then go through `n_layers` x [spline coupling,
mixing]. A coupling keeps the first d // 2 coordinates x_a and maps each other coordinate through its own spline
whose K bin widths, K heights and K - 1 knot derivatives come from an MLP of x_a (zero-initialised last layer: every
coupling starts as the identity); the Jacobian is triangular, so log|det| is the sum of the splines' log-derivatives.
The mixing between couplings is either Glow's learned invertible linear map (`LULinear` of reference_models/flow_layers.py,
mixing="lu") or a reversal of the coordinates (mixing="reverse", the classic alternation).

Why splines on the toy mixtures: an affine coupling moves and scales a coordinate by one amount per x_a, so carving
25 separate modes of std 0.05 out of one Gaussian takes many layers, and what a short budget leaves is mass on the
bridges between modes (realnvp's quick config: grid25 HQ share ~0.71). One spline with K bins can already squeeze
several intervals of its input into narrow peaks and give the gaps between them almost no mass (a bin's height can
be 1000x smaller than its width), so a few spline couplings separate the modes.

`log_prob` is the exact log density in the data's units (nats; float32 in the model, float64 for the tests when the
modules are converted). Points only: for images use `realnvp` (the Glow/RealNVP image flows).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from genbench.data.base import DatasetInfo
from genbench.errors import InvalidInputError
from genbench.models import register_model
from genbench.models.base import LOG_PROB_EXACT, GenerativeModel, ModelConfig, check_budget
from reference_models.flow_layers import LULinear, Reverse, Sequence, std_normal_log_prob, warmup_cosine
from reference_models.nets import Scaler, TrainLoop, adam, batch_indices, mlp, start_fit
from reference_models.splines import n_spline_params, rq_spline


class SplineCoupling(nn.Module):
    """(N, d) points: x_a = x[:, :d // 2] passes unchanged; each other coordinate goes through a rational-quadratic
    spline on [-bound, bound] (identity outside) whose 3K - 1 parameters an MLP computes from x_a."""

    def __init__(self, dim: int, hidden: int, depth: int, bins: int, bound: float):
        super().__init__()
        if dim < 2:
            raise InvalidInputError(f"a coupling flow needs points with at least 2 coordinates, got {dim}")
        self.ka, self.kb = dim // 2, dim - dim // 2
        self.bound = float(bound)
        self.n_par = n_spline_params(bins)
        self.net = mlp(self.ka, self.kb * self.n_par, hidden, depth, act=nn.ReLU)
        nn.init.zeros_(self.net[-1].weight), nn.init.zeros_(self.net[-1].bias)

    def _transform(self, x: torch.Tensor, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        xa, xb = x[:, : self.ka], x[:, self.ka:]
        params = self.net(xa).view(-1, self.kb, self.n_par)
        yb, ld = rq_spline(xb, params, self.bound, inverse=inverse)
        return torch.cat([xa, yb], 1), ld.sum(1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._transform(x, inverse=False)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return self._transform(y, inverse=True)[0]


class SplineFlow(nn.Module):
    """(N, d) standardised points -> (z, log|det dz/dx|): `n_layers` x [SplineCoupling, mixing]."""

    def __init__(self, dim: int, n_layers: int, hidden: int, depth: int, bins: int, bound: float, mixing: str = "lu"):
        super().__init__()
        if mixing not in ("lu", "reverse"):
            raise InvalidInputError(f"nsf mixing must be 'lu' (learned invertible linear map) or 'reverse', "
                                    f"got {mixing!r}")
        layers = []
        for i in range(n_layers):
            layers.append(SplineCoupling(dim, hidden, depth, bins, bound))
            layers.append(LULinear(dim, seed=1000 + i) if mixing == "lu" else Reverse())
        self.flow = Sequence(layers)

    def forward(self, x):
        return self.flow(x)

    def inverse(self, z):
        return self.flow.inverse(z)


@dataclass
class NSFConfig(ModelConfig):
    steps: int = 5000
    batch_size: int = 256
    lr: float = 1e-3
    n_layers: int = 4  # spline couplings
    hidden: int = 64  # coupling MLP width
    depth: int = 2  # coupling MLP hidden layers
    bins: int = 16  # spline bins K
    tail_bound: float = 3.0  # splines act on [-B, B] (standardised units), identity outside
    mixing: str = "lu"  # between couplings: "lu" (learned invertible linear map) or "reverse"
    weight_decay: float = 0.0
    grad_clip: float = 5.0
    lr_final: float = 0.05  # cosine decay to lr * lr_final
    warmup: int = 0  # steps of linear lr warm-up before the cosine decay
    log_every: int = 50

    @classmethod
    def for_budget(cls, budget: str, info: DatasetInfo) -> "NSFConfig":
        check_budget(budget)
        return {
            "smoke": cls(steps=30, batch_size=64, n_layers=2, hidden=16, depth=1, bins=4),
            # 15-17 train CPU-s (1 thread): 2000 steps of ~8 ms (4 couplings + LU mixing, MLP 64x2, batch 256, 16
            # bins); 2500 samples: grid25 HQ 0.94, ring8 0.94 on training seeds 0-2 (reports/benchmarks/)
            "quick": cls(steps=2000, batch_size=256, n_layers=4, hidden=64, depth=2, bins=16),
            "standard": cls(steps=20000, batch_size=512, n_layers=8, hidden=128, depth=2, bins=16, warmup=500),
        }[budget]


@register_model
class NSF(GenerativeModel):
    name = "nsf"
    family = "flow"
    modalities = ("points",)
    log_prob_kind = LOG_PROB_EXACT
    Config = NSFConfig

    def __init__(self, config: NSFConfig, info: DatasetInfo):
        if info.modality != "points":
            raise InvalidInputError(f"nsf is a flow for points (2-D toy data and other (N, d) vectors); dataset "
                                    f"{info.name!r} is {info.modality} data: use 'realnvp' (the RealNVP/Glow image "
                                    "flows) for images")
        super().__init__(config, info)
        self.scaler = Scaler(info.dim)
        self._build(seed=0)

    def _build(self, seed: int) -> None:
        """A fresh flow with weights initialised from `seed` (fit rebuilds it: same seed, same model)."""
        cfg = self.config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.flow = SplineFlow(self.info.dim, cfg.n_layers, cfg.hidden, cfg.depth, cfg.bins, cfg.tail_bound,
                                   cfg.mixing)

    def modules(self) -> dict[str, nn.Module]:
        return {"flow": self.flow, "scaler": self.scaler}

    # ---- the bijection data -> base ---------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (N, d) in data units -> (z, log|det dz/dx|), the standardisation included."""
        z, ld = self.flow(self.scaler(x))
        return z, ld + self.scaler.log_abs_det()

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        return self.scaler.inverse(self.flow.inverse(z))

    # ---- training ---------------------------------------------------------------------------------------------
    def fit(self, train, budget=None, seed=0, device="cpu", callbacks=()):
        cfg, train, gen = start_fit(self, train, budget, seed, device)
        dev = self.device
        data = train.to(dev)
        self.scaler.fit(data)
        params = list(self.flow.parameters())
        opt = adam(params, cfg.lr, cfg.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, cfg.steps, cfg.warmup, cfg.lr_final))
        self.flow.train()
        loop = TrainLoop(cfg, self.history, callbacks, cfg.log_every)
        for step in loop:
            x = data[batch_indices(len(data), cfg.batch_size, gen).to(dev)]
            z, ld = self.forward(x)
            nll = -(std_normal_log_prob(z) + ld).mean()
            opt.zero_grad(set_to_none=True)
            nll.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            sched.step()
            loop.end_step(step, loss=float(nll.detach()) / self.info.dim, nll=float(nll.detach()))
        loop.finish()
        self.flow.eval()
        return self.history

    # ---- likelihood and sampling ------------------------------------------------------------------------------
    def _log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log density (nats per point), in the modules' dtype (float32; float64 when converted)."""
        dtype = next(self.flow.parameters()).dtype
        z, ld = self.forward(x.to(dtype))
        return (std_normal_log_prob(z) + ld).double()

    def _sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        self.flow.eval()
        z = torch.randn(n, self.info.dim, generator=generator).to(self.device)
        return self.inverse(z)

