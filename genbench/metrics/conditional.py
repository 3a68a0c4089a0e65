"""Scores of conditional generation: do the samples obey their condition, and how good is each class?

- `conditional_accuracy`: the share of samples that the dataset's pinned classifier (`classifier:<dataset>`,
  genbench/features/classifier.py) assigns to the class they were generated for (argmax of its softmax; ties go to
  the lower class, torch's argmax). The analogue of CLIP score for class labels. Real held-out images scored
  against their true labels get exactly the classifier's held-out accuracy: that is the ceiling, stated in the
  protocol (`classifier_accuracy`). A sampler that ignores its condition gets about 1/K under uniform conditions
  (its samples land in each class independently of the label asked for).
- `intra_recall_coverage`: per class, the k-NN recall (Kynkaeaenniemi et al. 2019) and coverage (Naeem et al. 2020)
  of the samples generated for that class against the real items of that class (`manifold.prdc`, the run's k and
  convention), averaged over the classes with equal weights (`intra_recall`, `intra_coverage`; per-class values in
  `extra`): diversity within each class, which the unconditional recall misses when a model covers every class
  with one kind of item each. Like FD, both depend on the per-class counts: compare at equal counts. Samples of
  the wrong class lower coverage but can raise recall (spread-out samples have wide k-NN balls): a sampler
  ignoring its condition got intra-class coverage 0.49 (real images of the right class: 0.98) but recall 0.92
  (0.87) on Fashion-MNIST (tests/test_conditional.py).
- `intra_fd`: the Frechet distance between the real and generated features of each class (the real reference
  subset split by its labels, the samples by their conditions), averaged over the classes with equal weights;
  per-class values and counts in `extra`. Small per-class sets make FD biased upwards (it grows as the sample
  count falls), so compare intra-class FDs only at the same n_samples and class counts (the protocol states them).

Both read the conditions the pipeline kept with the samples (`EvalContext.fake_labels`) and are skipped when the
samples have none (an unconditional model, or `genbench eval` samples without `y`).
"""

from __future__ import annotations

from typing import Any

import torch

from genbench.errors import InvalidInputError
from genbench.metrics._util import as_f64
from genbench.metrics.base import MetricResult
from genbench.metrics.context import EvalContext
from genbench.metrics.frechet import frechet_distance
from genbench.metrics.registry import PERCENT, MetricSpec, MetricUnavailable, Output, register_metric
from genbench.metrics.stats import gaussian_stats


def _labels(y: Any, n: int, what: str) -> torch.Tensor:
    y = torch.as_tensor(y)
    if y.dtype.is_floating_point or y.dtype == torch.bool:
        raise InvalidInputError(f"{what} must be integer class labels, got dtype {y.dtype}")
    y = y.reshape(-1).long().cpu()
    if y.numel() != n:
        raise InvalidInputError(f"{what}: {y.numel()} labels for {n} samples")
    return y


def conditional_accuracy(class_probs: Any, conditions: Any) -> dict:
    """Share of samples whose classifier argmax equals their condition. `class_probs`: (N, K) probabilities (or
    logits: only the argmax is used) or (N,) predicted labels; `conditions`: (N,) labels. Returns accuracy,
    per_class (accuracy among the samples of each condition, None for a class with no sample), counts, num_classes."""
    p = torch.as_tensor(class_probs)
    if p.ndim == 2:
        pred, K = p.argmax(1).long().cpu(), int(p.shape[1])
    elif p.ndim == 1 and not p.dtype.is_floating_point:
        pred, K = p.long().cpu(), None
    else:
        raise InvalidInputError(f"class_probs must be (N, K) probabilities or (N,) labels, got shape {tuple(p.shape)}")
    y = _labels(conditions, len(pred), "conditions")
    if len(y) == 0:
        raise InvalidInputError("conditional_accuracy needs at least one sample")
    K = K or int(max(int(y.max()), int(pred.max())) + 1)
    if int(y.min()) < 0 or int(y.max()) >= K:
        raise InvalidInputError(f"conditions must lie in 0..{K - 1} (the classifier's classes), got "
                                f"{int(y.min())}..{int(y.max())}")
    right = (pred == y).double()
    counts = torch.bincount(y, minlength=K)
    hits = torch.bincount(y, weights=right, minlength=K)
    per_class = [float(h / c) if c > 0 else None for h, c in zip(hits.tolist(), counts.tolist())]
    return {"accuracy": float(right.mean()), "per_class": per_class, "counts": [int(c) for c in counts.tolist()],
            "num_classes": K}


