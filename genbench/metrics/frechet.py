"""Frechet distance between two Gaussians, through eigenvalues of a symmetric matrix (no sqrtm, no complex parts).

FD = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)).
With a Cholesky factor S1 = L L^T, S1 S2 = L (L^T S2 L) L^{-1} is similar to the symmetric PSD matrix
L^T S2 L, so tr((S1 S2)^(1/2)) = sum sqrt(eigvalsh(L^T S2 L)). Values only: no eigenvectors are formed.
When neither covariance is positive definite (N <= D), S1^(1/2) from `eigh` replaces L (same identity).
"""

from __future__ import annotations

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
