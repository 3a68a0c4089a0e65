"""Datasets: one registry of built-in datasets plus user data.

`get_dataset(name, **options) -> Dataset` (`.info`, `.load("train"|"test")`, `.available()`),
`list_datasets()`, `register_dataset(name, factory)`, `load_user_data(path, ...)`.
Built-ins: ring8, grid25 (points); digits, mnist, fashion-mnist, stacked-mnist, cifar10, mnist-grey, mnist-colour,
mnist-edges (images); mnist-grey-colour, mnist-grey-edges (translation: genbench/data/translation.py);
shakespeare-char, names (text). Conventions: genbench/data/base.py.
"""

from __future__ import annotations

from typing import Callable

from genbench.data.base import DataSplit, Dataset, DatasetInfo, TextSplit
from genbench.data.mixtures import GaussianMixture2D, grid25, ring8
from genbench.registry import Registry

DATASETS: Registry[Callable[..., Dataset]] = Registry("dataset")


def register_dataset(name: str, factory: Callable[..., Dataset], *, replace: bool = False) -> None:
    """Add a dataset: `factory(**options)` must return a Dataset whose info.name is `name`."""
    DATASETS.register(name, factory, replace=replace)


def get_dataset(name: str, **options) -> Dataset:
    return DATASETS.get(name)(**options)


def list_datasets() -> list[str]:
    return DATASETS.names()


def _builtin(module: str, attr: str) -> Callable[..., Dataset]:
    def make(**options):
        import importlib

        return getattr(importlib.import_module(module), attr)(**options)

    make.__name__ = attr
    return make


for _name, _mod, _attr in [
    ("ring8", "genbench.data.points", "make_ring8"),
    ("grid25", "genbench.data.points", "make_grid25"),
    ("digits", "genbench.data.images", "Digits"),
    ("mnist", "genbench.data.images", "MNIST"),
    ("fashion-mnist", "genbench.data.images", "FashionMNIST"),
    ("stacked-mnist", "genbench.data.images", "StackedMNIST"),
    ("cifar10", "genbench.data.images", "CIFAR10"),
    ("mnist-grey", "genbench.data.translation", "MnistGrey"),
    ("mnist-colour", "genbench.data.translation", "MnistColour"),
    ("mnist-edges", "genbench.data.translation", "MnistEdges"),
    ("mnist-grey-colour", "genbench.data.translation", "GreyColourTranslation"),
    ("mnist-grey-edges", "genbench.data.translation", "GreyEdgesTranslation"),
    ("shakespeare-char", "genbench.data.text", "ShakespeareChar"),
    ("names", "genbench.data.text", "Names"),
]:
    register_dataset(_name, _builtin(_mod, _attr))


def load_user_data(path, **options):
    """A user folder of images, .npz/.npy array or text file, validated. See genbench/data/user.py."""
    from genbench.data.user import load_user_data as _load

    return _load(path, **options)


__all__ = ["DATASETS", "DataSplit", "Dataset", "DatasetInfo", "GaussianMixture2D", "TextSplit", "get_dataset",
           "grid25", "list_datasets", "load_user_data", "register_dataset", "ring8"]
