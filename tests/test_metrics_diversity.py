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
