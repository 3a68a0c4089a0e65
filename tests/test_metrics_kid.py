"""KID against clean-fid's kernel_distance on the same subsets, a brute-force MMD, and analytic behaviour."""

import itertools

import numpy as np
import pytest
import torch
from cleanfid.fid import kernel_distance as cleanfid_kid

from genbench.errors import InvalidInputError
from genbench.metrics import MetricWarning, kid, kid_subset_indices, polynomial_mmd2


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    """Small matrices: one thread is faster than two contending ones on the shared 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _feats(n, d, seed, shift=0.0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)) + shift


def test_per_subset_mmd_matches_cleanfid_on_the_same_subsets():
    real, fake = _feats(300, 32, 0), _feats(250, 32, 1, shift=0.3)
    n_sub, m = 7, 100
    np.random.seed(123)  # replay clean-fid's subset draws: fake subset first, then real, per subset
    draws = [(np.random.choice(250, m, replace=False), np.random.choice(300, m, replace=False)) for _ in range(n_sub)]
    np.random.seed(123)
    ref = cleanfid_kid(real, fake, num_subsets=n_sub, max_subset_size=m)
    ours = np.mean([polynomial_mmd2(fake[i_f], real[i_r]) for i_f, i_r in draws])
    assert ours == pytest.approx(ref, rel=1e-10)


def test_kid_on_full_sets_equals_cleanfid():
    # with the subset as large as the data, every draw is a permutation: the unbiased MMD^2 does not depend on it
    real, fake = _feats(200, 16, 2), _feats(200, 16, 3, shift=0.2)
    ref = cleanfid_kid(real, fake, num_subsets=1, max_subset_size=200)
    mean, std = kid(real, fake, subsets=3, subset_size=200, seed=0)
    assert mean == pytest.approx(ref, rel=1e-10)
    assert std == pytest.approx(0.0, abs=1e-12)


def test_mmd_matches_brute_force_double_sum():
    x, y = _feats(9, 4, 4), _feats(7, 4, 5, shift=0.5)
    k = lambda a, b: (float(a @ b) / 4 + 1) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(9), 2)) / (9 * 8)
    yy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(7), 2)) / (7 * 6)
    xy = sum(k(a, b) for a in x for b in y) / (9 * 7)
    assert polynomial_mmd2(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-12)


def test_kid_same_distribution_near_zero_and_shift_positive():
    real, same, shifted = _feats(600, 16, 6), _feats(600, 16, 7), _feats(600, 16, 8, shift=0.5)
    m0, s0 = kid(real, same, subsets=20, subset_size=300, seed=1)
    m1, s1 = kid(real, shifted, subsets=20, subset_size=300, seed=1)
    assert abs(m0) < 3 * s0 + 1e-3
    # analytic leading term for a mean shift delta in d dims: ~ 3 |delta|^2 / d * E[(x.y/d+1)^2] > 0; just demand a clear gap
    assert m1 > 10 * max(abs(m0), s1 / 10)


def test_kid_seeded_and_clamped():
    real, fake = _feats(120, 8, 9), _feats(90, 8, 10, shift=0.1)
    with pytest.warns(MetricWarning, match="clamped from 1000 to 90"):
        a = kid(real, fake, subsets=10, seed=3)
    with pytest.warns(MetricWarning):
        b = kid(real, fake, subsets=10, seed=3)
    with pytest.warns(MetricWarning):
        c = kid(real, fake, subsets=10, seed=4)
    assert a == b and a != c
    idx = kid_subset_indices(120, 90, 2, 50, seed=3)
    assert len(idx) == 2 and all(len(set(r.tolist())) == 50 and len(set(f.tolist())) == 50 for r, f in idx)


def test_kid_bad_input():
    with pytest.raises(InvalidInputError, match="dimension"):
        kid(np.zeros((10, 3)), np.zeros((10, 4)))
    with pytest.raises(InvalidInputError):
        kid(np.zeros((10, 3)), np.zeros((10, 3)), subset_size=1)
