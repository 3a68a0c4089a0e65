"""Ties called with the paired bootstrap (issue 18, item 5; genbench/results/paired_ties.py) in `genbench recommend`'s
verdict and in the report's leaderboards and summary, on runs with known answers: two models with identical
features are a tie with a difference of exactly 0 [0, 0]; clearly separated Gaussians are no tie, with the right
winner and the FD difference of an independent (numpy / scipy) computation; without stored features, with other
seeds or another protocol, the tie call says it is unavailable and why."""

import numpy as np
import pytest
import torch

from genbench.cli import main
from genbench.results.compare import load_results
from genbench.metrics.frechet import frechet_distance_features
from genbench.metrics.manifold import prdc
from genbench.results.paired_ties import PairedTies
from genbench.results.recommend import recommend
from genbench.report import render
from genbench.results.stored_features import save_features
from genbench.results.store import ResultsStore

pytestmark = pytest.mark.usefixtures("one_thread")
KEY = {"dataset": "toy", "split": "test", "split_sha256": "abc", "subset": {"n": 200}, "extractor": {"id": "identity"}}
QUALITY = {"fd": False, "precision": True, "density": True}


def _gauss(n, d, seed, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64) + shift


def _fd_numpy(a, b):
    """Independent FD: numpy statistics and scipy's sqrtm."""
    from scipy import linalg

    a, b = a.numpy(), b.numpy()
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


REAL = _gauss(200, 2, 0)


def _run(d, fakes: dict, features=True, seeds=None, k=None, extra=None):
    """A run directory of dataset toy: one job per (model, seed) scored with genbench's own FD and P/R/D/C on
    the features, and a timing row. `fakes`: model -> fake features; `seeds`: model -> its seeds (default 0);
    `k`: model -> the P/R k recorded in its protocol (default 3); `extra`: model -> more protocol keys."""
    d.mkdir(parents=True, exist_ok=True)
    with ResultsStore(d, create=True) as st:
        st.begin_run("r", suite_name="t")
        for model, fake in fakes.items():
            for seed in (seeds or {}).get(model, (0,)):
                job = f"toy/{model}/seed{seed}"
                st.add_job(job, run_id="r", dataset="toy", model=model, family="x", seed=seed, budget="quick",
                           config={})
                st.start_job(job, "r")
                proto = {"n_fake": int(fake.shape[0]), "features": "identity", "seed": seed,
                         **(extra or {}).get(model, {})}
                p = prdc(REAL, fake)
                rows = [dict(name="fd", value=frechet_distance_features(REAL, fake), unit="", higher_is_better=False,
                             protocol=proto)]
                kpr = (k or {}).get(model, 3)
                rows += [dict(name=m, value=p[m], unit="", higher_is_better=True,
                              protocol={**proto, "k": kpr if m in ("precision", "recall") else 5, "ball": "<="})
                         for m in ("precision", "recall", "density", "coverage")]
                rows.append(dict(name="samples_per_s", value=1000.0, unit="samples/s", higher_is_better=True,
                                 protocol={"timing": True}))
                arts = save_features(d, f"artifacts/{job.replace('/', '_')}", "toy", "", REAL, fake, KEY) \
                    if features else []
                st.record_job(job, rows, arts)
        st.export()
    return d


SAME = _gauss(200, 2, 1)
FAR = _gauss(200, 2, 2, shift=1.5)  # FD about 2 x 1.5^2 = 4.5 from the data: clearly worse


# ---------------------------------------------------------------------------------------------- the tie call
def test_identical_features_are_a_tie_with_a_zero_difference(tmp_path):
    d = _run(tmp_path / "run", {"a": SAME, "b": SAME.clone()})
    calls = PairedTies(d, 20).calls("toy", "a", "b", QUALITY)
    assert set(calls) == set(QUALITY)
    for c in calls.values():
        assert c.available and c.diff == (0.0, 0.0, 0.0) and c.tied and not c.best_ahead, c
        assert c.interval_text() == "0 [0, 0]"


