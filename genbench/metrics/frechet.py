"""Frechet distance between two Gaussians, through eigenvalues of a symmetric matrix (no sqrtm, no complex parts).

FD = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)).
With a Cholesky factor S1 = L L^T, S1 S2 = L (L^T S2 L) L^{-1} is similar to the symmetric PSD matrix
L^T S2 L, so tr((S1 S2)^(1/2)) = sum sqrt(eigvalsh(L^T S2 L)). Values only: no eigenvectors are formed.
When neither covariance is positive definite (N <= D), S1^(1/2) from `eigh` replaces L (same identity).

That statistics route is all there is when only (mu, sigma) exist. With a covariance from N <= D samples it is
inexact (relative error ~1e-6 at N = 300, D = 2048: the D - N + 1 zero eigenvalues come out as rounding noise
whose square roots add up). When the features are at hand, `frechet_distance_features` (and `CrossGramFD`, which
also gives bootstrap replicates cheaply) computes the same FD exactly from the n1 x n2 cross-Gram matrix of the
centred features; `fd_route` says which route a size calls for.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch

from genbench.errors import InvalidInputError
from genbench.metrics._util import as_f64, resolve_device, symmetric_eig, warn

# A Cholesky pivot this small relative to the largest variance marks a numerically singular covariance.
_NEAR_SINGULAR = 1e-10


def _sym(a: torch.Tensor) -> torch.Tensor:
    return 0.5 * (a + a.T)


def trace_sqrt_product(sigma1: torch.Tensor, sigma2: torch.Tensor) -> torch.Tensor:
    """tr((S1 S2)^(1/2)) for symmetric PSD S1, S2 (float64 tensors on one device), as a 0-d tensor."""
    s1, s2 = _sym(sigma1), _sym(sigma2)
    ev = None
    for a, b, name in ((s1, s2, "sigma1"), (s2, s1, "sigma2")):
        L, info = torch.linalg.cholesky_ex(a)
        if int(info) == 0:
            scale = float(a.diagonal().max().clamp_min(torch.finfo(torch.float64).tiny))
            if float(L.diagonal().min()) ** 2 < _NEAR_SINGULAR * scale:
                warn(
                    f"{name} is near-singular (smallest Cholesky pivot^2 / largest variance < {_NEAR_SINGULAR:g}); "
                    "the Frechet distance is finite but unstable. Use more samples than feature dimensions."
                )
            ev = symmetric_eig(_sym(L.T @ b @ L))
            break
        if name == "sigma1":
            warn(
                "sigma1 is singular (not positive definite: fewer samples than feature dimensions?); factoring "
                "sigma2 instead. The Frechet distance stays finite but is biased: use more samples than dimensions."
            )
    if ev is None:
        warn(
            "both covariances are singular (fewer samples than feature dimensions?); using the eigh square root "
            "of sigma1. The Frechet distance is finite but biased: use more samples than feature dimensions."
        )
        w, v = symmetric_eig(s1, vectors=True)
        h = (v * w.clamp_min(0).sqrt()) @ v.T
        ev = symmetric_eig(_sym(h @ s2 @ h))
    top = float(ev.abs().max()) if ev.numel() else 0.0
    if ev.numel() and float(ev.min()) < -1e-6 * max(top, 1e-300):
        warn(
            f"sigma1 sigma2 has a clearly negative eigenvalue ({float(ev.min()):.3g}, largest {top:.3g}): "
            "a covariance is not positive semidefinite. Check that sigmas are covariance matrices."
        )
    return ev.clamp_min(0).sqrt().sum()


def frechet_distance(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any, device: Optional[str | torch.device] = None) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2), float64 on `device` (default: the inputs').

    Accepts torch tensors or numpy arrays. Never returns NaN or a complex value; warns (MetricWarning) for
    singular or near-singular covariances. Rounding can make the result of identical inputs ~-1e-12; it is
    clamped at 0 (a Frechet distance is non-negative)."""
    dev = resolve_device(device, sigma1, mu1)
    m1, m2 = as_f64(mu1, "mu1", dev).reshape(-1), as_f64(mu2, "mu2", dev).reshape(-1)
    s1, s2 = as_f64(sigma1, "sigma1", dev, ndim=2), as_f64(sigma2, "sigma2", dev, ndim=2)
    d = m1.shape[0]
    if m2.shape[0] != d or s1.shape != (d, d) or s2.shape != (d, d):
        raise InvalidInputError(
            f"shape mismatch: mu1 {tuple(m1.shape)}, mu2 {tuple(m2.shape)}, sigma1 {tuple(s1.shape)}, "
            f"sigma2 {tuple(s2.shape)}; expected (D,), (D,), (D, D), (D, D) from the same feature extractor"
        )
    diff = m1 - m2
    fd = diff.dot(diff) + s1.trace() + s2.trace() - 2.0 * trace_sqrt_product(s1, s2)
    return max(float(fd), 0.0)


