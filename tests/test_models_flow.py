"""RealNVP: log_prob against a numerical change of variables (autograd Jacobian), invertibility, the logit /
dequantisation Jacobians on images, and the protocol (training, sampling, save/load, determinism)."""

from __future__ import annotations

import math

import pytest
import torch

from genbench.errors import InvalidInputError
from reference_models import create_model, load_model
from tests._model_helpers import (DIGITS_INFO, RING_INFO, check_points_change_of_variables, check_samples, digits_data,
                                  image_info, ring_data)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _fit(info, data, **over):
    m = create_model("realnvp", info, "smoke", over)
    m.fit(data, seed=0)
    return m


@pytest.fixture(scope="module")
def ring_model():  # trained a little, so that the couplings and ActNorm are far from the identity
    return _fit(RING_INFO, ring_data(512), steps=60, n_layers=4, lr=5e-3, x_freqs=3, cond_gain=2.0)


@pytest.fixture(scope="module")
def digits_model():
    return _fit(DIGITS_INFO, digits_data(64), steps=5, lr=5e-3)


def _std_normal(z):
    return (-0.5 * (z**2 + math.log(2 * math.pi))).sum(-1)


@pytest.fixture(scope="module")
def ring_model_alternate():  # the classic RealNVP alternation (reverse + ActNorm) instead of learned mixing
    return _fit(RING_INFO, ring_data(512), steps=60, n_layers=4, lr=5e-3, x_freqs=3, mixing="alternate")


@pytest.mark.parametrize("which", ["lu", "alternate"])
def test_points_log_prob_matches_numerical_change_of_variables(which, ring_model, ring_model_alternate):
    m = ring_model if which == "lu" else ring_model_alternate
    for mod in m.modules().values():
        mod.double()
    try:
        xs = torch.cat([ring_data(4, seed=3).double(), torch.tensor([[0.3, -0.2], [1.5, 1.0]], dtype=torch.float64)])
        check_points_change_of_variables(m, xs, atol=1e-6)  # m.forward: x -> z, standardisation included
        assert m.forward(xs)[1].abs().max() > 0.1  # not the identity map
    finally:
        for mod in m.modules().values():
            mod.float()


