"""The paired bootstrap of a feature metric's change (genbench/results/paired.py) and its use by compare / check:
identical inputs give exactly 0 with a zero-width interval; sharing the reference and correlated fake sets make
the paired interval much narrower than independent bootstraps; a known shift is measured exactly and detected;
the per-item P/R/D/C replicates match the analytic bootstrap of a mean; stores without features fall back
with the reason; directions and tolerance boundaries."""

import json
import math

import numpy as np
import pytest
import torch

import runner_dummies
from genbench.results.compare import EXIT_OK, EXIT_REGRESSION, compare_paths
from genbench.metrics.frechet import frechet_distance_features
from genbench.metrics.manifold import prdc
from genbench.results.noise import Calibration
from genbench.results.paired import PairedInputs, paired_bootstrap
from genbench.results.stored_features import feature_index, reference_identity, save_features
from genbench.results.store import ResultsStore

pytestmark = pytest.mark.usefixtures("one_thread")
KEY = {"dataset": "toy", "split": "test", "split_sha256": "abc", "subset": {"n": 300}, "extractor": {"id": "identity"},
       "device": "cpu", "metric_version": "x"}
ALL = ["fd", "kid", "precision", "recall", "density", "coverage"]


def _gauss(n, d, seed, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64) + shift


def _fd_numpy(a, b):
    """Independent FD: numpy statistics and scipy's sqrtm."""
    from scipy import linalg

    a, b = a.numpy(), b.numpy()
    m1, m2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    return float(((m1 - m2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_identical_runs_give_exactly_zero_with_a_zero_width_interval():
    real, fake = _gauss(300, 3, 0), _gauss(300, 3, 1)
    out = paired_bootstrap([(real, fake)], [(real.clone(), fake.clone())], ALL, n_boot=50, seed=3)
    for m in ALL:
        r = out[m]
        assert r.delta == 0.0 and r.sd == 0.0 and r.ci == (0.0, 0.0) and r.p_boot == 1.0, (m, r)


def test_paired_interval_is_much_narrower_than_independent_bootstraps():
    """Both runs share the real features and the new fakes are the old ones slightly perturbed (a code change
    that barely moves the network): the paired sd of the FD change is far below the sd of the difference of two
    independent bootstraps, which is what the stored intervals give."""
    real, a = _gauss(400, 4, 0), _gauss(400, 4, 1, shift=0.3)
    b = a + 0.05 * _gauss(400, 4, 2)
    pr = paired_bootstrap([(real, a)], [(real, b)], ["fd"], n_boot=200, seed=0)["fd"]
    g = torch.Generator().manual_seed(1)
    ind = []
    for _ in range(200):  # independent bootstraps of each run, as two stored intervals are
        i1, j1, i2, j2 = (torch.randint(0, 400, (400,), generator=g) for _ in range(4))
        ind.append(frechet_distance_features(real[i2], b[j2], route="statistics")
                   - frechet_distance_features(real[i1], a[j1], route="statistics"))
    unpaired_sd = float(np.std(ind, ddof=1))
    assert pr.sd < 0.25 * unpaired_sd, (pr.sd, unpaired_sd)
    assert pr.ci[1] - pr.ci[0] < 0.25 * (np.quantile(ind, 0.975) - np.quantile(ind, 0.025))
    # the change itself equals an independent FD (numpy + scipy sqrtm)
    assert pr.delta == pytest.approx(_fd_numpy(real, b) - _fd_numpy(real, a), rel=1e-7, abs=1e-10)


def test_a_known_shift_is_measured_exactly_and_detected():
    """Shifting every fake row by s leaves the covariance as it was: the FD change is exactly
    |s|^2 - 2 s.(mu_real - mu_fake)."""
    real, a = _gauss(500, 3, 0), _gauss(500, 3, 1)
    s = torch.tensor([0.6, 0.0, 0.0], dtype=torch.float64)
    b = a + s
    pr = paired_bootstrap([(real, a)], [(real, b)], ["fd"], n_boot=200, seed=0)["fd"]
    analytic = float(s.dot(s) - 2 * s.dot(real.mean(0) - a.mean(0)))
    assert pr.delta == pytest.approx(analytic, rel=1e-9, abs=1e-12)
    assert pr.ci[0] > 0 and pr.p_boot < 0.01  # detected: the interval excludes 0
    # no shift, other fakes of the same distribution: the interval holds 0
    c = _gauss(500, 3, 7)
    null = paired_bootstrap([(real, a)], [(real, c)], ["fd"], n_boot=200, seed=0)["fd"]
    assert null.ci[0] < 0 < null.ci[1]


def test_prdc_replicates_match_the_analytic_bootstrap_of_a_mean_and_the_metric():
    """Precision is a mean of per-fake indicators against the fixed real balls: with the same fake rows drawn for
    both runs, the replicates' sd is the bootstrap sd of a mean of paired differences, sd(d) / sqrt(n)."""
    real, a = _gauss(300, 2, 0), _gauss(300, 2, 1, shift=0.4)
    b = a + 0.3 * _gauss(300, 2, 2)
    stored = {m: ([prdc(real, a)[m]], [prdc(real, b)[m]]) for m in ("precision", "recall", "density", "coverage")}
    out = paired_bootstrap([(real, a)], [(real, b)], list(stored), n_boot=2000, seed=0, stored=stored)
    for m in stored:  # the full sets reproduce genbench's prdc
        assert out[m].delta == pytest.approx(stored[m][1][0] - stored[m][0][0], abs=1e-12)
    from genbench.metrics.knn import knn_sq_radii

    rr = knn_sq_radii(real, (3,))[3]
    d2a, d2b = torch.cdist(a, real) ** 2, torch.cdist(b, real) ** 2
    fa, fb = (d2a <= rr[None]).any(1).double(), (d2b <= rr[None]).any(1).double()
    analytic = float((fb - fa).std(unbiased=False)) / math.sqrt(300)
    assert out["precision"].sd == pytest.approx(analytic, rel=0.1)


def _tied_sets(n: int, seed: int) -> torch.Tensor:
    """Normalised 0/1 rows (like the names n-gram features): many distances are equal in exact arithmetic."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(n, 64, generator=g) < 0.08).double()
    x[x.sum(1) == 0, 0] = 1.0
    return x / x.norm(dim=1, keepdim=True)


def test_prdc_on_tied_distances_is_reproduced_as_stored():
    """Where distances tie at a ball's boundary, the float64 formulas round them apart; the paired test must
    recompute P/R/D/C exactly as the stored values were made, or it refuses them as "differs from the stored
    value" (it did for the names dataset of the quick suite, before both used `prdc_items`)."""
    from genbench.metrics.manifold import prdc_items

    real, a, b = _tied_sets(200, 0), _tied_sets(200, 1), _tied_sets(200, 2)
    ms = ("precision", "recall", "density", "coverage")
    stored = {m: ([prdc(real, a)[m]], [prdc(real, b)[m]]) for m in ms}
    out = paired_bootstrap([(real, a)], [(real, b)], list(ms), n_boot=20, seed=0, stored=stored)
    for m in ms:
        assert not isinstance(out[m], str), out[m]
        assert out[m].delta == pytest.approx(stored[m][1][0] - stored[m][0][0], abs=1e-12)
    items = prdc_items(real, a)  # per-row terms: fake rows for precision/density, real rows for recall/coverage
    assert [items[m].shape[0] for m in ms] == [200, 200, 200, 200]
    for m in ms:
        assert float(items[m].mean()) == pytest.approx(prdc(real, a)[m], abs=1e-12)
    strict, pkg = prdc_items(real, a, 5, 5, strict=True), prdc(real, a, convention="prdc", nearest_k=5)  # `<` balls
    for m in ms:
        assert float(strict[m].mean()) == pytest.approx(pkg[m], abs=1e-12)
    assert float(strict["density"].mean()) != pytest.approx(float(prdc_items(real, a, 5, 5)["density"].mean()))


def test_a_recomputation_that_does_not_reproduce_the_stored_value_is_refused():
    real, a = _gauss(200, 2, 0), _gauss(200, 2, 1)
    out = paired_bootstrap([(real, a)], [(real, a)], ["fd"], n_boot=10, stored={"fd": ([1.0], [1.0])})
    assert isinstance(out["fd"], str) and "differs from the stored value" in out["fd"]


def test_bad_input_is_refused_with_a_clear_message():
    from genbench.errors import InvalidInputError

    real = _gauss(50, 2, 0)
    with pytest.raises(InvalidInputError, match="same shapes"):
        paired_bootstrap([(real, real)], [(real, real[:40])], ["fd"])
    with pytest.raises(InvalidInputError, match="at least 2"):
        paired_bootstrap([(real, real)], [(real, real)], ["fd"], n_boot=1)


# ---------------------------------------------------------------------------------------------- stores
def _store(d, fakes: dict, real, features=True, key=KEY, jitter_values=None):
    """A run directory with one job per seed (`fakes`: seed -> fake features) of toy/m, scored with genbench's
    own FD and P/R/D/C on the features; `features=False`: a store from before features were kept."""
    d.mkdir(parents=True, exist_ok=True)
    with ResultsStore(d, create=True) as st:
        st.begin_run("r", suite_name="t")
        for seed, fake in fakes.items():
            job = f"toy/m/seed{seed}"
            st.add_job(job, run_id="r", dataset="toy", model="m", family="x", seed=seed, budget="quick", config={})
            st.start_job(job, "r")
            proto = {"n_fake": int(fake.shape[0]), "features": "identity"}
            p = prdc(real, fake)
            rows = [dict(name="fd", value=frechet_distance_features(real, fake), ci_low=None, ci_high=None, unit="",
                         higher_is_better=False, protocol=proto)]
            rows += [dict(name=m, value=p[m], unit="", higher_is_better=True,
                          protocol={**proto, "k": 3 if m in ("precision", "recall") else 5, "ball": "<="})
                     for m in ("precision", "recall", "density", "coverage")]
            arts = save_features(d, f"artifacts/{job.replace('/', '_')}", "toy", "", real, fake, key) if features else []
            st.record_job(job, rows, arts)
        st.export()
    return d


def _cmp(a, b, tol=None, **kw):
    from genbench.results.compare import compare_frames, load_results, load_tolerances

    t = load_tolerances()
    t.update(tol or {})
    from genbench.results.compare import paired_inputs

    return compare_frames(load_results(a), load_results(b), t, calibration=Calibration(),
                          paired=paired_inputs(a, b, kw.get("boot", 100)))


def _row(c, metric):
    return next(r for r in c.rows if r.metric == metric)


def test_compare_of_identical_stores_is_paired_exactly_zero(tmp_path):
    real = _gauss(300, 2, 0)
    fakes = {0: _gauss(300, 2, 1)}
    a, b = _store(tmp_path / "a", fakes, real), _store(tmp_path / "b", fakes, real)
    c = _cmp(a, b)
    assert c.exit_code == EXIT_OK
    for m in ("fd", "precision", "recall", "density", "coverage"):
        r = _row(c, m)
        assert r.delta == 0.0 and r.ci == (0.0, 0.0) and "paired bootstrap" in r.noise_source, r
    assert any("5 feature score(s) judged with the paired bootstrap" in n for n in c.notes)


def test_directions_and_tolerance_boundaries_under_the_paired_test(tmp_path):
    """FD (lower is better) up beyond tolerance -> regressed; precision (higher is better) down -> regressed, up
    -> improved; a change exactly at the tolerance is unchanged, just beyond it is judged by the test."""
    from genbench.results.compare import Tolerance

    real = _gauss(400, 2, 0)
    good = _gauss(400, 2, 1)
    bad = good + torch.tensor([0.6, 0.0], dtype=torch.float64)  # moved away from the data: FD up, precision down
    a, b = _store(tmp_path / "a", {0: good}, real), _store(tmp_path / "b", {0: bad}, real)
    c = _cmp(a, b)
    fd, prec = _row(c, "fd"), _row(c, "precision")
    assert fd.delta > 0 and fd.verdict == "regressed" and "paired bootstrap" in fd.detail
    assert prec.delta < 0 and prec.verdict == "regressed" and prec.higher_is_better
    back = _cmp(b, a)  # the reverse: improvements, never regressions
    assert _row(back, "fd").verdict == "improved" and _row(back, "precision").verdict == "improved"
    assert back.exit_code == EXIT_OK and c.exit_code == EXIT_REGRESSION
    at = Tolerance(abs(fd.delta), False)  # the smallest change that counts, exactly the change: unchanged
    assert _row(_cmp(a, b, {"fd": at}), "fd").verdict == "unchanged"
    just = Tolerance(abs(fd.delta) * (1 - 1e-9), False)
    assert _row(_cmp(a, b, {"fd": just}), "fd").verdict == "regressed"


def test_correlated_reruns_with_seeds_pair_every_seed(tmp_path):
    real = _gauss(300, 2, 0)
    base = {s: _gauss(300, 2, 10 + s) for s in (0, 1, 2)}
    new = {s: f + 0.01 * _gauss(300, 2, 20 + s) for s, f in base.items()}
    a, b = _store(tmp_path / "a", base, real), _store(tmp_path / "b", new, real)
    c = _cmp(a, b)
    fd = _row(c, "fd")
    assert fd.seeds == (3, 3) and "paired bootstrap" in fd.noise_source and "seeds (3 + 3)" in fd.noise_source
    assert c.exit_code == EXIT_OK


def test_old_store_and_result_files_fall_back_with_the_reason(tmp_path, capsys):
    from genbench.cli import main

    real = _gauss(200, 2, 0)
    fakes = {0: _gauss(200, 2, 1)}
    old = _store(tmp_path / "old", fakes, real, features=False)
    new = _store(tmp_path / "new", fakes, real)
    c = _cmp(old, new)
    assert c.exit_code == EXIT_OK
    note = next(n for n in c.notes if n.startswith("paired test unavailable"))
    assert "the baseline stores no features (made before genbench stored them" in note
    assert "paired test unavailable: the baseline stores no features" in _row(c, "fd").detail
    assert main(["compare", str(old), str(new)]) == EXIT_OK
    assert "paired test unavailable for 5 feature score(s)" in capsys.readouterr().out
    c2 = _cmp(new / "results.csv", new)
    assert "only a run directory (or its results.db) keeps features" in _row(c2, "fd").detail
    assert main(["compare", "--paired-boot", "0", str(new), str(new)]) == EXIT_OK
    off = capsys.readouterr().out
    assert "paired test unavailable" not in off and "judged with the paired bootstrap" not in off
    with pytest.raises(SystemExit) as e:  # argparse: a clear usage error, exit 2
        main(["compare", "--paired-boot", "1", str(new), str(new)])
    assert e.value.code == 2
    assert "0 (no paired test) or a whole number >= 2" in capsys.readouterr().err


def test_damaged_features_other_reference_and_budget(tmp_path, monkeypatch):
    real = _gauss(200, 2, 0)
    fakes = {0: _gauss(200, 2, 1)}
    a = _store(tmp_path / "a", fakes, real)
    other = _store(tmp_path / "o", fakes, real, key={**KEY, "split_sha256": "other"})
    assert "different reference features" in _row(_cmp(a, other), "fd").detail
    assert reference_identity(KEY) == reference_identity({**KEY, "device": "cuda", "metric_version": "y"})
    b = _store(tmp_path / "b", fakes, real)
    next((b / "artifacts").glob("toy_m_seed0/features.npy")).write_bytes(b"garbage")
    assert "sha256 does not match" in _row(_cmp(a, b), "fd").detail
    monkeypatch.setenv("GENBENCH_FEATURES_MB", "0.001")
    small = _store(tmp_path / "s", fakes, real)
    meta = json.loads(next((small / "artifacts").glob("toy_m_seed0/features.json")).read_text())
    assert meta["stored"] is False and "over the budget" in meta["why"]
    assert "over the budget" in _row(_cmp(a, small), "fd").detail


def test_features_are_stored_float32_when_lossless(tmp_path):
    real = _gauss(20, 2, 0)
    f32 = real.float().double()
    save_features(tmp_path, "artifacts/j", "toy", "", f32, f32, KEY)
    meta = json.loads((tmp_path / "artifacts/j/features.json").read_text())
    assert meta["fake_dtype"] == "float32" and meta["real_dtype"] == "float32"
    save_features(tmp_path, "artifacts/k", "toy", "ddim-5", real, real, KEY)
    meta = json.loads((tmp_path / "artifacts/k/features-ddim-5.json").read_text())
    assert meta["fake_dtype"] == "float64"  # float32 would change the values
    assert not list(tmp_path.rglob("*.tmp*"))  # written through temporary files, renamed


@pytest.fixture
def dummies():
    runner_dummies.register()
    yield
    runner_dummies.unregister()


def test_a_run_stores_its_features_and_a_rerun_pairs_exactly(tmp_path, dummies):
    """End to end: two runs of the same suite and seed store their features; compare pairs every feature score
    and finds each change exactly 0 with a zero-width paired interval."""
    from genbench.runner import Runner
    from genbench.suite import load_suite
    from helpers.dummy_suite import RING8_ALL, write_suite

    p = write_suite(tmp_path / "s.toml", {"ring8": {**RING8_ALL, "metrics": ["fd", "prdc"]}}, {"dummy-gauss": {}},
                    seeds=(0,), speed={"batch_size": 64, "repeats": 1, "warmup": 0})
    for out in ("a", "b"):
        Runner(load_suite(p), tmp_path / out, device="cpu", quiet=True, log=lambda m: None).run()
    idx = feature_index(tmp_path / "a")
    assert not idx.reason and ("ring8", "dummy-gauss", "", 0) in idx.entries
    c = compare_paths(tmp_path / "a", tmp_path / "b", timing=False, paired_boot=20)
    feats = [r for r in c.rows if r.metric in ("fd", "precision", "recall", "density", "coverage")]
    assert feats and all("paired bootstrap" in r.detail and r.delta == 0.0 for r in feats), [r.detail for r in feats]
    assert c.exit_code == EXIT_OK


def test_paired_significance_between_two_models_of_one_run(tmp_path):
    """Issue 18: the difference of two models' FD and P/R/D/C on the same reference rows, from one run."""
    from genbench.errors import InvalidInputError
    from genbench.results.paired import model_difference

    real = _gauss(300, 2, 0)
    d = tmp_path / "run"
    _store(d, {0: _gauss(300, 2, 1)}, real)
    with ResultsStore(d) as st:  # a second model, far from the data, in the same run
        far = _gauss(300, 2, 2) + torch.tensor([1.0, 0.0], dtype=torch.float64)
        st.add_job("toy/w/seed0", run_id="r", dataset="toy", model="w", family="x", seed=0, budget="quick", config={})
        st.start_job("toy/w/seed0", "r")
        p = prdc(real, far)
        rows = [dict(name="fd", value=frechet_distance_features(real, far), unit="", higher_is_better=False,
                     protocol={})]
        rows += [dict(name=m, value=p[m], unit="", higher_is_better=True,
                      protocol={"k": 3 if m in ("precision", "recall") else 5, "ball": "<="}) for m in p]
        st.record_job("toy/w/seed0", rows, save_features(d, "artifacts/w", "toy", "", real, far, KEY))
    out = model_difference(d, "toy", "m", "w", n_boot=100)
    assert out["fd"].delta == pytest.approx(_fd_numpy(real, far) - _fd_numpy(real, _gauss(300, 2, 1)), rel=1e-7)
    assert out["fd"].ci[0] > 0 and out["precision"].ci[1] < 0  # w is clearly worse: no tie
    same = model_difference(d, "toy", "m", "m", n_boot=20)
    assert same["fd"].delta == 0.0 and same["fd"].ci == (0.0, 0.0)  # a model against itself: a tie, exactly
    with pytest.raises(InvalidInputError, match="no seed in common"):
        model_difference(d, "toy", "m", "nope")
