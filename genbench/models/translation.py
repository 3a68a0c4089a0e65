"""The image-to-image translation protocol: a `TranslationModel` maps images of one domain to the other.

    ds = get_dataset("mnist-grey-colour")                 # modality "translation" (genbench/data/translation.py)
    m = create_model("cyclegan", ds.info, budget="quick")
    m.fit(ds.load("train"), seed=0)                       # a PairSplit: unpaired domain a and b images
    y = m.translate(x, "a2b")                             # (n, *info.shape) a images -> b images, in [0, 1]
    m.save(d); load_model(d).translate(x, "a2b")          # identical

- Directions: "a2b" (domain a to domain b) and "b2a". Both domains have the dataset's item shape `info.shape`.
- `translate(x, direction)` checks its input (a float tensor shaped (n, *info.shape), finite) and raises
  InvalidInputError naming what is wrong; it runs subclasses' `_translate(x, direction)` in batches and returns a
  float32 CPU tensor clamped to [0, 1]. Translation itself is deterministic; `fit(train, seed=)` is seeded.
- The harness checks what comes back (shape, NaN/inf) and fails the job with the reason
  (genbench/pipeline/translation_job.py), so a user's model that returns garbage fails its job, not the run.
- A user's translation model is a `TranslationModel` subclass named in a suite as `"package.module:Class"`,
  exactly like a user's generator (genbench/models/external.py).
- `sample` (unconditional generation) is not part of this protocol: it raises NotImplementedError.
"""

from __future__ import annotations

from typing import Iterable, Optional

import torch

from genbench.errors import InvalidInputError
from genbench.models.base import Callback, FitHistory, GenerativeModel

DIRECTIONS = ("a2b", "b2a")


def reverse(direction: str) -> str:
    return "b2a" if direction == "a2b" else "a2b"


def check_direction(direction: str, who: str = "translate") -> str:
    if direction not in DIRECTIONS:
        raise InvalidInputError(f"{who}: direction {direction!r} is not one of {DIRECTIONS} ('a2b': domain a to "
                                "domain b, 'b2a': back)")
    return direction


def check_domain_images(x, shape: tuple, who: str) -> torch.Tensor:
    """x as a float tensor of images shaped (n, *shape), or InvalidInputError saying what is wrong."""
    if not isinstance(x, torch.Tensor):
        raise InvalidInputError(f"{who}: expected a float tensor of images shaped (n, {', '.join(map(str, shape))}), "
                                f"got {type(x).__name__}")
    if tuple(x.shape[1:]) != tuple(shape) or x.dim() != len(shape) + 1:
        raise InvalidInputError(f"{who}: images of shape {tuple(x.shape)} do not belong to this translation task: "
                                f"each domain's images are (n, {', '.join(map(str, shape))}); convert them (e.g. a "
                                "grey image to 3 channels) before translating")
    if not x.is_floating_point():
        raise InvalidInputError(f"{who}: expected float images in [0, 1], got dtype {x.dtype}")
    if not torch.isfinite(x).all():
        raise InvalidInputError(f"{who}: {int((~torch.isfinite(x)).sum())} non-finite values in the input images")
    return x


class TranslationModel(GenerativeModel):
    """Base of translation models (module docstring). Subclasses set name/family/Config, build networks in
    `__init__`, and implement `fit(train: PairSplit, ...)`, `_translate(x, direction)` and `modules()`."""

    modalities = ("translation",)

    def fit(self, train, budget: Optional[str] = None, seed: int = 0, device="cpu",
            callbacks: Iterable[Callback] = ()) -> FitHistory:
        """Default: nothing to learn (baselines). `train` is a PairSplit (unpaired `a` and `b`)."""
        self.to(device)
        return self.history

    @torch.inference_mode()
    def translate(self, x, direction: str, batch_size: int = 256) -> torch.Tensor:
        check_direction(direction, f"model {self.name!r}: translate")
        x = check_domain_images(x, tuple(self.info.shape), f"model {self.name!r}: translate({direction})")
        out = []
        for i in range(0, len(x), int(batch_size)):
            y = self._translate(x[i:i + int(batch_size)].to(self.device, torch.float32), direction)
            out.append(y.detach().float().cpu() if isinstance(y, torch.Tensor) else y)
        if not out:
            return torch.empty(0, *self.info.shape)
        if not all(isinstance(y, torch.Tensor) for y in out):
            bad = next(type(y).__name__ for y in out if not isinstance(y, torch.Tensor))
            raise InvalidInputError(f"model {self.name!r}: _translate returned {bad}, not a tensor")
        return torch.cat(out).clamp(0.0, 1.0)

    def _translate(self, x: torch.Tensor, direction: str) -> torch.Tensor:
        raise NotImplementedError

    def _sample(self, n, generator):
        raise NotImplementedError(f"model {self.name!r} translates images (translate(x, direction)); it does not "
                                  "sample unconditionally")

    def sample(self, n, seed=0, batch_size=None, condition=None):
        return self._sample(n, None)
