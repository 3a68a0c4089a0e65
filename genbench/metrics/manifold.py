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

import torch

from genbench.errors import InvalidInputError
from genbench.metrics._util import check_same_dim, resolve_device
from genbench.metrics.knn import (_SPARSE_MAX, KnnRadii, _centred_f32, _chunk, _d2_block, _exact_pair_d2, _features,
                                  _knn_sq_radii_fast, _radii_tag, _sq_norms, _tol_factor, _use_fast, knn_sq_radii)

CONVENTIONS = ("official", "prdc")
# A squared distance within a relative TIE_RTOL of a ball's squared radius ties with it (`<=`: inside, `<`:
# outside). 1e-11 is 40x the rounding of a 2048-d squared distance from direct differences (~(d + 2) 1.1e-16)
# and ~100x that of |x|^2 - 2 x.y + |y|^2 on unit-norm 256-d features, so the float64 and float32-first routes
# (CPU and GPU) decide ties, distances equal in exact arithmetic, as exact arithmetic does; and it is far below
# the float32 precision of any feature (1e-7), so no real difference is merged.
TIE_RTOL = 1e-11
_MAX_AMBIGUOUS = 0.25  # share of a block's pairs above which the block is redone in float64 (degenerate data)


def ball_thresholds(radii: torch.Tensor, strict: bool) -> torch.Tensor:
    """What a squared distance is compared with for each ball: its squared radius moved by the tie allowance
    (`TIE_RTOL`, relative), up for inclusive balls, down for strict ones."""
    return radii * (1.0 - TIE_RTOL) if strict else radii * (1.0 + TIE_RTOL)


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
    items: bool = False,
) -> dict:
    """x real (N, D), y fake (M, D), float64 on one device; wx/wy optional row multiplicities; rr: the real
    set's squared k-NN radii {k: (N,)} when already known (see `knn_radii`). `items`: the per-row terms
    (`_items`) instead of the four means."""
    if fast:
        return _prdc_core_fast(x, y, k_pr, k_dc, strict, chunk, wx, wy, rr, items)
    if rr is None:
        rr = knn_sq_radii(x, tuple(sorted({k_pr, k_dc})), chunk)
    r_p2, r_d2 = (ball_thresholds(rr[k], strict) for k in (k_pr, k_dc))
    f_p2 = ball_thresholds(knn_sq_radii(y, (k_pr,), chunk)[k_pr], strict)
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
    if items:
        return _items(prec_any, recall, cover, dens, k_dc)
    return _finish(prec_any, recall, cover, dens, k_dc, m, wx, wy)


def _items(prec_any, recall, cover, dens, k_dc) -> dict[str, torch.Tensor]:
    """The per-row terms whose plain means are the four scores: precision and density per fake row (inside some
    real ball; the real balls around it / k_dc), recall and coverage per real row, as float64."""
    return {"precision": prec_any.double(), "recall": recall.double(), "density": dens.double() / k_dc,
            "coverage": cover.double()}


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


def _prdc_core_fast(x, y, k_pr, k_dc, strict, chunk, wx, wy, rr=None, items=False) -> dict:
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
    r_p2, r_d2 = (ball_thresholds(rr[k], strict) for k in (k_pr, k_dc))
    y32, cy2 = _centred_f32(y, mu, chunk)
    f_p2 = ball_thresholds(_knn_sq_radii_fast(y, (k_pr,), chunk, mu, y32, cy2)[k_pr], strict)
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
    if items:
        return _items(prec_any, recall, cover, dens, k_dc)
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


def _real_fake(real: Any, fake: Any, device) -> tuple[torch.device, torch.Tensor, torch.Tensor]:
    """prdc's and prdc_items' inputs: the device (default: the real features'), both feature sets checked."""
    dev = resolve_device(device, real)
    x = _features(real, "real features", dev)
    y = _features(fake, "fake features", dev)
    check_same_dim(x, y, "real features", "fake features")
    return dev, x, y


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
    Distances that tie with a ball's radius (equal in exact arithmetic, e.g. normalised count features) are
    decided as exact arithmetic would, on either route, through the tie allowance `TIE_RTOL`.
    `real_radii`: the real set's k-NN radii from `knn_radii(real, ...)` (e.g. a reference-statistics cache),
    which skips the real-real distance pass; the values are identical. They are used only when they cover
    both k and were computed the way this call would compute them (`KnnRadii.tag`); otherwise ignored."""
    k_pr, k_dc, strict = _resolve_ks(k_pr, k_dc, convention, nearest_k)
    dev, x, y = _real_fake(real, fake, device)
    use_fast = _use_fast(fast, x)
    c = _chunk(chunk, x, y)
    rr = real_radii.usable(x.shape[0], (k_pr, k_dc), _radii_tag(use_fast, c), dev) if real_radii is not None else None
    return _prdc_core(x, y, k_pr, k_dc, strict, c, fast=use_fast, rr=rr)


def prdc_items(real: Any, fake: Any, k_pr: int = 3, k_dc: int = 5, strict: bool = False,
               chunk: Optional[int] = None, device: Optional[str | torch.device] = None,
               fast: Optional[bool] = None) -> dict[str, torch.Tensor]:
    """The per-row terms of `prdc` ("official" k's; `strict`: `<` balls): {"precision": (M,), "density": (M,)}
    per fake row and {"recall": (N,), "coverage": (N,)} per real row, float64, whose plain means are `prdc`'s
    values. They come from the same computation as `prdc` on the same device and `fast` setting, so every
    decision at a ball's boundary is the same (the paired bootstrap resamples them)."""
    _dev, x, y = _real_fake(real, fake, device)
    if min(k_pr, k_dc) < 1:
        raise InvalidInputError(f"k must be >= 1, got k_pr={k_pr}, k_dc={k_dc}")
    return _prdc_core(x, y, int(k_pr), int(k_dc), bool(strict), _chunk(chunk, x, y), fast=_use_fast(fast, x),
                      items=True)
