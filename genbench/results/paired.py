"""Paired bootstrap of the difference of a feature metric between two result sets (or two models of one set).

A bootstrap interval per value (the stored `ci_low`..`ci_high`) treats two runs as independent. When both
scored the *same reference features* (the same real items through the same instrument), most of the
sampling noise is common to both and cancels in their difference; so does the noise of a fake set drawn with
the same seeds from a network that barely changed. The paired bootstrap measures what is left: each replicate
draws ONE set of real row indices and ONE set of fake row indices and applies them to both sides (to every
seed of both sides), and the replicate's difference is

    D_b = mean over the new side's seeds of M(real[ir_b], fake_s[if_b])
        - mean over the baseline's seeds of M(real[ir_b], fake_s[if_b]).

Its standard deviation over the replicates is the sampling noise of the difference, its bias-corrected
percentile interval the difference's interval, and the share of replicates on the other side of 0 a
bootstrap p-value. Identical inputs give D_b = 0 for every replicate: a difference of exactly 0 with an
interval of width 0.

What a job stores for it, and how the stored features are found again: genbench/results/stored_features.py.

Metrics (`PAIRED_METRICS`):
- `fd`: recomputed from the stored features for every replicate (the exact cross-Gram route where FD uses it,
  else the Gaussian statistics), after a check that the full sets reproduce the stored value;
- `precision`, `recall`, `density`, `coverage`: per-item indicators against the k-NN balls of the full sets
  (precision and density per fake row, recall and coverage per real row), resampled with the same indices; the
  radii are held at the full sets' (a conditional bootstrap, cheap: one distance matrix per seed). Checked
  against the stored values first;
- `kid`: the unbiased MMD^2 with the cubic kernel over the full resampled sets, from kernel matrices formed once.
  The stored KID averages random subsets, so it is not reproduced exactly; its replicates measure the noise of
  the full-set estimator, which the subset average approximates.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from genbench.device import torch_threads
from genbench.errors import InvalidInputError
from genbench.results.stored_features import FeatureIndex, feature_index

DEFAULT_PAIRED_BOOT = 100
PAIRED_METRICS = ("fd", "kid", "precision", "recall", "density", "coverage")
_PRDC = ("precision", "recall", "density", "coverage")
_MAX_MATRIX = 1 << 25  # entries of one n_real x n_fake (or n x n) matrix held in float64: 256 MiB
# A recomputed value may differ from the stored one by rounding only.
_REPRO_RTOL, _REPRO_ATOL = 1e-6, 1e-9


# ---------------------------------------------------------------------------------------------- the metrics
class _Evaluator:
    """metric(ir, if) of one (real, fake) pair for the metrics asked, from state computed once."""

    def __init__(self, real: torch.Tensor, fake: torch.Tensor, metrics: list[str], prdc_k: dict):
        self.real, self.fake = real, fake
        self.fns: dict[str, Callable] = {}
        self.full: dict[str, float] = {}
        self.problems: dict[str, str] = {}
        nr, nf, d = real.shape[0], fake.shape[0], real.shape[1]
        if "fd" in metrics:
            self._fd(real, fake)
        if "kid" in metrics:
            if max(nr * nf, nr * nr, nf * nf) > _MAX_MATRIX:
                self.problems["kid"] = f"the kernel matrices of {nr} x {nf} rows are too large"
            else:
                self._kid(real, fake, d)
        want = [m for m in metrics if m in _PRDC]
        if want:
            if nr * nf > _MAX_MATRIX:
                for m in want:
                    self.problems[m] = f"the {nr} x {nf} distance matrix is too large"
            else:
                self._prdc(real, fake, want, prdc_k)

    def _fd(self, real, fake):
        import warnings

        from genbench.metrics._util import MetricWarning
        from genbench.metrics.frechet import CrossGramFD, fd_route, frechet_distance_features

        route = fd_route(real.shape[0], fake.shape[0], real.shape[1])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MetricWarning)
            if route == "features":
                cg = CrossGramFD(real, fake)
                self.full["fd"] = cg.value()
                fn = cg.resampled
            else:
                self.full["fd"] = frechet_distance_features(real, fake, route="statistics")

                def fn(ir, i_f):
                    return frechet_distance_features(real[ir], fake[i_f], route="statistics")

        def quiet(ir, i_f):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MetricWarning)
                return fn(ir, i_f)

        self.fns["fd"] = quiet

    def _kid(self, real, fake, d):
        kxx = (real @ real.T / d + 1.0) ** 3
        kyy = (fake @ fake.T / d + 1.0) ** 3
        kxy = (real @ fake.T / d + 1.0) ** 3
        dx, dy = kxx.diagonal().clone(), kyy.diagonal().clone()

        def mmd(ir, i_f):
            c1 = torch.bincount(ir, minlength=kxx.shape[0]).double()
            c2 = torch.bincount(i_f, minlength=kyy.shape[0]).double()
            m, n = float(ir.numel()), float(i_f.numel())
            sx = (c1 @ kxx @ c1 - c1 @ dx) / (m * (m - 1))
            sy = (c2 @ kyy @ c2 - c2 @ dy) / (n * (n - 1))
            return float(sx + sy - 2.0 * (c1 @ kxy @ c2) / (m * n))

        self.fns["kid"] = mmd
        self.full["kid"] = mmd(torch.arange(kxx.shape[0]), torch.arange(kyy.shape[0]))

    def _prdc(self, real, fake, want, prdc_k):
        from genbench.metrics.manifold import prdc_items

        k_pr, k_dc, strict = prdc_k["k_pr"], prdc_k["k_dc"], prdc_k["strict"]
        if real.shape[0] <= max(k_pr, k_dc) or fake.shape[0] <= k_pr:
            for m in want:
                self.problems[m] = f"too few rows for k = {max(k_pr, k_dc)}"
            return
        # per-item terms from the computation that made the stored values (the same decisions at ties): precision
        # and density per fake row, recall and coverage per real row, the radii of the full sets held
        per = prdc_items(real, fake, k_pr, k_dc, strict)
        for m in want:
            v = per[m]
            self.full[m] = float(v.mean())
            self.fns[m] = (lambda ir, i_f, v=v: float(v[i_f].mean())) if m in ("precision", "density") else \
                (lambda ir, i_f, v=v: float(v[ir].mean()))


@dataclass
class PairedResult:
    """The paired bootstrap of one metric's difference (new - baseline)."""

    metric: str
    delta: float  # recomputed from the stored features: mean over new seeds - mean over baseline seeds
    sd: float  # standard deviation of the replicates' differences: the sampling noise of the difference
    ci: tuple  # bias-corrected percentile interval (level `level`)
    p_boot: float  # share of (bias-corrected) replicates at or beyond 0 against the change's direction
    n_boot: int
    level: float = 0.95
    base_values: tuple = ()
    new_values: tuple = ()

    def describe(self) -> str:
        return (f"paired bootstrap over shared reference features ({self.n_boot} replicates): change "
                f"{self.delta:+.4g}, sd {self.sd:.3g}, {self.level:.0%} CI {self.ci[0]:+.4g} .. {self.ci[1]:+.4g}, "
                f"bootstrap p {self.p_boot:.2g}")


