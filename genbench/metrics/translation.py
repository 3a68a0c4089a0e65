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

`TranslationScores` holds one direction's inputs; the functions below are the definitions, each tested against an
independent computation (tests/test_translation.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from genbench.metrics.base import MetricResult
from genbench.metrics.frechet import frechet_distance_features
from genbench.metrics.kid import kid
from genbench.metrics.modes import class_coverage
from genbench.metrics.registry import PERCENT, MetricSpec, Output, register_metric

VERSION = "1"
DIRECTIONS = ("a2b", "b2a")
TRANSLATION_METRICS = ("i2i_fd", "i2i_kid", "content_kept", "cycle_l1", "i2i_coverage")


def content_kept(target_probs: torch.Tensor, source_labels: torch.Tensor) -> float:
    """Share of translations whose target-classifier argmax equals the source image's label."""
    pred = torch.as_tensor(target_probs).argmax(1).cpu()
    y = torch.as_tensor(source_labels).long().cpu()
    if pred.shape != y.shape:
        raise ValueError(f"content_kept: {tuple(pred.shape)} predictions for {tuple(y.shape)} labels")
    return float((pred == y).double().mean())


def cycle_l1(x: torch.Tensor, x_cycled: torch.Tensor) -> float:
    """Mean |x - x_cycled| over every pixel and channel (images in [0, 1])."""
    if x.shape != x_cycled.shape:
        raise ValueError(f"cycle_l1: shapes {tuple(x.shape)} and {tuple(x_cycled.shape)} differ")
    return float((x.double() - x_cycled.double()).abs().mean())


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
    seed: int = 0

    def base(self, **more) -> dict:
        return {**self.protocol, "direction": self.direction, "classifier": self.classifier.get("id", ""),
                "n_translated": int(len(self.source)), **more}


def _fd(s: TranslationScores) -> list[MetricResult]:
    v = frechet_distance_features(s.real_features, s.fake_features)
    return [MetricResult(f"fd_{s.direction}", v, "", False, VERSION,
                         s.base(n_reference=int(s.real_features.shape[0]), features="classifier 128-d (pre-ReLU)"))]


def _kid(s: TranslationScores) -> list[MetricResult]:
    mean, std = kid(s.real_features, s.fake_features, s.kid_subsets, s.kid_subset_size, s.seed)
    return [MetricResult(f"kid_{s.direction}", mean, "", False, VERSION,
                         s.base(n_reference=int(s.real_features.shape[0]), subsets=s.kid_subsets,
                                subset_size=min(s.kid_subset_size, len(s.real_features), len(s.fake_features)),
                                seed=s.seed), extra={"std": std})]


def _content(s: TranslationScores) -> list[MetricResult]:
    v = content_kept(s.fake_probs, s.source_labels)
    acc = s.classifier.get("test_accuracy")
    return [MetricResult(f"content_kept_{s.direction}", v, "share", True, VERSION,
                         s.base(classifier_accuracy=acc, definition="target classifier argmax == source label"))]


def _cycle(s: TranslationScores) -> list[MetricResult]:
    return [MetricResult(f"cycle_l1_{s.direction}", cycle_l1(s.source, s.cycled), "", False, VERSION,
                         s.base(definition="mean |x - back(forth(x))|, pixels in [0, 1]"))]


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
