"""MAUVE (genbench/metrics/mauve.py) against the mauve-text package on the same features and settings, and its
frontier and area against the package's own functions and a closed case."""

import numpy as np
import pytest
import torch

pytest.importorskip("faiss")
mauve_pkg = pytest.importorskip("mauve")
from mauve.compute_mauve import get_divergence_curve_for_multinomials  # noqa: E402
from sklearn.metrics import auc  # noqa: E402

from genbench.errors import InvalidInputError  # noqa: E402
from genbench.metrics import EvalContext, compute_metrics  # noqa: E402
from genbench.metrics.mauve import auto_buckets, divergence_frontier, mauve, mauve_from_histograms  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _one_faiss_thread():
    import faiss

    n = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(n)


def _feats(shift, n_p=300, n_q=360, d=24, seed=0):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(n_q, d))
    p = rng.normal(size=(n_p, d)) + shift * (np.arange(d) < 4)
    return p, q


@pytest.mark.parametrize("shift,buckets,seed", [(0.0, "auto", 25), (0.5, "auto", 3), (2.0, 12, 7)])
def test_equals_the_mauve_package_on_the_same_features(shift, buckets, seed):
    p, q = _feats(shift, seed=seed)
    ref = mauve_pkg.compute_mauve(p_features=p, q_features=q, num_buckets=buckets, seed=seed)
    got = mauve(p, q, buckets=buckets, seed=seed)
    assert got["buckets"] == ref.num_buckets
    np.testing.assert_array_equal(got["p_hist"], ref.p_hist)
    np.testing.assert_array_equal(got["q_hist"], ref.q_hist)
    assert got["mauve"] == pytest.approx(ref.mauve, rel=1e-12)


def test_frontier_and_area_against_the_package_functions():
    rng = np.random.default_rng(1)
    for _ in range(5):
        p, q = rng.dirichlet(np.full(30, 0.5)), rng.dirichlet(np.full(30, 0.5))
        p[:3] = 0
        p /= p.sum()  # empty clusters on one side
        ref = get_divergence_curve_for_multinomials(p, q, np.linspace(1e-6, 1 - 1e-6, 25), 5)
        np.testing.assert_allclose(divergence_frontier(p, q), ref, rtol=1e-12, atol=0)
        x, y = ref.T
        i, j = np.argsort(x), np.argsort(y)
        want = 0.5 * (auc(x[i], y[i]) + auc(y[j], x[j]))
        assert mauve_from_histograms(p, q) == pytest.approx(want, rel=1e-12)


def test_closed_cases():
    half = np.array([0.5, 0.5, 0.0, 0.0])
    other = np.array([0.0, 0.0, 0.5, 0.5])
    # disjoint supports: KL(Q || R_w) = -log(1 - w), so the curve is (1 - w)^5, w^5 and the area is small
    assert mauve_from_histograms(half, other) < 0.05
    # P = Q: every interior point is (1, 1); the area read along x then has ties at x = 1, ordered by numpy's
    # default argsort in both implementations
    x, y = get_divergence_curve_for_multinomials(half, half, np.linspace(1e-6, 1 - 1e-6, 25), 5).T
    i, j = np.argsort(x), np.argsort(y)
    assert mauve_from_histograms(half, half) == pytest.approx(0.5 * (auc(x[i], y[i]) + auc(y[j], x[j])), rel=1e-12)
    assert auto_buckets(1000, 300) == 30 and auto_buckets(5, 9) == 2


def test_bad_input():
    p, q = _feats(0.0, n_p=20, n_q=20)
    with pytest.raises(InvalidInputError, match="at least 2"):
        mauve(p[:1], q)
    with pytest.raises(InvalidInputError, match="buckets"):
        mauve(p, q, buckets=1)
    with pytest.raises(InvalidInputError, match="dimension"):
        mauve(p, q[:, :5])


def test_registered_for_text_features():
    p, q = _feats(0.5, seed=4)
    ctx = EvalContext(real_features=torch.from_numpy(q), fake_features=torch.from_numpy(p), modality="text", seed=4,
                      feature_protocol={"id": "char-ngram"})
    (res,) = compute_metrics(["mauve"], ctx)
    assert res.value == mauve(p, q, seed=4)["mauve"] and res.higher_is_better
    assert res.protocol["buckets"] == 30 and res.protocol["features"] == "char-ngram"


