"""Users' own models: `model = "package.module:factory"` in a suite file, and installed packages that register
models by name through the `genbench.models` entry-point group.

A reference `"package.module:attr"` (attr may be dotted, e.g. `"pkg.models:Registry.make"`) names one of:

- a `genbench.models.GenerativeModel` subclass (also importable as `reference_models.base.GenerativeModel`): used
  as is (its `Config.for_budget`, `fit`, `save`/`load`, `log_prob`...), with every batch `_sample` returns
  checked (below);
- any other class: constructed as `cls(config, info)` where `config` is `cls.Config` (a dataclass, filled by
  `Config.for_budget(budget, info)` when it has one, then the suite's `overrides`) or, without a `Config`, a
  dict of the overrides;
- a function: called as `factory(info, **params)`. Its keyword parameters with defaults are the model's config
  (a suite's `overrides` replace them and they enter the checkpoint key); a parameter named `budget` receives
  the suite's budget ("smoke" | "quick" | "standard"). It returns the model object.

A model object needs `sample(n, seed=...)` returning `n` samples: a float tensor or NumPy array shaped
`(n, *info.shape)` in the dataset's value range (images in [0, 1]), or `n` strings for text. Optional, used when
present: `fit(train, seed=, device=, callbacks=, budget=)` (a model without `fit` is taken as already trained),
`log_prob(x)` with `log_prob_kind` ("exact" | "bound"), `to(device)`, `nfe_per_sample`, `family`, `conditional = True`
(then `sample(n, seed=, condition=labels)` draws sample i for class labels[i], `fit` may take `labels=`, and
`num_classes` may state the classes it accepts; genbench/models/conditions.py), and its state
as a `torch.nn.Module`, a `modules()` dict of modules, or `state_dict()`/`load_state_dict()` (then trained
models are cached like the built-in ones; otherwise they are retrained on every run). Checkpoints hold plain
data only (genbench/models/checkpoint.py): a `state_dict()` of tensors, NumPy arrays, numbers, strings and
lists/tuples/dicts of these is cached; one holding other objects is not (with a warning).

Every batch of samples is validated (`validate_samples`): wrong shape, non-float dtype, NaN/inf, or values far
outside the dataset's value range raise `ModelOutputError` naming the model, what was expected and what came
back. `genbench run` records such a job as failed with that message and goes on with the other models.

Entry points: an installed package declares, in its pyproject.toml,

    [project.entry-points."genbench.models"]
    my-flow = "my_package.models:MyFlow"

and `my-flow` appears in `genbench list models` and can be named in a suite (`[models.my-flow]`).
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from genbench.errors import GenbenchError
from genbench.models.base import LOG_PROB_NONE, FitHistory, GenerativeModel, check_budget
from genbench.models.checkpoint import UnsafeStateError
from genbench.models.external_checks import (ExternalModelError, ModelOutputError, parse_reference, resolve,
                                              validate_samples)

ENTRY_POINT_GROUP = "genbench.models"
DEFAULT_FAMILY = "user"
# Keyword parameters of a factory function that are filled by genbench, not config fields.
_RESERVED_PARAMS = ("info", "budget")


# ---------------------------------------------------------------------------------------------- adapters
def _call_with_supported(fn, *args, **kwargs):
    """Call fn with the keyword arguments it accepts (all of them if it takes **kwargs)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return fn(*args, **kwargs)
    params = sig.parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return fn(*args, **kwargs)
    return fn(*args, **{k: v for k, v in kwargs.items() if k in params})


class _ExternalConfig:
    """Config of an adapted model: a dataclass whose fields are the factory's parameters (see
    `_config_class`). Same interface as ModelConfig (for_budget / to_dict / from_dict)."""

    @classmethod
    def for_budget(cls, budget: str, info) -> "_ExternalConfig":
        check_budget(budget)
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(budget=budget) if "budget" in names else cls()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "_ExternalConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys {unknown}; valid keys: {sorted(names)}")
        return cls(**d)


def _field_for(name: str, default: Any):
    if isinstance(default, (list, dict, set)):
        return (name, type(default), dataclasses.field(default_factory=lambda v=default: copy.deepcopy(v)))
    return (name, Any, dataclasses.field(default=default))