def _per_class_inputs(real_features: Any, real_labels: Any, fake_features: Any, fake_labels: Any, classes: Any,
                      what: str) -> tuple:
    """Checked (real features, real labels, fake features, fake labels, sorted classes) of a per-class metric;
    the classes default to those the samples were generated for."""
    rf = as_f64(real_features, "real_features", ndim=2)
    ff = as_f64(fake_features, "fake_features", ndim=2)
    if rf.shape[1] != ff.shape[1]:
        raise InvalidInputError(f"real and fake features differ in dimension: {rf.shape[1]} vs {ff.shape[1]}")
    ry = _labels(real_labels, rf.shape[0], "real_labels")
    fy = _labels(fake_labels, ff.shape[0], "fake_labels")
    cls = sorted({int(c) for c in (classes if classes is not None else fy.unique().tolist())})
    if not cls:
        raise InvalidInputError(f"{what} needs at least one class")
    return rf, ry, ff, fy, cls


def intra_class_fd(real_features: Any, real_labels: Any, fake_features: Any, fake_labels: Any,
                   classes: Any = None, device: str = "cpu") -> dict:
    """Mean over classes of FD(real features of class c, fake features of class c) (module docstring).
    `classes`: the classes to average over (default: those the samples were generated for). Each needs at least
    2 real and 2 generated items (InvalidInputError naming the class otherwise). Returns fd (the mean), per_class
    {class: fd}, n_real and n_fake per class."""
    rf, ry, ff, fy, cls = _per_class_inputs(real_features, real_labels, fake_features, fake_labels, classes,
                                            "intra_class_fd")
    per, n_real, n_fake = {}, {}, {}
    for c in cls:
        r, f = rf[ry == c], ff[fy == c]
        if len(r) < 2 or len(f) < 2:
            raise InvalidInputError(f"class {c}: {len(r)} real and {len(f)} generated items; the intra-class FD "
                                    "needs at least 2 of each per class (draw more samples)")
        per[c] = frechet_distance(*gaussian_stats(r, device=device), *gaussian_stats(f, device=device), device=device)
        n_real[c], n_fake[c] = int(len(r)), int(len(f))
    return {"fd": sum(per.values()) / len(per), "per_class": per, "n_real": n_real, "n_fake": n_fake}


def intra_class_recall_coverage(real_features: Any, real_labels: Any, fake_features: Any, fake_labels: Any,
                                classes: Any = None, k_pr: int = 3, k_dc: int = 5, convention: str = "official",
                                device: str = "cpu") -> dict:
    """Per class c, k-NN recall and coverage (`genbench.metrics.manifold.prdc`, same k and convention) of the samples
    generated for c against the real items of class c; the means over classes (equal weights). `classes`: those
    to average over (default: the samples' classes). Each class needs more real items than the largest k and
    more generated items than k_pr (InvalidInputError naming the class otherwise). Returns recall, coverage (the
    means), per_class {class: {"recall", "coverage"}}, n_real and n_fake per class."""
    from genbench.metrics.manifold import prdc

    rf, ry, ff, fy, cls = _per_class_inputs(real_features, real_labels, fake_features, fake_labels, classes,
                                            "intra_class_recall_coverage")
    kp, kd = (int(k_dc), int(k_dc)) if convention == "prdc" else (int(k_pr), int(k_dc))  # prdc: one k for all
    per, n_real, n_fake = {}, {}, {}
    for c in cls:
        r, f = rf[ry == c], ff[fy == c]
        if len(r) <= max(kp, kd) or len(f) <= kp:
            raise InvalidInputError(f"class {c}: {len(r)} real and {len(f)} generated items; per-class recall and "
                                    f"coverage need more than {max(kp, kd)} real and more than {kp} generated items "
                                    "per class (draw more samples)")
        v = prdc(r, f, k_pr=k_pr, k_dc=k_dc, convention=convention, device=device)
        per[c] = {"recall": float(v["recall"]), "coverage": float(v["coverage"])}
        n_real[c], n_fake[c] = int(len(r)), int(len(f))
    return {"recall": sum(p["recall"] for p in per.values()) / len(per),
            "coverage": sum(p["coverage"] for p in per.values()) / len(per),
            "per_class": per, "n_real": n_real, "n_fake": n_fake}


# ---------------------------------------------------------------------------------------------- registry
def _need_conditions(ctx: EvalContext, metric: str) -> None:
    if ctx.fake_labels is None:
        raise MetricUnavailable(f"{metric}: the samples carry no conditions (an unconditional model, or samples "
                                "without labels 'y')")


def _cond_protocol(ctx: EvalContext) -> dict:
    return {**ctx.base_protocol(), **(ctx.condition_protocol or {})}


