"""Issue #23's bad input, end to end: in one `genbench run`, a conditional model declaring another class count
than the dataset's and one returning another number of samples than the conditions asked for each fail their own
job with a message saying what was wrong, while a well-behaved conditional model in the same run is scored; and
`genbench eval` of a conditional .npz whose labels are missing, or hold a class outside the dataset's, exits 2
with one line naming the problem (no traceback). The model-level errors (a condition outside the declared
classes, a wrong count of labels) are in tests/test_models_conditional.py and tests/test_models_cfg_diffusion.py."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from genbench.models import MODELS, register_model
from tests.test_conditional import Oracle, OracleConfig

pytestmark = pytest.mark.usefixtures("one_thread")


@dataclass
class FiveClassConfig(OracleConfig):
    declared_classes: int = 5  # the dataset (digits) has 10


class FiveClassOracle(Oracle):
    """Declares 5 classes on a 10-class dataset."""

    name = "test-oracle-k5"
    Config = FiveClassConfig


class ShortOracle(Oracle):
    """Returns one sample fewer than the conditions it is given."""

    name = "test-oracle-short"

    def _sample(self, n, generator, condition=None):
        return super()._sample(n, generator, condition)[:-1]


@pytest.fixture()
def oracles():
    for cls in (Oracle, FiveClassOracle, ShortOracle):
        register_model(cls)
    yield
    for cls in (Oracle, FiveClassOracle, ShortOracle):
        MODELS._items.pop(cls.name, None)


def test_bad_conditional_models_fail_their_own_jobs_and_the_run_goes_on(tmp_path, oracles):
    import tomllib

    from genbench.runner import Runner
    from genbench.results.store import ResultsStore
    from genbench.suite import parse_suite
    from tests.helpers.dummy_suite import suite_toml

    text = suite_toml({"digits": {"features": "classifier:digits", "n_samples": 100, "reference": "test",
                                  "conditions": "uniform", "metrics": ["conditional_accuracy"]}},
                      {"test-oracle": {}, "test-oracle-k5": {}, "test-oracle-short": {}}, name="cond-bad",
                      n_bootstrap=0, speed={"batch_size": 64, "repeats": 1, "warmup": 0})
    suite = parse_suite(tomllib.loads(text), source="cond-bad.toml")
    out = tmp_path / "run"
    summary = Runner(suite, out, device="cpu", quiet=True, log=lambda m: None, workers=1).run()
    failed = dict(summary.failed)
    assert len(failed) == 2, summary.failed
    why_k5 = next(v for k, v in failed.items() if "test-oracle-k5" in k)
    why_short = next(v for k, v in failed.items() if "test-oracle-short" in k)
    assert "declares 5 classes, but dataset 'digits' has 10" in why_k5
    assert "samples: wrong shape (98, 1, 8, 8), expected (100, 1, 8, 8)" in why_short  # one short per batch of 64
    with ResultsStore(out) as store:
        f = store.metrics_frame()
    rows = f[(f["model"] == "test-oracle") & (f["metric"] == "conditional_accuracy")]
    assert len(rows) == 1 and rows["value"].iloc[0] > 0.9  # real digits of the asked class: the classifier agrees
    assert set(f["model"]) == {"test-oracle"}  # nothing recorded for the failed jobs' scores


def _npz(path, x, y=None):
    np.savez(path, **({"x": x} if y is None else {"x": x, "y": y}))
    return path


@pytest.mark.parametrize("labels, words", [
    (None, "labels missing"),
    ("out-of-range", "condition 10 is outside the declared classes 0..9"),
])
def test_eval_cli_refuses_bad_conditional_npz_with_one_line(tmp_path, capsys, labels, words):
    from genbench.cli import main
    from genbench.data import get_dataset

    test = get_dataset("digits").load("test")
    x = (test.x[:60].numpy() * 255).round().astype(np.uint8)
    y = None
    if labels == "out-of-range":
        y = test.y[:60].numpy().astype(np.int64)
        y[7] = 10
    p = _npz(tmp_path / "s.npz", x, y)
    rc = main(["eval", "--samples", str(p), "--dataset", "digits", "--metrics", "conditional_accuracy", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert words in err, err
    assert "Traceback" not in err


def _run_dir_with_suite(path, models: dict):
    from genbench.results.store import ResultsStore
    from tests.helpers.dummy_suite import suite_toml

    text = suite_toml({"digits": {"features": "classifier:digits", "n_samples": 100, "reference": "test",
                                  "conditions": "uniform", "metrics": ["fd", "conditional_accuracy", "cas"]}},
                      models, name="mixed")
    path.mkdir()
    with ResultsStore(path, create=True) as store:
        store.begin_run("r1", suite_toml=text, suite_name="mixed")
    return path


def test_eval_of_unlabelled_samples_under_a_mixed_table_leaves_out_the_conditional_metrics(tmp_path):
    """A table that also scores unconditional models (standard's Fashion-MNIST) scores unlabelled samples as the run
    scores those models: without the conditional metrics, stated as a change. A table of conditional models only
    keeps them (eval then refuses samples without labels), and so do labelled samples and an explicit --metrics."""
    from genbench.eval_protocol import protocol_for

    mixed = _run_dir_with_suite(tmp_path / "mixed", {"gan": {}, "cgan": {}})
    p = protocol_for("digits", "image", mixed)
    assert p.spec.metrics == ["fd"]
    assert any("left out conditional_accuracy, cas (the samples carry no labels 'y'" in c for c in p.changes), p.changes
    assert protocol_for("digits", "image", mixed, conditional=True).spec.metrics == ["fd", "conditional_accuracy", "cas"]
    p = protocol_for("digits", "image", mixed, metrics=["conditional_accuracy"])
    assert p.spec.metrics == ["conditional_accuracy"]  # asked for: evaluate_samples refuses unlabelled samples
    only_cond = _run_dir_with_suite(tmp_path / "cond", {"cgan": {}, "cvae": {}})
    assert protocol_for("digits", "image", only_cond).spec.metrics == ["fd", "conditional_accuracy", "cas"]
    restricted = _run_dir_with_suite(tmp_path / "restricted", {"cgan": {}, "gan": {"datasets": ["digits"]}})
    assert protocol_for("digits", "image", restricted).spec.metrics == ["fd"]
