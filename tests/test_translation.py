"""The image-to-image translation track (issue #19): the dataset recipe, the bounding scores of the baselines,
the metric definitions against direct computations, cyclegan's save/load, and bad input."""

from __future__ import annotations

import json
import tomllib

import numpy as np
import pytest
import torch

from genbench.data import get_dataset
from genbench.errors import InvalidInputError
from genbench.models import MODELS, create_model, load_model
from genbench.models.translation import TranslationModel

pytestmark = pytest.mark.usefixtures("one_thread")

DS = "mnist-grey-colour"
# sha256 of both domains' bytes and labels (both splits) and the unpaired assignment: the recipe is deterministic
RECIPE_SHA256 = "10113cb602caea974425182fddc91d532d3e89d338c3df3a2e6ae24eebfc2e1b"
RECIPE_SHA256_EDGES = "fc25bf79ebfb6dad605db088128c5df16b37769ce1c0fb135209d83760b0fe2b"  # mnist-grey-edges
PAIRS = pytest.mark.parametrize("ds", [DS, "mnist-grey-edges"])

SUITE = """
name = "i2i-test"
budget = "smoke"
device = "cpu"
seeds = [0]
n_bootstrap = {nb}
[speed]
batch_size = 8
repeats = 1
warmup = 0
[datasets.{ds}]
features = "target-classifier"
n_samples = {n}
reference = "test"
metrics = ["i2i_fd", "content_kept", "cycle_l1", "i2i_coverage"]
{models}
"""


def _run(tmp_path, models, n=300, nb=0, ds=DS):
    from genbench.runner import Runner
    from genbench.results.store import ResultsStore
    from genbench.suite import parse_suite

    text = SUITE.format(ds=ds, n=n, nb=nb, models="\n".join(f"[models.{m}]" for m in models))
    suite = parse_suite(tomllib.loads(text), source="i2i-test.toml")
    out = tmp_path / "run"
    summary = Runner(suite, out, device="cpu", quiet=True, log=lambda m: None, workers=1).run()
    with ResultsStore(out) as store:
        f = store.metrics_frame()
    rows = {(r["model"], r["metric"]): r for r in f.to_dict("records")}
    return summary, rows


@PAIRS
def test_recipe_is_deterministic_and_domains_are_unpaired_in_training_paired_in_test(ds):
    from genbench.data.translation import build_domains, edge_map, recipe_sha256

    want = {DS: RECIPE_SHA256, "mnist-grey-edges": RECIPE_SHA256_EDGES}[ds]
    assert recipe_sha256(ds) == want and recipe_sha256() == RECIPE_SHA256  # the default is the first pair's
    name, ds = ds, get_dataset(ds)
    tr, te = ds.load("train"), ds.load("test")
    assert ds.info.modality == "translation" and te.paired and not tr.paired and ds.domains["a"] == "mnist-grey"
    assert tr.a.shape == tr.b.shape == (2000, 3, 28, 28) and te.a.shape == te.b.shape == (1000, 3, 28, 28)
    assert torch.equal(te.ya, te.yb) and te.meta["recipe_sha256"] == want and te.meta["recipe"].startswith(name)
    # disjoint source digits: domain a's training digits and domain b's come from different MNIST images
    d = build_domains()
    perm = d["pair_perm"]
    ia, ib = set(perm[:2000].tolist()), set(perm[2000:].tolist())
    assert not ia & ib and len(ia | ib) == 4000
    grey = d["grey"]["train_x"][:, 0]
    a_digits = {grey[i].numpy().tobytes() for i in ia}
    # every b training image is the colourised version of a digit that is not among a's training digits
    assert not any(grey[i].numpy().tobytes() in a_digits for i in list(ib)[:200])
    assert torch.equal(te.a[:, 0], te.a[:, 1])  # domain a is grey (equal channels)
    if name == DS:  # domain b is coloured
        assert (te.b[:, 0] - te.b[:, 1]).abs().max() > 0.5
    else:  # domain b is the edge map of the same digit, grey
        u8 = lambda t: (t * 255).round().to(torch.uint8).numpy()  # noqa: E731
        assert torch.equal(te.b[:, 0], te.b[:, 2]) and (edge_map(u8(te.a[:, 0])) == u8(te.b[:, 0])).all()
        assert (edge_map(u8(tr.a[:, 0])) != u8(tr.b[:, 0])).any(axis=(1, 2)).all()  # unpaired: no a's edges in b


