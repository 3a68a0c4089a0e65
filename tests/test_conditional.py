"""Conditional generation end to end: how conditions are drawn and checked, the two conditional scores against
independent computations, and the pipeline's proofs -- an oracle returning real held-out images of the requested
class gets exactly the classifier's held-out accuracy and an intra-class FD near the real-vs-real value, a model
ignoring its condition gets about 1/K -- plus the clear errors (a model declaring another class count, labels
missing from conditional samples, a label outside the classes) and `genbench eval` of an .npz with x and y."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from genbench.errors import InvalidInputError
from genbench.models import MODELS, register_model
from genbench.models.base import FitHistory, GenerativeModel, ModelConfig
from genbench.models.conditions import check_condition, class_counts, condition_protocol, draw_conditions
pytestmark = pytest.mark.usefixtures("one_thread")  # tiny networks: one thread is fastest


# ---------------------------------------------------------------------------------------------- conditions
def test_uniform_conditions_are_balanced_and_fixed():
    y = draw_conditions(23, 10, "uniform")
    assert torch.bincount(y, minlength=10).tolist() == [3, 3, 3, 2, 2, 2, 2, 2, 2, 2]
    assert torch.equal(y, draw_conditions(23, 10, "uniform"))  # same labels every time
    assert y[:10].unique().numel() > 3  # shuffled: chunks mix classes (not 0,0,0,1,1,1,...)
    assert class_counts(2000, 10, "uniform") == [200] * 10


def test_heldout_conditions_follow_the_label_frequencies_with_largest_remainders():
    held = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    assert class_counts(100, 3, "heldout", held) == [50, 30, 20]
    # 7 samples: quotas 3.5, 2.1, 1.4 -> floors 3, 2, 1 (6) and the one left goes to the largest remainder (class 0)
    assert class_counts(7, 3, "heldout", held) == [4, 2, 1]
    y = draw_conditions(100, 3, "heldout", held)
    assert torch.bincount(y).tolist() == [50, 30, 20]
    with pytest.raises(InvalidInputError, match="needs the reference split's labels"):
        class_counts(10, 3, "heldout", None)
    with pytest.raises(InvalidInputError, match="unknown condition distribution"):
        class_counts(10, 3, "zipf")
    assert condition_protocol("uniform", 10)["conditions"] == "uniform"


def test_check_condition_messages():
    assert check_condition(np.array([1, 2]), 2, 3, "m").tolist() == [1, 2]
    with pytest.raises(InvalidInputError, match=r"condition 3 is outside the declared classes 0\.\.2 \(3 classes\)"):
        check_condition([0, 3], 2, 3, "m")
    with pytest.raises(InvalidInputError, match="unconditional"):
        check_condition([0], 1, None, "m")
    with pytest.raises(InvalidInputError, match="1 conditions for 2 samples"):
        check_condition([0], 2, 3, "m")
    with pytest.raises(InvalidInputError, match="sequence of 2 integer class labels"):
        check_condition(5, 2, 3, "m")


def test_a_job_asks_for_labels_prefixes_or_nothing():
    """What the pipeline hands `sample(..., condition=...)`: class labels for a conditional model, nothing for an
    unconditional one, and the dataset's prefixes (never taken for labels) for a prefix-conditioned text job."""
    from types import SimpleNamespace as NS

    from genbench.pipeline import scoring

    job = NS(dataset=NS(prefix_length=0, conditions=None, n_samples=7, name="d", reference="test"), model=NS(name="m"))
    info = NS(num_classes=3, name="d")
    none = scoring.job_conditions(job, None, NS(conditional=False), info)
    assert none.condition is None and none.labels is None and none.prefixes is None and none.protocol == {}
    asked = scoring.job_conditions(job, None, NS(conditional=True, condition_classes=3), info)
    assert torch.equal(asked.condition, draw_conditions(7, 3, "uniform")) and asked.prefixes is None
    assert asked.protocol == condition_protocol("uniform", 3)
    pre = scoring.JobConditions(prefixes=["ab", "cd"], protocol={"prefix_length": 2})
    assert pre.condition == ["ab", "cd"] and pre.labels is None


# ---------------------------------------------------------------------------------------------- the scores
def test_conditional_accuracy_against_a_direct_count():
    from genbench.metrics import conditional_accuracy

    g = torch.Generator().manual_seed(0)
    probs = torch.rand(300, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (300,), generator=g)
    r = conditional_accuracy(probs, y)
    pred = probs.numpy().argmax(1)
    assert r["accuracy"] == pytest.approx(float(np.mean(pred == y.numpy())), abs=1e-15)
    for c in range(4):
        m = y.numpy() == c
        assert r["per_class"][c] == pytest.approx(float(np.mean(pred[m] == c)), abs=1e-15)
        assert r["counts"][c] == int(m.sum())
    assert conditional_accuracy(torch.tensor([2, 1, 0]), [2, 1, 1])["accuracy"] == pytest.approx(2 / 3)
    with pytest.raises(InvalidInputError, match="2 labels for 3 samples"):
        conditional_accuracy(torch.tensor([2, 1, 0]), [2, 1])
    with pytest.raises(InvalidInputError, match=r"conditions must lie in 0\.\.3"):
        conditional_accuracy(probs[:2], [0, 4])