def _config_class(model_name: str, target: Any, ref: str) -> tuple[type, str]:
    """(Config dataclass, how the target is called): "function" -> factory(info, **config), "class-config" ->
    target(target.Config(**config), info), "class-dict" -> target(dict(config), info)."""
    slug = "".join(p.capitalize() for p in model_name.replace("-", "_").replace(":", "_").split("_")) or "User"
    if inspect.isclass(target):
        tcfg = getattr(target, "Config", None)
        if tcfg is not None and dataclasses.is_dataclass(tcfg):
            try:
                defaults = tcfg()
            except TypeError as e:
                raise ExternalModelError(f"model reference {ref!r}: {target.__name__}.Config() needs arguments "
                                         f"({e}); give every config field a default") from None
            fields = [_field_for(f.name, getattr(defaults, f.name)) for f in dataclasses.fields(tcfg)]
            cfg = dataclasses.make_dataclass(f"{slug}Config", fields, bases=(_ExternalConfig,))
            if hasattr(tcfg, "for_budget"):
                def for_budget(cls, budget, info, _t=tcfg):
                    base = _t.for_budget(budget, info)
                    d = {f.name: getattr(base, f.name) for f in dataclasses.fields(_t)}
                    return cls(**d)

                cfg.for_budget = classmethod(for_budget)
            return cfg, "class-config"
        return dataclasses.make_dataclass(f"{slug}Config", [], bases=(_ExternalConfig,)), "class-dict"
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return dataclasses.make_dataclass(f"{slug}Config", [], bases=(_ExternalConfig,)), "function"
    fields, first = [], True
    for p in sig.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if first and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "budget":
            first = False  # the first positional parameter receives the DatasetInfo
            continue
        first = False
        if p.name == "info":
            continue
        if p.name == "budget":
            fields.append(("budget", str, dataclasses.field(default="quick")))
            continue
        if p.default is p.empty:
            raise ExternalModelError(f"model reference {ref!r}: parameter {p.name!r} of {target.__name__}() has no "
                                     "default; a factory is called as factory(info, **config): give every other "
                                     "parameter a default (suites can override it under `overrides`)")
        fields.append(_field_for(p.name, p.default))
    return dataclasses.make_dataclass(f"{slug}Config", fields, bases=(_ExternalConfig,)), "function"


class _ValidatedSampling:
    """Mixin for GenerativeModel subclasses from users: every `_sample` batch is validated."""

    _external_ref: ClassVar[str] = ""

    def _sample(self, n, generator, **condition):
        x = super()._sample(n, generator, **condition)  # type: ignore[misc]
        return validate_samples(x, self.info, n, self.name)  # type: ignore[attr-defined]