def test_separated_gaussians_are_no_tie_and_the_right_model_wins(tmp_path):
    d = _run(tmp_path / "run", {"good": SAME, "bad": FAR})
    ties = PairedTies(d, 50)
    c = ties.calls("toy", "good", "bad", QUALITY)
    want = _fd_numpy(REAL, FAR) - _fd_numpy(REAL, SAME)  # bad - good, from an independent computation
    assert want > 3
    assert c["fd"].diff[0] == pytest.approx(want, rel=1e-7)
    assert c["fd"].diff[1] > 0 and not c["fd"].tied and c["fd"].best_ahead  # lower FD: good is ahead
    assert c["precision"].diff[2] < 0 and c["precision"].best_ahead  # higher precision: good is ahead
    # the reversed call is the exact negation (one bootstrap per pair), and a second run gives the same numbers
    r = ties.calls("toy", "bad", "good", {"fd": False})["fd"]
    assert r.diff == (-c["fd"].diff[0], -c["fd"].diff[2], -c["fd"].diff[1]) and not r.best_ahead
    assert PairedTies(d, 50).calls("toy", "good", "bad", {"fd": False})["fd"].diff == c["fd"].diff
    assert PairedTies(d, 20).calls("toy", "good", "bad", {"fd": False})["fd"].diff != c["fd"].diff  # replicates count


def test_the_tie_call_says_why_it_is_unavailable(tmp_path):
    d = _run(tmp_path / "old", {"a": SAME, "b": FAR}, features=False)
    c = PairedTies(d, 20).calls("toy", "a", "b", {"fd": False})["fd"]
    assert not c.available and not c.tied and "stores no features" in c.why
    csv = PairedTies(d / "results.csv", 20)
    assert "results.csv" in csv.reason and "keeps no features" in csv.reason
    assert "turned off" in PairedTies(d, 0).reason
    seeds = _run(tmp_path / "seeds", {"a": SAME, "b": FAR}, seeds={"a": (0, 1), "b": (0,)})
    assert "other seeds (a: 0, 1; b: 0)" in PairedTies(seeds, 20).calls("toy", "a", "b", {"fd": False})["fd"].why
    proto = _run(tmp_path / "proto", {"a": SAME, "b": FAR}, k={"b": 4})
    calls = PairedTies(proto, 20).calls("toy", "a", "b", {"precision": True, "fd": False})
    assert "different protocols" in calls["precision"].why and calls["fd"].available  # FD's protocols agree
    from genbench.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="at least 2"):
        PairedTies(d, 1)


# ---------------------------------------------------------------------------------------------- recommend
def test_recommend_verdict_calls_the_tie(tmp_path, capsys):
    d = _run(tmp_path / "run", {"a": SAME, "b": SAME.clone()})
    assert main(["recommend", "--results", str(d), "--weights", "quality=1", "--paired-boot", "20"]) == 0
    out = capsys.readouterr().out
    assert "use **a**" in out and "Runner-up: b" in out  # equal scores: first by name, deterministically
    assert "tied with b on FD: difference 0 [0, 0]" in out and "tied with b on density: difference 0 [0, 0]" in out
    assert "95% interval of the difference from a paired bootstrap over the same reference rows, 20 replicates" in out
    assert "recall" not in out.split("Ranking")[0]  # diversity weighs nothing here: only the quality metrics


def test_recommend_verdict_separated_models(tmp_path):
    d = _run(tmp_path / "run", {"good": SAME, "bad": FAR})
    rec = recommend(load_results(d), weights={"quality": 0.7, "diversity": 0.3}, ties=PairedTies(d, 50))[0]
    assert rec.ranked[0].model == "good"
    want = _fd_numpy(REAL, FAR) - _fd_numpy(REAL, SAME)
    ((other, calls),) = rec.paired
    assert other == "bad" and calls["fd"].diff[0] == pytest.approx(want, rel=1e-7) and not calls["fd"].tied
    assert set(calls) == {"fd", "precision", "density", "recall", "coverage"}
    v = rec.verdict()
    assert f"ahead of bad on FD: difference {calls['fd'].interval_text()}" in v and "tied with" not in v
    assert "50 replicates" in v


