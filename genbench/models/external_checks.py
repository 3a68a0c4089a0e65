"""What genbench asks of a user's model before and after it runs: resolving a reference
`"package.module:attr"` to the object it names (`resolve`), and checking every batch of samples it returns
(`validate_samples`: shape, dtype, NaN/inf, value range), with the errors that name the model, what was expected
and what came back. genbench/models/external.py adapts the object to the model protocol.
"""

from __future__ import annotations

import importlib
import math
import os
import sys
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from genbench.errors import GenbenchError

# Values may leave the dataset's value range by this share of its width (images / points) ...
RANGE_TOLERANCE = {"image": 0.1, "points": 1.0}
# ... and a batch fails only when more than this share of its values lies outside that band.
RANGE_MAX_OUTSIDE = 0.01

class ExternalModelError(GenbenchError):
    """A `package.module:factory` reference or an entry point cannot be turned into a model."""


class ModelOutputError(GenbenchError):
    """A user's model returned samples (or log-probabilities) that break the model contract."""


# ---------------------------------------------------------------------------------------------- resolving
def parse_reference(ref: str) -> tuple[str, str]:
    """`"package.module:attr"` -> ("package.module", "attr"), with a clear error for anything else."""
    if not isinstance(ref, str) or ref.count(":") != 1:
        raise ExternalModelError(f"model reference {ref!r} must look like 'package.module:factory' "
                                 "(a module path, one colon, then a class or function in that module)")
    mod, attr = (s.strip() for s in ref.split(":"))
    ident = all(p.isidentifier() for p in mod.split(".")) and all(p.isidentifier() for p in attr.split("."))
    if not mod or not attr or not ident:
        raise ExternalModelError(f"model reference {ref!r} must look like 'package.module:factory' with Python "
                                 "identifiers on both sides of the colon")
    return mod, attr


def resolve(ref: str, search_paths: tuple = ()) -> Any:
    """Import `package.module` and return its attribute. The current directory and `search_paths` (e.g. the
    suite file's folder) are added to `sys.path` so that a module next to the suite or in the working
    directory resolves without installing it."""
    mod_name, attr = parse_reference(ref)
    for p in (*search_paths, os.getcwd()):
        p = str(Path(p).resolve())
        if p not in sys.path:
            sys.path.append(p)
    try:
        mod = importlib.import_module(mod_name)
    except ModuleNotFoundError as e:
        if e.name and (mod_name == e.name or mod_name.startswith(e.name + ".")):
            raise ExternalModelError(
                f"model reference {ref!r}: cannot import module {mod_name!r} ({e}). Install the package, or run "
                f"genbench from the folder that holds it, or add that folder to PYTHONPATH") from None
        raise ExternalModelError(f"model reference {ref!r}: importing {mod_name!r} failed: {e}") from e
    except Exception as e:  # the user's module raised while importing
        raise ExternalModelError(f"model reference {ref!r}: importing {mod_name!r} raised "
                                 f"{type(e).__name__}: {e}") from e
    obj: Any = mod
    for part in attr.split("."):
        if not hasattr(obj, part):
            public = sorted(n for n in dir(obj) if not n.startswith("_"))
            raise ExternalModelError(f"model reference {ref!r}: {obj.__name__ if obj is mod else attr!r} has no "
                                     f"attribute {part!r} (it has: {', '.join(public[:20]) or 'nothing public'})")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ExternalModelError(f"model reference {ref!r} is a {type(obj).__name__}, not a class or function "
                                 "that makes a model")
    return obj


# ---------------------------------------------------------------------------------------------- validation
def _shape_str(shape) -> str:
    return str(tuple(int(s) for s in shape))


def validate_samples(x: Any, info, n: int, model: str, who: Optional[str] = None) -> Any:
    """Check one batch from a user's model against the dataset: `n` samples shaped `(n, *info.shape)`, a
    floating-point tensor or array, finite, inside the value range (see RANGE_TOLERANCE). Returns the batch
    as a float32 CPU tensor (text: the list of strings); raises ModelOutputError otherwise. `who` replaces
    "model '<model>'" at the start of the messages (e.g. "samples in x.npz")."""
    who = who or f"model {model!r}"
    if info.modality == "text":
        if not isinstance(x, (list, tuple)) or not all(isinstance(s, str) for s in x):
            raise ModelOutputError(f"{who} on {info.name}: sample({n}) must return a list of {n} strings, "
                                   f"got {type(x).__name__}")
        if len(x) != n:
            raise ModelOutputError(f"{who} on {info.name}: sample({n}) returned {len(x)} strings, expected {n}")
        return list(x)
    want = (n, *tuple(info.shape))
    if isinstance(x, np.ndarray):
        if x.dtype == object:
            raise ModelOutputError(f"{who} on {info.name}: returned an object array; expected float samples "
                                   f"shaped {_shape_str(want)}")
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise ModelOutputError(f"{who} on {info.name}: sample({n}) must return a torch.Tensor or numpy array "
                               f"shaped {_shape_str(want)}, got {type(x).__name__}")
    if tuple(x.shape) != want:
        hint = ""
        if x.numel() == math.prod(want):
            hint = f" (same number of values: reshape to {_shape_str(want)})"
        raise ModelOutputError(f"{who} on {info.name}: samples have shape {_shape_str(x.shape)}, expected "
                               f"{_shape_str(want)} (n={n} samples of shape {_shape_str(info.shape)}){hint}")
    if not x.dtype.is_floating_point:
        raise ModelOutputError(f"{who} on {info.name}: samples have dtype {x.dtype}, expected a floating-point "
                               f"dtype (float32) with values in the dataset's range "
                               f"[{info.value_range[0]:g}, {info.value_range[1]:g}]"
                               + ("; 8-bit images: divide by 255" if info.modality == "image" else ""))
    x = x.detach().to("cpu", torch.float32)
    bad = ~torch.isfinite(x)
    if bad.any():
        nan = int(torch.isnan(x).sum())
        inf = int(bad.sum()) - nan
        rows = int(bad.reshape(n, -1).any(1).sum())
        raise ModelOutputError(f"{who} on {info.name}: {rows} of {n} samples contain non-finite values "
                               f"({nan} NaN, {inf} inf); expected finite values in "
                               f"[{info.value_range[0]:g}, {info.value_range[1]:g}]")
    lo, hi = (float(v) for v in info.value_range)
    tol = RANGE_TOLERANCE.get(info.modality, 1.0) * (hi - lo)
    if x.numel() and hi > lo:
        outside = ((x < lo - tol) | (x > hi + tol)).float().mean().item()
        if outside > RANGE_MAX_OUTSIDE:
            hint = ""
            if info.modality == "image":
                mn, mx = float(x.min()), float(x.max())
                if mn < -0.5 and mx <= 1.0 + tol:
                    hint = "; these look like [-1, 1] images: return (x + 1) / 2"
                elif mx > 2.0 and mn >= -tol:
                    hint = "; these look like 0..255 images: divide by 255"
            raise ModelOutputError(
                f"{who} on {info.name}: {outside:.1%} of sample values lie outside [{lo - tol:.4g}, {hi + tol:.4g}] "
                f"(the dataset's value range [{lo:.4g}, {hi:.4g}] widened by {RANGE_TOLERANCE.get(info.modality, 1.0):g}x "
                f"its width); got values from {float(x.min()):.4g} to {float(x.max()):.4g}{hint}")
    if info.modality == "image":
        x = x.clamp(lo, hi)
    return x
