"""Likelihood units: nats -> bits per dimension / bits per character / perplexity.

Convention (genbench/models/base.py): for images, `log_prob` is already the log-probability of the discrete
8-bit image in nats, so bits/dim = -log_prob / (D ln 2). A model that reports a continuous density on the
[0, 1] scale (uniform dequantisation) needs the 8-bit offset: bpd = NLL_continuous / (D ln 2) + 8
(`continuous_to_discrete_bits_per_dim`). For points, bits/dim of a continuous density can be negative.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from genbench.errors import InvalidInputError

LN2 = math.log(2.0)


def _mean(x: Any, name: str) -> float:
    t = torch.as_tensor(x, dtype=torch.float64)
    if t.numel() == 0:
        raise InvalidInputError(f"{name} is empty")
    if not bool(torch.isfinite(t).all()):
        raise InvalidInputError(f"{name} contains NaN/inf; the model's likelihood evaluation failed for some inputs")
    return float(t.mean())


def _check_dim(dim: int) -> int:
    if int(dim) < 1:
        raise InvalidInputError(f"dim must be >= 1, got {dim}")
    return int(dim)


def nats_to_bits_per_dim(nll_nats: Any, dim: int, dequantized_offset: float = 0.0) -> float:
    """Mean NLL in nats per example (scalar or per-example values) -> bits/dim: nll / (dim ln 2) + offset.
    Use dequantized_offset=8 for a continuous NLL of 8-bit data scaled to [0, 1] (log2 256)."""
    return _mean(nll_nats, "nll_nats") / (_check_dim(dim) * LN2) + float(dequantized_offset)


def continuous_to_discrete_bits_per_dim(nll_continuous_nats: Any, dim: int, bits: int = 8) -> float:
    """Bits/dim of `bits`-bit data from a continuous NLL (nats) on the [0, 1] scale with uniform
    dequantisation: NLL / (D ln 2) + bits (the density on [0,1] is 2^bits times the density on [0, 2^bits))."""
    return nats_to_bits_per_dim(nll_continuous_nats, dim, dequantized_offset=float(bits))


def bits_per_dim(log_prob_nats: Any, dim: int) -> float:
    """bits/dim = -mean(log_prob) / (dim ln 2), for log_prob in the genbench.models convention (discrete
    8-bit log-probability for images, continuous log density for points)."""
    return -_mean(log_prob_nats, "log_prob_nats") / (_check_dim(dim) * LN2)


def bits_per_char(nll_nats_per_char: Any) -> float:
    """Mean NLL per character in nats -> bits per character (nats / ln 2)."""
    return _mean(nll_nats_per_char, "nll_nats_per_char") / LN2


def perplexity(nll_nats_per_token: Any) -> float:
    """exp(mean NLL per token in nats)."""
    return math.exp(_mean(nll_nats_per_token, "nll_nats_per_token"))
