"""Bootstrap CIs, the metric registry, EvalContext and compute_metrics."""

import math

import pytest
import torch

from genbench.data.mixtures import ring8
from genbench.errors import InvalidInputError, UnknownNameError
from genbench.metrics import (
    METRICS,
    EvalContext,
    MetricResult,
    MetricSpec,
    MetricUnavailable,
    PrdcResampler,
    bootstrap_ci,
    compute_metrics,
    frechet_distance,
    gaussian_stats,
    kid,
    list_metrics,
    mode_coverage,
    prdc,
    register_metric,
)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

ALL = ["fd", "kid", "prdc", "mode_coverage", "class_coverage", "vendi", "memorisation", "bits_per_dim"]


def _fd(r, f):
    return frechet_distance(*gaussian_stats(r), *gaussian_stats(f))


def _data(seed=0, n=400, d=6, shift=0.4):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64), torch.randn(n, d, generator=g, dtype=torch.float64) + shift


def test_bootstrap_seeded_and_contains_estimate():
    real, fake = _data()
    a = bootstrap_ci(_fd, real, fake, n_boot=40, seed=3)
    assert a == bootstrap_ci(_fd, real, fake, n_boot=40, seed=3)
    assert a != bootstrap_ci(_fd, real, fake, n_boot=40, seed=4)
    assert a["ci_low"] < _fd(real, fake) < a["ci_high"]
    point = prdc(real, fake)
    p = bootstrap_ci(None, real, fake, n_boot=20, seed=0, indexed=PrdcResampler(real, fake).resampled, estimate=point)
    for key in ("precision", "recall", "density", "coverage"):
        assert p[key]["ci_low"] <= point[key] <= p[key]["ci_high"], key
    k = bootstrap_ci(lambda r, f: kid(r, f, subsets=5, subset_size=200, seed=0), real, fake, n_boot=20, seed=0)
    assert k["ci_low"] < kid(real, fake, subsets=5, subset_size=200, seed=0)[0] < k["ci_high"]


def test_bootstrap_interval_width_shrinks_with_n():
    small = bootstrap_ci(_fd, *_data(n=200), n_boot=30, seed=0)
    big = bootstrap_ci(_fd, *_data(n=3200), n_boot=30, seed=0)
    assert (big["ci_high"] - big["ci_low"]) < 0.5 * (small["ci_high"] - small["ci_low"])  # ~1/sqrt(16) = 0.25


def _ctx(**kw):
    mix = ring8()
    real, fake, train = mix.sample(600, seed=1).double(), mix.sample(500, seed=2).double(), mix.sample(800, seed=3).double()
    probs = torch.nn.functional.one_hot(torch.arange(480) % 8, 8).double()
    base = dict(
        real_features=real, fake_features=fake, feature_protocol={"id": "identity"}, fake_samples=fake,
        train_features=train, mixture=mix, fake_class_probs=probs, log_prob=mix.log_prob(real), log_prob_kind="exact",
        modality="points", data_dim=2, dataset="ring8", seed=0, kid_subset_size=200, kid_subsets=10,
    )
    base.update(kw)
    return EvalContext(**base)


def test_compute_metrics_all_names_match_direct_calls():
    ctx = _ctx()
    res = compute_metrics(ALL, ctx)
    names = [r.name for r in res]
    assert names == ["fd", "kid", "precision", "recall", "density", "coverage", "modes_covered", "hq_share", "mode_kl",
                     "classes_covered", "class_kl", "vendi", "near_copy_share", "nn_ratio", "bits_per_dim"]
    assert ctx.skipped == {}
    by = {r.name: r for r in res}
    assert by["fd"].value == _fd(ctx.real_features, ctx.fake_features)
    assert by["kid"].value == kid(ctx.real_features, ctx.fake_features, subsets=10, subset_size=200, seed=0)[0]
    assert by["precision"].value == prdc(ctx.real_features, ctx.fake_features)["precision"]
    assert by["modes_covered"].value == mode_coverage(ctx.fake_samples, ctx.mixture)["modes_covered"] == 8
    assert by["classes_covered"].value == 8 and by["class_kl"].value == pytest.approx(0.0, abs=1e-12)
    # exact log-likelihood of the true mixture: bits/dim = entropy; ring8 std 0.01 -> about log2(2 pi e 1e-4)/2 + 3/2
    expect = (0.5 * math.log(2 * math.pi * math.e * 0.01**2) * 2 + math.log(8)) / (2 * math.log(2))
    assert by["bits_per_dim"].value == pytest.approx(expect, abs=0.05)
    for r in res:
        assert isinstance(r, MetricResult) and r.version and isinstance(r.higher_is_better, bool)
        if r.name != "bits_per_dim":
            assert r.protocol["reference_split"] == "test" and r.protocol["seed"] == 0
    assert by["fd"].protocol["features"] == "identity" and by["fd"].protocol["n_real"] == 600
    assert by["precision"].protocol["k"] == 3 and by["density"].protocol["k"] == 5
    assert by["kid"].protocol["subset_size"] == 200 and "std" in by["kid"].extra
    assert by["fd"].higher_is_better is False and by["precision"].higher_is_better is True
    # same seed -> identical numbers
    assert [r.to_dict() for r in compute_metrics(ALL, _ctx())] == [r.to_dict() for r in res]


