"""`classifier:<dataset>`: a small CNN for a labelled image dataset, for features and labels.

- Features: the 128-d hidden layer (the penultimate layer, taken before its ReLU so no unit is stuck at 0)
  for FD / KID / P-R-D-C on CPU in seconds. Trained in float32; every inference (features, probabilities,
  the reported accuracy) runs in float64, so results agree across batch sizes to float64 rounding (~1e-16)
  instead of float32's (~1e-7: BLAS picks kernels by batch size). Labels: `predict_proba(samples)` (softmax, float64) for class
  coverage; `classifier:stacked-mnist` applies the MNIST classifier to each channel and gives the
  1000-mode label 100*d_R + 10*d_G + d_B.
- **Pinned weights.** Training is deterministic on one machine but not across CPU kinds (oneDNN picks other
  kernels, float32 sums round differently, and training amplifies it: a Fashion-MNIST FD moved ~10% between an
  AMX and an AVX512-BF16 CPU). So genbench ships the trained weights (`genbench/features/weights/`, listed with
  their sha256 in `classifiers.json`) and every machine loads the same ones, verified by hash. The weights'
  sha256 (of the float32 tensors, `weights_digest`) is part of the protocol id: `classifier:<dataset>/<12 hex>`.
  Shipped weights are matched to the dataset by the sha256 of its train and test bytes, so another variant
  (e.g. full MNIST instead of the offline 5000-image subset) never loads them.
- **Built here.** A dataset without shipped weights (full MNIST, user datasets), or `weights="build"`, trains
  the network with the recipe below on the CPU (one thread, seeded) and caches it, sealed with its sha256, as
  `$GENBENCH_CACHE/classifiers/<dataset>-seed<seed>-<key>.pt`; a file lock makes concurrent workers train it
  once. Its protocol says `"pinned": false` and its id carries its own weights hash, so its numbers are never
  mistaken for the shipped instrument's (unless the build reproduced the shipped weights bit for bit).
  `genbench assets build classifier:<dataset>` runs the recipe and reports how it compares with the shipped
  weights (accuracy within `REBUILD_ACCURACY_MARGIN`; same hash only on the kind of CPU that built them).
- `accuracy`: held-out accuracy on the dataset's test split (never trained on), measured when the weights were
  built. It describes the instrument; the weights hash identifies it.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from genbench.errors import InvalidInputError
from genbench.features.base import FeatureExtractor, as_tensor, prepare_images

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
    old_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    try:
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
    finally:
        torch.set_num_threads(old_threads)
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


WEIGHTS_DIR = Path(__file__).resolve().with_name("weights")
MANIFEST = WEIGHTS_DIR / "classifiers.json"
# A rebuild with the recipe (another CPU kind, another torch) gives other weights; its held-out accuracy stays
# within this many points of the shipped weights' (fashion-mnist: measured, see docs).
REBUILD_ACCURACY_MARGIN = 0.01


def weights_digest(state_dict: dict) -> str:
    """sha256 of a network's weights as float32 tensors (names, shapes and bytes, in name order): the
    instrument's identity, independent of the file format that carried it."""
    h = hashlib.sha256()
    for k in sorted(state_dict):
        t = state_dict[k].detach().cpu().to(torch.float32).contiguous()
        h.update(f"{k}:{tuple(t.shape)};".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def shipped_manifest() -> dict:
    """{dataset: [entry, ...]} of the weights shipped with genbench (`classifiers.json`)."""
    try:
        return json.loads(MANIFEST.read_text(encoding="utf-8")).get("classifiers", {})
    except FileNotFoundError:
        return {}


def shipped_entry(dataset: str, data_sha256: str, seed: int = 0) -> Optional[dict]:
    """The shipped weights for this dataset's exact data (train+test sha256) and seed, or None."""
    for e in shipped_manifest().get(dataset, []):
        if e.get("data_sha256") == data_sha256 and int(e.get("seed", 0)) == int(seed):
            return e
    return None


def _state_from_bytes(raw: bytes) -> tuple[dict, dict]:
    blob = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    return blob["state_dict"], json.loads(blob["meta_json"])


def _state_to_bytes(model: nn.Module, meta: dict) -> bytes:
    buf = io.BytesIO()
    sd = {k: v.detach().cpu().to(torch.float32).contiguous() for k, v in model.state_dict().items()}
    torch.save({"state_dict": sd, "meta_json": json.dumps(meta, sort_keys=True)}, buf)
    return buf.getvalue()


class ClassifierExtractor(FeatureExtractor):
    """Features, class probabilities and held-out accuracy of genbench's CNN for one labelled image dataset.
    `weights="shipped"` (default) loads the weights shipped with genbench when they exist for this data, else
    builds them here; `weights="build"` always uses (and if needed trains) the locally built, cached network."""

    dim = HIDDEN
    default_batch_size = 1000

    def __init__(self, dataset: str, device="cpu", seed: int = 0, cache_dir: Optional[str | Path] = None,
                 verbose: bool = True, dataset_options: Optional[dict] = None, weights: str = "shipped"):
        super().__init__(device)
        from genbench.data import get_dataset

        if weights not in ("shipped", "build"):
            raise InvalidInputError(f"classifier weights must be 'shipped' or 'build', got {weights!r}")
        ds = get_dataset(dataset, **(dataset_options or {}))
        info = ds.info
        if info.modality != "image" or not info.num_classes:
            raise InvalidInputError(f"classifier:{dataset} needs a labelled image dataset; {dataset!r} is "
                                    f"{info.modality} data{' without class labels' if not info.num_classes else ''}")
        self.dataset = dataset
        self.name = f"classifier:{dataset}"
        self.seed = int(seed)
        self.num_classes = int(info.num_classes)
        self.input_shape = tuple(int(s) for s in info.shape)
        train, test = ds.load("train"), ds.load("test")
        if train.y is None or test.y is None:
            raise InvalidInputError(f"classifier:{dataset}: the dataset has no labels")
        self._data = (train, test)
        self.recipe = RECIPES.get(dataset, Recipe())
        self.data_sha256 = data_sha256(train.x, train.y, test.x, test.y)
        self.data_variant = train.meta.get("variant", "")
        self.key_source = {"code_version": CODE_VERSION, "dataset": dataset, "data_sha256": self.data_sha256,
                           "architecture": ARCHITECTURE, "num_classes": self.num_classes,
                           "input_shape": self.input_shape, "recipe": asdict(self.recipe), "seed": self.seed}
        self.cache_key = hashlib.sha256(json.dumps(self.key_source, sort_keys=True).encode()).hexdigest()
        if cache_dir is None:
            from genbench.assets import cache_dir as _cache_dir

            cache_dir = _cache_dir()
        self.cache_path = Path(cache_dir) / "classifiers" / f"{dataset}-seed{self.seed}-{self.cache_key[:16]}.pt"

        entry = shipped_entry(dataset, self.data_sha256, self.seed) if weights == "shipped" else None
        self.shipped = entry
        if entry is not None:
            model, meta = self._load_shipped(entry, verbose)
            self.loaded_from_cache = True
            self.source = f"shipped with genbench ({entry['file']})"
        else:
            model, meta = self._load_or_build(verbose)
            self.source = f"built here ({self.cache_path})"
        self.meta = meta
        self.accuracy = float(meta["test_accuracy"])
        self.train_seconds = float(meta.get("train_seconds", 0.0))
        self.weights_sha256 = weights_digest(model.state_dict())
        ship = shipped_entry(dataset, self.data_sha256, self.seed)
        # pinned: these are the shipped weights (a local build that reproduced them bit for bit counts too)
        self._pinned = ship is not None and ship.get("weights_sha256") == self.weights_sha256
        self.model = model.to(self.device, torch.float64).eval()

    # ------------------------------------------------------------------------------------------ weights
    def _load_shipped(self, entry: dict, verbose: bool):
        from genbench.errors import GenbenchError

        path = WEIGHTS_DIR / entry["file"]
        try:
            sd, meta = _state_from_bytes(path.read_bytes())
        except Exception as e:  # noqa: BLE001 - any failure means the installed package is damaged
            raise GenbenchError(f"{self.name}: the weights shipped with genbench ({path}) cannot be read "
                                f"({type(e).__name__}: {e}); reinstall genbench") from None
        got = weights_digest(sd)
        if got != entry["weights_sha256"]:
            raise GenbenchError(f"{self.name}: the weights shipped with genbench ({path}) have sha256 {got[:12]}..., "
                                f"expected {entry['weights_sha256'][:12]}... (damaged file); reinstall genbench")
        c, h, w = self.input_shape
        model = SmallCNN(c, h, w, self.num_classes)
        model.load_state_dict(sd)
        _log(f"loaded {self.name} shipped with genbench (weights {got[:12]}, test accuracy "
             f"{100 * meta['test_accuracy']:.2f}%)", verbose)
        return model.eval(), meta

    def _load_or_build(self, verbose: bool):
        """The locally built network: from the sealed cache, else trained now (once, under a file lock)."""
        from genbench.locks import FileLock

        model, meta = self._load_cached(verbose)
        if model is not None:
            self.loaded_from_cache = True
            return model, meta
        lock = FileLock(self.cache_path.with_suffix(".lock"), what=f"building {self.name}", blocking=True,
                        timeout=3600)
        with lock:
            model, meta = self._load_cached(verbose)  # another process may have built it while we waited
            if model is not None:
                self.loaded_from_cache = True
                return model, meta
            train, test = self._data
            model, meta = train_classifier(train.x, train.y, test.x, test.y, self.num_classes, self.recipe,
                                           self.seed, label=self.name, verbose=verbose)
            meta = {**meta, "cache_key": self.cache_key, "key_source": self.key_source,
                    "torch_version": str(torch.__version__),
                    "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            self._save(model, meta)
            _log(f"saved {self.name} to {self.cache_path}", verbose)
        self.loaded_from_cache = False
        return model.float(), meta

    def _load_cached(self, verbose: bool):
        from genbench.fileio import read_sealed

        p = self.cache_path
        if not p.is_file():
            return None, None
        try:
            sd, meta = _state_from_bytes(read_sealed(p))
            if meta.get("cache_key") != self.cache_key:
                raise ValueError(f"cache key mismatch ({str(meta.get('cache_key'))[:16]})")
            if meta.get("weights_sha256") not in (None, weights_digest(sd)):
                raise ValueError("weights do not match their recorded sha256")
            c, h, w = self.input_shape
            model = SmallCNN(c, h, w, self.num_classes)
            model.load_state_dict(sd)
        except Exception as e:  # unreadable, corrupted, truncated or foreign file: delete, train again
            warnings.warn(f"cached {self.name} at {p} is unusable ({type(e).__name__}: {e}); deleting it and "
                          "training again", RuntimeWarning, stacklevel=4)
            p.unlink(missing_ok=True)
            return None, None
        _log(f"loaded {self.name} from {p} (test accuracy {100 * meta['test_accuracy']:.2f}%)", verbose)
        return model.eval(), meta

    def _save(self, model: nn.Module, meta: dict) -> None:
        from genbench.fileio import write_sealed

        meta = {**meta, "weights_sha256": weights_digest(model.state_dict())}
        write_sealed(self.cache_path, _state_to_bytes(model, meta))

    # ------------------------------------------------------------------------------------------ API
    @property
    def protocol(self) -> dict:
        c, h, w = self.input_shape
        return {
            "id": f"{self.name}/{self.weights_sha256[:12]}",
            "extractor": "classifier",
            "version": CODE_VERSION,
            "weights_sha256": self.weights_sha256,
            "pinned": self._pinned,
            "weights_source": "shipped" if self.shipped is not None else "built here",
            "dataset": self.dataset,
            "data_variant": self.data_variant,
            "data_sha256": self.data_sha256,
            "architecture": ARCHITECTURE,
            "recipe": asdict(self.recipe),
            "epochs": self.meta["epochs"],
            "seed": self.seed,
            "layer": f"hidden linear layer ({HIDDEN}-d, before its ReLU; the penultimate layer)",
            "precision": "trained float32, inference float64",
            "dim": self.dim,
            "input": f"images (N, {c}, {h}, {w}) in [0, 1] or uint8",
            "test_accuracy": self.accuracy,
            "n_train": self.meta["n_train"],
            "n_test": self.meta["n_test"],
        }

    def _prepare(self, samples: torch.Tensor) -> torch.Tensor:
        c, h, w = self.input_shape
        return prepare_images(samples, self.name, channels=(c,), size=(h, w))

    def forward_batch(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.features(x.to(self.device, torch.float64))

    def predict_proba(self, samples, batch_size: Optional[int] = None) -> torch.Tensor:
        """Softmax class probabilities, float64 (N, num_classes) on the CPU."""
        x = self._prepare(as_tensor(samples, self.name))
        bs = batch_size or self.default_batch_size
        out = []
        with torch.inference_mode():
            for i in range(0, len(x), bs):
                logits = self.model(x[i:i + bs].to(self.device, torch.float64))
                out.append(torch.softmax(logits, dim=1).cpu())
        return torch.cat(out) if out else torch.zeros((0, self.num_classes), dtype=torch.float64)

    def predict(self, samples, batch_size: Optional[int] = None) -> torch.Tensor:
        """Most likely class per sample, int64 (N,)."""
        return self.predict_proba(samples, batch_size).argmax(1)


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
