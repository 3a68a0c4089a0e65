"""The model registry: built-in families (imported by name from `BUILTIN_FAMILIES`), users' models
(`package.module:factory` references, genbench/models/external.py) and the `genbench.models` entry points."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Optional

from genbench.data.base import DatasetInfo
from genbench.errors import GenbenchError
from genbench.models.base import GenerativeModel, check_budget, info_from_dict
from genbench.models.external import ENTRY_POINT_GROUP, make_model_class
from genbench.models.external_checks import ExternalModelError, resolve
from genbench.registry import Registry

MODELS: Registry[type] = Registry("model")
BUILTIN_FAMILIES: list[str] = [  # modules registering the built-in models (@register_model)
    "reference_models.gan",
    "reference_models.cgan",
    "reference_models.vae",
    "reference_models.cvae",
    "reference_models.baselines",
    "reference_models.diffusion",
    "reference_models.cfg_diffusion",
    "reference_models.flow",
    "reference_models.spline_flow",
    "reference_models.pixelcnn",
    "reference_models.cpixelcnn",
    "reference_models.transformer",
    "reference_models.lstm",
    "reference_models.ngram",
    "reference_models.text_copy",
    "reference_models.cyclegan",
    "reference_models.translation_baselines",
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
        for mod in BUILTIN_FAMILIES:
            importlib.import_module(mod)
        load_entry_points()  # models of installed packages ("genbench.models")


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
    their sha256 manifest and loaded as plain data only: `genbench.models.checkpoint.CheckpointError` otherwise."""
    from genbench.models.checkpoint import read_verified

    path = Path(path)
    meta = json.loads(read_verified(path, "config.json"))
    cls = get_model_class(meta["model"])
    model = cls(cls.Config.from_dict(meta["config"]), info_from_dict(meta["data_info"]))
    model._load_state(path)
    return model.to(model.device)  # the device's weight layout (GenerativeModel.memory_format), as after fit


# ---------------------------------------------------------------------------------------------- users' models
def register_external(name: str, ref: str, source: str = "", search_paths: tuple = ()) -> type:
    """Register the model `ref` ("package.module:factory") under `name` in the model registry (genbench.models), so the
    runner, `genbench list models` and suites see it. Idempotent for the same (name, ref); a built-in model's
    name cannot be taken."""
    cls = external_model_class(name, ref, source, search_paths)
    install_external(name, cls)
    return cls


def install_external(name: str, cls: type) -> None:
    """Put a user model class (from `external_model_class`) into the registry under `name`."""
    if name not in MODELS or MODELS.get(name) is not cls:
        MODELS.register(name, cls, replace=True)


def external_model_class(name: str, ref: str, source: str = "", search_paths: tuple = ()) -> type:
    """The model class genbench would register for `ref` under `name`, without registering it (suite validation
    uses this: parsing a suite changes no registry). Same checks as `register_external`."""
    list_models()  # built-ins (and entry points) first, so a clash is seen
    if name in MODELS:
        existing = MODELS.get(name)
        prev = getattr(existing, "_external_ref", "")
        if prev == ref:
            return existing
        if not prev:
            raise ExternalModelError(f"model name {name!r} is a built-in model; give the user model "
                                     f"{ref!r} another name (e.g. [models.my-{name}])")
    if not isinstance(name, str) or not name.strip() or name.startswith("user:"):
        raise ExternalModelError(f"model name {name!r} is not usable (names starting with 'user:' are kept for "
                                 "`genbench eval`)")
    target = resolve(ref, search_paths)
    if name in MODELS and MODELS.get(name) is target:  # the module registered it itself (@register_model)
        return target
    cls = make_model_class(name, target, ref)
    cls._external_source = source or ref
    return cls


def unregister_external(name: str) -> None:
    """Remove a user model registered by `register_external` (built-ins are left alone)."""
    if name in MODELS and getattr(MODELS.get(name), "_external_ref", ""):
        MODELS._items.pop(name, None)


def is_external(name: str) -> bool:
    return name in MODELS and bool(getattr(MODELS.get(name), "_external_ref", ""))


ENTRY_POINT_ERRORS: dict[str, str] = {}  # entry-point name -> why it was not registered


def load_entry_points(warn: bool = True) -> list[str]:
    """Register every model that installed packages declare in the `genbench.models` entry-point group
    (name = entry point name, value = "package.module:factory"). A broken entry point does not stop genbench:
    it is skipped with a warning on stderr, and the reason kept in ENTRY_POINT_ERRORS."""
    from importlib.metadata import entry_points

    added = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(getattr(ep, "dist", None), "name", None) or "an installed package"
        try:
            existing = MODELS.get(ep.name) if ep.name in MODELS else None
            if existing is not None and getattr(existing, "_external_ref", "") == ep.value:
                continue
            if existing is not None and not getattr(existing, "_external_ref", ""):
                raise ExternalModelError(f"it clashes with the built-in model {ep.name!r}")
            register_external(ep.name, ep.value, source=f"entry point {ep.name!r} of {dist}")
            ENTRY_POINT_ERRORS.pop(ep.name, None)
            added.append(ep.name)
        except GenbenchError as e:
            msg = f"{dist} registers model {ep.name!r} = {ep.value!r} (entry point group {ENTRY_POINT_GROUP!r}), " \
                  f"skipped: {e}"
            if warn and ENTRY_POINT_ERRORS.get(ep.name) != msg:
                print(f"genbench: warning: {msg}", file=sys.stderr)
            ENTRY_POINT_ERRORS[ep.name] = msg
    return added
