"""MAUVE (Pillutla et al., NeurIPS 2021): the area under the divergence frontier of quantised model (P) and
human (Q) features, with the settings of the `mauve-text` package's `compute_mauve(p_features=, q_features=)`.

1. Quantise: the rows of Q then P, L2-normalised, projected by PCA (fitted on all rows) onto the fewest leading
   components explaining >= 90% of the variance, cast to float32, clustered by faiss k-means into
   `buckets` = max(2, round(min(n_p, n_q) / 10)) clusters (5 restarts, <= 500 iterations, seed + 2); P and Q
   become histograms over the clusters.
2. Frontier: for 25 mixture weights w in linspace(1e-6, 1 - 1e-6), R = w P + (1 - w) Q and the point
   (exp(-c KL(Q || R)), exp(-c KL(P || R))) with c = 5, plus the end points (1, 0) and (0, 1).
3. MAUVE = the mean of the trapezoid areas under that curve read along x and along y. 1: P = Q; -> 0: disjoint.

Steps 2-3 are genbench's own code; step 1 uses faiss's k-means (as the package does) so that both give the same
clusters on the same features: `pip install faiss-cpu` (or `mauve-text`, which brings it). The PCA is a float64
SVD here (signs may differ from scikit-learn's, which changes no distance).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from genbench.errors import InvalidInputError
from genbench.metrics._util import as_features, check_same_dim

SCALING = 5.0
POINTS = 25
EXPLAINED_VARIANCE = 0.9
NUM_REDO = 5
MAX_ITER = 500
SEED = 25  # the package's default seed


def _kl(a: np.ndarray, b: np.ndarray) -> float:
    m = a > 0
    if np.any(m & (b <= 0)):
        return float("inf")
    return float(np.sum(a[m] * np.log(a[m] / b[m])))


def divergence_frontier(p: Any, q: Any, points: int = POINTS, scaling: float = SCALING) -> np.ndarray:
    """(points + 2, 2) array of (exp(-c KL(Q||R_w)), exp(-c KL(P||R_w))) for R_w = w P + (1 - w) Q, w in
    linspace(1e-6, 1 - 1e-6, points), with the end points (1, 0) and (0, 1)."""
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    if p.shape != q.shape or p.ndim != 1:
        raise InvalidInputError(f"histograms must be 1-D and of one length, got {p.shape} and {q.shape}")
    out = [(1.0, 0.0)]
    for w in np.linspace(1e-6, 1 - 1e-6, int(points)):
        r = w * p + (1 - w) * q
        out.append((np.exp(-scaling * _kl(q, r)), np.exp(-scaling * _kl(p, r))))
    out.append((0.0, 1.0))
    return np.asarray(out)


def _trapezoid(x: np.ndarray, y: np.ndarray) -> float:
    o = np.argsort(x)  # numpy's default sort, as the package: ties (P = Q exactly) are ordered the same way
    x, y = x[o], y[o]
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0))


def mauve_from_histograms(p: Any, q: Any, points: int = POINTS, scaling: float = SCALING) -> float:
    """MAUVE of two histograms over the same clusters (steps 2-3 of the module docstring)."""
    x, y = divergence_frontier(p, q, points, scaling).T
    return 0.5 * (_trapezoid(x, y) + _trapezoid(y, x))


def auto_buckets(n_p: int, n_q: int) -> int:
    return max(2, int(round(min(n_p, n_q) / 10)))


def quantise(p_features: Any, q_features: Any, buckets: int, explained_variance: float = EXPLAINED_VARIANCE,
             seed: int = SEED, num_redo: int = NUM_REDO, max_iter: int = MAX_ITER) -> tuple[np.ndarray, np.ndarray, int]:
    """(p_hist, q_hist, pca_dim): step 1 of the module docstring."""
    try:
        import faiss
    except ImportError:
        raise InvalidInputError("MAUVE clusters with faiss k-means: `pip install faiss-cpu` (or `pip install "
                                "mauve-text`, which brings it)") from None
    p = as_features(p_features, "p (model) features", torch.device("cpu"), 2)
    q = as_features(q_features, "q (human) features", torch.device("cpu"), 2)
    check_same_dim(p, q, "p features", "q features")
    x = torch.cat([q, p])
    norms = x.norm(dim=1, keepdim=True)
    x = x / torch.where(norms > 0, norms, torch.ones_like(norms))
    xc = x - x.mean(0)
    _, s, vh = torch.linalg.svd(xc, full_matrices=False)
    ratio = (s ** 2) / (s ** 2).sum()
    k = int(torch.nonzero(torch.cumsum(ratio, 0) >= explained_variance)[0]) + 1 if float(ratio.sum()) > 0 else 1
    z = (xc @ vh[:k].T).numpy().astype(np.float32)
    km = faiss.Kmeans(z.shape[1], int(buckets), niter=int(max_iter), nredo=int(num_redo), update_index=True,
                      seed=int(seed) + 2, verbose=False,
                      min_points_per_centroid=1)  # only silences faiss's "provide at least ..." print; same clusters
    km.train(z)
    _, labels = km.index.search(z, 1)
    labels = labels.reshape(-1)
    nq = q.shape[0]
    q_hist = np.bincount(labels[:nq], minlength=buckets).astype(np.float64)
    p_hist = np.bincount(labels[nq:], minlength=buckets).astype(np.float64)
    return p_hist / p_hist.sum(), q_hist / q_hist.sum(), k


def mauve(p_features: Any, q_features: Any, buckets: int | str = "auto", seed: int = SEED,
          explained_variance: float = EXPLAINED_VARIANCE, num_redo: int = NUM_REDO, max_iter: int = MAX_ITER,
          points: int = POINTS, scaling: float = SCALING) -> dict:
    """MAUVE of model features P against human features Q: {"mauve", "buckets", "pca_dim", "p_hist", "q_hist"}.
    Needs at least 2 rows per side; `buckets` "auto" = max(2, round(min(n_p, n_q) / 10))."""
    n_p, n_q = len(p_features), len(q_features)
    if min(n_p, n_q) < 2:
        raise InvalidInputError(f"MAUVE needs at least 2 feature rows on each side, got {n_p} (model) and {n_q} (human)")
    k = auto_buckets(n_p, n_q) if buckets == "auto" else int(buckets)
    if k < 2 or k > n_p + n_q:
        raise InvalidInputError(f"MAUVE buckets must be in [2, {n_p + n_q}], got {buckets!r}")
    p_hist, q_hist, dim = quantise(p_features, q_features, k, explained_variance, seed, num_redo, max_iter)
    return {"mauve": mauve_from_histograms(p_hist, q_hist, points, scaling), "buckets": k, "pca_dim": dim,
            "p_hist": p_hist.tolist(), "q_hist": q_hist.tolist()}


# ----------------------------------------------------------------------------------- the registered metric
def _mauve_metric(ctx) -> list:
    from genbench.metrics.base import MetricResult
    from genbench.metrics.registry import MetricUnavailable

    try:
        import faiss  # noqa: F401
    except ImportError:
        raise MetricUnavailable("mauve clusters with faiss k-means, which is not installed: `pip install faiss-cpu` "
                                "(or `pip install mauve-text`)") from None
    r = mauve(ctx.fake_features, ctx.real_features, buckets=ctx.mauve_buckets, seed=ctx.seed)
    proto = {
        **ctx.base_protocol(),
        "p": "generated (fake) features", "q": "reference (real) features",
        "buckets": r["buckets"], "buckets_rule": "max(2, round(min(n_p, n_q) / 10))" if ctx.mauve_buckets == "auto" else "set",
        "quantise": f"L2-normalised rows, PCA to {EXPLAINED_VARIANCE:g} explained variance ({r['pca_dim']} dims), "
                    f"faiss k-means (nredo {NUM_REDO}, niter {MAX_ITER}, seed + 2)",
        "frontier": f"{POINTS} mixture weights linspace(1e-6, 1 - 1e-6), c = {SCALING:g}",
        "reference": "mauve-text 0.4.0 compute_mauve(p_features=, q_features=) with the same seed",
    }
    return [MetricResult("mauve", r["mauve"], "", True, "1", proto,
                         extra={"p_hist": r["p_hist"], "q_hist": r["q_hist"]})]


def _register() -> None:
    from genbench.metrics.registry import MetricSpec, Output, register_metric

    register_metric(MetricSpec(
        "mauve", "", True, "1", ("real_features", "fake_features"), _mauve_metric,
        "MAUVE: area under the divergence frontier of k-means-quantised generated and reference features",
        (Output("mauve", "", True, "quality", "MAUVE", order=330, rank=8),), ("text",),
    ))


_register()
