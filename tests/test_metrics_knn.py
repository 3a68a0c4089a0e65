"""k-NN radii (genbench/metrics/knn.py) against brute force and hand-computed answers: every block size, near-ties
below float32 resolution (the float32 path's error bound, its windows and its full recomputation), the input
checks, the default block size, the cached-radii record and the fast-path switch."""

import numpy as np
import pytest
import torch

from genbench.errors import InvalidInputError
from genbench.metrics import knn
from genbench.metrics.knn import KnnRadii, knn_radii, knn_sq_radii

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _brute(x, ks):
    """Squared distance to the k-th nearest other row, from direct differences (numpy), for each k."""
    x = np.asarray(x, dtype=np.float64)
    d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d2, np.inf)
    s = np.sort(d2, axis=1)
    return {k: s[:, k - 1] for k in ks}


def _both(x, ks, chunk):
    t = torch.as_tensor(x, dtype=torch.float64)
    return {"float64": knn_sq_radii(t, ks, chunk), "fast": knn._knn_sq_radii_fast(t, ks, chunk, t.mean(0))}


def _check(got, ref, rtol=1e-13, atol=0.0):
    for k, v in ref.items():
        np.testing.assert_allclose(got[k].numpy(), v, rtol=rtol, atol=atol, err_msg=f"k={k}")


def test_every_block_size_gives_the_brute_force_radii():
    """Blocks of 1 row (fewer rows and columns than k, fewer than the kept candidates) up to one block larger
    than the set, on both paths; through knn_radii the chunk is taken as given."""
    x = np.random.default_rng(20).standard_normal((23, 3))
    ref = _brute(x, (1, 2, 5))
    for chunk in (1, 2, 3, 4, 5, 7, 11, 12, 13, 22, 23, 40):
        for path, got in _both(x, (1, 2, 5), chunk).items():
            _check(got, ref, rtol=1e-12 if path == "float64" else 1e-13)
        for fast in (True, False):
            r = knn_radii(x, (5, 1, 2, 2), chunk=chunk, fast=fast)
            assert r.tag == ("fast" if fast else f"float64-chunk{chunk}") and r.n == 23 and set(r.sq) == {1, 2, 5}
            _check(r.sq, ref, rtol=1e-12)


def test_exactly_one_more_point_than_k_and_no_fewer():
    x = np.random.default_rng(21).standard_normal((6, 3))
    for got in _both(x, (5,), 2).values():
        _check(got, _brute(x, (5,)), rtol=1e-12)
    for fn in (lambda t: knn_sq_radii(t, (5,)), lambda t: knn._knn_sq_radii_fast(t, (2, 5), 4, t.mean(0))):
        with pytest.raises(InvalidInputError, match="k=5 need more than 5 points, got 5"):
            fn(torch.from_numpy(x[:5]))


def test_ks_further_apart_than_the_kept_candidates():
    """The float32 path keeps k_max + 8 candidates per row: k = 1 and k = 12 together."""
    x = np.random.default_rng(22).standard_normal((60, 4))
    for got in _both(x, (1, 12), 16).values():
        _check(got, _brute(x, (1, 12)), rtol=1e-12)


def _simplex(n, scale, seed):
    """Rows scale * (1 + delta_j) e_j: every pair's squared distance scale^2 ((1 + delta_a)^2 + (1 + delta_b)^2)
    differs from the others' by ~1e-9 relative, far below float32 resolution (exact answer by hand)."""
    delta = np.random.default_rng(seed).permutation(n) * 1e-9
    return np.diag(scale * (1 + delta)), delta


def _simplex_answer(delta, scale, ks):
    out = {}
    for k in ks:
        out[k] = np.array([(scale * (1 + delta[a])) ** 2 + (scale * (1 + np.sort(np.delete(delta, a))[k - 1])) ** 2
                           for a in range(len(delta))])
    return out


def test_near_ties_below_float32_resolution_every_row_recomputed_in_full():
    """80 rows, all neighbours of every row inside the float32 error bound: each row's kept candidates may miss
    its true neighbours, so every row (more than one group of 64) is recomputed in float64 in full."""
    x, delta = _simplex(80, 1.0, 23)
    ref = _simplex_answer(delta, 1.0, (1, 3, 5))
    got = knn._knn_sq_radii_fast(torch.from_numpy(x), (1, 3, 5), 32, torch.from_numpy(x).mean(0))
    _check(got, ref, rtol=1e-15)
    _check(got, _brute(x, (1, 3, 5)), rtol=1e-15)


