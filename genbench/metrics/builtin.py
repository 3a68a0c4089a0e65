"""Built-in metric specs: how each metric reads an EvalContext and what it reports."""

from __future__ import annotations

import torch

from genbench.metrics._util import as_features
from genbench.metrics.base import MetricResult
from genbench.metrics.bootstrap import bootstrap_ci
from genbench.metrics.context import EvalContext
from genbench.metrics.diversity import memorisation, vendi_score
from genbench.metrics.frechet import CrossGramFD, fd_route, frechet_distance, frechet_distance_features, small_n_warning
from genbench.metrics.kid import KernelKID, kid, use_kernels
from genbench.metrics.likelihood import bits_per_dim
from genbench.metrics.manifold import prdc
from genbench.metrics.prdc_bootstrap import PrdcResampler
from genbench.metrics.modes import class_coverage, mode_coverage
from genbench.metrics.registry import PERCENT, MetricSpec, MetricUnavailable, Output, register_metric
from genbench.metrics.stats import gaussian_stats

FEATURES = ("real_features", "fake_features")


def _ci(ctx: EvalContext, fn, bounds=None, indexed=None, estimate=None) -> dict:
    """{"ci_low", "ci_high"} from a feature bootstrap when ctx.n_bootstrap > 0, else {}; `bounds`: the
    metric's range, which the interval is clipped to."""
    if ctx.n_bootstrap <= 0:
        return {}
    return bootstrap_ci(fn, ctx.real_features, ctx.fake_features, ctx.n_bootstrap, ctx.seed, ctx.bootstrap_alpha,
                        device=ctx.device, bounds=bounds, indexed=indexed, estimate=estimate)


def _boot_protocol(ctx: EvalContext) -> dict:
    return {"n_bootstrap": ctx.n_bootstrap, "bootstrap_alpha": ctx.bootstrap_alpha} if ctx.n_bootstrap > 0 else {}


def _fd(ctx: EvalContext) -> list[MetricResult]:
    n_r, n_f, d = int(ctx.real_features.shape[0]), int(ctx.fake_features.shape[0]), int(ctx.fake_features.shape[1])
    route = fd_route(n_r, n_f, d)
    cross = None
    if route == "features":  # exact from the features (a covariance is singular, or it is cheaper)
        small_n_warning(n_r, n_f, d)
        cross = CrossGramFD(ctx.real_features, ctx.fake_features, device=ctx.device)
        value = cross.value()
    else:
        mu_r, s_r = ctx.real_stats if ctx.real_stats is not None else gaussian_stats(ctx.real_features, device=ctx.device)
        mu_f, s_f = gaussian_stats(ctx.fake_features, device=ctx.device)
        value = frechet_distance(mu_r, s_r, mu_f, s_f, device=ctx.device)

    def fn(r, f):
        return frechet_distance_features(r, f, route=route)

    ci = {}
    if ctx.n_bootstrap > 0:
        import warnings

        from genbench.metrics._util import MetricWarning

        with warnings.catch_warnings():  # the point estimate already warned about singular covariances
            warnings.simplefilter("ignore", MetricWarning)
            ci = _ci(ctx, fn, bounds=(0.0, None),  # FD >= 0
                     indexed=cross.resampled if cross is not None else None)
    proto = {**ctx.base_protocol(), "feature_dim": d, "statistics": "float64, unbiased covariance", **_boot_protocol(ctx)}
    extra = {"route": "features: nuclear norm of the centred n_real x n_fake cross-Gram matrix (exact)" if cross is not None
             else "statistics: Cholesky + eigvalsh of the D x D covariances"}
    return [MetricResult("fd", value, "", False, "1", proto, ci.get("ci_low"), ci.get("ci_high"), extra=extra)]


_KID_STD_OF = ("one subset's MMD^2 over the subset draws (ddof 0), not the uncertainty of the mean: the "
               "bootstrap interval is that")
_KID_NO_STD = ("undefined: every subset holds all rows of a set (subset size = its N), so the subsets' spread "
               "leaves out its sampling noise; the bootstrap interval gives the uncertainty")


