"""Precision / recall / density / coverage from k-nearest-neighbour balls, chunked in torch.

Memory is O((N + M) * chunk): distances are formed one block of `chunk` rows at a time and never as a full
N x N matrix. The k-NN radii pass uses the symmetry of the distance matrix (each block of rows is compared only
with itself and the rows after it; the block's columns feed the later rows' running k smallest), so it costs
half the matrix products of a plain pass. Everything is float64 and exact: the k-th neighbour distance is the
same number a full distance matrix gives, not an approximation.

Conventions (`convention=`):
- "official": improved precision/recall (Kynkaenniemi et al. 2019) with `k_pr` (default 3), density/coverage
  (Naeem et al. 2020) with `k_dc` (default 5); a point on a ball's boundary is inside (`<=`).
- "prdc": reproduces the `prdc` package (`compute_prdc(real, fake, nearest_k)`) exactly: one k for all four
  (`nearest_k`, default `k_dc`), strict `<`.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from genbench.errors import InvalidInputError
from genbench.metrics._util import as_features, check_same_dim, resolve_device

DEFAULT_CHUNK = 1024
CONVENTIONS = ("official", "prdc")


def _sq_norms(x: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,ij->i", x, x)


def _d2_block(xb: torch.Tensor, xb_n2: torch.Tensor, y: torch.Tensor, y_n2: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances (c, M) = |x|^2 - 2 x.y + |y|^2, clamped at 0."""
    d = torch.addmm(xb_n2[:, None], xb, y.T, alpha=-2.0)
    d.add_(y_n2[None, :])
    return d.clamp_min_(0.0)


def _merge_smallest(a: torch.Tensor, b: torch.Tensor, k: int) -> torch.Tensor:
    return torch.cat([a, b], 1).topk(k, dim=1, largest=False).values


def knn_sq_radii(x: torch.Tensor, ks: tuple[int, ...], chunk: int = DEFAULT_CHUNK) -> dict[int, torch.Tensor]:
    """Squared distance from each row of x (N, D) to its k-th nearest other row, for each k in ks.

    Chunked and symmetric: memory O(N * chunk)."""
    n = x.shape[0]
    kmax = max(ks)
    if n <= kmax:
        raise InvalidInputError(f"k-NN radii with k={kmax} need more than {kmax} points, got {n}")
    n2 = _sq_norms(x)
    inf = torch.tensor(float("inf"), dtype=x.dtype, device=x.device)
    state = torch.full((n, kmax), float("inf"), dtype=x.dtype, device=x.device)
    for i0 in range(0, n, chunk):
        i1 = min(i0 + chunk, n)
        c = i1 - i0
        blk = _d2_block(x[i0:i1], n2[i0:i1], x[i0:], n2[i0:])  # rows i0..i1 vs columns i0..n
        blk[:, :c].diagonal().copy_(inf.expand(c))  # a point is not its own neighbour
        state[i0:i1] = _merge_smallest(state[i0:i1], blk.topk(min(kmax, blk.shape[1]), dim=1, largest=False).values, kmax)
        if i1 < n:  # the same distances seen from the later rows (symmetry)
            col = blk[:, c:].topk(min(kmax, c), dim=0, largest=False).values.T
            state[i1:] = _merge_smallest(state[i1:], col, kmax)
        del blk
    return {k: state[:, k - 1].clone() for k in ks}


def _weighted_mean(flags: torch.Tensor, w: Optional[torch.Tensor]) -> float:
    if w is None:
        return float(flags.double().mean())
    return float((flags.double() * w).sum() / w.sum())


