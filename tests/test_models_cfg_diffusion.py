"""Class-conditional DDPM with classifier-free guidance: the guided noise model against its formula, guidance 0 ==
the unconditional sampler for the same seed, NFE doubling, label dropout, the protocol (conditions checked,
labels required, save/load) and the conditional protocol of the base class."""

from __future__ import annotations

import pytest
import torch

from genbench.errors import InvalidInputError
from reference_models import create_model, load_model
from tests._model_helpers import DIGITS_INFO, RING_INFO, check_samples, digits_data

pytestmark = pytest.mark.usefixtures("one_thread")


def _digits_labels(n: int = 256) -> torch.Tensor:
    from sklearn.datasets import load_digits

    return torch.from_numpy(load_digits().target[:n]).long()


@pytest.fixture(scope="module")
def model():
    m = create_model("cfg-ddpm", DIGITS_INFO, budget="smoke", overrides={"steps": 6})
    m.fit(digits_data(), seed=0, labels=_digits_labels())
    return m


def test_registered_conditional_and_configs():
    from genbench.models import get_model_class

    cls = get_model_class("cfg-ddpm")
    assert cls.conditional and cls.family == "diffusion" and cls.modalities == ("image",)
    from genbench.data.base import DatasetInfo

    fm = DatasetInfo("fashion-mnist", "image", (1, 28, 28), (0.0, 1.0), num_classes=10)
    q = cls.Config.for_budget("quick", fm)
    s = cls.Config.for_budget("standard", fm)
    assert (q.steps, q.sample_steps, q.patch, q.label_dropout, q.guidance) == (1200, 30, 2, 0.1, 2.0)
    assert (s.steps, s.sample_steps, s.ch) == (100000, 1000, 64)
    with pytest.raises(InvalidInputError, match="class-conditional and needs a labelled dataset"):
        create_model("cfg-ddpm", DIGITS_INFO.__class__("x", "image", (1, 8, 8), (0.0, 1.0)), budget="smoke")


def test_guidance_zero_equals_the_unconditional_sampler_for_the_same_seed(model):
    y = torch.arange(10).repeat(2)[:16]
    model.set_guidance(0.0)
    a = model.sample(16, seed=3, condition=y)
    b = model.sample(16, seed=3)  # no condition: the null label
    other = model.sample(16, seed=3, condition=(y + 3) % 10)
    assert torch.equal(a, b) and torch.equal(a, other)
    # ... and that is the plain DDPM sampler run on the null-label network with the same noise
    gen = torch.Generator().manual_seed(3)
    x_T = torch.randn(16, *DIGITS_INFO.shape, generator=gen)
    null = torch.full((16,), 10, dtype=torch.long)
    eps = lambda x, t: model.ema(x, t, null).float()  # noqa: E731
    out = model.process.sample_loop(eps, x_T, model.config.sampler, model.config.sample_steps, model.config.eta, gen)
    assert torch.equal(a, torch.round((out.clamp(-1, 1) + 1) * 127.5) / 255.0)


def test_guided_noise_model_is_the_cfg_formula(model):
    torch.manual_seed(0)
    x = torch.randn(4, 1, 8, 8)
    t = torch.tensor([3, 10, 20, 40])
    y = torch.tensor([1, 5, 7, 9])
    e_c = model.ema(x, t, y).float()
    e_u = model.ema(x, t, None).float()
    assert not torch.allclose(e_c, e_u)  # the label changes the prediction
    for s in (0.0, 1.0, 2.0, 4.0):
        model.set_guidance(s)
        got = model._guided_eps(model.ema, y)(x, t)
        torch.testing.assert_close(got, e_u + s * (e_c - e_u), rtol=1e-5, atol=1e-5)
    model.set_guidance(2.0)