# ---------------------------------------------------------------------------------------- from the features
# With A (n1, D) and B (n2, D) the centred feature matrices, S1 = A^T A / (n1 - 1) and S2 = B^T B / (n2 - 1).
# The nonzero eigenvalues of S1 S2 are those of A B^T B A^T / ((n1 - 1)(n2 - 1)) = M M^T / c with M = A B^T
# (n1 x n2), so tr((S1 S2)^(1/2)) = sum of the singular values of M / sqrt(c): the nuclear norm of the
# cross-Gram matrix. The singular values come from an SVD of M itself (never from eigenvalues of M M^T, which
# would turn rounding of the zero eigenvalues into sqrt-size errors, the fault of the statistics route when
# N <= D). tr(S1) = |A|_F^2 / (n1 - 1). Cost: one n1 x n2 x D product and one n1 x n2 SVD.

MAX_CROSS_ENTRIES = 1 << 25  # the n1 x n2 cross-Gram matrix is held in float64: at most 256 MiB


def fd_route(n1: int, n2: int, d: int) -> str:
    """"features" (the exact cross-Gram route) or "statistics" (D x D covariances) for FD between n1 and n2
    rows in dimension d. The features route costs about n1 n2 min(n1, n2) (an SVD, some 4x the flops of the
    statistics route's eigvalsh per n^3), the statistics route about d^3. Features when a covariance is
    singular (min(n1, n2) <= d: only this route is exact there) and the SVD costs at most ~8x the statistics
    route (n1 n2 min(n1, n2) <= 2 d^3), or whenever it is the cheaper one (n1 n2 min(n1, n2) <= d^3 / 4); never
    when the n1 x n2 matrix exceeds MAX_CROSS_ENTRIES."""
    small = min(n1, n2)
    cost = n1 * n2 * small
    if n1 * n2 > MAX_CROSS_ENTRIES or cost > 2 * d ** 3:
        return "statistics"
    return "features" if small <= d or 4 * cost <= d ** 3 else "statistics"