def test_edge_map_is_the_3x3_morphological_gradient():
    from genbench.data.translation import edge_map

    x = np.zeros((2, 7, 7), np.uint8)
    x[0, 3, 3] = 200  # one pixel: the 3x3 dilation around it, nothing eroded
    x[1, 1:6, 1:6] = 255  # a 5x5 square: a 2-pixel ring each side of its border, the 3x3 core eroded to 255 - 255
    e = edge_map(x)
    want0 = np.zeros((7, 7), np.uint8)
    want0[2:5, 2:5] = 200
    assert e.dtype == np.uint8 and np.array_equal(e[0], want0)
    want1 = np.full((7, 7), 255, np.uint8)
    want1[2:5, 2:5] = 0  # inside: max = min = 255
    assert np.array_equal(e[1], want1)  # the square's border pixels see the 0 outside; the frame sees the square
    y = np.full((1, 4, 4), 90, np.uint8)  # constant image: only the zero padding at the border makes edges
    assert np.array_equal(edge_map(y)[0], np.pad(np.zeros((2, 2), np.uint8), 1, constant_values=90))


def test_metric_definitions_against_direct_counts():
    from genbench.metrics.translation import content_kept, cycle_l1

    rng = np.random.default_rng(0)
    probs = rng.random((50, 10))
    labels = rng.integers(0, 10, 50)
    assert content_kept(torch.from_numpy(probs), torch.from_numpy(labels)) == pytest.approx(
        sum(int(np.argmax(p) == y) for p, y in zip(probs, labels)) / 50)
    x, y = rng.random((4, 3, 5, 5)), rng.random((4, 3, 5, 5))
    want = sum(abs(a - b) for a, b in zip(x.ravel(), y.ravel())) / x.size
    assert cycle_l1(torch.from_numpy(x), torch.from_numpy(y)) == pytest.approx(want, rel=1e-12)


def _scores(n, rng, direction="a2b", n_bootstrap=200, **kw):
    from genbench.metrics.translation import TranslationScores

    src = torch.from_numpy(rng.random((n, 3, 4, 4)))
    probs = torch.from_numpy(rng.random((n, 10)))
    defaults = dict(source=src, source_labels=torch.from_numpy(rng.integers(0, 10, n)),
                    cycled=(src + torch.from_numpy(rng.normal(0, 0.1, src.shape))).clamp(0, 1),
                    fake_features=torch.from_numpy(rng.normal(0.3, 1, (n, 8))),
                    fake_probs=probs, real_features=torch.from_numpy(rng.normal(0, 1, (2 * n, 8))))
    defaults.update(kw)
    return TranslationScores(direction, classifier={"id": "c", "test_accuracy": 0.9}, num_classes=10,
                             n_bootstrap=n_bootstrap, **defaults)


def _by_name(results):
    return {r.name: r for r in results}


def test_bootstrap_intervals_contain_the_estimate_and_repeat():
    from genbench.metrics.translation import compute, cycle_l1, item_mean_ci

    s = _scores(300, np.random.default_rng(1))
    res = _by_name(compute(["i2i_fd", "content_kept", "cycle_l1"], s))
    for name in ("fd_a2b", "content_kept_a2b", "cycle_l1_a2b"):
        r = res[name]
        assert r.ci_low < r.value < r.ci_high, (name, r.ci_low, r.value, r.ci_high)
        assert r.protocol["n_bootstrap"] == 200 and r.protocol["bootstrap_alpha"] == 0.05
    again = _by_name(compute(["i2i_fd", "content_kept", "cycle_l1"], s))
    assert all((again[k].ci_low, again[k].ci_high) == (res[k].ci_low, res[k].ci_high) for k in res)  # seeded
    # independent reference for the item bootstrap: resample the per-image L1s with numpy, same estimator
    items = (s.source - s.cycled).abs().flatten(1).mean(1).numpy()
    assert items.mean() == pytest.approx(cycle_l1(s.source, s.cycled), rel=1e-12)
    reps = np.array([items[np.random.default_rng(k).integers(0, len(items), len(items))].mean() for k in range(4000)])
    lo, hi = np.quantile(reps, [0.025, 0.975]) - (reps.mean() - items.mean())
    ci = item_mean_ci(torch.from_numpy(items), 4000, seed=0)
    assert ci["ci_low"] == pytest.approx(lo, abs=0.15 * (hi - lo)) and ci["ci_high"] == pytest.approx(
        hi, abs=0.15 * (hi - lo))
    # no bootstrap asked: no interval
    plain = _by_name(compute(["i2i_fd", "content_kept", "cycle_l1"],
                             _scores(50, np.random.default_rng(1), n_bootstrap=0)))
    assert all(r.ci_low is None and r.ci_high is None and "n_bootstrap" not in r.protocol for r in plain.values())


