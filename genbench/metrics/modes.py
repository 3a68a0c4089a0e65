"""Mode coverage on known Gaussian mixtures (VEEGAN / PacGAN protocol) and classifier-labelled class coverage."""

from __future__ import annotations

import math
from typing import Any, Optional

import torch

from genbench.errors import InvalidInputError
from genbench.metrics._util import as_f64, warn


def _kl_to_uniform(counts: torch.Tensor) -> float:
    """KL(p || uniform) in nats, p = counts / counts.sum(); 0 log 0 = 0. = log K - H(p). inf when counts are all 0."""
    total = float(counts.sum())
    k = counts.numel()
    if total <= 0:
        return math.inf
    p = counts.double() / total
    nz = p[p > 0]
    return float((nz * (nz * k).log()).sum())


def mode_coverage(samples: Any, mixture: Any, n_std: float = 3.0) -> dict:
    """VEEGAN / PacGAN mode metrics of 2D samples against a known equal-weight mixture
    (`genbench.data.mixtures.GaussianMixture2D`: `.means` (K, 2), `.std`).

    Each sample is assigned to its nearest mean; it is high quality (HQ) when its Euclidean distance to that
    mean is below `n_std` * std (PacGAN's code: sqrt(sum((x - mu)^2 / var)) < 3). Returns
    modes_covered (modes with >= 1 HQ sample), num_modes, hq_share (HQ samples / all samples),
    kl (KL(p_HQ || uniform) in nats, the "reverse KL" of PacGAN Table 1; log K for a sampler collapsed on one
    mode, inf when no sample is HQ) and histogram (HQ samples per mode, list of ints).
    For exact samples the expected hq_share is 1 - exp(-n_std^2 / 2) = 0.98889 (n_std=3, 2D)."""
    means = as_f64(getattr(mixture, "means", None), "mixture.means", ndim=2)
    std = float(getattr(mixture, "std"))
    x = as_f64(samples, "samples")
    if x.ndim != 2 or x.shape[1] != means.shape[1]:
        raise InvalidInputError(
            f"samples must be (N, {means.shape[1]}) points for mixture {getattr(mixture, 'name', '')!r}, "
            f"got shape {tuple(x.shape)}"
        )
    if x.shape[0] == 0:
        raise InvalidInputError("mode_coverage needs at least one sample")
    k = means.shape[0]
    d = torch.cdist(x, means.to(x.device))  # (N, K)
    dmin, idx = d.min(1)
    hq = dmin < n_std * std
    hist = torch.bincount(idx[hq], minlength=k)
    return {
        "modes_covered": int((hist > 0).sum()),
        "num_modes": k,
        "hq_share": float(hq.double().mean()),
        "kl": _kl_to_uniform(hist),
        "histogram": [int(v) for v in hist.tolist()],
        "n_samples": int(x.shape[0]),
        "n_std": float(n_std),
    }


def labels_from(labels_or_probs: Any, num_modes: Optional[int] = None) -> tuple[torch.Tensor, int]:
    """Integer mode labels from (N,) labels, (N, K) class probabilities (argmax) or (N, C, K) per-channel
    probabilities (Stacked MNIST: mode = digits read as a base-K number, K^C modes)."""
    t = labels_or_probs
    if not isinstance(t, torch.Tensor):
        t = torch.as_tensor(t)
    if t.ndim == 1:
        if t.is_floating_point():
            if not bool((t == t.round()).all()):
                raise InvalidInputError("1-D class input must hold integer labels; pass (N, K) probabilities instead")
        labels = t.long()
        if num_modes is None:
            raise InvalidInputError("num_modes is required with integer labels")
        k = int(num_modes)
    elif t.ndim == 2:
        labels = t.argmax(1)
        k = int(num_modes) if num_modes is not None else int(t.shape[1])
    elif t.ndim == 3:
        digits = t.argmax(2)  # (N, C)
        base = int(t.shape[2])
        c = int(t.shape[1])
        weights = torch.tensor([base ** (c - 1 - i) for i in range(c)], dtype=torch.long)
        labels = (digits.long() * weights).sum(1)
        k = base**c
        if num_modes is not None and int(num_modes) not in (base, k):  # per-channel classes or joint modes
            raise InvalidInputError(f"(N, {c}, {base}) probabilities make {k} modes, but num_modes={num_modes}")
    else:
        raise InvalidInputError(f"class input must be (N,), (N, K) or (N, C, K), got shape {tuple(t.shape)}")
    if labels.numel() == 0:
        raise InvalidInputError("class_coverage needs at least one sample")
    if int(labels.min()) < 0 or int(labels.max()) >= k:
        raise InvalidInputError(f"labels must lie in [0, {k}), got range [{int(labels.min())}, {int(labels.max())}]")
    return labels, k


def class_coverage(labels_or_probs: Any, num_modes: Optional[int] = None) -> dict:
    """Modes covered (classes with >= 1 sample), KL(p_gen || uniform over num_modes) in nats and the per-mode
    histogram, from classifier labels or probabilities (see `labels_from`). Fashion-MNIST: 10 classes;
    Stacked MNIST: (N, 3, 10) probabilities -> 1000 modes."""
    labels, k = labels_from(labels_or_probs, num_modes)
    hist = torch.bincount(labels.cpu(), minlength=k)
    if labels.numel() < k:
        warn(f"{labels.numel()} samples cannot cover {k} modes; use many more samples than modes (PacGAN: 26000 for 1000)")
    return {
        "modes_covered": int((hist > 0).sum()),
        "num_modes": k,
        "kl": _kl_to_uniform(hist),
        "histogram": [int(v) for v in hist.tolist()],
        "n_samples": int(labels.numel()),
    }