def test_compute_metrics_with_bootstrap_fills_ci():
    res = compute_metrics(["fd", "prdc"], _ctx(n_bootstrap=10))
    for r in res:
        assert r.ci_low is not None and r.ci_low <= r.ci_high, r.name
        assert r.protocol["n_bootstrap"] == 10


def test_unknown_metric_and_skips():
    with pytest.raises(UnknownNameError, match="Did you mean 'fd'"):
        compute_metrics(["fid"], _ctx())
    ctx = _ctx(mixture=None, train_features=None, log_prob_kind="none")
    res = compute_metrics(ALL, ctx)
    assert set(ctx.skipped) == {"mode_coverage", "memorisation", "bits_per_dim"}
    assert "mixture" in ctx.skipped["mode_coverage"] and "log_prob_kind" in ctx.skipped["bits_per_dim"]
    assert "modes_covered" not in {r.name for r in res}
    with pytest.raises(MetricUnavailable, match="train_features"):
        compute_metrics(["memorisation"], _ctx(train_features=None), strict=True)


def test_registry_is_open_and_listable():
    assert set(ALL) <= set(list_metrics())
    spec = MetricSpec("test_const", "", True, "1", (), lambda ctx: [MetricResult("test_const", 1.0, "", True, "1", ctx.base_protocol())])
    register_metric(spec)
    try:
        assert compute_metrics(["test_const"], _ctx())[0].value == 1.0
        with pytest.raises(ValueError, match="already registered"):
            register_metric(spec)
    finally:
        METRICS._items.pop("test_const")


def test_bootstrap_is_bias_corrected_for_fd_of_a_copy():
    # A model that copies its reference set has FD exactly 0; every with-replacement resample has fewer
    # distinct rows, so every replicate FD is > 0 and a raw percentile interval would exclude the estimate.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 32, generator=g, dtype=torch.float64)
    est = _fd(x, x)
    ci = bootstrap_ci(_fd, x, x, n_boot=30, seed=0)
    assert abs(est) < 1e-8
    assert ci["bias"] > 0
    assert ci["ci_low"] <= est <= ci["ci_high"]
    assert ci["method"] == "bias-corrected percentile"


def test_bootstrap_interval_is_clipped_to_the_metric_range():
    # FD of a copy: the bias-corrected interval reaches below 0, which FD cannot; bounds clip it at 0.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 32, generator=g, dtype=torch.float64)
    raw = bootstrap_ci(_fd, x, x, n_boot=30, seed=0)
    assert raw["ci_low"] < 0 and raw["clipped"] is False
    ci = bootstrap_ci(_fd, x, x, n_boot=30, seed=0, bounds=(0.0, None))
    assert ci["ci_low"] == 0.0 and ci["ci_high"] == raw["ci_high"] and ci["clipped"] is True
    # per-key bounds for dict-valued metrics
    fn = lambda r, f: {"a": float(_fd(r, f)), "b": -float(_fd(r, f))}
    d = bootstrap_ci(fn, x, x, n_boot=30, seed=0, bounds={"a": (0.0, None)})
    # "a" is the same computation as `ci` (same replicates, same clipping): exactly equal, by construction
    assert d["a"]["ci_low"] == 0.0 and d["a"]["ci_high"] == ci["ci_high"] and d["a"]["clipped"] is True
    # "b" = -FD has no bounds: its interval is the mirror image of the unclipped FD interval. The mirrored
    # quantiles interpolate between the same two replicates with complementary weights (0.725 vs 0.275 of
    # the gap at n_boot=30), equal in exact arithmetic but not always to the last bit: compare to 1e-9 of
    # the interval's width (rounding is ~1e-16 of it; a wrong quantile level moves the end by ~1e-2 of it).
    width = raw["ci_high"] - raw["ci_low"]
    assert d["b"]["clipped"] is False
    assert d["b"]["ci_high"] == pytest.approx(-raw["ci_low"], abs=1e-9 * width)
    assert d["b"]["ci_low"] == pytest.approx(-raw["ci_high"], abs=1e-9 * width)
    # upper bounds clip too, and an end already inside the range is left alone
    up = bootstrap_ci(fn, x, x, n_boot=30, seed=0, bounds={"a": (None, 0.0), "b": (None, 0.0)})
    assert up["a"]["ci_high"] == 0.0 and up["a"]["ci_low"] == raw["ci_low"] and up["a"]["clipped"] is True
    assert up["b"]["ci_high"] == 0.0 and up["b"]["clipped"] is True
    assert up["b"]["ci_low"] == pytest.approx(-raw["ci_high"], abs=1e-9 * width)
    same = bootstrap_ci(_fd, x, x, n_boot=30, seed=0, bounds=(raw["ci_low"], raw["ci_high"]))
    assert (same["ci_low"], same["ci_high"], same["clipped"]) == (raw["ci_low"], raw["ci_high"], False)


