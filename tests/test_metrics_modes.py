"""Mode coverage (VEEGAN/PacGAN protocol) on exact mixture samples and collapsed samplers; class coverage."""

import math

import pytest
import torch

from genbench.data.mixtures import grid25, ring8
from genbench.errors import InvalidInputError
from genbench.metrics import MetricWarning, class_coverage, mode_coverage


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


HQ_EXPECTED = 1 - math.exp(-9 / 2)  # P(|N(0, s^2 I_2)| < 3 s): Rayleigh CDF at 3 = 0.98889


@pytest.mark.parametrize("mix,k", [(ring8(), 8), (grid25(), 25)])
def test_exact_samples_cover_every_mode(mix, k):
    n = 20000
    r = mode_coverage(mix.sample(n, seed=0), mix)
    assert r["modes_covered"] == k and r["num_modes"] == k
    sd = math.sqrt(HQ_EXPECTED * (1 - HQ_EXPECTED) / n)
    assert abs(r["hq_share"] - HQ_EXPECTED) < 4 * sd  # the exact 3-std rate, not a loose ">= 0.98"
    assert sum(r["histogram"]) == round(r["hq_share"] * n)
    assert r["kl"] < 0.01  # near-uniform histogram: KL ~ (K - 1) / (2 n_HQ)
    # the PacGAN sample size: still every mode
    assert mode_coverage(mix.sample(2500, seed=1), mix)["modes_covered"] == k


def test_sampler_collapsed_on_one_mode():
    mix = ring8()
    g = torch.Generator().manual_seed(0)
    x = mix.means[3] + mix.std * torch.randn(2500, 2, generator=g, dtype=torch.float64)
    r = mode_coverage(x, mix)
    assert r["modes_covered"] == 1
    assert r["histogram"][3] == sum(r["histogram"]) and sum(r["histogram"]) > 0
    assert r["kl"] == pytest.approx(math.log(8), rel=1e-12)  # KL(delta || uniform over 8) = log 8


def test_two_modes_equal_and_off_manifold_samples():
    mix = grid25()
    x = torch.cat([mix.means[0].repeat(10, 1), mix.means[7].repeat(10, 1), torch.full((20, 2), 1.0, dtype=torch.float64)])
    r = mode_coverage(x, mix)  # (1, 1) is 1.41 from every neighbouring mean: never high quality
    assert r["modes_covered"] == 2
    assert r["hq_share"] == 0.5
    assert r["kl"] == pytest.approx(math.log(25 / 2), rel=1e-12)
    none = mode_coverage(torch.full((5, 2), 1.0), mix)
    assert none["modes_covered"] == 0 and none["kl"] == math.inf


def test_class_coverage_analytic():
    r = class_coverage(torch.arange(100) % 10, num_modes=10)
    assert r["modes_covered"] == 10 and r["kl"] == pytest.approx(0.0, abs=1e-12) and r["histogram"] == [10] * 10
    half = class_coverage(torch.tensor([0, 1, 2, 3, 4] * 20), num_modes=10)
    assert half["modes_covered"] == 5 and half["kl"] == pytest.approx(math.log(2), rel=1e-12)
    probs = torch.nn.functional.one_hot(torch.tensor([2, 2, 2, 7]), 10).float() * 0.9 + 0.01
    with pytest.warns(MetricWarning, match="cannot cover 10"):
        p = class_coverage(probs)
    assert p["modes_covered"] == 2 and p["histogram"][2] == 3 and p["histogram"][7] == 1
    # KL of (3/4, 1/4) against uniform over 10
    assert p["kl"] == pytest.approx(0.75 * math.log(7.5) + 0.25 * math.log(2.5), rel=1e-12)


def test_stacked_mnist_probs_make_1000_modes():
    digits = torch.tensor([[1, 2, 3], [1, 2, 3], [9, 9, 9], [0, 0, 0]])
    probs = torch.nn.functional.one_hot(digits, 10).float()  # (N, 3, 10)
    with pytest.warns(MetricWarning, match="cannot cover 1000"):
        r = class_coverage(probs)
    assert r["num_modes"] == 1000 and r["modes_covered"] == 3
    assert r["histogram"][123] == 2 and r["histogram"][999] == 1 and r["histogram"][0] == 1
    with pytest.warns(MetricWarning):  # num_modes given as the per-channel class count (DatasetInfo.num_classes)
        assert class_coverage(probs, num_modes=10)["num_modes"] == 1000
    with pytest.raises(InvalidInputError, match="1000 modes"):
        class_coverage(probs, num_modes=7)


def test_class_coverage_bad_input():
    with pytest.raises(InvalidInputError, match="num_modes"):
        class_coverage(torch.tensor([0, 1]))
    with pytest.raises(InvalidInputError, match="range"):
        class_coverage(torch.tensor([0, 12]), num_modes=10)
    with pytest.raises(InvalidInputError):
        mode_coverage(torch.zeros(4, 3), ring8())