class ExternalModel(GenerativeModel):
    """Wraps a model object made by a user's factory (function or duck-typed class) into the
    GenerativeModel interface the runner drives."""

    _target: ClassVar[Any] = None
    _call: ClassVar[str] = "function"
    _external_ref: ClassVar[str] = ""
    log_prob_kind = LOG_PROB_NONE

    def __init__(self, config, info):
        super().__init__(config, info)
        cfg = config.to_dict() if hasattr(config, "to_dict") else dict(config or {})
        try:
            if self._call == "function":
                self.inner = type(self)._target(info, **cfg)
            elif self._call == "class-config":
                self.inner = type(self)._target(type(self)._target.Config(**cfg), info)
            else:
                self.inner = type(self)._target(dict(cfg), info)
        except GenbenchError:
            raise
        except Exception as e:
            raise ExternalModelError(f"model {self.name!r} ({self._external_ref}): creating the model raised "
                                     f"{type(e).__name__}: {e}") from e
        if self.inner is None or not callable(getattr(self.inner, "sample", None)):
            raise ExternalModelError(
                f"model {self.name!r}: {self._external_ref} returned {type(self.inner).__name__}, which has no "
                "sample(n, seed=...) method; a model object must at least provide sample(n, seed) returning "
                f"n samples shaped (n, {', '.join(str(s) for s in info.shape)})")
        kind = getattr(self.inner, "log_prob_kind", None)
        if kind is None:
            kind = "exact" if callable(getattr(self.inner, "log_prob", None)) else LOG_PROB_NONE
        if kind not in ("exact", "bound", "none"):
            raise ExternalModelError(f"model {self.name!r}: log_prob_kind must be 'exact', 'bound' or 'none', "
                                     f"got {kind!r}")
        self.log_prob_kind = kind
        # a conditional user model: `conditional = True` on the object, optionally `num_classes` (the classes it
        # accepts; default the dataset's), and sample(n, seed=, condition=labels)
        self.conditional = bool(getattr(self.inner, "conditional", False))
        if self.conditional:
            try:
                params = inspect.signature(self.inner.sample).parameters
            except (TypeError, ValueError):
                params = {}
            if params and "condition" not in params and not any(p.kind == p.VAR_KEYWORD for p in params.values()):
                raise ExternalModelError(f"model {self.name!r}: it declares conditional = True, but its "
                                         "sample(n, seed) takes no condition= argument (the class labels to draw)")
            if not info.num_classes:
                raise ExternalModelError(f"model {self.name!r} is class-conditional and needs a labelled dataset; "
                                         f"dataset {info.name!r} has no class labels")

    @property
    def condition_classes(self):
        """The classes the user's model declares (`num_classes` on the object, default the dataset's)."""
        if not self.conditional:
            return None
        k = getattr(self.inner, "num_classes", None)
        return int(k) if k is not None else int(self.info.num_classes)

    # ---- training --------------------------------------------------------------------------------------
    def fit(self, train, budget=None, seed=0, device="cpu", callbacks=(), labels=None):
        t0 = time.perf_counter()
        self.to(device)
        fit = getattr(self.inner, "fit", None)
        hist = None
        if callable(fit):
            hist = _call_with_supported(fit, train, seed=seed, device=device, callbacks=list(callbacks),
                                        budget=budget, **({"labels": labels} if labels is not None else {}))
        if isinstance(hist, FitHistory):
            self.history = hist
        else:
            self.history = FitHistory()
            inner_hist = getattr(self.inner, "history", None)
            if isinstance(inner_hist, FitHistory):
                self.history = inner_hist
        if not self.history.seconds:
            self.history.seconds = time.perf_counter() - t0
        return self.history

    # ---- sampling --------------------------------------------------------------------------------------
    def sample(self, n, seed=0, batch_size=None, condition=None):
        kw = {}
        if condition is not None:
            from genbench.models.conditions import check_condition

            kw["condition"] = check_condition(condition, int(n), self.condition_classes, f"model {self.name!r}")
        with torch.inference_mode():
            x = _call_with_supported(self.inner.sample, int(n), seed=int(seed), batch_size=batch_size, **kw)
        return validate_samples(x, self.info, int(n), self.name)

    def _sample(self, n, generator, condition=None):
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        return self.sample(n, seed=seed, condition=condition)

    @property
    def nfe_per_sample(self):
        return float(getattr(self.inner, "nfe_per_sample", 1.0))

    # ---- likelihood ------------------------------------------------------------------------------------
    def log_prob(self, x, batch_size=512):
        if self.log_prob_kind == LOG_PROB_NONE:
            raise NotImplementedError(f"model {self.name!r} has no tractable likelihood")
        parts = []
        with torch.inference_mode():
            for i in range(0, len(x), batch_size):
                chunk = x[i:i + batch_size]
                lp = self.inner.log_prob(chunk)
                if isinstance(lp, np.ndarray):
                    lp = torch.from_numpy(lp)
                if not isinstance(lp, torch.Tensor) or tuple(lp.shape) != (len(chunk),):
                    got = tuple(lp.shape) if hasattr(lp, "shape") else type(lp).__name__
                    raise ModelOutputError(f"model {self.name!r}: log_prob of {len(chunk)} examples must be a "
                                           f"tensor shaped ({len(chunk)},) in nats, got {got}")
                parts.append(lp.detach().double().cpu())
        return torch.cat(parts) if parts else torch.empty(0, dtype=torch.float64)

    # ---- state -----------------------------------------------------------------------------------------
    def modules(self):
        inner = self.__dict__.get("inner")
        if isinstance(inner, torch.nn.Module):
            return {"inner": inner}
        mods = getattr(inner, "modules", None)
        if callable(mods):
            try:
                d = mods()
            except TypeError:
                d = None
            if isinstance(d, dict) and all(isinstance(m, torch.nn.Module) for m in d.values()):
                return d
        return {}

    def to(self, device):
        super().to(device)
        inner = self.__dict__.get("inner")
        if not isinstance(inner, torch.nn.Module) and callable(getattr(inner, "to", None)) and not self.modules():
            inner.to(device)
        return self

    def _has_state_dict(self) -> bool:
        inner = self.inner
        return (not isinstance(inner, torch.nn.Module) and callable(getattr(inner, "state_dict", None))
                and callable(getattr(inner, "load_state_dict", None)))

    def extra_state(self):
        return {"inner_state": self.inner.state_dict()} if self._has_state_dict() else {}

    def load_extra_state(self, state):
        if "inner_state" in state and self._has_state_dict():
            self.inner.load_state_dict(state["inner_state"])

    def save(self, path):
        """Saved (and so cached between runs) only when the object exposes its state as plain data (tensors,
        NumPy arrays, numbers, strings and containers of these: checkpoints are loaded without unpickling
        code); otherwise nothing is written, with a warning for state that is not plain data, and every run
        fits the model again."""
        if not (self.modules() or self._has_state_dict()):
            return Path(path)
        try:
            return super().save(path)
        except UnsafeStateError as e:
            print(f"genbench: warning: model {self.name!r} is not cached between runs: {e}", file=sys.stderr)
            return Path(path)


def adapter_base() -> type:
    return ExternalModel


def make_model_class(name: str, target: Any, ref: str) -> type:
    """A GenerativeModel subclass registered as `name` that builds (and validates) the user's model."""
    module = getattr(target, "__module__", None) or __name__
    if inspect.isclass(target) and issubclass(target, GenerativeModel):
        attrs = {"name": name, "family": getattr(target, "family", "") or DEFAULT_FAMILY, "_external_ref": ref,
                 "__module__": module, "__doc__": target.__doc__}
        return type(target.__name__, (_ValidatedSampling, target), attrs)
    cfg, call = _config_class(name, target, ref)
    family = getattr(target, "family", "")
    modalities = tuple(getattr(target, "modalities", ("points", "image", "text")))
    attrs = {"name": name, "family": family if isinstance(family, str) and family else DEFAULT_FAMILY,
             "modalities": modalities, "Config": cfg,
             "_target": target if inspect.isclass(target) else staticmethod(target),
             "_call": call, "_external_ref": ref, "__module__": module, "__doc__": f"user model {ref}"}
    return type(getattr(target, "__name__", "ExternalModel"), (ExternalModel,), attrs)


__all__ = ["ExternalModelError", "ModelOutputError", "ExternalModel", "parse_reference", "resolve",
           "validate_samples", "make_model_class", "ENTRY_POINT_GROUP"]