def _check_image_change_of_variables(m, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Switch the (1x4x4 image) flow `m` to float64 and check its log p_y(y) on the [0, 1] scale (y = dequantised
    x) against autograd's Jacobian of y -> z written from the definitions: scale to [alpha, 1 - alpha], logit,
    flow. Returns the float64 images and the dequantisation noise used."""
    for mod in m.modules().values():
        mod.double()
    n = len(x)
    xd, u = x.double(), torch.rand(n, *x.shape[1:], generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    lp = m._continuous_log_prob(xd, u)
    for i in range(n):
        y = (255 * xd[i] + u[i]) / 256

        def f(v):
            a = m.config.alpha
            p = a + (1 - 2 * a) * v
            return m.flow(torch.log(p / (1 - p))[None])[0][0]

        J = torch.autograd.functional.jacobian(f, y).reshape(y.numel(), y.numel())
        want = _std_normal(f(y)) + torch.linalg.slogdet(J).logabsdet
        assert float(lp[i]) == pytest.approx(float(want.detach()), abs=1e-7)
    return xd, u


@pytest.mark.parametrize("squeeze_first", [False, True])
def test_image_log_density_matches_numerical_change_of_variables(squeeze_first):
    """On a 1x4x4 image: d z / d y (y = dequantised [0, 1] image) through logit + flow, by autograd (with
    `squeeze_first` every coupling runs on the squeezed 4x2x2 tensor)."""
    info = image_info(4, 4)
    m = create_model("realnvp", info, "smoke", {"n_scales": 2, "steps": 10, "lr": 1e-2, "squeeze_first": squeeze_first})
    x = torch.randint(0, 256, (64, *info.shape)).float() / 255
    m.fit(x, seed=0)
    _check_image_change_of_variables(m, x[:3])
    # the discrete log_prob is the dequantised density minus D ln 256
    for mod in m.modules().values():
        mod.float()
    gen = torch.Generator().manual_seed(m.config.eval_seed)
    u0 = torch.rand(x[:5].shape, generator=gen)
    torch.testing.assert_close(m.log_prob(x[:5]), m._continuous_log_prob(x[:5], u0).double() - 16 * math.log(256), rtol=0, atol=1e-4)


GLOW = {"image_arch": "glow", "n_scales": 2, "ch": 8, "glow_steps": 2, "top": 2, "top_hidden": 16, "top_depth": 1}


def test_glow_image_log_density_matches_numerical_change_of_variables():
    """Glow architecture (ActNorm, invertible 1x1 convs, channel couplings, split priors, MLP couplings on the
    flattened top) on a 1x4x4 image: log p_y(y) against autograd's Jacobian of y -> z, written from the
    definitions; and inverse(forward) == identity."""
    info = image_info(4, 4)
    m = create_model("realnvp", info, "smoke", GLOW | {"steps": 15, "lr": 1e-2})
    x = torch.randint(0, 256, (64, *info.shape)).float() / 255
    m.fit(x, seed=0)
    xd, u = _check_image_change_of_variables(m, x[:3])
    z, ld = m.forward(xd, u)
    assert ld.abs().max() > 0.1  # trained away from the identity
    torch.testing.assert_close(m.inverse(z).reshape(xd.shape), (255 * xd + u) / 256, atol=1e-10, rtol=0)


def test_invertible_1x1_conv_log_det():
    """log|det| of Glow's 1x1 conv = H W log|det W|, against the Jacobian of the layer alone; exact inverse."""
    from reference_models.glow import InvConv1x1

    torch.manual_seed(0)
    layer = InvConv1x1(3).double()
    with torch.no_grad():
        layer.weight.add_(0.3 * torch.randn(3, 3, dtype=torch.float64))  # not a rotation any more: |det| != 1
    x = torch.randn(2, 3, 2, 3, dtype=torch.float64)
    y, ld = layer(x)
    J = torch.autograd.functional.jacobian(lambda v: layer(v[None])[0][0], x[0]).reshape(18, 18)
    assert abs(float(torch.linalg.slogdet(J).logabsdet)) > 0.1
    torch.testing.assert_close(ld, torch.linalg.slogdet(J).logabsdet.expand(2), atol=1e-10, rtol=0)
    torch.testing.assert_close(layer.inverse(y), x, atol=1e-12, rtol=0)


def test_bf16_training_keeps_log_prob_and_sampling_float32(monkeypatch):
    """With cpu_bf16 (forced native here) training runs the coupling nets in bf16 autocast, but log_prob and
    sampling do not: the same weights give the same numbers with the flags off."""
    from reference_models import nets

    monkeypatch.setattr(nets, "cpu_native_bf16", lambda: True)
    info = image_info(8, 8)
    m = create_model("realnvp", info, "smoke", GLOW | {"steps": 3, "mixed_precision": True, "cpu_bf16": True})
    assert m.precision("cpu") == "bf16-autocast"
    x = torch.randint(0, 256, (16, *info.shape)).float() / 255
    m.fit(x, seed=0)
    lp, s = m.log_prob(x[:4]), m.sample(4, seed=0)
    m.config.cpu_bf16 = m.config.mixed_precision = False
    assert torch.equal(m.log_prob(x[:4]), lp) and torch.equal(m.sample(4, seed=0), s)


def test_lu_linear_log_det_and_inverse():
    """LULinear with random (far from initial) parameters: its log|det| is slogdet of the matrix it applies (read
    off the map itself, by autograd), W = P L U holds, and inverse(forward(x)) == x."""
    from reference_models.flow_layers import LULinear

    torch.manual_seed(0)
    for dim in (2, 3, 5):
        lin = LULinear(dim, seed=7).double()
        with torch.no_grad():
            for prm in lin.parameters():
                prm.add_(0.5 * torch.randn_like(prm))
        x = torch.randn(16, dim, dtype=torch.float64)
        y, ld = lin(x)
        J = torch.autograd.functional.jacobian(lambda v: lin(v[None])[0][0], x[0])
        torch.testing.assert_close(ld, torch.linalg.slogdet(J).logabsdet.expand(16), rtol=0, atol=1e-12)
        assert abs(float(ld[0])) > 0.1  # the perturbed map is not volume-preserving
        torch.testing.assert_close(y, x @ J.T + (y[0] - x[0] @ J.T), rtol=0, atol=1e-12)  # affine with that matrix
        torch.testing.assert_close(lin.inverse(y), x, rtol=0, atol=1e-12)
        w0 = LULinear(dim, seed=7).weight().double()  # at initialisation: a rotation (orthogonal, |det| = 1)
        torch.testing.assert_close(w0 @ w0.T, torch.eye(dim, dtype=torch.float64), rtol=0, atol=1e-6)


def test_inverse_of_forward_is_identity(ring_model, ring_model_alternate, digits_model):
    x = ring_data(200, seed=5)
    for m in (ring_model, ring_model_alternate):
        z, _ = m.forward(x)
        torch.testing.assert_close(m.inverse(z), x, atol=1e-5, rtol=0)
        assert (z - x).abs().max() > 0.1
    x = digits_data(32)
    u = torch.rand(x.shape, generator=torch.Generator().manual_seed(0))
    z, _ = digits_model.forward(x, u)
    assert z.shape == (32, 64)
    torch.testing.assert_close(digits_model.inverse(z).reshape(x.shape), (255 * x + u) / 256, atol=1e-5, rtol=0)


def test_squeeze_first_inverse_and_size_check():
    info = image_info(8, 8)
    m = create_model("realnvp", info, "smoke", {"squeeze_first": True, "steps": 5, "lr": 5e-3})
    x = torch.randint(0, 256, (32, *info.shape)).float() / 255
    m.fit(x, seed=0)
    u = torch.rand(x.shape, generator=torch.Generator().manual_seed(0))
    z, _ = m.forward(x, u)
    torch.testing.assert_close(m.inverse(z).reshape(x.shape), (255 * x + u) / 256, atol=1e-5, rtol=0)
    with pytest.raises(InvalidInputError, match="divisible by 4"):
        create_model("realnvp", image_info(6, 6), "smoke", {"squeeze_first": True})


def test_warmup_cosine_schedule():
    from reference_models.flow_layers import warmup_cosine

    assert [warmup_cosine(s, 100, 4, 0.1) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert warmup_cosine(4, 100, 4, 0.1) == 1.0
    assert warmup_cosine(52, 100, 4, 0.1) == pytest.approx(0.1 + 0.9 * 0.5)  # half-way through the decay
    assert warmup_cosine(100, 100, 4, 0.1) == pytest.approx(0.1) and warmup_cosine(500, 100, 4, 0.1) == pytest.approx(0.1)
    assert warmup_cosine(0, 10, 0, 0.05) == 1.0  # no warm-up: the plain cosine


def test_squeeze_round_trip():
    from reference_models.flow_layers import squeeze, unsqueeze

    x = torch.randn(2, 3, 6, 4)
    s = squeeze(x)
    assert s.shape == (2, 12, 3, 2) and torch.equal(unsqueeze(s), x)
    assert torch.equal(s[0, :4, 0, 0], x[0, 0, :2, :2].flatten())  # each 2x2 block becomes 4 channels


def test_training_reduces_the_loss():
    for info, data, over in [(RING_INFO, ring_data(512), dict(steps=80, n_layers=4, lr=5e-3)),
                             (DIGITS_INFO, digits_data(128), dict(steps=30, lr=3e-3))]:
        m = create_model("realnvp", info, "smoke", over | {"log_every": 1})
        m.fit(data, seed=0)
        losses = [r["loss"] for r in m.history.records]
        assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.1, info.name


def test_samples_log_prob_determinism_and_save_load(tmp_path, ring_model, digits_model):
    for m, x in [(ring_model, ring_data(32, seed=9)), (digits_model, digits_data(16))]:
        s = m.sample(20, seed=1)
        check_samples(s, 20, m.info)
        assert torch.equal(s, m.sample(20, seed=1)) and not torch.equal(s, m.sample(20, seed=2))
        lp = m.log_prob(x)
        assert lp.shape == (len(x),) and lp.dtype == torch.float64 and torch.isfinite(lp).all()
        assert torch.equal(lp, m.log_prob(x))
        m2 = load_model(m.save(tmp_path / m.info.name))
        assert torch.equal(m2.sample(20, seed=1), s)
        assert torch.equal(m2.log_prob(x), lp)


def test_same_seed_same_model():
    a = _fit(RING_INFO, ring_data(128), steps=10)
    b = _fit(RING_INFO, ring_data(128), steps=10)
    assert [r["loss"] for r in a.history.records] == [r["loss"] for r in b.history.records]
    assert torch.equal(a.sample(16, seed=0), b.sample(16, seed=0))


def test_image_size_checks():
    with pytest.raises(InvalidInputError, match="divisible"):
        create_model("realnvp", image_info(6, 6), "quick", {"n_scales": 3})
    for h in (8, 28, 32):
        create_model("realnvp", image_info(h, h), "quick")
    with pytest.raises(InvalidInputError, match="image_arch"):
        create_model("realnvp", image_info(8, 8), "smoke", {"image_arch": "nice"})


def test_points_mixing_check():
    with pytest.raises(InvalidInputError, match="mixing must be 'lu' or 'alternate'"):
        create_model("realnvp", RING_INFO, "smoke", {"mixing": "rotate"})


def test_configs_valid_and_quick_is_step_based():
    """Every budget builds for points and for 28x28 images; quick runs in the default suite, so it has no
    wall-clock cap (same seed, same numbers on any machine)."""
    from reference_models.flow import RealNVPConfig

    for info in (RING_INFO, image_info(28, 28)):
        for b in ("smoke", "quick", "standard"):
            create_model("realnvp", info, b)
        assert RealNVPConfig.for_budget("quick", info).max_seconds is None
