"""Gated PixelCNN: causality (every pixel and channel), an exactly normalised likelihood, the incremental sampler
against the full network, and the protocol (training, sampling, save/load, determinism)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from reference_models import create_model, load_model
from tests._model_helpers import DIGITS_INFO, RING_INFO, check_samples, digits_data, image_info


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _tiny(info, **over):
    return create_model("pixelcnn", info, "smoke", {"ch": 8, "n_layers": 3, "kernel": 3, "hidden": 16} | over)


# both output heads; the logistic one with the per-position biases and dilated vertical convs
HEADS = [{}, {"output": "logistic", "n_mix": 3, "pos_bias": True, "v_dilations": [1, 2, 3]}]


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("shape,kernel", [((1, 5, 5), 3), ((1, 6, 4), 5), ((3, 4, 4), 3)])
def test_causality_every_pixel_and_channel(shape, kernel, head):
    """d logits(i, c) / d x(j, c') is zero unless j < i (raster order) or (j == i and c' < c); and the model does
    use the past: the left neighbour, the pixel above and the one above-right (no blind spot)."""
    C, H, W = shape
    m = _tiny(image_info(H, W, C), kernel=kernel, **head)
    if head.get("pos_bias"):  # random position biases (they start at zero)
        torch.manual_seed(0)
        for layer in m.net.layers:
            torch.nn.init.normal_(layer.vpos)
            torch.nn.init.normal_(layer.hpos)
    x = torch.rand(1, C, H, W, requires_grad=True)
    out = m.net(x)  # (1, C, 256, H, W)
    for r, j, c in itertools.product(range(H), range(W), range(C)):
        (g,) = torch.autograd.grad(out[0, c, :, r, j].sum(), x, retain_graph=True)
        g = g[0].permute(1, 2, 0).reshape(H * W, C).abs()  # (pixel, channel)
        i = r * W + j
        assert g[i + 1:].max() == 0 if i + 1 < H * W else True, (r, j, c)
        assert g[i, c:].max() == 0, (r, j, c)
        if c > 0:
            assert g[i, :c].max() > 0
        if j > 0:  # the left neighbour (j == 0: the previous row's end may lie outside the receptive field)
            assert g[i - 1].max() > 0
        if r > 0:  # the pixel above and the one above-right (the blind spot of masked-conv PixelCNN)
            assert g[i - W].max() > 0
            if j + 1 < W:
                assert g[i - W + 1].max() > 0


@pytest.mark.parametrize("head", HEADS)
def test_log_prob_is_normalised_over_all_images(head):
    """A 1x1x2 'image' has 256^2 values: the exact model's probabilities must sum to 1."""
    m = _tiny(image_info(1, 2), **head)
    levels = torch.cartesian_prod(torch.arange(256), torch.arange(256)).float() / 255
    lp = m.log_prob(levels.view(-1, 1, 1, 2), batch_size=8192)
    assert float(torch.logsumexp(lp, 0).exp()) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("shape", [(1, 5, 5), (3, 3, 4)])
def test_incremental_sampler_matches_the_full_network(shape, head):
    m = _tiny(image_info(shape[1], shape[2], shape[0]), **head)
    if head.get("pos_bias"):
        torch.manual_seed(0)
        for layer in m.net.layers:
            torch.nn.init.normal_(layer.vpos)
            torch.nn.init.normal_(layer.hpos)
    x = torch.randint(0, 256, (3, *shape)).float() / 255
    levels = torch.round(x * 255).long()
    _, rec = m._autoregress(3, lambda logits, r, j, c: levels[:, c, r, j], record=True)
    torch.testing.assert_close(rec, m._logits(x), atol=1e-5, rtol=1e-5)
    a = m.sample(4, seed=2)
    b = m._sample_naive(4, torch.Generator().manual_seed(2))
    assert torch.equal(a, b)


