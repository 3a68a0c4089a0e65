"""The class-conditional GAN (`cgan`: one-hot label into G, projection discriminator) and VAE (`cvae`: label into
encoder and decoder): the conditional protocol (labels required, conditions checked, same seed -> same samples,
save/load), the networks against their formulas, that training on labels makes the label steer the samples (a
toy set where the class sets the brightness), the refused configurations, and `genbench run` of both with the
conditional metrics."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from genbench.data.base import DatasetInfo
from genbench.errors import InvalidInputError
from reference_models import create_model, load_model
from tests._model_helpers import DIGITS_INFO, check_conditional_sampling, digits_data

pytestmark = pytest.mark.usefixtures("one_thread")
FM = DatasetInfo("fashion-mnist", "image", (1, 28, 28), (0.0, 1.0), num_classes=10)
TWO = DatasetInfo("two", "image", (1, 8, 8), (0.0, 1.0), num_classes=2)


def _digits_labels(n: int = 256) -> torch.Tensor:
    from sklearn.datasets import load_digits

    return torch.from_numpy(load_digits().target[:n]).long()


@pytest.fixture(scope="module", params=["cgan", "cvae"])
def model(request):
    m = create_model(request.param, DIGITS_INFO, budget="smoke", overrides={"steps": 6})
    m.fit(digits_data(), seed=0, labels=_digits_labels())
    return m


def test_registered_conditional_and_configs():
    from genbench.models import get_model_class

    g, v = get_model_class("cgan"), get_model_class("cvae")
    assert g.conditional and v.conditional and g.family == "gan" and v.family == "vae"
    assert g.modalities == v.modalities == ("image",)
    gq, base = g.Config.for_budget("quick", FM), get_model_class("gan").Config.for_budget("quick", FM)
    assert gq.loss == "hinge" and (gq.steps, gq.batch_size, gq.ch, gq.z_dim) == (base.steps, base.batch_size, base.ch, base.z_dim)
    assert g.Config.for_budget("standard", FM).steps == get_model_class("gan").Config.for_budget("standard", FM).steps
    vq = v.Config.for_budget("quick", FM)
    assert vq.prior_components == 1 and (vq.steps, vq.latent_dim) == (3000, 16)
    assert v.Config.for_budget("standard", FM).steps == 50000
    from genbench.suite import load_suite

    cs = load_suite("conditional")
    assert [m.name for m in cs.models] == ["cfg-ddpm", "cgan", "cvae", "cpixelcnn", "transformer", "lstm", "ngram"]
    assert [(d.name, d.prefix_length) for d in cs.datasets] == [("fashion-mnist", 0), ("names", 3)]  # text prefixes
    assert "intra_recall_coverage" in cs.datasets[0].metrics
    for name in ("cgan", "cvae"):
        with pytest.raises(InvalidInputError, match="class-conditional and needs a labelled dataset"):
            create_model(name, DatasetInfo("x", "image", (1, 8, 8), (0.0, 1.0)), budget="smoke")


def test_conditional_samples_are_reproducible_and_depend_on_the_label(model):
    check_conditional_sampling(model)  # tests/_model_helpers.py


def test_bad_conditions_and_missing_labels_are_clear_errors(model):
    with pytest.raises(InvalidInputError, match=r"condition 10 is outside the declared classes 0\.\.9"):
        model.sample(3, seed=0, condition=[1, 2, 10])
    with pytest.raises(InvalidInputError, match="2 conditions for 3 samples"):
        model.sample(3, seed=0, condition=[1, 2])
    with pytest.raises(InvalidInputError, match="integer class labels"):
        model.sample(2, seed=0, condition=[0.5, 1.0])
    fresh = create_model(model.name, DIGITS_INFO, budget="smoke")
    with pytest.raises(InvalidInputError, match=r"fit\(train, labels=y\) needs the training labels"):
        fresh.fit(digits_data(32), seed=0)
    with pytest.raises(InvalidInputError, match="condition 12 is outside"):
        fresh.fit(digits_data(32), seed=0, labels=torch.full((32,), 12))


def test_save_load_same_conditional_samples(tmp_path, model):
    model.save(tmp_path / "m")
    back = load_model(tmp_path / "m")
    y = torch.tensor([3, 1, 4, 1, 5, 9, 2, 6])
    assert type(back).__name__ == type(model).__name__ and back.conditional
    assert torch.equal(back.sample(8, seed=2, condition=y), model.sample(8, seed=2, condition=y))


def test_cgan_generator_and_projection_discriminator_follow_their_formulas():
    m = create_model("cgan", DIGITS_INFO, budget="smoke", overrides={"steps": 3})
    m.fit(digits_data(), seed=0, labels=_digits_labels())
    y = torch.tensor([0, 3, 9, 3, 7])
    gen = torch.Generator().manual_seed(5)
    z = torch.randn(5, m.config.z_dim, generator=gen)
    with torch.no_grad():
        out = torch.tanh(m.G_best(torch.cat([z, F.one_hot(y, 10).float()], 1)))
    assert torch.equal(m.sample(5, seed=5, condition=y), torch.round(((out + 1) / 2).clamp(0, 1) * 255) / 255)
    D = m.D.eval()
    x = digits_data(5) * 2 - 1
    with torch.no_grad():
        phi = D.trunk.net(x).flatten(1)
        want = phi @ D.trunk.head.weight.T + D.trunk.head.bias + (D.embed[y] * phi).sum(1, keepdim=True)
        torch.testing.assert_close(D(x, y), want)
        assert not torch.allclose(D(x, y), D(x, (y + 1) % 10))  # the label enters the score
    with pytest.raises(InvalidInputError, match="pack must be 1"):
        create_model("cgan", DIGITS_INFO, budget="smoke", overrides={"pack": 2})
    with pytest.raises(InvalidInputError, match="'wgan-gp' is not supported"):
        create_model("cgan", DIGITS_INFO, budget="smoke", overrides={"loss": "wgan-gp"})


def test_cvae_label_planes_elbo_and_marginal_bound():
    m = create_model("cvae", DIGITS_INFO, budget="smoke", overrides={"steps": 3, "iw_samples": 3})
    m.fit(digits_data(), seed=0, labels=_digits_labels())
    assert m.encoder.net[0].in_channels == 1 + 10 and m.decoder.fc[0].in_features == m.config.latent_dim + 10
    x = digits_data(6)
    y = _digits_labels(6)
    e = m.elbo(x, y)
    assert e.shape == (6,) and torch.isfinite(e).all() and not torch.equal(e, m.elbo(x, (y + 5) % 10))
    with pytest.raises(InvalidInputError, match=r"elbo\(x, labels\) needs the class"):
        m.elbo(x)
    # log_prob: log (1/K) sum_c exp(IWAE_c(x)), the class passes drawing in turn from the eval generator
    lp = m.log_prob(x)
    m._eval_gen = torch.Generator().manual_seed(m.config.eval_seed)
    with torch.no_grad():
        per = torch.stack([m._iwae(x, torch.full((6,), c)) for c in range(10)])
    m._eval_gen = None
    torch.testing.assert_close(lp, torch.logsumexp(per, 0) - torch.log(torch.tensor(10.0, dtype=torch.float64)))
    assert (lp <= per.max(0).values + 1e-9).all() and (lp >= per.max(0).values - torch.log(torch.tensor(10.0)) - 1e-9).all()
    with pytest.raises(InvalidInputError, match="prior_components must be 1"):
        create_model("cvae", DIGITS_INFO, budget="smoke", overrides={"prior_components": 4})


def _toy(n: int = 256):
    """Two classes that differ only in brightness: class 0 dark (levels 0..40), class 1 bright (215..255)."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 2
    lv = torch.randint(0, 41, (n, 1, 8, 8), generator=g) + 215 * y[:, None, None, None]
    return lv.float() / 255, y


