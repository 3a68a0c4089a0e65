"""Exact k-nearest-neighbour radii of a feature set, chunked in torch (the balls of precision / recall / density /
coverage, genbench.metrics.manifold).

Memory is O((N + M) * chunk): distances are formed one block of `chunk` rows at a time and never as a full
N x N matrix; by default `chunk` comes from a budget of about 5 M block entries (20 MiB in float32). The k-NN
radii pass uses the symmetry of the distance matrix (each block of rows is compared only with itself and the rows
after it; the block's columns feed the later rows' running k smallest), so it costs half the matrix products of a
plain pass. Everything is float64 and exact: the k-th neighbour distance is the same number a full distance
matrix gives, not an approximation. The float32 fast path (`fast=None` -> on for CPU tensors) bounds its
rounding error rigorously (`_tol_factor`) and recomputes in float64 every candidate the bound cannot settle;
see manifold.py's docstring.

`knn_radii(real)` returns them as `KnnRadii` for reuse through `prdc(..., real_radii=)` (the reference statistics
cache keeps them).
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch

from genbench.errors import InvalidInputError
from genbench.metrics._util import as_features, resolve_device

DEFAULT_CHUNK = 512
_BLOCK_ENTRIES = 5 * 2**20  # prdc's default block: about this many (real, fake) entries (20 MiB in float32)
_U32 = 2.0**-24  # float32 unit roundoff
_MARGIN = 8  # extra float32 candidates kept per row beyond k
_SPARSE_MAX = 1 / 16  # share of a block's entries above which candidate pairs are handled as a dense mask


def _tol_factor(d: int) -> float:
    """|float32 d2 - exact d2| <= factor * (|x_i|^2 + |y_j|^2) for centred x, y, with u the float32 unit
    roundoff: the norms rounded to float32 (u each), the inputs rounded to float32 (2u|x||y| in the dot product,
    times 2), and the sum of the d + 2 terms |y|^2 - 2 x_k y_k ... + |x|^2 in any order (BLAS may fold the
    bias into its accumulation): (d + 1)u (|x|^2 + |y|^2 + 2|x||y|) <= 2(d + 1)u (|x|^2 + |y|^2). In all
    (2d + 5)u (|x|^2 + |y|^2); 2(d + 9)u leaves 13u for the float64 centring and the float64 references."""
    return 2.0 * (d + 9) * _U32


def _centred_f32(x: torch.Tensor, mu: torch.Tensor, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 copy of x - mu and the float64 squared norms of x - mu, built chunk by chunk."""
    out = torch.empty(x.shape, dtype=torch.float32, device=x.device)
    n2 = torch.empty(x.shape[0], dtype=torch.float64, device=x.device)
    for i0 in range(0, x.shape[0], chunk):
        xc = x[i0 : i0 + chunk] - mu
        n2[i0 : i0 + chunk] = _sq_norms(xc)
        out[i0 : i0 + chunk] = xc
    return out, n2


