"""Precision / recall / density / coverage from k-nearest-neighbour balls, chunked in torch.

Memory is O((N + M) * chunk): distances are formed one block of `chunk` rows at a time and never as a full
N x N matrix; by default `chunk` comes from a budget of about 5 M block entries (20 MiB in float32: 524 rows
against 10000 columns), and the block and its mask are allocated once and reused. The k-NN radii pass uses the symmetry of the distance matrix (each block of rows is compared only
with itself and the rows after it; the block's columns feed the later rows' running k smallest), so it costs
half the matrix products of a plain pass. Everything is float64 and exact: the k-th neighbour distance is the
same number a full distance matrix gives, not an approximation.

Speed on CPU (`fast=None` -> on for CPU tensors): distances are first formed in float32 from centred data,
which halves the cost of the matrix products, with a rigorous bound on their error (worst-case float32
rounding of a d-term dot product; see `_tol_factor`). Every decision the bound cannot settle is redone in float64: the
k-th neighbour is recomputed exactly from the float32 candidates (all rows that could be among the k
nearest), and every (real, fake) pair whose approximate distance lies within the bound of a ball radius is
recomputed exactly, unless its answer cannot matter (recall and precision only ask whether a point lies in SOME
ball: the undecided pairs of a real row already inside a fake ball, or of a fake already inside a real ball,
are skipped; a pair's own bound, tighter than its row's, is tried before float64). The results are therefore
those of the float64 computation, not approximations.
The float32 pass keeps one centred float32 copy of one set at a time (real, then fake) and works on short
pair lists: in the real-fake blocks only the entries below a ball's radius plus the bound (a few per row) are
listed, and in the k-NN pass the later rows take only the entries below their current m-th candidate.
On GPU the float64 path is the default; `fast=True` there is honoured only while TF32 is off (TF32 products
would break the float32 bound).

Bootstrap (`PrdcResampler`): replicates from resampled row indices with the point estimate's estimator; a row
drawn several times is one point for the radii (never its own neighbour) and counts with its multiplicity in
the averages; distances are computed once and indexed per replicate (see the class).

Conventions (`convention=`):
- "official": improved precision/recall (Kynkaenniemi et al. 2019) with `k_pr` (default 3), density/coverage
  (Naeem et al. 2020) with `k_dc` (default 5); a point on a ball's boundary is inside (`<=`).
- "prdc": reproduces the `prdc` package (`compute_prdc(real, fake, nearest_k)`) exactly: one k for all four
  (`nearest_k`, default `k_dc`), strict `<`.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch

from genbench.errors import InvalidInputError
from genbench.metrics._util import as_features, check_same_dim, resolve_device

DEFAULT_CHUNK = 512
_BLOCK_ENTRIES = 5 * 2**20  # prdc's default block: about this many (real, fake) entries (20 MiB in float32)
CONVENTIONS = ("official", "prdc")
_U32 = 2.0**-24  # float32 unit roundoff
_MARGIN = 8  # extra float32 candidates kept per row beyond k
_MAX_AMBIGUOUS = 0.25  # share of a block's pairs above which the block is redone in float64 (degenerate data)
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
    fast: bool = False,
    rr: Optional[dict] = None,
) -> dict[str, float]:
    """x real (N, D), y fake (M, D), float64 on one device; wx/wy optional row multiplicities; rr: the real
    set's squared k-NN radii {k: (N,)} when already known (see `knn_radii`)."""
    if fast:
        return _prdc_core_fast(x, y, k_pr, k_dc, strict, chunk, wx, wy, rr)
    if rr is None:
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
    return _finish(prec_any, recall, cover, dens, k_dc, m, wx, wy)


def _finish(prec_any, recall, cover, dens, k_dc, m, wx, wy) -> dict[str, float]:
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


def _f32_above(t: torch.Tensor) -> torch.Tensor:
    """float32 values >= the float64 t (one ulp up from the nearest), so a rounding never narrows a window."""
    t32 = t.float()
    return torch.nextafter(t32, torch.full_like(t32, float("inf")))


def _f32_below(t: torch.Tensor) -> torch.Tensor:
    t32 = t.float()
    return torch.nextafter(t32, torch.full_like(t32, float("-inf")))


