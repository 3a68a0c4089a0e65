"""genbench.device.resolve_device: the one device resolution of the CLI, the feature extractors and the metrics."""

import pytest
import torch

from genbench.device import resolve_device
from genbench.errors import InvalidInputError


def test_none_follows_the_inputs_else_cpu():
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device(None, "not a tensor", torch.zeros(1, device="meta")) == torch.device("meta")
    assert resolve_device("cpu", torch.zeros(1, device="meta")) == torch.device("cpu")  # given wins


def test_auto_and_named_devices():
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert str(resolve_device("auto", flag="--device")) == want
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


def test_bad_devices_are_clear_errors():
    with pytest.raises(InvalidInputError, match=r"invalid --device 'gpu0'.*use auto, cpu, cuda or cuda:N"):
        resolve_device("gpu0", flag="--device")
    if not torch.cuda.is_available():
        with pytest.raises(InvalidInputError, match=r"device 'cuda' was asked for but CUDA is not available here"):
            resolve_device("cuda")
