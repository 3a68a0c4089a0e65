"""Per-class recall and coverage (`intra_recall_coverage`): against a brute-force NumPy computation of k-NN recall
and coverage class by class, against the unconditional `prdc` applied to each class by hand, analytic cases (a
model that swaps classes keeps the unconditional recall and coverage at 1 but gets 0 within each class; a model
returning one item per class gets recall exactly 1/n_c), its registry entry, protocol and directions, and the
clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genbench.errors import InvalidInputError
from genbench.metrics.conditional import intra_class_recall_coverage
from genbench.metrics.manifold import prdc


def _brute(real: np.ndarray, fake: np.ndarray, k_pr: int, k_dc: int) -> tuple[float, float]:
    """Improved recall (Kynkaanniemi et al. 2019: share of real items inside some fake item's k_pr-NN ball among the
    fakes) and coverage (Naeem et al. 2020: share of real items whose k_dc-NN ball among the reals holds a fake),
    balls inclusive, from full distance matrices."""
    def d(a, b):
        return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))

    r_fake = np.sort(d(fake, fake), 1)[:, k_pr]  # column 0 is the item itself
    r_real = np.sort(d(real, real), 1)[:, k_dc]
    d_rf = d(real, fake)
    recall = float((d_rf <= r_fake[None, :]).any(1).mean())
    coverage = float((d_rf.min(1) <= r_real).mean())
    return recall, coverage


def _data(seed: int = 0, K: int = 3, n_real: int = 40, n_fake: int = 30, dim: int = 4):
    g = np.random.default_rng(seed)
    centres = g.normal(scale=6.0, size=(K, dim))
    ry = np.repeat(np.arange(K), n_real)
    fy = np.repeat(np.arange(K), n_fake)
    rf = centres[ry] + g.normal(size=(len(ry), dim))
    ff = centres[fy] + 1.3 * g.normal(size=(len(fy), dim)) + 0.4
    return rf, ry, ff, fy


def test_against_brute_force_numpy_and_prdc_per_class_by_hand():
    rf, ry, ff, fy = _data()
    r = intra_class_recall_coverage(rf, ry, ff, fy, k_pr=3, k_dc=5)
    want_r, want_c = {}, {}
    for c in range(3):
        want_r[c], want_c[c] = _brute(rf[ry == c], ff[fy == c], 3, 5)
        by_hand = prdc(torch.from_numpy(rf[ry == c]), torch.from_numpy(ff[fy == c]), k_pr=3, k_dc=5)
        assert r["per_class"][c] == {"recall": pytest.approx(want_r[c], abs=1e-12),
                                     "coverage": pytest.approx(want_c[c], abs=1e-12)}
        assert r["per_class"][c]["recall"] == by_hand["recall"] and r["per_class"][c]["coverage"] == by_hand["coverage"]
    assert r["recall"] == pytest.approx(np.mean(list(want_r.values())), abs=1e-12)
    assert r["coverage"] == pytest.approx(np.mean(list(want_c.values())), abs=1e-12)
    assert 0 < r["recall"] < 1 and 0 < r["coverage"] < 1  # a case that is not trivially 0 or 1
    assert r["n_real"] == {0: 40, 1: 40, 2: 40} and r["n_fake"] == {0: 30, 1: 30, 2: 30}
    # the prdc package's convention (strict balls, one k) is passed through
    s = intra_class_recall_coverage(rf, ry, ff, fy, k_pr=3, k_dc=5, convention="prdc")
    for c in range(3):
        assert s["per_class"][c]["recall"] == prdc(torch.from_numpy(rf[ry == c]), torch.from_numpy(ff[fy == c]),
                                                   convention="prdc", nearest_k=5)["recall"]


def test_analytic_cases_swapped_classes_and_one_item_per_class():
    rf, ry, _, _ = _data(n_real=30)
    # the real items themselves, with their own labels: recall and coverage 1 in every class
    same = intra_class_recall_coverage(rf, ry, rf, ry)
    assert same["recall"] == 1.0 and same["coverage"] == 1.0
    # the real items of class c+1 labelled c: the unconditional scores stay 1, every class gets 0 (far clusters)
    swapped = (ry + 1) % 3
    uncond = prdc(torch.from_numpy(rf), torch.from_numpy(rf))
    assert uncond["recall"] == 1.0 and uncond["coverage"] == 1.0
    r = intra_class_recall_coverage(rf, ry, rf, swapped)
    assert r["recall"] == 0.0 and r["coverage"] == 0.0
    # within-class collapse: every sample of class c is the same real item of class c. The fakes' k-NN radius is 0,
    # so recall counts only that item: exactly 1/n_c. Coverage: the real items whose own 5-NN ball holds it.
    fake = np.concatenate([np.repeat(rf[ry == c][:1], 10, 0) for c in range(3)])
    fy = np.repeat(np.arange(3), 10)
    r = intra_class_recall_coverage(rf, ry, fake, fy)
    assert r["recall"] == pytest.approx(1 / 30, abs=1e-15)
    for c in range(3):
        real_c = rf[ry == c]
        rad = np.sort(np.sqrt(((real_c[:, None] - real_c[None]) ** 2).sum(-1)), 1)[:, 5]
        assert r["per_class"][c]["coverage"] == pytest.approx(
            float((np.sqrt(((real_c - real_c[0]) ** 2).sum(-1)) <= rad).mean()), abs=1e-15)
    assert r["coverage"] < 0.5


def test_errors_name_the_class_and_the_counts():
    rf, ry, ff, fy = _data()
    with pytest.raises(InvalidInputError, match=r"class 2: 40 real and 3 generated items.*more than 3 generated"):
        intra_class_recall_coverage(rf, ry, ff[:63], fy[:63])
    with pytest.raises(InvalidInputError, match="must be integer class labels"):
        intra_class_recall_coverage(rf, ry.astype(float), ff, fy)
    with pytest.raises(InvalidInputError, match="differ in dimension"):
        intra_class_recall_coverage(rf, ry, ff[:, :3], fy)


def test_registered_with_protocol_directions_and_skipped_without_conditions():
    from genbench.metrics import METRICS, EvalContext, compute_metrics
    from genbench.metrics.conditional import CONDITIONAL_METRICS

    assert "intra_recall_coverage" in CONDITIONAL_METRICS
    outs = {o.name: o for o in METRICS.get("intra_recall_coverage").declared}
    assert set(outs) == {"intra_recall", "intra_coverage"}
    assert all(o.higher_is_better and o.category == "diversity" for o in outs.values())
    rf, ry, ff, fy = _data()
    ctx = EvalContext(real_features=torch.from_numpy(rf), fake_features=torch.from_numpy(ff),
                      real_labels=torch.from_numpy(ry), fake_labels=torch.from_numpy(fy),
                      condition_protocol={"conditions": "uniform", "num_classes": 3})
    res = {m.name: m for m in compute_metrics(["intra_recall_coverage"], ctx)}
    want = intra_class_recall_coverage(rf, ry, ff, fy, k_pr=ctx.k_pr, k_dc=ctx.k_dc)
    assert res["intra_recall"].value == want["recall"] and res["intra_coverage"].value == want["coverage"]
    assert res["intra_recall"].higher_is_better and res["intra_coverage"].higher_is_better
    p = res["intra_recall"].protocol
    assert p["k"] == ctx.k_pr and p["conditions"] == "uniform" and p["n_fake_per_class"] == {0: 30, 1: 30, 2: 30}
    assert res["intra_coverage"].protocol["k"] == ctx.k_dc
    assert res["intra_recall"].extra["per_class"] == {str(c): v["recall"] for c, v in want["per_class"].items()}
    bare = EvalContext(real_features=torch.from_numpy(rf), fake_features=torch.from_numpy(ff),
                       real_labels=torch.from_numpy(ry))
    assert compute_metrics(["intra_recall_coverage"], bare) == []
    assert "intra_recall_coverage" in bare.skipped
    small = EvalContext(real_features=torch.from_numpy(rf), fake_features=torch.from_numpy(ff[:63]),
                        real_labels=torch.from_numpy(ry), fake_labels=torch.from_numpy(fy[:63]))
    assert compute_metrics(["intra_recall_coverage"], small) == []
    assert "class 2" in str(small.skipped["intra_recall_coverage"])


def test_default_ks_and_the_smallest_classes_allowed():
    rf, ry, ff, fy = _data()
    default = intra_class_recall_coverage(rf, ry, ff, fy)  # k_pr = 3, k_dc = 5 by default
    assert default == intra_class_recall_coverage(rf, ry, ff, fy, k_pr=3, k_dc=5)
    assert default != intra_class_recall_coverage(rf, ry, ff, fy, k_pr=4, k_dc=5)
    assert default != intra_class_recall_coverage(rf, ry, ff, fy, k_pr=3, k_dc=6)
    # more real items than the largest k (6 > 5) and more generated items than k_pr (4 > 3) per class: enough
    rf, ry, ff, fy = _data(seed=1, n_real=6, n_fake=4)
    r = intra_class_recall_coverage(rf, ry, ff, fy)
    for c in range(3):
        want = _brute(rf[ry == c], ff[fy == c], 3, 5)
        assert (r["per_class"][c]["recall"], r["per_class"][c]["coverage"]) == pytest.approx(want, abs=1e-12)
    with pytest.raises(InvalidInputError, match=r"class 0: 5 real and 4 generated items.*more than 5 real and more "
                                                r"than 3 generated"):
        intra_class_recall_coverage(rf[1:], ry[1:], ff, fy)