@pytest.mark.parametrize("kernel", [3, 5])
def test_training_nll_layout_matches_the_full_network(kernel):
    """`_nll` (the channels-last matrix-product path, used for training and log_prob) equals the cross-entropy of
    `net(x)`'s (N, C, 256, H, W) conv logits, the path the causality and sampler tests check."""
    m = _tiny(image_info(4, 5, 3), kernel=kernel)
    x = torch.randint(0, 256, (3, 3, 4, 5)).float() / 255
    logits = m.net(x * 2 - 1)  # (N, C, 256, H, W)
    want = -torch.log_softmax(logits, 2).gather(2, torch.round(x * 255).long()[:, :, None]).flatten(1).sum(1)
    torch.testing.assert_close(m._nll(x), want, atol=1e-4, rtol=1e-5)


def _mixture_bins_float64(params: torch.Tensor) -> torch.Tensor:
    """Reference: P(level) (N, 256) of discretised logistic mixtures (N, 3K) as CDF differences in float64."""
    logit_pi, mu, log_s = params.double().chunk(3, 1)
    edges = torch.cat([torch.tensor([-math.inf]), (torch.arange(255.0, dtype=torch.float64) + 0.5) / 127.5 - 1,
                       torch.tensor([math.inf])]).double()
    cdf = torch.sigmoid((edges[None, :, None] - mu[:, None]) / torch.exp(log_s.clamp(min=-7))[:, None])  # (N, 257, K)
    return ((cdf[:, 1:] - cdf[:, :-1]) * torch.softmax(logit_pi, 1)[:, None]).sum(2)


def test_logistic_mixture_matches_cdf_differences_and_sampler_frequencies():
    """The stable log-bin formula equals plain CDF differences (float64), wide, narrow and edge-heavy mixtures
    included; and the sampler draws levels with those probabilities (chi-square over 200000 draws)."""
    from reference_models.pixelcnn import draw_logistic_mixture, logistic_mixture_log_prob

    params = torch.tensor([[0.0, 1.0, -0.3, 0.5, -0.9, 0.2, -3.0, -5.0, -1.5],  # 3 components, mixed widths
                           [2.0, -1.0, 0.0, -1.0, 0.99, 0.0, -2.0, -6.5, 1.5],  # mass at level 0, a narrow one
                           [0.0, 0.0, 0.0, 0.98, 1.2, -0.2, -4.5, -0.5, -8.0]])  # beyond the top edge, clamped s
    want = _mixture_bins_float64(params)
    got = logistic_mixture_log_prob(params.double()[:, None].expand(3, 256, 9), torch.arange(256).expand(3, 256))
    torch.testing.assert_close(got.exp(), want, atol=1e-12, rtol=1e-9)
    got32 = logistic_mixture_log_prob(params[:, None].expand(3, 256, 9), torch.arange(256).expand(3, 256))
    torch.testing.assert_close(got32.exp().double(), want, atol=1e-6, rtol=1e-4)
    n = 200_000
    gen = torch.Generator().manual_seed(0)
    for row in range(3):
        levels = draw_logistic_mixture(params[row].expand(n, 9), gen)
        counts = torch.bincount(levels, minlength=256).double()
        expected = want[row] * n
        keep = expected > 20  # bins with enough expected counts for the chi-square approximation
        chi2 = float((((counts - expected) ** 2) / expected)[keep].sum())
        dof = int(keep.sum()) - 1
        assert counts[~keep].sum() < 20 * 256 and chi2 < dof + 5 * math.sqrt(2 * dof), (row, chi2, dof)


def test_logistic_nll_layout_matches_the_full_network():
    from reference_models.pixelcnn import logistic_mixture_log_prob

    m = _tiny(image_info(4, 5, 3), output="logistic", n_mix=2, pos_bias=True)
    x = torch.randint(0, 256, (3, 3, 4, 5)).float() / 255
    params = m.net(x * 2 - 1)  # (N, C, 6, H, W)
    want = -logistic_mixture_log_prob(params.permute(0, 1, 3, 4, 2), torch.round(x * 255).long()).flatten(1).sum(1)
    torch.testing.assert_close(m._nll(x), want, atol=1e-4, rtol=1e-5)