def _conditional_accuracy(ctx: EvalContext) -> list[MetricResult]:
    _need_conditions(ctx, "conditional_accuracy")
    probs = ctx.fake_class_probs
    if probs is not None and torch.as_tensor(probs).ndim == 3:
        raise MetricUnavailable("conditional_accuracy: per-channel class probabilities (Stacked MNIST) are not "
                                "supported; conditions are one label per sample")
    r = conditional_accuracy(probs, ctx.fake_labels)
    proto = {**_cond_protocol(ctx), "classifier": ctx.classifier_protocol.get("id", ""),
             "prediction": "argmax of the classifier's softmax"}
    if "accuracy" in ctx.classifier_protocol:
        proto["classifier_accuracy"] = ctx.classifier_protocol["accuracy"]  # the ceiling: real held-out images
    return [MetricResult("conditional_accuracy", r["accuracy"], "", True, "1", proto,
                         extra={"per_class": r["per_class"], "counts": r["counts"]})]


def _intra_fd(ctx: EvalContext) -> list[MetricResult]:
    _need_conditions(ctx, "intra_fd")
    if ctx.real_labels is None:
        raise MetricUnavailable("intra_fd: the reference split has no labels")
    import warnings

    from genbench.metrics._util import MetricWarning

    with warnings.catch_warnings(record=True) as caught:  # small classes: one note, not one warning per class
        warnings.simplefilter("always", MetricWarning)
        try:
            r = intra_class_fd(ctx.real_features, ctx.real_labels, ctx.fake_features, ctx.fake_labels,
                               device=ctx.device)
        except InvalidInputError as e:
            raise MetricUnavailable(f"intra_fd: {e}") from None
    proto = {**_cond_protocol(ctx), "feature_dim": int(ctx.fake_features.shape[1]),
             "statistics": "float64, unbiased covariance, per class", "average": "mean over classes, equal weights",
             "n_real_per_class": r["n_real"], "n_fake_per_class": r["n_fake"]}
    extra = {"per_class": {str(c): v for c, v in r["per_class"].items()}}
    if any(issubclass(w.category, MetricWarning) for w in caught):
        extra["note"] = "some per-class covariances were singular (fewer items than feature dimensions)"
    return [MetricResult("intra_fd", r["fd"], "", False, "1", proto, extra=extra)]


def _intra_recall_coverage(ctx: EvalContext) -> list[MetricResult]:
    _need_conditions(ctx, "intra_recall_coverage")
    if ctx.real_labels is None:
        raise MetricUnavailable("intra_recall_coverage: the reference split has no labels")
    try:
        r = intra_class_recall_coverage(ctx.real_features, ctx.real_labels, ctx.fake_features, ctx.fake_labels,
                                        k_pr=ctx.k_pr, k_dc=ctx.k_dc, convention=ctx.prdc_convention,
                                        device=ctx.device)
    except InvalidInputError as e:
        raise MetricUnavailable(f"intra_recall_coverage: {e}") from None
    strict = ctx.prdc_convention == "prdc"
    base = {**_cond_protocol(ctx), "convention": ctx.prdc_convention, "ball": "<" if strict else "<=",
            "average": "mean over classes, equal weights", "n_real_per_class": r["n_real"],
            "n_fake_per_class": r["n_fake"]}
    out = []
    for name, key, k in (("intra_recall", "recall", ctx.k_dc if strict else ctx.k_pr),
                         ("intra_coverage", "coverage", ctx.k_dc)):
        out.append(MetricResult(name, r[key], "", True, "1", {**base, "k": k},
                                extra={"per_class": {str(c): v[key] for c, v in r["per_class"].items()}}))
    return out


CONDITIONAL_METRICS = ("conditional_accuracy", "intra_fd", "intra_recall_coverage")

for _spec in (
    MetricSpec("conditional_accuracy", "", True, "1", ("fake_class_probs", "fake_labels"), _conditional_accuracy,
               "share of samples the pinned dataset classifier assigns to the class they were generated for",
               (Output("conditional_accuracy", "", True, "quality", "cond. accuracy", PERCENT, headline=("image",),
                       order=35, rank=6),), ("image",)),
    MetricSpec("intra_fd", "", False, "1", ("real_features", "fake_features", "real_labels", "fake_labels"), _intra_fd,
               "Frechet distance within each class (reference items by label, samples by condition), mean over classes",
               (Output("intra_fd", "", False, "diversity", "intra-class FD", headline=("image",), order=46, rank=6),),
               ("image",)),
    MetricSpec("intra_recall_coverage", "", True, "1", ("real_features", "fake_features", "real_labels", "fake_labels"),
               _intra_recall_coverage,
               "k-NN recall and coverage within each class (reference items by label, samples by condition), mean "
               "over classes: diversity within each class",
               (Output("intra_recall", "", True, "diversity", "intra-class recall", order=75, rank=7),
                Output("intra_coverage", "", True, "diversity", "intra-class coverage", order=95, rank=8)),
               ("image",)),
):
    register_metric(_spec)