def _reproduces(got: float, stored: float) -> bool:
    return abs(got - stored) <= _REPRO_ATOL + _REPRO_RTOL * abs(stored)


def paired_bootstrap(base: list[tuple[torch.Tensor, torch.Tensor]], new: list[tuple[torch.Tensor, torch.Tensor]],
                     metrics: list[str], n_boot: int = DEFAULT_PAIRED_BOOT, seed: int = 0,
                     prdc_k: Optional[dict] = None, stored: Optional[dict] = None,
                     level: float = 0.95) -> dict[str, PairedResult | str]:
    """The paired bootstrap of new - baseline for each metric (module docstring). `base` / `new`: one
    (real, fake) pair of (n, d) feature matrices per seed; every pair must have the same n_real, n_fake and d
    (the same reference rows, in the same order, on every side). `prdc_k`: {"k_pr", "k_dc", "strict"} for the
    P/R/D/C metrics. `stored`: {metric: (baseline values per seed, new values per seed)}; a metric whose
    recomputation from the features does not reproduce them is not tested. Returns {metric: PairedResult, or
    the reason it could not be computed}. Same inputs and seed -> same numbers."""
    if n_boot < 2:
        raise InvalidInputError(f"the paired bootstrap needs at least 2 replicates, got {n_boot}")
    if not base or not new:
        raise InvalidInputError("the paired bootstrap needs features of at least one seed on each side")
    shapes = {(tuple(r.shape), tuple(f.shape)) for r, f in base + new}
    if len(shapes) != 1:
        raise InvalidInputError(f"the paired bootstrap needs the same shapes on both sides, got {sorted(shapes)}")
    (rshape, fshape), = shapes
    if len(rshape) != 2 or len(fshape) != 2 or rshape[1] != fshape[1]:
        raise InvalidInputError(f"expected (n_real, d) and (n_fake, d) features, got {rshape} and {fshape}")
    prdc_k = prdc_k or {"k_pr": 3, "k_dc": 5, "strict": False}
    ev_a = [_Evaluator(r, f, metrics, prdc_k) for r, f in base]
    ev_b = [_Evaluator(r, f, metrics, prdc_k) for r, f in new]
    out: dict[str, PairedResult | str] = {}
    todo = []
    for m in metrics:
        why = next((e.problems[m] for e in ev_a + ev_b if m in e.problems), "")
        if not why and m not in ev_a[0].fns:
            why = f"{m} has no paired bootstrap"
        if not why and stored and m in stored and m != "kid":
            sa, sb = stored[m]
            got_a, got_b = [e.full[m] for e in ev_a], [e.full[m] for e in ev_b]
            bad = [(g, s) for g, s in zip(got_a + got_b, list(sa) + list(sb)) if not _reproduces(g, s)]
            if bad:
                why = (f"{m} recomputed from the stored features ({bad[0][0]:.6g}) differs from the stored value "
                       f"({bad[0][1]:.6g}): another computation than this genbench's")
        if why:
            out[m] = why
        else:
            todo.append(m)
    if not todo:
        return out
    gen = torch.Generator().manual_seed(int(seed))
    nr, nf = rshape[0], fshape[0]
    reps = {m: [] for m in todo}
    for _ in range(int(n_boot)):
        ir = torch.randint(0, nr, (nr,), generator=gen)
        i_f = torch.randint(0, nf, (nf,), generator=gen)
        for m in todo:
            a = sum(e.fns[m](ir, i_f) for e in ev_a) / len(ev_a)
            b = sum(e.fns[m](ir, i_f) for e in ev_b) / len(ev_b)
            reps[m].append(b - a)
    q = (1 - level) / 2
    for m in todo:
        fa, fb = [e.full[m] for e in ev_a], [e.full[m] for e in ev_b]
        delta = sum(fb) / len(fb) - sum(fa) / len(fa)
        d = np.asarray(reps[m], dtype=np.float64)
        shifted = d - (d.mean() - delta)  # bias-corrected: centred on the full-data difference
        lo, hi = (float(np.quantile(shifted, q)), float(np.quantile(shifted, 1 - q)))
        sd = float(d.std(ddof=1))
        if delta > 0:
            p = float((np.sum(shifted <= 0) + 1) / (len(d) + 1))
        elif delta < 0:
            p = float((np.sum(shifted >= 0) + 1) / (len(d) + 1))
        else:
            p = 1.0
        out[m] = PairedResult(m, delta, sd, (lo, hi), p, int(n_boot), level, tuple(fa), tuple(fb))
    return out


