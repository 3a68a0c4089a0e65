"""`genbench assets build classifier:<dataset>`: run the classifier's training recipe here, and ship the result.

The recipe (genbench/features/small_cnn.py `RECIPES`, `train_classifier`) is deterministic on one machine, not
across CPU kinds. So genbench ships the weights it measures with; this module reproduces them:

- `build(dataset)` trains a fresh network with the recipe (ignoring the shipped weights and the cache) and
  reports its held-out accuracy, its weights hash, and how both compare with the shipped weights: the hash
  matches only where the build reproduced them bit for bit (the same CPU kind and torch as the shipped build);
  otherwise the accuracy must stay within `REBUILD_ACCURACY_MARGIN`, and the build's protocol id differs.
- `ship(result)` (maintainers, `--ship`) writes the weights into `genbench/features/weights/` and records their
  sha256, the data they were trained on, the accuracy and the build machine in `classifiers.json`.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import torch

from genbench.env_info import cpu_model
from genbench.errors import InvalidInputError
from genbench.features import classifier as C
from genbench.fileio import atomic_write_bytes, atomic_write_text


@dataclass
class BuildResult:
    dataset: str
    seed: int
    weights_sha256: str
    data_sha256: str
    data_variant: str
    test_accuracy: float
    train_seconds: float
    cache_path: Path
    shipped: Optional[dict]  # the shipped entry for this data, if any
    extractor: object

    @property
    def same_as_shipped(self) -> Optional[bool]:
        return None if self.shipped is None else self.shipped["weights_sha256"] == self.weights_sha256

    @property
    def accuracy_gap(self) -> Optional[float]:
        return None if self.shipped is None else self.test_accuracy - float(self.shipped["test_accuracy"])

    @property
    def within_margin(self) -> Optional[bool]:
        return None if self.shipped is None else abs(self.accuracy_gap) <= C.REBUILD_ACCURACY_MARGIN

    def summary(self) -> str:
        lines = [f"classifier:{self.dataset} built here (seed {self.seed}, data {self.data_variant or 'default'}): "
                 f"held-out accuracy {100 * self.test_accuracy:.2f}%, weights sha256 {self.weights_sha256[:12]}..., "
                 f"{self.train_seconds:.0f} s; cached at {self.cache_path}"]
        if self.shipped is None:
            lines.append("no shipped weights for this data: runs here use this build; its protocol is marked "
                         "unpinned (other machines will build other weights)")
        elif self.same_as_shipped:
            lines.append("identical to the shipped weights (bit for bit): same protocol id")
        else:
            ok = "within" if self.within_margin else "OUTSIDE"
            lines.append(f"differs from the shipped weights {self.shipped['weights_sha256'][:12]}... (accuracy "
                         f"{100 * float(self.shipped['test_accuracy']):.2f}%): accuracy gap "
                         f"{100 * self.accuracy_gap:+.2f} points, {ok} the stated margin of "
                         f"{100 * C.REBUILD_ACCURACY_MARGIN:.1f}; numbers measured with it carry another protocol "
                         "id. Runs keep using the shipped weights.")
        return "\n".join(lines)


def build(dataset: str, seed: int = 0, cache_dir=None, verbose: bool = True,
          dataset_options: Optional[dict] = None) -> BuildResult:
    """Train `classifier:<dataset>` from scratch with its recipe (a cached build of the same key is replaced)."""
    if dataset == "stacked-mnist":
        raise InvalidInputError("classifier:stacked-mnist is the MNIST classifier applied per channel: build "
                                "classifier:mnist")
    ext = C.ClassifierExtractor(dataset, seed=seed, cache_dir=cache_dir, verbose=False,
                                dataset_options=dataset_options, weights="build")
    if ext.loaded_from_cache:  # a build must train: drop the cached one and train again
        ext.cache_path.unlink(missing_ok=True)
        ext = C.ClassifierExtractor(dataset, seed=seed, cache_dir=cache_dir, verbose=verbose,
                                    dataset_options=dataset_options, weights="build")
    return BuildResult(dataset, seed, ext.weights_sha256, ext.data_sha256, ext.data_variant, ext.accuracy,
                       ext.train_seconds, ext.cache_path, C.shipped_entry(dataset, ext.data_sha256, seed), ext)


def ship(result: BuildResult, command: str = "") -> Path:
    """Write the build's weights into the package and record them in classifiers.json (replacing the entry for
    the same data and seed). Returns the weights file."""
    ext = result.extractor
    variant = f"-{result.data_variant}" if result.data_variant else ""
    fname = f"classifier-{result.dataset}{variant}-seed{result.seed}.pt"
    meta = {k: v for k, v in ext.meta.items() if k not in ("key_source",)}
    meta["weights_sha256"] = result.weights_sha256
    atomic_write_bytes(C.WEIGHTS_DIR / fname, C._state_to_bytes(ext.model.float(), meta))
    entry = {
        "file": fname, "weights_sha256": result.weights_sha256, "data_sha256": result.data_sha256,
        "data_variant": result.data_variant, "seed": result.seed, "test_accuracy": result.test_accuracy,
        "architecture": C.ARCHITECTURE, "recipe": asdict(ext.recipe), "code_version": C.CODE_VERSION,
        "built": {"date": time.strftime("%Y-%m-%d", time.gmtime()), "torch": str(torch.__version__),
                  "cpu": cpu_model(), "train_seconds": round(result.train_seconds, 1), "command": command},
    }
    try:
        blob = json.loads(C.MANIFEST.read_text(encoding="utf-8"))
    except FileNotFoundError:
        blob = {"about": "classifier weights shipped with genbench: the instruments behind classifier:<dataset>. "
                         "Written by `genbench assets build classifier:<dataset> --ship`.", "classifiers": {}}
    rows = [e for e in blob["classifiers"].get(result.dataset, [])
            if not (e["data_sha256"] == result.data_sha256 and int(e.get("seed", 0)) == result.seed)]
    blob["classifiers"][result.dataset] = rows + [entry]
    atomic_write_text(C.MANIFEST, json.dumps(blob, indent=1, sort_keys=True) + "\n")
    return C.WEIGHTS_DIR / fname