def test_intra_class_fd_against_scipy_per_class():
    from scipy import linalg

    from genbench.metrics import intra_class_fd

    def fd_ref(a, b):  # the textbook formula with scipy's sqrtm
        m1, m2 = a.mean(0), b.mean(0)
        s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
        covmean = linalg.sqrtm(s1 @ s2).real
        return float(((m1 - m2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))

    rng = np.random.default_rng(0)
    rf = rng.normal(size=(300, 6))
    ry = rng.integers(0, 3, 300)
    ff = rng.normal(size=(240, 6)) + 0.3
    fy = np.repeat([0, 1, 2], 80)
    r = intra_class_fd(rf, ry, ff, fy)
    want = {c: fd_ref(rf[ry == c], ff[fy == c]) for c in range(3)}
    for c in range(3):
        assert r["per_class"][c] == pytest.approx(want[c], rel=1e-8)
        assert r["n_fake"][c] == 80 and r["n_real"][c] == int((ry == c).sum())
    assert r["fd"] == pytest.approx(np.mean(list(want.values())), rel=1e-8)
    with pytest.raises(InvalidInputError, match="class 2: .* at least 2 of each"):
        intra_class_fd(rf, ry, ff[:161], fy[:161])


def test_conditional_metrics_are_skipped_without_conditions_and_registered():
    from genbench.metrics import METRICS, EvalContext, compute_metrics

    ctx = EvalContext(real_features=torch.randn(20, 3, dtype=torch.float64),
                      fake_features=torch.randn(20, 3, dtype=torch.float64),
                      fake_class_probs=torch.rand(20, 4, dtype=torch.float64))
    assert compute_metrics(["conditional_accuracy", "intra_fd"], ctx) == []
    assert set(ctx.skipped) == {"conditional_accuracy", "intra_fd"}
    for name, better in (("conditional_accuracy", True), ("intra_fd", False)):
        out = METRICS.get(name).declared[0]
        assert out.higher_is_better is better and out.category in ("quality", "diversity")


# ---------------------------------------------------------------------------------------------- edges (issue 24)
def test_conditional_accuracy_edges_by_hand():
    from genbench.metrics import conditional_accuracy

    # (N, K) probabilities: K is the classifier's, even for classes nothing was asked for or predicted
    probs = torch.tensor([[0.9, 0.1, 0.0, 0.0], [0.2, 0.7, 0.1, 0.0], [0.1, 0.2, 0.7, 0.0]], dtype=torch.float64)
    r = conditional_accuracy(probs, [0, 2, 2])
    assert r == {"accuracy": pytest.approx(2 / 3), "per_class": [1.0, None, 0.5, None], "counts": [1, 0, 2, 0],
                 "num_classes": 4}
    # one sample is enough; a class with one sample gets its own 0/1 accuracy
    assert conditional_accuracy(probs[:1], [0]) == {"accuracy": 1.0, "per_class": [1.0, None, None, None],
                                                    "counts": [1, 0, 0, 0], "num_classes": 4}
    # (N,) predicted labels: the classes are 0..max(conditions, predictions)
    r = conditional_accuracy(torch.tensor([3, 0]), [0, 1])
    assert r["num_classes"] == 4 and r["counts"] == [1, 1, 0, 0] and r["per_class"] == [0.0, 0.0, None, None]
    r = conditional_accuracy(torch.tensor([0, 1]), [0, 3])
    assert r["num_classes"] == 4 and r["counts"] == [1, 0, 0, 1] and r["per_class"] == [1.0, None, None, 0.0]
    for bad in (torch.tensor([0.0, 1.0]), torch.zeros(2, 2, 2, dtype=torch.long)):
        with pytest.raises(InvalidInputError, match=r"\(N, K\) probabilities or \(N,\) labels"):
            conditional_accuracy(bad, [0, 1])
    with pytest.raises(InvalidInputError, match="at least one sample"):
        conditional_accuracy(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))
    with pytest.raises(InvalidInputError, match=r"conditions must lie in 0\.\.3.*got -1\.\.2"):
        conditional_accuracy(probs, [-1, 2, 2])
    with pytest.raises(InvalidInputError, match="must be integer class labels, got dtype torch.bool"):
        conditional_accuracy(probs[:2], torch.tensor([True, False]))


