"""Tiny data and shared checks for the reference-model tests (kept small: 2 shared CPU cores)."""

from __future__ import annotations

import torch

from genbench.data.base import DatasetInfo
from genbench.data.mixtures import ring8

RING_INFO = DatasetInfo("ring8", "points", (2,), (-1.05, 1.05), num_modes=8)
DIGITS_INFO = DatasetInfo("digits", "image", (1, 8, 8), (0.0, 1.0), num_classes=10)


def ring_data(n: int = 512, seed: int = 0) -> torch.Tensor:
    return ring8().sample(n, seed)


def digits_data(n: int = 256) -> torch.Tensor:
    """sklearn's 8x8 digits as 8-bit images k/255 (values 0..16 mapped to round(v*255/16))."""
    from sklearn.datasets import load_digits

    x = torch.from_numpy(load_digits().images[:n]).float()
    return (torch.round(x * 255 / 16) / 255).unsqueeze(1)


def image_info(h: int, w: int, c: int = 1) -> DatasetInfo:
    return DatasetInfo(f"img{c}x{h}x{w}", "image", (c, h, w), (0.0, 1.0))


def check_samples(x: torch.Tensor, n: int, info: DatasetInfo) -> None:
    assert x.shape == (n, *info.shape)
    assert x.dtype == torch.float32
    assert torch.isfinite(x).all()
    if info.modality == "image":
        assert x.min() >= 0 and x.max() <= 1
        levels = x * 255
        assert torch.allclose(levels, levels.round(), atol=1e-3), "image samples must be 8-bit levels k/255"


def check_conditional_sampling(model, info: DatasetInfo = None) -> None:
    """A class-conditional model on 10 classes: same seed and labels, same samples (tensor or array labels);
    other labels, other samples; without labels, classes drawn from the same generator (reproducible)."""
    info = info or DIGITS_INFO
    y = torch.arange(20) % 10
    a = model.sample(20, seed=4, condition=y)
    check_samples(a, 20, info)
    assert torch.equal(a, model.sample(20, seed=4, condition=y.numpy()))
    assert not torch.equal(a, model.sample(20, seed=4, condition=(y + 1) % 10))
    free = model.sample(20, seed=4)
    check_samples(free, 20, info)
    assert torch.equal(free, model.sample(20, seed=4))


def check_points_change_of_variables(m, xs: torch.Tensor, atol: float) -> torch.Tensor:
    """A points flow's `log_prob(xs)` against log N(z; 0, I) + log|det dz/dx| at each point, with z = m.forward(x)[0]
    (the model's data -> base map) and its Jacobian by autograd. Call with the modules in float64. Returns log_prob."""
    import math

    import pytest

    lp = m.log_prob(xs)
    for x, got in zip(xs, lp):
        f = lambda v: m.forward(v[None])[0][0]  # noqa: E731
        z = f(x)
        J = torch.autograd.functional.jacobian(f, x)
        want = (-0.5 * (z**2 + math.log(2 * math.pi))).sum() + torch.linalg.slogdet(J).logabsdet
        assert float(got) == pytest.approx(float(want.detach()), abs=atol)
    return lp


def fd2(a: torch.Tensor, b: torch.Tensor) -> float:
    from reference_models.nets import frechet_distance

    return frechet_distance(a.reshape(len(a), -1), b.reshape(len(b), -1))