def test_recommend_falls_back_and_says_why(tmp_path, capsys):
    d = _run(tmp_path / "old", {"a": SAME, "b": FAR}, features=False)
    assert main(["recommend", "--results", str(d), "--weights", "quality=1", "--paired-boot", "20"]) == 0
    out = capsys.readouterr().out
    assert ("Paired tie call unavailable: the run stores no features (made before genbench stored them, or with "
            "GENBENCH_FEATURES_MB=0); the tie above rests on the score intervals only.") in out
    assert main(["recommend", "--results", str(d / "results.csv"), "--weights", "quality=1"]) == 0
    assert "keeps no features" in capsys.readouterr().out
    # without a tie call asked for (the library default), the verdict is as before: nothing about it
    rec = recommend(load_results(d), weights={"quality": 1.0})[0]
    assert "Paired" not in rec.verdict() and rec.paired == [] and rec.paired_note == ""
    with pytest.raises(SystemExit):
        main(["recommend", "--results", str(d), "--weights", "quality=1", "--paired-boot", "1"])


# ---------------------------------------------------------------------------------------------- the report
def _md_row(md: str, model: str) -> list:
    line = next(ln for ln in md.splitlines() if ln.startswith(f"| {model} "))
    return [c.strip() for c in line.strip("|").split("|")]


def test_report_marks_a_tie_with_the_best_and_explains_the_mark(tmp_path):
    d = _run(tmp_path / "run", {"a": SAME, "b": SAME.clone(), "c": FAR})
    md = render(d, "md", paired_boot=20)
    head = _md_row(md, "model")
    fd = head.index("FD ↓")
    assert _md_row(md, "a")[fd].startswith("**") and _md_row(md, "b")[fd].endswith(" ≈**")  # equal values: both bold
    assert "≈" not in _md_row(md, "c")[fd]
    assert "- FD: best a (tied: a, b); b - a 0 [0, 0]; c - a " in md and ", beyond noise" in md
    assert ("_≈ marks a model tied with the column's best (bold) by the paired test: its 95% interval of the "
            "difference from a paired bootstrap over the same reference rows, 20 replicates, contains 0.") in md
    summ = md.split("## Summary", 1)[1]
    assert "By the paired test, b - a is 0 [0, 0]" in summ and "a tie (the interval contains 0)" in summ
    assert "$\\approx$" in render(d, "latex", paired_boot=20)
    page = render(d, "html", paired_boot=20)
    assert "Ties (paired):" in page and "<li>FD: best a (tied: a, b); b - a 0 [0, 0]; c - a " in page
    assert "≈ marks a model tied with the column&#x27;s best" in page and "0.0484 ≈</b>" in page


def test_report_separated_models_have_no_tie_mark(tmp_path):
    d = _run(tmp_path / "run", {"good": SAME, "bad": FAR})
    md = render(d, "md", paired_boot=20)
    assert "≈" not in md.split("Protocol:")[0]
    assert "- FD: best good; bad - good " in md and "beyond noise" in md.split("## Summary", 1)[1]


def test_report_without_features_says_the_tie_call_is_unavailable(tmp_path):
    d = _run(tmp_path / "old", {"a": SAME, "b": SAME.clone()}, features=False)
    md = render(d, "md", paired_boot=20)
    assert "≈" not in md and "_≈ marks" not in md
    assert "Paired tie call unavailable: the run stores no features" in md
    assert "Paired tie call unavailable: turned off (--paired-boot 0)" in render(d, "md", paired_boot=0)


