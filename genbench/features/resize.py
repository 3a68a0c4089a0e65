"""clean-fid's "clean" resize (PIL bicubic on float32 values) as two matrix products, on any torch device.

PIL resizes a mode-"F" image in two separable passes (Pillow's `Resample.c`): first every row (horizontal pass),
then every column of that result (vertical pass). Each output pixel of a pass is a weighted sum of input pixels,
the weights coming from the bicubic kernel (a = -0.5, support 2, widened by the scale when shrinking) and
normalised to sum to one; the sums run in double precision and each pass stores float32. So for one channel
`img` (H, W):

    out = float32( Wv @ float32( img @ Wh.T ) ),   Wh: (out_w, W), Wv: (out_h, H)

with the same weights PIL computes. `pil_bicubic_weights` rebuilds them (Pillow's `precompute_coeffs`), and
`ClearResizer` applies both passes in float64 with the float32 rounding after each, then clips to [0, 255] as
clean-fid's `make_resizer("PIL", False, "bicubic", size)` does. Only the order of the double-precision additions
differs from PIL's loop, so outputs agree with PIL to float32 rounding (tests/test_resize.py checks 1e-4 on the
0..255 scale against clean-fid's own resizer). On a GPU this removes the CPU resize that bounds the Inception
pass (benchmarks/bench_gpu.py measures it); on the CPU it is no faster than PIL, which stays the CPU default.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

BICUBIC_A = -0.5  # Pillow's bicubic kernel parameter
BICUBIC_SUPPORT = 2.0


def _bicubic(x: float) -> float:
    x = abs(x)
    if x < 1.0:
        return ((BICUBIC_A + 2.0) * x - (BICUBIC_A + 3.0)) * x * x + 1.0
    if x < 2.0:
        return (((x - 5.0) * x + 8.0) * x - 4.0) * BICUBIC_A
    return 0.0


@lru_cache(maxsize=32)
def pil_bicubic_weights(in_size: int, out_size: int) -> np.ndarray:
    """(out_size, in_size) float64: row i holds the weights PIL's bicubic resize gives each input pixel for
    output pixel i (Pillow's `precompute_coeffs` for the whole image, box (0, in_size))."""
    if in_size < 1 or out_size < 1:
        raise ValueError(f"sizes must be positive, got in_size={in_size}, out_size={out_size}")
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = BICUBIC_SUPPORT * filterscale
    w = np.zeros((out_size, in_size), dtype=np.float64)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        ss = 1.0 / filterscale
        xmin = max(int(center - support + 0.5), 0)  # C's (int) truncates toward zero
        xmax = min(int(center + support + 0.5), in_size)
        k = np.array([_bicubic((x - center + 0.5) * ss) for x in range(xmin, xmax)], dtype=np.float64)
        total = k.sum()
        if total != 0.0:
            k = k / total
        w[xx, xmin:xmax] = k
    return w


class CleanResizer:
    """uint8 images (B, C, H, W) -> float32 (B, C, out, out) in [0, 255], PIL-bicubic exact to float32 rounding.

    Weight matrices are built once per input size and kept on `device`. Float64 arithmetic is used for the sums,
    as PIL does; on devices without float64 support the caller should use the PIL path instead."""

    def __init__(self, size: int = 299, device: str | torch.device = "cpu"):
        self.size = int(size)
        self.device = torch.device(device)
        self._mats: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def _weights(self, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
        key = (h, w)
        if key not in self._mats:
            wv = torch.from_numpy(pil_bicubic_weights(h, self.size)).to(self.device)
            wh = torch.from_numpy(pil_bicubic_weights(w, self.size)).to(self.device)
            self._mats[key] = (wv, wh.t().contiguous())
        return self._mats[key]

    def __call__(self, x_u8: torch.Tensor) -> torch.Tensor:
        if x_u8.dim() != 4:
            raise ValueError(f"expected (B, C, H, W) images, got shape {tuple(x_u8.shape)}")
        b, c, h, w = x_u8.shape
        wv, wht = self._weights(h, w)
        x = x_u8.to(self.device, non_blocking=True).to(torch.float64)
        t = torch.matmul(x, wht).to(torch.float32).to(torch.float64)  # horizontal pass, stored float32
        out = torch.matmul(wv, t).to(torch.float32)  # vertical pass, stored float32
        return out.clamp_(0.0, 255.0)