@pytest.mark.filterwarnings("ignore:.*singular")  # constant features: zero covariances, on purpose
def test_bootstrap_interval_is_zero_width_for_a_deterministic_case():
    from genbench.metrics.translation import compute

    rng = np.random.default_rng(2)
    n = 100
    labels = torch.from_numpy(rng.integers(0, 10, n))
    s = _scores(n, rng, source_labels=labels, fake_probs=torch.nn.functional.one_hot(labels, 10).double(),
                real_features=torch.ones(200, 8), fake_features=torch.zeros(n, 8))
    s.cycled = s.source.clone()  # identity: every item's cycle error is 0
    res = _by_name(compute(["i2i_fd", "content_kept", "cycle_l1"], s))
    assert res["content_kept_a2b"].value == 1.0 and res["cycle_l1_a2b"].value == 0.0
    assert res["fd_a2b"].value == pytest.approx(8.0)  # |mu_r - mu_f|^2, both covariances 0
    for r in res.values():  # every replicate is the same number: the interval is the point
        assert r.ci_low == pytest.approx(r.value, abs=1e-9) and r.ci_high == pytest.approx(r.value, abs=1e-9)


def test_bootstrap_interval_shrinks_with_n():
    from genbench.metrics.translation import compute

    width = {}
    for n in (100, 1600):
        res = _by_name(compute(["i2i_fd", "content_kept", "cycle_l1"], _scores(n, np.random.default_rng(3))))
        width[n] = {k: r.ci_high - r.ci_low for k, r in res.items()}
    for k in width[100]:  # ~1/sqrt(n): 16x the items, about a quarter of the width
        assert width[1600][k] < 0.5 * width[100][k], (k, width)


# ---------------------------------------------------------------------------------------------- edges (issue 24)
def _brute_kid(real: np.ndarray, fake: np.ndarray) -> float:
    """Unbiased MMD^2 with the polynomial kernel (x.y / d + 1)^3, all rows (numpy, by the formula)."""
    d = real.shape[1]
    kxx, kyy, kxy = ((real @ real.T / d + 1) ** 3, (fake @ fake.T / d + 1) ** 3, (real @ fake.T / d + 1) ** 3)
    m, n = len(real), len(fake)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                 - 2 * kxy.mean())


@pytest.mark.filterwarnings("ignore:KID subset size clamped")  # 20 rows: the default subsets hold them all
def test_defaults_kid_per_image_l1_and_directions_by_hand():
    from genbench.metrics.translation import TRANSLATION_METRICS, TranslationScores, compute, cycle_l1_items

    rng = np.random.default_rng(4)
    x, y = rng.random((3, 2, 4, 4)), rng.random((3, 2, 4, 4))
    items = cycle_l1_items(torch.from_numpy(x), torch.from_numpy(y))  # one value per image, over its pixels
    assert items.shape == (3,) and items.numpy() == pytest.approx(np.abs(x - y).reshape(3, -1).mean(1), rel=1e-12)
    n = 20  # KID's default subsets (1000 rows) hold every row: the value is the all-rows unbiased MMD^2
    real, fake = rng.normal(size=(n, 8)), rng.normal(0.5, 1.0, size=(n, 8))
    src = torch.from_numpy(rng.random((n, 1, 2, 2)))
    probs = torch.nn.functional.one_hot(torch.arange(n) % 4, 10).double()
    s = TranslationScores("b2a", src, torch.arange(n) % 4, src.clone(), torch.from_numpy(fake), probs,
                          torch.from_numpy(real), {"id": "c"}, 10)
    assert (s.kid_subsets, s.kid_subset_size, s.seed, s.n_bootstrap, s.bootstrap_alpha) == (100, 1000, 0, 0, 0.05)
    res = _by_name(compute(TRANSLATION_METRICS, s))
    k = res["kid_b2a"]
    assert k.value == pytest.approx(_brute_kid(real, fake), rel=1e-9)
    assert (k.protocol["subsets"], k.protocol["subset_size"], k.protocol["seed"], k.protocol["n_reference"]) == (
        100, n, 0, n)
    assert res["fd_b2a"].protocol["n_reference"] == n and res["fd_b2a"].protocol["direction"] == "b2a"
    assert res["content_kept_b2a"].value == 1.0 and res["cycle_l1_b2a"].value == 0.0
    assert res["classes_covered_b2a"].value == 4
    want = {"fd_b2a": False, "kid_b2a": False, "content_kept_b2a": True, "cycle_l1_b2a": False,
            "classes_covered_b2a": True}
    assert {r.name: r.higher_is_better for r in res.values()} == want
    assert all(r.ci_low is None and "n_bootstrap" not in r.protocol for r in res.values())  # no bootstrap by default
    boot = _by_name(compute(["content_kept"], _scores(30, rng, n_bootstrap=20)))["content_kept_a2b"]
    assert boot.protocol["bootstrap_seed"] == 0 and boot.protocol["bootstrap_alpha"] == 0.05


