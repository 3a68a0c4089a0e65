"""KID against clean-fid's kernel_distance on the same subsets, a brute-force MMD, and analytic behaviour."""

import itertools

import numpy as np
import pytest
import torch
from cleanfid.fid import kernel_distance as cleanfid_kid

from genbench.errors import InvalidInputError
from genbench.metrics import MetricWarning, kid, kid_subset_indices, polynomial_mmd2


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


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


def _mmd2_brute(x, y):
    """Unbiased MMD^2 under k(a, b) = (a.b/d + 1)^3, written as explicit double sums in numpy."""
    d = x.shape[1]
    k = lambda a, b: (float(np.dot(a, b)) / d + 1.0) ** 3  # noqa: E731
    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(a, b) for a in x for b in y) / (m * n)
    return xx + yy - 2.0 * xy


def test_kid_is_the_mean_and_population_std_over_hand_drawn_subsets(monkeypatch):
    """Real subsets (6 of 20 real rows, 6 of 15 fake rows), drawn by hand so that the per-subset MMD^2 values are
    far apart (the third subset takes the shifted fake rows): the mean differs clearly from the median, the
    ddof=0 std from the ddof=1 one."""
    import importlib

    kid_mod = importlib.import_module("genbench.metrics.kid")  # the package re-exports the function under this name

    real = _feats(20, 5, 11)
    fake = _feats(15, 5, 12, shift=0.0)
    fake[9:] += 1.5  # rows 9..14 are shifted
    subsets = [
        ([0, 1, 2, 3, 4, 5], [0, 1, 2, 3, 4, 5]),
        ([6, 7, 8, 9, 10, 11], [3, 4, 5, 6, 7, 8]),
        ([12, 13, 14, 15, 16, 17], [9, 10, 11, 12, 13, 14]),
        ([2, 5, 8, 11, 14, 19], [0, 2, 4, 6, 8, 10]),
    ]
    calls = []

    def hand_drawn(n_real, n_fake, n_sub, size, seed):
        calls.append((n_real, n_fake, n_sub, size, seed))
        return [(torch.tensor(r), torch.tensor(f)) for r, f in subsets]

    monkeypatch.setattr(kid_mod, "kid_subset_indices", hand_drawn)
    mean, std = kid_mod.kid(real, fake, subsets=4, subset_size=6, seed=5)
    assert calls == [(20, 15, 4, 6, 5)]
    vals = np.array([_mmd2_brute(real[r], fake[f]) for r, f in subsets])
    # the hand-drawn subsets make every wrong aggregate clearly different from the right one
    assert abs(np.median(vals) - vals.mean()) > 0.1 * abs(vals.mean())
    assert abs(vals.std(ddof=1) - vals.std(ddof=0)) > 0.1 * vals.std(ddof=0)
    assert mean == pytest.approx(vals.mean(), rel=1e-10)
    assert std == pytest.approx(vals.std(ddof=0), rel=1e-10)


def test_kid_subsets_are_the_documented_seeded_draws():
    """kid_subset_indices: one CPU generator seeded with `seed`, per subset randperm(n_real)[:size] then
    randperm(n_fake)[:size]; kid is the mean of the brute-force MMD^2 over exactly those (proper) subsets."""
    g = torch.Generator().manual_seed(7)
    expect = []
    for _ in range(3):
        r = torch.randperm(25, generator=g)[:8]
        f = torch.randperm(18, generator=g)[:8]
        expect.append((r, f))
    got = kid_subset_indices(25, 18, 3, 8, seed=7)
    assert len(got) == 3
    for (r, f), (er, ef) in zip(got, expect):
        assert r.tolist() == er.tolist() and f.tolist() == ef.tolist()
    real, fake = _feats(25, 4, 13), _feats(18, 4, 14, shift=0.4)
    vals = np.array([_mmd2_brute(real[r.numpy()], fake[f.numpy()]) for r, f in expect])
    mean, std = kid(real, fake, subsets=3, subset_size=8, seed=7)
    assert mean == pytest.approx(vals.mean(), rel=1e-10)
    assert std == pytest.approx(vals.std(ddof=0), rel=1e-10)


def test_kid_smallest_valid_inputs_defaults_and_no_spurious_warning():
    """The edges of the input checks: 2 rows per set and subset_size 2 are enough for the unbiased MMD^2 (one
    pair per set), one subset is enough; 1 row or subset_size 1 or 0 subsets are errors. The defaults are 100
    subsets of 1000 rows with seed 0; nothing is clamped (no warning) when the sets hold subset_size rows."""
    import warnings

    x, y = _feats(2, 3, 15), _feats(2, 3, 16, shift=0.3)
    assert polynomial_mmd2(x, y) == pytest.approx(_mmd2_brute(x, y), rel=1e-12)
    assert kid(x, y, subsets=1, subset_size=2)[0] == pytest.approx(_mmd2_brute(x, y), rel=1e-12)
    with pytest.raises(InvalidInputError, match="row"):
        polynomial_mmd2(x[:1], y)
    with pytest.raises(InvalidInputError, match="row"):
        kid(x, y[:1], subsets=1, subset_size=2)
    with pytest.raises(InvalidInputError, match="subsets"):
        kid(x, y, subsets=0, subset_size=2)
    with pytest.raises(InvalidInputError, match="dimension"):
        polynomial_mmd2(np.zeros((4, 3)), np.zeros((4, 2)))
    real, fake = _feats(40, 3, 17), _feats(40, 3, 18, shift=0.2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # subset_size == n: not clamped, no MetricWarning
        kid(real, fake, subsets=2, subset_size=40)
    with pytest.warns(MetricWarning):
        default = kid(real, fake)
    with pytest.warns(MetricWarning):
        assert default == kid(real, fake, subsets=100, subset_size=1000, seed=0)
    vals = [_mmd2_brute(real[r.numpy()], fake[f.numpy()]) for r, f in kid_subset_indices(40, 40, 100, 40, seed=0)]
    assert default[0] == pytest.approx(np.mean(vals), rel=1e-10)


def test_metric_warnings_point_at_the_caller_and_lists_are_accepted():
    """MetricWarning is attributed to the line that called the metric (stacklevel), not to genbench; plain nested
    lists are valid feature matrices."""
    real, fake = _feats(20, 3, 19), _feats(10, 3, 20)
    with pytest.warns(MetricWarning) as rec:
        kid(real, fake, subsets=2, subset_size=50)
    assert rec[0].filename == __file__
    x, y = _feats(5, 3, 21), _feats(4, 3, 22)
    # exact: a list of Python floats is read as float64 (it once went through float32, a 1e-7 relative error)
    assert polynomial_mmd2(x.tolist(), y.tolist()) == polynomial_mmd2(x, y)
    from genbench.metrics._util import as_f64

    assert as_f64([0.1, 1.0 + 1e-12], "x").tolist() == [0.1, 1.0 + 1e-12]