def _inside_pairs(blk, lo, hi, thr, by_row: bool, mask, x, y, i0: int, cmp, pair_tol=None, any_of=None, known=None):
    """The (row, column) pairs of a float32 block whose exact squared distance is inside the ball threshold
    (thr per real row when by_row, else per fake column; lo/hi: float32 thr -/+ the error bound, shaped to
    broadcast over the block). Candidates are the entries <= hi, usually a few per row: one comparison and one
    nonzero over the block, then everything on the short pair list; pairs between lo and hi are settled in
    float64. None when the candidates are too many for a pair list (degenerate data: the dense path).

    lo/hi use the largest error bound of the row (column); `pair_tol` = (factor, cx2, cy2) first settles the
    undecided pairs with their own bound factor * (cx2[i] + cy2[j]) (tighter), so fewer go to float64.
    `any_of` ("row" or "col") with `known` (bool, per block row or per fake column): the caller only needs to
    know whether each row (column) has SOME inside pair; undecided pairs of a row (column) that is already
    known to have one, from `known` or from this block's sure pairs, are then not settled (and not returned)."""
    torch.le(blk, hi, out=mask)
    if int(mask.count_nonzero()) > _SPARSE_MAX * blk.numel():
        return None
    a, j = mask.nonzero(as_tuple=True)
    idx = a if by_row else j
    inside = blk[a, j] < lo.reshape(-1)[idx]
    amb = (~inside).nonzero().squeeze(1)
    if amb.numel() and pair_tol is not None:
        fac, cx2, cy2 = pair_tol
        aa, jj = a[amb], j[amb]
        v = blk[aa, jj].double()
        th = thr[aa + i0] if by_row else thr[jj]
        tp = fac * (cx2[aa + i0] + cy2[jj])
        sure_in = v < th - tp  # exact d2 <= v + tp < th: inside for < and <=
        inside[amb[sure_in]] = True
        amb = amb[~sure_in & (v <= th + tp)]  # v > th + tp: exact d2 > th, outside
    if amb.numel() and any_of is not None:
        tgt = a if any_of == "row" else j
        done = known.clone()
        done[tgt[inside]] = True
        amb = amb[~done[tgt[amb]]]
    if amb.numel():
        aa, jj = a[amb], j[amb]
        inside[amb] = cmp(_exact_pair_d2(x, aa + i0, y, jj), thr[aa + i0] if by_row else thr[jj])
    return a[inside], j[inside]


def _dense_inside(blk, lo, hi, thr2d, x, y, i0: int, cmp, exact_block):
    """_inside_pairs as a dense (c, M) mask, for blocks with many candidates; when the bound leaves too many
    pairs undecided, the block is redone in float64."""
    sure = blk < lo
    a, j = ((blk <= hi) ^ sure).nonzero(as_tuple=True)
    if a.numel() > _MAX_AMBIGUOUS * blk.numel():
        return cmp(exact_block(), thr2d)
    if a.numel():
        sure[a, j] = cmp(_exact_pair_d2(x, a + i0, y, j), thr2d.expand(blk.shape)[a, j])
    return sure


