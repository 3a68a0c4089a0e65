"""genbench's small CNN for labelled image datasets and its fixed training recipe (one seeded CPU thread):
the network behind `classifier:<dataset>` (genbench/features/classifier.py) and the per-class label
classifiers of the conditional metrics. How its weights are pinned and shipped is in classifier.py."""

from __future__ import annotations

import hashlib
import math
import sys
import time
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from genbench.device import torch_threads

CODE_VERSION = "1"
HIDDEN = 128
WIDTHS = (32, 64)


class SmallCNN(nn.Module):
    """conv3x3/2 (32) - ReLU - conv3x3/2 (64) - ReLU - linear (128) [features] - ReLU - linear (classes).
    Input images in [0, 1], normalised inside to [-1, 1]."""

    def __init__(self, in_channels: int, height: int, width: int, num_classes: int,
                 widths: tuple[int, int] = WIDTHS, hidden: int = HIDDEN):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(widths[0], widths[1], 3, stride=2, padding=1)
        h, w = math.ceil(math.ceil(height / 2) / 2), math.ceil(math.ceil(width / 2) / 2)
        self.fc = nn.Linear(widths[1] * h * w, hidden)
        self.out = nn.Linear(hidden, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv1(x * 2.0 - 1.0))
        h = F.relu(self.conv2(h))
        return self.fc(h.flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(F.relu(self.features(x)))


@dataclass(frozen=True)
class Recipe:
    """How a classifier is trained (part of its cache key and protocol)."""

    batch_size: int = 128
    lr: float = 3e-3  # AdamW peak learning rate, one-cycle schedule (20% warm-up)
    weight_decay: float = 1e-4
    target_steps: int = 1800  # epochs = clamp(ceil(target_steps / steps per epoch), min_epochs, max_epochs)
    min_epochs: int = 4
    max_epochs: int = 40
    shift: int = 0  # augmentation: random translation by up to `shift` pixels (one offset per batch)

    def epochs(self, n_train: int) -> int:
        spe = math.ceil(n_train / self.batch_size)
        return max(self.min_epochs, min(self.max_epochs, math.ceil(self.target_steps / spe)))


# Fashion-MNIST: 4 epochs reach ~91% (shift augmentation costs accuracy at this budget). MNIST: shifts matter
# on the 4000-image offline subset (96% -> 98%+). Digits: 8x8 images, no shifts, many short epochs.
RECIPES = {
    "fashion-mnist": Recipe(),
    "mnist": Recipe(shift=2, max_epochs=25),
    "digits": Recipe(max_epochs=40),
    "mnist-grey": Recipe(shift=2, max_epochs=25),  # the translation domains (genbench/data/translation.py):
    "mnist-colour": Recipe(shift=2, max_epochs=25),  # MNIST's recipe on the same 4000 training digits
    "mnist-edges": Recipe(shift=2, max_epochs=25),
}

ARCHITECTURE = (f"SmallCNN v1: conv3x3 stride 2 ({WIDTHS[0]}) - ReLU - conv3x3 stride 2 ({WIDTHS[1]}) - ReLU - "
                f"linear ({HIDDEN}) - ReLU - linear (classes); input x*2-1")


def data_sha256(*tensors: torch.Tensor) -> str:
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)};".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def _log(msg: str, verbose: bool) -> None:
    if verbose:
        print(f"genbench: {msg}", file=sys.stderr, flush=True)


def train_classifier(x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor,
                     num_classes: int, recipe: Recipe, seed: int, *, label: str = "classifier",
                     verbose: bool = True) -> tuple[SmallCNN, dict]:
    """Train a SmallCNN on the CPU, deterministically; returns (model in eval mode, meta with accuracy/time)."""
    n, c, h, w = x_train.shape
    epochs = recipe.epochs(n)
    t0 = time.perf_counter()
    with torch_threads(1):  # one thread: the same float sums, so the same network, on any core count
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = SmallCNN(c, h, w, num_classes)
        g = torch.Generator().manual_seed(seed + 1)
        opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
        spe = math.ceil(n / recipe.batch_size)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, total_steps=epochs * spe, pct_start=0.2)
        _log(f"training {label} ({n} images {c}x{h}x{w}, {num_classes} classes, {epochs} epochs, seed {seed}, "
             f"1 CPU thread); the result is cached, later uses load it", verbose)
        s = recipe.shift
        for ep in range(epochs):
            model.train()
            perm = torch.randperm(n, generator=g)
            total, count = 0.0, 0
            for i in range(0, n, recipe.batch_size):
                idx = perm[i:i + recipe.batch_size]
                xb = x_train[idx]
                if s:
                    dx, dy = torch.randint(0, 2 * s + 1, (2,), generator=g).tolist()
                    xb = F.pad(xb, (s, s, s, s))[:, :, dy:dy + h, dx:dx + w]
                loss = F.cross_entropy(model(xb), y_train[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += loss.item() * len(idx)
                count += len(idx)
            if (ep + 1) % max(1, epochs // 5) == 0 or ep + 1 == epochs:
                _log(f"  {label} epoch {ep + 1}/{epochs}: train loss {total / count:.4f} "
                     f"({time.perf_counter() - t0:.1f} s)", verbose)
        model = model.double().eval()  # inference in float64, like every later use (see ClassifierExtractor)
        acc = accuracy(model, x_test.double(), y_test)
    secs = time.perf_counter() - t0
    _log(f"trained {label} in {secs:.1f} s: held-out test accuracy {100 * acc:.2f}% on {len(y_test)} images", verbose)
    return model, {"test_accuracy": acc, "train_seconds": round(secs, 2), "epochs": epochs, "n_train": int(n),
                   "n_test": int(len(y_test))}


@torch.inference_mode()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    right = 0
    for i in range(0, len(x), batch_size):
        right += int((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum())
    return right / max(1, len(x))
