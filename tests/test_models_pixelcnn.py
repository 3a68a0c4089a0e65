"""Gated PixelCNN: causality (every pixel and channel), an exactly normalised likelihood, the incremental sampler
against the full network, and the protocol (training, sampling, save/load, determinism)."""

from __future__ import annotations

import itertools

import pytest
import torch

from reference_models import create_model, load_model
from tests._model_helpers import DIGITS_INFO, RING_INFO, check_samples, digits_data, image_info, one_thread


_threads = pytest.fixture(autouse=True, scope="module")(one_thread)


def _tiny(info, **over):
    return create_model("pixelcnn", info, "smoke", {"ch": 8, "n_layers": 3, "kernel": 3, "hidden": 16} | over)


@pytest.mark.parametrize("shape,kernel", [((1, 5, 5), 3), ((1, 6, 4), 5), ((3, 4, 4), 3)])
def test_causality_every_pixel_and_channel(shape, kernel):
    """d logits(i, c) / d x(j, c') is zero unless j < i (raster order) or (j == i and c' < c); and the model does
    use the past: the left neighbour, the pixel above and the one above-right (no blind spot)."""
    C, H, W = shape
    m = _tiny(image_info(H, W, C), kernel=kernel)
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


def test_log_prob_is_normalised_over_all_images():
    """A 1x1x2 'image' has 256^2 values: the exact model's probabilities must sum to 1."""
    m = _tiny(image_info(1, 2))
    levels = torch.cartesian_prod(torch.arange(256), torch.arange(256)).float() / 255
    lp = m.log_prob(levels.view(-1, 1, 1, 2), batch_size=8192)
    assert float(torch.logsumexp(lp, 0).exp()) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("shape", [(1, 5, 5), (3, 3, 4)])
def test_incremental_sampler_matches_the_full_network(shape):
    m = _tiny(image_info(shape[1], shape[2], shape[0]))
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


def test_images_only():
    with pytest.raises(ValueError, match="image"):
        create_model("pixelcnn", RING_INFO, "quick")


def test_configs_valid_and_quick_is_step_based():
    from reference_models.pixelcnn import PixelCNNConfig

    info = image_info(28, 28)
    for b in ("smoke", "quick", "standard"):
        create_model("pixelcnn", info, b)
    assert PixelCNNConfig.for_budget("quick", info).max_seconds is None  # default suite: same seed, same numbers
