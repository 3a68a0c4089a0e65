"""Frechet distance and Gaussian statistics, against scipy's sqrtm route (clean-fid) and analytic cases."""

import math
import warnings

import numpy as np
import pytest
import torch
from cleanfid.fid import frechet_distance as cleanfid_fd

from genbench.errors import InvalidInputError
from genbench.metrics import MetricWarning, StreamingGaussianStats, frechet_distance, gaussian_stats


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _spd(d, seed, n=None):
    """A random SPD covariance: the sample covariance of n > d correlated Gaussian rows."""
    rng = np.random.default_rng(seed)
    n = n or 2 * d + 10
    a = rng.standard_normal((d, d)) / math.sqrt(d)
    x = rng.standard_normal((n, d)) @ a + rng.standard_normal(d)
    return x.mean(0), np.cov(x, rowvar=False)


@pytest.mark.parametrize("d", [64, 256])
def test_fd_matches_scipy_sqrtm_route(d):
    mu1, s1 = _spd(d, 1)
    mu2, s2 = _spd(d, 2)
    ref = cleanfid_fd(mu1, s1, mu2, s2)
    ours = frechet_distance(mu1, s1, mu2, s2)
    assert abs(ours - ref) / abs(ref) <= 1e-6
    # tensors in, same value; argument order symmetric
    assert frechet_distance(torch.from_numpy(mu2), torch.from_numpy(s2), torch.from_numpy(mu1), torch.from_numpy(s1)) == pytest.approx(ref, rel=1e-6)


@pytest.mark.slow
def test_fd_matches_scipy_sqrtm_route_2048():
    mu1, s1 = _spd(2048, 3, n=6000)
    mu2, s2 = _spd(2048, 4, n=6000)
    ref = cleanfid_fd(mu1, s1, mu2, s2)
    assert abs(frechet_distance(mu1, s1, mu2, s2) - ref) / abs(ref) <= 1e-6


def _rotation(d, seed):
    q, _ = torch.linalg.qr(torch.randn(d, d, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)))
    return q


def test_fd_analytic_commuting_covariances():
    # S1 = Q diag(a) Q^T, S2 = Q diag(b) Q^T commute: FD = |mu1-mu2|^2 + sum (sqrt a - sqrt b)^2
    d = 50
    g = torch.Generator().manual_seed(0)
    a = torch.rand(d, generator=g, dtype=torch.float64) * 3 + 0.1
    b = torch.rand(d, generator=g, dtype=torch.float64) * 3 + 0.1
    mu1 = torch.randn(d, generator=g, dtype=torch.float64)
    mu2 = torch.randn(d, generator=g, dtype=torch.float64)
    q = _rotation(d, 1)
    s1, s2 = q @ torch.diag(a) @ q.T, q @ torch.diag(b) @ q.T
    expected = float(((mu1 - mu2) ** 2).sum() + ((a.sqrt() - b.sqrt()) ** 2).sum())
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-10)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("which", ["first", "both"])
def test_fd_singular_covariances_warn_and_stay_exact(which):
    d = 40
    g = torch.Generator().manual_seed(5)
    a = torch.rand(d, generator=g, dtype=torch.float64) + 0.5
    b = torch.rand(d, generator=g, dtype=torch.float64) + 0.5
    a[::3] = 0.0  # rank-deficient
    if which == "both":
        b[1::4] = 0.0
    q = _rotation(d, 2)
    s1, s2 = q @ torch.diag(a) @ q.T, q @ torch.diag(b) @ q.T
    mu = torch.zeros(d, dtype=torch.float64)
    expected = float(((a.sqrt() - b.sqrt()) ** 2).sum())
    with pytest.warns(MetricWarning):
        v = frechet_distance(mu, s1, mu, s2)
    assert math.isfinite(v)
    assert v == pytest.approx(expected, rel=1e-6, abs=1e-6)


def test_fd_from_too_few_samples_is_finite_with_warning():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(30, 64, generator=g, dtype=torch.float64), torch.randn(30, 64, generator=g, dtype=torch.float64) + 0.5
    with pytest.warns(MetricWarning, match="singular"):
        mu1, s1 = gaussian_stats(x)
    with pytest.warns(MetricWarning):
        mu2, s2 = gaussian_stats(y)
        v = frechet_distance(mu1, s1, mu2, s2)
    assert math.isfinite(v) and v > 0