def test_declarations_directions_headline_and_order():
    from genbench.metrics.registry import METRICS, display_order, headline, in_category
    from genbench.metrics.translation import TRANSLATION_METRICS

    want = {"i2i_fd": (False, "fd", "quality"), "i2i_kid": (False, "kid", None),
            "content_kept": (True, "content_kept", "quality"), "cycle_l1": (False, "cycle_l1", None),
            "i2i_coverage": (True, "classes_covered", "diversity")}
    for name in TRANSLATION_METRICS:
        spec = METRICS.get(name)
        hib, stem, cat = want[name]
        assert spec.higher_is_better is hib and spec.modalities == ("translation",)
        assert [(o.name, o.higher_is_better, o.category) for o in spec.declared] == [
            (f"{stem}_a2b", hib, cat), (f"{stem}_b2a", hib, cat)]
    assert headline("translation") == ["fd_a2b", "fd_b2a", "content_kept_a2b", "content_kept_b2a", "cycle_l1_a2b",
                                       "cycle_l1_b2a"]
    order = [n for n in display_order() if n.endswith(("_a2b", "_b2a"))]
    assert order == [f"{s}_{d}" for s in ("fd", "content_kept", "kid", "cycle_l1", "classes_covered")
                     for d in ("a2b", "b2a")]
    # a2b before b2a in each category; FD the most representative quality score, then content kept
    q = [n for n in in_category("quality") if n.endswith(("_a2b", "_b2a"))]
    assert q == ["fd_a2b", "fd_b2a", "content_kept_a2b", "content_kept_b2a"]
    assert in_category("diversity")[:4] == ("classes_covered_a2b", "modes_covered", "classes_covered",
                                            "classes_covered_b2a")
    assert in_category("quality")[:6] == ("fd", "fd_a2b", "fd_inf", "fd_b2a", "fd_text", "content_kept_a2b")


def test_intervals_clipped_to_the_range_one_bootstrap_refused_and_warnings_once():
    import warnings

    from genbench.errors import InvalidInputError
    from genbench.metrics._util import MetricWarning
    from genbench.metrics.translation import compute

    rng = np.random.default_rng(5)
    # translations that equal the reference: FD 0, and the bias shift takes the lower end below 0: clipped to 0
    feats = torch.from_numpy(rng.normal(size=(40, 3)))
    s = _scores(40, rng, n_bootstrap=50, real_features=feats, fake_features=feats.clone())
    fd = _by_name(compute(["i2i_fd"], s))["fd_a2b"]
    assert fd.value == pytest.approx(0.0, abs=1e-9) and fd.ci_low == 0.0 < fd.ci_high
    # 98 of 100 items right (content) and 98 images entirely changed by the cycle (L1 = 1): at seed 0 with 50
    # replicates the shifted upper end is 1.0006, clipped to 1
    labels = torch.arange(100) % 10
    probs = torch.nn.functional.one_hot(labels, 10).double()
    probs[:2] = torch.nn.functional.one_hot((labels[:2] + 1) % 10, 10).double()
    src = torch.zeros(100, 1, 2, 2, dtype=torch.float64)
    cycled = torch.ones_like(src)
    cycled[:2] = 0.0
    s = _scores(100, rng, n_bootstrap=50, source=src, cycled=cycled, source_labels=labels, fake_probs=probs)
    res = _by_name(compute(["content_kept", "cycle_l1"], s))
    for name in ("content_kept_a2b", "cycle_l1_a2b"):
        assert res[name].value == 0.98 and res[name].ci_high == 1.0 and res[name].ci_low < 0.98, res[name]
    for name in ("i2i_fd", "content_kept", "cycle_l1"):  # one replicate is no interval: refused, not dropped
        with pytest.raises(InvalidInputError, match="n_boot must be >= 2"):
            compute([name], _scores(30, rng, n_bootstrap=1))
    # 6 real rows in 8-d: singular; the point estimate may warn, its bootstrap replicates do not add warnings
    s0 = _scores(20, np.random.default_rng(6), n_bootstrap=0, real_features=torch.from_numpy(rng.normal(size=(6, 8))))
    counts = []
    for nb in (0, 20):
        s0.n_bootstrap = nb
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            compute(["i2i_fd"], s0)
        counts.append(sum(issubclass(w.category, MetricWarning) for w in caught))
    assert counts[0] >= 1 and counts[1] == counts[0], counts


