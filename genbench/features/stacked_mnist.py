"""`classifier:stacked-mnist`: the MNIST classifier applied to each channel of a 3-digit Stacked-MNIST image
(1000 modes), for mode counting and features."""

from __future__ import annotations

from typing import Optional

import torch

from genbench.errors import InvalidInputError
from genbench.features.base import FeatureExtractor, as_tensor, prepare_images
from genbench.features.classifier import ClassifierExtractor
from genbench.features.small_cnn import CODE_VERSION


class StackedMNISTClassifier(FeatureExtractor):
    """`classifier:stacked-mnist`: the MNIST classifier applied to each of the 3 channels. Features: the three
    128-d channel features concatenated (384-d). `predict_proba`: (N, 1000) probabilities of the mode
    100*d_R + 10*d_G + d_B (product of the channel softmaxes, channels classified independently).
    `accuracy`: share of the stacked-mnist test split whose three digits are all right.

    `base` names the per-channel digit classifier ("mnist"; the tests use "digits" to stay fast): with any other
    base the accuracy is measured on `n_test` triples of its test split drawn with seed 12."""

    num_classes = 1000
    default_batch_size = 1000

    def __init__(self, device="cpu", seed: int = 0, cache_dir=None, verbose: bool = True,
                 mnist_variant: str = "auto", base: str = "mnist", n_test: int = 10000, weights: str = "shipped"):
        super().__init__(device)
        self.name = "classifier:stacked-mnist" if base == "mnist" else f"classifier:stacked-{base}"
        opts = {"variant": mnist_variant} if base == "mnist" else None
        self.digit = ClassifierExtractor(base, device=device, seed=seed, cache_dir=cache_dir, verbose=verbose,
                                         dataset_options=opts, weights=weights)
        if self.digit.num_classes != 10 or self.digit.input_shape[0] != 1:
            raise InvalidInputError(f"{self.name}: the per-channel classifier must be a 10-class one-channel "
                                    f"classifier, {self.digit.name} is not")
        self.dim = 3 * self.digit.dim
        self.image_size = self.digit.input_shape[1:]
        from genbench.data import get_dataset

        if base == "mnist":
            test = get_dataset("stacked-mnist", mnist_variant=mnist_variant, n_test=n_test).load("test")
            x, y = test.x, test.y
        else:
            t = get_dataset(base).load("test")
            g = torch.Generator().manual_seed(12)
            idx = torch.randint(0, len(t.y), (n_test, 3), generator=g)
            x = t.x[idx].squeeze(2)
            y = 100 * t.y[idx[:, 0]] + 10 * t.y[idx[:, 1]] + t.y[idx[:, 2]]
        self.n_test = len(y)
        self.accuracy = float((self.predict(x) == y).double().mean())
        self.digit_accuracy = self.digit.accuracy

    @property
    def protocol(self) -> dict:
        base = self.digit.protocol
        h, w = self.image_size
        return {
            "id": f"{self.name}/{self.digit.weights_sha256[:12]}",
            "extractor": "classifier",
            "version": CODE_VERSION,
            "weights_sha256": self.digit.weights_sha256,
            "pinned": self.digit.pinned,
            "dataset": self.name.split(":", 1)[1],
            "per_channel": base,
            "mode_label": f"100*d_R + 10*d_G + d_B, each digit by {self.digit.name}",
            "layer": f"{self.digit.name} hidden layer per channel, concatenated R, G, B",
            "dim": self.dim,
            "input": f"images (N, 3, {h}, {w}) in [0, 1] or uint8",
            "test_accuracy": self.accuracy,
            "digit_test_accuracy": self.digit_accuracy,
            "n_test": self.n_test,
        }

    def _prepare(self, samples: torch.Tensor) -> torch.Tensor:
        return prepare_images(samples, self.name, channels=(3,), size=self.image_size)

    def forward_batch(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.digit.forward_batch(x[:, c:c + 1]) for c in range(3)], dim=1)

    def predict_proba(self, samples, batch_size: Optional[int] = None) -> torch.Tensor:
        """(N, 1000) float64: p[n, 100a + 10b + c] = p_R(a) p_G(b) p_B(c)."""
        x = self._prepare(as_tensor(samples, self.name))
        p = [self.digit.predict_proba(x[:, c:c + 1], batch_size) for c in range(3)]
        return torch.einsum("na,nb,nc->nabc", *p).reshape(len(x), 1000)

    def predict(self, samples, batch_size: Optional[int] = None) -> torch.Tensor:
        """Mode label 100*d_R + 10*d_G + d_B, int64 (N,) (argmax per channel)."""
        x = self._prepare(as_tensor(samples, self.name))
        d = [self.digit.predict(x[:, c:c + 1], batch_size) for c in range(3)]
        return 100 * d[0] + 10 * d[1] + d[2]
