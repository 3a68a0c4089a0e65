"""Image-to-image translation data: image domains built offline from the MNIST 5000-image subset, and the
unpaired translation pairs between them.

Domains (each 3x28x28 in [0, 1], a labelled image dataset of its own on the same train/test digits, so
`classifier:<domain>` is one of genbench's pinned classifiers, genbench/features/classifier.py, for realism
features and content checks):
- `mnist-grey`: the MNIST digit as an RGB image (the grey value in all three channels).
- `mnist-colour`: the same digit, MNIST-M-like: a seeded colour texture background (a 4x4 grid of random RGB
  colours, bilinearly upsampled to 28x28, plus uniform pixel noise in [-NOISE, NOISE]) blended with the digit as
  |background - digit| per channel (the MNIST-M blend), clipped to [0, 1] and rounded to k/255.
- `mnist-edges`: the digit's edge map, its 3x3 morphological gradient (the 3x3 maximum minus the 3x3 minimum of the
  uint8 digit, zero padding), grey in all three channels: outlines for thick strokes, widened strokes for thin ones.

Pairs (modality "translation"; domain a is `mnist-grey` in both):
- `mnist-grey-colour`: a = grey, b = colour. - `mnist-grey-edges`: a = grey, b = edges.
Their `train` split is unpaired: the 4000 MNIST training digits are shuffled with seed PAIR_SEED, the first half is
domain a's training set, the second half (other digits) domain b's, so no source image appears in both. Their `test`
split is paired: the 1000 held-out digits in both domains, item i of `a` and of `b` the same digit (labels `y`), for
scoring content.

Everything is computed with NumPy float64 element-wise arithmetic or integer max/min (no BLAS, no transcendental
functions) from PCG64 draws, so the bytes are the same on every machine; a pair's `recipe_sha256()` (the sha256 of
every split's uint8 bytes and labels of both its domains, and the unpaired assignment) is stated in the protocol and
pinned by a test.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import torch

from genbench.data.base import Dataset, DatasetInfo
from genbench.errors import InvalidInputError

RECIPE_VERSION = "1"
TEXTURE_SEEDS = {"train": 101, "test": 102}  # colour texture draws per split
PAIR_SEED = 103  # which training digits go to domain a and which to domain b
GRID = 4  # colour grid cells per side, upsampled to 28
NOISE = 0.08  # per-pixel uniform texture noise amplitude
DIRECTIONS = ("a2b", "b2a")
SHAPE = (3, 28, 28)
TARGET_FEATURES = "target-classifier"  # a suite's `features` for translation data: classifier:<target domain>
_SPLITS = f"train unpaired: digits shuffled with seed {PAIR_SEED}, first half a, second half b; test paired"
DOMAIN_RECIPES = {
    "grey": "the digit, grey in all 3 channels",
    "colour": (f"clip(|bg - digit|) with bg = bilinear {GRID}x{GRID} RGB grid U(0,1) + U(-{NOISE},{NOISE}) noise, "
               f"seeds {TEXTURE_SEEDS}"),
    "edges": "3x3 morphological gradient of the uint8 digit (3x3 max - 3x3 min, zero padding), grey in all 3 channels",
}
PAIRS = {"mnist-grey-colour": ("grey", "colour"), "mnist-grey-edges": ("grey", "edges")}  # name: (a, b) domains
# each domain's recipe text is that of the first pair holding it (grey and colour: mnist-grey-colour's)
FIRST_PAIR = {dom: name for name, doms in reversed(PAIRS.items()) for dom in doms}


def pair_recipe(name: str) -> str:
    """The pair's recipe in words (domain a is the grey digit in every pair)."""
    return f"{name} v{RECIPE_VERSION}: MNIST 5k subset (stratified 4000/1000); b = {DOMAIN_RECIPES[PAIRS[name][1]]}; " \
           f"{_SPLITS}"




