"""FD∞ (genbench/metrics/fd_infinity.py) against the truth on Gaussians and against the reference code's procedure
(github.com/mchong6/FID_IS_infinity: scipy sqrtm FD per subset, sklearn LinearRegression on 1/N, read at 0)."""

import warnings

import numpy as np
import pytest
import scipy.linalg
import torch
from sklearn.linear_model import LinearRegression

from genbench.errors import InvalidInputError
from genbench.metrics import METRICS, EvalContext, MetricWarning, compute_metrics, fd_infinity
from genbench.metrics.fd_infinity import fit_intercept, subset_sizes


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


D = 32
VAR = torch.linspace(0.5, 2.0, D, dtype=torch.float64)  # fake ~ N(0.1, diag(VAR)), real ~ N(0, I)
SHIFT = torch.full((D,), 0.1, dtype=torch.float64)
TRUTH = float((SHIFT ** 2).sum() + (1 + VAR - 2 * VAR.sqrt()).sum())  # FD of the two Gaussians, exactly


def _gauss(seed, n=1000, n_real=None):
    g = torch.Generator().manual_seed(seed)
    real = torch.randn(n_real or n, D, generator=g, dtype=torch.float64)
    fake = torch.randn(n, D, generator=g, dtype=torch.float64) * VAR.sqrt() + SHIFT
    return real, fake


def _fd_n(real, fake):
    return _ref_fd(real.numpy().mean(0), np.cov(real.numpy(), rowvar=False), fake.numpy().mean(0),
                   np.cov(fake.numpy(), rowvar=False))


def _ref_fd(mu1, s1, mu2, s2):
    """The reference code's FD: scipy sqrtm of the product, real part."""
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean.real))


def test_closer_to_the_truth_than_fd_at_n():
    err_inf, err_n = [], []
    for seed in range(8):
        real, fake = _gauss(seed)
        err_inf.append(fd_infinity(real, fake, seed=seed)["fd_inf"] - TRUTH)
        err_n.append(_fd_n(real, fake) - TRUTH)
    err_inf, err_n = np.array(err_inf), np.array(err_n)
    assert err_n.min() > 0.4  # FD at N = 1000 is biased upward (~0.68 here)
    assert np.abs(err_inf).mean() < 0.25 * np.abs(err_n).mean()
    assert abs(err_inf.mean()) < 0.2 * err_n.mean()  # the bias, not just the spread, is gone


def test_paper_scale_with_exact_real_statistics():
    """scale="fake" (the paper): real statistics fixed; with the true ones, only the fake side's bias exists and
    FD∞ removes it."""
    exact = (torch.zeros(D, dtype=torch.float64), torch.eye(D, dtype=torch.float64))
    err_inf, err_n = [], []
    for seed in range(8):
        _, fake = _gauss(seed)
        r = fd_infinity(fake, fake, scale="fake", real_stats=exact, seed=seed)  # real rows unused with real_stats
        err_inf.append(r["fd_inf"] - TRUTH)
        err_n.append(r["fd_n"] - TRUTH)
    assert np.mean(err_n) > 0.2
    assert np.abs(err_inf).mean() < 0.3 * np.abs(err_n).mean()


def _replay(real, fake, sizes, real_sizes, draws, seed, scale):
    """The reference procedure on the same subsets: sqrtm FD per subset, sklearn LinearRegression, predict at 0."""
    g = torch.Generator().manual_seed(seed)
    r_np, f_np = real.numpy(), fake.numpy()
    mu_all, s_all = r_np.mean(0), np.cov(r_np, rowvar=False)
    xs, ys = [], []
    for s, sr in zip(sizes, real_sizes):
        for _ in range(draws):
            fi = torch.randperm(len(fake), generator=g)[:s].numpy()
            act = f_np[fi]
            if scale == "both":
                ri = torch.randperm(len(real), generator=g)[:sr].numpy()
                mu_r, s_r = r_np[ri].mean(0), np.cov(r_np[ri], rowvar=False)
            else:
                mu_r, s_r = mu_all, s_all
            ys.append(_ref_fd(act.mean(0), np.cov(act, rowvar=False), mu_r, s_r))
            xs.append(s)
    reg = LinearRegression().fit(1 / np.array(xs, dtype=np.float64).reshape(-1, 1), np.array(ys).reshape(-1, 1))
    return float(reg.predict(np.array([[0.0]]))[0, 0]), ys


@pytest.mark.parametrize("scale,draws,n_real", [("both", 1, 600), ("fake", 1, 600), ("both", 3, 500)])
def test_equals_the_reference_fit_on_the_same_points(scale, draws, n_real):
    real, fake = _gauss(11, n=600, n_real=n_real)
    r = fd_infinity(real, fake, scale=scale, draws=draws, seed=5)
    want, ys = _replay(real, fake, r["sizes"], r["real_sizes"], draws, 5, scale)
    np.testing.assert_allclose([v for row in r["fds"] for v in row], ys, rtol=1e-9)
    assert r["fd_inf"] == pytest.approx(want, rel=1e-9, abs=1e-12)
    assert r["sizes"][-1] == 600 and len(r["sizes"]) == 15