@dataclass
class PairedInputs:
    """What compare / check give the paired test: both result sets' stored features, and the replicates."""

    base: FeatureIndex
    new: FeatureIndex
    n_boot: int = DEFAULT_PAIRED_BOOT
    _cache: dict = field(default_factory=dict)

    def results(self, dataset: str, model: str, variant: str, seeds_a: list, seeds_b: list, metrics: list[str],
                stored: dict, prdc_k: dict, model_b: Optional[str] = None) -> dict[str, PairedResult | str]:
        """{metric: PairedResult or why the paired test is unavailable} for one (dataset, model, variant),
        computed once per seed sets and cached. `model_b`: the new side's model when it is another one (two
        models of one run, `model_difference`)."""
        model_b = model if model_b is None else model_b
        key = (dataset, model, model_b, variant, tuple(seeds_a), tuple(seeds_b), tuple(metrics))
        if key not in self._cache:
            try:  # on one thread: the same replicates give the same numbers whatever the machine's core count
                with torch_threads(1):
                    self._cache[key] = self._compute(dataset, model, model_b, variant, seeds_a, seeds_b, metrics,
                                                     stored, prdc_k)
            except InvalidInputError as e:
                self._cache[key] = {m: str(e) for m in metrics}
        return self._cache[key]

    def _compute(self, dataset, model, model_b, variant, seeds_a, seeds_b, metrics, stored, prdc_k):
        def fail(why):
            return {m: why for m in metrics}

        if self.base.reason or self.new.reason:
            return fail(self.base.reason or self.new.reason)
        if not seeds_a or not seeds_b:
            return fail("the results record no seeds")
        sides = []
        for side, idx, seeds, mod in (("baseline", self.base, seeds_a, model), ("new run", self.new, seeds_b, model_b)):
            got = []
            for s in seeds:
                e = idx.entries.get((dataset, mod, variant, int(s)))
                if e is None:
                    return fail(f"the {side} stores no features for seed {s} of this job")
                why = e.why_unusable()
                if why:
                    return fail(f"{side} seed {s}: {why}")
                got.append(e)
            sides.append(got)
        ids = {e.meta.get("reference_identity") for e in sides[0] + sides[1]}
        if len(ids) != 1:
            a = sides[0][0].meta.get("reference_identity", "?")
            b = sides[1][0].meta.get("reference_identity", "?")
            return fail(f"the runs scored different reference features (reference {str(a)[:12]} vs {str(b)[:12]})")
        shapes = {(e.meta.get("n_real"), e.meta.get("n_fake"), e.meta.get("dim")) for e in sides[0] + sides[1]}
        if len(shapes) != 1:
            return fail(f"different feature shapes (n_real, n_fake, dim): {sorted(map(str, shapes))}")
        base = [e.load() for e in sides[0]]
        new = [e.load() for e in sides[1]]
        return paired_bootstrap(base, new, metrics, self.n_boot, group_seed((dataset, model, variant)),
                                prdc_k=prdc_k, stored=stored)


