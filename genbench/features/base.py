"""The feature-extractor contract: samples in the dataset's value range in, (N, dim) float features out."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch


class FeatureExtractor(ABC):
    name: str = ""
    dim: int = 0

    @property
    @abstractmethod
    def protocol(self) -> dict:
        """Everything that changes the numbers: network + weights hash, resize, quantisation, layer..."""

    @property
    def protocol_id(self) -> str:
        """Short stable id, e.g. 'inception-v3-tf2015/clean-pil-bicubic-299/pool3'."""
        return self.protocol["id"]

    @abstractmethod
    def forward_batch(self, x: torch.Tensor) -> torch.Tensor:
        """Features for one batch already on the extractor's device."""

    def extract(self, samples: torch.Tensor, batch_size: int = 256, progress: bool = False) -> torch.Tensor:
        """Features for all samples, float64 on CPU, batch-size independent."""
        raise NotImplementedError
