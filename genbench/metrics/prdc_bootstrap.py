"""Bootstrap replicates of precision / recall / density / coverage (`PrdcResampler`) with the point estimate's
estimator: a row drawn several times is one point for the radii (never its own neighbour) and counts with its
multiplicity in the averages; distances are computed once and indexed per replicate. `prdc_dedup` merges equal
rows by value (see its docstring for when that differs from `prdc`).
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from genbench.errors import InvalidInputError
from genbench.metrics._util import check_same_dim, resolve_device
from genbench.metrics.knn import _chunk, _d2_block, _exact_pair_d2, _features, _sq_norms, _use_fast
from genbench.metrics.manifold import _finish, _prdc_core, _resolve_ks, ball_thresholds

_BOOT_ENTRIES = 2**26  # precomputed bootstrap distance matrices (N^2 + NM + M^2 float64 entries): up to 512 MiB
_U64 = 2.0**-53  # float64 unit roundoff


def _pair_d2_matrix(a: torch.Tensor, b: torch.Tensor, mu: torch.Tensor, chunk: int) -> torch.Tensor:
    """Full (|a|, |b|) float64 squared distances from features centred on mu, |a|^2 - 2 a.b + |b|^2 clamped at 0.
    Entries within the float64 rounding bound of 0 (identical or near-identical rows) are recomputed from direct
    differences, so a repeated row is at distance exactly 0 from its copies, as in the exact path."""
    ac, bc = a - mu, b - mu
    an2, bn2 = _sq_norms(ac), _sq_norms(bc)
    out = torch.empty(a.shape[0], b.shape[0], dtype=torch.float64, device=a.device)
    fac = 2.0 * (a.shape[1] + 9) * _U64
    for i0 in range(0, a.shape[0], chunk):
        i1 = min(i0 + chunk, a.shape[0])
        blk = _d2_block(ac[i0:i1], an2[i0:i1], bc, bn2)
        ia, jb = (blk <= fac * (an2[i0:i1, None] + bn2[None, :])).nonzero(as_tuple=True)
        if ia.numel():
            blk[ia, jb] = _exact_pair_d2(ac, ia + i0, bc, jb)
        out[i0:i1] = blk
    return out


class PrdcResampler:
    """Bootstrap replicates of `prdc(real, fake)` from resampled row indices: `resampled(ir, i_f)` is the value
    of P/R/D/C on the resample (real[ir], fake[i_f]), for `bootstrap_ci(indexed=)`.

    The estimator is the point estimate's: on the identity resample (every row once) it is `prdc(real, fake)`.
    A resample repeats rows; a row drawn several times is ONE point for the k-NN radii (it is never its own
    neighbour at distance 0, which would shrink its ball and bias recall and precision) and counts with its
    multiplicity in the averages (density's ball counts use the multiplicities rescaled to mean 1, as in
    `prdc_dedup`). Repeats are identified by row index, not by value: rows of the data that are equal (a model
    that emits the same sample twice, e.g. train-copy) stay separate points, exactly as in the point estimate.

    Speed: when N^2 + NM + M^2 <= `max_entries` (default 2^26, 512 MiB of float64), the real-real, real-fake
    and fake-fake squared distances are computed once (float64 matrix products of centred features; pairs within
    the rounding bound of 0 from direct differences) and each replicate only gathers the resample's rows and
    columns and takes its k smallest. Otherwise each replicate runs the chunked `prdc` computation on the
    resample's distinct rows. The two agree except for pairs whose distance ties a ball radius to float64
    rounding."""

    def __init__(self, real: Any, fake: Any, k_pr: int = 3, k_dc: int = 5, convention: str = "official",
                 nearest_k: Optional[int] = None, chunk: Optional[int] = None,
                 device: Optional[str | torch.device] = None, fast: Optional[bool] = None,
                 max_entries: int = _BOOT_ENTRIES):
        dev = resolve_device(device, real)
        self.k_pr, self.k_dc, strict = _resolve_ks(k_pr, k_dc, convention, nearest_k)
        self.cmp = torch.lt if strict else torch.le
        self.x = _features(real, "real features", dev)
        self.y = _features(fake, "fake features", dev)
        check_same_dim(self.x, self.y, "real features", "fake features")
        self.strict = strict
        self.chunk = _chunk(chunk, self.x, self.y)
        self.fast = _use_fast(fast, self.x)
        n, m = self.x.shape[0], self.y.shape[0]
        self.precomputed = n * n + n * m + m * m <= int(max_entries)
        if self.precomputed:
            mu = self.x.mean(0)
            self.drr = _pair_d2_matrix(self.x, self.x, mu, self.chunk)
            self.drf = _pair_d2_matrix(self.x, self.y, mu, self.chunk)
            self.dff = _pair_d2_matrix(self.y, self.y, mu, self.chunk)

    @staticmethod
    def _distinct(idx: torch.Tensor, n: int) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        u, cnt = torch.unique(idx, return_counts=True)
        if u.numel() == idx.numel():  # no repeat: plain averages (the point estimate's order of operations)
            return u, None
        return u, cnt.to(torch.float64)

    def _radii(self, d: torch.Tensor, u: torch.Tensor, ks: tuple) -> dict:
        kmax = max(ks)
        if u.numel() <= kmax:
            raise InvalidInputError(f"k-NN radii with k={kmax} need more than {kmax} distinct rows in a bootstrap "
                                    f"resample, got {u.numel()}; use more samples")
        sub = d[u][:, u]
        sub.diagonal().fill_(float("inf"))  # a point (however often drawn) is not its own neighbour
        v = sub.topk(kmax, dim=1, largest=False).values
        return {k: v[:, k - 1] for k in ks}

    def resampled(self, ir: torch.Tensor, i_f: torch.Tensor) -> dict[str, float]:
        ur, wx = self._distinct(ir.to(self.x.device), self.x.shape[0])
        uf, wy = self._distinct(i_f.to(self.x.device), self.y.shape[0])
        k_pr, k_dc = self.k_pr, self.k_dc
        if not self.precomputed:
            return _prdc_core(self.x[ur], self.y[uf], k_pr, k_dc, self.strict, self.chunk, wx, wy, fast=self.fast)
        rr = {k: ball_thresholds(r, self.strict) for k, r in self._radii(self.drr, ur, tuple(sorted({k_pr, k_dc}))).items()}
        f_p2 = ball_thresholds(self._radii(self.dff, uf, (k_pr,))[k_pr], self.strict)
        blk = self.drf[ur][:, uf]
        cmp = self.cmp
        in_d = cmp(blk, rr[k_dc][:, None])
        in_p = in_d if k_pr == k_dc else cmp(blk, rr[k_pr][:, None])
        if wx is None:
            dens = in_d.sum(0, dtype=torch.int64)
        else:
            dens = (wx / wx.mean()) @ in_d.to(torch.float64)
        return _finish(in_p.any(0), cmp(blk, f_p2[None, :]).any(1), in_d.any(1), dens, k_dc, uf.numel(), wx, wy)


def _dedup(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    u, counts = torch.unique(x, dim=0, return_counts=True)
    return u, counts.to(torch.float64)


def prdc_dedup(
    real: Any,
    fake: Any,
    k_pr: int = 3,
    k_dc: int = 5,
    chunk: Optional[int] = None,
    device: Optional[str | torch.device] = None,
    convention: str = "official",
    nearest_k: Optional[int] = None,
    fast: Optional[bool] = None,
) -> dict[str, float]:
    """`prdc` with equal rows merged by VALUE: identical rows are one point for the k-NN radii and count with
    their multiplicity in the averages (density's ball counts use multiplicities rescaled to mean 1, so
    doubling every row changes nothing). Equals `prdc` (to rounding) when no row repeats. Not the bootstrap's
    estimator: when the data itself holds equal rows (train-copy's repeated draws) `prdc` keeps them apart,
    and so does `PrdcResampler`, which merges only the rows a resample drew several times (by index)."""
    dev = resolve_device(device, real)
    k_pr, k_dc, strict = _resolve_ks(k_pr, k_dc, convention, nearest_k)
    x = _features(real, "real features", dev)
    y = _features(fake, "fake features", dev)
    check_same_dim(x, y, "real features", "fake features")
    (xu, wx), (yu, wy) = _dedup(x), _dedup(y)
    return _prdc_core(xu, yu, k_pr, k_dc, strict, _chunk(chunk, xu, yu), wx, wy, fast=_use_fast(fast, xu))