def test_near_ties_settled_inside_the_window():
    """8 rows, k up to n - 1 = every other row kept: the k-th exact distance is picked among the candidates of the
    window |a_j - a_k| <= 2 tol, here all of them (scale 1000: float32 rounding ~0.1, exact gaps ~2e-3)."""
    x, delta = _simplex(8, 1000.0, 24)
    ks = (1, 3, 7)
    got = knn._knn_sq_radii_fast(torch.from_numpy(x), ks, 3, torch.from_numpy(x).mean(0))
    _check(got, _simplex_answer(delta, 1000.0, ks), rtol=1e-15)


def test_a_clear_nearest_neighbour_then_near_ties():
    """Row 0 at the origin, row 1 at 0.5 e_0 (clearly nearest), 40 rows at distance 1 + ~1e-9 (tied in float32):
    the 2nd neighbour of rows 0 and 1 is the one of the 40 with the smallest offset."""
    delta = np.random.default_rng(25).permutation(40) * 1e-9
    x = np.zeros((42, 41))
    x[1, 0] = 0.5
    x[np.arange(2, 42), np.arange(1, 41)] = 1 + delta
    got = knn._knn_sq_radii_fast(torch.from_numpy(x), (2,), 16, torch.from_numpy(x).mean(0))
    assert got[2][0].item() == (1 + delta.min()) ** 2
    assert got[2][1].item() == pytest.approx(0.25 + (1 + delta.min()) ** 2, rel=1e-16)
    _check(got, _brute(x, (2,)), rtol=1e-15)


def test_error_bound_scales_with_the_largest_norm():
    """A point near the centre whose neighbours lie far out (|y| ~ 1000): the float32 error of its distances is
    ~u |y|^2, not ~u |x|^2, so its tolerance must use the largest norm. 30 far points at squared distances
    T + 0.001 j from row 0 (exact), each mirrored through the origin (further away)."""
    rng = np.random.default_rng(26)
    x0 = np.zeros(8)
    x0[0] = 1.0
    v = rng.standard_normal((30, 8))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    v *= np.sign(v @ x0)[:, None]  # each y_j on the near side of its mirror image
    c = v @ x0
    target = 1e6 + 0.001 * rng.permutation(30)
    r = c + np.sqrt(c**2 - 1 + target)  # |r v - x0|^2 = target
    y = r[:, None] * v
    x = np.vstack([x0, y, -y])
    got = knn._knn_sq_radii_fast(torch.from_numpy(x), (1, 5), 16, torch.from_numpy(x).mean(0))
    ref = _brute(x, (1, 5))
    np.testing.assert_allclose(ref[5][0], np.sort(target)[4], rtol=1e-14)  # the construction
    _check(got, ref, rtol=1e-15)


def test_a_candidate_exactly_two_tolerances_below_the_kth_is_counted_once():
    """Dyadic points, every float32 and float64 step exact (mean 0 by symmetry, D = 7: tol factor 2^-19). Row 0 =
    e0 has centred norm 1 and the largest norm is 3, so 2 tol = 2^-18 (1 + 3) = 2^-16; its neighbours lie at
    2^-18 (e0 + 2^-9 e1) and 5 * 2^-18 (e0 + 2^-9 (2 e1 + e2)), exactly 2 tol apart: the first is inside the
    window of the second and must not be counted below it as well. The 2nd neighbour is at 5 * 2^-18."""
    e = np.eye(7)
    half = np.array([e[0], e[0] + 2.0**-9 * e[1], e[0] + 2.0**-9 * (2 * e[1] + e[2]), e[3] + e[4] + e[5]])
    x = np.vstack([half, -half])
    t = torch.from_numpy(x)
    assert knn._tol_factor(7) == 2.0**-19 and float(t.mean(0).abs().max()) == 0.0
    got = knn._knn_sq_radii_fast(t, (2,), 3, t.mean(0))
    assert got[2][0].item() == 5 * 2.0**-18
    _check(got, _brute(x, (2,)), rtol=0)


def test_near_ties_with_one_candidate_not_kept():
    """12 rows, k = 2: the float32 pass keeps 10 of each row's 11 neighbours (all tied in float32), so a row
    whose dropped one may be among its true 2 nearest is recomputed in full."""
    for seed in range(4):  # which of the float32-tied candidates is dropped depends on the draw
        x, delta = _simplex(12, 1000.0, seed)
        got = knn._knn_sq_radii_fast(torch.from_numpy(x), (2,), 5, torch.from_numpy(x).mean(0))
        _check(got, _simplex_answer(delta, 1000.0, (2,)), rtol=1e-15)