def test_intra_class_fd_with_two_items_per_class_and_fewer_refused():
    from genbench.metrics import intra_class_fd

    # 2 rows per class and side, 1-d: mean m, unbiased variance (a - b)^2 / 2, sd s; FD = (m1 - m2)^2 + (s1 - s2)^2
    rf = np.array([[0.0], [2.0], [10.0], [14.0]])
    ff = np.array([[1.0], [5.0], [10.0], [12.0]])
    y = np.array([0, 0, 1, 1])
    r = intra_class_fd(rf, y, ff, y)
    want = {0: (1.0 - 3.0) ** 2 + (np.sqrt(2.0) - np.sqrt(8.0)) ** 2,
            1: (12.0 - 11.0) ** 2 + (np.sqrt(8.0) - np.sqrt(2.0)) ** 2}
    assert r["per_class"] == {c: pytest.approx(want[c], rel=1e-12) for c in (0, 1)}
    assert r["fd"] == pytest.approx((want[0] + want[1]) / 2, rel=1e-12)
    assert r["n_real"] == {0: 2, 1: 2} and r["n_fake"] == {0: 2, 1: 2}
    # the classes to average over can be given: class 1 alone
    assert intra_class_fd(rf, y, ff, y, classes=[1])["fd"] == pytest.approx(want[1], rel=1e-12)
    with pytest.raises(InvalidInputError, match="class 0: 1 real and 2 generated items"):
        intra_class_fd(rf[1:], y[1:], ff, y)
    with pytest.raises(InvalidInputError, match="class 1: 2 real and 1 generated items"):
        intra_class_fd(rf, y, ff[:3], y[:3])


def _ctx(**kw):
    from genbench.metrics import EvalContext

    return EvalContext(**kw)


def test_conditional_results_directions_protocol_and_unavailable_when_called_directly():
    from genbench.metrics import METRICS, compute_metrics
    from genbench.metrics.registry import MetricUnavailable

    for name in ("conditional_accuracy", "cas", "intra_recall_coverage"):
        assert METRICS.get(name).higher_is_better is True
    assert METRICS.get("intra_fd").higher_is_better is False
    assert METRICS.get("cas").declared[0].higher_is_better is True
    g = np.random.default_rng(1)
    probs = torch.from_numpy(g.random((40, 3)))
    fy = torch.arange(40) % 3
    rf = torch.from_numpy(g.normal(size=(60, 4)))
    ry = torch.arange(60) % 3
    ff = torch.from_numpy(g.normal(size=(40, 4)))
    ctx = _ctx(real_features=rf, fake_features=ff, fake_class_probs=probs, fake_labels=fy, real_labels=ry,
               classifier_protocol={"id": "clf", "accuracy": 0.9}, condition_protocol={"conditions": "uniform"})
    res = {m.name: m for m in compute_metrics(["conditional_accuracy", "intra_fd"], ctx)}
    acc = res["conditional_accuracy"]
    assert acc.higher_is_better is True and acc.value == conditional_accuracy_ref(probs, fy)
    assert acc.protocol["classifier"] == "clf" and acc.protocol["classifier_accuracy"] == 0.9
    assert acc.protocol["conditions"] == "uniform"
    no_acc = _ctx(fake_class_probs=probs, fake_labels=fy, classifier_protocol={"id": "clf"})
    assert "classifier_accuracy" not in compute_metrics(["conditional_accuracy"], no_acc)[0].protocol
    ifd = res["intra_fd"]
    assert ifd.higher_is_better is False and ifd.protocol["feature_dim"] == 4
    assert "note" not in ifd.extra  # 20 items per class in 4-d: no singular covariance
    # Stacked MNIST's (N, C, K) probabilities are refused
    stacked = _ctx(fake_class_probs=torch.rand(40, 3, 10), fake_labels=fy)
    assert compute_metrics(["conditional_accuracy"], stacked) == []
    assert "per-channel" in stacked.skipped["conditional_accuracy"]
    # called directly (not through compute_metrics), each metric still says what is missing
    for name, kw, msg in (
            ("conditional_accuracy", dict(fake_class_probs=probs), "carry no conditions"),
            ("intra_fd", dict(real_features=rf, fake_features=ff, real_labels=ry), "carry no conditions"),
            ("intra_fd", dict(real_features=rf, fake_features=ff, fake_labels=fy), "reference split has no labels"),
            ("intra_recall_coverage", dict(real_features=rf, fake_features=ff, real_labels=ry), "carry no conditions"),
            ("intra_recall_coverage", dict(real_features=rf, fake_features=ff, fake_labels=fy), "has no labels"),
            ("cas", dict(real_labels=ry, fake_samples=torch.rand(40, 1, 4, 4)), "carry no conditions"),
            ("cas", dict(fake_labels=fy, real_samples=torch.rand(60, 1, 4, 4), fake_samples=torch.rand(40, 1, 4, 4)),
             "needs the real reference items with labels"),
            ("cas", dict(fake_labels=fy, real_labels=ry, fake_samples=torch.rand(40, 1, 4, 4)), "needs the real"),
            ("cas", dict(fake_labels=fy, real_labels=ry, real_samples=torch.rand(60, 1, 4, 4)), "needs the real"),
            ("cas", dict(fake_labels=fy, real_labels=ry, real_samples=torch.rand(60, 16), modality="image",
                         fake_samples=torch.rand(40, 16)), "image datasets only")):
        with pytest.raises(MetricUnavailable, match=msg):
            METRICS.get(name).compute(_ctx(**kw))


