"""Vendi score (analytic cases + brute force) and memorisation (copies vs fresh samples)."""

import math

import numpy as np
import pytest
import torch

from genbench.data.mixtures import ring8
from genbench.errors import InvalidInputError
from genbench.metrics import memorisation, vendi_score


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _vendi_brute(x, kernel="cosine", gamma=None):
    x = np.asarray(x, dtype=np.float64)
    if kernel == "cosine":
        xn = x / np.linalg.norm(x, axis=1, keepdims=True)
        k = xn @ xn.T
    else:
        d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
        k = np.exp(-gamma * d2)
    ev = np.linalg.eigvalsh(k / len(x))
    ev = ev[ev > 1e-15]
    return math.exp(-(ev * np.log(ev)).sum())


def test_vendi_identical_and_orthogonal():
    assert vendi_score(torch.ones(20, 7)) == pytest.approx(1.0, abs=1e-9)
    assert vendi_score(torch.eye(12)) == pytest.approx(12.0, rel=1e-12)
    assert vendi_score(torch.eye(12) * 5.0, kernel="rbf", gamma=10.0) == pytest.approx(12.0, rel=1e-6)
    # two distinct points, each repeated: 2 effective samples
    x = torch.cat([torch.tensor([[1.0, 0.0]]).repeat(5, 1), torch.tensor([[0.0, 1.0]]).repeat(5, 1)])
    assert vendi_score(x) == pytest.approx(2.0, rel=1e-12)


@pytest.mark.parametrize("n,d", [(300, 20), (40, 200)])
def test_vendi_matches_brute_force(n, d):
    x = np.random.default_rng(n).standard_normal((n, d)) + 0.3
    assert vendi_score(x) == pytest.approx(_vendi_brute(x), rel=1e-9)
    assert vendi_score(x, kernel="rbf", gamma=0.05) == pytest.approx(_vendi_brute(x, "rbf", 0.05), rel=1e-9)


def test_vendi_bad_kernel():
    with pytest.raises(InvalidInputError, match="did you mean|Did you mean"):
        vendi_score(torch.randn(5, 3), kernel="cosin")


def test_memorisation_copies_vs_fresh_samples():
    mix = ring8()
    train = mix.sample(2000, seed=0)
    heldout = mix.sample(1000, seed=1)
    copy = memorisation(train[:1000], train, heldout)
    assert copy["near_copy_share"] == 1.0
    assert copy["nn_ratio"] < 0.5
    fresh = memorisation(mix.sample(1000, seed=2), train, heldout)
    assert fresh["near_copy_share"] < 0.03
    assert 0.8 < fresh["nn_ratio"] < 1.25
    # a noisy copy (noise well below the data spacing) is still a near copy
    noisy = train[:500] + 1e-3 * copy["train_nn_spacing"] * torch.randn(500, 2)
    assert memorisation(noisy, train, heldout)["near_copy_share"] == 1.0


def test_memorisation_high_dim_and_validation():
    g = torch.Generator().manual_seed(0)
    train, held = torch.randn(600, 64, generator=g), torch.randn(300, 64, generator=g)
    fresh = torch.randn(300, 64, generator=g)
    r = memorisation(fresh, train, held, chunk=100)
    assert r["near_copy_share"] == 0.0 and r["nn_ratio"] == pytest.approx(1.0, abs=0.1)
    half = torch.cat([train[:150], fresh[:150]])
    assert memorisation(half, train, held)["near_copy_share"] == 0.5
    with pytest.raises(InvalidInputError, match="dimension"):
        memorisation(torch.randn(5, 3), torch.randn(5, 4), torch.randn(5, 3))


def _lower_median(v):
    v = np.sort(np.asarray(v).ravel())
    return v[(len(v) - 1) // 2]  # torch.median: the lower of the two middle values


def test_vendi_rbf_default_gamma_is_one_over_the_median_squared_distance():
    """Off-diagonal squared distances' (lower) median m: gamma = 1 / m; when m is 0 (most pairs identical)
    gamma = 1. A cosine Vendi with D == n gives the same from either Gram matrix."""
    x = np.random.default_rng(3).standard_normal((30, 4))
    d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    m = _lower_median(d2[~np.eye(30, dtype=bool)])
    mean = d2[~np.eye(30, dtype=bool)].mean()
    assert vendi_score(x, kernel="rbf") != pytest.approx(_vendi_brute(x, "rbf", 1.0 / mean), rel=1e-4)
    assert vendi_score(x, kernel="rbf") == pytest.approx(_vendi_brute(x, "rbf", 1.0 / m), rel=1e-9)
    assert vendi_score(x, kernel="rbf") != pytest.approx(_vendi_brute(x, "rbf", m), rel=1e-3)
    # three identical points and one at squared distance 4: 6 of 12 pairs are 0, lower median 0 -> gamma 1
    y = np.array([[0.0, 0.0]] * 3 + [[2.0, 0.0]])
    assert vendi_score(y, kernel="rbf") == pytest.approx(_vendi_brute(y, "rbf", 1.0), rel=1e-12)
    assert vendi_score(y, kernel="rbf") != pytest.approx(_vendi_brute(y, "rbf", 2.0), rel=1e-6)
    z = np.random.default_rng(4).standard_normal((6, 6)) + 0.5
    assert vendi_score(z) == pytest.approx(_vendi_brute(z), rel=1e-9)
    assert vendi_score(torch.ones(1, 3), kernel="rbf") == pytest.approx(1.0, abs=1e-12)


def test_vendi_cosine_rejects_zero_rows():
    with pytest.raises(InvalidInputError, match="all-zero"):
        vendi_score(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))


