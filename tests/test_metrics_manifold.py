"""P/R/D/C (genbench/metrics/manifold.py) on small cases with known answers: a hand-computed 1-D case with
points on ball boundaries (inclusive and strict balls, k_pr != k_dc, several blocks), weighted replicates against
an independent brute-force numpy reference on both the float64 and the float32 path (pair lists, dense masks and
the dense float64 fallback, with their thresholds), boundary pairs whose float32 error bound is 0 or large, which
pairs reach float64, cached real radii, the per-row terms (`prdc_items`), and the k / convention arguments."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genbench.errors import InvalidInputError
from genbench.metrics import manifold
from genbench.metrics.knn import KnnRadii, _radii_tag, knn_radii, knn_sq_radii
from genbench.metrics.manifold import _prdc_core, _resolve_ks, prdc
from test_metrics_prdc import _brute, _brute_weighted

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

# 1-D integer points: every distance is exact in float32 and float64, and several fakes sit on a ball's boundary.
REAL = [0.0, 1.0, 3.0, 6.0, 10.0]  # 1-NN radii 1 1 2 3 4; 2-NN radii 3 2 3 4 7
FAKE = [-1.0, 2.0, 20.0, 21.0]  # 1-NN radii 3 3 1 1; 2-NN radii 21 18 18 19
# worked by hand (k_pr = 1, k_dc = 2):
#  precision: -1 is on the boundary of 0's ball (1 <= 1), 2 inside 3's (1 < 2); 20 and 21 outside every ball
#  recall: 0, 1 and 3 lie within 3 of -1 or 2; 6 is 4 from 2 (> 3), 10 far from all
#  density: -1 in the 2-NN balls of 0 (1 < 3) and 1 (2 = 2, boundary); 2 in those of 0, 1, 3 and 6 (4 = 4,
#  boundary); 20, 21 in none -> (2 + 4) / (2 * 4); strict: (1 + 3) / 8
#  coverage: 0, 1, 3 hold a fake; 6 only on its boundary (the fake 2); 10 none
HAND_INCLUSIVE = {"precision": 0.5, "recall": 0.6, "density": 0.75, "coverage": 0.8}
HAND_STRICT = {"precision": 0.25, "recall": 0.6, "density": 0.5, "coverage": 0.6}
REAL_NP, FAKE_NP = np.array(REAL)[:, None], np.array(FAKE)[:, None]


def _t(v):
    return torch.tensor(v, dtype=torch.float64)[:, None]


@pytest.mark.parametrize("fast", [False, True])
@pytest.mark.parametrize("chunk", [1, 2, 64])
def test_hand_computed_boundaries_inclusive_and_strict(fast, chunk):
    x, y = _t(REAL), _t(FAKE)
    assert prdc(x, y, k_pr=1, k_dc=2, fast=fast, chunk=chunk) == HAND_INCLUSIVE
    assert _prdc_core(x, y, 1, 2, True, chunk, fast=fast) == HAND_STRICT
    assert _prdc_core(x, y, 1, 2, False, chunk, fast=fast) == HAND_INCLUSIVE
    # roles swapped (N = 4 real, M = 5 fake): against the brute-force definition
    swapped = {k: float(v) for k, v in _brute(FAKE_NP, REAL_NP, 1, 2).items()}
    assert prdc(y, x, k_pr=1, k_dc=2, fast=fast, chunk=chunk) == pytest.approx(swapped, abs=1e-15)


def test_hand_computed_case_through_the_conventions():
    x, y = _t(REAL), _t(FAKE)
    # prdc convention with one k = 2 everywhere, strict: precision -1 (1 < 3) and 2; recall with the fakes'
    # 2-NN radii (18-21) covers every real point; density and coverage as HAND_STRICT
    assert prdc(x, y, convention="prdc", nearest_k=2) == {"precision": 0.5, "recall": 1.0, "density": 0.5,
                                                          "coverage": 0.6}
    # nearest_k in the official convention sets both k, inclusive: precision adds nothing on the boundary
    # (2-NN balls), coverage and density as HAND_INCLUSIVE
    assert prdc(x, y, nearest_k=2) == {"precision": 0.5, "recall": 1.0, "density": 0.75, "coverage": 0.8}


def test_resolve_ks_defaults_and_edges():
    assert _resolve_ks(3, 5, "official", None) == (3, 5, False)
    assert _resolve_ks(3, 5, "official", 2) == (2, 2, False)
    assert _resolve_ks(3, 5, "prdc", None) == (5, 5, True)
    assert _resolve_ks(3, 7, "prdc", 4) == (4, 4, True)
    assert _resolve_ks(1, 1, "official", None) == (1, 1, False)  # k = 1 is allowed
    for args in ((0, 5, "official", None), (3, 0, "official", None), (3, 5, "official", 0), (3, 5, "prdc", 0)):
        with pytest.raises(InvalidInputError, match="k must be >= 1"):
            _resolve_ks(*args)
    # the defaults of prdc are k_pr = 3, k_dc = 5 (official)
    real, fake = np.random.default_rng(20).standard_normal((40, 3)), np.random.default_rng(21).standard_normal((30, 3))
    ref = {k: float(v) for k, v in _brute(real, fake, 3, 5).items()}
    assert prdc(real, fake) == pytest.approx(ref, abs=1e-12)


def test_mismatched_dimensions_are_refused():
    with pytest.raises(InvalidInputError, match="dimension"):
        prdc(np.zeros((10, 3)), np.ones((10, 4)))


def _weighted_case(seed, n=30, m=24, d=3):
    """Distinct rows with multiplicities whose mean differs from their median (a median would change density)."""
    rng = np.random.default_rng(seed)
    real, fake = rng.standard_normal((n, d)), rng.standard_normal((m, d)) + 0.3
    wx = rng.choice([1.0, 1.0, 2.0, 5.0], n)
    wy = rng.choice([1.0, 1.0, 3.0, 4.0], m)
    return real, fake, wx, wy


@pytest.mark.parametrize("fast", [False, True])
@pytest.mark.parametrize("ks", [(3, 5), (4, 4)])
def test_weighted_core_against_brute_force(fast, ks):
    """_prdc_core with row multiplicities (bootstrap replicates, prdc_dedup): averages weighted by multiplicity,
    density's ball counts by wx / mean(wx); with weights on one side only, too."""
    real, fake, wx, wy = _weighted_case(22)
    x, y = torch.from_numpy(real), torch.from_numpy(fake)
    for strict in (False, True):
        for w_real, w_fake in ((wx, wy), (wx, None), (None, wy)):
            ref = _brute_weighted(real, np.ones(30) if w_real is None else w_real, fake,
                                  np.ones(24) if w_fake is None else w_fake, *ks, strict=strict)
            got = _prdc_core(x, y, *ks, strict, 7, None if w_real is None else torch.from_numpy(w_real),
                             None if w_fake is None else torch.from_numpy(w_fake), fast=fast)
            assert got == pytest.approx({k: float(v) for k, v in ref.items()}, abs=1e-12), (strict, w_real is None)