del _spec


# ---------------------------------------------------------------------------------------------- CAS
_CEILING_CACHE: dict = {}


def classification_accuracy_score(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor,
                                  test_y: torch.Tensor, num_classes: int, dataset: str = "", seed: int = 0) -> float:
    """Classification Accuracy Score (Ravuri & Vinyals 2019): a classifier trained on (train_x, train_y) only --
    genbench's SmallCNN with the dataset's fixed recipe (`genbench.features.classifier.RECIPES`, else the default
    `Recipe()`; one CPU thread, seeded) -- and its accuracy on (test_x, test_y)."""
    from genbench.features.classifier import RECIPES, Recipe, train_classifier

    _, meta = train_classifier(train_x.float(), train_y.long(), test_x.float(), test_y.long(), int(num_classes),
                               RECIPES.get(dataset, Recipe()), int(seed), label="CAS classifier", verbose=False)
    return float(meta["test_accuracy"])


def real_ceiling_subset(train_x: torch.Tensor, train_y: torch.Tensor, counts: list) -> tuple:
    """The real training items the CAS ceiling is trained on: for each class c, the first counts[c] items of that
    class in a fixed pseudo-random order of the training split (seed 20240603), classes interleaved in that order."""
    perm = torch.randperm(len(train_y), generator=torch.Generator().manual_seed(20240603))
    taken = {c: 0 for c in range(len(counts))}
    keep = []
    for i in perm.tolist():
        c = int(train_y[i])
        if c < len(counts) and taken[c] < counts[c]:
            keep.append(i)
            taken[c] += 1
    idx = torch.tensor(keep, dtype=torch.long)
    return train_x[idx], train_y[idx].long()


def _cas(ctx: EvalContext) -> list[MetricResult]:
    _need_conditions(ctx, "cas")
    if ctx.real_labels is None or ctx.real_samples is None or ctx.fake_samples is None:
        raise MetricUnavailable("cas: needs the real reference items with labels and the samples")
    if ctx.modality != "image" or torch.as_tensor(ctx.fake_samples).ndim != 4:
        raise MetricUnavailable("cas: image datasets only")
    fy = torch.as_tensor(ctx.fake_labels).long()
    K = int(ctx.num_classes or int(max(int(fy.max()), int(ctx.real_labels.max())) + 1))
    value = classification_accuracy_score(ctx.fake_samples, fy, ctx.real_samples, ctx.real_labels, K,
                                          ctx.dataset or "", ctx.seed)
    counts = torch.bincount(fy, minlength=K).tolist()
    ceiling = None
    if ctx.dataset:
        key = (ctx.dataset, tuple(counts), int(ctx.seed), int(len(ctx.real_labels)), ctx.reference_split)
        if key not in _CEILING_CACHE:
            from genbench.data import get_dataset

            tr = get_dataset(ctx.dataset).load("train")
            if tr.y is not None:
                rx, ry = real_ceiling_subset(tr.x, tr.y, counts)
                _CEILING_CACHE[key] = classification_accuracy_score(rx, ry, ctx.real_samples, ctx.real_labels, K,
                                                                    ctx.dataset, ctx.seed)
        ceiling = _CEILING_CACHE.get(key)
    from genbench.features.classifier import ARCHITECTURE, RECIPES, Recipe

    recipe = RECIPES.get(ctx.dataset or "", Recipe())
    proto = {**_cond_protocol(ctx), "classifier": ARCHITECTURE, "recipe": vars(recipe) if hasattr(recipe, "__dict__")
             else str(recipe), "trained_on": f"{len(fy)} samples with their conditions as labels",
             "tested_on": f"{len(ctx.real_labels)} real {ctx.reference_split} items"}
    if ceiling is not None:
        proto["real_data_ceiling"] = ceiling
    return [MetricResult("cas", value, "", True, "1", proto,
                         extra={"real_data_ceiling": ceiling, "ceiling_trained_on": "as many real training items per "
                                "class as samples (genbench.metrics.conditional.real_ceiling_subset)"})]


register_metric(MetricSpec(
    "cas", "", True, "1", ("fake_samples", "fake_labels", "real_samples", "real_labels"), _cas,
    "Classification Accuracy Score: a classifier trained on the samples (labels = conditions), accuracy on real "
    "held-out data; the real-data ceiling in extra",
    (Output("cas", "", True, "quality", "CAS", PERCENT, order=36, rank=7),), ("image",)))
CONDITIONAL_METRICS = CONDITIONAL_METRICS + ("cas",)