def test_tied_candidates_from_a_later_block_still_enter_a_short_list():
    """17 rows of the simplex (all distances tied in float32), blocks of 8: the last row gets 8 candidates from the
    first block (one short of the 9 kept) and the tied ones of the second block must still fill its list; its
    true nearest neighbour (the smallest offset) is row 8, in the second block."""
    delta = ((np.arange(17) - 8) % 17) * 1e-9
    x = np.diag(1 + delta)
    got = knn._knn_sq_radii_fast(torch.from_numpy(x), (1,), 8, torch.from_numpy(x).mean(0))
    assert got[1][16].item() == (1 + delta[16]) ** 2 + 1.0
    _check(got, _simplex_answer(delta, 1.0, (1,)), rtol=1e-15)


def test_identical_rows_have_radius_zero():
    x = np.full((10, 3), 2.5)
    for path, got in _both(x, (1, 3), 4).items():
        for k in (1, 3):
            assert torch.equal(got[k], torch.zeros(10, dtype=torch.float64)), (path, k)


def test_dense_first_block_in_several_column_slices():
    """The first block's later-row update runs through column slices of 2^20 / c columns: 1050 x 1050 entries
    take two slices."""
    x = np.random.default_rng(27).standard_normal((2100, 2))
    from scipy.spatial.distance import cdist

    d2 = cdist(x, x, "sqeuclidean")
    np.fill_diagonal(d2, np.inf)
    ref = np.partition(d2, 2, axis=1)
    t = torch.from_numpy(x)
    got = knn._knn_sq_radii_fast(t, (1, 3), 1050, t.mean(0))
    np.testing.assert_allclose(got[1].numpy(), ref[:, 0], rtol=1e-13)
    np.testing.assert_allclose(got[3].numpy(), ref[:, 2], rtol=1e-13)


def test_helpers_on_known_answers():
    g = torch.Generator().manual_seed(28)
    x = torch.randn(4100, 3, generator=g, dtype=torch.float64)  # more rows than one 4096-row step
    torch.testing.assert_close(knn._sq_norms(x), (x * x).sum(1), rtol=0, atol=0)
    y = torch.randn(10, 5, generator=g, dtype=torch.float64) * 3 + 7
    mu = y.mean(0)
    c32, n2 = knn._centred_f32(y, mu, 3)
    assert c32.dtype == torch.float32 and n2.dtype == torch.float64
    assert torch.equal(c32, (y - mu).float())
    torch.testing.assert_close(n2, ((y - mu) ** 2).sum(1), rtol=1e-15, atol=0)
    # pairs in several steps of 2^19 / D pairs (D = 4096: 128 pairs a step)
    a = torch.randn(40, 4096, generator=g, dtype=torch.float64)
    ia = torch.randint(0, 40, (300,), generator=g)
    ib = torch.randint(0, 40, (300,), generator=g)
    ref = ((a[ia] - a[ib]) ** 2).sum(1)
    torch.testing.assert_close(knn._exact_pair_d2(a, ia, a, ib), ref, rtol=1e-14, atol=0)
    # the documented bound 2 (d + 9) u, u = 2^-24
    for d in (1, 8, 2048):
        assert knn._tol_factor(d) == 2 * (d + 9) * 2.0**-24


def test_default_block_size_from_the_entry_budget():
    """Default chunk = clamp(5 * 2^20 // max(N, n_fake), 64, 4096); the float64 path's tag names it."""
    assert knn._BLOCK_ENTRIES == 5 * 2**20
    small = np.random.default_rng(29).standard_normal((100, 2))
    assert knn_radii(small, n_fake=2000, fast=False).tag == "float64-chunk2621"  # 5242880 // 2000
    assert knn_radii(small, n_fake=100_000, fast=False).tag == "float64-chunk64"  # 52 -> 64
    assert knn_radii(small, fast=False).tag == "float64-chunk4096"  # n_fake = N = 100: 52428 -> 4096
    wide = np.random.default_rng(30).standard_normal((10, 2000))  # rows count, not dimensions
    assert knn_radii(wide, (1,), fast=False).tag == "float64-chunk4096"
    assert knn_radii(small, chunk=50, fast=False).tag == "float64-chunk50"
    e = torch.empty
    assert knn._chunk(None, e(100, 3), e(2000, 3)) == knn._chunk(None, e(2000, 3), e(100, 3)) == 2621
    assert knn._chunk(None, e(10, 1), e(10, 1)) == 4096
    assert knn._chunk(None, e(100_000, 1), e(10, 1)) == 64
    assert knn._chunk(1, e(10, 1), e(10, 1)) == 1
    with pytest.raises(InvalidInputError, match="chunk must be >= 1, got 0"):
        knn._chunk(0, e(10, 1), e(10, 1))


def test_knn_radii_defaults_and_k_checks():
    x = np.random.default_rng(31).standard_normal((40, 3))
    r = knn_radii(x)
    assert set(r.sq) == {3, 5} and r.n == 40 and r.tag == "fast"  # CPU: the float32 path by default
    _check(r.sq, _brute(x, (3, 5)), rtol=1e-13)
    _check(knn_radii(x, (1,)).sq, _brute(x, (1,)), rtol=1e-13)
    for bad in ((), (0,), (0, 3), (-1, 2)):
        with pytest.raises(InvalidInputError, match="k must be >= 1"):
            knn_radii(x, bad)


