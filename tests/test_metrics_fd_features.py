"""FD from the features (issue #21): the exact cross-Gram route against a 50-digit mpmath computation, the analytic
FD(X, X + c) = |c|^2, the statistics route at N > D, and bootstrap replicates by reweighting against the
replicates computed from the resampled rows."""

import math
import warnings

import mpmath
import numpy as np
import pytest
import torch

from genbench.errors import InvalidInputError
from genbench.metrics import (
    CrossGramFD,
    EvalContext,
    MetricWarning,
    bootstrap_ci,
    compute_metrics,
    fd_route,
    frechet_distance,
    frechet_distance_features,
    gaussian_stats,
)
from genbench.metrics.frechet import MAX_CROSS_ENTRIES


def _feats(n, d, seed, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=g, dtype=torch.float64) / math.sqrt(d)
    return torch.randn(n, d, generator=g, dtype=torch.float64) @ a + shift


def _mp_fd(x: np.ndarray, y: np.ndarray, dps: int = 50) -> mpmath.mpf:
    """FD by the definition, in `dps`-digit arithmetic: means and unbiased covariances of the rows, then
    tr((S1 S2)^(1/2)) = sum sqrt(eig(S1^(1/2) S2 S1^(1/2))) with mpmath's symmetric eigensolver. The zero
    eigenvalues of the singular covariances come out ~1e-50, their square roots ~1e-25: negligible."""
    with mpmath.workdps(dps):
        def stats(a):
            n, d = a.shape
            rows = [[mpmath.mpf(float(v)) for v in r] for r in a]
            mu = [mpmath.fsum(r[j] for r in rows) / n for j in range(d)]
            s = mpmath.matrix(d, d)
            for i in range(d):
                for j in range(i, d):
                    s[i, j] = s[j, i] = mpmath.fsum((r[i] - mu[i]) * (r[j] - mu[j]) for r in rows) / (n - 1)
            return mu, s

        (m1, s1), (m2, s2) = stats(x), stats(y)
        d = len(m1)
        e, q = mpmath.eigsy(s1)
        h = q * mpmath.diag([mpmath.sqrt(max(v, 0)) for v in e]) * q.T
        ev = mpmath.eigsy(h * s2 * h, eigvals_only=True)
        tr_sqrt = mpmath.fsum(mpmath.sqrt(max(v, 0)) for v in ev)
        return (mpmath.fsum((m1[j] - m2[j]) ** 2 for j in range(d)) + sum(s1[j, j] for j in range(d))
                + sum(s2[j, j] for j in range(d)) - 2 * tr_sqrt)


@pytest.mark.parametrize("n1,n2,d", [(7, 5, 12), (9, 9, 9), (14, 6, 5)])
def test_features_route_equals_50_digit_reference(n1, n2, d):
    """N < D (both covariances singular), N = D, and N > D for one set: exact to 1e-12 relative."""
    x, y = _feats(n1, d, 1).abs(), _feats(n2, d, 2, shift=0.3).abs()
    ref = float(_mp_fd(x.numpy(), y.numpy()))
    assert CrossGramFD(x, y).value() == pytest.approx(ref, rel=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MetricWarning)
        assert frechet_distance_features(x, y, route="features") == pytest.approx(ref, rel=1e-12)


def test_features_route_is_exact_where_the_statistics_route_is_not():
    """FD(X, X + c) = |c|^2 exactly (same covariance, means apart by c). At N = 100 < D = 512 the statistics
    route is off by ~1e-7 of tr(S) (the square roots of ~400 rounding-noise eigenvalues); the features route by
    rounding only. (At N = 300, D = 2048 the same is 1-2e-6 relative: benchmarks/bench_metrics.py.)"""
    x = _feats(100, 512, 3).abs()
    c = torch.full((512,), 0.05, dtype=torch.float64)
    exact = float(c.dot(c))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MetricWarning)
        s = gaussian_stats(x)
        scale = float(s[1].trace())
        old = frechet_distance(*s, *gaussian_stats(x + c))
    new = CrossGramFD(x, x + c).value()
    assert abs(new - exact) <= 1e-12 * scale
    assert abs(old - exact) > 1e-9 * scale  # the old route's error this test guards against (found ~7e-8)


def test_features_route_agrees_with_statistics_route_at_n_above_d():
    x, y = _feats(300, 40, 4), _feats(250, 40, 5, shift=0.2)
    ref = frechet_distance(*gaussian_stats(x), *gaussian_stats(y))
    assert CrossGramFD(x, y).value() == pytest.approx(ref, rel=1e-10)
    assert frechet_distance_features(x, y, route="statistics") == ref


