"""Bootstrap CIs, the metric registry, EvalContext and compute_metrics."""

import math

import pytest
import torch

from genbench.data.mixtures import ring8
from genbench.errors import UnknownNameError
from genbench.metrics import (
    METRICS,
    EvalContext,
    MetricResult,
    MetricSpec,
    MetricUnavailable,
    bootstrap_ci,
    compute_metrics,
    frechet_distance,
    gaussian_stats,
    kid,
    list_metrics,
    mode_coverage,
    prdc,
    prdc_dedup,
    register_metric,
)


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    """Small matrices: one thread is faster than two contending ones on the shared 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

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
    p = bootstrap_ci(lambda r, f: prdc_dedup(r, f), real, fake, n_boot=20, seed=0)
    point = prdc(real, fake)
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
    assert d["a"]["ci_low"] == 0.0 and d["b"]["ci_high"] == -raw["ci_low"]