class CrossGramFD:
    """Exact FD between the Gaussian fits (mean, unbiased covariance) of two feature sets, computed from the
    features through the nuclear norm of their centred n1 x n2 cross-Gram matrix (module comment above).

    `value()` is the FD of the full sets. `resampled(ir, i_f)` is the FD of x[ir] and y[i_f] (a bootstrap
    replicate) without forming them: resampling rows with replacement is reweighting each distinct row by its
    count c, and the replicate's centred cross-Gram matrix has the same singular values as
    diag(sqrt(c1)) (X - m1*)(Y - m2*)^T diag(sqrt(c2)) over the distinct rows only (about 63% of each set),
    which is read off the precomputed cross-Gram matrix; the traces and the mean difference need only
    O((n1 + n2) D) work."""

    def __init__(self, x: Any, y: Any, device: Optional[str | torch.device] = None):
        from genbench.metrics._util import as_features, check_same_dim

        dev = resolve_device(device, x)
        x = as_features(x, "real features", dev, 2)
        y = as_features(y, "fake features", dev, 2)
        check_same_dim(x, y, "real features", "fake features")
        self.n1, self.n2, self.dim = x.shape[0], y.shape[0], x.shape[1]
        m1, m2 = x.mean(0), y.mean(0)
        self.xc, self.yc = x - m1, y - m2
        self.diff = m1 - m2
        self.gram = self.xc @ self.yc.T
        self.r1 = (self.xc * self.xc).sum(1)  # squared row norms of the centred rows
        self.r2 = (self.yc * self.yc).sum(1)
        self._c = math.sqrt((self.n1 - 1) * (self.n2 - 1))

    def _nuclear(self, m: torch.Tensor) -> torch.Tensor:
        try:
            sv = torch.linalg.svdvals(m)
        except torch.linalg.LinAlgError:  # a device solver that does not converge: LAPACK on the CPU (as symmetric_eig)
            from genbench.metrics import _util

            if not _util._can_retry_on_cpu(m):
                raise
            sv = torch.linalg.svdvals(m.cpu()).to(m.device)
        return sv.sum() / self._c

    def value(self) -> float:
        fd = (self.diff.dot(self.diff) + self.r1.sum() / (self.n1 - 1) + self.r2.sum() / (self.n2 - 1)
              - 2.0 * self._nuclear(self.gram))
        return max(float(fd), 0.0)

    def resampled(self, ir: torch.Tensor, i_f: torch.Tensor) -> float:
        n1, n2 = self.n1, self.n2
        dev = self.gram.device
        c1 = torch.bincount(ir.to(dev), minlength=n1).to(torch.float64)
        c2 = torch.bincount(i_f.to(dev), minlength=n2).to(torch.float64)
        a1 = self.xc.T @ c1 / n1  # replicate mean minus the full-set mean
        a2 = self.yc.T @ c2 / n2
        i = c1.nonzero().squeeze(1)
        j = c2.nonzero().squeeze(1)
        g_c2 = self.gram @ c2 / n2  # (x_i - m1) . a2
        c1_g = c1 @ self.gram / n1  # a1 . (y_j - m2)
        m = self.gram[i][:, j] - g_c2[i, None] - c1_g[None, j] + a1.dot(a2)
        m = m * c1[i].sqrt()[:, None] * c2[j].sqrt()[None, :]
        tr1 = (c1.dot(self.r1) - n1 * a1.dot(a1)) / (n1 - 1)
        tr2 = (c2.dot(self.r2) - n2 * a2.dot(a2)) / (n2 - 1)
        dm = self.diff + a1 - a2
        fd = dm.dot(dm) + tr1 + tr2 - 2.0 * self._nuclear(m)
        return max(float(fd), 0.0)


def small_n_warning(n1: int, n2: int, d: int) -> None:
    if min(n1, n2) <= d:
        warn(
            f"FD from N={n1} and N={n2} samples in dimension {d}: a covariance is singular (rank <= N-1 < D). The "
            "value is computed exactly from the features, but FD is biased upward at small N: compare FDs only "
            f"at the same N (N > {d} is customary; 10000 for 2048-d FID)."
        )


def frechet_distance_features(real: Any, fake: Any, device: Optional[str | torch.device] = None,
                              route: Optional[str] = None) -> float:
    """FD between the Gaussian fits of two (N, D) feature matrices. `route` None picks `fd_route`: the exact
    cross-Gram route (`CrossGramFD`) when a covariance is singular or it is cheaper, else `gaussian_stats` +
    `frechet_distance`. Warns (MetricWarning) when a covariance is singular (N <= D)."""
    from genbench.metrics._util import as_features
    from genbench.metrics.stats import gaussian_stats

    dev = resolve_device(device, real)
    x = as_features(real, "real features", dev, 2)
    y = as_features(fake, "fake features", dev, 2)
    route = route or fd_route(x.shape[0], y.shape[0], x.shape[1])
    if route == "features":
        small_n_warning(x.shape[0], y.shape[0], x.shape[1])
        return CrossGramFD(x, y).value()
    if route != "statistics":
        raise InvalidInputError(f"route must be 'features' or 'statistics', got {route!r}")
    return frechet_distance(*gaussian_stats(x), *gaussian_stats(y), device=dev)