def test_the_seed_and_the_networks_precision_are_left_aside_but_other_protocol_keys_count(tmp_path):
    d = _run(tmp_path / "run", {"a": SAME, "b": SAME.clone()}, extra={"b": {"precision": "bf16-autocast"}})
    assert PairedTies(d, 20).calls("toy", "a", "b", {"fd": False})["fd"].tied
    n = _run(tmp_path / "n", {"a": SAME, "b": SAME.clone()}, extra={"b": {"reference_split": "train"}})
    c = PairedTies(n, 20).calls("toy", "a", "b", {"fd": False})["fd"]
    assert not c.available and "fd was scored under different protocols for a and b" in c.why


def test_reasons_that_differ_only_in_numbers_are_given_once():
    from genbench.results.recommendation import _grouped_reasons

    missing = {"precision recomputed from the stored features (0.908) differs from the stored value (0.905)": ["precision vs b"],
               "recall recomputed from the stored features (0.898) differs from the stored value (0.895)": ["recall vs b"],
               "scored with other seeds (a: 0, 1; b: 0)": ["FD vs c"]}
    assert _grouped_reasons(missing) == [
        ("precision vs b, recall vs b", "precision recomputed from the stored features (0.908) differs from the stored "
                                        "value (0.905) (likewise for the others)"),
        ("FD vs c", "scored with other seeds (a: 0, 1; b: 0)")]


def test_paired_text_names_the_first_model_and_lists_unavailable_calls():
    """The verdict's paired sentence, from hand-made calls: available ones are listed for the first model (not the
    runner-up), unavailable ones after them with their reason; only unavailable calls still say why; no shared
    paired metric says so; a tie call not asked for says nothing."""
    from genbench.results.paired_ties import TieCall
    from genbench.results.recommendation import Ranked, Recommendation, paired_text

    ranked = [Ranked("a", 0.9, 0.8, 1.0, {}), Ranked("b", 0.8, 0.7, 0.9, {})]

    def rec(paired, note="paired bootstrap, 20 replicates"):
        return Recommendation("toy", "p", {}, ranked, {}, paired=paired, paired_note=note)

    ok = TieCall("fd", "a", "b", False, diff=(3.0, 1.0, 5.0))
    gone = TieCall("precision", "a", "b", True, why="scored with other seeds (a: 0; b: 1)")
    text = paired_text(rec([("b", {"fd": ok, "precision": gone})]))
    assert text == (" Paired tie call for a (difference = the other model - a; paired bootstrap, 20 replicates): "
                    "ahead of b on FD: difference 3 [1, 5]. Paired tie call unavailable for precision vs b: scored "
                    "with other seeds (a: 0; b: 1).")
    only_gone = paired_text(rec([("b", {"precision": gone})]))
    assert only_gone == " Paired tie call unavailable for precision vs b: scored with other seeds (a: 0; b: 1)."
    assert paired_text(rec([("b", {})])) == (" Paired tie call: a and b share no FD, KID or precision / recall / "
                                            "density / coverage score in the weighted categories.")
    assert paired_text(rec([], note="")) == ""
    assert paired_text(rec([], note="unavailable: no stored features")) == (
        " Paired tie call unavailable: no stored features; the tie above rests on the score intervals only.")


def test_the_worst_gap_skips_scores_that_are_not_finite():
    """'Why not X' names the metric X trails the leader on most, relatively; an infinite score (mode_kl of a
    model that covers no mode) gives no relative gap and is skipped, not taken for the largest one."""
    from types import SimpleNamespace as V

    from genbench.results.recommendation import _worst_gap_metric

    values = {("m", "mode_kl"): V(value=float("inf"), higher_is_better=False),
              ("lead", "mode_kl"): V(value=0.1, higher_is_better=False),
              ("m", "recall"): V(value=0.5, higher_is_better=True), ("lead", "recall"): V(value=0.8, higher_is_better=True),
              ("m", "coverage"): V(value=0.7, higher_is_better=True), ("lead", "coverage"): V(value=0.8, higher_is_better=True)}
    assert _worst_gap_metric("m", "lead", "diversity", values) == "recall"  # 0.3/0.8 > 0.1/0.8
    values[("lead", "mode_kl")] = V(value=float("nan"), higher_is_better=False)
    values[("m", "mode_kl")] = V(value=0.1, higher_is_better=False)
    assert _worst_gap_metric("m", "lead", "diversity", values) == "recall"
    assert _worst_gap_metric("lead", "m", "diversity", values) is None  # the leader trails on nothing


