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


def _two_row_fd(x: np.ndarray, y: np.ndarray) -> float:
    """FD of two rows per set, analytically: with a = x0 - x1 and b = y0 - y1, S1 = a a^T / 2 and S2 = b b^T / 2,
    so S1 S2 has the one nonzero eigenvalue (a.b)^2 / 4 and FD = |m1 - m2|^2 + |a|^2 / 2 + |b|^2 / 2 - |a.b|."""
    a, b = x[0] - x[1], y[0] - y[1]
    dm = x.mean(0) - y.mean(0)
    return float(dm @ dm + a @ a / 2 + b @ b / 2 - abs(a @ b))


def test_two_rows_per_set_are_enough_and_small_fds_are_not_clamped():
    """Two rows per set is the smallest valid input of the features route; an FD below 1 comes back as it is
    (the clamp is at 0), from the full sets and from a replicate (against the 50-digit reference)."""
    x = np.array([[0.1, 0.2, 0.0], [0.3, -0.1, 0.2]])
    y = np.array([[0.2, 0.1, 0.1], [0.0, 0.3, -0.1]])
    ref = _two_row_fd(x, y)
    assert 0.01 < ref < 0.5
    assert ref == pytest.approx(float(_mp_fd(x, y)), rel=1e-12)
    assert CrossGramFD(x, y).value() == pytest.approx(ref, rel=1e-12)
    with pytest.warns(MetricWarning, match="FD from N=2 and N=2 samples in dimension 3"):
        assert frechet_distance_features(x, y) == pytest.approx(ref, rel=1e-12)
    x3 = np.array([[0.1, 0.2], [0.3, -0.1], [0.0, 0.05]])
    y3 = np.array([[0.2, 0.1], [0.0, 0.3], [0.15, 0.2]])
    ir, i_f = np.array([0, 0, 2]), np.array([1, 2, 2])
    rep = float(_mp_fd(x3[ir], y3[i_f]))
    assert 0.01 < rep < 1.0
    assert CrossGramFD(x3, y3).resampled(torch.from_numpy(ir), torch.from_numpy(i_f)) == pytest.approx(rep, rel=1e-10)


def test_default_route_is_fd_route_of_the_sizes_and_the_small_n_warning_names_them(monkeypatch):
    """route=None asks fd_route(n_real, n_fake, d); the features route warns when the smaller set has N <= D
    rows (N = D included: rank N - 1 < D), naming both sizes and the dimension; N = D + 1 is quiet."""
    import importlib

    fr = importlib.import_module("genbench.metrics.frechet")
    asked = []
    orig = fr.fd_route
    monkeypatch.setattr(fr, "fd_route", lambda *a: asked.append(a) or orig(*a))
    x, y = _feats(9, 5, 16), _feats(9, 5, 17, shift=0.2)
    for n1, msg in ((4, "FD from N=4 and N=9 samples in dimension 5"), (5, "FD from N=5 and N=9 samples in dimension 5")):
        w = _warnings(frechet_distance_features, x[:n1], y)
        assert len(w) == 1 and msg in w[0], w
        assert asked[-1] == (n1, 9, 5) and orig(n1, 9, 5) == "features"
    w = _warnings(frechet_distance_features, x[:9], y[:4])
    assert len(w) == 1 and "FD from N=9 and N=4 samples in dimension 5" in w[0] and asked[-1] == (9, 4, 5)
    x6 = _feats(6, 5, 18)
    assert _warnings(frechet_distance_features, x6, y) == [] and asked[-1] == (6, 9, 5)  # N = D + 1: quiet
    # the default route gives the value of the route it names
    assert frechet_distance_features(x6, y) == frechet_distance_features(x6, y, route=orig(6, 9, 5))


def _warnings(fn, *args):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always", MetricWarning)
        fn(*args)
    return [str(x.message) for x in w if issubclass(x.category, MetricWarning)]


def test_fd_route_at_its_exact_bounds():
    """n1 n2 = MAX_CROSS_ENTRIES (2^25 float64 entries: 256 MiB) and cost = 2 d^3 exactly are still the features
    route (both bounds inclusive); one more row past the entry bound is the statistics route."""
    assert MAX_CROSS_ENTRIES * 8 == 256 * 2 ** 20
    assert 4096 * 8192 == MAX_CROSS_ENTRIES and 4096 * 8192 * 4096 == 2 * 4096 ** 3
    assert fd_route(4096, 8192, 4096) == "features"
    assert fd_route(4097, 8192, 4097) == "statistics"  # 1 row more: n1 n2 > 2^25
    assert fd_route(5792, 5792, 6000) == "features"  # 33,547,264 entries
    assert fd_route(5793, 5793, 6000) == "statistics"  # 33,558,849 > 2^25 = 33,554,432
