"""The arithmetic a model runs in: bf16 autocast or float32 (recorded with its results, part of its cache key).
Part of the model protocol (`GenerativeModel.precision`); reference_models/nets.py builds `autocast` on it."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch

_CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # x86 instructions that multiply bf16 natively


@functools.lru_cache(maxsize=None)
def cpu_native_bf16() -> bool:
    """True when this CPU multiplies bf16 natively (x86 AMX-BF16 or AVX512-BF16, read from /proc/cpuinfo), so
    bf16 autocast makes CPU matmuls and convolutions faster; elsewhere it would be emulated and slower.
    `GENBENCH_CPU_BF16=0` forces False (float32 everywhere), `=1` forces True."""
    env = os.environ.get("GENBENCH_CPU_BF16", "").strip()
    if env in ("0", "1"):
        return env == "1"
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), [])
    return any(f in flags for f in _CPU_BF16_FLAGS)


def uses_bf16(device: torch.device, enabled: bool = True, cpu_bf16: bool = False) -> bool:
    """Whether `autocast` below runs in bf16: on CUDA when `enabled`; on CPU only when `enabled` and `cpu_bf16`
    (a config opt-in, used by the CPU `quick` configs) and the CPU has native bf16 (`cpu_native_bf16`)."""
    if not enabled:
        return False
    if device.type == "cuda":
        return True
    return device.type == "cpu" and cpu_bf16 and cpu_native_bf16()


def precision_label(device: torch.device, enabled: bool = True, cpu_bf16: bool = False) -> str:
    """'bf16-autocast' or 'float32': the arithmetic a model trains and samples in (recorded with its results)."""
    return "bf16-autocast" if uses_bf16(torch.device(device), enabled, cpu_bf16) else "float32"
