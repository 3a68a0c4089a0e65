"""Kernel distance (KID): unbiased MMD^2 with the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3,
averaged over seeded random subsets (Binkowski et al. 2018)."""

from __future__ import annotations

from typing import Any, Optional

import torch

from genbench.errors import InvalidInputError
from genbench.metrics._util import as_features, check_same_dim, resolve_device, warn


def _poly_kernel(a: torch.Tensor, b: torch.Tensor, d: int) -> torch.Tensor:
    return (a @ b.T / d + 1.0) ** 3


def polynomial_mmd2(x: Any, y: Any) -> float:
    """Unbiased MMD^2 between feature sets x (m, d) and y (n, d) under k(x, y) = (x.y/d + 1)^3:
    mean over i != j of k(x_i, x_j) + mean over i != j of k(y_i, y_j) - 2 mean over all i, j of k(x_i, y_j).
    Small negative values are legitimate (unbiased estimator)."""
    dev = resolve_device(None, x)
    x, y = as_features(x, "x", dev, 2), as_features(y, "y", dev, 2)
    check_same_dim(x, y, "x", "y")
    return float(_mmd2(x, y))


def _mmd2(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    m, n, d = x.shape[0], y.shape[0], x.shape[1]
    kxx, kyy, kxy = _poly_kernel(x, x, d), _poly_kernel(y, y, d), _poly_kernel(x, y, d)
    return (
        (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
        + (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
        - 2.0 * kxy.mean()
    )


def kid_subset_indices(n_real: int, n_fake: int, subsets: int, subset_size: int, seed: int):
    """The (real_idx, fake_idx) pairs `kid` uses: for each subset, `subset_size` rows without replacement,
    drawn from one CPU torch.Generator seeded with `seed` (real first, then fake)."""
    g = torch.Generator().manual_seed(int(seed))
    out = []
    for _ in range(int(subsets)):
        ir = torch.randperm(n_real, generator=g)[:subset_size]
        i_f = torch.randperm(n_fake, generator=g)[:subset_size]
        out.append((ir, i_f))
    return out


MAX_KERNEL_ENTRIES = 1 << 25  # the precomputed kernel matrices (float64): at most 256 MiB


def _mmd2_from_kernels(kxx: torch.Tensor, kyy: torch.Tensor, kxy: torch.Tensor) -> torch.Tensor:
    m, n = kxx.shape[0], kyy.shape[0]
    return (
        (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
        + (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
        - 2.0 * kxy.mean()
    )


class KernelKID:
    """KID from kernel matrices computed once: k(x_i, x_j), k(y_i, y_j), k(x_i, y_j) for all rows. A subset's
    MMD^2 (or a bootstrap replicate's: resampled rows, duplicates included) is then read off by indexing, with no
    further products in dimension D. Same subsets as `kid` (kid_subset_indices with the same seed), same values
    up to rounding. Worth it when the subsets together cost more than the full matrices (`kid` decides)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, subsets: int, subset_size: int, seed: int):
        d = x.shape[1]
        self.kxx, self.kyy, self.kxy = _poly_kernel(x, x, d), _poly_kernel(y, y, d), _poly_kernel(x, y, d)
        self.subsets, self.subset_size, self.seed = int(subsets), int(subset_size), int(seed)

    def _values(self, rows_r: torch.Tensor, rows_f: torch.Tensor) -> torch.Tensor:
        dev = self.kxx.device
        m = min(self.subset_size, rows_r.numel(), rows_f.numel())
        if m == rows_r.numel() == rows_f.numel():  # every subset is all rows of both sets: one value (order-free)
            r, f = rows_r, rows_f
            v = _mmd2_from_kernels(self.kxx[r][:, r], self.kyy[f][:, f], self.kxy[r][:, f])
            return v.repeat(self.subsets)
        out = []
        for ir, i_f in kid_subset_indices(rows_r.numel(), rows_f.numel(), self.subsets, m, self.seed):
            r, f = rows_r[ir.to(dev)], rows_f[i_f.to(dev)]
            out.append(_mmd2_from_kernels(self.kxx[r][:, r], self.kyy[f][:, f], self.kxy[r][:, f]))
        return torch.stack(out)

    def values(self) -> torch.Tensor:
        dev = self.kxx.device
        return self._values(torch.arange(self.kxx.shape[0], device=dev), torch.arange(self.kyy.shape[0], device=dev))

    def resampled(self, ir: torch.Tensor, i_f: torch.Tensor) -> float:
        """KID's mean on real[ir], fake[i_f] (a bootstrap replicate), = kid(real[ir], fake[i_f])[0]."""
        dev = self.kxx.device
        return float(self._values(ir.to(dev), i_f.to(dev)).mean())


def use_kernels(n_real: int, n_fake: int, subsets: int, subset_size: int, replicates: int = 1) -> bool:
    """Precompute the full kernel matrices (KernelKID) when they fit (MAX_KERNEL_ENTRIES) and cost no more than
    the per-subset products they replace (`replicates` KID evaluations of `subsets` subsets each)."""
    m = min(subset_size, n_real, n_fake)
    full = n_real * n_real + n_fake * n_fake + n_real * n_fake
    return full <= MAX_KERNEL_ENTRIES and full <= 3 * m * m * subsets * replicates


def kid(
    real: Any,
    fake: Any,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
    device: Optional[str | torch.device] = None,
) -> tuple[float, Optional[float]]:
    """KID = (mean, std) over `subsets` seeded subsets of the unbiased polynomial MMD^2.

    The std (ddof=0) is the spread of ONE subset's estimate over subset draws (torch-fidelity's
    `kernel_inception_distance_std`), not the standard error of the mean: the subsets overlap, so it does not
    shrink with their number. It is None (undefined) when a subset holds every row of a set (subset size =
    n_real or n_fake): then every subset repeats those rows, and the spread leaves out that set's sampling
    noise entirely (all subsets identical when both sets are whole: a std of ~1e-16 that looks like
    certainty). The uncertainty of the mean is what a bootstrap interval measures (`bootstrap_ci`).

    The subset size is clamped to min(n_real, n_fake) with a MetricWarning. When it equals both n_real and n_fake,
    every subset is a permutation of both whole sets, and the unbiased MMD^2 (order-free) is computed once.
    Same seed -> same numbers."""
    dev = resolve_device(device, real)
    x = as_features(real, "real features", dev, 2)
    y = as_features(fake, "fake features", dev, 2)
    check_same_dim(x, y, "real features", "fake features")
    if subsets < 1 or subset_size < 2:
        raise InvalidInputError(f"kid needs subsets >= 1 and subset_size >= 2, got {subsets} and {subset_size}")
    m = min(int(subset_size), x.shape[0], y.shape[0])
    whole = [name for name, n in (("real", x.shape[0]), ("fake", y.shape[0])) if m == n]
    if m < subset_size:
        warn(
            f"KID subset size clamped from {subset_size} to {m} (n_real={x.shape[0]}, n_fake={y.shape[0]}); "
            "KID values at different subset sizes have different variance: report the size used."
            + (f" Every subset holds all {' and '.join(whole)} rows, so the std over subsets is undefined "
               "(reported as None): use a bootstrap interval for the uncertainty." if whole else "")
        )
    elif whole:
        warn(
            f"KID subset size {m} equals n_{' and n_'.join(whole)}: every subset holds all {' and '.join(whole)} "
            "rows, so the std over subsets is undefined (reported as None): use a bootstrap interval for the "
            "uncertainty."
        )
    if m == x.shape[0] == y.shape[0]:  # every subset is a permutation of both whole sets: the same MMD^2 each time
        vals = _mmd2(x, y).repeat(int(subsets))
    elif use_kernels(x.shape[0], y.shape[0], subsets, m):
        vals = KernelKID(x, y, subsets, m, seed).values()
    else:
        vals = torch.stack(
            [_mmd2(x[ir.to(dev)], y[i_f.to(dev)]) for ir, i_f in kid_subset_indices(x.shape[0], y.shape[0], subsets, m, seed)]
        )
    return float(vals.mean()), (None if whole else float(vals.std(unbiased=False)))