def test_fd_rejects_bad_input():
    with pytest.raises(InvalidInputError, match="shape mismatch"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    bad = np.eye(3)
    bad[0, 0] = np.nan
    with pytest.raises(InvalidInputError, match="NaN"):
        frechet_distance(np.zeros(3), bad, np.zeros(3), np.eye(3))


def test_gaussian_stats_match_numpy_and_streaming_is_batch_size_independent():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1000, 16, generator=g, dtype=torch.float64) * 3 + 100.0  # large offset: cancellation check
    mu, s = gaussian_stats(x)
    np.testing.assert_allclose(mu.numpy(), x.numpy().mean(0), rtol=1e-13)
    np.testing.assert_allclose(s.numpy(), np.cov(x.numpy(), rowvar=False), rtol=1e-10, atol=1e-12)
    for bs in (1, 7, 128, 1000):
        st = StreamingGaussianStats()
        for i in range(0, len(x), bs):
            st.update(x[i : i + bs])
        assert st.n == 1000
        torch.testing.assert_close(st.mu, mu, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(st.sigma, s, rtol=1e-9, atol=1e-11)
    # same inputs -> identical numbers
    assert torch.equal(gaussian_stats(x)[1], s)


def test_gaussian_stats_no_warning_when_enough_samples():
    x = torch.randn(100, 5, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MetricWarning)
        gaussian_stats(x)
    with pytest.raises(InvalidInputError):
        gaussian_stats(torch.randn(1, 5))
    with pytest.raises(InvalidInputError, match="dimension"):
        StreamingGaussianStats().update(torch.randn(4, 5)).update(torch.randn(4, 6))


def test_eigen_solver_failure_on_a_device_is_redone_on_the_cpu(monkeypatch):
    """cuSOLVER failed to converge on singular covariances (few degenerate samples, an H100); the decomposition
    is then redone on the CPU. Simulated here: the 'device' solver fails once, the retry must give the CPU value."""
    from genbench.metrics import _util

    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((20, 40)), rng.standard_normal((20, 40)) * 1.3  # N < D: both singular
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MetricWarning)
        want = frechet_distance(*gaussian_stats(a), *gaussian_stats(b))
        real = {"eigh": torch.linalg.eigh, "eigvalsh": torch.linalg.eigvalsh}
        calls = []

        def failing_once(name):
            def fn(x):
                calls.append(name)
                if len(calls) == 1:
                    raise torch.linalg.LinAlgError("linalg.eigh: The algorithm failed to converge")
                return real[name](x)
            return fn

        monkeypatch.setattr(torch.linalg, "eigh", failing_once("eigh"))
        monkeypatch.setattr(torch.linalg, "eigvalsh", failing_once("eigvalsh"))
        monkeypatch.setattr(_util, "_can_retry_on_cpu", lambda t: True)
        got = frechet_distance(*gaussian_stats(a), *gaussian_stats(b))
        assert calls[:2] == ["eigh", "eigh"] and got == pytest.approx(want, rel=1e-12)
        calls.clear()  # on the CPU itself there is nothing to fall back to: the error is raised
        monkeypatch.setattr(_util, "_can_retry_on_cpu", lambda t: False)
        with pytest.raises(torch.linalg.LinAlgError):
            frechet_distance(*gaussian_stats(a), *gaussian_stats(b))


def _warnings_of(fn, *args):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always", MetricWarning)
        fn(*args)
    return [str(x.message) for x in w if issubclass(x.category, MetricWarning)]