def test_memorisation_known_spacing_threshold_and_ratio():
    """Train on a line at 0, 1, 3, 6, 10: nearest-neighbour distances 1, 1, 2, 3, 4, so tau = median 2 (mean 2.2).
    copy_fraction 0.125: threshold 0.25 exactly; a fake at 0.25 from a training row is not a near copy (strict),
    at 0.2 it is. Held-out rows as many as the training rows: no subsampling."""
    line = lambda *v: torch.tensor([[float(a)] for a in v], dtype=torch.float64)  # noqa: E731
    train, held = line(0, 1, 3, 6, 10), line(0.5, 2, 4.5, 8, 12)
    r = memorisation(line(0.25, 3.2, 10.0, 20.0), train, held, copy_fraction=0.125)
    assert r["train_nn_spacing"] == 2.0 and r["threshold"] == 0.25 and r["copy_fraction"] == 0.125
    assert r["near_copy_share"] == 0.5  # 3.2 (0.2 away) and 10 (0) are copies; 0.25 and 20 are not
    # d_train: 0.25, 0.2, 0, 10 -> lower median 0.2; d_held: 0.25, 1.2, 2, 8 -> 1.2
    assert r["median_d_train"] == pytest.approx(0.2, abs=1e-12) and r["median_d_heldout"] == pytest.approx(1.2, abs=1e-12)
    assert r["nn_ratio"] == pytest.approx(0.2 / 1.2, rel=1e-12) and r["n_train_compared"] == 5
    # default copy_fraction 0.1
    assert memorisation(line(0.25), train, held)["threshold"] == pytest.approx(0.2, rel=1e-12)
    for bad in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(InvalidInputError, match="copy_fraction"):
            memorisation(line(1), train, held, copy_fraction=bad)
    assert memorisation(line(1), train, held, copy_fraction=0.999)["near_copy_share"] == 1.0


def test_memorisation_zero_heldout_median_and_seeded_subsample():
    line = lambda *v: torch.tensor([[float(a)] for a in v], dtype=torch.float64)  # noqa: E731
    train = line(0, 1, 3, 6, 10, 15)
    same = line(7, 7, 7)
    r = memorisation(same, torch.cat([train, same]), same)  # on held-out and training rows: 0 / 0 -> 1
    assert r["median_d_heldout"] == 0.0 and r["median_d_train"] == 0.0 and r["nn_ratio"] == 1.0
    r = memorisation(line(7, 7, 7), train, same)  # on held-out rows only: d / 0 -> inf
    assert r["nn_ratio"] == math.inf and r["median_d_heldout"] == 0.0
    # training set subsampled (seeded) to the held-out size: the rows torch.randperm(6, seed)[:2] picks
    held = line(2.5, 11)
    fake = line(0.0, 5.0, 9.0)
    for seed in (0, 1, 2):
        g = torch.Generator().manual_seed(seed)
        sub = train[torch.randperm(6, generator=g)[:2]]
        want = float(torch.cdist(fake, sub).amin(1).median())
        r = memorisation(fake, train, held, seed=seed)
        assert r["n_train_compared"] == 2 and r["median_d_train"] == pytest.approx(want, abs=1e-12), seed
    assert memorisation(fake, train, held)["median_d_train"] == memorisation(fake, train, held, seed=0)["median_d_train"]


def test_vendi_rbf_default_gamma_below_unit_distances():
    """Squared distances below 1 (median m < 1): gamma is still 1 / m, not the fallback 1."""
    x = 0.1 * np.random.default_rng(5).standard_normal((20, 3))
    d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    m = _lower_median(d2[~np.eye(20, dtype=bool)])
    assert 0 < m < 1
    assert vendi_score(x, kernel="rbf") == pytest.approx(_vendi_brute(x, "rbf", 1.0 / m), rel=1e-9)


def test_memorisation_minimum_rows_dimensions_and_when_to_subsample():
    g = torch.Generator().manual_seed(1)
    # two training rows (one nearest-other distance each) and one held-out row are enough
    r = memorisation(torch.randn(3, 4, generator=g), torch.randn(2, 4, generator=g), torch.randn(1, 4, generator=g))
    assert r["n_train_compared"] == 1
    with pytest.raises(InvalidInputError, match="dimension"):
        memorisation(torch.randn(5, 3), torch.randn(5, 3), torch.randn(5, 4))
    # more training rows (3) than held-out rows (2) -> subsampled to 2, whatever the dimension (5)
    r = memorisation(torch.randn(4, 5, generator=g), torch.randn(3, 5, generator=g), torch.randn(2, 5, generator=g))
    assert r["n_train_compared"] == 2
