"""Known answers for the paired bootstrap's arithmetic (genbench/results/paired.py), each against an independent
computation: the paired KID (unbiased cubic-kernel MMD^2, numpy) on the full sets and on explicitly resampled
sets with repeated rows; the replicates' interval, sd and one-sided p-value by hand from the replicates
(bias-corrected: shifted to centre on the full-data change); several seeds per side averaged; the matrix-size and
too-few-rows limits at their boundaries; FD on its exact route without warnings; bad input refused. Then the
wiring: PairedInputs' reasons, model_difference reading k / ball / seeds from a store, and judge.paired_result."""

import warnings

import numpy as np
import pytest
import torch

import genbench.results.paired as paired
from genbench.errors import InvalidInputError
from genbench.metrics.frechet import frechet_distance_features
from genbench.metrics.kid import polynomial_mmd2
from genbench.metrics.manifold import prdc, prdc_items
from genbench.results.paired import PairedResult, _Evaluator, _reproduces, paired_bootstrap

pytestmark = pytest.mark.usefixtures("one_thread")
K = {"k_pr": 3, "k_dc": 5, "strict": False}


def _gauss(n, d, seed, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64) + shift


def _mmd_numpy(x, y):
    """Independent unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3: explicit sums over i != j (rows repeated by a
    resample are distinct items, as in the resampled set)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    m, n, d = len(x), len(y), x.shape[1]

    def k(a, b):
        return (a @ b.T / d + 1.0) ** 3

    kxx, kyy = k(x, x), k(y, y)
    sxx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(sxx + syy - 2.0 * k(x, y).sum() / (m * n))


# ---------------------------------------------------------------------------------------------- KID
def test_paired_kid_full_value_is_the_unbiased_cubic_mmd_of_the_whole_sets():
    real, a, b = _gauss(30, 3, 0), _gauss(20, 3, 1, shift=0.4), _gauss(20, 3, 2, shift=0.8)
    out = paired_bootstrap([(real, a)], [(real, b)], ["kid"], n_boot=2, seed=0)["kid"]
    for got, fake in ((out.base_values[0], a), (out.new_values[0], b)):
        assert got == pytest.approx(_mmd_numpy(real, fake), rel=1e-12, abs=1e-14)
        assert got == pytest.approx(polynomial_mmd2(real, fake), rel=1e-12, abs=1e-14)
    assert out.delta == pytest.approx(_mmd_numpy(real, b) - _mmd_numpy(real, a), rel=1e-12, abs=1e-14)


def test_a_kid_replicate_is_the_mmd_of_the_explicitly_resampled_sets():
    real, fake = _gauss(25, 4, 3), _gauss(18, 4, 4, shift=0.5)
    ev = _Evaluator(real, fake, ["kid"], K)
    g = torch.Generator().manual_seed(5)
    for _ in range(3):
        ir, i_f = torch.randint(0, 25, (25,), generator=g), torch.randint(0, 18, (18,), generator=g)
        assert len(set(ir.tolist())) < 25  # repeated rows, as a resample has
        assert ev.fns["kid"](ir, i_f) == pytest.approx(_mmd_numpy(real[ir], fake[i_f]), rel=1e-10, abs=1e-13)
    # a resample of another size than the set (m != n != the set's rows)
    ir, i_f = torch.tensor([0, 0, 3, 7, 7, 7, 24]), torch.tensor([1, 1, 2, 17])
    assert ev.fns["kid"](ir, i_f) == pytest.approx(_mmd_numpy(real[ir], fake[i_f]), rel=1e-10, abs=1e-13)


def test_kid_replicates_interval_and_p_by_hand_with_two_seeds_per_side():
    """The replicates redrawn here (one generator seeded with `seed`: real rows, then fake rows, per replicate),
    each side's value the mean over its seeds of the numpy MMD; interval, sd and p from them by hand."""
    real = _gauss(20, 3, 10)
    base = [(real, _gauss(15, 3, 11, shift=0.3)), (real, _gauss(15, 3, 12, shift=0.3))]
    new = [(real, _gauss(15, 3, 13, shift=0.6)), (real, _gauss(15, 3, 14, shift=0.7))]
    B, seed = 25, 7
    out = paired_bootstrap(base, new, ["kid"], n_boot=B, seed=seed)["kid"]
    g = torch.Generator().manual_seed(seed)
    reps = []
    for _ in range(B):
        ir, i_f = torch.randint(0, 20, (20,), generator=g), torch.randint(0, 15, (15,), generator=g)
        va = [_mmd_numpy(r[ir], f[i_f]) for r, f in base]
        vb = [_mmd_numpy(r[ir], f[i_f]) for r, f in new]
        reps.append(np.mean(vb) - np.mean(va))
    fa, fb = [_mmd_numpy(r, f) for r, f in base], [_mmd_numpy(r, f) for r, f in new]
    delta = np.mean(fb) - np.mean(fa)
    assert out.base_values == pytest.approx(tuple(fa), rel=1e-12) and out.new_values == pytest.approx(tuple(fb))
    assert out.delta == pytest.approx(delta, rel=1e-12)
    d = np.array(reps)
    shifted = d - d.mean() + delta
    assert out.sd == pytest.approx(np.std(d, ddof=1), rel=1e-9)
    assert out.ci == pytest.approx((np.quantile(shifted, 0.025), np.quantile(shifted, 0.975)), rel=1e-9)
    assert delta > 0 and out.p_boot == pytest.approx((np.sum(shifted <= 0) + 1) / (B + 1))
    assert out.n_boot == B and out.level == 0.95


