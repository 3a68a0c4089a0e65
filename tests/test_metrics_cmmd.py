"""CMMD's RBF MMD^2 (genbench/metrics/cmmd.py) against a brute-force double sum and the full-matrix formula."""

import math

import numpy as np
import pytest
import torch

from genbench.errors import InvalidInputError
from genbench.metrics import cmmd
from genbench.metrics.cmmd import rbf_mmd2


def _brute(x, y, sigma, scale):
    def k(a, b):
        return math.exp(-sum((ai - bi) ** 2 for ai, bi in zip(a, b)) / (2 * sigma ** 2))

    kxx = sum(k(a, b) for a in x for b in x) / len(x) ** 2
    kyy = sum(k(a, b) for a in y for b in y) / len(y) ** 2
    kxy = sum(k(a, b) for a in x for b in y) / (len(x) * len(y))
    return scale * (kxx + kyy - 2 * kxy)


@pytest.mark.parametrize("sigma,scale", [(10.0, 1000.0), (1.0, 1.0), (0.5, 1000.0)])
def test_equals_the_brute_force_double_sum(sigma, scale):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(30, 5)), rng.normal(size=(25, 5)) * 1.3 + 0.2
    assert rbf_mmd2(x, y, sigma, scale) == pytest.approx(_brute(x.tolist(), y.tolist(), sigma, scale), rel=1e-10)


def test_unit_norm_embeddings_blocked_as_the_full_matrices(monkeypatch):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 64)); x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = rng.normal(size=(200, 64)) + 0.3; y /= np.linalg.norm(y, axis=1, keepdims=True)
    g = 1 / (2 * 10.0 ** 2)

    def km(a, b):
        return np.exp(-g * ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)).mean()

    want = 1000 * (km(x, x) + km(y, y) - 2 * km(x, y))
    assert rbf_mmd2(x, y) == pytest.approx(want, rel=1e-9)
    monkeypatch.setattr(cmmd, "_BLOCK", 7)  # row blocks that do not divide N
    assert rbf_mmd2(x, y) == pytest.approx(want, rel=1e-9)
    assert rbf_mmd2(x, x) == pytest.approx(0.0, abs=1e-9)  # V-statistic: exactly 0 for one set


def test_bad_input():
    with pytest.raises(InvalidInputError, match="sigma"):
        rbf_mmd2(torch.zeros(3, 2), torch.zeros(3, 2), sigma=0)
    with pytest.raises(InvalidInputError, match="dimension"):
        rbf_mmd2(torch.zeros(3, 2), torch.zeros(3, 4))