def test_item_interval_is_the_seeded_bias_corrected_percentile_of_item_means():
    from genbench.metrics.translation import item_mean_ci

    # an independent replay of the documented draws: per replicate one index draw for each "set" (the items twice),
    # the replicate is the mean of the second; quantiles shifted by mean(replicates) - mean(values)
    v = torch.tensor([0.0, 0.0, 0.1, 0.2, 0.9, 1.0, 0.05, 0.0], dtype=torch.float64)  # skewed: median != mean
    g = torch.Generator().manual_seed(0)
    reps = []
    for _ in range(200):
        torch.randint(0, 8, (8,), generator=g)
        reps.append(float(v[torch.randint(0, 8, (8,), generator=g)].mean()))
    reps = np.array(reps)
    lo, hi = np.quantile(reps, [0.025, 0.975]) - (reps.mean() - float(v.mean()))
    ci = item_mean_ci(v, 200)  # seed 0, alpha 0.05 by default
    assert ci["ci_low"] == pytest.approx(lo, abs=1e-12) and ci["ci_high"] == pytest.approx(hi, abs=1e-12)
    assert item_mean_ci(v, 200, seed=1)["ci_low"] != ci["ci_low"]


def test_fd_interval_of_a_singular_reference_uses_the_exact_route():
    import warnings

    from genbench.metrics._util import MetricWarning
    from genbench.metrics.bootstrap import bootstrap_ci
    from genbench.metrics.frechet import frechet_distance_features
    from genbench.metrics.translation import compute

    # 6 reference rows (or 6 translations) in 8-d: a singular covariance, where only the features route is exact
    # (the statistics route is off by ~5e-9 relative there)
    rng = np.random.default_rng(7)
    for n_real, n_fake in ((6, 20), (20, 6)):
        s = _scores(n_fake, rng, n_bootstrap=20, real_features=torch.from_numpy(rng.normal(size=(n_real, 8))))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MetricWarning)
            fd = _by_name(compute(["i2i_fd"], s))["fd_a2b"]
            want = bootstrap_ci(lambda r, f: frechet_distance_features(r, f, route="features"), s.real_features,
                                s.fake_features, 20, 0, 0.05, bounds=(0.0, None))
        assert fd.ci_low == pytest.approx(want["ci_low"], rel=1e-11), (n_real, n_fake)
        assert fd.ci_high == pytest.approx(want["ci_high"], rel=1e-11), (n_real, n_fake)


