"""Diversity and memorisation: Vendi score and nearest-train vs nearest-held-out distances."""

from __future__ import annotations

import math
from typing import Any, Optional

import torch

from genbench.errors import InvalidInputError
from genbench.metrics._util import as_features, check_same_dim, resolve_device, symmetric_eig
from genbench.metrics.knn import DEFAULT_CHUNK, _d2_block, _sq_norms, knn_sq_radii

VENDI_KERNELS = ("cosine", "rbf")


def _entropy_exp(ev: torch.Tensor) -> float:
    p = ev.clamp_min(0)
    p = p / p.sum()
    nz = p[p > 0]
    return float(torch.exp(-(nz * nz.log()).sum()))


def vendi_score(
    features: Any, kernel: str = "cosine", gamma: Optional[float] = None, device: Optional[str | torch.device] = None
) -> float:
    """Vendi score (Friedman & Dieng 2023): exp(Shannon entropy of the eigenvalues of K / n) for a similarity
    kernel with unit diagonal — the effective number of distinct samples (1 for identical samples, n for n
    mutually orthogonal ones).

    kernel="cosine": K = normalised features' Gram matrix; computed from the D x D matrix X^T X / n, which has
    the same non-zero eigenvalues (memory O(D^2), any n). kernel="rbf": K = exp(-gamma |x - y|^2) with
    gamma = 1 / median squared distance by default; forms the n x n matrix (keep n moderate)."""
    dev = resolve_device(device, features)
    x = as_features(features, "features", dev, 1)
    n = x.shape[0]
    if kernel == "cosine":
        norms = x.norm(dim=1, keepdim=True)
        if bool((norms == 0).any()):
            raise InvalidInputError("cosine Vendi score is undefined for all-zero feature rows; use kernel='rbf'")
        xn = x / norms
        small = xn.T @ xn if x.shape[1] < n else xn @ xn.T
        ev = symmetric_eig(0.5 * (small + small.T)) / n
    elif kernel == "rbf":
        d2 = _d2_block(x, _sq_norms(x), x, _sq_norms(x))
        d2.diagonal().zero_()
        if gamma is None:
            off = d2[~torch.eye(n, dtype=torch.bool, device=dev)]
            med = float(off.median()) if off.numel() else 1.0
            gamma = 1.0 / med if med > 0 else 1.0
        kmat = torch.exp(-gamma * d2)
        ev = symmetric_eig(0.5 * (kmat + kmat.T)) / n
    else:
        from genbench.registry import unknown_name_message

        raise InvalidInputError(unknown_name_message("vendi kernel", kernel, VENDI_KERNELS))
    return _entropy_exp(ev)


def _nn_sq_dist(q: torch.Tensor, ref: torch.Tensor, chunk: int) -> torch.Tensor:
    """Squared distance from each row of q to its nearest row of ref, chunked over q."""
    rn2 = _sq_norms(ref)
    qn2 = _sq_norms(q)
    out = torch.empty(q.shape[0], dtype=q.dtype, device=q.device)
    for i0 in range(0, q.shape[0], chunk):
        out[i0 : i0 + chunk] = _d2_block(q[i0 : i0 + chunk], qn2[i0 : i0 + chunk], ref, rn2).amin(1)
    return out


def memorisation(
    fake: Any,
    train: Any,
    heldout: Any,
    copy_fraction: float = 0.1,
    chunk: int = DEFAULT_CHUNK,
    seed: int = 0,
    device: Optional[str | torch.device] = None,
) -> dict:
    """How close generated samples are to the training set, compared with held-out data from the same source.

    - d_train(j), d_heldout(j): Euclidean distance of fake j to its nearest training / held-out row. The
      training set is first subsampled (seeded) to the held-out size, because nearest-neighbour distances
      shrink as a set grows. nn_ratio = median d_train / median d_heldout: ~1 for a model that generalises,
      < 1 when samples sit closer to the training data than to unseen data (memorisation).
    - Near copy: d_train(j) < copy_fraction * tau, where tau is the median distance from a training row to its
      nearest other training row (the typical spacing of the training data, full training set). With
      copy_fraction = 0.1 a fresh sample is rarely a near copy (in 2D, about 1 - 2^(-1/100) = 0.7%), while
      a copied training row has distance 0. near_copy_share = share of fakes that are near copies.
    Chunked: memory O(N * chunk)."""
    dev = resolve_device(device, fake)
    f = as_features(fake, "fake features", dev, 1)
    tr = as_features(train, "train features", dev, 2)
    ho = as_features(heldout, "held-out features", dev, 1)
    check_same_dim(f, tr, "fake features", "train features")
    check_same_dim(f, ho, "fake features", "held-out features")
    if not 0 < copy_fraction < 1:
        raise InvalidInputError(f"copy_fraction must be in (0, 1), got {copy_fraction}")
    tau = float(knn_sq_radii(tr, (1,), chunk)[1].sqrt().median())
    d_train_full = _nn_sq_dist(f, tr, chunk).sqrt()
    if tr.shape[0] > ho.shape[0]:
        g = torch.Generator().manual_seed(int(seed))
        sub = tr[torch.randperm(tr.shape[0], generator=g)[: ho.shape[0]].to(dev)]
    else:
        sub = tr
    d_train = _nn_sq_dist(f, sub, chunk).sqrt()
    d_held = _nn_sq_dist(f, ho, chunk).sqrt()
    med_tr, med_ho = float(d_train.median()), float(d_held.median())
    if med_ho == 0.0:
        ratio = 1.0 if med_tr == 0.0 else math.inf
    else:
        ratio = med_tr / med_ho
    threshold = copy_fraction * tau
    return {
        "near_copy_share": float((d_train_full < threshold).double().mean()),
        "nn_ratio": ratio,
        "median_d_train": med_tr,
        "median_d_heldout": med_ho,
        "threshold": threshold,
        "train_nn_spacing": tau,
        "copy_fraction": float(copy_fraction),
        "n_train_compared": int(sub.shape[0]),
    }