# ---------------------------------------------------------------------------------------------- interval and p
class _Planned:
    """A stand-in evaluator: the full value and the replicates' values of a metric "x" are planned per (side,
    seed), told apart by the constant its fake features hold."""

    plan: dict = {}

    def __init__(self, real, fake, metrics, prdc_k):
        full, seq = self.plan[int(fake[0, 0])]
        it = iter(seq)
        self.full, self.problems = {"x": full}, {}
        self.fns = {"x": lambda ir, i_f: float(next(it))}


def _planned(monkeypatch, plan_base, plan_new, **kw):
    plan = {i: p for i, p in enumerate(plan_base + plan_new)}
    monkeypatch.setattr(_Planned, "plan", plan)
    monkeypatch.setattr(paired, "_Evaluator", _Planned)
    real = torch.zeros(4, 2)
    side = [(real, torch.full((3, 2), float(i))) for i in range(len(plan))]
    B = len(plan_base[0][1])
    return paired_bootstrap(side[:len(plan_base)], side[len(plan_base):], ["x"], n_boot=B, **kw)["x"]


def test_interval_sd_and_p_from_the_replicates_by_hand(monkeypatch):
    rng = np.random.default_rng(0)
    B = 41
    a0, a1, b0, b1 = (rng.normal(size=B) for _ in range(4))
    b1 = b1 + 0.5  # replicates centred off the full-data change: the bias correction matters
    r = _planned(monkeypatch, [(1.0, a0), (3.0, a1)], [(4.0, b0), (2.0, b1)])
    d = (b0 + b1) / 2 - (a0 + a1) / 2  # each side the mean over its two seeds
    delta = (4.0 + 2.0) / 2 - (1.0 + 3.0) / 2
    shifted = d - (d.mean() - delta)
    assert r.delta == delta == 1.0 and r.base_values == (1.0, 3.0) and r.new_values == (4.0, 2.0)
    assert r.sd == pytest.approx(np.std(d, ddof=1), rel=1e-12)
    assert r.ci == pytest.approx((np.quantile(shifted, 0.025), np.quantile(shifted, 0.975)), rel=1e-12)
    assert r.p_boot == pytest.approx((np.sum(shifted <= 0) + 1) / (B + 1), rel=1e-12)
    r90 = _planned(monkeypatch, [(1.0, a0), (3.0, a1)], [(4.0, b0), (2.0, b1)], level=0.9)
    assert r90.ci == pytest.approx((np.quantile(shifted, 0.05), np.quantile(shifted, 0.95)), rel=1e-12)
    assert r90.level == 0.9 and "90% CI" in r90.describe()