@PAIRS
def test_identity_and_oracle_bound_the_scores(tmp_path, ds):
    from genbench.features import get_extractor
    from genbench.metrics.frechet import frechet_distance_features
    from genbench.pipeline.translation_job import heldout_indices

    n = 300
    summary, rows = _run(tmp_path, ["identity", "paired-oracle"], n=n, nb=20, ds=ds)
    assert not summary.failed, summary.failed
    v = lambda m, k: rows[(m, k)]["value"]  # noqa: E731
    for d in ("a2b", "b2a"):
        assert v("identity", f"cycle_l1_{d}") == 0.0 and v("paired-oracle", f"cycle_l1_{d}") == 0.0
        # the suite's n_bootstrap reaches the scores: identity's cycle error is 0 on every item (a zero-width
        # interval), the others' intervals hold their estimate
        assert rows[("identity", f"cycle_l1_{d}")]["ci_low"] == rows[("identity", f"cycle_l1_{d}")]["ci_high"] == 0.0
        for m, k in (("paired-oracle", f"fd_{d}"), ("identity", f"fd_{d}"), ("paired-oracle", f"content_kept_{d}")):
            r = rows[(m, k)]
            assert r["ci_low"] < r["value"] < r["ci_high"] and json.loads(r["protocol"])["n_bootstrap"] == 20, (m, k, r)
        # no realism in the target domain (n=300: colour 20x-50x the oracle's FD, edges ~17x)
        assert v("identity", f"fd_{d}") > {DS: 20, "mnist-grey-edges": 10}[ds] * v("paired-oracle", f"fd_{d}")
    pair = get_dataset(ds)
    te, tr = pair.load("test"), pair.load("train")
    for d, src, tgt in (("a2b", "a", "b"), ("b2a", "b", "a")):
        dom = pair.domains[tgt]
        ext = get_extractor(f"classifier:{dom}")
        # content kept of the oracle = the target classifier's accuracy on those paired held-out target images
        idx = heldout_indices(1000, n)
        right = (ext.predict_proba(te.domain(tgt)[idx]).argmax(1) == te.labels(src)[idx]).double().mean()
        assert v("paired-oracle", f"content_kept_{d}") == pytest.approx(float(right), abs=1e-12)
        assert rows[("paired-oracle", f"content_kept_{d}")]["protocol"]  # stated
        # FD of the oracle is a real-vs-real FD: independent real images of the target domain (not the held-out
        # ones, not the reference) against the same reference
        ref = ext.extract(tr.domain(tgt)).double()
        other_idx = _other_half(src_half=tgt)[heldout_indices(2000, n)]  # class-balanced, like the scored subset
        other = ext.extract(get_dataset(dom).load("train").x[other_idx]).double()
        rvr = frechet_distance_features(ref, other)
        assert v("paired-oracle", f"fd_{d}") == pytest.approx(rvr, rel=0.35)


def _other_half(src_half: str):
    """Training digits of the domain-`src_half` dataset that the translation train split gave to the other domain."""
    from genbench.data.translation import build_domains

    perm = build_domains()["pair_perm"]
    return (perm[:2000] if src_half == "b" else perm[2000:]).sort().values


@pytest.mark.slow
@PAIRS
def test_oracle_content_kept_equals_classifier_accuracy_on_the_whole_split(tmp_path, ds):
    from genbench.features import get_extractor

    summary, rows = _run(tmp_path, ["paired-oracle"], n=1000, ds=ds)
    assert not summary.failed
    doms = get_dataset(ds).domains
    for d, dom in (("a2b", doms["b"]), ("b2a", doms["a"])):
        assert rows[("paired-oracle", f"content_kept_{d}")]["value"] == pytest.approx(
            get_extractor(f"classifier:{dom}").accuracy, abs=1e-12)


def test_cyclegan_save_load_translates_identically_and_seeds_repeat(tmp_path):
    ds = get_dataset(DS)
    tr = ds.load("train")
    small = type(tr)(tr.a[:64], tr.b[:64], tr.ya[:64], tr.yb[:64], False, tr.info, "train", tr.source)
    x = ds.load("test").a[:6]
    m = create_model("cyclegan", ds.info, "smoke", {"steps": 2})
    m.fit(small, seed=3)
    m.save(tmp_path / "m")
    again = load_model(tmp_path / "m")
    for d in ("a2b", "b2a"):
        assert torch.equal(m.translate(x, d), again.translate(x, d))
    m2 = create_model("cyclegan", ds.info, "smoke", {"steps": 2})
    m2.fit(small, seed=3)
    assert torch.equal(m.translate(x, "a2b"), m2.translate(x, "a2b"))
    assert m.history.records[-1]["cycle"] > 0 and m.num_params < sum(
        p.numel() for mod in m.modules().values() for p in mod.parameters())  # generators only


