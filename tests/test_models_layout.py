"""Weight layout (channels-last) is a property of the model on a device, applied by `GenerativeModel.to`: a model
loaded from disk and moved to a device runs the same kernels as the fitted one, so it samples the same numbers.
(Found on an H100: ddpm and realnvp trained channels-last on CUDA but were loaded contiguous, and sampled
different images after save -> load.)"""

import pytest
import torch

from reference_models import create_model, load_model
from genbench.models.base import GenerativeModel

from _model_helpers import DIGITS_INFO, RING_INFO, digits_data

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _strides(model):
    return {f"{k}.{n}": p.stride() for k, m in model.modules().items() for n, p in m.named_parameters() if p.dim() == 4}


def _channels_last(model):
    """Every 4-d weight is channels-last, and at least one is not also plain contiguous (C_in = 1 or 1x1 kernels
    are both)."""
    ps = [p for m in model.modules().values() for p in m.parameters() if p.dim() == 4]
    return all(p.is_contiguous(memory_format=torch.channels_last) for p in ps) and any(not p.is_contiguous() for p in ps)


def test_policy_channels_last_for_images_on_cuda_only():
    img = create_model("ddpm", DIGITS_INFO, "smoke")
    pts = create_model("ddpm", RING_INFO, "smoke")
    assert img.memory_format(torch.device("cuda")) == torch.channels_last
    assert img.memory_format(torch.device("cpu")) is None
    assert pts.memory_format(torch.device("cuda")) is None


@pytest.mark.parametrize("name", ["ddpm", "realnvp", "gan", "vae", "pixelcnn"])
def test_loaded_model_has_the_fitted_layout_and_samples_the_same(name, tmp_path, monkeypatch):
    # CPU stand-in for CUDA: make every image model channels-last on the CPU, as it is on a GPU
    monkeypatch.setattr(GenerativeModel, "memory_format", lambda self, device: torch.channels_last)
    m = create_model(name, DIGITS_INFO, "smoke", {"steps": 3})
    m.fit(digits_data(64), seed=0)
    assert _channels_last(m)  # trained channels-last
    m.save(tmp_path / "m")
    again = load_model(tmp_path / "m")
    assert _channels_last(again) and _strides(again) == _strides(m)
    assert torch.equal(m.sample(8, seed=1), again.sample(8, seed=1))
