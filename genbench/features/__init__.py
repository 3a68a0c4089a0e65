"""Feature extractors: one registry, each extractor with a protocol dict (incl. a stable "id").

    from genbench.features import get_extractor, list_extractors, FeatureCache
    fx = get_extractor("inception", device="cpu")      # or "classifier:fashion-mnist", "identity", "random-conv"
    feats = fx.extract(images, batch_size=32)           # float64 (N, fx.dim) on the CPU, batch-size independent
    fx.protocol                                          # everything that changes the numbers; fx.protocol["id"]

Built-ins: `inception` (clean-fid "clean" protocol, 2048-d pool3), `classifier:<dataset>` (genbench's small CNN
trained on a labelled image dataset; also `.predict_proba` and `.accuracy`), `identity` (flatten, float64, for
low-dimensional data), `random-conv` (plumbing tests only). Add one with
`register_extractor(name, factory, description=...)`; `factory(device=..., **options)` returns a
FeatureExtractor. A family such as `classifier:<dataset>` is registered with `param=` and `choices=`.

One feature pass per sample set: the runner extracts each sample set once and hands the same features to every
metric; `FeatureCache` does that bookkeeping (keyed by extractor id and the samples object).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from genbench.errors import InvalidInputError, UnknownNameError
from genbench.features.base import FeatureExtractor
from genbench.registry import Registry, unknown_name_message


@dataclass(frozen=True)
class ExtractorSpec:
    name: str
    factory: Callable[..., FeatureExtractor]
    description: str = ""
    modality: str = "image"  # what it takes: "image", "points", "text", "any"
    param: Optional[str] = None  # a family: names are "<name>:<param value>", e.g. classifier:<dataset>
    choices: Optional[Callable[[], list[str]]] = None  # valid param values (for listing and did-you-mean)


EXTRACTORS: Registry[ExtractorSpec] = Registry("feature extractor")


def register_extractor(name: str, factory: Callable[..., FeatureExtractor], *, description: str = "",
                       modality: str = "image", param: Optional[str] = None,
                       choices: Optional[Callable[[], list[str]]] = None, replace: bool = False) -> None:
    """Add an extractor. Plain: `factory(device=..., **options)`; family (`param` set, names "name:value"):
    `factory(value, device=..., **options)`."""
    if ":" in name:
        raise ValueError(f"extractor name {name!r} must not contain ':' (register a family with param=)")
    EXTRACTORS.register(name, ExtractorSpec(name, factory, description, modality, param, choices), replace=replace)


def list_extractors() -> list[str]:
    """Every valid extractor name, families expanded (e.g. classifier:fashion-mnist)."""
    out = []
    for name, spec in EXTRACTORS.items():
        if spec.param is None:
            out.append(name)
        else:
            out.extend(f"{name}:{v}" for v in (spec.choices() if spec.choices else []))
    return sorted(out)


def describe_extractors() -> list[dict]:
    """One row per registered extractor (families not expanded): name, modality, description."""
    return [{"name": n if s.param is None else f"{n}:<{s.param}>", "modality": s.modality,
             "description": s.description} for n, s in EXTRACTORS.items()]


def get_extractor(name: str, device: str | torch.device = "cpu", **options) -> FeatureExtractor:
    """The extractor `name` on `device`. Unknown names raise UnknownNameError with the closest valid names."""
    if not isinstance(name, str):
        raise InvalidInputError(f"extractor name must be a string, got {type(name).__name__}")
    base, sep, arg = name.partition(":")
    if base not in EXTRACTORS:
        raise UnknownNameError(unknown_name_message("feature extractor", name, list_extractors()))
    spec = EXTRACTORS.get(base)
    if spec.param is None:
        if sep:
            raise UnknownNameError(unknown_name_message("feature extractor", name, list_extractors())
                                   + f" ({base!r} takes no ':' argument.)")
        return spec.factory(device=device, **options)
    valid = spec.choices() if spec.choices else None
    if not arg:
        raise UnknownNameError(f"feature extractor {base!r} needs a {spec.param}: use '{base}:<{spec.param}>', one of "
                               f"{', '.join(f'{base}:{v}' for v in (valid or [])) or '(none registered)'}.")
    if valid is not None and arg not in valid:
        raise UnknownNameError(unknown_name_message("feature extractor", name, list_extractors()))
    return spec.factory(arg, device=device, **options)


# ---------------------------------------------------------------------------------------------- built-ins


def _inception(device="cpu", **options):
    from genbench.features.inception import InceptionExtractor

    return InceptionExtractor(device=device, **options)


def _classifier_datasets() -> list[str]:
    """Labelled image datasets in the dataset registry (read at call time, so user datasets count too)."""
    from genbench.data import get_dataset, list_datasets

    out = []
    for n in list_datasets():
        try:
            info = get_dataset(n).info
        except Exception:  # a dataset whose constructor needs options: not offered here
            continue
        if info.modality == "image" and info.num_classes:
            out.append(n)
    return out


def _classifier(dataset: str, device="cpu", **options):
    from genbench.features.classifier import ClassifierExtractor
    from genbench.features.stacked_mnist import StackedMNISTClassifier

    if dataset == "stacked-mnist":
        return StackedMNISTClassifier(device=device, **options)
    return ClassifierExtractor(dataset, device=device, **options)


def _identity(device="cpu", **options):
    from genbench.features.simple import IdentityExtractor

    return IdentityExtractor(device=device, **options)


def _random_conv(device="cpu", **options):
    from genbench.features.simple import RandomConvExtractor

    return RandomConvExtractor(device=device, **options)


register_extractor("inception", _inception, modality="image",
                   description="FID Inception-v3 pool3 (2048-d) on the clean-fid 'clean' protocol")
register_extractor("classifier", _classifier, modality="image", param="dataset", choices=_classifier_datasets,
                   description="genbench's small CNN trained on a labelled image dataset: 128-d penultimate "
                               "features, predict_proba, held-out accuracy (stacked-mnist: MNIST per channel)")
def _clip(device="cpu", **options):
    from genbench.features.clip import ClipExtractor

    return ClipExtractor(device=device, **options)


register_extractor("clip", _clip, modality="image",
                   description="CLIP ViT-L/14@336 image embeddings, L2-normalised (768-d; CMMD); weights given by "
                               "$GENBENCH_CLIP_VIT_L14_336 or the Hugging Face cache")
register_extractor("identity", _identity, modality="any",
                   description="the samples themselves, flattened, float64 (2-D toys, low-dimensional data)")
register_extractor("random-conv", _random_conv, modality="image",
                   description="fixed-seed untrained conv net: plumbing tests only, numbers mean nothing")

from genbench.features.text import register_text_extractors  # noqa: E402  (text track: minilm, char-ngram, text-auto)

register_text_extractors(EXTRACTORS, register_extractor)


# ---------------------------------------------------------------------------------------------- one pass


class FeatureCache:
    """Features of each (extractor, sample set) computed once and shared by every metric of a job.

    Keyed by (extractor protocol id, id(samples)); the entry keeps a reference to the samples object, so its
    id cannot be reused while cached, and records the tensor's version counter, shape and data pointer, so an
    in-place change of the samples computes the features again. Create one per evaluation and drop it after.
    """

    def __init__(self):
        self._store: dict[tuple[str, int], tuple[object, tuple, torch.Tensor]] = {}
        self.hits = 0
        self.misses = 0

    @staticmethod
    def _fingerprint(samples) -> tuple:
        if isinstance(samples, torch.Tensor):
            return (tuple(samples.shape), str(samples.dtype), samples.data_ptr(), samples._version)
        shape = getattr(samples, "shape", None)
        iface = getattr(samples, "__array_interface__", None)
        return (tuple(shape) if shape is not None else None, iface["data"][0] if iface else None)

    def get(self, extractor: FeatureExtractor, samples, batch_size: Optional[int] = None,
            progress: bool = False) -> torch.Tensor:
        key = (extractor.protocol_id, id(samples))
        fp = self._fingerprint(samples)
        hit = self._store.get(key)
        if hit is not None and hit[0] is samples and hit[1] == fp:
            self.hits += 1
            return hit[2]
        self.misses += 1
        feats = extractor.extract(samples, batch_size=batch_size, progress=progress)
        self._store[key] = (samples, fp, feats)
        return feats

    def clear(self) -> None:
        self._store.clear()

    def __len__(self) -> int:
        return len(self._store)


__all__ = ["EXTRACTORS", "ExtractorSpec", "FeatureCache", "FeatureExtractor", "describe_extractors", "get_extractor",
           "list_extractors", "register_extractor"]