def _upsample_axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear (align_corners=False) source indices i0, i1 and weight of i1 for each output position."""
    pos = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    pos = np.clip(pos, 0.0, n_in - 1)
    i0 = np.floor(pos).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, pos - i0


def colourise(digits_u8: np.ndarray, seed: int) -> np.ndarray:
    """(N, 28, 28) uint8 digits -> (N, 3, 28, 28) uint8 MNIST-M-like images, deterministic for `seed`."""
    n, h, w = digits_u8.shape
    rng = np.random.Generator(np.random.PCG64(seed))
    grid = rng.random((n, 3, GRID, GRID))
    noise = (rng.random((n, 3, h, w)) * 2.0 - 1.0) * NOISE
    r0, r1, rw = _upsample_axis(GRID, h)
    c0, c1, cw = _upsample_axis(GRID, w)
    rows = grid[:, :, r0, :] * (1.0 - rw)[None, None, :, None] + grid[:, :, r1, :] * rw[None, None, :, None]
    bg = rows[:, :, :, c0] * (1.0 - cw) + rows[:, :, :, c1] * cw
    bg = np.clip(bg + noise, 0.0, 1.0)
    digit = digits_u8.astype(np.float64)[:, None] / 255.0
    out = np.abs(bg - digit)
    return np.rint(np.clip(out, 0.0, 1.0) * 255.0).astype(np.uint8)


def edge_map(digits_u8: np.ndarray) -> np.ndarray:
    """(N, H, W) uint8 digits -> (N, H, W) uint8 3x3 morphological gradient (dilation - erosion, zero padding)."""
    n, h, w = digits_u8.shape
    p = np.pad(digits_u8, ((0, 0), (1, 1), (1, 1)))
    shifts = np.stack([p[:, i:i + h, j:j + w] for i in range(3) for j in range(3)])
    return (shifts.max(axis=0) - shifts.min(axis=0)).astype(np.uint8)  # max >= min: no uint8 wrap-around


def grey_rgb(digits_u8: np.ndarray) -> np.ndarray:
    """(N, 28, 28) uint8 -> (N, 3, 28, 28) uint8, the grey value in every channel."""
    return np.repeat(digits_u8[:, None], 3, axis=1)


_CACHE: dict = {}


def build_domains() -> dict:
    """{"grey"|"colour"|"edges": {"train_x", "train_y", "test_x", "test_y"} uint8/int64 tensors, "pair_perm":
    indices}, built once per process from the MNIST 5k subset."""
    if "domains" not in _CACHE:
        from genbench.data.images import load_mnist

        t, _variant, source = load_mnist("5k")
        out: dict = {dom: {} for dom in DOMAIN_RECIPES}
        out["source"] = source
        for split in ("train", "test"):
            d = t[f"{split}_x"][:, 0].numpy()
            y = t[f"{split}_y"].clone()
            out["grey"][f"{split}_x"] = torch.from_numpy(grey_rgb(d))
            out["colour"][f"{split}_x"] = torch.from_numpy(colourise(d, TEXTURE_SEEDS[split]))
            out["edges"][f"{split}_x"] = torch.from_numpy(grey_rgb(edge_map(d)))
            for dom in DOMAIN_RECIPES:
                out[dom][f"{split}_y"] = y
        n = len(out["grey"]["train_y"])
        out["pair_perm"] = torch.from_numpy(np.random.Generator(np.random.PCG64(PAIR_SEED)).permutation(n))
        _CACHE["domains"] = out
    return _CACHE["domains"]


def recipe_sha256(pair: str = "mnist-grey-colour") -> str:
    """sha256 of the pair's two domains' uint8 bytes and labels, both splits, and the unpaired assignment."""
    d = build_domains()
    h = hashlib.sha256(RECIPE_VERSION.encode())
    for dom in PAIRS[pair]:
        for k in ("train_x", "train_y", "test_x", "test_y"):
            t = d[dom][k].contiguous()
            h.update(f"{dom}.{k}{tuple(t.shape)}{t.dtype};".encode())
            h.update(t.numpy().tobytes())
    h.update(d["pair_perm"].numpy().astype(np.int64).tobytes())
    return h.hexdigest()


def _f(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.float32).div_(255.0)


DOMAIN_WHAT = {"grey": "MNIST digits as RGB (grey in every channel)",
               "colour": "MNIST digits blended with seeded colour textures (MNIST-M-like)",
               "edges": "MNIST digits' edge maps (3x3 morphological gradient, grey in every channel)"}


class DomainDataset(Dataset):
    """One domain as a labelled image dataset (for its classifier): all 4000 training / 1000 held-out digits."""

    sizes = {"train": 4000, "test": 1000}

    def __init__(self, domain: str):
        if domain not in DOMAIN_WHAT:
            raise InvalidInputError(f"translation domain {domain!r}: use one of {', '.join(map(repr, DOMAIN_WHAT))}")
        self.domain = domain
        self.info = DatasetInfo(name=f"mnist-{domain}", modality="image", shape=SHAPE, value_range=(0.0, 1.0),
                                num_classes=10, licence="CC BY-SA 3.0 (MNIST)",
                                description=f"{DOMAIN_WHAT[domain]}, 3x28x28, from the MNIST 5k subset; "
                                            "a translation domain")

    def available(self):
        from genbench.data.images import MNIST

        return MNIST("5k").available()

    def _load(self, split):
        from genbench.data.base import DataSplit

        d = build_domains()
        return DataSplit(_f(d[self.domain][f"{split}_x"]), d[self.domain][f"{split}_y"].clone(), self.info, split,
                         source=f"built from {d['source']}",
                         meta={"variant": f"mnist-{self.domain}-v{RECIPE_VERSION}",
                               "recipe": pair_recipe(FIRST_PAIR[self.domain])})


@dataclass
class PairSplit:
    """One split of a translation dataset: domain a images `a` (labels `ya`), domain b images `b` (labels `yb`).
    `paired`: item i of a and of b show the same source image (test); else the domains share no source image."""

    a: torch.Tensor
    b: torch.Tensor
    ya: torch.Tensor
    yb: torch.Tensor
    paired: bool
    info: DatasetInfo
    split: str
    source: str
    meta: dict = field(default_factory=dict)
    x: torch.Tensor = field(init=False, repr=False)  # both domains stacked, for the harness's data digest

    def __post_init__(self):
        self.x = torch.cat([self.a, self.b])

    def __len__(self) -> int:
        return int(len(self.a) + len(self.b))

    def domain(self, which: str) -> torch.Tensor:
        return self.a if which == "a" else self.b

    def labels(self, which: str) -> torch.Tensor:
        return self.ya if which == "a" else self.yb


class TranslationPair(Dataset):
    """A pair of PAIRS: unpaired training domains, paired held-out split (module docstring)."""

    sizes = {"train": 4000, "test": 2000}
    size_unit = "images (both domains)"

    def __init__(self, name: str):
        if name not in PAIRS:
            raise InvalidInputError(f"translation pair {name!r}: use one of {', '.join(map(repr, PAIRS))}")
        self.pair = PAIRS[name]
        self.domains = {"a": f"mnist-{self.pair[0]}", "b": f"mnist-{self.pair[1]}"}
        self.info = DatasetInfo(name=name, modality="translation", shape=SHAPE, value_range=(0.0, 1.0),
                                num_classes=10, licence="CC BY-SA 3.0 (MNIST)",
                                description=f"unpaired translation {self.domains['a']} (a) <-> {self.domains['b']} "
                                            "(b), 3x28x28; train 2000 + 2000 disjoint digits, test 1000 paired")

    def available(self):
        return DomainDataset("grey").available()

    def _load(self, split):
        d = build_domains()
        g, c = d[self.pair[0]], d[self.pair[1]]
        meta = {"variant": f"v{RECIPE_VERSION}", "recipe": pair_recipe(self.info.name), "domains": dict(self.domains),
                "recipe_sha256": recipe_sha256(self.info.name)}
        if split == "train":
            perm = d["pair_perm"]
            ia, ib = perm[: len(perm) // 2].sort().values, perm[len(perm) // 2:].sort().values
            return PairSplit(_f(g["train_x"][ia]), _f(c["train_x"][ib]), g["train_y"][ia].clone(),
                             c["train_y"][ib].clone(), False, self.info, split, f"built from {d['source']}", meta)
        return PairSplit(_f(g["test_x"]), _f(c["test_x"]), g["test_y"].clone(), c["test_y"].clone(), True, self.info,
                         split, f"built from {d['source']}", meta)


def GreyColourTranslation() -> TranslationPair:  # noqa: N802 (a dataset factory, named like the classes)
    return TranslationPair("mnist-grey-colour")


def GreyEdgesTranslation() -> TranslationPair:  # noqa: N802
    return TranslationPair("mnist-grey-edges")


def is_translation(info) -> bool:
    return getattr(info, "modality", None) == "translation"


def MnistGrey() -> DomainDataset:  # noqa: N802 (a dataset factory, named like the classes)
    return DomainDataset("grey")


def MnistColour() -> DomainDataset:  # noqa: N802
    return DomainDataset("colour")


def MnistEdges() -> DomainDataset:  # noqa: N802
    return DomainDataset("edges")