def test_resampled_replicate_equals_fd_of_the_resampled_rows():
    """Reweighting distinct rows by their counts gives the FD of the resampled sets (duplicates included)."""
    x, y = _feats(60, 80, 6).abs(), _feats(45, 80, 7, shift=0.1).abs()
    cg = CrossGramFD(x, y)
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        ir, i_f = torch.randint(0, 60, (60,), generator=g), torch.randint(0, 45, (45,), generator=g)
        direct = CrossGramFD(x[ir], y[i_f]).value()
        assert cg.resampled(ir, i_f) == pytest.approx(direct, rel=1e-11)
    # N > D: the replicate equals the statistics route on the resampled rows
    x, y = _feats(120, 10, 8), _feats(100, 10, 9, shift=0.2)
    cg = CrossGramFD(x, y)
    ir, i_f = torch.randint(0, 120, (120,), generator=g), torch.randint(0, 100, (100,), generator=g)
    assert cg.resampled(ir, i_f) == pytest.approx(frechet_distance(*gaussian_stats(x[ir]), *gaussian_stats(y[i_f])), rel=1e-10)


def test_bootstrap_with_indexed_replicates_gives_the_same_interval():
    x, y = _feats(50, 64, 10).abs(), _feats(40, 64, 11, shift=0.1).abs()
    cg = CrossGramFD(x, y)

    def fn(r, f):
        return CrossGramFD(r, f).value()

    slow = bootstrap_ci(fn, x, y, n_boot=30, seed=3)
    fast = bootstrap_ci(fn, x, y, n_boot=30, seed=3, indexed=cg.resampled)
    for k in ("ci_low", "ci_high", "std", "bias"):
        assert fast[k] == pytest.approx(slow[k], rel=1e-9, abs=1e-12)
    assert fast["ci_low"] < fn(x, y) < fast["ci_high"]


def test_fd_route_thresholds():
    assert fd_route(300, 300, 2048) == "features"  # singular covariances
    assert fd_route(2048, 2048, 2048) == "features"  # N = D: rank N - 1 < D
    assert fd_route(2100, 2100, 2048) == "statistics"  # both full rank, the SVD dearer
    assert fd_route(10000, 300, 2048) == "features"
    assert fd_route(6000, 2000, 2048) == "statistics"  # singular fake covariance, but the SVD > 2 d^3
    assert fd_route(2000, 2000, 2) == "statistics"
    assert fd_route(100, 100, 200) == "features"
    assert fd_route(500, 500, 1000) == "features"
    big = int(math.isqrt(MAX_CROSS_ENTRIES)) + 1
    assert fd_route(big, big, 10 ** 6) == "statistics"  # the n1 x n2 matrix would not fit


def test_fd_metric_uses_the_exact_route_and_its_fast_bootstrap():
    x, y = _feats(40, 96, 12).abs(), _feats(30, 96, 13, shift=0.2).abs()
    ctx = EvalContext(real_features=x, fake_features=y, n_bootstrap=20, seed=1)
    with pytest.warns(MetricWarning, match="computed exactly from the features"):
        res = {r.name: r for r in compute_metrics(["fd"], ctx)}
    fd = res["fd"]
    assert fd.value == CrossGramFD(x, y).value()
    assert fd.extra["route"].startswith("features")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MetricWarning)
        ref = bootstrap_ci(lambda r, f: frechet_distance_features(r, f, route="features"), x, y, n_boot=20, seed=1,
                           bounds=(0.0, None))
    assert fd.ci_low == pytest.approx(ref["ci_low"], rel=1e-9) and fd.ci_high == pytest.approx(ref["ci_high"], rel=1e-9)
    # N > D: the statistics route, as before
    x, y = _feats(200, 8, 14), _feats(200, 8, 15, shift=0.1)
    fd = compute_metrics(["fd"], EvalContext(real_features=x, fake_features=y))[0]
    assert fd.extra["route"].startswith("statistics")
    assert fd.value == frechet_distance(*gaussian_stats(x), *gaussian_stats(y))


def test_features_fd_bad_input():
    with pytest.raises(InvalidInputError, match="dimension"):
        CrossGramFD(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(InvalidInputError, match="row"):
        CrossGramFD(np.zeros((1, 3)), np.zeros((5, 3)))
    with pytest.raises(InvalidInputError, match="route"):
        frechet_distance_features(np.ones((5, 3)), np.ones((5, 3)), route="svd")


def test_svd_failure_on_a_device_is_redone_on_the_cpu(monkeypatch):
    """As the eigensolvers (test_metrics_fd): a device SVD that fails to converge is redone on the CPU."""
    from genbench.metrics import _util

    x, y = _feats(12, 30, 16), _feats(10, 30, 17, shift=0.2)
    want = CrossGramFD(x, y).value()
    real, calls = torch.linalg.svdvals, []

    def failing_once(m):
        calls.append(1)
        if len(calls) == 1:
            raise torch.linalg.LinAlgError("linalg.svd: The algorithm failed to converge")
        return real(m)

    monkeypatch.setattr(torch.linalg, "svdvals", failing_once)
    monkeypatch.setattr(_util, "_can_retry_on_cpu", lambda t: True)
    assert CrossGramFD(x, y).value() == want and len(calls) == 2
    calls.clear()
    monkeypatch.setattr(_util, "_can_retry_on_cpu", lambda t: False)
    with pytest.raises(torch.linalg.LinAlgError):
        CrossGramFD(x, y).value()
