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
