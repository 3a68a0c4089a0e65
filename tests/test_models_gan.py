"""GAN reference model: training moves samples toward the data, shapes/ranges, checkpoints, determinism, save/load."""

from __future__ import annotations

import pytest
import torch

from genbench.errors import InvalidInputError
from reference_models import create_model, load_model
from tests._model_helpers import DIGITS_INFO, RING_INFO, check_samples, digits_data, image_info, ring_data

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _ring_gan(**over):
    return create_model("gan", RING_INFO, "smoke", over)


def _ring_share(x: torch.Tensor) -> float:
    r = x.norm(dim=1)
    return float(((r > 0.9) & (r < 1.1)).float().mean())


def test_training_moves_samples_onto_the_ring():
    x = ring_data(512)
    m0 = _ring_gan(steps=0)
    m0.fit(x, seed=0)  # untrained generator (scaler fitted)
    m = _ring_gan(steps=300, eval_every=100)
    m.fit(x, seed=0)
    assert _ring_share(m0.sample(512, seed=1)) < 0.02
    assert _ring_share(m.sample(512, seed=1)) > 0.15  # real data: 1.0
    assert all(torch.isfinite(torch.tensor([r["loss_d"] for r in m.history.records])))
    assert m.history.steps == 300


@pytest.mark.parametrize("loss", ["hinge", "wgan-gp"])
def test_loss_options_train(loss):
    m = _ring_gan(loss=loss, steps=5, eval_every=5)
    h = m.fit(ring_data(128), seed=0)
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in h.records)


@pytest.mark.parametrize("hw", [(8, 8), (28, 28), (32, 32)])
def test_image_shapes_and_range(hw):
    info = image_info(*hw)
    x = torch.round(torch.rand(32, *info.shape, generator=torch.Generator().manual_seed(0)) * 255) / 255
    m = create_model("gan", info, "smoke", {"steps": 2, "eval_every": 1, "eval_samples": 32})
    m.fit(x, seed=0)
    check_samples(m.sample(5, seed=0), 5, info)


def test_checkpoints_best_and_last_recorded_and_selectable():
    m = _ring_gan(steps=60, eval_every=10, pack=2)
    h = m.fit(ring_data(400), seed=0)
    ck = h.checkpoints
    assert set(ck) >= {"best", "last"} and ck["used_for_sampling"] == "best"
    scores = [r["select_score"] for r in h.records if "select_score" in r]
    assert len(scores) == 6
    assert ck["best"]["score"] == max(scores) and ck["best"]["higher_is_better"] is True
    assert ck["last"]["step"] == 60 and ck["last"]["score"] == scores[-1]
    assert "label" in ck["best"] and "label" in ck["last"]
    best = m.sample(50, seed=3)
    m.config.checkpoint = "last"
    last = m.sample(50, seed=3)
    assert torch.equal(best, last) == (ck["best"]["step"] == 60)


def test_image_checkpoint_selection_uses_lower_fd():
    x = digits_data(200)
    m = create_model("gan", DIGITS_INFO, "smoke", {"steps": 6, "eval_every": 2})
    h = m.fit(x, seed=0)
    scores = [r["select_score"] for r in h.records if "select_score" in r]
    assert h.checkpoints["best"]["score"] == min(scores) and h.checkpoints["best"]["higher_is_better"] is False


def test_same_seed_same_samples_and_save_load(tmp_path):
    x = digits_data(128)
    a = create_model("gan", DIGITS_INFO, "smoke")
    b = create_model("gan", DIGITS_INFO, "smoke")
    a.fit(x, seed=7)
    b.fit(x, seed=7)
    sa = a.sample(20, seed=1)
    assert torch.equal(sa, b.sample(20, seed=1))
    assert not torch.equal(sa, a.sample(20, seed=2))
    a.save(tmp_path / "gan")
    c = load_model(tmp_path / "gan")
    assert torch.equal(c.sample(20, seed=1), sa)
    assert c.history.checkpoints == a.history.checkpoints


def test_callback_stop_and_time_budget():
    seen = []

    def cb(step, logs):
        seen.append(step)
        return "stop" if step >= 2 else None

    m = _ring_gan(steps=100, log_every=1, eval_every=1000)
    h = m.fit(ring_data(128), seed=0, callbacks=[cb])
    assert h.steps == 2 and seen == [1, 2]
    assert "best" in h.checkpoints and h.checkpoints["last"]["step"] == 2
    m2 = _ring_gan(steps=10_000, max_seconds=0.0)
    assert m2.fit(ring_data(128), seed=0).steps == 1


def test_quick_configs_are_step_based():
    for info in (RING_INFO, image_info(28, 28)):
        c = create_model("gan", info, "quick").config
        assert c.max_seconds is None and c.steps > 0  # default suite: same seed, same numbers on any machine


def test_linear_lr_decay_reaches_zero_at_the_last_step():
    m = _ring_gan(steps=40, lr=1e-2, lr_d=3e-2, lr_decay_start=0.5, eval_every=40, log_every=1)
    h = m.fit(ring_data(128), seed=0)
    lr = [r["lr"] for r in h.records]  # G's lr used at steps 1..40
    assert [r["step"] for r in h.records] == list(range(1, 41))
    assert lr[:21] == [1e-2] * 21  # steps 1..21 run after i = 0..20 completed steps: full lr
    assert lr[30] == pytest.approx(1e-2 * 10 / 20) and lr[39] == pytest.approx(1e-2 / 20)
    assert all(a > b for a, b in zip(lr[20:], lr[21:]))
    assert m._lr_factor(40, m.config) == 0.0
    const = _ring_gan(steps=12, log_every=1, eval_every=12)
    assert {r["lr"] for r in const.fit(ring_data(128), seed=0).records} == {const.config.lr}


def test_budget_argument_replaces_step_budget():
    m = _ring_gan(steps=5)
    m.fit(ring_data(128), budget="smoke", seed=0)
    assert m.history.steps == m.Config.for_budget("smoke", RING_INFO).steps


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(InvalidInputError, match="loss"):
        _ring_gan(loss="wasserstein")
    with pytest.raises(InvalidInputError, match="checkpoint"):
        _ring_gan(checkpoint="middle")
    with pytest.raises(InvalidInputError, match="shaped"):
        _ring_gan().fit(torch.zeros(10, 3))
    with pytest.raises(InvalidInputError, match="divisible by 4"):
        create_model("gan", image_info(30, 30), "smoke")
    with pytest.raises(NotImplementedError):
        _ring_gan().log_prob(ring_data(4))


def test_num_params_counts_one_generator():
    # the discriminator and the EMA / best-checkpoint copies of G are training machinery, not model size
    for info in (RING_INFO, DIGITS_INFO):
        m = create_model("gan", info, "smoke")
        g = sum(p.numel() for p in m.G.parameters())
        every = sum(p.numel() for net in m.modules().values() for p in net.parameters())
        assert m.num_params == g and every > 2 * g