def test_p_counts_replicates_exactly_at_zero_against_the_change(monkeypatch):
    """Replicates that land exactly on 0 after the shift count as "at or beyond 0" (the docstring): with
    replicates 0, 2, 1, 1 (mean 1) and a change of +1, shifted = the replicates; two of eight are <= 0."""
    seq = np.array([0.0, 2.0, 1.0, 1.0, 0.0, 2.0, 1.0, 1.0])
    zeros = np.zeros(8)
    up = _planned(monkeypatch, [(0.0, zeros)], [(1.0, seq)])
    assert up.delta == 1.0 and up.p_boot == pytest.approx(3 / 9, rel=1e-12)
    down = _planned(monkeypatch, [(1.0, seq)], [(0.0, zeros)])  # the same, mirrored: a change of -1
    assert down.delta == -1.0 and down.p_boot == pytest.approx(3 / 9, rel=1e-12)
    assert down.ci == pytest.approx((-np.quantile(seq, 0.975), -np.quantile(seq, 0.025)), rel=1e-12)


def test_no_change_gives_p_one_even_when_the_replicates_vary(monkeypatch):
    seq = np.array([0.0, 2.0, 1.0, 1.0, -1.0, 3.0])
    r = _planned(monkeypatch, [(5.0, np.zeros(6))], [(5.0, seq)])
    assert r.delta == 0.0 and r.p_boot == 1.0 and r.sd > 0


def test_defaults_seed_replicates_and_level():
    real, a, b = _gauss(20, 2, 0), _gauss(15, 2, 1), _gauss(15, 2, 2, shift=0.3)
    default = paired_bootstrap([(real, a)], [(real, b)], ["kid"])["kid"]
    assert default.n_boot == paired.DEFAULT_PAIRED_BOOT == 100  # the documented default (compare --paired-boot)
    assert default == paired_bootstrap([(real, a)], [(real, b)], ["kid"], n_boot=100, seed=0)["kid"]
    assert paired_bootstrap([(real, a)], [(real, b)], ["kid"], n_boot=2)["kid"].n_boot == 2  # 2 is enough
    assert ", 95% CI" in PairedResult("fd", 0.1, 0.01, (0.05, 0.15), 0.01, 100).describe()


# ---------------------------------------------------------------------------------------------- limits
def test_matrix_size_limits_at_their_boundaries(monkeypatch):
    """KID needs the n_real^2, n_fake^2 and n_real x n_fake kernel matrices, P/R/D/C the n_real x n_fake distances;
    a matrix of more than _MAX_MATRIX entries is refused with the reason, one of exactly _MAX_MATRIX is not."""
    monkeypatch.setattr(paired, "_MAX_MATRIX", 100)

    def why(nr, nf, metrics, d=2):
        return paired_bootstrap([(_gauss(nr, d, 0), _gauss(nf, d, 1))], [(_gauss(nr, d, 0), _gauss(nf, d, 2))],
                                metrics, n_boot=2)

    assert not isinstance(why(10, 10, ["kid"])["kid"], str)  # 100 entries each: allowed
    assert "kernel matrices of 11 x 2 rows are too large" in why(11, 2, ["kid"])["kid"]  # 121 real x real
    assert "kernel matrices of 2 x 11 rows are too large" in why(2, 11, ["kid"])["kid"]  # 121 fake x fake
    assert "too large" in why(11, 10, ["kid"], d=12)["kid"]
    assert not isinstance(why(20, 5, ["precision"])["precision"], str)  # 100 distances: allowed
    out = why(30, 5, ["precision", "coverage"], d=40)
    assert out["precision"] == out["coverage"] == "the 30 x 5 distance matrix is too large"
    assert "too large" in why(5, 30, ["recall"], d=40)["recall"]


