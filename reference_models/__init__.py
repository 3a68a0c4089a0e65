"""Reference implementations of every generative family, registered by name.

Add a model: write `reference_models/<family>.py` with a `GenerativeModel` subclass decorated by
`@register_model`, and add the module to `_BUILTIN_MODULES` below.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Optional

from genbench.data.base import DatasetInfo
from genbench.registry import Registry
from reference_models.base import GenerativeModel, ModelConfig, check_budget, info_from_dict

MODELS: Registry[type] = Registry("model")
_BUILTIN_MODULES: list[str] = [  # e.g. "reference_models.gan"; filled as families land
    "reference_models.gan",
    "reference_models.vae",
    "reference_models.baselines",
    "reference_models.diffusion",
    "reference_models.flow",
    "reference_models.spline_flow",
    "reference_models.pixelcnn",
    "reference_models.transformer",
    "reference_models.lstm",
    "reference_models.ngram",
    "reference_models.text_copy",
]
_loaded = False


def register_model(cls: type) -> type:
    """Class decorator: register a GenerativeModel subclass under `cls.name`."""
    if not cls.name or not cls.family:
        raise ValueError(f"{cls.__name__} must set `name` and `family`")
    MODELS.register(cls.name, cls)
    return cls


def _load_builtins() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for mod in _BUILTIN_MODULES:
            importlib.import_module(mod)
        from genbench.external import load_entry_points  # models of installed packages ("genbench.models")

        load_entry_points()


def get_model_class(name: str) -> type:
    _load_builtins()
    return MODELS.get(name)


def list_models() -> list[str]:
    _load_builtins()
    return MODELS.names()


def create_model(name: str, info: DatasetInfo, budget: str = "quick", overrides: Optional[dict] = None) -> GenerativeModel:
    cls = get_model_class(name)
    check_budget(budget)
    cfg = cls.Config.for_budget(budget, info)
    if overrides:
        cfg = cls.Config.from_dict(cfg.to_dict() | dict(overrides))
    return cls(cfg, info)


def load_model(path: str | Path) -> GenerativeModel:
    """The model saved in checkpoint directory `path` (`GenerativeModel.save`). Its files are checked against
    their sha256 manifest and loaded as plain data only: `reference_models.checkpoint.CheckpointError` otherwise."""
    from reference_models.checkpoint import read_verified

    path = Path(path)
    meta = json.loads(read_verified(path, "config.json"))
    cls = get_model_class(meta["model"])
    model = cls(cls.Config.from_dict(meta["config"]), info_from_dict(meta["data_info"]))
    model._load_state(path)
    return model.to(model.device)  # the device's weight layout (GenerativeModel.memory_format), as after fit


__all__ = ["GenerativeModel", "ModelConfig", "MODELS", "register_model", "create_model", "load_model", "list_models", "get_model_class"]