def _kid(ctx: EvalContext) -> list[MetricResult]:
    kw = dict(subsets=ctx.kid_subsets, subset_size=ctx.kid_subset_size, seed=ctx.seed, device=ctx.device)
    mean, std = kid(ctx.real_features, ctx.fake_features, **kw)
    m = min(ctx.kid_subset_size, ctx.real_features.shape[0], ctx.fake_features.shape[0])
    ci = {}
    if ctx.n_bootstrap > 0:
        import warnings

        from genbench.metrics._util import MetricWarning

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MetricWarning)
            n_r, n_f = int(ctx.real_features.shape[0]), int(ctx.fake_features.shape[0])
            fast = None
            if use_kernels(n_r, n_f, ctx.kid_subsets, m, replicates=ctx.n_bootstrap):  # kernels once, then indexing
                dev = torch.device(ctx.device)
                x, y = as_features(ctx.real_features, "real features", dev), as_features(ctx.fake_features, "fake features", dev)
                fast = KernelKID(x, y, ctx.kid_subsets, m, ctx.seed).resampled
            ci = _ci(ctx, lambda r, f: kid(r, f, **kw)[0], indexed=fast)
    proto = {
        **ctx.base_protocol(),
        "kernel": "(x.y/d+1)^3",
        "estimator": "unbiased MMD^2",
        "subsets": ctx.kid_subsets,
        "subset_size": m,
        **_boot_protocol(ctx),
    }
    return [MetricResult("kid", mean, "", False, "1", proto, ci.get("ci_low"), ci.get("ci_high"), extra={"std": std, "std_of": _KID_STD_OF if std is not None else _KID_NO_STD})]


def _prdc(ctx: EvalContext) -> list[MetricResult]:
    kw = dict(k_pr=ctx.k_pr, k_dc=ctx.k_dc, convention=ctx.prdc_convention, device=ctx.device)
    vals = prdc(ctx.real_features, ctx.fake_features, real_radii=ctx.real_radii, **kw)
    cis = {}
    if ctx.n_bootstrap > 0:  # replicates by the point estimate's estimator, from distances computed once
        boot = PrdcResampler(ctx.real_features, ctx.fake_features, **kw)
        cis = _ci(ctx, None, indexed=boot.resampled, estimate=vals,
                  bounds={"precision": (0.0, 1.0), "recall": (0.0, 1.0), "coverage": (0.0, 1.0), "density": (0.0, None)})
    strict = ctx.prdc_convention == "prdc"
    k_pr = ctx.k_dc if strict else ctx.k_pr
    out = []
    for name in ("precision", "recall", "density", "coverage"):
        k = k_pr if name in ("precision", "recall") else ctx.k_dc
        proto = {**ctx.base_protocol(), "k": k, "convention": ctx.prdc_convention, "ball": "<" if strict else "<=", **_boot_protocol(ctx)}
        ci = cis.get(name, {})
        out.append(MetricResult(name, vals[name], "", True, "1", proto, ci.get("ci_low"), ci.get("ci_high")))
    return out


def _mode_coverage(ctx: EvalContext) -> list[MetricResult]:
    r = mode_coverage(ctx.fake_samples, ctx.mixture)
    proto = {
        **ctx.base_protocol(),
        "mixture": getattr(ctx.mixture, "name", ""),
        "n_samples": r["n_samples"],
        "high_quality": f"within {r['n_std']:g} std of the nearest mean",
    }
    extra = {"histogram": r["histogram"], "num_modes": r["num_modes"]}
    return [
        MetricResult("modes_covered", r["modes_covered"], "modes", True, "1", proto, extra=extra),
        MetricResult("hq_share", r["hq_share"], "", True, "1", proto),
        MetricResult("mode_kl", r["kl"], "nats", False, "1", proto, extra=extra),
    ]


def _class_coverage(ctx: EvalContext) -> list[MetricResult]:
    r = class_coverage(ctx.fake_class_probs, ctx.num_classes)
    proto = {**ctx.base_protocol(), "classifier": ctx.classifier_protocol.get("id", ""), "num_modes": r["num_modes"], "n_samples": r["n_samples"]}
    if "accuracy" in ctx.classifier_protocol:
        proto["classifier_accuracy"] = ctx.classifier_protocol["accuracy"]
    extra = {"histogram": r["histogram"], "num_modes": r["num_modes"]}
    return [
        MetricResult("classes_covered", r["modes_covered"], "modes", True, "1", proto, extra=extra),
        MetricResult("class_kl", r["kl"], "nats", False, "1", proto, extra=extra),
    ]


def _vendi(ctx: EvalContext) -> list[MetricResult]:
    f = ctx.fake_features[: ctx.vendi_max_samples]
    v = vendi_score(f, kernel=ctx.vendi_kernel, device=ctx.device)
    proto = {**ctx.base_protocol(), "kernel": ctx.vendi_kernel, "n_samples": int(f.shape[0])}
    return [MetricResult("vendi", v, "samples", True, "1", proto)]


def _memorisation(ctx: EvalContext) -> list[MetricResult]:
    r = memorisation(ctx.fake_features, ctx.train_features, ctx.real_features, copy_fraction=ctx.copy_fraction, seed=ctx.seed, device=ctx.device)
    proto = {
        **ctx.base_protocol(),
        "n_train": int(ctx.train_features.shape[0]),
        "near_copy": f"d_train < {ctx.copy_fraction:g} x median train NN distance",
        "heldout": ctx.reference_split,
    }
    extra = {k: r[k] for k in ("median_d_train", "median_d_heldout", "threshold", "train_nn_spacing", "n_train_compared")}
    return [
        MetricResult("near_copy_share", r["near_copy_share"], "", False, "1", proto, extra=extra),
        MetricResult("nn_ratio", r["nn_ratio"], "", True, "1", proto, extra=extra),
    ]


