"""VAE reference model: likelihood pieces against independent computations, bounds, training, determinism."""

from __future__ import annotations

import math

import pytest
import torch

from genbench.errors import InvalidInputError
from reference_models import create_model, load_model
from reference_models.vae import discretized_logistic_log_prob
from tests._model_helpers import DIGITS_INFO, RING_INFO, check_samples, digits_data, image_info, ring_data

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_discretized_logistic_matches_cdf_differences_and_normalises():
    from scipy.stats import logistic

    levels = torch.arange(256, dtype=torch.float64)
    x = (2 * levels / 255 - 1).unsqueeze(1)  # every level, as the model sees it
    mean = torch.tensor([[-0.3, 0.0, 0.7, 0.99]], dtype=torch.float64)
    log_scale = torch.log(torch.tensor([[0.05, 0.2, 0.01, 0.5]], dtype=torch.float64))
    lp = discretized_logistic_log_prob(x, mean, log_scale)  # (256, 4)
    assert torch.allclose(lp.exp().sum(0), torch.ones(4, dtype=torch.float64), atol=1e-9)
    # independent: scipy's logistic CDF over each bin (edges take the tails)
    m, s = mean.numpy()[0], log_scale.exp().numpy()[0]
    for k in (0, 1, 100, 127, 200, 254, 255):
        xv = 2 * k / 255 - 1
        hi = 1.0 if k == 255 else logistic.cdf(xv + 1 / 255, m, s)
        lo = 0.0 if k == 0 else logistic.cdf(xv - 1 / 255, m, s)
        ref = torch.tensor(hi - lo)
        ok = ref > 1e-5  # the tiny-mass branch uses density * width (checked by the normalisation above)
        assert torch.allclose(lp[k][ok].exp(), ref[ok], rtol=1e-6, atol=1e-12), k


def _ring_vae(**over):
    return create_model("vae", RING_INFO, "smoke", {"kl_warmup": 0.0, **over})


def test_training_reduces_negative_elbo_points_and_images():
    m = _ring_vae(steps=150, log_every=10, lr=3e-3)
    h = m.fit(ring_data(512), seed=0)
    first, last = h.records[0]["neg_elbo"], sum(r["neg_elbo"] for r in h.records[-3:]) / 3
    assert last < first - 0.05, (first, last)
    x = digits_data(128)
    mi = create_model("vae", DIGITS_INFO, "smoke", {"steps": 40, "kl_warmup": 0.0, "log_every": 5})
    before = -mi.elbo(x).mean()  # untrained (eval mode)
    mi.fit(x, seed=0)
    assert -mi.elbo(x).mean() < before


@pytest.mark.parametrize("prior_components,prior_type", [(1, "mog"), (4, "mog"), (4, "vamp")])
def test_log_prob_integrates_to_one_on_points(prior_components, prior_type):
    """exp(IWAE estimate) is an unbiased estimate of p(x): its integral over the plane must be ~1. A missing
    standardisation Jacobian would make it 1/(std_x std_y) ~ 2; an unnormalised mixture prior would show too."""
    m = _ring_vae(steps=60, iw_samples=16, prior_components=prior_components, prior_type=prior_type)
    m.fit(ring_data(512), seed=0)
    g = torch.linspace(-5, 5, 161)
    xx, yy = torch.meshgrid(g, g, indexing="ij")
    grid = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)
    integral = float(m.log_prob(grid, batch_size=4096).exp().sum() * (g[1] - g[0]) ** 2)
    assert 0.9 < integral < 1.1, integral


def test_iwae_bound_at_least_elbo_and_tightens_with_k():
    x = digits_data(64)
    m = create_model("vae", DIGITS_INFO, "smoke", {"steps": 20, "kl_warmup": 0.0})
    m.fit(x, seed=0)
    elbo = m.elbo(x)
    m.config.iw_samples = 1
    iw1 = m.log_prob(x)
    m.config.iw_samples = 32
    iw32 = m.log_prob(x)
    assert torch.isfinite(iw32).all() and torch.isfinite(elbo).all()
    assert iw32.mean() >= elbo.mean() and iw32.mean() >= iw1.mean()
    assert (iw32 <= 0).all()  # log-probability of a discrete image
    assert m.log_prob_kind == "bound"


