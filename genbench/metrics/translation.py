"""Scores of image-to-image translation (the `translation` track; docs/translation.md). Per direction d ("a2b":
domain a images translated to domain b, "b2a" back), on the paired held-out split's n source images x with labels y:

- `fd_<d>` (lower is better): Fréchet distance between the target domain classifier's features
  (`classifier:<target domain>`, 128-d) of the translations and of the target domain's training images (the
  realism reference). A perfect translator scores a real-vs-real FD; `identity` keeps the source look.
- `kid_<d>` (lower): KID on the same features (unbiased polynomial MMD^2, mean over seeded subsets).
- `content_kept_<d>` (higher, share): the target classifier's argmax on the translations equals the source
  label y. A translator returning the paired real target image scores the classifier's own held-out accuracy
  (in the protocol as `classifier_accuracy`: the ceiling).
- `cycle_l1_<d>` (lower): mean absolute pixel difference |x - back(forth(x))| in [0, 1] units (no LPIPS).
- `classes_covered_<d>` (higher): classes of the target classifier's labels among the translations (of 10).

Uncertainty: with `n_bootstrap` > 0 (the suite's), FD, content kept and cycle L1 carry a 95% (1 - `bootstrap_alpha`)
bias-corrected percentile bootstrap interval (`genbench.metrics.bootstrap.bootstrap_ci`, the method of the other
tracks' FD/KID, seeded, `n_bootstrap` replicates): FD resamples the rows of both feature sets (translations and
reference) like the unconditional FD; content kept and cycle L1 are means over the held-out items, so a replicate
resamples the items (`item_mean_ci`). Both are clipped to the metric's range (FD >= 0, shares in [0, 1], L1 >= 0).

`TranslationScores` holds one direction's inputs; the functions below are the definitions, each tested against an
independent computation (tests/test_translation.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from genbench.metrics.base import MetricResult
from genbench.metrics.bootstrap import bootstrap_ci
from genbench.metrics.frechet import frechet_distance_features
from genbench.metrics.kid import kid
from genbench.metrics.modes import class_coverage
from genbench.metrics.registry import PERCENT, MetricSpec, Output, register_metric

VERSION = "1"
DIRECTIONS = ("a2b", "b2a")
TRANSLATION_METRICS = ("i2i_fd", "i2i_kid", "content_kept", "cycle_l1", "i2i_coverage")


def content_kept(target_probs: torch.Tensor, source_labels: torch.Tensor) -> float:
    """Share of translations whose target-classifier argmax equals the source image's label."""
    return float(content_kept_items(target_probs, source_labels).mean())


def content_kept_items(target_probs: torch.Tensor, source_labels: torch.Tensor) -> torch.Tensor:
    """Per translation: 1.0 where the target-classifier argmax equals the source label, else 0.0 (float64, (n,))."""
    pred = torch.as_tensor(target_probs).argmax(1).cpu()
    y = torch.as_tensor(source_labels).long().cpu()
    if pred.shape != y.shape:
        raise ValueError(f"content_kept: {tuple(pred.shape)} predictions for {tuple(y.shape)} labels")
    return (pred == y).double()


def cycle_l1(x: torch.Tensor, x_cycled: torch.Tensor) -> float:
    """Mean |x - x_cycled| over every pixel and channel (images in [0, 1])."""
    return float(cycle_l1_items(x, x_cycled).mean())


def cycle_l1_items(x: torch.Tensor, x_cycled: torch.Tensor) -> torch.Tensor:
    """Per image: mean |x - x_cycled| over its pixels and channels (float64, (n,)); every image has as many pixels,
    so their mean is `cycle_l1`."""
    if x.shape != x_cycled.shape:
        raise ValueError(f"cycle_l1: shapes {tuple(x.shape)} and {tuple(x_cycled.shape)} differ")
    return (x.double() - x_cycled.double()).abs().flatten(1).mean(1).cpu()


def item_mean_ci(values: torch.Tensor, n_boot: int, seed: int = 0, alpha: float = 0.05,
                 bounds: tuple | None = None) -> dict:
    """Bootstrap interval of the mean of per-item values (content kept, cycle L1): `bootstrap_ci` (bias-corrected
    percentile, seeded) where a replicate is the mean of n items drawn with replacement. bootstrap_ci resamples
    two sets; here both are the items and only the second draw is used (the replicate is the mean of values[i_f])."""
    v = torch.as_tensor(values, dtype=torch.float64).reshape(-1).cpu()
    return bootstrap_ci(lambda _r, f: float(f.mean()), v, v, n_boot, seed, alpha, device="cpu", bounds=bounds,
                        indexed=lambda _ir, i_f: float(v[i_f].mean()))


@dataclass
class TranslationScores:
    """One direction's inputs to the translation metrics."""

    direction: str
    source: torch.Tensor  # (n, C, H, W) held-out source images
    source_labels: torch.Tensor  # (n,)
    cycled: torch.Tensor  # back(forth(source))
    fake_features: torch.Tensor  # target classifier features of forth(source)
    fake_probs: torch.Tensor  # target classifier probabilities of forth(source)
    real_features: torch.Tensor  # target classifier features of the target domain's reference images
    classifier: dict  # the target classifier's protocol
    num_classes: int
    protocol: dict = field(default_factory=dict)  # dataset, domains, reference, n...
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    seed: int = 0  # KID's subsets and the bootstrap draws
    n_bootstrap: int = 0  # 0: no confidence intervals; else bootstrap replicates for FD, content kept, cycle L1
    bootstrap_alpha: float = 0.05

    def base(self, **more) -> dict:
        return {**self.protocol, "direction": self.direction, "classifier": self.classifier.get("id", ""),
                "n_translated": int(len(self.source)), **more}

    def boot_protocol(self) -> dict:
        return {"n_bootstrap": self.n_bootstrap, "bootstrap_alpha": self.bootstrap_alpha, "bootstrap_seed": self.seed} \
            if self.n_bootstrap > 0 else {}


