"""`clip`: CLIP ViT-L/14@336 image embeddings, the features of CMMD (Jayasumana et al. 2024).

Pipeline (the CMMD PyTorch reference, github.com/sayakpaul/cmmd-pytorch `embedding.py`, on the Hugging Face
`openai/clip-vit-large-patch14-336` checkpoint): images quantised to uint8 by rounding and read back as [0, 1]
floats (as from image files), grayscale repeated to 3 channels, torch bicubic resize to 336 x 336
(`interpolate(mode="bicubic")`, no antialias, no crop), normalised with CLIP's mean and std, transformers'
`CLIPVisionModelWithProjection` -> `image_embeds` (768-d), L2-normalised.

Weights are not downloaded by genbench and no registry carries them. Where they are looked for: the directory in
$GENBENCH_CLIP_VIT_L14_336, then the Hugging Face cache (`~/.cache/huggingface/hub/models--openai--clip-vit-large-
patch14-336/snapshots/*`, or $HF_HOME). The directory must hold `config.json` and `model.safetensors` (or
`pytorch_model.bin`). The sha256 of the weight file is recorded in the protocol; it is not pinned yet (no copy of
it could be had where this was written), so results say `"pinned": false`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F

from genbench.assets.hashing import file_sha256
from genbench.errors import GenbenchError
from genbench.features.base import FeatureExtractor, exact_float32, prepare_images, quantize_uint8

ENV = "GENBENCH_CLIP_VIT_L14_336"
HUB_ID = "openai/clip-vit-large-patch14-336"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
PROTOCOL_ID = "clip-vit-l14-336/torch-bicubic-336/image-embeds-l2"


class ClipUnavailable(GenbenchError):
    """The CLIP weights are not here (the message says which files to get and where to put them)."""


def how_to_provide(looked: list[str]) -> str:
    return (f"the clip extractor (CMMD) needs the CLIP ViT-L/14@336 checkpoint; looked in: {'; '.join(looked)}. "
            f"Get the files config.json and model.safetensors of https://huggingface.co/{HUB_ID} (e.g. "
            f"`huggingface-cli download {HUB_ID} config.json model.safetensors --local-dir DIR`), then "
            f"`export {ENV}=DIR`.")


def _hub_snapshots() -> list[Path]:
    home = Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface")
    return sorted((home / "hub" / f"models--{HUB_ID.replace('/', '--')}" / "snapshots").glob("*"))


def _usable(d: Path) -> Optional[Path]:
    if not (d / "config.json").is_file():
        return None
    return next((d / f for f in WEIGHT_FILES if (d / f).is_file()), None)


def find_clip() -> tuple[Path, Path]:
    """(directory, weight file) of the checkpoint, or ClipUnavailable saying where it looked and what to get."""
    env = os.environ.get(ENV)
    if env:
        d = Path(env).expanduser()
        w = _usable(d) if d.is_dir() else None
        if w is None:
            raise ClipUnavailable(f"${ENV}={env} is not a directory holding config.json and one of "
                                  f"{', '.join(WEIGHT_FILES)}; " + how_to_provide([f"${ENV}={env}"]))
        return d, w
    looked = [f"${ENV} (not set)"]
    for d in _hub_snapshots():
        w = _usable(d)
        if w is not None:
            return d, w
    looked.append(f"the Hugging Face cache ({HUB_ID})")
    raise ClipUnavailable(how_to_provide(looked))


class ClipExtractor(FeatureExtractor):
    name = "clip"

    def __init__(self, device: str | torch.device = "cpu", model=None, weights_sha256: Optional[str] = None):
        """`model`: a transformers CLIPVisionModelWithProjection to use instead of the checkpoint (tests)."""
        super().__init__(device)
        if model is None:
            from transformers import CLIPVisionModelWithProjection

            d, w = find_clip()
            weights_sha256 = file_sha256(w)
            model = CLIPVisionModelWithProjection.from_pretrained(str(d), local_files_only=True)
        self.model = model.eval().to(self.device)
        self.size = int(model.config.image_size)
        self.dim = int(model.config.projection_dim)
        self.weights_sha256 = weights_sha256 or ""
        self.default_batch_size = 64 if self.device.type == "cuda" else 8

    @property
    def protocol(self) -> dict:
        return {
            "id": f"{PROTOCOL_ID}/weights-{self.weights_sha256[:12]}",
            "extractor": self.name,
            "network": f"CLIP ViT-L/14@336 vision tower + projection ({HUB_ID}, transformers)",
            "weights_sha256": self.weights_sha256,
            "pinned": False,
            "dim": self.dim,
            "quantise": "round(x * 255) to uint8, then / 255",
            "grayscale": "repeated to 3 channels",
            "resize": f"torch interpolate bicubic to {self.size}x{self.size} (no antialias, no crop)",
            "normalise": f"CLIP mean {CLIP_MEAN}, std {CLIP_STD}",
            "output": "image_embeds, L2-normalised",
            "reference": "CMMD (google-research/cmmd; PyTorch port sayakpaul/cmmd-pytorch)",
        }

    def _prepare(self, samples: torch.Tensor) -> torch.Tensor:
        if samples.dtype == torch.uint8:
            prepare_images(samples[:0], "clip", channels=(1, 3))
            x = samples.contiguous()
        else:
            x = quantize_uint8(prepare_images(samples, "clip", channels=(1, 3)))
        return x.repeat(1, 3, 1, 1) if x.shape[1] == 1 else x

    def forward_batch(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, torch.float32) / 255.0
        x = F.interpolate(x, size=(self.size, self.size), mode="bicubic")
        mean = torch.tensor(CLIP_MEAN, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD, device=self.device).view(1, 3, 1, 1)
        with exact_float32(self.device):
            e = self.model(pixel_values=(x - mean) / std).image_embeds
        return e / e.norm(dim=-1, keepdim=True)