def test_nfe_doubles_only_when_guidance_needs_two_passes(model):
    steps = model.config.sample_steps
    got = {}
    for s in (0.0, 1.0, 2.0, 4.0, 0.5):
        model.set_guidance(s)
        got[s] = model.nfe_per_sample
    assert got == {0.0: steps, 1.0: steps, 2.0: 2 * steps, 4.0: 2 * steps, 0.5: 2 * steps}
    model.set_guidance(2.0)
    with pytest.raises(InvalidInputError, match="finite number >= 0"):
        model.set_guidance(-1)


def test_conditional_samples_follow_the_label_and_are_reproducible(model):
    y = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7])
    a = model.sample(8, seed=1, condition=y)
    check_samples(a, 8, DIGITS_INFO)
    assert torch.equal(a, model.sample(8, seed=1, condition=y.tolist()))  # list or tensor
    assert torch.equal(a[:4], model.sample(4, seed=1, condition=y[:4], batch_size=4))
    assert not torch.equal(a, model.sample(8, seed=1, condition=(y + 1) % 10))


def test_bad_conditions_are_clear_errors(model):
    with pytest.raises(InvalidInputError, match=r"condition 10 is outside the declared classes 0\.\.9"):
        model.sample(3, seed=0, condition=[0, 10, 2])
    with pytest.raises(InvalidInputError, match=r"condition -1 is outside"):
        model.sample(2, seed=0, condition=torch.tensor([-1, 0]))
    with pytest.raises(InvalidInputError, match="2 conditions for 3 samples"):
        model.sample(3, seed=0, condition=[0, 1])
    with pytest.raises(InvalidInputError, match="integer class labels"):
        model.sample(2, seed=0, condition=torch.tensor([0.0, 1.0]))
    with pytest.raises(InvalidInputError, match="needs the training labels"):
        create_model("cfg-ddpm", DIGITS_INFO, budget="smoke").fit(digits_data(16), seed=0)
    with pytest.raises(InvalidInputError, match="outside the declared classes"):
        create_model("cfg-ddpm", DIGITS_INFO, budget="smoke").fit(digits_data(4), seed=0,
                                                                   labels=torch.tensor([0, 1, 2, 11]))
    unconditional = create_model("ddpm", RING_INFO, budget="smoke")
    with pytest.raises(InvalidInputError, match="is unconditional: it takes no condition"):
        unconditional.sample(2, seed=0, condition=[0, 1])


def test_label_dropout_replaces_that_share_of_labels_with_the_null_label(monkeypatch):
    m = create_model("cfg-ddpm", DIGITS_INFO, budget="smoke", overrides={"steps": 3, "batch_size": 400,
                                                                           "label_dropout": 0.25})
    seen = []
    real_eps = m._eps

    def spy(net, float32=False, y=None):
        if y is not None:
            seen.append(y.clone())
        return real_eps(net, float32, y)

    monkeypatch.setattr(m, "_eps", spy)
    m.fit(digits_data(256), seed=0, labels=_digits_labels(256))
    y = torch.cat(seen)
    null = (y == 10).float().mean().item()
    assert len(y) == 1200 and 0.20 < null < 0.30  # 25% +- 5 points on 1200 draws (sd 1.25 points)
    assert set(y[y != 10].tolist()) <= set(range(10))


def test_save_load_same_conditional_samples(tmp_path, model):
    y = torch.tensor([9, 8, 7, 6])
    model.set_guidance(4.0)
    a = model.sample(4, seed=5, condition=y)
    model.save(tmp_path / "m")
    m2 = load_model(tmp_path / "m")
    assert m2.config.guidance == 4.0 and m2.nfe_per_sample == model.nfe_per_sample
    assert torch.equal(a, m2.sample(4, seed=5, condition=y))
    model.set_guidance(2.0)


def test_log_prob_is_the_unconditional_bound(model):
    x = digits_data(4)
    lp = model.log_prob(x)
    assert lp.shape == (4,) and torch.isfinite(lp).all()
    assert torch.equal(lp, model.log_prob(x))
