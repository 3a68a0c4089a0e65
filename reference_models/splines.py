"""Monotonic rational-quadratic splines (Durkan, Bekasov, Murray & Papamakarios 2019, "Neural Spline Flows",
section 3.1), the elementwise bijection of the `nsf` coupling layers (reference_models/spline_flow.py).

On [-B, B] the spline has K bins with knots (x_k, y_k), k = 0..K, x_0 = y_0 = -B, x_K = y_K = B, and positive
derivatives d_k at the knots; outside [-B, B] it is the identity (the boundary derivatives d_0 = d_K = 1 make the
whole map continuously differentiable). Inside bin k, with w_k = x_{k+1} - x_k, h_k = y_{k+1} - y_k, s_k = h_k / w_k
and xi = (x - x_k) / w_k in [0, 1]:

    y = y_k + h_k [s_k xi^2 + d_k xi (1 - xi)] / [s_k + (d_{k+1} + d_k - 2 s_k) xi (1 - xi)]
    dy/dx = s_k^2 [d_{k+1} xi^2 + 2 s_k xi (1 - xi) + d_k (1 - xi)^2] / [s_k + (d_{k+1} + d_k - 2 s_k) xi (1 - xi)]^2

(eqs. 4-5 of the paper). dy/dx > 0 whenever s_k, d_k > 0, so the map is strictly increasing. Its inverse solves
a quadratic in xi, a xi^2 + b xi + c = 0 with (delta = d_{k+1} + d_k - 2 s_k, v = y - y_k)

    a = h_k (s_k - d_k) + v delta,   b = h_k d_k - v delta,   c = -s_k v,   xi = 2c / (-b - sqrt(b^2 - 4ac))

(the root in [0, 1], written in the form that stays accurate when a -> 0).

The parameters come unconstrained from a network: K bin widths and K heights through a softmax (each at least
`min_bin` of the interval), K - 1 interior derivatives through a softplus shifted so that a zero input gives 1
(at least `min_derivative`). All-zero parameters therefore give the identity map, which is how every coupling
starts (its network's last layer is zero-initialised).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from genbench.errors import InvalidInputError

MIN_BIN = 1e-3
MIN_DERIVATIVE = 1e-3


def n_spline_params(bins: int) -> int:
    """Unconstrained numbers per transformed coordinate: K widths, K heights, K - 1 interior derivatives."""
    return 3 * bins - 1


def spline_params(params: torch.Tensor, bound: float, min_bin: float = MIN_BIN, min_derivative: float = MIN_DERIVATIVE):
    """Unconstrained (..., 3K - 1) -> (x knots (..., K + 1), widths (..., K), y knots, heights, derivatives
    (..., K + 1) with d_0 = d_K = 1). Knots run from -B to B exactly; each bin is at least `min_bin` of 2B."""
    if params.shape[-1] % 3 != 2:
        raise InvalidInputError(f"spline parameters must have 3K - 1 entries in the last dim, got {params.shape[-1]}")
    k = (params.shape[-1] + 1) // 3
    if min_bin * k >= 1:
        raise InvalidInputError(f"min_bin={min_bin} is too large for {k} bins (needs min_bin * bins < 1)")
    # widths and heights in one softmax: (..., 2, K) fractions of the interval -> knots (..., 2, K + 1)
    frac = min_bin + (1 - min_bin * k) * torch.softmax(params[..., : 2 * k].unflatten(-1, (2, k)), dim=-1)
    cum = torch.cumsum(frac[..., :-1], dim=-1)  # interior knots; the end knots are set exactly below
    lo, hi = torch.full_like(frac[..., :1], -bound), torch.full_like(frac[..., :1], bound)
    knots = torch.cat([lo, 2 * bound * cum - bound, hi], -1)
    sizes = knots[..., 1:] - knots[..., :-1]
    shift = math.log(math.expm1(1 - min_derivative))  # softplus(0 + shift) + min_derivative == 1
    inner = min_derivative + F.softplus(params[..., 2 * k:] + shift)
    one = torch.ones_like(inner[..., :1])
    d = torch.cat([one, inner, one], -1)
    return knots[..., 0, :], sizes[..., 0, :], knots[..., 1, :], sizes[..., 1, :], d


def rq_spline(x: torch.Tensor, params: torch.Tensor, bound: float, inverse: bool = False,
              min_bin: float = MIN_BIN, min_derivative: float = MIN_DERIVATIVE) -> tuple[torch.Tensor, torch.Tensor]:
    """Elementwise monotonic rational-quadratic spline of x (...) with parameters (..., 3K - 1); identity outside
    [-bound, bound]. Returns (y, log|dy/dx|) for the forward map, or (x, log|dx/dy|) with `inverse` (then the
    input is y). log|det| is 0 outside the interval."""
    xk, w, yk, h, d = spline_params(params, bound, min_bin, min_derivative)
    inside = (x >= -bound) & (x <= bound)
    v = torch.where(inside, x, 0.0)  # (outside points take a dummy value; not a clamp, whose gradient is 0 at +-B)
    # the bin holding v (in x knots forward, y knots inverse), then every quantity of that bin in one gather
    search = xk if not inverse else yk
    idx = (torch.searchsorted(search.contiguous(), v[..., None].contiguous(), right=True) - 1).clamp(0, w.shape[-1] - 1)
    table = torch.stack([xk[..., :-1], w, yk[..., :-1], h, d[..., :-1], d[..., 1:]], -1)  # (..., K, 6)
    x0, wk, y0, hk, dk, dk1 = table.gather(-2, idx[..., None].expand(*idx.shape[:-1], 1, 6)).squeeze(-2).unbind(-1)
    s = hk / wk
    delta = dk1 + dk - 2 * s
    if not inverse:
        xi = (v - x0) / wk  # in [0, 1] by the bin search (no clamp: its gradient would be 0 at the knots)
    else:
        dv = v - y0
        a = hk * (s - dk) + dv * delta
        b = hk * dk - dv * delta
        c = -s * dv
        disc = (b * b - 4 * a * c).clamp_min(0)
        xi = ((2 * c) / (-b - torch.sqrt(disc))).clamp(0, 1)  # clamp: rounding only (sampling needs no gradient)
    t = xi * (1 - xi)
    denom = s + delta * t
    # log dy/dx at xi (eq. 5); for the inverse map it is the negative
    logd = 2 * torch.log(s) + torch.log(dk1 * xi * xi + 2 * s * t + dk * (1 - xi) ** 2) - 2 * torch.log(denom)
    if not inverse:
        out = y0 + hk * (s * xi * xi + dk * t) / denom
    else:
        out = x0 + xi * wk
        logd = -logd
    return torch.where(inside, out, x), torch.where(inside, logd, torch.zeros_like(logd))