def _fd(s: TranslationScores) -> list[MetricResult]:
    v = frechet_distance_features(s.real_features, s.fake_features)
    ci = {}
    if s.n_bootstrap > 0:
        import warnings

        from genbench.metrics._util import MetricWarning
        from genbench.metrics.frechet import CrossGramFD, fd_route

        route = fd_route(int(s.real_features.shape[0]), int(s.fake_features.shape[0]), int(s.fake_features.shape[1]))
        cross = CrossGramFD(s.real_features, s.fake_features, device="cpu") if route == "features" else None
        with warnings.catch_warnings():  # the point estimate already warned about singular covariances
            warnings.simplefilter("ignore", MetricWarning)
            ci = bootstrap_ci(lambda r, f: frechet_distance_features(r, f, route=route), s.real_features,
                              s.fake_features, s.n_bootstrap, s.seed, s.bootstrap_alpha, device="cpu",
                              bounds=(0.0, None), indexed=cross.resampled if cross is not None else None)
    return [MetricResult(f"fd_{s.direction}", v, "", False, VERSION,
                         s.base(n_reference=int(s.real_features.shape[0]), features="classifier 128-d (pre-ReLU)",
                                **s.boot_protocol()), ci.get("ci_low"), ci.get("ci_high"))]


def _kid(s: TranslationScores) -> list[MetricResult]:
    mean, std = kid(s.real_features, s.fake_features, s.kid_subsets, s.kid_subset_size, s.seed)
    return [MetricResult(f"kid_{s.direction}", mean, "", False, VERSION,
                         s.base(n_reference=int(s.real_features.shape[0]), subsets=s.kid_subsets,
                                subset_size=min(s.kid_subset_size, len(s.real_features), len(s.fake_features)),
                                seed=s.seed), extra={"std": std})]


def _item_ci(s: TranslationScores, items: torch.Tensor, bounds: tuple) -> dict:
    return item_mean_ci(items, s.n_bootstrap, s.seed, s.bootstrap_alpha, bounds) if s.n_bootstrap > 0 else {}


def _content(s: TranslationScores) -> list[MetricResult]:
    items = content_kept_items(s.fake_probs, s.source_labels)
    ci = _item_ci(s, items, (0.0, 1.0))
    acc = s.classifier.get("test_accuracy")
    return [MetricResult(f"content_kept_{s.direction}", float(items.mean()), "share", True, VERSION,
                         s.base(classifier_accuracy=acc, definition="target classifier argmax == source label",
                                **s.boot_protocol()), ci.get("ci_low"), ci.get("ci_high"))]


def _cycle(s: TranslationScores) -> list[MetricResult]:
    items = cycle_l1_items(s.source, s.cycled)
    ci = _item_ci(s, items, (0.0, 1.0))
    return [MetricResult(f"cycle_l1_{s.direction}", float(items.mean()), "", False, VERSION,
                         s.base(definition="mean |x - back(forth(x))|, pixels in [0, 1]", **s.boot_protocol()),
                         ci.get("ci_low"), ci.get("ci_high"))]


def _coverage(s: TranslationScores) -> list[MetricResult]:
    r = class_coverage(s.fake_probs, s.num_classes)
    return [MetricResult(f"classes_covered_{s.direction}", r["modes_covered"], "classes", True, VERSION,
                         s.base(num_classes=s.num_classes), extra={"histogram": r["histogram"], "kl": r["kl"]})]


def _outs(stem: str, unit: str, hib: bool, category, label: str, order: int, rank: int, fmt: str = "number",
          headline: bool = True) -> tuple:
    return tuple(Output(f"{stem}_{d}", unit, hib, category, f"{label} {d}", fmt=fmt,
                        headline=("translation",) if headline else (), order=order + i, rank=rank + i)
                 for i, d in enumerate(DIRECTIONS))


_REQ = ("translation",)  # computed by the translation job (genbench/pipeline/translation_job.py), not an EvalContext
for _spec in (
    MetricSpec("i2i_fd", "", False, VERSION, _REQ, _fd, "translation realism: FD of translations vs the target "
               "domain on its classifier's features", _outs("fd", "", False, "quality", "FD", 400, 0),
               modalities=("translation",)),
    MetricSpec("i2i_kid", "", False, VERSION, _REQ, _kid, "translation realism: KID on the target classifier's "
               "features", _outs("kid", "", False, None, "KID", 420, 0, headline=False), modalities=("translation",)),
    MetricSpec("content_kept", "share", True, VERSION, _REQ, _content, "target classifier accuracy on translations "
               "with the source labels", _outs("content_kept", "share", True, "quality", "content", 410, 2,
                                               fmt=PERCENT), modalities=("translation",)),
    MetricSpec("cycle_l1", "", False, VERSION, _REQ, _cycle, "cycle consistency: mean |x - back(forth(x))|",
               _outs("cycle_l1", "", False, None, "cycle L1", 430, 0), modalities=("translation",)),
    MetricSpec("i2i_coverage", "classes", True, VERSION, _REQ, _coverage, "classes among the translations "
               "(target classifier labels)", _outs("classes_covered", "classes", True, "diversity", "classes", 440, 0,
                                                   headline=False), modalities=("translation",)),
):
    register_metric(_spec)


def compute(names, scores: TranslationScores) -> list[MetricResult]:
    """The listed translation metrics (TRANSLATION_METRICS names) for one direction."""
    from genbench.metrics.registry import METRICS

    out = []
    for n in names:
        out += METRICS.get(n).compute(scores)
    return out
