"""Inception Score (Salimans et al. 2016) on class probabilities, in the stylegan2-ada / torch-fidelity convention.

IS = exp(E_x KL(p(y|x) || p(y))), computed on each of `splits` consecutive parts of the samples
(part i = rows [i N // splits, (i + 1) N // splits), stylegan2-ada's indexing) with p(y) the mean of that part;
reported: the mean over parts and their standard deviation (ddof 0, numpy's default, as stylegan2-ada and
torch-fidelity). The probabilities come from NVIDIA's Inception TorchScript with the softmax taken *without* the
output bias (genbench/features/inception_full.py). 0 log 0 = 0.

The samples are not shuffled (stylegan2-ada does not; torchmetrics and torch-fidelity shuffle before splitting):
the order is the sampler's, which is seeded.
"""

from __future__ import annotations

from typing import Any

import torch

from genbench.errors import InvalidInputError
from genbench.metrics._util import as_f64, warn

SPLITS = 10
MIN_PER_SPLIT = 500  # below this the per-part marginal p(y) is noisy and IS is biased low (convention: 5,000)


def inception_score(probs: Any, splits: int = SPLITS) -> tuple[float, float]:
    """(mean, std) of the Inception Score of a (N, K) matrix of class probabilities over `splits` parts.

    Raises InvalidInputError for rows that are not probability vectors or N < splits (naming the minimum); warns
    (MetricWarning) when a part has fewer than MIN_PER_SPLIT rows."""
    if isinstance(splits, bool) or int(splits) != splits or splits < 1:
        raise InvalidInputError(f"inception_score needs splits >= 1, got {splits!r}")
    splits = int(splits)
    p = as_f64(probs, "class probabilities", ndim=2)
    n, k = p.shape
    if k < 2:
        raise InvalidInputError(f"class probabilities must have K >= 2 columns, got shape {tuple(p.shape)}")
    if float(p.min()) < 0 or float((p.sum(1) - 1).abs().max()) > 1e-4:
        raise InvalidInputError("class probabilities must be non-negative rows summing to 1 (a softmax output); "
                                f"got min {float(p.min()):.3g}, row sums {float(p.sum(1).min()):.6g}..{float(p.sum(1).max()):.6g}")
    if n < splits:
        raise InvalidInputError(f"inception_score with {splits} splits needs at least {splits} samples (one per "
                                f"split); got {n}. Draw more samples or lower splits.")
    if n // splits < MIN_PER_SPLIT:
        warn(f"inception_score: {n} samples in {splits} splits is {n // splits} per split; IS is biased low below "
             f"{MIN_PER_SPLIT} per split (at least {MIN_PER_SPLIT * splits} samples; the convention is 50,000).")
    scores = []
    for i in range(splits):
        part = p[i * n // splits:(i + 1) * n // splits]
        marginal = part.mean(0, keepdim=True)
        kl = (torch.special.xlogy(part, part) - torch.special.xlogy(part, marginal)).sum(1).mean()
        scores.append(kl.exp())
    s = torch.stack(scores)
    return float(s.mean()), float(s.std(unbiased=False))


# ----------------------------------------------------------------------------------- the registered metric
def _is_metric(ctx) -> list:
    from genbench.metrics.base import MetricResult

    splits = int(ctx.is_splits)
    mean, std = inception_score(ctx.fake_inception_probs, splits)
    proto = {
        **ctx.base_protocol(),
        "classifier": dict(ctx.inception_protocol),
        "splits": splits,
        "split_rule": "consecutive parts [i N // splits, (i + 1) N // splits), no shuffle (stylegan2-ada)",
        "std": "over splits, ddof 0",
        "n_samples": int(ctx.fake_inception_probs.shape[0]),
    }
    proto.pop("features", None)  # IS reads the classifier's probabilities, not the dataset's features
    proto.pop("n_real", None)
    return [MetricResult("inception_score", mean, "", True, "1", proto, extra={"std": std})]


def _register() -> None:
    from genbench.metrics.registry import MetricSpec, Output, register_metric

    register_metric(MetricSpec(
        "inception_score", "", True, "1", ("fake_inception_probs",), _is_metric,
        "Inception Score: exp E KL(p(y|x) || p(y)) over 10 splits, softmax without the output bias (stylegan2-ada)",
        (Output("inception_score", "", True, "quality", "IS", order=48, rank=6),), ("image",),
    ))


_register()