def _exact_normal(n, sd, seed):
    """n draws rescaled to sample mean 0 and population (ddof=0) std exactly `sd`: the bootstrap distribution
    of a mean of n resampled rows then has standard deviation exactly sd / sqrt(n)."""
    v = torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return ((v - v.mean()) / v.std(unbiased=False) * sd)[:, None]


@pytest.mark.parametrize("alpha,z", [(0.05, 1.959964), (0.32, 0.994458)])
def test_bootstrap_width_of_a_difference_of_means_matches_the_analytic_standard_error(alpha, z):
    """metric = mean(fake) - mean(real), real: 400 rows with std 1, fake: 100 rows with std 0.5 (exact sample
    stds). Resampling both sets, the replicates have standard error se = sqrt(1/400 + 0.25/100) = 0.0707 and are
    normal to a good approximation, so the interval is estimate -/+ z(1 - alpha/2) * se. The two sets contribute
    equally to se: resampling only one of them shrinks the interval by 1/sqrt(2) (-29%); quantiles at
    alpha / 1 - alpha instead of alpha/2 / 1 - alpha/2 shrink it by 16% at alpha = 0.05.
    Tolerances from the bootstrap's own Monte Carlo error at n_boot = 4000 (measured over 20 seeds: sd 1.1% of
    the half-width, 1.8% of each end's distance, 0.9% of the std): half-width 5%, each end 8%, std 4%
    (>= 4 Monte Carlo standard deviations each; all far below the mutants' effects)."""
    real, fake = _exact_normal(400, 1.0, 1), _exact_normal(100, 0.5, 2) + 0.3
    se = math.sqrt(1.0 / 400 + 0.25 / 100)
    est = 0.3
    ci = bootstrap_ci(lambda r, f: float(f.mean() - r.mean()), real, fake, n_boot=4000, seed=0, alpha=alpha)
    assert ci["alpha"] == alpha and ci["n_boot"] == 4000 and ci["clipped"] is False
    assert ci["std"] == pytest.approx(se, rel=0.04)
    assert abs(ci["bias"]) < 4 * se / math.sqrt(4000)  # the mean of the replicates is unbiased
    assert (ci["ci_high"] - ci["ci_low"]) / 2 == pytest.approx(z * se, rel=0.05)
    assert est - ci["ci_low"] == pytest.approx(z * se, rel=0.08)
    assert ci["ci_high"] - est == pytest.approx(z * se, rel=0.08)


def test_bootstrap_resamples_every_row_of_both_sets_with_replacement():
    """Each replicate holds n_real real rows and n_fake fake rows drawn from all rows (the first and last
    included) with replacement, independently per set."""
    seen = []
    x = torch.arange(5, dtype=torch.float64)
    y = 100 + torch.arange(7, dtype=torch.float64)

    def fn(r, f):
        seen.append((r[:, 0].long().tolist(), f[:, 0].long().tolist()))
        return 0.0

    bootstrap_ci(fn, x, y, n_boot=200, seed=0)
    reps = seen[1:]  # the first call is the estimate on the full data
    assert seen[0] == (list(range(5)), list(range(100, 107)))
    assert len(reps) == 200 and all(len(r) == 5 and len(f) == 7 for r, f in reps)
    assert set().union(*(r for r, _ in reps)) == set(range(5))
    assert set().union(*(f for _, f in reps)) == set(range(100, 107))
    assert any(len(set(r)) < 5 for r, _ in reps)  # with replacement


def test_bootstrap_argument_edges_and_defaults():
    """n_boot >= 2 and 0 < alpha < 1 are required (2, 1e-3 and 0.999 are fine); one row per set is enough (the
    interval is then the estimate); the defaults are 100 replicates, seed 0, alpha 0.05."""
    fn = lambda r, f: float(f.mean() - r.mean())  # noqa: E731
    x, y = _exact_normal(30, 1.0, 3), _exact_normal(20, 1.0, 4)
    assert bootstrap_ci(fn, x, y, n_boot=2)["n_boot"] == 2
    for a in (1e-3, 0.999):
        assert bootstrap_ci(fn, x, y, n_boot=5, alpha=a)["alpha"] == a
    for kw in ({"n_boot": 1}, {"alpha": 0.0}, {"alpha": 1.0}):
        with pytest.raises(InvalidInputError):
            bootstrap_ci(fn, x, y, **kw)
    one = bootstrap_ci(fn, x[:1], y[:1], n_boot=5)
    est = fn(x[:1], y[:1])
    assert one["ci_low"] == pytest.approx(est) and one["ci_high"] == pytest.approx(est)
    default = bootstrap_ci(fn, x, y)
    assert default == bootstrap_ci(fn, x, y, n_boot=100, seed=0, alpha=0.05)
    assert (default["n_boot"], default["seed"], default["alpha"]) == (100, 0, 0.05)