@pytest.mark.parametrize("sparse_max,max_ambiguous", [(-1.0, 0.25), (-1.0, -1.0), (-1.0, 2.0), (2.0, 0.25)])
def test_float32_path_dense_masks_and_float64_fallback_with_weights(monkeypatch, sparse_max, max_ambiguous):
    """The float32 pass's dense masks (`_SPARSE_MAX` -1: every block), its float64 fallback (`_MAX_AMBIGUOUS` -1:
    every dense block redone in float64; 2: never) and its pair lists (`_SPARSE_MAX` 2), with and without
    weights, several blocks, both conventions: the brute-force values."""
    monkeypatch.setattr(manifold, "_SPARSE_MAX", sparse_max)
    monkeypatch.setattr(manifold, "_MAX_AMBIGUOUS", max_ambiguous)
    real, fake, wx, wy = _weighted_case(23)
    x, y = torch.from_numpy(real), torch.from_numpy(fake)
    for ks, strict in (((3, 5), False), ((5, 5), True), ((2, 2), False)):
        ref = _brute(real, fake, *ks, strict=strict)
        got = _prdc_core(x, y, *ks, strict, 7, fast=True)
        assert got == pytest.approx({k: float(v) for k, v in ref.items()}, abs=1e-12), (ks, strict)
        ref = _brute_weighted(real, wx, fake, wy, *ks, strict=strict)
        got = _prdc_core(x, y, *ks, strict, 7, torch.from_numpy(wx), torch.from_numpy(wy), fast=True)
        assert got == pytest.approx({k: float(v) for k, v in ref.items()}, abs=1e-12), (ks, strict, "weighted")


