"""Which device a computation runs on: the one function every part of genbench resolves a device with."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Optional

import torch

from genbench.errors import InvalidInputError


def resolve_device(device: Optional[str | torch.device] = None, *tensors: Any, flag: str = "device") -> torch.device:
    """The torch.device to compute on.

    None: the device of the first tensor among `tensors`, else the CPU. "auto": CUDA when torch sees a GPU, else
    the CPU. Otherwise the named device ("cpu", "cuda", "cuda:N"); asking for CUDA where torch sees none, or for
    a name torch does not know, is an InvalidInputError naming `flag` (e.g. "--device")."""
    if device is None:
        for t in tensors:
            if isinstance(t, torch.Tensor):
                return t.device
        return torch.device("cpu")
    if isinstance(device, str) and device.strip() == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        d = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise InvalidInputError(f"invalid {flag} {device!r} ({e}); use auto, cpu, cuda or cuda:N") from None
    if d.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError(f"{flag} {str(device)!r} was asked for but CUDA is not available here (torch sees no "
                                f"GPU); use {flag} cpu or auto")
    return d


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run a block with `n` torch CPU threads, then restore the count it had (also when the block raises). A fixed
    count fixes the order of float sums, so what the block computes does not depend on the machine's core count
    (the classifier's training, the paired bootstrap)."""
    n = int(n)
    if n < 1:
        raise InvalidInputError(f"torch_threads needs at least 1 thread, got {n}")
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