def _prdc_core(
    x: torch.Tensor,
    y: torch.Tensor,
    k_pr: int,
    k_dc: int,
    strict: bool,
    chunk: int,
    wx: Optional[torch.Tensor] = None,
    wy: Optional[torch.Tensor] = None,
) -> dict[str, float]:
    """x real (N, D), y fake (M, D), float64 on one device; wx/wy optional row multiplicities."""
    rr = knn_sq_radii(x, tuple(sorted({k_pr, k_dc})), chunk)
    r_p2, r_d2 = rr[k_pr], rr[k_dc]
    f_p2 = knn_sq_radii(y, (k_pr,), chunk)[k_pr]
    cmp = torch.lt if strict else torch.le
    n, m = x.shape[0], y.shape[0]
    xn2, yn2 = _sq_norms(x), _sq_norms(y)
    dens = torch.zeros(m, dtype=torch.float64 if wx is not None else torch.int64, device=x.device)
    prec_any = torch.zeros(m, dtype=torch.bool, device=x.device)
    recall = torch.zeros(n, dtype=torch.bool, device=x.device)
    cover = torch.zeros(n, dtype=torch.bool, device=x.device)
    # density counts real balls with their multiplicity, rescaled to mean 1: the radii come from the distinct
    # points, so a random point lies in about k distinct balls whatever the multiplicities
    wx_d = wx / wx.mean() if wx is not None else None
    for i0 in range(0, n, chunk):
        i1 = min(i0 + chunk, n)
        blk = _d2_block(x[i0:i1], xn2[i0:i1], y, yn2)  # (c, M) real rows vs all fakes
        in_d = cmp(blk, r_d2[i0:i1, None])  # fake j inside real ball i (k_dc)
        cover[i0:i1] = in_d.any(1)  # nearest fake inside the ball <=> some fake inside
        if wx is None:
            dens += in_d.view(torch.uint8).sum(0, dtype=torch.int64)
        else:
            dens += wx_d[i0:i1] @ in_d.to(torch.float64)
        in_p = in_d if k_pr == k_dc else cmp(blk, r_p2[i0:i1, None])
        prec_any |= in_p.any(0)
        recall[i0:i1] = cmp(blk, f_p2[None, :]).any(1)
        del blk, in_d, in_p
    if wy is None:  # integer counts: exact sum; (1/k) * mean, the prdc package's order of operations
        density = (1.0 / float(k_dc)) * (float(dens.sum()) / m)
    else:
        density = float((dens.double() * wy).sum() / (k_dc * wy.sum()))
    return {
        "precision": _weighted_mean(prec_any, wy),
        "recall": _weighted_mean(recall, wx),
        "density": density,
        "coverage": _weighted_mean(cover, wx),
    }


def _resolve_ks(k_pr: int, k_dc: int, convention: str, nearest_k: Optional[int]) -> tuple[int, int, bool]:
    if convention not in CONVENTIONS:
        from genbench.registry import unknown_name_message

        raise InvalidInputError(unknown_name_message("prdc convention", convention, CONVENTIONS))
    if convention == "prdc":
        k = int(nearest_k if nearest_k is not None else k_dc)
        k_pr = k_dc = k
    elif nearest_k is not None:
        k_pr = k_dc = int(nearest_k)
    if min(k_pr, k_dc) < 1:
        raise InvalidInputError(f"k must be >= 1, got k_pr={k_pr}, k_dc={k_dc}")
    return int(k_pr), int(k_dc), convention == "prdc"


def prdc(
    real: Any,
    fake: Any,
    k_pr: int = 3,
    k_dc: int = 5,
    chunk: int = DEFAULT_CHUNK,
    device: Optional[str | torch.device] = None,
    convention: str = "official",
    nearest_k: Optional[int] = None,
) -> dict[str, float]:
    """Precision, recall, density, coverage of fake features against real features.

    official: P/R with k_pr (3) and D/C with k_dc (5), inclusive `<=`. convention="prdc": the prdc package
    (one k = nearest_k or k_dc, strict `<`). `nearest_k` sets one k for all four in either convention.
    Runs on `device` (default: the inputs'); memory O((N + M) * chunk)."""
    dev = resolve_device(device, real)
    k_pr, k_dc, strict = _resolve_ks(k_pr, k_dc, convention, nearest_k)
    x = as_features(real, "real features", dev, 2)
    y = as_features(fake, "fake features", dev, 2)
    check_same_dim(x, y, "real features", "fake features")
    if chunk < 1:
        raise InvalidInputError(f"chunk must be >= 1, got {chunk}")
    return _prdc_core(x, y, k_pr, k_dc, strict, int(chunk))


def _dedup(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    u, counts = torch.unique(x, dim=0, return_counts=True)
    return u, counts.to(torch.float64)


def prdc_dedup(
    real: Any,
    fake: Any,
    k_pr: int = 3,
    k_dc: int = 5,
    chunk: int = DEFAULT_CHUNK,
    device: Optional[str | torch.device] = None,
    convention: str = "official",
    nearest_k: Optional[int] = None,
) -> dict[str, float]:
    """`prdc` for sets with repeated rows (bootstrap resamples): identical rows are one point for the k-NN
    radii and count with their multiplicity in the averages (density's ball counts use multiplicities
    rescaled to mean 1, so doubling every row changes nothing). Without this, a resample's duplicates would be
    each other's nearest neighbours (distance 0) and shrink every ball. Equals `prdc` (to rounding) when no
    row repeats."""
    dev = resolve_device(device, real)
    k_pr, k_dc, strict = _resolve_ks(k_pr, k_dc, convention, nearest_k)
    x = as_features(real, "real features", dev, 2)
    y = as_features(fake, "fake features", dev, 2)
    check_same_dim(x, y, "real features", "fake features")
    (xu, wx), (yu, wy) = _dedup(x), _dedup(y)
    return _prdc_core(xu, yu, k_pr, k_dc, strict, int(chunk), wx, wy)