def test_cached_radii_are_used_only_for_the_same_set_path_and_ks():
    x = np.random.default_rng(32).standard_normal((40, 3))
    r = knn_radii(x, (3, 5), fast=True)
    got = r.usable(40, (5, 3, 5), "fast", "cpu")
    assert set(got) == {3, 5} and all(v.dtype == torch.float64 for v in got.values())
    assert torch.equal(got[3], r.sq[3]) and torch.equal(got[5], r.sq[5])
    assert set(r.usable(40, (5,), "fast", "cpu")) == {5}
    assert r.usable(39, (3,), "fast", "cpu") is None  # another set size
    assert r.usable(40, (3,), "float64-chunk64", "cpu") is None  # another path
    assert r.usable(40, (3, 4), "fast", "cpu") is None  # a k not cached
    assert r.usable(40, (4,), "fast", "cpu") is None
    k = KnnRadii({"2": torch.ones(3)}, "fast", 3.0)
    assert set(k.sq) == {2} and k.n == 3 and k.usable(3, (2,), "fast", "cpu")[2].dtype == torch.float64


def test_input_checks():
    with pytest.raises(InvalidInputError, match="has 1 row"):
        knn_radii(np.zeros((1, 5)), (1,))
    _check(knn_radii([[0.0], [1.0]], (1,)).sq, {1: np.array([1.0, 1.0])})  # a list of two rows
    ints = np.arange(12).reshape(6, 2) ** 2
    _check(knn_radii(ints, (1, 2)).sq, _brute(ints, (1, 2)))
    _check(knn_radii(np.float32([[0, 0], [3, 4], [6, 8]]), (1,)).sq, {1: np.array([25.0, 25.0, 25.0])})
    # NaN/inf counted over every block of 2^18 / D rows (D = 64: 4096 rows a block)
    x = np.random.default_rng(33).standard_normal((5000, 64))
    for rows, count in (([0], 1), ([4999], 1), ([0, 4500], 2), ([10, 4096, 4097], 3)):
        bad = x.copy()
        bad[rows, 3] = np.nan
        bad[rows[-1], 5] = np.inf
        with pytest.raises(InvalidInputError, match=f"real features contains {count + 1} NaN/inf"):
            knn_radii(bad, (1,), fast=True)
        with pytest.raises(InvalidInputError, match=f"real features contains {count + 1} NaN/inf"):
            knn_radii(torch.from_numpy(bad), (1,), fast=True)


def test_fast_path_switch(monkeypatch):
    """The float32 path is the CPU default, and stays on under a reduced float32 matmul precision (TF32 is a CUDA
    matter); fast=True / False force it on a CPU tensor."""
    x = torch.zeros(3, 2)
    assert knn._use_fast(None, x) is True
    assert knn._use_fast(False, x) is False and knn._use_fast(True, x) is True
    old = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("high")
        assert knn._use_fast(None, x) is True
        assert knn_radii(np.random.default_rng(34).standard_normal((20, 2)), (1,)).tag == "fast"
    finally:
        torch.set_float32_matmul_precision(old)



def test_fast_path_is_off_for_cuda_tensors_under_tf32():
    """TF32 products (10-bit mantissa) break the float32 error bound: a CUDA tensor takes the float64 path then,
    even with fast=True, and the float32 path only when asked for at "highest" precision (not by default). Only
    `x.device` is read, so a stand-in for a CUDA tensor runs on any machine."""
    from types import SimpleNamespace

    x = SimpleNamespace(device=torch.device("cuda"))
    old = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("highest")
        assert knn._use_fast(True, x) is True and knn._use_fast(None, x) is False
        torch.set_float32_matmul_precision("high")  # also turns torch.backends.cuda.matmul.allow_tf32 on
        assert knn._use_fast(True, x) is False and knn._use_fast(None, x) is False
    finally:
        torch.set_float32_matmul_precision(old)

def test_feature_shapes():
    _check(knn_radii(torch.tensor([0.0, 1.0, 3.0]), (1,)).sq, {1: np.array([1.0, 1.0, 4.0])})  # (N,): N x 1
    _check(knn_radii(np.array([0.0, 1.0, 3.0]), (1,)).sq, {1: np.array([1.0, 1.0, 4.0])})
    for x in (torch.zeros(4, 2, 2), np.zeros((4, 2, 2))):
        with pytest.raises(InvalidInputError, match=r"\(N, D\) feature matrix"):
            knn_radii(x, (1,))