def test_training_reduces_the_loss_and_protocol(tmp_path):
    data = digits_data(128)
    m = create_model("pixelcnn", DIGITS_INFO, "smoke", {"steps": 30, "lr": 3e-3, "log_every": 1})
    m.fit(data, seed=0)
    losses = [r["loss"] for r in m.history.records]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.3  # nats/dim; uniform = ln 256 = 5.55
    assert m.nfe_per_sample == 64
    s = m.sample(12, seed=1)
    check_samples(s, 12, DIGITS_INFO)
    assert torch.equal(s, m.sample(12, seed=1)) and not torch.equal(s, m.sample(12, seed=2))
    lp = m.log_prob(data[:16])
    assert lp.dtype == torch.float64 and torch.isfinite(lp).all() and (lp < 0).all()
    m2 = load_model(m.save(tmp_path / "pcnn"))
    assert torch.equal(m2.sample(12, seed=1), s) and torch.equal(m2.log_prob(data[:16]), lp)
    again = create_model("pixelcnn", DIGITS_INFO, "smoke", {"steps": 30, "lr": 3e-3, "log_every": 1})
    again.fit(data, seed=0)
    assert [r["loss"] for r in again.history.records] == losses


def test_images_only_and_bad_options():
    with pytest.raises(ValueError, match="image"):
        create_model("pixelcnn", RING_INFO, "quick")
    info = image_info(6, 6)
    with pytest.raises(ValueError, match="output must be"):
        create_model("pixelcnn", info, "smoke", {"output": "gaussian"})
    with pytest.raises(ValueError, match="v_dilations must list 2"):
        create_model("pixelcnn", info, "smoke", {"v_dilations": [1, 2, 4]})
    with pytest.raises(ValueError, match="n_mix"):
        create_model("pixelcnn", info, "smoke", {"output": "logistic", "n_mix": 0})


def test_configs_valid_and_quick_is_step_based():
    from reference_models.pixelcnn import PixelCNNConfig

    info = image_info(28, 28)
    for b in ("smoke", "quick", "standard"):
        create_model("pixelcnn", info, b)
    quick = PixelCNNConfig.for_budget("quick", info)
    assert quick.max_seconds is None  # default suite: same seed, same numbers
    assert quick.output == "logistic" and quick.pos_bias and len(quick.v_dilations) == quick.n_layers
    assert not PixelCNNConfig.for_budget("smoke", info).cpu_bf16  # the exactness tests run smoke configs in float32


def test_bf16_training_keeps_log_prob_float32_and_save_load_exact(tmp_path):
    """With cpu_bf16 (forced on, whatever this CPU is) training runs under autocast, but log_prob is the float32
    network's exact likelihood (normalised), and a loaded model samples exactly what the trained one did."""
    import os

    old = os.environ.get("GENBENCH_CPU_BF16")
    os.environ["GENBENCH_CPU_BF16"] = "1"
    try:
        m = create_model("pixelcnn", DIGITS_INFO, "smoke", {"steps": 5, "output": "logistic", "n_mix": 2,
                                                            "pos_bias": True, "cpu_bf16": True, "ema_decay": 0.9})
        assert m.precision() == "bf16-autocast"
        m.fit(digits_data(64), seed=0)
        x = digits_data(64)[:4]
        from reference_models.pixelcnn import logistic_mixture_log_prob

        levels = torch.round(x * 255).long()
        with torch.no_grad():
            want = logistic_mixture_log_prob(m.net(x * 2 - 1).permute(0, 1, 3, 4, 2), levels).flatten(1).sum(1)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                in_bf16 = logistic_mixture_log_prob(m.net(x * 2 - 1).float().permute(0, 1, 3, 4, 2), levels).flatten(1).sum(1)
        torch.testing.assert_close(m.log_prob(x), want.double(), atol=2e-4, rtol=1e-7)  # the float32 network
        assert (m.log_prob(x) - in_bf16.double()).abs().max() > 2e-3  # (bf16 would differ)
        s = m.sample(3, seed=4)
        m2 = load_model(m.save(tmp_path / "pcnn"))
        assert torch.equal(m2.sample(3, seed=4), s) and torch.equal(m2.log_prob(x), m.log_prob(x))
    finally:
        if old is None:
            os.environ.pop("GENBENCH_CPU_BF16")
        else:
            os.environ["GENBENCH_CPU_BF16"] = old