def test_degenerate_blocks_are_redone_in_float64(monkeypatch):
    """When more than a quarter of a dense block's pairs are undecided by the float32 bound (two tight clusters
    far from their common mean: every pair within a cluster is closer than the bound), the block is recomputed
    as one float64 block instead of pair by pair; the values stay the brute-force ones."""
    g = torch.Generator().manual_seed(24)
    centres = torch.randn(2, 8, generator=g, dtype=torch.float64) * 10
    x = centres[torch.arange(40) % 2] + 1e-3 * torch.randn(40, 8, generator=g, dtype=torch.float64)
    y = centres[torch.arange(30) % 2] + 1e-3 * torch.randn(30, 8, generator=g, dtype=torch.float64)
    calls = []
    orig = manifold._d2_block
    monkeypatch.setattr(manifold, "_d2_block", lambda *a: calls.append(a[0].shape[0]) or orig(*a))
    for ks, strict in (((3, 5), False), ((5, 5), True)):
        calls.clear()
        ref = {k: float(v) for k, v in _brute(x.numpy(), y.numpy(), *ks, strict=strict).items()}
        assert _prdc_core(x, y, *ks, strict, 16, fast=True) == pytest.approx(ref, abs=1e-12)
        assert calls == [16, 16, 8]  # one float64 block per block of rows, computed once for all its balls


@pytest.mark.parametrize("fast", [False, True])
def test_cached_real_radii_are_used(fast):
    """`real_radii` replaces the real set's k-NN pass: real radii of the right tag are used as given (radii
    of +inf put every fake in every real ball: precision = coverage = 1, density = N / k_dc), and the cached
    path gives the same values as computing them (several blocks); radii of another size or tag are ignored."""
    real, fake = np.random.default_rng(25).standard_normal((30, 4)), np.random.default_rng(26).standard_normal((20, 4))
    x, y = torch.from_numpy(real), torch.from_numpy(fake)
    tag = _radii_tag(fast, 7)
    inf = KnnRadii({3: torch.full((30,), float("inf"), dtype=torch.float64),
                    5: torch.full((30,), float("inf"), dtype=torch.float64)}, tag, 30)
    plain = prdc(x, y, fast=fast, chunk=7)
    got = prdc(x, y, fast=fast, chunk=7, real_radii=inf)
    assert got == {"precision": 1.0, "recall": plain["recall"], "density": 30 / 5, "coverage": 1.0}
    cached = knn_radii(x, (3, 5), fast=fast, chunk=7)
    assert cached.tag == tag
    assert prdc(x, y, fast=fast, chunk=7, real_radii=cached) == pytest.approx(plain, abs=1e-12)
    assert prdc(x[:20], y, fast=fast, chunk=7, real_radii=inf) == prdc(x[:20], y, fast=fast, chunk=7)  # other N
    wrong_tag = KnnRadii(inf.sq, _radii_tag(not fast, 7), 30)
    assert prdc(x, y, fast=fast, chunk=7, real_radii=wrong_tag) == plain


def _ring(n_side):
    """Integer points symmetric about the origin (their float64 mean is exactly 0)."""
    pts = [(a, b) for a in range(-n_side, n_side + 1) for b in range(-n_side, n_side + 1) if (a, b) != (0, 0)]
    return [(3 * a, 3 * b) for a, b in pts]