def test_the_matrix_limit_is_2_to_the_25_entries():
    """256 MiB of float64 per matrix: 8193 x 4096 rows (just over 2^25 distances) are refused before anything is
    computed (k is set so high that computing would give another reason)."""
    real, fake = torch.zeros(8193, 1, dtype=torch.float64), torch.zeros(4096, 1, dtype=torch.float64)
    out = paired_bootstrap([(real, fake)], [(real, fake)], ["recall"], n_boot=2,
                           prdc_k={"k_pr": 5000, "k_dc": 5000, "strict": False})
    assert out["recall"] == "the 8193 x 4096 distance matrix is too large"


def test_prdc_needs_more_rows_than_k_on_each_side():
    """The real set needs more rows than max(k_pr, k_dc) (its k-NN radii), the fake set more than k_pr."""
    def out(nr, nf, k):
        real = _gauss(nr, 2, 0)
        return paired_bootstrap([(real, _gauss(nf, 2, 1))], [(real, _gauss(nf, 2, 2))], ["precision", "recall"],
                                n_boot=2, prdc_k=k)

    k = {"k_pr": 3, "k_dc": 5, "strict": False}
    assert out(5, 10, k)["recall"] == "too few rows for k = 5"  # n_real = max(k): too few
    assert out(4, 10, k)["precision"] == "too few rows for k = 5"  # above k_pr but not above k_dc
    assert out(10, 3, k)["precision"] == "too few rows for k = 5"  # n_fake = k_pr: too few
    ok = out(6, 4, k)  # just enough on both sides
    assert not isinstance(ok["precision"], str) and not isinstance(ok["recall"], str)
    assert out(6, 5, {"k_pr": 5, "k_dc": 3, "strict": False})["recall"] == "too few rows for k = 5"


def test_prdc_replicates_are_means_of_the_resampled_items():
    """Precision and density are means over fake rows, recall and coverage over real rows; full values equal
    genbench's prdc."""
    real, fake = _gauss(40, 2, 0), _gauss(30, 2, 1, shift=1.5)
    ms = ["precision", "recall", "density", "coverage"]
    ev = _Evaluator(real, fake, ms, K)
    items, full = prdc_items(real, fake, 3, 5, False), prdc(real, fake)

    def pick(v):  # three rows whose term is 0, two whose term is not: mean and median differ
        return torch.cat([torch.nonzero(v == 0)[:3, 0], torch.nonzero(v != 0)[:2, 0]])

    ir, i_f = pick(items["recall"]), pick(items["precision"])
    for m in ms:
        assert ev.full[m] == pytest.approx(full[m], abs=1e-12)
        rows = i_f if m in ("precision", "density") else ir
        assert ev.fns[m](ir, i_f) == pytest.approx(float(items[m][rows].double().mean()), abs=1e-12)
    assert float(items["recall"][ir].double().median()) != pytest.approx(ev.fns["recall"](ir, i_f))


def test_a_recomputed_value_reproduces_within_rounding_only():
    assert _reproduces(1e-9, 0.0)  # exactly the absolute tolerance: reproduced
    assert not _reproduces(1.5e-9, 0.0)
    assert _reproduces(1.0 + 0.9e-6, 1.0) and not _reproduces(1.0 + 1.2e-6, 1.0)  # relative 1e-6


# ---------------------------------------------------------------------------------------------- FD
@pytest.mark.parametrize("nr,nf", [(10, 60), (60, 10), (10, 400)])
def test_fd_on_singular_covariances_uses_the_exact_route_quietly(nr, nf):
    """Fewer rows than dimensions on one side: FD's route as genbench stores it (the exact cross-Gram route for
    10 x 60 rows: the statistics route is off by ~1e-8 there; the statistics route for 10 x 400, where the
    cross-Gram SVD costs too much) is reproduced to rounding, and no MetricWarning escapes, full value or
    replicate."""
    real = _gauss(nr, 20, 0)
    a, b = _gauss(nf, 20, 1, shift=0.3), _gauss(nf, 20, 2, shift=0.4)
    with pytest.warns(Warning):  # genbench's FD itself warns of the singular covariance
        stored = {"fd": ([frechet_distance_features(real, a)], [frechet_distance_features(real, b)])}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = paired_bootstrap([(real, a)], [(real, b)], ["fd"], n_boot=3, stored=stored)["fd"]
    assert out.base_values[0] == pytest.approx(stored["fd"][0][0], rel=1e-12)
    assert out.new_values[0] == pytest.approx(stored["fd"][1][0], rel=1e-12)