def test_cyclegan_generator_variants_keep_the_shape_and_refuse_indivisible_sides():
    import dataclasses

    from reference_models.cyclegan import ResnetGenerator

    x = torch.rand(2, 3, 28, 28)
    n_params = {}
    for n_down in (0, 1, 2):
        for skips in (False, True):
            g = ResnetGenerator(3, 4, 1, n_down, skips)
            with torch.no_grad():
                y = g(x)
            assert y.shape == x.shape and 0 <= float(y.min()) and float(y.max()) <= 1
            n_params[(n_down, skips)] = sum(p.numel() for p in g.parameters())
    # skips add the 1x1 mixing convs (one per upsampling), nothing without upsamplings
    assert n_params[(0, True)] == n_params[(0, False)] and n_params[(1, True)] > n_params[(1, False)]
    bad = dataclasses.replace(get_dataset(DS).info, shape=(3, 30, 30))
    with pytest.raises(InvalidInputError, match="n_down=2 needs image sides divisible by 4, got 30x30"):
        create_model("cyclegan", bad, "smoke", {"n_down": 2})


def test_cyclegan_residual_generator_starts_as_a_colour_map_and_discriminator_depths():
    from reference_models.cyclegan import RESIDUAL_GAIN, PatchDiscriminator, ResnetGenerator
    from reference_models.nets import reset_parameters

    torch.manual_seed(0)
    x = torch.rand(2, 3, 28, 28)
    g = ResnetGenerator(3, 4, 1, 1, True, residual=True)
    reset_parameters(g)
    with torch.no_grad():  # zero correction at the start: the per-pixel map sigmoid(gain * (2x - 1)), no mixing
        assert torch.allclose(g(x), torch.sigmoid(RESIDUAL_GAIN * (2 * x - 1)), atol=1e-6)
        g.colour.weight.add_(0.1)
        g.head[-1].weight.normal_()
        assert not torch.allclose(g(x), torch.sigmoid(RESIDUAL_GAIN * (2 * x - 1)), atol=1e-3)  # both are trained
    assert sum(p.numel() for p in g.parameters()) > sum(p.numel() for p in ResnetGenerator(3, 4, 1, 1, True).parameters())
    # one logit per patch: 7x7 patches with 2 or 3 layers (two stride-2 convs), 14x14 with 1 (receptive field 10 px)
    shapes = {k: tuple(PatchDiscriminator(3, 4, k)(x).shape) for k in (1, 2, 3)}
    assert shapes == {1: (2, 1, 14, 14), 2: (2, 1, 7, 7), 3: (2, 1, 7, 7)}
    # without instance norm (1 layer) the field is local: pixel (0, 0) reaches the 2x2 corner logits only
    d = PatchDiscriminator(3, 4, 1).eval()
    y = x.clone()
    y[:, :, 0, 0] += 1.0
    with torch.no_grad():
        changed = ((d(y) - d(x)).abs().amax((0, 1)) > 0).nonzero().tolist()
    assert changed == [[0, 0], [0, 1], [1, 0], [1, 1]]
    with pytest.raises(InvalidInputError, match="d_layers must be 1, 2 or 3, got 4"):
        create_model("cyclegan", get_dataset(DS).info, "smoke", {"d_layers": 4})


def test_bad_input_is_refused_clearly():
    ds = get_dataset(DS)
    m = create_model("identity", ds.info, "smoke")
    with pytest.raises(InvalidInputError, match=r"shape \(2, 1, 28, 28\).*\(n, 3, 28, 28\)"):
        m.translate(torch.zeros(2, 1, 28, 28), "a2b")
    with pytest.raises(InvalidInputError, match="direction 'up'"):
        m.translate(torch.zeros(2, 3, 28, 28), "up")
    with pytest.raises(InvalidInputError, match="non-finite"):
        m.translate(torch.full((2, 3, 28, 28), float("nan")), "a2b")
    with pytest.raises(InvalidInputError, match="not in the paired held-out split"):
        create_model("paired-oracle", ds.info, "smoke").translate(torch.rand(2, 3, 28, 28), "a2b")
    from genbench.suite import SuiteError, parse_suite

    bad = SUITE.format(ds=DS, n=100, nb=0, models="[models.identity]")
    bad = bad.replace('"target-classifier"', '"classifier:mnist"')
    with pytest.raises(SuiteError, match="target-classifier"):
        parse_suite(tomllib.loads(bad))
    wrong_model = SUITE.format(ds=DS, n=100, nb=0, models="[models.gan]")
    with pytest.raises(SuiteError, match="translation"):
        parse_suite(tomllib.loads(wrong_model))