def test_declaration_higher_is_better_quality_on_text():
    from genbench.metrics import registry as reg

    spec, out = reg.get_metric("mauve"), reg.output("mauve")
    assert (spec.higher_is_better, spec.modalities, spec.requires) == (True, ("text",), ("real_features", "fake_features"))
    assert (out.higher_is_better, out.category, out.label) == (True, "quality", "MAUVE")
    q = reg.in_category("quality")  # rank 8: after the text precision (6)
    assert q.index("precision_text") < q.index("mauve")


def test_small_norm_and_zero_rows_as_the_package():
    # rows are L2-normalised whatever their norm (norms < 1 here); a zero row stays zero (sklearn's normalize)
    p, q = _feats(0.5, n_p=200, n_q=220, seed=6)
    p, q = p * 0.01, q * 0.01
    p[7] = 0.0
    ref = mauve_pkg.compute_mauve(p_features=p, q_features=q, seed=6)
    got = mauve(p, q, seed=6)
    np.testing.assert_array_equal(got["p_hist"], ref.p_hist)
    assert got["mauve"] == pytest.approx(ref.mauve, rel=1e-12)


def test_fewest_components_reaching_the_explained_variance():
    from genbench.metrics.mauve import quantise

    # rows +-e_1..+-e_4 (after centring): four components of exactly 1/4 of the variance each
    e = np.eye(4)
    x = np.concatenate([e, -e])
    for ev, dims in ((0.5, 2), (0.75, 3), (0.6, 3), (0.25, 1)):
        assert quantise(x[:4], x[4:], 2, explained_variance=ev)[2] == dims
    # identical rows: no variance at all (a NaN ratio), one dimension, as the package's argmax over it gives
    same = np.tile([0.0, 2.0, 0.0], (6, 1))
    assert quantise(same[:3], same[3:], 2)[2] == 1


def test_bucket_and_row_bounds():
    p, q = _feats(1.0, n_p=2, n_q=3, seed=2)
    r = mauve(p, q, buckets=2)  # 2 rows on one side and 2 buckets are enough
    assert r["buckets"] == 2 and sum(r["p_hist"]) == pytest.approx(1.0) and len(r["q_hist"]) == 2
    assert mauve(p, q, buckets=5)["buckets"] == 5  # as many buckets as rows
    assert len(mauve(q, p, buckets=2)["q_hist"]) == 2  # 2 human rows are enough too
    with pytest.raises(InvalidInputError, match=r"buckets must be in \[2, 5\]"):
        mauve(p, q, buckets=6)
    with pytest.raises(InvalidInputError, match="at least 2 feature rows on each side"):
        mauve(p[:1], np.concatenate([q, q]))
    with pytest.raises(InvalidInputError, match="1-D and of one length"):
        divergence_frontier([0.5, 0.5], [0.2, 0.3, 0.5])
    with pytest.raises(InvalidInputError, match="1-D and of one length"):
        divergence_frontier([[0.5, 0.5]], [[0.5, 0.5]])
    ctx = EvalContext(real_features=torch.from_numpy(q), fake_features=torch.from_numpy(p), modality="text",
                      mauve_buckets=3)
    (res,) = compute_metrics(["mauve"], ctx)
    assert res.protocol["buckets"] == 3 and res.protocol["buckets_rule"] == "set"
    ctx = EvalContext(real_features=torch.from_numpy(q), fake_features=torch.from_numpy(p), modality="text")
    assert compute_metrics(["mauve"], ctx)[0].protocol["buckets_rule"] == "max(2, round(min(n_p, n_q) / 10))"


def test_defaults_are_the_package_defaults(monkeypatch):
    import inspect

    import faiss

    p, q = _feats(0.5, n_p=120, n_q=150, seed=8)
    ref = mauve_pkg.compute_mauve(p_features=p, q_features=q)  # the package's default seed (25) on both sides
    assert mauve(p, q)["mauve"] == pytest.approx(ref.mauve, rel=1e-12)
    defaults = {k: v.default for k, v in inspect.signature(mauve_pkg.compute_mauve).parameters.items()}
    seen = []
    real_kmeans = faiss.Kmeans

    def spy(d, k, **kw):
        seen.append(kw)
        return real_kmeans(d, k, **kw)

    monkeypatch.setattr(faiss, "Kmeans", spy)
    mauve(p, q)
    (kw,) = seen
    assert (kw["nredo"], kw["niter"], kw["seed"]) == (defaults["kmeans_num_redo"], defaults["kmeans_max_iter"],
                                                      defaults["seed"] + 2)