@pytest.mark.parametrize("name,overrides", [("cgan", {"steps": 300, "lr": 2e-3, "checkpoint": "last"}),
                                            ("cvae", {"steps": 400})])
def test_training_on_labels_makes_the_label_steer_the_samples(name, overrides):
    x, y = _toy()
    m = create_model(name, TWO, budget="smoke", overrides={"batch_size": 64, **overrides})
    m.fit(x, seed=0, labels=y)
    dark = m.sample(64, seed=1, condition=torch.zeros(64, dtype=torch.long)).mean()
    bright = m.sample(64, seed=1, condition=torch.ones(64, dtype=torch.long)).mean()
    assert bright - dark > 0.5, (float(dark), float(bright))  # the data's gap is 215/255 = 0.84; cgan 0.93, cvae 0.63


def test_pipeline_runs_them_with_the_conditional_metrics_and_class_grids(tmp_path):
    import tomllib

    from genbench.runner import Runner
    from genbench.results.store import ResultsStore
    from genbench.suite import parse_suite

    from tests.helpers.dummy_suite import suite_toml

    text = suite_toml({"digits": {"features": "classifier:digits", "n_samples": 200, "reference": "test",
                                  "conditions": "uniform",
                                  "metrics": ["conditional_accuracy", "intra_recall_coverage"]}},
                      {"cgan": {}, "cvae": {}, "cpixelcnn": {}}, name="cond-models", n_bootstrap=0,
                      speed={"batch_size": 64, "repeats": 1, "warmup": 0})
    suite = parse_suite(tomllib.loads(text), source="cond-models.toml")
    summary = Runner(suite, tmp_path / "run", device="cpu", quiet=True, log=lambda m: None, workers=1).run()
    assert not summary.failed, summary.failed
    with ResultsStore(tmp_path / "run") as store:
        f = store.metrics_frame()
    rows = {(r["model"], r["metric"]): r for r in f.to_dict("records") if r["variant"] == ""}
    for name in ("cgan", "cvae", "cpixelcnn"):
        for metric in ("conditional_accuracy", "intra_recall", "intra_coverage"):
            v = rows[(name, metric)]["value"]
            assert 0.0 <= v <= 1.0
        assert json.loads(rows[(name, "conditional_accuracy")]["protocol"])["conditions"] == "uniform"
    # the report draws their per-class sample grids (genbench/report/class_grids.py)
    from genbench.report.data import load_run
    from genbench.report.figures import make_figures

    figs, _ = make_figures(load_run(tmp_path / "run"), tmp_path / "figs")
    grid = [f for f in figs if f.kind == "class_samples"]
    assert len(grid) == 1 and grid[0].path.stat().st_size > 1000