def _bits_per_dim(ctx: EvalContext) -> list[MetricResult]:
    if ctx.log_prob_kind == "none":
        raise MetricUnavailable("bits_per_dim: the model has no likelihood (log_prob_kind='none')")
    if ctx.modality not in ("image", "points"):
        raise MetricUnavailable(f"bits_per_dim applies to image and points data, not {ctx.modality!r} (text: bits_per_char)")
    if ctx.data_dim is None:
        raise MetricUnavailable("bits_per_dim needs EvalContext.data_dim")
    v = bits_per_dim(ctx.log_prob, ctx.data_dim)
    lp = ctx.log_prob
    proto = {
        "reference_split": ctx.reference_split,
        "n_eval": int(lp.numel()) if hasattr(lp, "numel") else len(lp),
        "kind": ctx.log_prob_kind,
        "convention": "discrete 8-bit log-probability" if ctx.modality == "image" else "continuous density",
        "dim": int(ctx.data_dim),
        **({"dataset": ctx.dataset} if ctx.dataset else {}),
        **ctx.extra_protocol,
    }
    # a likelihood bound gives an upper bound on bits/dim
    return [MetricResult("bits_per_dim", v, "bits/dim", False, "1", proto, extra={"is_upper_bound": ctx.log_prob_kind == "bound"})]


for _spec in (
    MetricSpec("fd", "", False, "1", FEATURES, _fd, "Frechet distance between Gaussian fits of real and fake features (FID with inception)",
               (Output("fd", "", False, "quality", "FD", headline=("points", "image"), order=40, rank=0),)),
    MetricSpec("kid", "", False, "1", FEATURES, _kid, "kernel distance: unbiased polynomial MMD^2 over seeded subsets",
               (Output("kid", "", False, "quality", "KID", headline=("image",), order=50, rank=2),)),
    MetricSpec(
        "prdc", "", True, "1", FEATURES, _prdc, "k-NN precision, recall, density, coverage",
        (Output("precision", "", True, "quality", "precision", headline=("image",), order=60, rank=4),
         Output("recall", "", True, "diversity", "recall", headline=("image",), order=70, rank=2),
         Output("density", "", True, "quality", "density", headline=("image",), order=80, rank=5),
         Output("coverage", "", True, "diversity", "coverage", headline=("image",), order=90, rank=3)),
    ),
    MetricSpec(
        "mode_coverage", "modes", True, "1", ("fake_samples", "mixture"), _mode_coverage,
        "modes of a known 2D mixture with >= 1 high-quality sample (VEEGAN/PacGAN)",
        (Output("modes_covered", "modes", True, "diversity", "modes covered", headline=("points",), order=10, rank=0),
         Output("hq_share", "", True, "quality", "high-quality %", PERCENT, headline=("points",), order=20, rank=3),
         Output("mode_kl", "nats", False, "diversity", "reverse KL", headline=("points",), order=30, rank=4)),
    ),
    MetricSpec(
        "class_coverage", "modes", True, "1", ("fake_class_probs",), _class_coverage,
        "classifier-labelled modes covered and KL to uniform",
        (Output("classes_covered", "modes", True, "diversity", "classes covered", headline=("image",), order=100, rank=1),
         Output("class_kl", "nats", False, "diversity", "class KL", order=300, rank=9)),
    ),
    MetricSpec("vendi", "samples", True, "1", ("fake_features",), _vendi, "Vendi score: effective number of distinct samples",
               (Output("vendi", "samples", True, "diversity", "Vendi", order=310, rank=8),)),
    MetricSpec(
        "memorisation", "", False, "1", ("fake_features", "train_features", "real_features"), _memorisation,
        "share of near copies of training rows; nearest-train / nearest-held-out distance ratio",
        (Output("near_copy_share", "", False, "memorisation", "near copies %", PERCENT, headline=("points", "image"),
                order=120, rank=0),
         Output("nn_ratio", "", True, "memorisation", "train/held-out NN", order=320, rank=1)),
    ),
    MetricSpec("bits_per_dim", "bits/dim", False, "1", ("log_prob",), _bits_per_dim,
               "negative log-likelihood of held-out data in bits per dimension",
               (Output("bits_per_dim", "bits/dim", False, "likelihood", "bits/dim", headline=("points", "image"),
                       order=110, rank=0),), ("points", "image")),
):
    register_metric(_spec)

del _spec