# ---------------------------------------------------------------------------------------------- issue 24 (sixth session)
def test_tie_call_known_answers_from_hand_made_differences():
    """tied: the interval contains 0; best_ahead: not tied and the sign of the difference (other - best) says best
    is the better one (a difference of exactly 0 says neither); no difference: neither."""
    from genbench.results.paired_ties import TieCall

    def call(diff, hib):
        return TieCall("m", "a", "b", hib, diff=diff)

    assert call((1.0, -1.0, 3.0), False).tied and not call((1.0, -1.0, 3.0), False).best_ahead
    assert not call((1.0, 0.5, 3.0), False).tied
    assert call((1.0, 0.5, 3.0), False).best_ahead and not call((1.0, 0.5, 3.0), True).best_ahead
    assert call((0.5, 0.2, 0.8), False).best_ahead and not call((0.5, 0.2, 0.8), True).best_ahead
    assert call((-0.5, -0.8, -0.2), True).best_ahead and not call((-0.5, -0.8, -0.2), False).best_ahead
    assert not call((0.0, 0.1, 0.2), True).best_ahead and not call((0.0, 0.1, 0.2), False).best_ahead
    # the sign of the difference decides, not the interval's ends
    assert call((-0.01, 0.1, 0.2), True).best_ahead and not call((0.01, -0.2, -0.1), True).best_ahead
    assert call((0.01, -0.2, -0.1), False).best_ahead and not call((-0.01, 0.1, 0.2), False).best_ahead
    none = TieCall("m", "a", "b", True, why="no features")
    assert not none.available and not none.tied and not none.best_ahead


def test_two_replicates_are_enough(tmp_path):
    ties = PairedTies(tmp_path / "results.csv", 2)
    assert ties.n_boot == 2 and "keeps no features" in ties.reason


def test_protocols_that_differ_only_in_key_order_are_the_same(tmp_path):
    import json

    d = _run(tmp_path / "run", {"a": SAME, "b": SAME.clone()})
    with ResultsStore(d) as st:
        f = st.metrics_frame()
    b = f["model"] == "b"
    f.loc[b, "protocol"] = [json.dumps(dict(reversed(list(json.loads(p).items())))) for p in f.loc[b, "protocol"]]
    fd = f["metric"] == "fd"
    assert f.loc[b & fd, "protocol"].item() != f.loc[~b & fd, "protocol"].item()  # the strings differ
    c = PairedTies(d, 20, frame=f).calls("toy", "a", "b", {"fd": False})["fd"]
    assert c.available and c.diff == (0.0, 0.0, 0.0), c.why


def test_column_ties_goes_down_the_column_from_the_runner_up_at_most_three_models():
    """column_ties with a stand-in for PairedTies: the best is the highest value on a higher-is-better column
    (the lowest on a lower-is-better one), models without a finite value are left out, the runner-up is tested
    first and at most _TIE_TESTS = 3 models below the best are tested."""
    from types import SimpleNamespace as V

    from genbench.report.column_ties import column_ties
    from genbench.results.paired_ties import TieCall

    class Ties:
        reason = ""

        def __init__(self, tied):
            self.tied, self.asked = tied, []

        def calls(self, dataset, best, other, metrics):
            self.asked.append((best, other))
            (m, hib), = metrics.items()
            return {m: TieCall(m, best, other, hib, diff=(0.1, -1.0, 1.0) if other in self.tied else (2.0, 1.0, 3.0))}

        def protocol(self):
            return "p"

    def rows(col, values):
        return [V(model=m, cells={} if v is None else {col: V(value=v)}) for m, v in values.items()]

    vals = {"a": 0.9, "b": 0.8, "c": 0.7, "d": 0.6, "e": 0.5, "f": None, "g": float("nan")}
    t = Ties(set("abcdefg"))
    out, note = column_ties("toy", rows("precision", vals), ["precision"], {"precision": True}, t)
    assert note == "p" and out["precision"].best == "a" and out["precision"].tied == ["a", "b", "c", "d"]
    assert t.asked == [("a", "b"), ("a", "c"), ("a", "d")] and len(out["precision"].calls) == 3
    t = Ties({"e"})
    out, _ = column_ties("toy", rows("fd", vals), ["fd"], {"fd": False}, t)
    assert out["fd"].best == "e" and out["fd"].tied == ["e"] and t.asked == [("e", "d")]


