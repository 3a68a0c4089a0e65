"""The environment a run is recorded with: versions, device, git commit."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Optional

import torch

import genbench


def git_commit(path: Optional[Path] = None) -> str:
    """HEAD commit of the checkout genbench is imported from ('+dirty' when it has uncommitted changes), or ''."""
    where = path or Path(genbench.__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10)
        if out.returncode != 0:
            return ""
        commit = out.stdout.strip()
        st = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                            capture_output=True, text=True, timeout=10)
        return commit + ("+dirty" if st.returncode == 0 and st.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return ""


# CPU features that change which kernels torch runs, and so timings (and the last bits of results)
_ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_isa() -> list[str]:
    """Which of the CPU features in _ISA_FLAGS this CPU has (Linux; empty elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return [f for f in _ISA_FLAGS if f in have]
    except OSError:
        pass
    return []


def hardware(device: str | torch.device = "cpu") -> str:
    """The environment fingerprint that timing figures depend on: CPU model, vector/matrix extensions and core
    count, or the GPU's name; and the torch version. Two timings are compared only when these are equal."""
    dev = torch.device(device)
    if dev.type == "cuda" and torch.cuda.is_available():
        where = f"GPU {torch.cuda.get_device_name(dev)}"
    else:
        isa = ",".join(cpu_isa()) or "no avx2"
        where = f"CPU {cpu_model()} [{isa}] x{os.cpu_count()}"
    return f"{where}; torch {torch.__version__}"


def device_description(device: str) -> str:
    if device == "cuda" and torch.cuda.is_available():
        return f"cuda:{torch.cuda.current_device()} {torch.cuda.get_device_name()} ({hardware(device)})"
    return f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads, {hardware(device)})"


def environment(device: str) -> dict:
    return {
        "genbench_version": genbench.__version__,
        "git_commit": git_commit(),
        "device": device_description(device),
        "torch_version": torch.__version__,
        "python_version": sys.version.split()[0],
        "platform": platform.platform(),
    }