def test_sizes_are_the_reference_linspace():
    assert subset_sizes(50000) == np.linspace(5000, 50000, 15).astype("int32").tolist()
    assert subset_sizes(1000) == np.linspace(100, 1000, 15).astype("int32").tolist()
    assert subset_sizes(10, 15, 0.1) == list(range(2, 11))  # duplicates removed


def test_fit_intercept_against_sklearn_and_an_exact_line():
    rng = np.random.default_rng(0)
    n = rng.integers(50, 5000, size=20)
    y = rng.normal(size=20)
    reg = LinearRegression().fit(1 / n.reshape(-1, 1), y)
    a, b = fit_intercept(n, y)
    assert a == pytest.approx(float(reg.intercept_), rel=1e-12) and b == pytest.approx(float(reg.coef_[0]), rel=1e-12)
    assert fit_intercept([100, 200, 400], [3 + 50 / 100, 3 + 50 / 200, 3 + 50 / 400]) == pytest.approx((3.0, 50.0))


def test_seeded():
    real, fake = _gauss(2, n=400)
    a = fd_infinity(real, fake, seed=1)
    assert a == fd_infinity(real, fake, seed=1)
    assert a["fd_inf"] != fd_infinity(real, fake, seed=2)["fd_inf"]


def test_too_few_rows_and_bad_settings():
    real, fake = _gauss(0, n=40)
    with pytest.raises(InvalidInputError, match=r"at least \d+ fake feature rows"):
        fd_infinity(real[:3], fake[:3])
    with pytest.raises(InvalidInputError, match="scale"):
        fd_infinity(real, fake, scale="real")
    with pytest.raises(InvalidInputError, match="points >= 3"):
        fd_infinity(real, fake, points=2)
    with pytest.raises(InvalidInputError, match="min_fraction"):
        fd_infinity(real, fake, min_fraction=1.5)
    with pytest.raises(InvalidInputError, match="dimension"):
        fd_infinity(real, fake[:, :5])
    with pytest.warns(MetricWarning, match=r"smallest subset has 4 rows for 32-dimensional"):
        fd_infinity(real, fake)  # 40 rows: smallest subset ceil(0.1 * 40) = 4 <= 32 dims


def test_registered_metric_states_its_protocol_and_runs_in_a_suite():
    real, fake = _gauss(3, n=500)
    ctx = EvalContext(real_features=real, fake_features=fake, feature_protocol={"id": "identity"}, seed=4)
    (res,) = compute_metrics(["fd_inf"], ctx)
    assert res.name == "fd_inf" and not res.higher_is_better
    assert res.value == fd_infinity(real, fake, seed=4)["fd_inf"]
    p = res.protocol
    assert p["sizes"] == subset_sizes(500) and p["draws"] == 1 and "least squares" in p["fit"]
    assert p["n_real"] == 500 and p["features"] == "identity"
    fd = compute_metrics(["fd"], ctx)[0].value
    assert res.extra["fd_at_n"] == pytest.approx(fd, rel=1e-9)  # the largest size is all rows: the fd metric
    assert "fd_inf" in METRICS.names()
    ctx2 = EvalContext(real_features=real, fake_features=fake, seed=4, fd_inf_scale="fake", fd_inf_points=5)
    (r2,) = compute_metrics(["fd_inf"], ctx2)
    assert len(r2.protocol["sizes"]) == 5 and "the paper" in r2.protocol["scale"]


def test_suite_accepts_fd_inf_and_its_options(tmp_path):
    from genbench.suite import SuiteError, load_suite

    text = """
name = "t"
[datasets.ring8]
features = "identity"
n_samples = 500
metrics = ["fd", "fd_inf"]
options = { fd_inf_points = 10, fd_inf_scale = "fake", fd_inf_min_fraction = 0.2, fd_inf_draws = 2 }
[models.gmm]
"""
    p = tmp_path / "t.toml"
    p.write_text(text)
    s = load_suite(str(p))
    assert s.datasets[0].metrics == ["fd", "fd_inf"] and s.datasets[0].options["fd_inf_draws"] == 2
    p.write_text(text.replace("fd_inf_draws = 2", "fd_inf_draws = 0.5"))
    with pytest.raises(SuiteError, match="fd_inf_draws"):
        load_suite(str(p))