class _WrongShape(TranslationModel):
    name = "test-i2i-wrong-shape"
    family = "user"

    def _translate(self, x, direction):
        return x[:, :1]


class _NaN(TranslationModel):
    name = "test-i2i-nan"
    family = "user"

    def _translate(self, x, direction):
        return torch.full_like(x, float("nan"))


def test_a_translator_returning_wrong_shape_or_nan_fails_its_job_not_the_run(tmp_path):
    from genbench.models import register_model

    for cls in (_WrongShape, _NaN):
        register_model(cls)
    try:
        summary, rows = _run(tmp_path, ["identity", _WrongShape.name, _NaN.name], n=50)
    finally:
        for cls in (_WrongShape, _NaN):
            MODELS._items.pop(cls.name, None)
    failed = dict(summary.failed)
    assert len(failed) == 2 and ("identity", "cycle_l1_a2b") in rows
    shape_err = failed[f"{DS}/{_WrongShape.name}/seed0"]
    assert "returned shape (50, 1, 28, 28) for input (50, 3, 28, 28)" in shape_err
    assert "NaN" in failed[f"{DS}/{_NaN.name}/seed0"]


def test_translation_scores_get_the_tolerances_of_their_kind():
    """genbench/results/tolerances.toml: per-direction realism as fd (5%) and kid (5%: relative, the classifier
    features' KID is in the hundreds), content kept as an absolute share (0.02), class coverage as classes_covered
    (half a class); cycle L1 falls to the 2% default. Every translation result name is covered in both directions."""
    from genbench.results.tolerance import Tolerance, load_tolerances, tolerance_for

    t = load_tolerances()
    for d in ("a2b", "b2a"):
        assert tolerance_for(f"fd_{d}", t) == tolerance_for("fd", t) == Tolerance(0.05, True)
        assert tolerance_for(f"kid_{d}", t) == Tolerance(0.05, True) != tolerance_for("kid", t)
        assert tolerance_for(f"content_kept_{d}", t) == Tolerance(0.02, False)
        assert tolerance_for(f"classes_covered_{d}", t) == tolerance_for("classes_covered", t) == Tolerance(0.5, False)
        assert f"cycle_l1_{d}" not in t and tolerance_for(f"cycle_l1_{d}", t) == Tolerance(0.02, True)


@PAIRS
def test_pair_and_domain_datasets_describe_what_they_load(ds):
    """The registry's view of the translation data matches what loads: sizes, lengths, value range, classes, the
    domain / label accessors, each domain's recipe text, the modality test and the refusal of unknown names."""
    from genbench.data.translation import DomainDataset, TranslationPair, is_translation

    pair = get_dataset(ds)
    tr, te = pair.load("train"), pair.load("test")
    assert pair.sizes == {"train": len(tr), "test": len(te)} == {"train": 4000, "test": 2000}
    assert tr.x.shape[0] == len(tr) and tr.domain("a") is tr.a and tr.domain("b") is tr.b
    assert tr.labels("a") is tr.ya and tr.labels("b") is tr.yb and not torch.equal(tr.ya[:200], tr.yb[:200])
    for info in (pair.info, tr.info):
        assert info.value_range == (0.0, 1.0) and info.num_classes == 10 and is_translation(info)
    for which in ("a", "b"):
        dom = get_dataset(pair.domains[which])
        split = dom.load("test")
        assert not is_translation(dom.info) and dom.info.modality == "image"
        assert dom.sizes == {"train": len(dom.load("train").x), "test": len(split.x)} == {"train": 4000, "test": 1000}
        assert dom.info.value_range == (0.0, 1.0) and dom.info.num_classes == 10 and split.x.max() <= 1.0
        assert torch.equal(split.x, te.domain(which)) and torch.equal(split.y, te.labels(which))
        # a domain's recipe is the text of the pair that introduced it: edges its own, grey and colour the first
        want = "mnist-grey-edges" if pair.domains[which] == "mnist-edges" else DS
        assert split.meta["recipe"].startswith(want + " v1:") and split.meta["variant"].endswith("-v1")
    with pytest.raises(InvalidInputError, match="'blue'.*'grey', 'colour', 'edges'"):
        DomainDataset("blue")
    with pytest.raises(InvalidInputError, match="'mnist-grey-blue'.*'mnist-grey-colour', 'mnist-grey-edges'"):
        TranslationPair("mnist-grey-blue")
