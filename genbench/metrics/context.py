"""Everything a metric may need, gathered once per (model, dataset) evaluation by the runner."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from genbench.defaults import CONTEXT_N_BOOTSTRAP


@dataclass
class EvalContext:
    """Inputs for `compute_metrics`. Leave a field None when it does not apply: metrics that need it are
    skipped with a reason (see `compute_metrics`).

    Features are (N, D) float64 tensors from ONE extractor whose protocol dict (with "id") is
    `feature_protocol`; "real" is the reference split named by `reference_split` (held out from training)."""

    real_features: Optional[torch.Tensor] = None
    fake_features: Optional[torch.Tensor] = None
    feature_protocol: dict = field(default_factory=dict)
    real_stats: Optional[tuple] = None  # cached (mu, sigma) of real_features, if the runner has them
    real_radii: Any = None  # cached k-NN radii of real_features (genbench.metrics.manifold.KnnRadii), if any
    real_samples: Optional[torch.Tensor] = None
    fake_samples: Optional[torch.Tensor] = None
    train_samples: Optional[torch.Tensor] = None
    train_features: Optional[torch.Tensor] = None  # same extractor as real/fake features (memorisation)
    mixture: Any = None  # genbench.data.mixtures.GaussianMixture2D for toy datasets
    fake_inception_probs: Optional[torch.Tensor] = None  # (N, 1008) Inception softmax, no output bias (IS)
    inception_protocol: dict = field(default_factory=dict)  # the network that gave fake_inception_probs
    is_splits: int = 10  # Inception Score splits
    mauve_buckets: Any = "auto"  # MAUVE k-means clusters: "auto" = max(2, round(min(n_p, n_q) / 10)) or an int
    fake_class_probs: Optional[torch.Tensor] = None  # (N, K) probs, (N,) labels or (N, C, K) (Stacked MNIST)
    num_classes: Optional[int] = None  # modes for class coverage (default: from fake_class_probs' shape)
    classifier_protocol: dict = field(default_factory=dict)  # the labelling classifier (id, held-out accuracy)
    fake_labels: Optional[torch.Tensor] = None  # (N,) the condition each sample was generated for (conditional)
    real_labels: Optional[torch.Tensor] = None  # (M,) labels of the real reference items (real_features' rows)
    condition_protocol: dict = field(default_factory=dict)  # how the conditions were drawn (models/conditions.py)
    log_prob: Optional[torch.Tensor] = None  # per-example log-likelihood (nats) of the held-out real data
    log_prob_kind: str = "none"  # "exact" | "bound" | "none" (genbench/models/base.py)
    modality: Optional[str] = None  # "points" | "image" | "text"
    data_dim: Optional[int] = None  # D of one item (bits/dim)
    dataset: Optional[str] = None
    reference_split: str = "test"
    seed: int = 0
    n_bootstrap: int = CONTEXT_N_BOOTSTRAP  # 0: no confidence intervals; else bootstrap replicates for FD, KID, P/R/D/C
    bootstrap_alpha: float = 0.05
    device: str = "cpu"
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    k_pr: int = 3
    k_dc: int = 5
    prdc_convention: str = "official"
    vendi_kernel: str = "cosine"
    vendi_max_samples: int = 10000  # Vendi on the first N fake features (cost O(N D^2) cosine)
    copy_fraction: float = 0.1  # memorisation near-copy threshold (fraction of the training NN spacing)
    fd_inf_points: int = 15  # FD∞ (genbench/metrics/fd_infinity.py): subset sizes, linspace(fraction * N, N)
    fd_inf_min_fraction: float = 0.1  # smallest subset / N (the paper: 5000 / 50000)
    fd_inf_draws: int = 1  # random subsets per size (the paper: 1)
    fd_inf_scale: str = "both"  # "both": real and fake subsampled together; "fake": real fixed (the paper)
    extra_protocol: dict = field(default_factory=dict)  # merged into every result's protocol
    # text (genbench/metrics/text.py): generated / held-out / training strings and the held-out NLL
    fake_texts: Optional[list] = None
    real_texts: Optional[list] = None
    train_texts: Optional[list] = None  # training lines (novelty; the text scorer sets them from the train split)
    nll_per_char: Optional[float] = None  # nats per character from model.nll_per_char(held-out text)
    n_chars: Optional[int] = None
    nll_protocol: dict = field(default_factory=dict)  # context, stride, scoring of that NLL
    unavailable: dict = field(default_factory=dict)  # field name -> why it is None (said when a metric is skipped)
    skipped: dict = field(default_factory=dict)  # filled by compute_metrics: name -> reason

    def base_protocol(self) -> dict:
        p: dict = {"reference_split": self.reference_split, "seed": int(self.seed)}
        if self.dataset is not None:
            p["dataset"] = self.dataset
        if self.feature_protocol:
            p["features"] = self.feature_protocol.get("id", "")
            if self.feature_protocol.get("pinned") is False:  # the instrument may differ from machine to machine
                p["features_pinned"] = False
        if self.real_features is not None:
            p["n_real"] = int(self.real_features.shape[0])
        if self.fake_features is not None:
            p["n_fake"] = int(self.fake_features.shape[0])
        p.update(self.extra_protocol)
        return p
