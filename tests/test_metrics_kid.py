"""KID against clean-fid's kernel_distance on the same subsets, a brute-force MMD, and analytic behaviour."""

import itertools
import warnings

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
    with pytest.warns(MetricWarning, match="every subset holds all real and fake rows.*undefined"):
        mean, std = kid(real, fake, subsets=3, subset_size=200, seed=0)
    assert mean == pytest.approx(ref, rel=1e-10)
    assert std is None  # every subset is the full set: no spread to report (not a ~1e-16 "certainty")


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
    subsets of 1000 rows with seed 0; nothing is clamped (no warning) when the sets hold more than subset_size
    rows; when they hold exactly subset_size rows nothing is clamped, but the std is undefined (None, warned)."""
    import warnings

    x, y = _feats(2, 3, 15), _feats(2, 3, 16, shift=0.3)
    assert polynomial_mmd2(x, y) == pytest.approx(_mmd2_brute(x, y), rel=1e-12)
    with pytest.warns(MetricWarning, match="undefined"):
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
        warnings.simplefilter("error")  # subset_size < n: not clamped, no MetricWarning, a std
        assert kid(real, fake, subsets=2, subset_size=39)[1] > 0
    with pytest.warns(MetricWarning, match="subset size 40 equals n_real and n_fake") as rec:
        assert kid(real, fake, subsets=2, subset_size=40)[1] is None  # subset_size == n: every subset is the full set
    assert not any("clamped" in str(w.message) for w in rec)
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


def _torchmetrics_kid(real, fake, subsets, subset_size, seed):
    """torchmetrics' KernelInceptionDistance on precomputed float64 features (an identity 'feature network');
    its subsets come from torch's global generator, real permutation then fake, as genbench's seeded ones."""
    from torchmetrics.image.kid import KernelInceptionDistance

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "will save all extracted features in buffer"
        m = KernelInceptionDistance(feature=torch.nn.Identity(), subsets=subsets, subset_size=subset_size).double()
    m.update(torch.from_numpy(real), real=True)
    m.update(torch.from_numpy(fake), real=False)
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        mean, std = m.compute()
    finally:
        torch.random.set_rng_state(state)
    return float(mean), float(std)


def test_kid_mean_and_subset_std_match_torchmetrics_on_the_same_subsets():
    real, fake = _feats(90, 6, 23), _feats(70, 6, 24, shift=0.3)
    tm_mean, tm_std = _torchmetrics_kid(real, fake, subsets=12, subset_size=30, seed=11)
    mean, std = kid(real, fake, subsets=12, subset_size=30, seed=11)
    assert mean == pytest.approx(tm_mean, rel=1e-10)
    assert std == pytest.approx(tm_std, rel=1e-10) and std > 0.05 * abs(mean)


def test_kid_std_is_undefined_when_a_set_is_whole_in_every_subset():
    """subset size clamped to n_fake (< n_real): every subset holds all fake rows, so the spread over subsets
    leaves out the fake rows' sampling noise: None, and the warning says why. Both sets whole: torchmetrics (it
    accepts subset_size == n) reports a std of rounding noise for the same mean; genbench reports None."""
    real, fake = _feats(120, 5, 25), _feats(40, 5, 26, shift=0.2)
    with pytest.warns(MetricWarning, match=r"clamped from 1000 to 40.*Every subset holds all fake rows.*None"):
        mean, std = kid(real, fake, subsets=5, seed=0)
    assert std is None
    vals = [_mmd2_brute(real[r.numpy()], fake[f.numpy()]) for r, f in kid_subset_indices(120, 40, 5, 40, seed=0)]
    assert mean == pytest.approx(np.mean(vals), rel=1e-10)
    real = real[:40]
    tm_mean, tm_std = _torchmetrics_kid(real, fake, subsets=4, subset_size=40, seed=0)
    assert tm_std < 1e-12 * abs(tm_mean)  # the "certainty" torchmetrics reports: every subset is the same set
    with pytest.warns(MetricWarning, match="all real and fake rows"):
        mean, std = kid(real, fake, subsets=4, subset_size=40, seed=0)
    assert mean == pytest.approx(tm_mean, rel=1e-10) and std is None


def test_kernel_kid_equals_per_subset_products_and_bootstrap_replicates(monkeypatch):
    """KernelKID (kernel matrices once, then indexing) gives kid's subsets' values; its bootstrap replicates equal
    kid on the resampled rows; `kid` picks it by cost and the values do not depend on the pick."""
    import importlib

    from genbench.metrics import bootstrap_ci

    kid_mod = importlib.import_module("genbench.metrics.kid")
    real, fake = _feats(50, 7, 27), _feats(40, 7, 28, shift=0.2)
    assert kid_mod.use_kernels(50, 40, 10, 30)
    assert not kid_mod.use_kernels(10000, 10000, 100, 1000)  # 3e8 entries: per-subset products instead
    assert not kid_mod.use_kernels(5000, 5000, 2, 100)  # two small subsets: cheaper than the full matrices
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MetricWarning)
        fast = kid(real, fake, subsets=10, subset_size=30, seed=2)
        monkeypatch.setattr(kid_mod, "use_kernels", lambda *a, **k: False)
        slow = kid(real, fake, subsets=10, subset_size=30, seed=2)
        assert fast[0] == pytest.approx(slow[0], rel=1e-10) and fast[1] == pytest.approx(slow[1], rel=1e-9)
        kk = kid_mod.KernelKID(torch.from_numpy(real), torch.from_numpy(fake), 10, 30, 2)
        g = torch.Generator().manual_seed(1)
        ir, i_f = torch.randint(0, 50, (50,), generator=g), torch.randint(0, 40, (40,), generator=g)
        assert kk.resampled(ir, i_f) == pytest.approx(kid(real[ir.numpy()], fake[i_f.numpy()], subsets=10, subset_size=30, seed=2)[0], rel=1e-10)
        a = bootstrap_ci(lambda r, f: kid(r, f, subsets=10, subset_size=30, seed=2)[0], real, fake, n_boot=8, seed=4)
        b = bootstrap_ci(lambda r, f: kid(r, f, subsets=10, subset_size=30, seed=2)[0], real, fake, n_boot=8, seed=4,
                         indexed=kk.resampled)
    assert a["ci_low"] == pytest.approx(b["ci_low"], rel=1e-9) and a["ci_high"] == pytest.approx(b["ci_high"], rel=1e-9)


def test_kid_metric_reports_no_std_when_every_subset_is_the_full_set():
    from genbench.metrics import EvalContext, bootstrap_ci, compute_metrics

    real, fake = torch.from_numpy(_feats(30, 4, 29)), torch.from_numpy(_feats(30, 4, 30, shift=0.3))
    with pytest.warns(MetricWarning, match="undefined"):
        r = compute_metrics(["kid"], EvalContext(real_features=real, fake_features=fake, n_bootstrap=6, seed=2))[0]
    assert r.extra["std"] is None and r.extra["std_of"].startswith("undefined")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MetricWarning)
        ref = bootstrap_ci(lambda a, b: kid(a, b, subsets=100, subset_size=1000, seed=2)[0], real, fake, n_boot=6, seed=2)
    assert r.ci_low == pytest.approx(ref["ci_low"], rel=1e-9) and r.ci_high == pytest.approx(ref["ci_high"], rel=1e-9)
    r = compute_metrics(["kid"], EvalContext(real_features=real, fake_features=fake, kid_subset_size=20, kid_subsets=5))[0]
    assert r.extra["std"] > 0 and r.extra["std"] == kid(real, fake, subsets=5, subset_size=20, seed=0)[1]


def _mmd2_np(x, y):
    """Unbiased MMD^2 in vectorised numpy (the same formula as `_mmd2_brute`, checked against it below)."""
    d = x.shape[1]
    kxx, kyy, kxy = (x @ x.T / d + 1.0) ** 3, (y @ y.T / d + 1.0) ** 3, (x @ y.T / d + 1.0) ** 3
    m, n = len(x), len(y)
    return ((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
            - 2.0 * kxy.mean())


@pytest.mark.parametrize("n_real,n_fake", [(40, 120), (120, 40)])
def test_kid_with_one_set_whole_uses_real_subsets_of_the_other(monkeypatch, n_real, n_fake):
    """subset size = n of one set only: that set is whole in every subset, the other is subsampled, so the value
    is the mean over the seeded subsets (not the MMD^2 of the two whole sets), on both routes. The dimension is
    the subset size (40) so that reading a dimension for a row count changes the subsets too."""
    import importlib

    kid_mod = importlib.import_module("genbench.metrics.kid")
    real, fake = _feats(n_real, 40, 31), _feats(n_fake, 40, 32, shift=0.3)
    idx = kid_subset_indices(n_real, n_fake, 5, 40, seed=3)
    vals = [_mmd2_brute(real[r.numpy()], fake[f.numpy()]) for r, f in idx]
    assert abs(np.mean(vals) - _mmd2_brute(real, fake)) > 1e-3 * abs(np.mean(vals))  # the whole-set value differs
    assert kid_mod.use_kernels(n_real, n_fake, 5, 40)  # the kernel-matrix route
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MetricWarning)
        fast = kid(real, fake, subsets=5, subset_size=40, seed=3)
        monkeypatch.setattr(kid_mod, "use_kernels", lambda *a, **k: False)
        slow = kid(real, fake, subsets=5, subset_size=40, seed=3)
    for mean, std in (fast, slow):
        assert mean == pytest.approx(np.mean(vals), rel=1e-10) and std is None


def test_use_kernels_follows_its_documented_cost_and_memory_rule():
    """Kernel matrices when n_r^2 + n_f^2 + n_r n_f entries fit in MAX_KERNEL_ENTRIES (2^25: 256 MiB of float64)
    and are no more than the 3 m^2 entries per subset of `subsets` x `replicates` subsets, m = min(size, n_r, n_f)."""
    import importlib

    kid_mod = importlib.import_module("genbench.metrics.kid")
    assert kid_mod.MAX_KERNEL_ENTRIES * 8 == 256 * 2 ** 20
    assert kid_mod.use_kernels(10, 10, 1, 10)  # 300 entries = 3 * 10^2 * 1: at the cost bound, inclusive
    assert not kid_mod.use_kernels(10, 11, 1, 10)  # 100 + 121 + 110 = 331 > 300
    assert kid_mod.use_kernels(10, 11, 1, 10, replicates=2)  # 331 <= 600
    assert not kid_mod.use_kernels(10, 11, 1, 12)  # the subset size is clamped to 10: still 300
    assert not kid_mod.use_kernels(10, 20, 1, 5)  # 700 > 3 * 25
    assert kid_mod.use_kernels(10, 20, 10, 5)  # 700 <= 750
    assert kid_mod.use_kernels(3344, 3344, 1000, 3344)  # 3 * 3344^2 = 33,547,968 entries: fits
    assert not kid_mod.use_kernels(3345, 3345, 1000, 3345)  # 33,566,700 > 2^25 = 33,554,432


def test_kid_asks_use_kernels_with_the_row_counts_and_takes_the_route_it_names(monkeypatch):
    import importlib

    kid_mod = importlib.import_module("genbench.metrics.kid")
    real, fake = _feats(50, 7, 33), _feats(40, 7, 34, shift=0.2)
    asked, built = [], []
    orig_use, orig_kk = kid_mod.use_kernels, kid_mod.KernelKID

    def use(*a, **k):
        asked.append((a, k))
        return orig_use(*a, **k)

    class Spy(orig_kk):
        def __init__(self, *a, **k):
            built.append(a[2:])
            super().__init__(*a, **k)

    monkeypatch.setattr(kid_mod, "use_kernels", use)
    monkeypatch.setattr(kid_mod, "KernelKID", Spy)
    kid(real, fake, subsets=10, subset_size=30, seed=2)
    assert asked == [((50, 40, 10, 30), {})] and built == [(10, 30, 2)]  # 6100 entries <= 3 * 30^2 * 10
    asked.clear(), built.clear()
    kid(real, fake, subsets=2, subset_size=30, seed=2)
    assert asked == [((50, 40, 2, 30), {})] and built == []  # 6100 > 3 * 30^2 * 2: per-subset products


def test_kid_defaults_on_real_subsets():
    """The defaults (100 subsets of at most 1000 rows, seed 0) where they matter: 60 real rows, 40 fake rows, so
    the real rows are subsampled and the seed and the number of subsets change the value."""
    real, fake = _feats(60, 3, 35), _feats(40, 3, 36, shift=0.2)
    x, y = real[:7], fake[:6]
    assert _mmd2_np(x, y) == pytest.approx(_mmd2_brute(x, y), rel=1e-12)
    with pytest.warns(MetricWarning, match="clamped from 1000 to 40"):
        mean, std = kid(real, fake)
    vals = [_mmd2_np(real[r.numpy()], fake[f.numpy()]) for r, f in kid_subset_indices(60, 40, 100, 40, seed=0)]
    assert mean == pytest.approx(np.mean(vals), rel=1e-10) and std is None
    assert abs(np.mean(vals[:99]) - np.mean(vals)) > 1e-6 * abs(np.mean(vals))  # 99 subsets would differ