def test_recommend_paired_calls_go_to_the_runner_up_and_at_most_three_others_of_the_first_rank():
    """recommend._paired_calls with a stand-in for PairedTies: the first model is called against the runner-up
    (whatever its rank) and then at most _PAIRED_OTHERS = 3 further models that share the first rank, in ranked
    order; a model of a lower rank is never called. Each call gets the weighted quality / diversity metrics that
    BOTH models have a value for, with their directions; unweighted categories are left out."""
    import pandas as pd

    from genbench.results.recommend import _paired_calls
    from genbench.results.recommendation import Ranked, Recommendation

    class Ties:
        reason = ""

        def __init__(self):
            self.asked = []

        def calls(self, dataset, best, other, metrics):
            self.asked.append((dataset, best, other, dict(metrics)))
            return {}

        def protocol(self):
            return "p"

    def rec(ranks, weights):
        ranked = [Ranked(m, 1.0 - i / 10, 0.0, 1.0, {}, rank=r) for i, (m, r) in enumerate(ranks)]
        return Recommendation("toy", "balanced", weights, ranked, {})

    rows = [(m, met, 1.0, hib) for m in "abcdefg" for met, hib in (("fd", False), ("precision", True),
                                                                    ("samples_per_s", True))]
    rows += [("a", "recall", 0.5, True), ("c", "recall", 0.5, True)]  # only a and c have recall
    rows += [("b", "coverage", float("nan"), True), ("a", "coverage", 0.5, True)]  # b's coverage is missing
    frame = pd.DataFrame(rows, columns=["model", "metric", "value", "higher_is_better"])
    w = {"quality": 1.0, "diversity": 1.0, "speed": 1.0}
    # ranks: a, b, c, d, e, f share rank 1, g is rank 7: runner-up b, then c, d, e (3 others), never f or g
    t = Ties()
    r = rec([("a", 1), ("b", 1), ("c", 1), ("d", 1), ("e", 1), ("f", 1), ("g", 7)], w)
    _paired_calls(r, t, frame)
    assert [x[2] for x in t.asked] == ["b", "c", "d", "e"] and {x[1] for x in t.asked} == {"a"}
    assert [o for o, _ in r.paired] == ["b", "c", "d", "e"] and r.paired_note == "p"
    got = {x[2]: x[3] for x in t.asked}
    assert got["b"] == {"fd": False, "precision": True}  # not samples_per_s (speed), not b's NaN coverage
    assert got["c"] == {"fd": False, "precision": True, "recall": True}  # both have recall
    assert got["d"] == {"fd": False, "precision": True}  # a's recall and coverage alone do not count
    # the runner-up is called even when it is of a lower rank; others of a lower rank are not
    t = Ties()
    r = rec([("a", 1), ("b", 2), ("c", 3), ("d", 1)], {"quality": 1.0, "diversity": 0.0})
    _paired_calls(r, t, frame)
    assert [x[2] for x in t.asked] == ["b", "d"]
    assert t.asked[0][3] == {"fd": False, "precision": True}  # diversity unweighted: no recall / coverage
    t = Ties()
    _paired_calls(rec([("a", 1)], w), t, frame)  # one model: nothing to call
    assert t.asked == []