# ------------------------------------------------------------------ the boundaries of the checks (issue 24, mutation)
def test_minimum_rows_is_exact_and_settings_at_their_bounds():
    real, fake = _gauss(0, n=40)
    # 15 points from 0.1 N to N: 3 rows give sizes {2, 3}, 4 rows give {2, 3, 4}, the minimum
    for n in (2, 3):
        with pytest.raises(InvalidInputError, match="at least 4 fake feature rows"):
            fd_infinity(real[:3], fake[:n])
    with warnings.catch_warnings():  # refused before any subset is planned or warned about
        warnings.simplefilter("error")
        with pytest.raises(InvalidInputError, match="real features has dimension 32 but fake features has 5"):
            fd_infinity(real, fake[:, :5])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MetricWarning)
        assert fd_infinity(real[:4], fake[:4])["sizes"] == [2, 3, 4]
        assert len(fd_infinity(real, fake, points=3)["sizes"]) == 3  # points = 3 is enough
    for bad, what in ((dict(points=3.5), "points"), (dict(draws=0), "draws"), (dict(draws=1.5), "draws"),
                      (dict(min_fraction=0.0), "min_fraction"), (dict(min_fraction=1.0), "min_fraction")):
        with pytest.raises(InvalidInputError, match=what):
            fd_infinity(real, fake, **bad)
    with pytest.raises(InvalidInputError, match="at least 2"):
        fd_infinity(real[:1], fake, scale="fake")  # scale "fake" uses all real rows: one is too few


def test_singular_warning_at_exactly_the_dimension():
    real, fake = _gauss(1, n=400)
    d = 8
    r, f = real[:, :d], fake[:, :d]
    with warnings.catch_warnings():  # smallest subset 90 > 8 rows: no warning at all (each subset's own is silenced)
        warnings.simplefilter("error")
        fd_infinity(r, f[:90], min_fraction=0.1, points=3, scale="fake")
    with pytest.warns(MetricWarning, match="smallest subset has 8 rows for 8-dimensional"):
        fd_infinity(r, f[:80], min_fraction=0.1, points=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fd_infinity(r[:90], f[:90], min_fraction=0.1, points=3)  # 9 fake rows, 9 real rows: 9 > 8
    # scale "both": the smaller of the two smallest subsets counts (real rows fewer than fake rows)
    with pytest.warns(MetricWarning, match="smallest subset has 8 rows"):
        fd_infinity(r[:80], f[:90], min_fraction=0.1, points=3)


def test_declaration_lower_is_better_quality():
    from genbench.metrics import registry as reg

    spec, out = reg.get_metric("fd_inf"), reg.output("fd_inf")
    assert (spec.higher_is_better, spec.modalities, spec.requires) == (False, (), ("real_features", "fake_features"))
    assert (out.higher_is_better, out.category, out.label) == (False, "quality", "FD∞")
    q = reg.in_category("quality")  # rank 1: after fd (0), before kid (2)
    assert q.index("fd") < q.index("fd_inf") < q.index("kid")
    d = reg.display_order()  # order 45: after fd (40), before the Inception Score (48)
    assert d.index("fd") < d.index("fd_inf") < d.index("inception_score")


def test_fit_intercept_bounds_and_defaults():
    assert fit_intercept([100, 400], [3.5, 3.125]) == pytest.approx((3.0, 50.0), rel=1e-12)  # two sizes: a line
    with pytest.raises(InvalidInputError, match=">= 2"):
        fit_intercept([100], [3.0])
    with pytest.raises(InvalidInputError, match="as many values"):
        fit_intercept([100, 200, 300], [3.0, 2.0])
    with pytest.raises(InvalidInputError, match="two distinct sizes"):
        fit_intercept([100, 100], [3.0, 2.0])
    real, fake = _gauss(4, n=400)
    assert fd_infinity(real, fake) == fd_infinity(real, fake, seed=0, draws=1)  # the defaults
    # few real rows: the real subsets keep n_real / n_fake, at least 2 rows (round(20 * 20 / 200) = 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MetricWarning)
        assert fd_infinity(real[:20, :4], fake[:200, :4], points=3)["real_sizes"] == [2, 11, 20]


def test_paper_scale_warnings_once_and_the_runner_statistics():
    real, fake = _gauss(1, n=400)
    r, f = real[:, :8], fake[:, :8]
    with pytest.warns(MetricWarning) as rec:  # smallest fake subset 8 rows <= 8 dims: one warning, not one per subset
        fd_infinity(r, f[:80], min_fraction=0.1, points=3, scale="fake")
    assert len(rec) == 1 and "smallest subset has 8 rows" in str(rec[0].message)
    with warnings.catch_warnings():  # 5 real rows (singular real statistics) but subsets of 9+ fake rows: silent
        warnings.simplefilter("error")
        fd_infinity(r[:5], f[:90], min_fraction=0.1, points=3, scale="fake")
    exact = (torch.zeros(8, dtype=torch.float64), torch.eye(8, dtype=torch.float64))
    ctx = EvalContext(real_features=r, fake_features=f, seed=3, fd_inf_scale="fake", real_stats=exact)
    (res,) = compute_metrics(["fd_inf"], ctx)  # scale "fake" reads the runner's real statistics
    assert res.value == fd_infinity(r, f, scale="fake", real_stats=exact, seed=3)["fd_inf"]
    assert res.value != fd_infinity(r, f, scale="fake", seed=3)["fd_inf"]
