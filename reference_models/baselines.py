"""Baselines that anchor every table: a Gaussian mixture with an exact likelihood, and a training-set copier.

`gmm` (family "baseline") — scikit-learn's GaussianMixture (EM), evaluated and sampled with our own float64
code from the fitted parameters (so `log_prob` can be checked against sklearn's `score_samples`, and sampling
draws from the caller's torch generator).
- points: a K-component mixture on the raw coordinates; `log_prob` is its exact log density (nats).
- images: a *dequantised* continuous model on the [0, 1] scale. Training pixels k/255 become
  u = (k + U) / 256, U ~ Uniform[0, 1). With the top-`pca_dim` principal directions W (orthonormal rows) and
  mean m, u = m + a W + r splits into coordinates a (in W's span) and a residual r in the orthogonal
  complement; the density is
      p(u) = GMM(a) * N(r; 0, sigma^2 I_{D - pca_dim})        (on the complement)
  and because [W; W_perp] is orthonormal (Jacobian 1) this is an exact, normalised density on R^D.
  `log_prob(x)` = log p(u) - D ln 256 with u = (255 x + U) / 256 and U drawn from a generator seeded by
  `config.eval_seed` (the usual uniform-dequantisation estimate: exact for the dequantised model, and a
  single-sample lower-bound estimate of the discrete model's log-probability). Samples u are quantised back
  with k = clamp(floor(256 u), 0, 255) -> k / 255.

`train-copy` (family "baseline") — emits training items verbatim (uniform choice with replacement from the
caller's generator): perfect FID, zero novelty; it shows what FID cannot see. No likelihood.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from genbench.data.base import DatasetInfo
from genbench.errors import InvalidInputError
from genbench.models import register_model
from genbench.models.base import LOG_PROB_EXACT, LOG_PROB_NONE, GenerativeModel, ModelConfig, check_budget
from reference_models.nets import apply_budget, check_train


def gmm_log_density(x: torch.Tensor, weights: torch.Tensor, means: torch.Tensor, chol: torch.Tensor) -> torch.Tensor:
    """log sum_k w_k N(x; mu_k, L_k L_k^T) per row of x (float64), via triangular solves."""
    x = x.double()
    d = x.shape[1]
    diff = x.unsqueeze(0) - means.unsqueeze(1)  # (K, N, d)
    sol = torch.linalg.solve_triangular(chol, diff.transpose(1, 2), upper=False)  # (K, d, N)
    maha = (sol**2).sum(1)  # (K, N)
    log_det = 2 * torch.log(torch.diagonal(chol, dim1=1, dim2=2)).sum(1)  # (K,)
    comp = -0.5 * (maha + log_det.unsqueeze(1) + d * math.log(2 * math.pi))
    return torch.logsumexp(comp + torch.log(weights).unsqueeze(1), 0)


@dataclass
class GMMConfig(ModelConfig):
    steps: int = 100  # EM iterations (sklearn max_iter)
    n_components: int = 10
    covariance_type: str = "full"  # "full" | "diag"
    pca_dim: int = 64  # images: dimensions of the PCA subspace modelled by the mixture
    max_train: Optional[int] = 20000  # fit on a seeded subset of at most this many items (None: all)
    reg_covar: float = 1e-6
    tol: float = 1e-3
    eval_seed: int = 0  # images: seeds the dequantisation noise of log_prob

    @classmethod
    def for_budget(cls, budget: str, info: DatasetInfo) -> "GMMConfig":
        check_budget(budget)
        if info.modality == "points":
            return {
                "smoke": cls(steps=20, n_components=8, max_train=2000),
                "quick": cls(steps=200, n_components=32, max_train=None),
                "standard": cls(steps=500, n_components=64, max_train=None),
            }[budget]
        d = info.dim
        return {
            "smoke": cls(steps=10, n_components=2, pca_dim=min(8, d), max_train=500),
            "quick": cls(steps=100, n_components=10, pca_dim=min(64, d), max_train=20000),
            "standard": cls(steps=200, n_components=32, pca_dim=min(128, d), max_train=None),
        }[budget]


@register_model
class GMM(GenerativeModel):
    name = "gmm"
    family = "baseline"
    log_prob_kind = LOG_PROB_EXACT
    Config = GMMConfig

    def __init__(self, config: GMMConfig, info: DatasetInfo):
        super().__init__(config, info)
        if config.covariance_type not in ("full", "diag"):
            raise InvalidInputError(f"gmm covariance_type {config.covariance_type!r}: use 'full' or 'diag'")
        self.is_image = info.modality == "image"
        if self.is_image and not 1 <= config.pca_dim <= info.dim:
            raise InvalidInputError(f"gmm pca_dim must be in 1..{info.dim} for {info.name!r}, got {config.pca_dim}")
        self.state_: dict = {}  # fitted parameters (torch float64); empty until fit/load
        self.gmm_ = None  # the fitted sklearn GaussianMixture (not saved; for inspection and tests)

    # ---- fitting --------------------------------------------------------------------------------------------
    def _dequantise(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return (x.double() * 255 + torch.rand(x.shape, generator=gen, dtype=torch.float64)) / 256

    def fit(self, train, budget=None, seed=0, device="cpu", callbacks=()):
        from sklearn.decomposition import PCA
        from sklearn.mixture import GaussianMixture

        cfg = apply_budget(self.config, budget, self.info)
        train = check_train(train, self.info, min_items=max(2, cfg.n_components))
        t0 = time.perf_counter()
        gen = torch.Generator().manual_seed(seed)
        if cfg.max_train is not None and len(train) > cfg.max_train:
            train = train[torch.randperm(len(train), generator=gen)[: cfg.max_train]]
        x = train.reshape(len(train), -1).double()
        st: dict = {}
        if self.is_image:
            u = self._dequantise(x, gen)
            pca = PCA(n_components=cfg.pca_dim, svd_solver="full" if self.info.dim <= 1024 else "randomized", random_state=seed)
            pca.fit(u.numpy())
            st["pca_mean"] = torch.from_numpy(pca.mean_).double()
            st["pca_components"] = torch.from_numpy(pca.components_).double()  # (k, D), orthonormal rows
            a, r2 = self._project(u, st)
            rest = self.info.dim - cfg.pca_dim
            st["residual_var"] = torch.tensor(float(r2.sum() / (len(u) * rest)) if rest else 1.0, dtype=torch.float64)
            feats = a
        else:
            feats = x
        gmm = GaussianMixture(n_components=cfg.n_components, covariance_type=cfg.covariance_type, max_iter=cfg.steps,
                              tol=cfg.tol, reg_covar=cfg.reg_covar, random_state=seed)
        gmm.fit(feats.numpy())
        self.gmm_ = gmm
        covs = torch.from_numpy(np.asarray(gmm.covariances_)).double()
        if cfg.covariance_type == "diag":
            covs = torch.diag_embed(covs)
        st["weights"] = torch.from_numpy(gmm.weights_).double()
        st["means"] = torch.from_numpy(gmm.means_).double()
        st["chol"] = torch.linalg.cholesky(covs)
        self.state_ = st
        self.history.steps = int(gmm.n_iter_)
        self.history.seconds = time.perf_counter() - t0
        rec = self.history.log(self.history.steps, loss=-float(gmm.score(feats.numpy())), seconds=self.history.seconds,
                               converged=float(gmm.converged_))
        for cb in callbacks or ():
            cb(self.history.steps, dict(rec))
        return self.history

    @staticmethod
    def _project(u: torch.Tensor, st: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(PCA coordinates a, squared norm of the residual in the orthogonal complement) of flattened u."""
        c = u - st["pca_mean"]
        a = c @ st["pca_components"].T
        r2 = ((c - a @ st["pca_components"]) ** 2).sum(1)
        return a, r2

    def _check_fitted(self) -> None:
        if not self.state_:
            raise InvalidInputError("the gmm model is not fitted: call fit(train) or load a saved model first")

    # ---- likelihood -----------------------------------------------------------------------------------------
    def log_prob(self, x: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
        """Exact log density (points) / dequantised log-probability of the 8-bit image (images), nats, float64."""
        self._check_fitted()
        st = self.state_
        x = x.detach().cpu().reshape(len(x), -1).double()
        if x.shape[1] != self.info.dim:
            raise InvalidInputError(f"log_prob: items have {x.shape[1]} values, the model expects {self.info.dim}")
        if not self.is_image:
            return torch.cat([gmm_log_density(x[i:i + batch_size], st["weights"], st["means"], st["chol"])
                              for i in range(0, len(x), batch_size)]) if len(x) else torch.empty(0, dtype=torch.float64)
        u = self._dequantise(x, torch.Generator().manual_seed(self.config.eval_seed))
        out = []
        rest = self.info.dim - self.config.pca_dim
        var = st["residual_var"]
        for i in range(0, len(u), batch_size):
            a, r2 = self._project(u[i:i + batch_size], st)
            lp = gmm_log_density(a, st["weights"], st["means"], st["chol"])
            if rest:
                lp = lp - 0.5 * rest * torch.log(2 * math.pi * var) - r2 / (2 * var)
            out.append(lp - self.info.dim * math.log(256.0))
        return torch.cat(out) if out else torch.empty(0, dtype=torch.float64)

    # ---- sampling -------------------------------------------------------------------------------------------
    def _sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        self._check_fitted()
        st = self.state_
        k = torch.multinomial(st["weights"], n, replacement=True, generator=generator)
        eps = torch.randn(n, st["means"].shape[1], generator=generator, dtype=torch.float64)
        a = st["means"][k] + (st["chol"][k] @ eps.unsqueeze(-1)).squeeze(-1)
        if not self.is_image:
            return a.float()
        W = st["pca_components"]
        e = torch.randn(n, self.info.dim, generator=generator, dtype=torch.float64)
        r = (e - (e @ W.T) @ W) * st["residual_var"].sqrt()  # isotropic noise in the orthogonal complement
        u = st["pca_mean"] + a @ W + r
        levels = torch.floor(u * 256).clamp(0, 255)
        return (levels / 255).float().reshape(n, *self.info.shape)

    # ---- bookkeeping ----------------------------------------------------------------------------------------
    @property
    def num_params(self) -> int:
        if not self.state_:
            return 0
        K, d = self.state_["means"].shape
        cov = d * (d + 1) // 2 if self.config.covariance_type == "full" else d
        n = (K - 1) + K * d + K * cov
        if self.is_image:
            n += self.info.dim * (1 + self.config.pca_dim) + 1  # PCA mean, directions, residual variance
        return int(n)

    def extra_state(self) -> dict:
        return {"state": dict(self.state_)}

    def load_extra_state(self, state: dict) -> None:
        self.state_ = dict(state.get("state", {}))


@dataclass
class TrainCopyConfig(ModelConfig):
    steps: int = 0  # nothing to train

    @classmethod
    def for_budget(cls, budget: str, info: DatasetInfo) -> "TrainCopyConfig":
        check_budget(budget)
        return cls()


@register_model
class TrainCopy(GenerativeModel):
    name = "train-copy"
    family = "baseline"
    log_prob_kind = LOG_PROB_NONE
    Config = TrainCopyConfig

    def __init__(self, config: TrainCopyConfig, info: DatasetInfo):
        super().__init__(config, info)
        self.items_: Optional[torch.Tensor] = None  # images stored as uint8 levels (exact for k/255 data)

    def fit(self, train, budget=None, seed=0, device="cpu", callbacks=()):
        train = check_train(train, self.info, min_items=1)
        t0 = time.perf_counter()
        if self.info.modality == "image":
            levels = torch.round(train * 255)
            if (levels - train * 255).abs().max() > 1e-3 or levels.min() < 0 or levels.max() > 255:
                raise InvalidInputError("train-copy expects 8-bit images scaled to [0, 1] (values k/255)")
            self.items_ = levels.to(torch.uint8).clone()
        else:
            self.items_ = train.clone()
        self.history.seconds = time.perf_counter() - t0
        rec = self.history.log(0, loss=0.0, seconds=self.history.seconds)
        for cb in callbacks or ():
            cb(0, dict(rec))
        return self.history

    def _sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        if self.items_ is None:
            raise InvalidInputError("the train-copy model holds no training items: call fit(train) or load it first")
        idx = torch.randint(0, len(self.items_), (n,), generator=generator)
        x = self.items_[idx]
        return x.float() / 255 if self.info.modality == "image" else x.clone()

    @property
    def num_params(self) -> int:
        """Stored training values (a lookup table, not learned weights)."""
        return 0 if self.items_ is None else int(self.items_.numel())

    def extra_state(self) -> dict:
        return {"items": self.items_}

    def load_extra_state(self, state: dict) -> None:
        self.items_ = state.get("items")
