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


def test_torch_threads_sets_the_count_inside_and_restores_it_after():
    from genbench.device import torch_threads

    before = torch.get_num_threads()
    inside = 2 if before == 1 else 1
    with torch_threads(inside):
        assert torch.get_num_threads() == inside
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError, match="boom"):
        with torch_threads(inside):
            raise RuntimeError("boom")
    assert torch.get_num_threads() == before  # restored when the block raises
    with pytest.raises(InvalidInputError, match="at least 1 thread, got 0"):
        with torch_threads(0):
            pass
    assert torch.get_num_threads() == before


def test_the_paired_bootstrap_runs_on_one_thread(monkeypatch):
    """compare / check / recommend's paired numbers do not depend on the core count: the replicates run on one
    torch thread, and the caller's count is back afterwards."""
    from genbench.results import paired

    seen = []
    monkeypatch.setattr(paired.PairedInputs, "_compute", lambda self, *a: seen.append(torch.get_num_threads()) or {})
    from genbench.device import torch_threads

    with torch_threads(3):  # a caller on several threads
        paired.PairedInputs(None, None, 10).results("ds", "m", "", [0], [0], ["fd"], {}, {})
        assert seen == [1] and torch.get_num_threads() == 3
