"""The dataset contract every built-in and user dataset follows.

Conventions (the whole harness relies on them):
- points: float32 tensor (N, D) in the dataset's natural units.
- image:  float32 tensor (N, C, H, W) with values k/255 for integer k in 0..255 (8-bit data scaled to [0, 1]).
- text:   see `TextSplit` (a string corpus plus its character vocabulary).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import torch


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    modality: str  # "points" | "image" | "text"
    shape: tuple  # shape of one item: (2,), (1, 28, 28), (3, 32, 32); () for text
    value_range: tuple  # (low, high) of item values; images (0.0, 1.0)
    num_classes: Optional[int] = None  # labelled classes (Fashion-MNIST: 10)
    num_modes: Optional[int] = None  # known modes (ring8: 8, stacked-mnist: 1000)
    licence: str = ""
    description: str = ""

    @property
    def dim(self) -> int:
        d = 1
        for s in self.shape:
            d *= int(s)
        return d

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "modality": self.modality,
            "shape": list(self.shape),
            "value_range": list(self.value_range),
            "num_classes": self.num_classes,
            "num_modes": self.num_modes,
        }


@dataclass
class DataSplit:
    """One split of a points or image dataset, as tensors."""

    x: torch.Tensor
    y: Optional[torch.Tensor]
    info: DatasetInfo
    split: str  # "train" | "test"
    source: str  # where the bytes came from, e.g. "debian:/usr/share/datasets/fashion-mnist" or "generated(seed=0)"
    meta: dict = field(default_factory=dict)  # e.g. {"variant": "mnist-5k-subset"}

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclass
class TextSplit:
    """One split of a text dataset: the raw text, its lines, and the character vocabulary of the dataset
    (shared by train and test so ids agree)."""

    text: str
    vocab: list  # sorted list of characters
    info: DatasetInfo
    split: str
    source: str
    meta: dict = field(default_factory=dict)

    @property
    def lines(self) -> list:
        return [ln for ln in self.text.split("\n") if ln]

    def encode(self, s: str) -> torch.Tensor:
        idx = {c: i for i, c in enumerate(self.vocab)}
        return torch.tensor([idx[c] for c in s], dtype=torch.long)

    def decode(self, ids) -> str:
        return "".join(self.vocab[int(i)] for i in ids)

    def __len__(self) -> int:
        return len(self.text)


SPLITS = ("train", "test")


class Dataset:
    """A built-in or registered dataset. Subclasses set `info` and implement `_load(split)`; `load`
    validates the split name. `available()` says, without downloading anything, whether `load` can work
    here and from where (or why not)."""

    info: DatasetInfo
    sizes: dict = {}  # nominal count per split, in `size_unit`, for `genbench data list`
    size_unit: str = "items"

    def load(self, split: str = "train"):
        if split not in SPLITS:
            from genbench.errors import InvalidInputError

            raise InvalidInputError(f"unknown split {split!r} for dataset {self.info.name!r}: use 'train' or 'test'")
        return self._load(split)

    def _load(self, split: str):
        raise NotImplementedError

    def available(self) -> tuple[bool, str]:
        return True, "built in"

    def __repr__(self) -> str:
        return f"<Dataset {self.info.name} {self.info.modality} {tuple(self.info.shape)}>"