def model_difference(path: str | Path, dataset: str, model_a: str, model_b: str, seeds: Optional[list] = None,
                     variant: str = "", metrics: tuple = ("fd", "kid", "precision", "recall", "density", "coverage"),
                     n_boot: int = DEFAULT_PAIRED_BOOT) -> dict[str, PairedResult | str]:
    """Paired significance between two models of one run (issue 18): the bootstrap of model_b - model_a for each
    metric, with the same reference rows resampled for both (and the same fake row indices: the two fake sets are
    independent draws, so this is an ordinary bootstrap of each, paired through the shared reference). `seeds`:
    the seeds to average over (default: those both models have). The stored values are checked as in compare."""
    import pandas as pd

    from genbench.results.store import ResultsStore, check_store_file

    db = Path(path) / "results.db" if Path(path).is_dir() else Path(path)
    if db.suffix != ".db" or not db.exists():
        raise InvalidInputError(f"{path}: paired significance needs a run directory (or its results.db), whose jobs "
                                "stored their features")
    check_store_file(db)
    with ResultsStore(db) as st:
        frame = st.metrics_frame()
    frame = frame[(frame["dataset"] == dataset) & (frame["variant"].fillna("") == variant)]
    stored, prdc_k = {}, {"k_pr": 3, "k_dc": 5, "strict": False}
    if seeds is None:
        sa = set(frame.loc[frame["model"] == model_a, "seed"].astype(int))
        seeds = sorted(sa & set(frame.loc[frame["model"] == model_b, "seed"].astype(int)))
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise InvalidInputError(f"{path}: models {model_a!r} and {model_b!r} have no seed in common on {dataset!r}")
    present = []
    for m in metrics:
        va, vb = [], []
        for mod, out in ((model_a, va), (model_b, vb)):
            g = frame[(frame["model"] == mod) & (frame["metric"] == m)]
            by_seed = {int(r.seed): float(r.value) for r in g.itertuples()}
            out += [by_seed[s] for s in seeds if s in by_seed]
            if len(g) and "k" in (p := json.loads(g["protocol"].iloc[0] or "{}")):
                prdc_k["k_pr" if m in ("precision", "recall") else "k_dc"] = int(p["k"])
                prdc_k["strict"] = p.get("ball") == "<"
        if len(va) == len(vb) == len(seeds) and not any(pd.isna(va + vb)):
            present.append(m)
            stored[m] = (va, vb)
    if not present:
        raise InvalidInputError(f"{path}: no feature metric ({', '.join(metrics)}) was scored for both {model_a!r} and "
                                f"{model_b!r} on {dataset!r} with seeds {seeds}")
    idx = feature_index(path, "run")
    pi = PairedInputs(idx, idx, n_boot)
    return pi.results(dataset, model_a, variant, seeds, seeds, present, stored, prdc_k, model_b=model_b)


def group_seed(key: tuple) -> int:
    """The replicates' seed of one (dataset, model, variant): fixed, so the same inputs give the same numbers."""
    return int(hashlib.sha256(json.dumps(list(key)).encode()).hexdigest()[:8], 16)


__all__ = ["DEFAULT_PAIRED_BOOT", "PAIRED_METRICS", "PairedInputs", "PairedResult", "group_seed", "model_difference",
           "paired_bootstrap"]