def _exact_pair_d2(x: torch.Tensor, ia: torch.Tensor, y: torch.Tensor, ib: torch.Tensor) -> torch.Tensor:
    """Squared distances of the pairs (x[ia], y[ib]) in float64 from direct differences, sum((x - y)^2): the
    most accurate form (no cancellation), and the same bits for the same pair wherever it is asked for."""
    out = torch.empty(ia.shape[0], dtype=torch.float64, device=x.device)
    step = max(1, 2**19 // max(1, x.shape[1]))  # pairs per step: two (step, D) float64 gathers of 4 MiB
    for p0 in range(0, ia.shape[0], step):
        diff = x[ia[p0 : p0 + step]]
        diff.sub_(y[ib[p0 : p0 + step]])
        out[p0 : p0 + step] = diff.mul_(diff).sum(1)
    return out


def _sq_norms(x: torch.Tensor) -> torch.Tensor:
    out = torch.empty(x.shape[0], dtype=x.dtype, device=x.device)
    for i0 in range(0, x.shape[0], 4096):
        xc = x[i0 : i0 + 4096]
        out[i0 : i0 + 4096] = (xc * xc).sum(1)
    return out


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


def _merge_smallest_idx(av, ai, bv, bi, m):
    v, pos = torch.cat([av, bv], 1).topk(m, dim=1, largest=False)
    return v, torch.cat([ai, bi], 1).gather(1, pos)


def _later_rows_update(sub, sv, si, i0: int, i1: int, m: int, mask_buf: torch.Tensor) -> None:
    """Feed a block's distances to the rows after it (symmetry): sub (c, W) holds the pairs (block row a, later
    row i1 + j). Only entries below a later row's current m-th kept value can enter its list; after the first
    block they are few (about m * c / i0 per row), so they are found with one comparison and merged sparsely
    instead of a top-m along the block's columns (a strided reduction, ~4x a row top-m)."""
    c, w = sub.shape
    dev = sub.device
    mask = mask_buf[: c * w].view(c, w)
    torch.lt(sub, sv[i1:, m - 1][None, :], out=mask)
    p = int(mask.count_nonzero())
    if p > _SPARSE_MAX * sub.numel():  # first block (nothing kept yet): dense top-m along the columns,
        # through small transposed slices (topk along dim 0 copies the whole block, several times)
        step = max(1, 2**20 // c)
        for j0 in range(0, w, step):
            j1 = min(j0 + step, w)
            v, jj = sub[:, j0:j1].T.contiguous().topk(min(m, c), dim=1, largest=False)
            r = slice(i1 + j0, i1 + j1)
            sv[r], si[r] = _merge_smallest_idx(sv[r], si[r], v, jj + i0, m)
        return
    if p == 0:
        return
    a, j = mask.nonzero(as_tuple=True)
    v = sub[a, j]
    order = torch.argsort(j, stable=True)
    j, a, v = j[order], a[order], v[order]
    rows, cnt = torch.unique_consecutive(j, return_counts=True)
    u = rows.numel()
    slot = torch.arange(p, device=dev) - torch.repeat_interleave(cnt.cumsum(0) - cnt, cnt)
    which = torch.repeat_interleave(torch.arange(u, device=dev), cnt)
    width = int(cnt.max())
    pv = torch.full((u, width), float("inf"), dtype=sv.dtype, device=dev)
    pi = torch.zeros((u, width), dtype=si.dtype, device=dev)
    pv[which, slot] = v
    pi[which, slot] = a + i0
    r = rows + i1
    sv[r], si[r] = _merge_smallest_idx(sv[r], si[r], pv, pi, m)


def _knn_sq_radii_fast(x: torch.Tensor, ks: tuple[int, ...], chunk: int, mu: torch.Tensor, x32=None, cn2=None) -> dict[int, torch.Tensor]:
    """knn_sq_radii through float32 candidates, exact: see the module docstring."""
    n, d = x.shape
    kmax = max(ks)
    if n <= kmax:
        raise InvalidInputError(f"k-NN radii with k={kmax} need more than {kmax} points, got {n}")
    m = min(kmax + _MARGIN, n - 1)
    if x32 is None:
        x32, cn2 = _centred_f32(x, mu, chunk)
    n2_32 = cn2.float()
    inf = float("inf")
    sv = torch.full((n, m), inf, dtype=torch.float32, device=x.device)
    si = torch.zeros((n, m), dtype=torch.long, device=x.device)
    c_max = min(chunk, n)
    buf = torch.empty(c_max * n, dtype=torch.float32, device=x.device)  # one block, reused
    mask_buf = torch.empty(c_max * n, dtype=torch.bool, device=x.device)
    for i0 in range(0, n, chunk):
        i1 = min(i0 + chunk, n)
        c, w = i1 - i0, n - i0
        blk = buf[: c * w].view(c, w)  # rows i0..i1 vs columns i0..n
        torch.addmm(n2_32[None, i0:], x32[i0:i1], x32[i0:].T, alpha=-2.0, out=blk)
        blk.add_(n2_32[i0:i1, None])
        blk[:, :c].diagonal().fill_(inf)  # a point is not its own neighbour
        v, j = blk.topk(min(m, w), dim=1, largest=False)
        sv[i0:i1], si[i0:i1] = _merge_smallest_idx(sv[i0:i1], si[i0:i1], v, j + i0, m)
        if i1 < n:
            _later_rows_update(blk[:, c:], sv, si, i0, i1, m, mask_buf)
    del buf, mask_buf
    # exact k-th distances. With tol the error bound of a row, the exact k-th distance T lies in
    # [a_k - tol, a_k + tol] (a_k: k-th smallest approximate value). Candidates with a_j < a_k - 2 tol are
    # certainly below T, those with a_j > a_k + 2 tol (and every point not kept, when a_m > a_k + 2 tol)
    # certainly above; so T is the (k - #below)-th smallest exact value inside the window |a_j - a_k| <= 2 tol,
    # and only the window's pairs (usually 1 to 3 per row) are recomputed in float64. Rows whose kept
    # candidates might miss a neighbour (a_m too close) are recomputed in full.
    tol = _tol_factor(d) * (cn2 + cn2.max())
    sv64 = sv.double()
    rows = torch.arange(n, device=x.device)
    full_ok = (sv64[:, m - 1] - sv64[:, kmax - 1] > 2 * tol) if m < n - 1 else torch.ones(n, dtype=torch.bool, device=x.device)
    t2 = (2 * tol)[:, None]
    wins = {k: (sv64 - sv64[:, k - 1 : k]).abs() <= t2 for k in ks}
    need = torch.zeros_like(sv, dtype=torch.bool)
    for w in wins.values():
        need |= w
    need &= full_ok[:, None]
    r_idx, c_idx = need.nonzero(as_tuple=True)
    ex = torch.full((n, m), float("inf"), dtype=torch.float64, device=x.device)
    ex[r_idx, c_idx] = _exact_pair_d2(x, r_idx, x, si[r_idx, c_idx])
    out = {}
    for k in ks:
        below = (sv64 < sv64[:, k - 1 : k] - t2).sum(1)
        srt = torch.where(wins[k], ex, torch.full_like(ex, float("inf"))).sort(dim=1).values
        pos = (k - 1 - below).clamp(0, m - 1)
        out[k] = srt.gather(1, pos[:, None]).squeeze(1)
    bad = (~full_ok).nonzero().flatten()
    for b0 in range(0, bad.shape[0], 64):
        r = bad[b0 : b0 + 64]
        full = _exact_pair_d2(x, r.repeat_interleave(n), x, rows.repeat(r.shape[0])).view(-1, n)
        full[torch.arange(r.shape[0], device=x.device), r] = float("inf")
        v = full.topk(kmax, dim=1, largest=False).values
        for k in ks:
            out[k][r] = v[:, k - 1]
    return out


def _radii_tag(fast: bool, chunk: int) -> str:
    """How radii were computed: the float32-candidate path gives the same bits whatever the chunk; the float64
    matrix-product path may round differently with another block shape."""
    return "fast" if fast else f"float64-chunk{chunk}"


class KnnRadii:
    """Squared k-NN radii of one real feature set, {k: (N,) float64}, with the way they were computed (`tag`)."""

    def __init__(self, sq: dict, tag: str, n: int):
        self.sq = {int(k): v for k, v in sq.items()}
        self.tag = str(tag)
        self.n = int(n)

    def usable(self, n: int, ks, tag: str, device) -> Optional[dict]:
        if n != self.n or tag != self.tag or not all(int(k) in self.sq for k in ks):
            return None
        return {int(k): self.sq[int(k)].to(device=device, dtype=torch.float64) for k in set(ks)}


def knn_radii(
    real: Any,
    ks: tuple = (3, 5),
    n_fake: Optional[int] = None,
    chunk: Optional[int] = None,
    device: Optional[str | torch.device] = None,
    fast: Optional[bool] = None,
) -> KnnRadii:
    """The real set's squared k-NN radii exactly as `prdc(real, fake)` computes them (same path, same bits), for
    reuse through `prdc(..., real_radii=)`. `n_fake` (default N) only matters for the float64 path, whose block
    size depends on the larger set."""
    dev = resolve_device(device, real)
    x = _features(real, "real features", dev)
    ks = tuple(sorted({int(k) for k in ks}))
    if not ks or min(ks) < 1:
        raise InvalidInputError(f"k must be >= 1, got {ks}")
    use_fast = _use_fast(fast, x)
    m = int(n_fake) if n_fake is not None else x.shape[0]
    if chunk is None:
        c = int(min(4096, max(64, _BLOCK_ENTRIES // max(x.shape[0], m))))
    else:
        c = _chunk(chunk, x, x)
    if use_fast:
        mu = x.mean(0)
        sq = _knn_sq_radii_fast(x, ks, c, mu)
    else:
        sq = knn_sq_radii(x, ks, c)
    return KnnRadii(sq, _radii_tag(use_fast, c), x.shape[0])


def _features(x: Any, name: str, device: torch.device) -> torch.Tensor:
    """as_features(x, name, device, 2) without its whole-matrix temporaries: a 2-D float tensor or array is
    checked for NaN/inf block by block (the full check allocates |x| and masks the size of the input, more than
    the rest of prdc needs), otherwise as_features handles (and validates) the input."""
    if isinstance(x, np.ndarray) and x.ndim == 2 and x.dtype.kind == "f":
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not (isinstance(x, torch.Tensor) and x.ndim == 2 and x.dtype.is_floating_point and x.shape[0] >= 2):
        return as_features(x, name, device, 2)
    x = x.to(device=device, dtype=torch.float64)
    step = max(1, 2**18 // max(1, x.shape[1]))
    for i0 in range(0, x.shape[0], step):
        if not bool(torch.isfinite(x[i0 : i0 + step]).all()):
            bad = sum(int((~torch.isfinite(x[j : j + step])).sum()) for j in range(0, x.shape[0], step))
            raise InvalidInputError(f"{name} contains {bad} NaN/inf value(s); check the model's samples or features")
    return x


def _chunk(chunk: Optional[int], x: torch.Tensor, y: torch.Tensor) -> int:
    if chunk is None:
        return int(min(4096, max(64, _BLOCK_ENTRIES // max(x.shape[0], y.shape[0]))))
    if int(chunk) < 1:
        raise InvalidInputError(f"chunk must be >= 1, got {chunk}")
    return int(chunk)


def _use_fast(fast: Optional[bool], x: torch.Tensor) -> bool:
    if x.device.type == "cuda" and (torch.backends.cuda.matmul.allow_tf32 or torch.get_float32_matmul_precision() != "highest"):
        return False  # TF32 products (10-bit mantissa) break the float32 error bound: float64 throughout
    return (x.device.type == "cpu") if fast is None else bool(fast)