@pytest.mark.parametrize("strict", [False, True])
def test_a_pair_at_the_mean_against_a_ball_of_radius_zero(strict):
    """Six real copies of the mean (their 5-NN radius is 0) and a fake at the mean: the float32 error bound of
    that pair is 0 (both centred norms are 0), so it is settled at the bound's edge: inside for `<=`, outside
    for `<` (coverage and density of those balls), as the brute-force definition says."""
    real = np.array([(0, 0)] * 6 + _ring(4), dtype=np.float64)
    fake = np.array([(0, 0), (1, 2), (-2, 1), (7, 7), (-5, 4), (4, -8), (10, 1), (-11, -3)], dtype=np.float64)
    assert real.mean(0).tolist() == [0.0, 0.0]
    ref = {k: float(v) for k, v in _brute(real, fake, 5, 5, strict=strict).items()}
    for chunk in (4, 128):
        got = _prdc_core(torch.from_numpy(real), torch.from_numpy(fake), 5, 5, strict, chunk, fast=True)
        assert got == pytest.approx(ref, abs=1e-15), chunk
    other = _brute(real, fake, 5, 5, strict=not strict)
    assert ref["coverage"] != other["coverage"]  # the six balls of radius 0 decide


@pytest.mark.parametrize("far_side", ["fake", "real"])
def test_only_undecided_pairs_go_to_float64_and_each_pairs_own_bound_settles_most(monkeypatch, far_side):
    """The float32 real x fake pass sends a pair to float64 only when its approximate distance is within the
    pair's own error bound fac * (|x_i - mu|^2 + |y_j - mu|^2) of a ball radius (hence its exact distance within
    twice that bound), and the pair's own bound settles most of the candidates that the wider bound of its row
    (the largest fake norm) or of its fake column (the largest real norm) leaves open: one fake far out widens
    every row's bound (the real balls' passes), one real row far out every column's (the recall pass). Same
    values with and without these shortcuts."""
    from genbench.metrics.knn import _tol_factor

    g = torch.Generator().manual_seed(27)
    real = torch.randn(200, 16, generator=g, dtype=torch.float64)
    fake = torch.randn(150, 16, generator=g, dtype=torch.float64) * 1.1
    far = torch.full((1, 16), 30.0, dtype=torch.float64)
    if far_side == "fake":
        fake = torch.cat([fake, far])
    else:
        real = torch.cat([real, far])
    ref = {k: float(v) for k, v in _brute(real.numpy(), fake.numpy(), 3, 5).items()}
    mu = real.mean(0)
    tp = _tol_factor(16) * ((real - mu).square().sum(1)[:, None] + (fake - mu).square().sum(1)[None, :])
    d2 = torch.cdist(real, fake).square()
    rr = {k: v for k, v in knn_sq_radii(real, (3, 5), 64).items()}
    f3 = knn_sq_radii(fake, (3,), 64)[3]
    near = torch.stack([(d2 - rr[3][:, None]).abs(), (d2 - rr[5][:, None]).abs(), (d2 - f3[None, :]).abs()]).amin(0)

    sent = {True: [], False: []}  # by the pass: real balls (by row) / fake balls (recall, by column)
    cur = {}
    exact, orig = manifold._exact_pair_d2, manifold._inside_pairs
    monkeypatch.setattr(manifold, "_exact_pair_d2", lambda x, ia, y, ib: sent[cur["by_row"]].append((ia, ib)) or exact(x, ia, y, ib))
    counts = []
    for n_args in (13, 11, 10):  # all shortcuts; the pair's own bound only; neither

        def spy(*a, n=n_args):
            cur["by_row"] = a[4]
            return orig(*a[:n])

        monkeypatch.setattr(manifold, "_inside_pairs", spy)
        sent[True].clear(), sent[False].clear()
        assert prdc(real, fake, fast=True, chunk=64) == pytest.approx(ref, abs=1e-12)
        n = {}
        for by_row, pairs in sent.items():
            ia = torch.cat([s[0] for s in pairs] + [torch.zeros(0, dtype=torch.long)])
            ib = torch.cat([s[1] for s in pairs] + [torch.zeros(0, dtype=torch.long)])
            n[by_row] = ia.numel()
            if n_args != 10:
                assert bool((near[ia, ib] <= 2 * tp[ia, ib]).all()), (n_args, by_row)
        counts.append(n[far_side == "fake"])
    assert counts[0] <= counts[1] < counts[2] / 2, counts


