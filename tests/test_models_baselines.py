"""Baselines: GMM likelihood against sklearn / scipy, sampling, save/load; train-copy emits training items."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from genbench.errors import InvalidInputError
from reference_models import create_model, load_model
from tests._model_helpers import DIGITS_INFO, RING_INFO, check_samples, digits_data, ring_data

pytestmark = [pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"), pytest.mark.usefixtures("one_thread")]


def test_gmm_points_log_prob_equals_sklearn_score_samples():
    x = ring_data(1000)
    m = create_model("gmm", RING_INFO, "smoke")
    m.fit(x, seed=0)
    test = ring_data(300, seed=9) * 1.3
    ours = m.log_prob(test)
    ref = torch.from_numpy(m.gmm_.score_samples(test.double().numpy()))
    assert torch.allclose(ours, ref, rtol=0, atol=1e-8)
    assert m.log_prob_kind == "exact"


def test_gmm_diag_points_matches_sklearn():
    x = ring_data(600)
    m = create_model("gmm", RING_INFO, "smoke", {"covariance_type": "diag", "n_components": 5})
    m.fit(x, seed=1)
    assert torch.allclose(m.log_prob(x[:50]), torch.from_numpy(m.gmm_.score_samples(x[:50].double().numpy())), atol=1e-8)


@pytest.mark.parametrize("pca_dim", [6, 64])
def test_gmm_image_log_prob_equals_full_space_gaussian_mixture(pca_dim):
    """The PCA-GMM + residual density is the D-dimensional mixture with component k ~
    N(m + W^T mu_k, W^T S_k W + s2 (I - W^T W)); evaluate that directly with scipy at the same dequantised u."""
    from scipy.stats import multivariate_normal

    x = digits_data(300)
    m = create_model("gmm", DIGITS_INFO, "smoke", {"pca_dim": pca_dim, "n_components": 3, "max_train": None})
    m.fit(x, seed=0)
    st = m.state_
    xs = x[:20]
    ours = m.log_prob(xs)
    flat = xs.reshape(20, -1).double()
    u = (flat * 255 + torch.rand(flat.shape, generator=torch.Generator().manual_seed(m.config.eval_seed), dtype=torch.float64)) / 256
    W = st["pca_components"].numpy()
    D = 64
    resid = float(st["residual_var"]) * (np.eye(D) - W.T @ W)
    comps = []
    for k in range(3):
        cov = W.T @ (st["chol"][k] @ st["chol"][k].T).numpy() @ W + resid
        mean = st["pca_mean"].numpy() + W.T @ st["means"][k].numpy()
        comps.append(math.log(float(st["weights"][k])) + multivariate_normal(mean, cov, allow_singular=False).logpdf(u.numpy()))
    ref = torch.from_numpy(np.logaddexp.reduce(np.stack(comps), axis=0)) - D * math.log(256)
    assert torch.allclose(ours, ref, rtol=1e-9, atol=1e-6)
    assert (ours < 0).all()


def test_gmm_more_em_iterations_lower_the_loss():
    x = digits_data(300)
    losses = []
    for steps in (1, 30):
        m = create_model("gmm", DIGITS_INFO, "smoke", {"steps": steps, "n_components": 4})
        losses.append(m.fit(x, seed=0).records[-1]["loss"])
    assert losses[1] < losses[0]


def test_gmm_samples_levels_determinism_and_save_load(tmp_path):
    x = digits_data(300)
    m = create_model("gmm", DIGITS_INFO, "smoke")
    m.fit(x, seed=0)
    s = m.sample(50, seed=2)
    check_samples(s, 50, DIGITS_INFO)
    assert torch.equal(s, m.sample(50, seed=2)) and not torch.equal(s, m.sample(50, seed=3))
    assert m.num_params > 0
    m.save(tmp_path / "gmm")
    c = load_model(tmp_path / "gmm")
    assert torch.equal(c.sample(50, seed=2), s)
    assert torch.equal(c.log_prob(x[:10]), m.log_prob(x[:10]))
    # the points variant samples match the fitted mixture's moments
    p = create_model("gmm", RING_INFO, "smoke")
    p.fit(ring_data(2000), seed=0)
    sp = p.sample(4000, seed=0).double()
    w, mu = p.state_["weights"], p.state_["means"]
    assert torch.allclose(sp.mean(0), (w[:, None] * mu).sum(0), atol=0.05)


def test_gmm_errors():
    with pytest.raises(InvalidInputError, match="not fitted"):
        create_model("gmm", RING_INFO, "smoke").sample(3)
    with pytest.raises(InvalidInputError, match="pca_dim"):
        create_model("gmm", DIGITS_INFO, "smoke", {"pca_dim": 65})


def test_train_copy_emits_training_items(tmp_path):
    x = digits_data(100)
    m = create_model("train-copy", DIGITS_INFO, "smoke")
    m.fit(x, seed=0)
    s = m.sample(30, seed=4)
    check_samples(s, 30, DIGITS_INFO)
    flat, sf = x.reshape(100, -1), s.reshape(30, -1)
    assert (sf[:, None, :] == flat[None]).all(-1).any(1).all()  # every sample is a training item verbatim
    assert torch.equal(s, m.sample(30, seed=4)) and not torch.equal(s, m.sample(30, seed=5))
    m.save(tmp_path / "copy")
    assert torch.equal(load_model(tmp_path / "copy").sample(30, seed=4), s)
    with pytest.raises(NotImplementedError):
        m.log_prob(x)
    p = create_model("train-copy", RING_INFO, "quick")
    r = ring_data(50)
    p.fit(r)
    assert (p.sample(20, seed=0)[:, None, :] == r[None]).all(-1).any(1).all()
    with pytest.raises(InvalidInputError, match="8-bit"):
        create_model("train-copy", DIGITS_INFO, "smoke").fit(x * 0.5 + 0.001)