def _prdc_core_fast(x, y, k_pr, k_dc, strict, chunk, wx, wy, rr=None) -> dict[str, float]:
    """_prdc_core with float32 distance blocks and exact float64 resolution of every uncertain decision.

    Memory: one float32 centred copy of one set at a time (the real set for its radii, then the fake set),
    one (chunk, max(N, M)) float32 block and its bool mask, reused; the real rows are converted block by
    block in the real-fake pass."""
    n, d = x.shape
    m = y.shape[0]
    dev = x.device
    mu = x.mean(0)
    cmp = torch.lt if strict else torch.le
    if rr is None:
        x32, cx2 = _centred_f32(x, mu, chunk)
        rr = _knn_sq_radii_fast(x, tuple(sorted({k_pr, k_dc})), chunk, mu, x32, cx2)
        del x32
    else:  # cached radii: only the centred norms are needed (row by row: the same bits as _centred_f32's)
        cx2 = torch.empty(n, dtype=torch.float64, device=dev)
        for i0 in range(0, n, chunk):
            cx2[i0 : i0 + chunk] = _sq_norms(x[i0 : i0 + chunk] - mu)
    r_p2, r_d2 = rr[k_pr], rr[k_dc]
    y32, cy2 = _centred_f32(y, mu, chunk)
    f_p2 = _knn_sq_radii_fast(y, (k_pr,), chunk, mu, y32, cy2)[k_pr]
    fac = _tol_factor(d)
    tol_row = fac * (cx2 + cy2.max())  # (N,) bound for pairs with real i
    tol_col = fac * (cx2.max() + cy2)  # (M,) bound for pairs with fake j
    pair_tol = (fac, cx2, cy2)  # the bound of one pair (i, j): fac * (cx2[i] + cy2[j])
    balls = [("d", r_d2)] + ([] if k_pr == k_dc else [("p", r_p2)])
    row_win = {kind: (_f32_below(t - tol_row), _f32_above(t + tol_row)) for kind, t in balls}
    lo_rec, hi_rec = _f32_below(f_p2 - tol_col)[None, :], _f32_above(f_p2 + tol_col)[None, :]
    cx2_32, cy2_32 = cx2.float(), cy2.float()
    wx_d = wx / wx.mean() if wx is not None else None
    dens = torch.zeros(m, dtype=torch.float64 if wx is not None else torch.int64, device=dev)
    prec_any = torch.zeros(m, dtype=torch.bool, device=dev)
    recall = torch.zeros(n, dtype=torch.bool, device=dev)
    cover = torch.zeros(n, dtype=torch.bool, device=dev)
    c_max = min(chunk, n)
    buf = torch.empty(c_max * m, dtype=torch.float32, device=dev)
    mask_buf = torch.empty(c_max * m, dtype=torch.bool, device=dev)
    norms64 = []  # float64 norms for the dense float64 fallback, computed only if a block needs it

    for i0 in range(0, n, chunk):
        i1 = min(i0 + chunk, n)
        c = i1 - i0
        blk = buf[: c * m].view(c, m)
        mask = mask_buf[: c * m].view(c, m)
        torch.addmm(cy2_32[None, :], (x[i0:i1] - mu).float(), y32.T, alpha=-2.0, out=blk)
        blk.add_(cx2_32[i0:i1, None])
        cache: dict = {}

        def exact_block(i0=i0, i1=i1, cache=cache):
            if "b" not in cache:
                if not norms64:
                    norms64.extend([_sq_norms(x), _sq_norms(y)])
                cache["b"] = _d2_block(x[i0:i1], norms64[0][i0:i1], y, norms64[1])
            return cache["b"]

        for kind, t in balls:
            lo, hi = (w[i0:i1, None] for w in row_win[kind])
            only_any = kind == "p"  # the precision ball feeds only prec_any (the density ball also counts)
            pairs = _inside_pairs(blk, lo, hi, t, True, mask, x, y, i0, cmp, pair_tol,
                                  "col" if only_any else None, prec_any if only_any else None)
            if pairs is not None:
                a, j = pairs
                if kind == "d":
                    cover[a + i0] = True
                    dens.index_add_(0, j, torch.ones_like(j) if wx is None else wx_d[a + i0])
                if kind == "p" or k_pr == k_dc:
                    prec_any[j] = True
                continue
            inside = _dense_inside(blk, lo, hi, t[i0:i1, None], x, y, i0, cmp, exact_block)
            if kind == "d":
                cover[i0:i1] |= inside.any(1)
                if wx is None:
                    dens += inside.view(torch.uint8).sum(0, dtype=torch.int64)
                else:
                    dens += wx_d[i0:i1] @ inside.to(torch.float64)
            if kind == "p" or k_pr == k_dc:
                prec_any |= inside.any(0)
        # recall: real i inside some fake ball (radius f_p2[j])
        pairs = _inside_pairs(blk, lo_rec, hi_rec, f_p2, False, mask, x, y, i0, cmp, pair_tol, "row", recall[i0:i1])
        if pairs is not None:
            recall[pairs[0] + i0] = True
        else:
            recall[i0:i1] |= _dense_inside(blk, lo_rec, hi_rec, f_p2[None, :], x, y, i0, cmp, exact_block).any(1)
        del cache
    return _finish(prec_any, recall, cover, dens, k_dc, m, wx, wy)


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
    chunk: Optional[int] = None,
    device: Optional[str | torch.device] = None,
    convention: str = "official",
    nearest_k: Optional[int] = None,
    fast: Optional[bool] = None,
    real_radii: Optional["KnnRadii"] = None,
) -> dict[str, float]:
    """Precision, recall, density, coverage of fake features against real features.

    official: P/R with k_pr (3) and D/C with k_dc (5), inclusive `<=`. convention="prdc": the prdc package
    (one k = nearest_k or k_dc, strict `<`). `nearest_k` sets one k for all four in either convention.
    Runs on `device` (default: the inputs'); memory O((N + M) * chunk), `chunk` rows per distance block
    (default: from a budget of about 5 M entries, clamped to 64..4096). `fast` (default: on for CPU) forms
    distances in float32 and settles every uncertain comparison in float64: same results as fast=False.
    `real_radii`: the real set's k-NN radii from `knn_radii(real, ...)` (e.g. a reference-statistics cache),
    which skips the real-real distance pass; the values are identical. They are used only when they cover
    both k and were computed the way this call would compute them (`KnnRadii.tag`); otherwise ignored."""
    dev = resolve_device(device, real)
    k_pr, k_dc, strict = _resolve_ks(k_pr, k_dc, convention, nearest_k)
    x = _features(real, "real features", dev)
    y = _features(fake, "fake features", dev)
    check_same_dim(x, y, "real features", "fake features")
    use_fast = _use_fast(fast, x)
    c = _chunk(chunk, x, y)
    rr = real_radii.usable(x.shape[0], (k_pr, k_dc), _radii_tag(use_fast, c), dev) if real_radii is not None else None
    return _prdc_core(x, y, k_pr, k_dc, strict, c, fast=use_fast, rr=rr)


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
        rr = self._radii(self.drr, ur, tuple(sorted({k_pr, k_dc})))
        f_p2 = self._radii(self.dff, uf, (k_pr,))[k_pr]
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
