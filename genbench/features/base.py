"""The feature-extractor contract: samples in the dataset's value range in, (N, dim) float64 features out.

A `FeatureExtractor` has a `name`, a feature `dim`, a `device` and a `protocol` dict naming everything that
changes its numbers (network and weights hash, resize, quantisation, layer...; `protocol["id"]` is a short
stable id). `extract(samples, batch_size)` validates the samples, runs `forward_batch` on consecutive
slices and returns float64 (N, dim) features on the CPU. Every extractor processes each sample on its own
(no batch statistics), so the result does not depend on `batch_size`; the tests check it.

Subclasses implement `protocol`, `_prepare(samples) -> torch.Tensor` (validation + conversion on the CPU)
and `forward_batch(x) -> torch.Tensor` (features of one prepared batch, any float dtype, any device).
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from typing import Any, Optional

import numpy as np
import torch

from genbench.device import resolve_device
from genbench.errors import InvalidInputError

# Values this far outside [0, 1] are treated as rounding noise and clamped; anything further is an error.
RANGE_TOLERANCE = 1e-6


class FeatureExtractor(ABC):
    name: str = ""
    dim: int = 0
    default_batch_size: int = 256

    def __init__(self, device: str | torch.device = "cpu"):
        self.device = resolve_device(device)

    # ------------------------------------------------------------------------------------------ contract
    @property
    @abstractmethod
    def protocol(self) -> dict:
        """Everything that changes the numbers: network + weights hash, resize, quantisation, layer...;
        "id" is a short stable identifier (e.g. 'inception-v3-tf2015/clean-pil-bicubic-299/pool3')."""

    @property
    def protocol_id(self) -> str:
        return self.protocol["id"]

    # An extractor without learned weights (a fixed transform, or weights drawn from a fixed seed) measures the
    # same on every machine by construction; set True in such subclasses.
    weightless: bool = False

    @property
    def pinned(self) -> bool:
        """Is this instrument the same on every machine? Weightless extractors are; a network is when its
        protocol carries the sha256 of its weights (`weights_sha256`) and does not say `"pinned": false`."""
        p = self.protocol
        if "pinned" in p:
            return bool(p["pinned"])
        return bool(self.weightless or p.get("weights_sha256"))

    @abstractmethod
    def _prepare(self, samples: torch.Tensor) -> torch.Tensor:
        """Validate `samples` (a CPU tensor) and return what `forward_batch` takes, still on the CPU.
        Raise InvalidInputError with what was wrong and what to do."""

    @abstractmethod
    def forward_batch(self, x: torch.Tensor) -> torch.Tensor:
        """Features (B, dim) of one prepared CPU batch; moves it to `self.device` itself."""

    # ------------------------------------------------------------------------------------------ driver
    def extract(self, samples, batch_size: Optional[int] = None, progress: bool = False) -> torch.Tensor:
        """Features of all `samples` as a float64 (N, dim) CPU tensor. `batch_size` only changes speed and
        memory, never the numbers. `progress=True` shows a tqdm bar on stderr."""
        x = self._prepare(as_tensor(samples, self.name))
        bs = self.default_batch_size if batch_size is None else batch_size
        if isinstance(bs, bool) or not isinstance(bs, (int, np.integer)) or bs < 1:
            raise InvalidInputError(f"batch_size must be a positive integer, got {batch_size!r}")
        n = int(x.shape[0])
        if n == 0:
            return torch.zeros((0, self.dim), dtype=torch.float64)
        out: list[torch.Tensor] = []
        starts = range(0, n, int(bs))
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, total=len(starts), desc=f"features {self.name}", unit="batch", leave=False)
        with torch.inference_mode():
            for i in starts:
                f = self.forward_batch(x[i:i + int(bs)])
                out.append(f.detach().to("cpu", torch.float64))
        feats = torch.cat(out)
        if feats.shape != (n, self.dim):
            raise RuntimeError(f"{self.name}: expected features of shape {(n, self.dim)}, got {tuple(feats.shape)}")
        return feats

    def __repr__(self) -> str:
        return f"<FeatureExtractor {self.name} dim={self.dim} device={self.device} id={self.protocol_id!r}>"


# ---------------------------------------------------------------------------------------------- helpers


def as_tensor(samples: Any, who: str) -> torch.Tensor:
    """torch.Tensor or numpy array -> CPU tensor (no copy when already a CPU tensor)."""
    if isinstance(samples, torch.Tensor):
        return samples.detach().cpu()
    if isinstance(samples, np.ndarray):
        if samples.dtype == object or not (np.issubdtype(samples.dtype, np.number) or samples.dtype == bool):
            raise InvalidInputError(f"{who}: samples must be a numeric array, got dtype {samples.dtype}")
        return torch.from_numpy(np.ascontiguousarray(samples))
    raise InvalidInputError(
        f"{who}: samples must be a torch.Tensor or numpy array of shape (N, ...), got {type(samples).__name__}")


def check_finite(x: torch.Tensor, who: str) -> None:
    if x.is_floating_point():
        bad = int((~torch.isfinite(x)).sum())
        if bad:
            raise InvalidInputError(f"{who}: samples contain {bad} NaN/inf values; fix the generator's output first")


def prepare_images(x: torch.Tensor, who: str, channels: Optional[tuple[int, ...]] = None,
                   size: Optional[tuple[int, int]] = None) -> torch.Tensor:
    """Validate images (N, C, H, W) with values in [0, 1] (float) or 0..255 (uint8) and return float32 in
    [0, 1]. `channels`: allowed C values; `size`: required (H, W)."""
    if x.dim() != 4:
        hint = (" For single-channel images of shape (N, H, W) use x.unsqueeze(1)." if x.dim() == 3 else
                " Flat vectors need the 'identity' extractor." if x.dim() == 2 else "")
        raise InvalidInputError(f"{who}: expected images of shape (N, C, H, W), got shape {tuple(x.shape)}.{hint}")
    n, c, h, w = x.shape
    if channels is not None and c not in channels:
        hint = " (channels-last input? use x.permute(0, 3, 1, 2))" if x.shape[-1] in channels else ""
        raise InvalidInputError(f"{who}: expected {' or '.join(map(str, channels))} channel(s), got C={c} in shape "
                                f"{tuple(x.shape)}{hint}")
    if size is not None and (h, w) != tuple(size):
        raise InvalidInputError(f"{who}: expected images of size {size[0]}x{size[1]}, got {h}x{w} "
                                f"(shape {tuple(x.shape)})")
    if x.dtype == torch.uint8:
        return x.to(torch.float32).div_(255.0)
    if not x.is_floating_point():
        raise InvalidInputError(f"{who}: images must be float in [0, 1] or uint8 0..255, got dtype {x.dtype}; "
                                "convert with x.to(torch.uint8) (0..255 values) or x.float() / 255")
    x = x.to(torch.float32)
    check_finite(x, who)
    if x.numel():
        lo, hi = float(x.min()), float(x.max())
        if lo < -RANGE_TOLERANCE or hi > 1.0 + RANGE_TOLERANCE:
            hint = (" They look like [-1, 1] images: pass (x + 1) / 2." if lo >= -1.0 - 1e-3 and lo < -0.05 and hi <= 1.0 + 1e-3
                    else " They look like 0..255 values: pass x / 255 (or a uint8 tensor)." if hi > 1.5 and hi <= 255.0 + 1e-3
                    else "")
            raise InvalidInputError(f"{who}: image values must lie in [0, 1]; got min {lo:.4g}, max {hi:.4g}.{hint}")
        if lo < 0.0 or hi > 1.0:
            x = x.clamp(0.0, 1.0)
    return x


def quantize_uint8(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] float -> uint8 by rounding x * 255 to the nearest integer (ties to even, torch.round)."""
    return torch.round(x.to(torch.float32) * 255.0).clamp_(0, 255).to(torch.uint8)


@contextlib.contextmanager
def exact_float32(device: torch.device):
    """On CUDA, switch TF32 off for the duration (convolutions and matmuls in true float32), so GPU features
    match CPU features to float32 rounding; a no-op on CPU."""
    if device.type != "cuda":
        yield
        return
    old = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old