def conditional_accuracy_ref(probs, y) -> float:
    return float(np.mean(probs.numpy().argmax(1) == np.asarray(y)))


def test_intra_fd_notes_singular_covariances_even_when_warnings_are_ignored():
    import warnings

    from genbench.metrics import compute_metrics

    g = np.random.default_rng(2)
    y = torch.arange(12) % 2
    ctx = _ctx(real_features=torch.from_numpy(g.normal(size=(12, 8))),
               fake_features=torch.from_numpy(g.normal(size=(12, 8))), real_labels=y, fake_labels=y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a user's filter does not hide the note
        [r] = compute_metrics(["intra_fd"], ctx)
    assert r.extra["note"].startswith("some per-class covariances were singular")


def test_cas_plumbing_classes_counts_recipe_and_ceiling(monkeypatch):
    import genbench.features.classifier as clf
    from genbench.metrics import METRICS, compute_metrics
    from genbench.metrics import conditional as cond

    calls = []

    def fake_train(xtr, ytr, xte, yte, k, recipe, seed, *, label="", verbose=True):
        calls.append({"n": len(ytr), "counts": torch.bincount(ytr, minlength=k).tolist(), "k": k, "recipe": recipe,
                      "seed": seed, "verbose": verbose})
        return None, {"test_accuracy": 0.5 + 0.1 * len(calls)}

    monkeypatch.setattr(clf, "train_classifier", fake_train)
    monkeypatch.setattr(cond, "_CEILING_CACHE", {})
    monkeypatch.setitem(clf.RECIPES, "digits", clf.Recipe(max_epochs=7))  # unlike the default Recipe()
    img = torch.rand(8, 1, 8, 8)
    # no num_classes: K = 1 + the largest label of either side (fake labels up to 3, real up to 2; then 2 and 4)
    for fy, ry, k in (([0, 1, 2, 3, 0, 1, 2, 3], [0, 1, 2, 0, 1, 2, 0, 1], 4), ([0, 1, 2, 0, 1, 2, 0, 1],
                                                                               [0, 1, 2, 3, 4, 0, 1, 2], 5)):
        calls.clear()
        [r] = compute_metrics(["cas"], _ctx(fake_samples=img, real_samples=img, fake_labels=torch.tensor(fy),
                                            real_labels=torch.tensor(ry), modality="image", seed=3))
        assert calls == [{"n": 8, "counts": np.bincount(fy, minlength=k).tolist(), "k": k, "recipe": clf.Recipe(),
                          "seed": 3, "verbose": False}]
        assert r.value == 0.6 and r.higher_is_better is True and r.extra["real_data_ceiling"] is None
        assert "real_data_ceiling" not in r.protocol and r.protocol["recipe"] == vars(clf.Recipe())
    # the dataset's class count wins; the ceiling is trained on real training items, as many per class as samples
    calls.clear()
    y = torch.tensor([0, 0, 1, 2, 2, 2, 1, 0])
    ctx = _ctx(fake_samples=img, real_samples=img, fake_labels=y, real_labels=y, modality="image", num_classes=10,
               dataset="digits", seed=1)
    [r] = compute_metrics(["cas"], ctx)
    assert [c["k"] for c in calls] == [10, 10] and calls[1]["counts"] == [3, 2, 3] + [0] * 7
    assert all(c["recipe"] == clf.RECIPES["digits"] and c["seed"] == 1 for c in calls)
    assert r.value == 0.6 and r.extra["real_data_ceiling"] == 0.7 and r.protocol["real_data_ceiling"] == 0.7
    assert r.protocol["recipe"] == vars(clf.RECIPES["digits"])
    [r] = compute_metrics(["cas"], ctx)  # the ceiling is cached
    assert len(calls) == 3 and r.extra["real_data_ceiling"] == 0.7
    # seed 0 by default
    calls.clear()
    assert cond.classification_accuracy_score(img, y, img, y, 3) == 0.6 and calls[0]["seed"] == 0


def test_cas_of_separable_images_is_one_and_quiet(capsys):
    from genbench.metrics.conditional import classification_accuracy_score

    # class c: constant images of brightness c / 2; trained on them, tested on the same kind: all right
    y = torch.arange(24) % 3
    x = (y.float() / 2).view(-1, 1, 1, 1).expand(-1, 1, 8, 8).contiguous()
    assert classification_accuracy_score(x, y, x, y, 3, seed=0) == 1.0
    assert classification_accuracy_score(x, y, x, (y + 1) % 3, 3, seed=0) == 0.0  # tested with shifted labels
    assert capsys.readouterr().err == ""  # no training log


def test_real_ceiling_subset_takes_the_first_items_of_each_class_in_the_seeded_order():
    from genbench.metrics.conditional import real_ceiling_subset

    y = torch.arange(30) % 4
    x = torch.arange(30).float().view(-1, 1)
    xs, ys = real_ceiling_subset(x, y, [2, 1])  # classes 2 and 3 are not asked for
    order = torch.randperm(30, generator=torch.Generator().manual_seed(20240603)).tolist()
    want = [i for i in order if y[i] == 0][:2] + [i for i in order if y[i] == 1][:1]
    assert sorted(xs.flatten().long().tolist()) == sorted(want)
    assert xs.flatten().long().tolist() == [i for i in order if i in want]  # classes interleaved in that order
    assert ys.tolist() == [int(y[i]) for i in order if i in want]


def test_conditional_outputs_in_the_listings():
    from genbench.metrics.registry import display_order, in_category

    def among(names, listing):
        return [n for n in listing if n in names]

    # display: between the mode scores and FD; category ranks: conditional accuracy right after density, CAS
    # before CMMD; the intra-class scores among the diversity scores
    assert among({"mode_kl", "conditional_accuracy", "cas", "fd"}, display_order()) == [
        "mode_kl", "conditional_accuracy", "cas", "fd"]
    assert among({"density", "conditional_accuracy", "inception_score", "cas", "cmmd"}, in_category("quality")) == [
        "density", "conditional_accuracy", "inception_score", "cas", "cmmd"]
    assert among({"intra_fd", "intra_recall", "novelty", "intra_coverage", "vendi"}, in_category("diversity")) == [
        "intra_fd", "intra_recall", "novelty", "intra_coverage", "vendi"]


# ---------------------------------------------------------------------------------------------- the pipeline
@dataclass
class OracleConfig(ModelConfig):
    steps: int = 1
    pool: str = "test"  # "test": every test image; "outside-reference": the test images not in the reference subset;
    # "train": training images
    ignore_condition: bool = False  # True: random test images whatever the label asked for
    declared_classes: int = 0  # != 0: declare this many classes (a model disagreeing with the dataset)


class Oracle(GenerativeModel):
    """Returns real held-out images of the requested class, in order (each test image at most once per pass)."""

    name = "test-oracle"
    family = "baseline"
    modalities = ("image",)
    conditional = True
    Config = OracleConfig

    def __init__(self, config, info):
        super().__init__(config, info)
        from genbench.data import get_dataset

        from genbench.pipeline.scorers import _subset_index

        test = get_dataset(info.name).load("train" if config.pool == "train" else "test")
        keep = torch.ones(len(test.x), dtype=torch.bool)
        if config.pool == "outside-reference":
            keep[_subset_index(len(test.x), 2000)] = False
        self.x, self.y = test.x[keep], test.y[keep].long()
        self.by_class = {c: torch.nonzero(self.y == c).flatten() for c in range(int(info.num_classes))}
        self.next = {c: 0 for c in self.by_class}

    @property
    def condition_classes(self):
        return self.config.declared_classes or super().condition_classes

    def fit(self, train, budget=None, seed=0, device="cpu", callbacks=(), labels=None):
        assert labels is not None and len(labels) == len(train)  # the pipeline passes the training labels
        self.history = FitHistory(steps=1)
        return self.history

    def _sample(self, n, generator, condition=None):
        if condition is None or self.config.ignore_condition:
            return self.x[torch.randint(0, len(self.x), (n,), generator=generator)]
        out = []
        for c in condition.tolist():
            idx = self.by_class[c]
            out.append(self.x[idx[self.next[c] % len(idx)]])
            self.next[c] += 1
        return torch.stack(out)


@pytest.fixture()
def oracle():
    register_model(Oracle)
    yield
    MODELS._items.pop("test-oracle", None)


def _suite_text(ds="fashion-mnist", n=2000, cond="uniform", metrics=("conditional_accuracy", "intra_fd", "fd"),
                models=None) -> str:
    """A one-dataset conditional suite (smoke budget, no bootstrap); `models` default: the test oracle."""
    from tests.helpers.dummy_suite import suite_toml

    return suite_toml({ds: {"features": f"classifier:{ds}", "n_samples": n, "reference": "test", "conditions": cond,
                            "metrics": list(metrics)}},
                      models if models is not None else {"test-oracle": {}}, name="cond-test", n_bootstrap=0,
                      speed={"batch_size": 64, "repeats": 1, "warmup": 0})


def _run(tmp_path, ds="fashion-mnist", n=2000, cond="uniform", metrics=("conditional_accuracy", "intra_fd", "fd"),
         overrides=None):
    from genbench.runner import Runner
    from genbench.results.store import ResultsStore
    from genbench.suite import parse_suite
    import tomllib

    text = _suite_text(ds, n, cond, metrics, {"test-oracle": {"overrides": dict(overrides or {})}})
    suite = parse_suite(tomllib.loads(text), source="cond-test.toml")
    out = tmp_path / "run"
    summary = Runner(suite, out, device="cpu", quiet=True, log=lambda m: None, workers=1).run()
    with ResultsStore(out) as store:
        f = store.metrics_frame()
    rows = {r["metric"]: r for r in f.to_dict("records") if r["variant"] == ""}
    return summary, rows, out


def _accuracy_of_classifier(ds: str) -> float:
    from genbench.features import get_extractor

    return float(get_extractor(f"classifier:{ds}").accuracy)


def test_oracle_gets_the_classifiers_heldout_accuracy_exactly_digits(tmp_path, oracle):
    # heldout conditions on the whole test split (359 images): the oracle returns exactly the test split
    summary, rows, out = _run(tmp_path, ds="digits", n=359, cond="heldout", metrics=("conditional_accuracy",))
    assert not summary.failed, summary.failed
    acc = rows["conditional_accuracy"]
    assert acc["value"] == _accuracy_of_classifier("digits")
    proto = json.loads(acc["protocol"])
    assert proto["conditions"] == "heldout" and proto["num_classes"] == 10
    assert proto["classifier_accuracy"] == _accuracy_of_classifier("digits")
    prev = np.load(out / "artifacts" / "digits__test-oracle__seed0" / "samples_preview.npz")
    assert prev["x"].shape == (64, 1, 8, 8) and prev["y"].shape == (64,)  # each sample kept with its condition
    assert prev["y"].tolist() == draw_conditions(359, 10, "heldout",
                                                 __import__("genbench.data", fromlist=["x"]).get_dataset("digits")
                                                 .load("test").y)[:64].tolist()


@pytest.mark.slow
def test_oracle_gets_the_classifiers_heldout_accuracy_exactly_fashion_mnist(tmp_path, oracle):
    # 10000 uniform conditions = 1000 per class = the whole test split: accuracy == held-out accuracy
    summary, rows, _ = _run(tmp_path, n=10000, metrics=("conditional_accuracy",))
    assert not summary.failed, summary.failed
    assert rows["conditional_accuracy"]["value"] == _accuracy_of_classifier("fashion-mnist") == 0.9151


def test_oracle_intra_fd_near_real_vs_real_and_ignoring_the_condition_gets_chance(tmp_path, oracle):
    from genbench.features import get_extractor
    from genbench.metrics import intra_class_fd
    from genbench.data import get_dataset
    from genbench.pipeline.scorers import _subset_index

    # (1) 2000 samples drawn from test images outside the reference subset: intra-class FD near real vs real
    metrics = ("conditional_accuracy", "intra_fd", "fd", "intra_recall_coverage", "prdc")
    summary, rows, _ = _run(tmp_path / "b", overrides={"pool": "outside-reference"}, metrics=metrics)
    assert not summary.failed, summary.failed
    got = rows["intra_fd"]["value"]
    test = get_dataset("fashion-mnist").load("test")
    clf = get_extractor("classifier:fashion-mnist")
    ref = _subset_index(len(test.x), 2000)
    rest = torch.ones(len(test.x), dtype=torch.bool)
    rest[ref] = False
    rest_idx = torch.nonzero(rest).flatten()
    # an independent real-vs-real value: the reference subset against the *last* 200 leftover images per class
    other = torch.cat([rest_idx[test.y[rest_idx] == c][-200:] for c in range(10)])
    rr = intra_class_fd(clf.extract(test.x[ref]), test.y[ref], clf.extract(test.x[other]), test.y[other])["fd"]
    assert abs(got - rr) / rr < 0.15, (got, rr)
    extra = json.loads(rows["intra_fd"]["extra"]) if isinstance(rows["intra_fd"]["extra"], str) else rows["intra_fd"]["extra"]
    assert len(extra["per_class"]) == 10
    assert rows["conditional_accuracy"]["value"] > 0.88  # real images of the class asked for
    # per-class recall / coverage of real images of the class asked for: the independent real-vs-real values
    from genbench.metrics.conditional import intra_class_recall_coverage

    rc = intra_class_recall_coverage(clf.extract(test.x[ref]), test.y[ref], clf.extract(test.x[other]), test.y[other])
    for key in ("recall", "coverage"):
        assert abs(rows[f"intra_{key}"]["value"] - rc[key]) < 0.05, (key, rows[f"intra_{key}"]["value"], rc[key])

    # (2) a model ignoring its condition: about 1/K (sd 0.0067 at n = 2000), and a far worse intra-class FD
    summary, rows_ign, _ = _run(tmp_path / "c", overrides={"ignore_condition": True}, metrics=metrics)
    assert not summary.failed, summary.failed
    assert 0.08 < rows_ign["conditional_accuracy"]["value"] < 0.12
    assert rows_ign["intra_fd"]["value"] > 5 * got
    assert rows_ign["fd"]["value"] < 3 * rows["fd"]["value"] + 1.0  # the unconditional FD does not see it
    # nor do the unconditional recall and coverage; within each class coverage collapses. (Recall does not: the
    # samples asked for class c are spread over all classes, so their k-NN balls are wide and reach the real items
    # of class c -- improved recall's known inflation by spread-out samples; coverage uses the real radii.)
    for key in ("recall", "coverage"):
        assert rows_ign[key]["value"] > rows[key]["value"] - 0.05
    assert rows_ign["intra_coverage"]["value"] < 0.6 * rows["intra_coverage"]["value"]  # measured 0.49 vs 0.98


def test_a_model_declaring_another_class_count_fails_its_job_clearly(tmp_path, oracle):
    summary, rows, _ = _run(tmp_path, ds="digits", n=100, overrides={"declared_classes": 5},
                            metrics=("conditional_accuracy",))
    assert len(summary.failed) == 1
    assert "declares 5 classes, but dataset 'digits' has 10" in summary.failed[0][1]


def test_suite_checks_conditions_and_guidance_sweeps(tmp_path):
    import tomllib

    from genbench.suite import SuiteError, parse_suite

    cfg = {"cfg-ddpm": {}}
    ok = _suite_text("digits", 100, "uniform", ["conditional_accuracy"], cfg)
    s = parse_suite(tomllib.loads(ok + "[sweeps.cfg-ddpm]\nguidance = [0, 1, 2.5]\n"))
    assert [v[0] for v in s.sweeps["cfg-ddpm"].variants()] == ["guidance-0", "guidance-1", "guidance-2.5"]
    with pytest.raises(SuiteError, match="unknown condition distribution 'zipf'"):
        parse_suite(tomllib.loads(_suite_text("digits", 100, "zipf", ["fd"], cfg)))
    with pytest.raises(SuiteError, match="guidance.*non-empty list of numbers >= 0"):
        parse_suite(tomllib.loads(ok + "[sweeps.cfg-ddpm]\nguidance = [-1]\n"))
    ddpm = ok.replace("[models.cfg-ddpm]", "[models.ddpm]")
    with pytest.raises(SuiteError, match="has no guidance scale"):
        parse_suite(tomllib.loads(ddpm + "[sweeps.ddpm]\nguidance = [1]\n"))
    ring = ("name='r'\n[datasets.ring8]\nfeatures='identity'\nn_samples=100\nconditions='uniform'\nmetrics=['fd']\n"
            "[models.gan]\n")
    with pytest.raises(SuiteError, match="has no class labels"):
        parse_suite(tomllib.loads(ring))
    with pytest.raises(SuiteError, match="'intra_fd' works on image data; 'ring8' is points data"):
        parse_suite(tomllib.loads(ring.replace("conditions='uniform'\n", "").replace("['fd']", "['intra_fd']")))
    from genbench.suite import load_suite

    cs = load_suite("conditional")
    assert cs.datasets[0].conditions == "uniform" and cs.sweeps["cfg-ddpm"].guidance == [0.0, 1.0, 2.0, 4.0]
    assert "conditional" not in {d.name for d in load_suite("quick").datasets}


# ---------------------------------------------------------------------------------------------- genbench eval
def _npz(path, x, y=None):
    arrays = {"x": x}
    if y is not None:
        arrays["y"] = y
    np.savez(path, **arrays)
    return path


def test_eval_scores_conditional_npz_and_refuses_bad_labels(tmp_path):
    from genbench.data import get_dataset
    from genbench.evaluate import evaluate_samples

    test = get_dataset("digits").load("test")
    x = (test.x.numpy() * 255).round().astype(np.uint8)
    y = test.y.numpy().astype(np.int64)
    r = evaluate_samples(_npz(tmp_path / "real.npz", x, y), "digits", metrics=["conditional_accuracy", "intra_fd"])
    vals = {row["name"]: row["value"] for row in r.rows}
    from genbench.features import get_extractor
    from genbench.metrics import intra_class_fd
    from genbench.pipeline.scorers import _subset_index

    n = r.n_samples  # the first n of the 359 (the protocol's sample count)
    clf = get_extractor("classifier:digits")
    assert vals["conditional_accuracy"] == float((clf.predict(test.x[:n]) == test.y[:n]).double().mean())
    ref = _subset_index(len(test.x), n)
    ref = torch.arange(len(test.x)) if ref is None else ref
    fx = get_extractor(r.protocol.spec.features)  # the protocol's features (smoke suite: random-conv)
    want = intra_class_fd(fx.extract(test.x[ref]), test.y[ref], fx.extract(test.x[:n]), test.y[:n])["fd"]
    assert vals["intra_fd"] == pytest.approx(want, rel=1e-9)
    proto = r.rows[0]["protocol"]
    assert proto["conditions"] == "given with the samples"

    # the protocol gains the conditional metrics when the samples carry labels
    r = evaluate_samples(tmp_path / "real.npz", "digits")
    assert {"conditional_accuracy", "intra_fd"} <= {row["name"] for row in r.rows}
    assert any("added conditional_accuracy" in c for c in r.protocol.changes)

    wrong = y.copy()
    wrong[3] = 10
    with pytest.raises(InvalidInputError, match=r"condition 10 is outside the declared classes 0\.\.9"):
        evaluate_samples(_npz(tmp_path / "bad.npz", x, wrong), "digits", metrics=["conditional_accuracy"])
    with pytest.raises(InvalidInputError, match="labels missing.*'y'"):
        evaluate_samples(_npz(tmp_path / "nolabels.npz", x), "digits", metrics=["conditional_accuracy"])
    with pytest.raises(InvalidInputError, match="has no classes to condition on"):
        pts = np.random.default_rng(0).normal(size=(50, 2)).astype(np.float32)
        evaluate_samples(_npz(tmp_path / "pts.npz", pts, np.zeros(50, dtype=np.int64)), "ring8")


def test_guidance_sweep_records_every_score_per_scale_and_nfe_doubles(tmp_path):
    import tomllib

    from genbench.runner import Runner
    from genbench.results.store import ResultsStore
    from genbench.suite import parse_suite

    text = _suite_text("digits", 60, "uniform", ["conditional_accuracy", "fd"], {"cfg-ddpm": {}})
    suite = parse_suite(tomllib.loads(text + "[sweeps.cfg-ddpm]\nguidance = [0, 1, 3]\n"))
    out = tmp_path / "run"
    summary = Runner(suite, out, device="cpu", quiet=True, log=lambda m: None, workers=1).run()
    assert not summary.failed, summary.failed
    with ResultsStore(out) as store:
        f = store.metrics_frame()
    got = {(r["variant"], r["metric"]): r for r in f.to_dict("records")}
    steps = 5  # cfg-ddpm smoke: 5 DDIM steps
    assert got[("", "nfe")]["value"] == 2 * steps  # the config's scale, 2: two passes
    for v, nfe in (("guidance-0", steps), ("guidance-1", steps), ("guidance-3", 2 * steps)):
        assert got[(v, "nfe")]["value"] == nfe
        for m in ("conditional_accuracy", "fd", "samples_per_s"):
            assert (v, m) in got
        assert json.loads(got[(v, "conditional_accuracy")]["protocol"])["sampler"] == v
    # guidance 2 (the config) and guidance-3 differ; every score carries the conditions' protocol
    assert json.loads(got[("", "conditional_accuracy")]["protocol"])["conditions"] == "uniform"


def test_cas_oracle_near_the_real_data_ceiling_and_chance_when_ignoring_the_condition(tmp_path, oracle):
    from genbench.metrics.conditional import real_ceiling_subset

    summary, rows, _ = _run(tmp_path / "a", ds="digits", n=359, cond="heldout", metrics=("cas",),
                            overrides={"pool": "train"})
    assert not summary.failed, summary.failed
    cas = rows["cas"]
    ceiling = json.loads(cas["protocol"])["real_data_ceiling"]
    assert 0.85 < ceiling <= 1.0 and abs(cas["value"] - ceiling) < 0.06, (cas["value"], ceiling)
    summary, rows, _ = _run(tmp_path / "b", ds="digits", n=359, cond="heldout", metrics=("cas",),
                            overrides={"pool": "train", "ignore_condition": True})
    assert rows["cas"]["value"] < 0.25  # labels unrelated to the images: about 1/K (10%)
    # the ceiling's training items: per class exactly the samples' counts, real training images
    from genbench.data import get_dataset

    tr = get_dataset("digits").load("train")
    x, y = real_ceiling_subset(tr.x, tr.y, [3, 0, 2] + [0] * 7)
    assert torch.bincount(y, minlength=10).tolist() == [3, 0, 2] + [0] * 7 and len(x) == 5


def test_report_draws_the_guidance_curve_and_keeps_it_out_of_the_steps_figure(tmp_path):
    import pandas as pd

    from genbench.report.data import load_run
    from genbench.report.figures import make_figures

    rows = []
    for g, acc, ifd, p, r in ((0, 0.1, 30.0, 0.5, 0.6), (1, 0.7, 20.0, 0.6, 0.55), (4, 0.95, 25.0, 0.8, 0.3)):
        for metric, v, hib in (("conditional_accuracy", acc, True), ("intra_fd", ifd, False),
                               ("precision", p, True), ("recall", r, True)):
            rows.append({"dataset": "fashion-mnist", "model": "cfg-ddpm", "family": "diffusion", "seed": 0,
                         "metric": metric, "variant": f"guidance-{g}", "value": v, "higher_is_better": hib})
    pd.DataFrame(rows).to_csv(tmp_path / "results.csv", index=False)
    figs, _ = make_figures(load_run(tmp_path), tmp_path / "figs")
    kinds = {f.kind: f for f in figs}
    assert "guidance" in kinds and "steps" not in kinds  # guidance-4 is not "4 sampler steps"
    assert kinds["guidance"].path.exists() and kinds["guidance"].path.stat().st_size > 1000
