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


def _mix(std=1.0):
    from types import SimpleNamespace

    return SimpleNamespace(name="two", means=torch.tensor([[0.0, 0.0], [10.0, 0.0]], dtype=torch.float64), std=std)


def test_high_quality_threshold_is_strict_and_scales_with_std():
    """HQ is distance < n_std * std: (3, 0) from mean (0, 0) with std 1 is exactly at 3 std (not HQ); 2.999 is.
    With std 2 the same points are 1.5 std away (HQ); with n_std=1.5 (std 2) 3.0 is at the boundary again."""
    x = torch.tensor([[3.0, 0.0], [2.999, 0.0], [10.0, 0.5]], dtype=torch.float64)
    r = mode_coverage(x, _mix())
    assert r["histogram"] == [1, 1] and r["hq_share"] == pytest.approx(2 / 3, rel=1e-12)
    assert r["kl"] == pytest.approx(0.0, abs=1e-15) and r["n_std"] == 3.0 and r["n_samples"] == 3
    assert mode_coverage(x, _mix(2.0))["histogram"] == [2, 1]
    r = mode_coverage(x, _mix(2.0), n_std=1.5)
    assert r["histogram"] == [1, 1] and r["n_std"] == 1.5
    # the nearest mean decides, even when both are HQ-far: (6, 0) is nearer (10, 0) (4 < 6); with n_std 5 HQ there
    r = mode_coverage(torch.tensor([[6.0, 0.0]], dtype=torch.float64), _mix(), n_std=5.0)
    assert r["histogram"] == [0, 1] and r["modes_covered"] == 1


def test_kl_to_uniform_uneven_histogram():
    """3 HQ samples at mode 0 and 1 at mode 1 of 2 modes: KL = 3/4 log(3/2) + 1/4 log(1/2)."""
    x = torch.tensor([[0.0, 0.0]] * 3 + [[10.0, 0.0]], dtype=torch.float64)
    r = mode_coverage(x, _mix())
    assert r["kl"] == pytest.approx(0.75 * math.log(1.5) + 0.25 * math.log(0.5), rel=1e-12)
    assert r["hq_share"] == 1.0 and r["modes_covered"] == 2


def test_mode_and_class_coverage_input_edges():
    with pytest.raises(InvalidInputError, match="at least one sample"):
        mode_coverage(torch.zeros(0, 2, dtype=torch.float64), _mix())
    with pytest.raises(InvalidInputError, match=r"\(N, 2\)"):
        mode_coverage(torch.zeros(4, dtype=torch.float64), _mix())
    with pytest.raises(InvalidInputError, match="at least one sample"):
        class_coverage(torch.zeros(0, dtype=torch.long), num_modes=3)
    with pytest.raises(InvalidInputError, match="integer labels"):
        class_coverage(torch.tensor([0.0, 1.5]), num_modes=3)
    r = class_coverage(torch.tensor([0.0, 2.0, 2.0]), num_modes=3)  # integral floats are labels
    assert r["histogram"] == [1, 0, 2] and r["modes_covered"] == 2
    with pytest.raises(InvalidInputError, match=r"\[0, 10\)"):  # the label equal to num_modes is out of range
        class_coverage(torch.tensor([0, 10]), num_modes=10)
    with pytest.raises(InvalidInputError, match="range"):
        class_coverage(torch.tensor([-1, 3]), num_modes=10)
    with pytest.warns(MetricWarning, match="2 samples cannot cover 10"):
        assert class_coverage(torch.tensor([0, 9]), num_modes=10)["histogram"] == [1] + [0] * 8 + [1]
    with pytest.raises(InvalidInputError, match="shape"):
        class_coverage(torch.zeros(2, 2, 2, 2))
    # (N, K) probabilities with num_modes larger than K: K classes seen, num_modes counted
    probs = torch.nn.functional.one_hot(torch.tensor([0, 1] * 10), 2).float()
    r = class_coverage(probs, num_modes=4)
    assert r["num_modes"] == 4 and r["histogram"] == [10, 10, 0, 0] and r["kl"] == pytest.approx(math.log(2), rel=1e-12)


def test_class_coverage_warns_only_below_one_sample_per_mode():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = class_coverage(torch.arange(10), num_modes=10)  # exactly one per mode: no warning
    assert r["n_samples"] == 10 and r["modes_covered"] == 10
    with pytest.warns(MetricWarning, match="9 samples cannot cover 10 modes"):
        class_coverage(torch.arange(9), num_modes=10)


def test_stacked_digits_are_read_most_significant_first():
    """Channel 0 is the hundreds digit: (1, 0, 0) -> mode 100, (0, 0, 1) -> mode 1, with base 3 and 2 channels
    (2, 1) -> 7."""
    probs = torch.nn.functional.one_hot(torch.tensor([[1, 0, 0], [0, 0, 1]] * 500), 10).float()
    r = class_coverage(probs)
    assert r["histogram"][100] == 500 and r["histogram"][1] == 500 and r["modes_covered"] == 2
    r = class_coverage(torch.nn.functional.one_hot(torch.tensor([[2, 1]] * 9), 3).float())
    assert r["num_modes"] == 9 and r["histogram"][7] == 9


def test_one_high_quality_sample_and_list_labels():
    """One HQ sample: the histogram is a delta, KL = log K (not the 'no HQ sample' inf); labels as a plain list."""
    r = mode_coverage(torch.tensor([[10.0, 0.0], [5.0, 0.0]], dtype=torch.float64), _mix())
    assert r["histogram"] == [0, 1] and r["kl"] == pytest.approx(math.log(2), rel=1e-12)
    with pytest.warns(MetricWarning):
        r = class_coverage([0, 1, 1], num_modes=4)
    assert r["histogram"] == [1, 2, 0, 0] and r["n_samples"] == 3