def test_fd_warnings_fire_exactly_at_their_documented_thresholds():
    """Near-singular: smallest Cholesky pivot^2 < 1e-10 x the largest variance (pivot^2 = 1e-9 is near-singular
    next to a variance of 100 but not next to one of 1, nor is 1e-9 x a variance of 1). Negative eigenvalue of
    the product: below -1e-6 x the largest |eigenvalue| (rounding-size negatives are quiet). Both covariances
    singular: its own warning."""
    from genbench.metrics import trace_sqrt_product

    eye = torch.eye(2, dtype=torch.float64)

    def corr(v1, v2, one_minus_rho2):
        c = math.sqrt(v1 * v2 * (1 - one_minus_rho2))
        return torch.tensor([[v1, c], [c, v2]], dtype=torch.float64)

    assert _warnings_of(trace_sqrt_product, corr(1.0, 1.0, 0.25), eye) == []  # well conditioned
    assert _warnings_of(trace_sqrt_product, corr(1.0, 1.0, 1e-9), eye) == []  # pivot^2 1e-9 of variance 1
    near = _warnings_of(trace_sqrt_product, corr(100.0, 1.0, 1e-9), eye)  # pivot^2 1e-9 of variance 100
    assert len(near) == 1 and "sigma1 is near-singular" in near[0]

    def diag(*v):
        return torch.diag(torch.tensor(v, dtype=torch.float64))

    for ev in ((100.0, -1e-5), (1e-4, -1e-11), (1.0, -1e-9)):  # -1e-7 x the largest: rounding, quiet
        assert _warnings_of(trace_sqrt_product, eye, diag(*ev)) == [], ev
    for ev in ((4.0, -1.0), (1e-4, -1e-9)):  # -1e-5 x the largest and more: warned
        w = _warnings_of(trace_sqrt_product, eye, diag(*ev))
        assert len(w) == 1 and "clearly negative eigenvalue" in w[0], ev
    both = _warnings_of(trace_sqrt_product, diag(1.0, 0.0), diag(0.0, 1.0))
    assert any("both covariances are singular" in x for x in both)
    assert any("sigma1 is singular" in x for x in both)


def test_gaussian_stats_edges():
    """N == D is singular (warned), N = D + 1 is not; two rows are enough for a covariance; an empty batch is a
    no-op in the streaming accumulator."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 5, generator=g, dtype=torch.float64)
    assert len(_warnings_of(gaussian_stats, x)) == 0
    w = _warnings_of(gaussian_stats, x[:5])
    assert len(w) == 1 and "singular" in w[0]
    st = StreamingGaussianStats().update(x[:5])
    assert len(_warnings_of(lambda: st.sigma)) == 1
    mu, s = gaussian_stats(torch.tensor([[1.0], [3.0]], dtype=torch.float64))
    assert float(mu) == 2.0 and float(s) == 2.0
    two = StreamingGaussianStats().update(torch.tensor([[1.0], [3.0]], dtype=torch.float64))
    assert float(two.mu) == 2.0 and float(two.sigma) == 2.0
    one = StreamingGaussianStats().update(torch.tensor([[1.0]], dtype=torch.float64))
    for attr in ("mu", "sigma"):
        with pytest.raises(InvalidInputError, match="at least 2"):
            getattr(one, attr)
    empty = torch.empty(0, 5, dtype=torch.float64)
    st = StreamingGaussianStats().update(empty).update(x).update(empty)  # first or later
    assert st.n == 6
    torch.testing.assert_close(st.sigma, gaussian_stats(x)[1], rtol=1e-12, atol=1e-12)


def test_fd_warning_thresholds_are_strict_inequalities():
    """At exactly the documented thresholds nothing is warned (both are strict `<`), just past them it is:
    sigma1 = diag(s, 2^-34) with 1e-10 * s == 2^-34 in float64 (its Cholesky pivots are sqrt(s) and 2^-17, so
    pivot^2 / largest variance is the threshold exactly); sigma1 sigma2 = diag(1, -1e-6) has its negative
    eigenvalue at exactly -1e-6 x the largest."""
    from genbench.metrics import trace_sqrt_product

    eye = torch.eye(2, dtype=torch.float64)
    t = 2.0 ** -34
    s = t / 1e-10
    assert 1e-10 * s == t

    def diag(*v):
        return torch.diag(torch.tensor(v, dtype=torch.float64))

    assert _warnings_of(trace_sqrt_product, diag(s, t), eye) == []
    near = _warnings_of(trace_sqrt_product, diag(s, t * (1 - 1e-9)), eye)
    assert len(near) == 1 and "sigma1 is near-singular" in near[0]
    assert _warnings_of(trace_sqrt_product, eye, diag(1.0, -1e-6)) == []
    neg = _warnings_of(trace_sqrt_product, eye, diag(1.0, -1e-6 * (1 + 1e-9)))
    assert len(neg) == 1 and "clearly negative eigenvalue" in neg[0]
