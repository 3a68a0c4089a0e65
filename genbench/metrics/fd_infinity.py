"""FD∞: the Fréchet distance extrapolated to infinitely many samples (Chong & Forsyth, CVPR 2020, "Effectively
Unbiased FID and Inception Score and where to find them").

FD computed from N samples is biased upward, and the bias is close to linear in 1/N. FD∞ computes FD on random
subsets at several sizes N_1 < ... < N_P, fits FD_N = a + b / N by ordinary least squares and reports the
intercept a (the value at 1/N = 0). The paper uses P = 15 sizes `linspace(5000, 50000, 15)` with one draw per
size and the real statistics fixed; at smaller N genbench keeps the paper's ratio (smallest size = 10% of the
samples) and states the sizes in the protocol.

`scale` says which side is subsampled:
- "both" (genbench's default): the real and the fake features are subsampled together, keeping n_real / n_fake.
  A FD has a 1/N bias from *each* side; genbench's reference sets are as small as its sample sets (1,000 rows in
  the quick suite), so fixing the real side (the paper) would leave about half of the bias in a.
- "fake" (the paper, and the reference code github.com/mchong6/FID_IS_infinity): real statistics from all real
  rows (or `real_stats`), only the fake rows subsampled.

Every subset is drawn without replacement by one CPU torch.Generator seeded with `seed` (sizes ascending; per draw
the fake rows, then the real rows): same seed, same number. FD∞ is an extrapolation and may come out slightly
negative when the true FD is ~0.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Optional

import numpy as np
import torch

from genbench.errors import InvalidInputError
from genbench.metrics._util import MetricWarning, as_features, check_same_dim, resolve_device, warn
from genbench.metrics.frechet import frechet_distance
from genbench.metrics.stats import gaussian_stats

POINTS = 15  # the paper's number of sizes
MIN_FRACTION = 0.1  # the paper's smallest size over largest: 5000 / 50000
SCALES = ("both", "fake")
MIN_DISTINCT = 3  # a line through fewer distinct sizes leaves nothing to check the fit with


def fit_intercept(sizes: Any, values: Any) -> tuple[float, float]:
    """Least-squares line values = a + b / sizes (float64); returns (a, b). a is the extrapolation to N = inf."""
    x = 1.0 / np.asarray(sizes, dtype=np.float64).reshape(-1)
    y = np.asarray(values, dtype=np.float64).reshape(-1)
    if x.shape != y.shape or x.size < 2:
        raise InvalidInputError(f"fit_intercept needs as many values as sizes (>= 2), got {x.size} sizes and {y.size} values")
    xm, ym = x.mean(), y.mean()
    sxx = float(((x - xm) ** 2).sum())
    if sxx == 0.0:
        raise InvalidInputError("fit_intercept needs at least two distinct sizes")
    b = float(((x - xm) * (y - ym)).sum()) / sxx
    return float(ym - b * xm), b


def subset_sizes(n: int, points: int = POINTS, min_fraction: float = MIN_FRACTION) -> list[int]:
    """The subset sizes: `np.linspace(ceil(min_fraction * n), n, points)` cast to int (the reference code's
    `astype('int32')`: truncation), duplicates removed. The largest is n itself."""
    lo = max(2, math.ceil(min_fraction * n - 1e-9))
    return sorted({int(s) for s in np.linspace(lo, n, points).astype(np.int64)})


def _plan(n_fake: int, n_real: int, points: int, min_fraction: float, scale: str) -> tuple[list[int], list[int]]:
    sizes = subset_sizes(n_fake, points, min_fraction)
    real_sizes = [max(2, int(round(s * n_real / n_fake))) for s in sizes] if scale == "both" else [n_real] * len(sizes)
    return sizes, real_sizes


def _minimum_rows(points: int, min_fraction: float) -> int:
    for n in range(2, 1_000_000):
        if len(subset_sizes(n, points, min_fraction)) >= min(MIN_DISTINCT, points):
            return n
    return 1_000_000  # unreachable for sane settings


def _fd_pair(real: torch.Tensor, fake: torch.Tensor, real_stats: Optional[tuple]) -> float:
    """FD of one pair of subsets: from fixed real statistics, else from the two feature matrices. Where
    genbench.metrics.frechet has `frechet_distance_features` (the exact cross-Gram route for few rows in many
    dimensions, e.g. 1,000 rows of 2048-d Inception features), it picks the route; otherwise the statistics
    route (D x D covariances), the same value up to rounding."""
    if real_stats is None:
        try:
            from genbench.metrics.frechet import frechet_distance_features
        except ImportError:
            pass
        else:
            return frechet_distance_features(real, fake)
        real_stats = gaussian_stats(real)
    return frechet_distance(*real_stats, *gaussian_stats(fake))


def fd_infinity(
    real: Any,
    fake: Any,
    points: int = POINTS,
    min_fraction: float = MIN_FRACTION,
    draws: int = 1,
    scale: str = "both",
    seed: int = 0,
    real_stats: Optional[tuple] = None,
    device: Optional[str | torch.device] = None,
) -> dict:
    """FD∞ of fake against real features (module docstring). Returns {"fd_inf", "slope", "sizes", "real_sizes",
    "fds" (one list of `draws` values per size), "fd_n" (the mean FD at the largest size), "points", "draws",
    "scale", "min_fraction"}.

    `real_stats`: precomputed (mu, sigma) of all real rows, used with scale="fake". Raises InvalidInputError for
    settings or sample counts that cannot give a fit (naming the minimum); warns (MetricWarning) when the smallest
    subset has no more rows than dimensions (singular covariances: the bias is then not yet linear in 1/N)."""
    if scale not in SCALES:
        raise InvalidInputError(f"fd_inf scale must be one of {SCALES}, got {scale!r}")
    if int(points) != points or points < MIN_DISTINCT:
        raise InvalidInputError(f"fd_inf needs points >= {MIN_DISTINCT} subset sizes for a line fit, got {points!r}")
    if int(draws) != draws or draws < 1:
        raise InvalidInputError(f"fd_inf needs draws >= 1 per size, got {draws!r}")
    if not (0.0 < float(min_fraction) < 1.0):
        raise InvalidInputError(f"fd_inf min_fraction must be in (0, 1) (the paper: 0.1), got {min_fraction!r}")
    points, draws = int(points), int(draws)
    dev = resolve_device(device, fake)
    x = as_features(real, "real features", dev, 2)
    y = as_features(fake, "fake features", dev, 2)
    check_same_dim(x, y, "real features", "fake features")
    n_real, n_fake, d = int(x.shape[0]), int(y.shape[0]), int(y.shape[1])
    sizes, real_sizes = _plan(n_fake, n_real, points, min_fraction, scale)
    if len(sizes) < MIN_DISTINCT:
        need = _minimum_rows(points, min_fraction)
        raise InvalidInputError(
            f"fd_inf needs at least {need} fake feature rows for {MIN_DISTINCT} distinct subset sizes from "
            f"{min_fraction:g} x N to N (points={points}); got {n_fake}. Draw more samples, or score fd instead."
        )
    if min(real_sizes) < 2:
        raise InvalidInputError(f"fd_inf needs at least 2 real rows per subset; the plan gives {min(real_sizes)} "
                                f"(n_real={n_real}, n_fake={n_fake}); use more real rows")
    smallest = min(sizes[0], real_sizes[0]) if scale == "both" else sizes[0]
    if smallest <= d:
        warn(
            f"fd_inf: the smallest subset has {smallest} rows for {d}-dimensional features, so its covariance is "
            f"singular and the FD bias is not yet linear in 1/N; FD∞ is then a rough extrapolation. Use more than "
            f"{math.ceil((d + 1) / min_fraction)} samples or a larger min_fraction."
        )
    fixed = None
    if scale == "fake":
        fixed = tuple(t.to(dev, torch.float64) for t in real_stats) if real_stats is not None else None
        if fixed is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MetricWarning)
                fixed = gaussian_stats(x)
    g = torch.Generator().manual_seed(int(seed))
    fds: list[list[float]] = []
    with warnings.catch_warnings():  # singular subsets were warned about once, above
        warnings.simplefilter("ignore", MetricWarning)
        for s, sr in zip(sizes, real_sizes):
            row = []
            for _ in range(draws):
                fi = torch.randperm(n_fake, generator=g)[:s].to(dev)
                if scale == "both":
                    ri = torch.randperm(n_real, generator=g)[:sr].to(dev)
                    row.append(_fd_pair(x[ri], y[fi], None))
                else:
                    row.append(_fd_pair(x, y[fi], fixed))
            fds.append(row)
    a, b = fit_intercept([s for s in sizes for _ in range(draws)], [v for row in fds for v in row])
    return {"fd_inf": a, "slope": b, "sizes": sizes, "real_sizes": real_sizes, "fds": fds,
            "fd_n": float(np.mean(fds[-1])), "points": points, "draws": draws, "scale": scale,
            "min_fraction": float(min_fraction)}


# ----------------------------------------------------------------------------------- the registered metric
def _fd_inf_metric(ctx) -> list:
    from genbench.metrics.base import MetricResult

    r = fd_infinity(ctx.real_features, ctx.fake_features, points=ctx.fd_inf_points,
                    min_fraction=ctx.fd_inf_min_fraction, draws=ctx.fd_inf_draws, scale=ctx.fd_inf_scale,
                    seed=ctx.seed, real_stats=ctx.real_stats if ctx.fd_inf_scale == "fake" else None,
                    device=ctx.device)
    proto = {
        **ctx.base_protocol(),
        "feature_dim": int(ctx.fake_features.shape[1]),
        "sizes": r["sizes"],
        "real_sizes": r["real_sizes"],
        "draws": r["draws"],
        "scale": {"both": "real and fake subsampled together (n_real/n_fake kept)",
                  "fake": "fake subsampled, real statistics from all real rows (the paper)"}[r["scale"]],
        "subsets": "without replacement, torch.Generator(seed), sizes ascending",
        "fit": "ordinary least squares FD_N = a + b/N over all (size, draw) points; FD_inf = a",
        "reference": "Chong & Forsyth 2020, github.com/mchong6/FID_IS_infinity (15 sizes, 1 draw, real fixed)",
        "statistics": "float64, unbiased covariance",
    }
    extra = {"slope": r["slope"], "fd_points": r["fds"], "fd_at_n": r["fd_n"]}
    return [MetricResult("fd_inf", r["fd_inf"], "", False, "1", proto, extra=extra)]


def _register() -> None:
    from genbench.metrics.registry import MetricSpec, Output, register_metric

    register_metric(MetricSpec(
        "fd_inf", "", False, "1", ("real_features", "fake_features"), _fd_inf_metric,
        "FD extrapolated to infinite samples (Chong & Forsyth 2020): FD at 15 subset sizes, line in 1/N, value at 0",
        (Output("fd_inf", "", False, "quality", "FD∞", order=45, rank=1),),
    ))


_register()