# ---------------------------------------------------------------------------------------------- bad input
def test_bad_input_is_refused_with_what_was_wrong():
    real = _gauss(20, 2, 0)
    with pytest.raises(InvalidInputError, match="at least one seed on each side"):
        paired_bootstrap([], [(real, real)], ["kid"])
    with pytest.raises(InvalidInputError, match="at least one seed on each side"):
        paired_bootstrap([(real, real)], [], ["kid"])
    with pytest.raises(InvalidInputError, match=r"expected \(n_real, d\) and \(n_fake, d\)"):
        paired_bootstrap([(real, _gauss(20, 3, 1))], [(real, _gauss(20, 3, 1))], ["kid"])
    with pytest.raises(InvalidInputError, match=r"expected \(n_real, d\)"):
        paired_bootstrap([(real[:, 0], real)], [(real[:, 0], real)], ["kid"])
    out = paired_bootstrap([(real, real)], [(real, real)], ["inception_score", "kid"], n_boot=2)
    assert out["inception_score"] == "inception_score has no paired bootstrap" and not isinstance(out["kid"], str)


# ---------------------------------------------------------------------------------------------- stores
def _tied(n, seed):
    """Normalised sparse 0/1 rows: many equal distances, so `<` and `<=` balls differ."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(n, 24, generator=g) < 0.15).double()
    x[x.sum(1) == 0, 0] = 1.0
    return x / x.norm(dim=1, keepdim=True)


def _run(d, jobs, key_extra=None):
    """A run directory: jobs = [(dataset, model, seed, real, fake, {metric: (value, protocol)})], each storing its
    features."""
    from genbench.results.store import ResultsStore
    from genbench.results.stored_features import save_features

    d.mkdir(parents=True, exist_ok=True)
    with ResultsStore(d, create=True) as st:
        st.begin_run("r", suite_name="t")
        for ds, model, seed, real, fake, vals in jobs:
            job = f"{ds}/{model}/seed{seed}"
            st.add_job(job, run_id="r", dataset=ds, model=model, family="x", seed=seed, budget="quick", config={})
            st.start_job(job, "r")
            rows = [dict(name=m, value=v, unit="", higher_is_better=m != "fd", protocol=p) for m, (v, p) in vals.items()]
            key = {"dataset": ds, "split": "test", "split_sha256": "abc", "subset": {"n": len(real)},
                   "extractor": {"id": "identity"}, **(key_extra or {}).get((ds, model), {})}
            st.record_job(job, rows, save_features(d, f"artifacts/{ds}_{model}_{seed}", ds, "", real, fake, key))
    return d


def _values(real, fake, kpr=3, kdc=5, strict=False, proto=None, kid=0.0):
    items = prdc_items(real, fake, kpr, kdc, strict)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = {"fd": (frechet_distance_features(real, fake), {}), "kid": (kid, {})}
    for m in ("precision", "recall", "density", "coverage"):
        p = proto(m) if proto else {}
        out[m] = (float(items[m].double().mean()), p)
    return out


def test_model_difference_reads_k_ball_seeds_and_the_dataset_from_the_store(tmp_path):
    """k and the ball come from the stored protocols (k 4 / 6 with `<` balls, on tied distances where they
    matter); the default seeds are those both models have; rows of another dataset and NaN values stay out."""
    from genbench.results.paired import model_difference

    real = _tied(40, 0)
    fa, fb0, fb1 = _tied(30, 1), _tied(30, 2), _tied(30, 3)
    assert float(prdc_items(real, fa, 4, 6, True)["density"].mean()) != \
        float(prdc_items(real, fa, 4, 6, False)["density"].mean())

    def proto(m):
        return {"k": 4 if m in ("precision", "recall") else 6, "ball": "<"}

    other_real = _gauss(10, 24, 9)
    vb0 = _values(real, fb0, 4, 6, True, proto)
    vb0["kid"] = (float("nan"), {})  # not scored for model b: KID left out
    d = _run(tmp_path / "run", [
        ("toy", "a", 0, real, fa, _values(real, fa, 4, 6, True, proto)),
        ("toy", "b", 0, real, fb0, vb0),
        ("toy", "b", 1, real, fb1, _values(real, fb1, 4, 6, True, proto)),  # a has no seed 1
        ("other", "a", 5, other_real, other_real, _values(other_real, other_real, 4, 6, True, proto)),
        ("other", "b", 5, other_real, other_real, _values(other_real, other_real, 4, 6, True, proto))])
    out = model_difference(d, "toy", "a", "b", n_boot=3)
    assert set(out) == {"fd", "precision", "recall", "density", "coverage"}
    for m in out:
        assert not isinstance(out[m], str), (m, out[m])
    assert out["density"].base_values[0] == pytest.approx(float(prdc_items(real, fa, 4, 6, True)["density"].mean()))


def test_model_difference_defaults_k_and_ball_where_the_protocol_has_none(tmp_path):
    from genbench.results.paired import model_difference

    real, fa, fb = _tied(40, 10), _tied(30, 11), _tied(30, 12)

    def four(*k):
        it = prdc_items(real, fa, *k)
        return [float(it[m].double().mean()) for m in ("precision", "recall", "density", "coverage")]

    for k in ((3, 5, True), (4, 5, False), (3, 6, False)):  # each default makes a difference here
        assert four(*k) != four(3, 5, False), k
    d = _run(tmp_path / "run", [("toy", "a", 0, real, fa, _values(real, fa)), ("toy", "b", 0, real, fb, _values(real, fb))])
    out = model_difference(d, "toy", "a", "b", n_boot=3)
    for m in ("precision", "recall", "density", "coverage"):
        assert not isinstance(out[m], str), (m, out[m])


def test_model_difference_refuses_what_is_not_a_run(tmp_path):
    from genbench.results.paired import model_difference

    with pytest.raises(InvalidInputError, match="paired significance needs a run directory"):
        model_difference(tmp_path / "missing.db", "toy", "a", "b")
    (tmp_path / "results.csv").write_text("x\n")
    with pytest.raises(InvalidInputError, match="paired significance needs a run directory"):
        model_difference(tmp_path / "results.csv", "toy", "a", "b")
    (tmp_path / "junk.db").write_bytes(b"not sqlite at all, just bytes")
    with pytest.raises(InvalidInputError, match="not a SQLite database"):
        model_difference(tmp_path / "junk.db", "toy", "a", "b")


def test_paired_inputs_say_what_is_missing_and_run_on_one_thread(tmp_path, monkeypatch):
    from genbench.results.paired import PairedInputs
    from genbench.results.stored_features import feature_index, reference_identity

    real, fa = _gauss(30, 2, 0), _gauss(30, 2, 1)
    a = _run(tmp_path / "a", [("toy", "m", 0, real, fa, _values(real, fa))])
    short = _run(tmp_path / "s", [("toy", "m", 0, real, fa[:20], _values(real, fa[:20]))])
    other = _run(tmp_path / "o", [("toy", "m", 0, real, fa, _values(real, fa))],
                 key_extra={("toy", "m"): {"split_sha256": "zzz"}})
    ia, i_s, io = feature_index(a), feature_index(short), feature_index(other)
    k = {"k_pr": 3, "k_dc": 5, "strict": False}
    assert PairedInputs(ia, ia).results("toy", "m", "", [], [0], ["fd"], {}, k) == {"fd": "the results record no seeds"}
    assert PairedInputs(ia, ia).results("toy", "m", "", [0], [], ["fd"], {}, k) == {"fd": "the results record no seeds"}
    why = PairedInputs(ia, i_s).results("toy", "m", "", [0], [0], ["fd"], {}, k)["fd"]
    assert why == "different feature shapes (n_real, n_fake, dim): ['(30, 20, 2)', '(30, 30, 2)']"
    why = PairedInputs(ia, io).results("toy", "m", "", [0], [0], ["fd"], {}, k)["fd"]
    ra = reference_identity({"dataset": "toy", "split": "test", "split_sha256": "abc", "subset": {"n": 30},
                             "extractor": {"id": "identity"}})
    ro = reference_identity({"dataset": "toy", "split": "test", "split_sha256": "zzz", "subset": {"n": 30},
                             "extractor": {"id": "identity"}})
    assert why == f"the runs scored different reference features (reference {ra[:12]} vs {ro[:12]})"
    seen = []
    monkeypatch.setattr(paired, "paired_bootstrap", lambda *a, **kw: seen.append(torch.get_num_threads()) or {})
    torch.set_num_threads(2)
    try:
        PairedInputs(ia, ia).results("toy", "m", "", [0], [0], ["fd"], {}, k)
        assert seen == [1]  # the same replicates whatever the machine's core count
    finally:
        torch.set_num_threads(1)


# ---------------------------------------------------------------------------------------------- judge's wiring
def test_judge_passes_k_ball_and_stored_values_to_the_paired_test():
    """genbench.results.judge.paired_result: the group's feature scores on the same seeds, their stored values and
    the k / ball of their protocols (defaults 3, 5, `<=` where a protocol has none)."""
    from genbench.results.judge import Side, paired_result
    from genbench.results.noise import SideStats

    class Recorder:
        def results(self, ds, model, variant, sa, sb, metrics, stored, prdc_k):
            self.got = (ds, model, variant, sa, sb, metrics, stored, prdc_k)
            return {"fd": "recorded"}

    def sides(protos, values=(1.0,)):
        return {("toy", "m", m, ""): Side(SideStats(list(values), [float("nan")] * len(values), [0]), m != "fd", "",
                                          p, False, "quick", "") for m, p in protos.items()}

    full = {"fd": {}, "precision": {"k": 4, "ball": "<"}, "recall": {"k": 4, "ball": "<"},
            "density": {"k": 7, "ball": "<"}, "coverage": {"k": 7, "ball": "<"}}
    rec = Recorder()
    key = ("toy", "m", "fd", "")
    assert paired_result(rec, key, sides(full), sides(full, (2.0,))) == "recorded"
    ds, model, variant, sa, sb, metrics, stored, prdc_k = rec.got
    assert (ds, model, variant, sa, sb) == ("toy", "m", "", [0], [0])
    assert metrics == ["fd", "precision", "recall", "density", "coverage"]
    assert stored["density"] == ([1.0], [2.0])
    assert prdc_k == {"k_pr": 4, "k_dc": 7, "strict": True}
    pr_only = {"fd": {}, "precision": {"k": 4}, "recall": {"k": 4}}  # no k of density: the default k_dc
    paired_result(rec, key, sides(pr_only), sides(pr_only))
    assert rec.got[-1] == {"k_pr": 4, "k_dc": 5, "strict": False}
    dc_only = {"density": {"k": 7, "ball": "<="}, "coverage": {"k": 7, "ball": "<="}}
    paired_result(rec, key, sides({**dc_only, "fd": {}}), sides({**dc_only, "fd": {}}))
    assert rec.got[-1] == {"k_pr": 3, "k_dc": 7, "strict": False}
    none = {"fd": {}, "precision": {}, "density": {}}
    paired_result(rec, key, sides(none), sides(none))
    assert rec.got[-1] == {"k_pr": 3, "k_dc": 5, "strict": False}


def test_judge_timing_has_no_floor_unless_given():
    """judge_timing's floor defaults to 0 ms: any change beyond the tolerance counts (compare passes its floor)."""
    from genbench.results.judge import Side, judge_timing
    from genbench.results.noise import SideStats
    from genbench.results.tolerance import Tolerance

    def side(ms):
        return Side(SideStats([ms], [float("nan")], [0]), False, "ms", {"hardware": "h", "torch_threads": 1}, True,
                    "quick", "")

    key = ("toy", "m", "latency", "")
    assert judge_timing(key, side(1.0), side(1.5), Tolerance(0.1, True)).verdict == "regressed"
    assert judge_timing(key, side(1.0), side(1.5), Tolerance(0.1, True), floor_ms=1.0).verdict == "unchanged"