@pytest.mark.parametrize("far", [1000.3, 1001.1])
def test_a_boundary_pair_of_a_row_far_from_the_mean_is_settled_exactly(far):
    """A real row far from the mean (~1000, among the integers 0..59; mean ~45.4) in a later block, whose 5-NN
    ball (to the row 55) has a fake exactly on its boundary (55): its float32 distance is off by 0.03-0.04 here
    (|x - mu|^2 ~ 9e5 in float32, one way for 1000.3, the other for 1001.1), far beyond the error bound of a
    row near the mean, so the pair must be settled with its own row's bound, then in float64: inside for `<=`,
    outside for `<`. 100 fakes far out keep the real x fake blocks on the pair-list path."""
    real = np.array(list(range(20)) + [far] + list(range(20, 60)), dtype=np.float64)[:, None]
    fake = np.array([55.0] + [2000.0 + 3 * i for i in range(100)])[:, None]
    for strict in (False, True):
        ref = {k: float(v) for k, v in _brute(real, fake, 5, 5, strict=strict).items()}
        assert ref != _brute(real, fake, 5, 5, strict=not strict)  # the boundary pair decides
        for chunk in (8, 16):
            got = _prdc_core(torch.from_numpy(real), torch.from_numpy(fake), 5, 5, strict, chunk, fast=True)
            assert got == pytest.approx(ref, abs=1e-15), (strict, chunk)


