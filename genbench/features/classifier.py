"""`classifier:<dataset>`: a small CNN for a labelled image dataset, for features and labels (network and recipe:
small_cnn.py; the 3-channel `classifier:stacked-mnist`: stacked_mnist.py).

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
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import torch
import torch.nn as nn

from genbench.errors import InvalidInputError
from genbench.features.base import FeatureExtractor, as_tensor, prepare_images
# the network and its recipe live in small_cnn.py; re-exported here, where the extractor and its users find them
from genbench.features.small_cnn import (  # noqa: F401
    ARCHITECTURE, CODE_VERSION, HIDDEN, RECIPES, WIDTHS, Recipe, SmallCNN, _log, accuracy, data_sha256,
    train_classifier)
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
