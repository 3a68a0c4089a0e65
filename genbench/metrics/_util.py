"""Small helpers shared by the metric modules: input conversion, validation, warnings."""

from __future__ import annotations

import warnings
from typing import Any, Optional

import numpy as np
import torch

from genbench.device import resolve_device  # noqa: F401  (the metrics' device: given, else their inputs')
from genbench.errors import InvalidInputError


class MetricWarning(UserWarning):
    """A metric was computed, but under a condition that weakens it (singular covariance, clamped subset size...)."""


def warn(msg: str) -> None:
    warnings.warn(msg, MetricWarning, stacklevel=3)


def as_f64(x: Any, name: str, device: Optional[torch.device] = None, ndim: Optional[int] = None) -> torch.Tensor:
    """`x` (torch tensor, numpy array or nested list) as a float64 tensor on `device`, validated."""
    if x is None:
        raise InvalidInputError(f"{name} is missing (got None)")
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    elif not isinstance(x, torch.Tensor):
        try:
            x = torch.as_tensor(x, dtype=torch.float64)  # not float32 first: Python floats are doubles
        except Exception as e:  # noqa: BLE001 - report what was wrong
            raise InvalidInputError(f"{name} must be a tensor or array, got {type(x).__name__}: {e}") from None
    if x.is_complex():
        raise InvalidInputError(f"{name} is complex; metrics need real-valued inputs")
    x = x.to(device=device if device is not None else x.device, dtype=torch.float64)
    if ndim is not None and x.ndim != ndim:
        raise InvalidInputError(f"{name} must have {ndim} dimension(s), got shape {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise InvalidInputError(f"{name} contains {bad} NaN/inf value(s); check the model's samples or features")
    return x


def as_features(x: Any, name: str, device: Optional[torch.device] = None, min_rows: int = 1) -> torch.Tensor:
    """A (N, D) float64 feature matrix; (N,) is treated as N one-dimensional features."""
    x = as_f64(x, name, device)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise InvalidInputError(
            f"{name} must be a (N, D) feature matrix, got shape {tuple(x.shape)}; flatten samples or run a "
            "feature extractor first"
        )
    if x.shape[0] < min_rows:
        raise InvalidInputError(f"{name} has {x.shape[0]} row(s); this metric needs at least {min_rows}")
    return x


def check_same_dim(a: torch.Tensor, b: torch.Tensor, na: str, nb: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise InvalidInputError(
            f"{na} has dimension {a.shape[1]} but {nb} has {b.shape[1]}; both must come from the same feature extractor"
        )


def _can_retry_on_cpu(t: torch.Tensor) -> bool:
    return t.device.type != "cpu"


def symmetric_eig(a: torch.Tensor, vectors: bool = False):
    """`torch.linalg.eigvalsh(a)` (or `eigh` with `vectors`) of a symmetric matrix, on a's device. Where the
    device's solver fails to converge, the same float64 decomposition is done on the CPU and moved back:
    cuSOLVER's syevd was seen to fail on the singular, repeated-eigenvalue covariances of few degenerate samples
    (an H100, genbench's smoke suite) that LAPACK decomposes."""
    fn = torch.linalg.eigh if vectors else torch.linalg.eigvalsh
    try:
        return fn(a)
    except torch.linalg.LinAlgError:
        if not _can_retry_on_cpu(a):
            raise
        out = fn(a.cpu())
    return tuple(t.to(a.device) for t in out) if vectors else out.to(a.device)