@pytest.mark.parametrize("n_near,fallback_blocks", [(8, [16]), (9, [16, 16])])
def test_the_float64_fallback_starts_above_a_quarter_of_a_block(monkeypatch, n_near, fallback_blocks):
    """Real rows 0-15 in one tight cluster, 16-31 in another far from it (blocks of 16 rows); 32 fakes, n_near of
    them in the first cluster: every pair within a cluster is undecided by the float32 bound, so the first block
    has exactly n_near / 32 of its pairs undecided and the second (32 - n_near) / 32. A block is redone in
    float64 only above a quarter: 8 / 32 is not, 9 / 32 is. Values: the brute-force ones either way."""
    g = torch.Generator().manual_seed(28)
    centres = torch.randn(2, 8, generator=g, dtype=torch.float64) * 10
    x = centres[torch.arange(32) // 16] + 1e-3 * torch.randn(32, 8, generator=g, dtype=torch.float64)
    y = centres[(torch.arange(32) >= n_near).long()] + 1e-3 * torch.randn(32, 8, generator=g, dtype=torch.float64)
    calls = []
    orig = manifold._d2_block
    monkeypatch.setattr(manifold, "_d2_block", lambda *a: calls.append(a[0].shape[0]) or orig(*a))
    ref = {k: float(v) for k, v in _brute(x.numpy(), y.numpy(), 3, 5).items()}
    assert _prdc_core(x, y, 3, 5, False, 16, fast=True) == pytest.approx(ref, abs=1e-12)
    assert calls == fallback_blocks


@pytest.mark.parametrize("n_near,dense_blocks", [(2, {16}), (3, {0, 16})])
def test_pair_lists_up_to_a_sixteenth_of_a_block(monkeypatch, n_near, dense_blocks):
    """The same two clusters: the first block of rows has exactly n_near / 32 of its entries as candidates (every
    pair within the cluster), the second most of them. Candidates go to a pair list up to 1/16 of the block
    (2 / 32), to a dense mask above it (3 / 32)."""
    g = torch.Generator().manual_seed(29)
    centres = torch.randn(2, 8, generator=g, dtype=torch.float64) * 10
    x = centres[torch.arange(32) // 16] + 1e-3 * torch.randn(32, 8, generator=g, dtype=torch.float64)
    y = centres[(torch.arange(32) >= n_near).long()] + 1e-3 * torch.randn(32, 8, generator=g, dtype=torch.float64)
    dense = set()
    orig = manifold._inside_pairs

    def spy(*a, **kw):
        pairs = orig(*a, **kw)
        if pairs is None:
            dense.add(a[8])  # the block's first row
        return pairs

    monkeypatch.setattr(manifold, "_inside_pairs", spy)
    ref = {k: float(v) for k, v in _brute(x.numpy(), y.numpy(), 3, 5).items()}
    assert _prdc_core(x, y, 3, 5, False, 16, fast=True) == pytest.approx(ref, abs=1e-12)
    assert dense == dense_blocks


def test_cached_radii_keep_every_rows_error_bound(monkeypatch):
    """With cached real radii the float32 pass still needs each real row's centred squared norm |x_i - mu|^2
    (its error bound): computed block by block for every row, the first included."""
    real, fake = np.random.default_rng(30).standard_normal((30, 4)) * 3, np.random.default_rng(31).standard_normal((20, 4))
    x, y = torch.from_numpy(real), torch.from_numpy(fake)
    want = (x - x.mean(0)).square().sum(1)
    seen = []
    orig = manifold._inside_pairs
    monkeypatch.setattr(manifold, "_inside_pairs", lambda *a, **kw: seen.append(a[10][1].clone()) or orig(*a, **kw))
    # radii of another set of the same size (any radii will do here): its float32 pass leaves other norms in
    # freed memory, which an uncomputed row would pick up
    for radii in (knn_radii(x * 5 + 1, (3, 5), fast=True), None):
        seen.clear()
        prdc(x, y, fast=True, chunk=7, real_radii=radii)
        assert seen and all(torch.allclose(s, want, rtol=1e-12, atol=0) for s in seen)


@pytest.mark.parametrize("fast", [False, True])
def test_per_row_items_of_the_hand_computed_case(fast):
    """`prdc_items`: the per-row terms of HAND_INCLUSIVE / HAND_STRICT (worked out above), whose means are the
    scores: precision and density (balls around it / k_dc) per fake row, recall and coverage per real row."""
    from genbench.metrics.manifold import prdc_items

    x, y = _t(REAL), _t(FAKE)
    want = {False: {"precision": [1, 1, 0, 0], "density": [1.0, 2.0, 0, 0], "recall": [1, 1, 1, 0, 0],
                    "coverage": [1, 1, 1, 1, 0]},
            True: {"precision": [0, 1, 0, 0], "density": [0.5, 1.5, 0, 0], "recall": [1, 1, 1, 0, 0],
                   "coverage": [1, 1, 1, 0, 0]}}
    for strict in (False, True):
        for chunk in (2, None):
            got = prdc_items(x, y, k_pr=1, k_dc=2, strict=strict, fast=fast, chunk=chunk)
            assert {k: v.tolist() for k, v in got.items()} == want[strict], (strict, chunk)
            assert all(v.dtype == torch.float64 for v in got.values())
    # the defaults: inclusive balls, k_pr = 3 (the hand case's boundary pairs; k_pr 3 and 4 differ there)
    got = prdc_items(x, y, k_dc=2, fast=fast)
    assert {k: float(v.mean()) for k, v in got.items()} == {k: float(v) for k, v in _brute(REAL_NP, FAKE_NP, 3, 2).items()}
    assert _brute(REAL_NP, FAKE_NP, 3, 2) != _brute(REAL_NP, FAKE_NP, 4, 2)
    assert _brute(REAL_NP, FAKE_NP, 3, 2) != _brute(REAL_NP, FAKE_NP, 3, 2, strict=True)
    # and k_dc = 5; means equal prdc's
    real, fake = np.random.default_rng(32).standard_normal((40, 3)), np.random.default_rng(33).standard_normal((30, 3))
    items = prdc_items(real, fake, fast=fast)
    assert {k: float(v.mean()) for k, v in items.items()} == pytest.approx(prdc(real, fake, fast=fast), abs=1e-15)
    assert {k: float(v.mean()) for k, v in items.items()} == pytest.approx(
        {k: float(v) for k, v in _brute(real, fake, 3, 5).items()}, abs=1e-12)
    with pytest.raises(InvalidInputError, match="k must be >= 1"):
        prdc_items(real, fake, k_pr=0)
    with pytest.raises(InvalidInputError, match="k must be >= 1"):
        prdc_items(real, fake, k_dc=0)
    with pytest.raises(InvalidInputError, match="dimension"):
        prdc_items(real, fake[:, :2])
