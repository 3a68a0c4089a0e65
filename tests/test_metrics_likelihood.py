"""Likelihood units against analytic densities and torchmetrics' Perplexity."""

import math

import pytest
import torch
from torchmetrics.text import Perplexity

from genbench.errors import InvalidInputError
from genbench.metrics import bits_per_char, bits_per_dim, continuous_to_discrete_bits_per_dim, nats_to_bits_per_dim, perplexity


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_uniform_density_is_8_bits_per_dim():
    d = 3 * 32 * 32
    # continuous uniform density on [0, 1]^D: log density 0 -> NLL 0 nats -> 8 bits/dim for 8-bit data
    assert continuous_to_discrete_bits_per_dim(torch.zeros(10), d) == 8.0
    assert nats_to_bits_per_dim(0.0, d, dequantized_offset=8) == 8.0
    # the same model in the reference_models convention: discrete log-prob of every image = -D ln 256
    assert bits_per_dim(torch.full((10,), -d * math.log(256), dtype=torch.float64), d) == pytest.approx(8.0, rel=1e-12)
    # uniform on [0, 1/2]^D (density 2^D): one bit per dimension less
    assert continuous_to_discrete_bits_per_dim(torch.full((4,), -d * math.log(2), dtype=torch.float64), d) == pytest.approx(7.0, rel=1e-12)


def test_standard_normal_bits_per_dim_for_points():
    # differential entropy of N(0, 1) = 0.5 log(2 pi e) nats; exact log density of its own samples averages to it
    x = torch.randn(200000, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    lp = (-0.5 * x**2 - 0.5 * math.log(2 * math.pi)).sum(1)
    assert bits_per_dim(lp, 2) == pytest.approx(0.5 * math.log2(2 * math.pi * math.e), abs=0.01)


def test_perplexity_matches_torchmetrics():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 17, 11, generator=g)
    target = torch.randint(0, 11, (4, 17), generator=g)
    nll = torch.nn.functional.cross_entropy(logits.reshape(-1, 11), target.reshape(-1), reduction="none")
    ref = Perplexity()(logits, target)
    assert perplexity(nll) == pytest.approx(float(ref), rel=1e-5)
    assert bits_per_char(nll) == pytest.approx(float(nll.double().mean()) / math.log(2), rel=1e-12)
    assert bits_per_char(math.log(2)) == pytest.approx(1.0)
    assert perplexity(math.log(65)) == pytest.approx(65.0)  # uniform over 65 characters


def test_likelihood_bad_input():
    with pytest.raises(InvalidInputError, match="NaN"):
        bits_per_dim(torch.tensor([float("nan")]), 4)
    with pytest.raises(InvalidInputError, match="dim"):
        bits_per_dim(torch.zeros(3), 0)
    with pytest.raises(InvalidInputError, match="empty"):
        perplexity(torch.zeros(0))


def test_likelihood_edges_dim_one_and_default_offset():
    """dim 1 is valid (one-dimensional points); nats_to_bits_per_dim adds no offset unless asked."""
    assert bits_per_dim(torch.tensor([-math.log(2.0)], dtype=torch.float64), 1) == pytest.approx(1.0, rel=1e-12)
    assert nats_to_bits_per_dim(math.log(2.0), 1) == pytest.approx(1.0, rel=1e-12)
    assert nats_to_bits_per_dim(math.log(2.0) * 3, 3) == pytest.approx(1.0, rel=1e-12)
