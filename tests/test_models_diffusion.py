"""DDPM: closed forms against step-by-step / Bayes-rule computations, samplers (DDIM eta=0 determinism, DDIM eta=1
== DDPM), the discrete decoder, the variational bound, and the protocol (training, sampling, save/load)."""

from __future__ import annotations

import math

import pytest
import torch

from genbench.errors import InvalidInputError
from reference_models import create_model, load_model
from reference_models.gaussian_diffusion import GaussianDiffusion, beta_schedule, discretized_gaussian_log_prob
from tests._model_helpers import DIGITS_INFO, RING_INFO, check_samples, digits_data, ring_data


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _process(T=40, kind="linear"):
    return GaussianDiffusion(beta_schedule(kind, T), clip_x0=False)


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_q_mean_var_matches_composed_single_steps(kind):
    p = _process(30, kind)
    x0 = torch.tensor([[0.7, -1.3]], dtype=torch.float64)
    mean, var = x0.clone(), torch.zeros_like(x0)
    for i in range(p.T):  # x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) eps, composed one step at a time
        a = 1 - float(p.betas[i])
        mean, var = math.sqrt(a) * mean, a * var + float(p.betas[i])
        m, v = p.q_mean_var(x0, torch.tensor([i]))
        torch.testing.assert_close(m, mean, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(v, var, rtol=1e-10, atol=1e-12)


def test_posterior_matches_numerical_bayes_rule():
    """q(x_{t-1} | x_t, x_0) proportional to q(x_t | x_{t-1}) q(x_{t-1} | x_0), integrated on a fine grid."""
    p = _process(20)
    grid = torch.linspace(-6, 6, 200001, dtype=torch.float64)
    for i, x0v, xtv in [(1, 0.5, -0.2), (5, -1.0, 0.8), (12, 0.3, 1.7), (19, 0.9, -1.1)]:
        a, b = 1 - float(p.betas[i]), float(p.betas[i])
        ab_prev = float(p.alpha_bar[i - 1])
        logw = -(xtv - math.sqrt(a) * grid) ** 2 / (2 * b) - (grid - math.sqrt(ab_prev) * x0v) ** 2 / (2 * (1 - ab_prev))
        w = torch.exp(logw - logw.max())
        w = w / w.sum()
        num_mean = float((w * grid).sum())
        num_var = float((w * (grid - num_mean) ** 2).sum())
        m, v = p.q_posterior_mean_var(torch.tensor([[x0v]], dtype=torch.float64), torch.tensor([[xtv]], dtype=torch.float64),
                                      torch.tensor([i]))
        assert float(m) == pytest.approx(num_mean, abs=1e-6)
        assert float(v) == pytest.approx(num_var, rel=1e-4)
    m0, v0 = p.q_posterior_mean_var(torch.tensor([[0.25]]), torch.tensor([[3.0]]), torch.tensor([0]))
    assert float(m0) == pytest.approx(0.25) and float(v0) == 0.0  # t = 1: the posterior is x_0 itself


def test_discretized_gaussian_is_a_distribution_over_256_levels():
    from scipy.stats import norm

    levels = torch.arange(256, dtype=torch.float64) * 2 / 255 - 1
    for mean, log_s in [(0.1, -3.0), (-0.98, -4.5), (0.999, -6.0), (0.0, 0.5)]:
        lp = discretized_gaussian_log_prob(levels, torch.full_like(levels, mean), torch.full_like(levels, log_s))
        assert float(torch.logsumexp(lp, 0).exp()) == pytest.approx(1.0, abs=1e-9)
        s = math.exp(log_s)
        k = 100  # an interior level: Phi(b) - Phi(a) computed by scipy
        ref = norm.cdf((float(levels[k]) + 1 / 255 - mean) / s) - norm.cdf((float(levels[k]) - 1 / 255 - mean) / s)
        if ref > 1e-300:
            assert float(lp[k]) == pytest.approx(math.log(ref), rel=1e-6)


def test_min_snr_loss_weights_each_example_by_min_snr_over_snr():
    """min-SNR-gamma loss == sum_i min(SNR_t_i, gamma) / SNR_t_i * mean_d (eps_theta - eps)^2 / N, with t and eps drawn
    in the documented order; gamma = None is L_simple, and a gamma above every SNR gives the same weights (all 1)."""
    p = _process(50)
    x0 = torch.randn(16, 3, generator=torch.Generator().manual_seed(3))
    eps_model = lambda x, t: 0.3 * x + 0.01 * t[:, None].to(x)  # noqa: E731
    g = torch.Generator().manual_seed(0)
    t = torch.randint(0, p.T, (16,), generator=g)
    noise = torch.randn(x0.shape, generator=g)
    direct_w, direct_l = 0.0, 0.0
    for i in range(16):
        ab = float(p.alpha_bar[int(t[i])])
        xt = math.sqrt(ab) * x0[i:i + 1] + math.sqrt(1 - ab) * noise[i:i + 1]
        err = float(((eps_model(xt, t[i:i + 1]) - noise[i:i + 1]) ** 2).mean())
        snr = ab / (1 - ab)
        direct_w += min(snr, 2.0) / snr * err / 16
        direct_l += err / 16
    assert float(p.loss(eps_model, x0, torch.Generator().manual_seed(0), 2.0)) == pytest.approx(direct_w, rel=1e-5)
    assert float(p.loss(eps_model, x0, torch.Generator().manual_seed(0))) == pytest.approx(direct_l, rel=1e-5)
    big = float((p.alpha_bar / (1 - p.alpha_bar)).max()) * 2
    assert float(p.loss(eps_model, x0, torch.Generator().manual_seed(0), big)) == pytest.approx(direct_l, rel=1e-5)
    assert direct_w < direct_l  # some low-noise examples were down-weighted


def _fit(info, data, **over):
    m = create_model("ddpm", info, "smoke", over)
    m.fit(data, seed=0)
    return m


def test_training_reduces_the_loss_points_and_images():
    for info, data, over in [(RING_INFO, ring_data(512), dict(steps=150, lr=3e-3)),
                             (DIGITS_INFO, digits_data(128), dict(steps=40, lr=2e-3))]:
        m = create_model("ddpm", info, "smoke", over)
        m.to("cpu")
        if m.scaler is not None:
            m.scaler.fit(data)
        x0 = m._prep(data)

        def held_loss():
            with torch.no_grad():
                return float(m.process.loss(m._eps(m.net), x0, torch.Generator().manual_seed(123)))

        before = held_loss()
        m.fit(data, seed=0)
        assert held_loss() < 0.8 * before, info.name


@pytest.fixture(scope="module")
def ring_model():
    return _fit(RING_INFO, ring_data(256), steps=20)


@pytest.fixture(scope="module")
def digits_model():
    return _fit(DIGITS_INFO, digits_data(64), steps=3)


def test_samples_shape_range_and_determinism(ring_model, digits_model):
    for m in (ring_model, digits_model):
        for sampler in ("ddpm", "ddim"):
            m.set_sampler(sampler, 5)
            x = m.sample(10, seed=1)
            check_samples(x, 10, m.info)
            assert torch.equal(x, m.sample(10, seed=1))
            assert not torch.equal(x, m.sample(10, seed=2))


def test_set_sampler_and_nfe(ring_model):
    m = ring_model
    m.set_sampler("ddim", 7)
    assert m.nfe_per_sample == 7 and m.config.sampler == "ddim"
    m.set_sampler("ddpm", m.config.timesteps)
    assert m.nfe_per_sample == m.config.timesteps
    with pytest.raises(InvalidInputError, match="sampler"):
        m.set_sampler("euler", 5)
    with pytest.raises(InvalidInputError, match="sample_steps"):
        m.set_sampler("ddim", m.config.timesteps + 1)


def test_ddim_eta0_is_deterministic_given_the_noise(digits_model):
    m = digits_model.set_sampler("ddim", 10, eta=0.0)
    x_T = torch.randn(6, *m.info.shape, generator=torch.Generator().manual_seed(5))
    a = m.sample_from_noise(x_T, torch.Generator().manual_seed(0))
    b = m.sample_from_noise(x_T, torch.Generator().manual_seed(999))
    c = m.sample_from_noise(x_T, None)
    assert torch.equal(a, b) and torch.equal(a, c)
    assert not torch.equal(a, m.sample_from_noise(-x_T, None))
    m.set_sampler("ddim", 10, eta=1.0)  # stochastic: different generators give different samples
    assert not torch.equal(m.sample_from_noise(x_T, torch.Generator().manual_seed(0)),
                           m.sample_from_noise(x_T, torch.Generator().manual_seed(1)))
    m.set_sampler("ddim", 5, eta=0.0)


@pytest.mark.parametrize("steps", [40, 9])
@pytest.mark.parametrize("clip", [False, True])
def test_ddim_eta1_equals_ddpm_ancestral_process(steps, clip):
    """In float64 with a fixed smooth noise model: the DDIM update with eta = 1 is the ancestral DDPM update."""
    p = GaussianDiffusion(beta_schedule("linear", 40), clip_x0=clip)
    eps_model = lambda x, t: torch.tanh(x) * 0.5 + 0.01 * t[:, None].to(x)  # noqa: E731
    x_T = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    a = p.sample_loop(eps_model, x_T, "ddpm", steps, 0.0, torch.Generator().manual_seed(1))
    b = p.sample_loop(eps_model, x_T, "ddim", steps, 1.0, torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)
    c = p.sample_loop(eps_model, x_T, "ddim", steps, 0.0, torch.Generator().manual_seed(1))
    assert (a - c).abs().max() > 1e-3  # eta = 0 is a different (deterministic) sampler


@pytest.mark.parametrize("steps", [None, 9])
def test_ddim_eta1_equals_ddpm_ancestral(digits_model, steps):
    for m in (digits_model,):
        s = steps or m.config.timesteps
        m.set_sampler("ddpm", s)
        a = m.sample(8, seed=3)
        m.set_sampler("ddim", s, eta=1.0)
        b = m.sample(8, seed=3)
        m.set_sampler("ddim", 5, eta=0.0)
        torch.testing.assert_close(a, b, atol=2e-4, rtol=1e-5)


def test_log_prob_bound_finite_reproducible_and_estimator_unbiased(ring_model, digits_model):
    for m in (ring_model, digits_model):
        x = (ring_data(64, seed=7) if m.info.modality == "points" else digits_data(32))
        m.config.vlb_timesteps = None
        exact = m.log_prob(x)
        assert exact.shape == (len(x),) and exact.dtype == torch.float64 and torch.isfinite(exact).all()
        assert torch.equal(exact, m.log_prob(x))
        if m.info.modality == "image":
            assert (exact < 0).all()  # a bound on the log-probability of a discrete image
        m.config.vlb_timesteps = 8  # the stratified estimate agrees with the full sum on average
        est = m.log_prob(x)
        diff = est - exact
        se = diff.std() / math.sqrt(len(diff))
        assert abs(float(diff.mean())) < 4 * float(se) + 1e-6
        m.config.vlb_timesteps = None if m.info.modality == "points" else 5


def test_save_load_identical_samples(tmp_path, ring_model, digits_model):
    for m in (ring_model, digits_model):
        m.set_sampler("ddim", 4, eta=0.5)
        path = m.save(tmp_path / m.info.name)
        m2 = load_model(path)
        assert m2.config.sampler == "ddim" and m2.config.sample_steps == 4
        assert torch.equal(m.sample(6, seed=4), m2.sample(6, seed=4))
        torch.testing.assert_close(m.log_prob(m.sample(4, seed=1)), m2.log_prob(m.sample(4, seed=1)))
        m.set_sampler("ddim", 5, eta=0.0)


def test_same_seed_same_model():
    a = _fit(RING_INFO, ring_data(128), steps=10)
    b = _fit(RING_INFO, ring_data(128), steps=10)
    assert torch.equal(a.sample(16, seed=0), b.sample(16, seed=0))
    assert [r["loss"] for r in a.history.records] == [r["loss"] for r in b.history.records]


def test_fit_honours_callbacks_and_budget():
    m = create_model("ddpm", RING_INFO, "smoke", {"steps": 100, "log_every": 1})
    seen = []
    m.fit(ring_data(64), seed=0, callbacks=[lambda s, logs: (seen.append(s), "stop" if s == 5 else None)[1]])
    assert m.history.steps == 5 and seen == [1, 2, 3, 4, 5]
    assert m.history.records[-1]["stopped_by"] == "callback"
    m = create_model("ddpm", RING_INFO, "smoke", {"steps": 10**6, "max_seconds": 0.2})
    m.fit(ring_data(64), seed=0)
    assert m.history.steps < 10**6 and m.history.records[-1]["stopped_by"] == "max_seconds"


def test_budget_configs():
    from reference_models.diffusion import DDPMConfig

    for info in (RING_INFO, DIGITS_INFO):
        for b in ("smoke", "quick", "standard"):
            c = DDPMConfig.for_budget(b, info)
            assert 1 <= c.sample_steps <= c.timesteps
    for info in (RING_INFO, DIGITS_INFO):  # quick runs in the default suite: step-based, no wall-clock cap
        assert DDPMConfig.for_budget("quick", info).max_seconds is None


@pytest.mark.parametrize("hw", [(8, 8), (28, 28)])
def test_unet_patch_folds_pixels_into_channels(hw):
    """patch=2: the convs see (H/2, W/2) with 4x the channels; output shaped like the input; odd sizes refused."""
    from reference_models.unet import UNet

    torch.manual_seed(0)
    net = UNet(1, ch=8, ch_mult=(1, 2), patch=2)
    assert net.conv_in.in_channels == 4
    for p in net.parameters():  # the output conv starts at zero: give it weights so the check means something
        torch.nn.init.normal_(p, std=0.05)
    x = torch.randn(3, 1, *hw)
    seen = []
    hook = net.conv_in.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].shape))
    y = net(x, torch.tensor([0, 5, 9]))
    hook.remove()
    assert y.shape == x.shape and torch.isfinite(y).all() and y.abs().sum() > 0
    assert seen[0] == (3, 4, hw[0] // 2, hw[1] // 2)
    torch.testing.assert_close(torch.nn.functional.pixel_shuffle(torch.nn.functional.pixel_unshuffle(x, 2), 2), x)
    with pytest.raises(ValueError, match="patch"):
        net(torch.randn(1, 1, 9, 9), torch.tensor([0]))


def test_ddpm_with_patched_unet_trains_and_samples():
    x = digits_data(64)
    m = create_model("ddpm", DIGITS_INFO, "smoke", {"steps": 3, "patch": 2})
    m.fit(x, seed=0)
    check_samples(m.sample(6, seed=0), 6, DIGITS_INFO)
    assert torch.isfinite(m.log_prob(x[:4])).all()


def test_num_params_counts_the_network_once():
    # the EMA weights the sampler uses; the raw training weights are a same-sized copy
    for info in (RING_INFO, DIGITS_INFO):
        m = create_model("ddpm", info, "smoke")
        n = sum(p.numel() for p in m.net.parameters())
        assert m.num_params == n == sum(p.numel() for p in m.ema.parameters())


def test_cpu_bf16_samples_in_bf16_but_log_prob_stays_float32(monkeypatch, digits_model):
    """With `cpu_bf16` (forced on here) sampling runs the UNet under bf16 autocast, so samples change, while the
    variational bound evaluates the network in float32: identical to the float32 model's."""
    from reference_models.nets import cpu_native_bf16

    m = digits_model
    m.set_sampler("ddim", 5, eta=0.0)
    x = digits_data(8)
    lp32, s32 = m.log_prob(x), m.sample_from_noise(torch.randn(4, *m.info.shape, generator=torch.Generator().manual_seed(0)))
    monkeypatch.setenv("GENBENCH_CPU_BF16", "1")
    cpu_native_bf16.cache_clear()
    try:
        m.config.cpu_bf16 = True
        assert m.precision() == "bf16-autocast"
        eps = m._eps(m.ema)(m._prep(x), torch.full((8,), 10))
        eps32 = m._eps(m.ema, float32=True)(m._prep(x), torch.full((8,), 10))
        assert not torch.equal(eps, eps32)  # the network really ran in bf16
        assert torch.equal(m.log_prob(x), lp32)
        s16 = m.sample_from_noise(torch.randn(4, *m.info.shape, generator=torch.Generator().manual_seed(0)))
        assert s16.shape == s32.shape
    finally:
        m.config.cpu_bf16 = False
        cpu_native_bf16.cache_clear()


def test_set_sampler_clip_x0_switches_clipping_of_images_only(ring_model, digits_model):
    m = digits_model
    m.set_sampler("ddpm", 5, clip_x0=False)
    assert m.config.clip_x0 is False and m.process.clip_x0 is False
    unclipped = m.sample(6, seed=2)
    m.set_sampler("ddpm", 5, clip_x0=True)
    assert m.config.clip_x0 is True and m.process.clip_x0 is True
    assert not torch.equal(unclipped, m.sample(6, seed=2))  # x0_hat leaves [-1, 1] at high noise
    ring_model.set_sampler("ddpm", 5, clip_x0=True)
    assert ring_model.process.clip_x0 is False  # points are standardised, not bounded: never clipped
    m.set_sampler("ddim", 5, eta=0.0)