@pytest.mark.parametrize("hw", [(8, 8), (28, 28), (32, 32)])
def test_image_shapes_and_levels(hw):
    info = image_info(*hw)
    x = torch.round(torch.rand(16, *info.shape, generator=torch.Generator().manual_seed(0)) * 255) / 255
    m = create_model("vae", info, "smoke", {"steps": 2})
    m.fit(x, seed=0)
    check_samples(m.sample(4, seed=0), 4, info)
    assert torch.isfinite(m.log_prob(x[:4])).all()


def test_same_seed_same_samples_and_save_load(tmp_path):
    x = ring_data(256)
    a, b = _ring_vae(steps=20, prior_components=3), _ring_vae(steps=20, prior_components=3)
    a.fit(x, seed=3)
    b.fit(x, seed=3)
    s = a.sample(100, seed=5)
    check_samples(s, 100, RING_INFO)
    assert torch.equal(s, b.sample(100, seed=5)) and not torch.equal(s, a.sample(100, seed=6))
    assert torch.equal(a.log_prob(x[:10]), a.log_prob(x[:10]))  # z draws seeded by config.eval_seed
    a.save(tmp_path / "vae")
    c = load_model(tmp_path / "vae")
    assert torch.equal(c.sample(100, seed=5), s)
    assert torch.allclose(c.log_prob(x[:10]), a.log_prob(x[:10]))


def test_mean_sampling_option_and_errors():
    m = _ring_vae(steps=5, sample_noise=False)
    m.fit(ring_data(64), seed=0)
    assert m.sample(10, seed=0).shape == (10, 2)
    with pytest.raises(InvalidInputError, match="shaped"):
        m.fit(torch.zeros(8, 1, 8, 8))


def test_vamp_prior_is_the_mixture_of_posteriors_at_the_pseudo_inputs(tmp_path):
    """log p(z) of the VampPrior equals log (1/K) sum_k N(z; mu(u_k), sigma(u_k)^2) computed directly from the
    encoder (uniform weights at init); the pseudo-inputs start at training items; save/load keeps them."""
    x = ring_data(256)
    m = _ring_vae(steps=0, prior_components=5, prior_type="vamp")
    m.fit(x, seed=1)
    y = m._prep(x)
    u = m.prior.pseudo.detach()
    assert all(bool((y - ui).abs().sum(1).min() < 1e-6) for ui in u)  # each pseudo-input is a training item
    mu, log_sigma = m._encode(u)
    z = torch.randn(7, 2, generator=torch.Generator().manual_seed(0))
    comp = torch.distributions.Normal(mu.double(), log_sigma.exp().double()).log_prob(z.double()[:, None]).sum(-1)
    ref = torch.logsumexp(comp, 1) - math.log(5)
    torch.testing.assert_close(m._log_pz(z).double(), ref, rtol=1e-5, atol=1e-5)
    m.save(tmp_path / "v")
    c = load_model(tmp_path / "v")
    assert torch.equal(c.prior.pseudo, m.prior.pseudo) and torch.equal(c.sample(50, seed=2), m.sample(50, seed=2))


def test_vamp_prior_on_images_and_unknown_prior_type():
    x = digits_data(64)
    m = create_model("vae", DIGITS_INFO, "smoke", {"steps": 3, "prior_components": 4, "prior_type": "vamp"})
    m.fit(x, seed=0)
    check_samples(m.sample(8, seed=0), 8, DIGITS_INFO)
    assert torch.isfinite(m.log_prob(x[:4])).all()
    with pytest.raises(InvalidInputError, match="prior_type"):
        create_model("vae", RING_INFO, "smoke", {"prior_components": 3, "prior_type": "flow"})


def test_init_log_scale_sets_the_decoder_scale_at_the_start():
    m = _ring_vae(steps=0, init_log_scale=-3.0)
    m.fit(ring_data(64), seed=0)
    _, log_scale = m._decode(torch.zeros(4, m.config.latent_dim))
    # the output bias is -3; the last layer's weights add a small z-dependent term at init
    assert (log_scale - (-3.0)).abs().max() < 1.0


def test_quick_configs_are_step_based():
    from reference_models.vae import VAEConfig

    for info in (RING_INFO, DIGITS_INFO):
        c = VAEConfig.for_budget("quick", info)
        assert c.max_seconds is None and c.steps > 0
