"""Bootstrap confidence intervals over feature rows (not over network passes: features are computed once)."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional

import torch

from genbench.errors import InvalidInputError
from genbench.metrics._util import as_features, resolve_device


def _scalarise(v: Any) -> dict[str, float]:
    if isinstance(v, Mapping):
        return {str(k): float(x) for k, x in v.items() if isinstance(x, (int, float)) or torch.is_tensor(x)}
    if isinstance(v, tuple):  # e.g. kid -> (mean, std): the first entry is the estimate
        return {"value": float(v[0])}
    return {"value": float(v)}


def bootstrap_ci(
    fn: Callable[[torch.Tensor, torch.Tensor], Any],
    real: Any,
    fake: Any,
    n_boot: int = 100,
    seed: int = 0,
    alpha: float = 0.05,
    device: Optional[str | torch.device] = None,
    bounds: Optional[tuple | Mapping] = None,
    indexed: Optional[Callable[[torch.Tensor, torch.Tensor], Any]] = None,
    estimate: Any = None,
) -> dict:
    """Bias-corrected percentile bootstrap CI of fn(real, fake): resample the rows of both feature matrices
    with replacement (seeded CPU generator: same seed -> same intervals), recompute fn, take the alpha/2 and
    1 - alpha/2 quantiles, and shift them by the bootstrap bias (mean of the replicates minus the estimate on
    the full data). The shift matters: a with-replacement resample holds only ~63% distinct rows, which
    inflates small-sample-biased statistics such as FD so much that the raw percentile interval can lie
    entirely above the estimate; the spread of the replicates measures the sampling noise, the estimate on
    the full data is the centre. fn may return a float, a tuple (first entry used, e.g. kid's mean) or a dict of floats (e.g.
    prdc); the answer is {"ci_low", "ci_high", "std", "n_boot", "alpha", "seed"} for a scalar and
    {key: {...}} for a dict. For k-NN metrics pass `indexed=PrdcResampler(real, fake).resampled`, which treats a
    row drawn several times as one point (never its own neighbour).
    `bounds` = (low, high) (None: unbounded), or {key: (low, high)} for a dict, is the metric's range: the
    bias shift can carry an end of the interval past it (an FD interval below 0), so the ends are clipped to it
    ("clipped": true in the answer when that happened). `indexed(ir, i_f)`, when given, computes a replicate from
    the row indices instead of fn(real[ir], fake[i_f]) (the same value, from precomputed state: e.g.
    `CrossGramFD.resampled`); the indices drawn, and so the intervals for a seed, are the same either way.
    `estimate`: the metric's value on the full data when the caller already has it (the reported point value,
    which must come from the same estimator as the replicates); the interval's centre, fn(real, fake) is then
    not recomputed."""
    if n_boot < 2:
        raise InvalidInputError(f"n_boot must be >= 2, got {n_boot}")
    if not 0 < alpha < 1:
        raise InvalidInputError(f"alpha must be in (0, 1), got {alpha}")
    dev = resolve_device(device, real)
    x = as_features(real, "real features", dev, 1)
    y = as_features(fake, "fake features", dev, 1)
    g = torch.Generator().manual_seed(int(seed))
    full = _scalarise(estimate if estimate is not None else fn(x, y))
    draws: list[dict[str, float]] = []
    scalar = None
    for _ in range(int(n_boot)):
        ir = torch.randint(0, x.shape[0], (x.shape[0],), generator=g).to(dev)
        i_f = torch.randint(0, y.shape[0], (y.shape[0],), generator=g).to(dev)
        out = indexed(ir, i_f) if indexed is not None else fn(x[ir], y[i_f])
        scalar = not isinstance(out, Mapping)
        draws.append(_scalarise(out))
    res = {}
    for key in draws[0]:
        v = torch.tensor([d[key] for d in draws], dtype=torch.float64)
        lo, hi = torch.quantile(v, torch.tensor([alpha / 2, 1 - alpha / 2], dtype=torch.float64)).tolist()
        bias = float(v.mean()) - full[key]
        lo, hi = lo - bias, hi - bias
        b = bounds.get(key) if isinstance(bounds, Mapping) else bounds
        clipped = False
        if b is not None:
            if b[0] is not None and lo < b[0]:
                lo, clipped = float(b[0]), True
            if b[1] is not None and hi > b[1]:
                hi, clipped = float(b[1]), True
        res[key] = {"ci_low": lo, "ci_high": hi, "std": float(v.std()), "bias": bias, "clipped": clipped,
                    "n_boot": int(n_boot), "alpha": alpha, "seed": int(seed), "method": "bias-corrected percentile"}
    return res["value"] if scalar else res
