"""The checks a suite file passes while it is parsed (genbench/suite_parse.py): typed keys with the file and key
in every error (`_Checker`), counts within bounds, model config overrides against the model's Config, and
whether a metric applies to a dataset and its features.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional

from genbench.registry import unknown_name_message
from genbench.suite_spec import SuiteError, _extractor_known, extractor_names, metric_specs

class _Checker:
    def __init__(self, source: str):
        self.source = source

    def fail(self, key: str, msg: str) -> SuiteError:
        return SuiteError(f"{self.source}: key {key!r}: {msg}")

    def keys(self, table: Any, allowed: set, where: str) -> dict:
        if not isinstance(table, dict):
            raise self.fail(where, f"expected a table, got {type(table).__name__}")
        for k in table:
            if k not in allowed:
                full = f"{where}.{k}" if where else k
                raise self.fail(full, unknown_name_message("key", k, allowed))
        return table

    def typed(self, table: dict, key: str, where: str, types, default=..., check=None, what: str = ""):
        full = f"{where}.{key}" if where else key
        if key not in table:
            if default is ...:
                raise self.fail(full, "is required")
            return default
        v = table[key]
        if isinstance(v, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
            raise self.fail(full, f"expected {what or _tname(types)}, got a boolean")
        if not isinstance(v, types):
            raise self.fail(full, f"expected {what or _tname(types)}, got {type(v).__name__} {v!r}")
        if check is not None:
            msg = check(v)
            if msg:
                raise self.fail(full, msg)
        return v

    def str_list(self, table: dict, key: str, where: str, default=...) -> Optional[list]:
        v = self.typed(table, key, where, list, default, what="a list of strings")
        if v is None or v is default:
            return v
        full = f"{where}.{key}" if where else key
        for x in v:
            if not isinstance(x, str):
                raise self.fail(full, f"expected a list of strings, found {x!r}")
        return list(v)


def _tname(types) -> str:
    ts = types if isinstance(types, tuple) else (types,)
    return " or ".join({"str": "a string", "int": "an integer", "float": "a number", "list": "a list",
                        "dict": "a table", "bool": "true/false"}.get(t.__name__, t.__name__) for t in ts)


def _positive(v) -> Optional[str]:
    return None if v > 0 else f"must be > 0, got {v}"


def _nonneg(v) -> Optional[str]:
    return None if v >= 0 else f"must be >= 0, got {v}"


MIN_SAMPLES = 2  # the metrics need at least two samples (a covariance, a nearest neighbour)
MAX_SAMPLES = 1_000_000  # generated samples / featurised training items per job: beyond this, memory runs out first
MAX_LIKELIHOOD = 10_000_000  # reference items (text: characters) scored for likelihood


def _count_between(lo: int, hi: int, what: str, zero_ok: bool = False):
    """A check for a sample count: `lo` <= v <= `hi` (or 0, meaning "the default", when `zero_ok`)."""
    def check(v) -> Optional[str]:
        if zero_ok and v == 0:
            return None
        if v < lo or v > hi:
            zero = " (or 0 for the default)" if zero_ok else ""
            return f"must be between {lo} and {hi:_} {what}{zero}, got {v}"
        return None

    return check


# int config fields that count things: an override must be >= 1 (when the default is >= 1)
_COUNT_FIELDS = {"steps", "batch_size", "n_components", "hidden", "n_layers", "n_layer", "n_head", "n_embd", "blocks",
                 "bins", "depth", "ch", "latent_dim", "z_dim", "timesteps", "seq_len", "block_size", "n_mix",
                 "n_scales", "num_res_blocks", "prior_components", "sample_length", "sample_steps", "glow_steps",
                 "d_steps", "top_hidden", "top_depth", "pca_dim", "patch", "kernel", "order"}


def _check_override(c: "_Checker", key: str, cls, name: str, value) -> None:
    """Check one config override against the model's config dataclass: the field's type (int, float, bool, str,
    Optional[...], tuple/list), finite numbers, >= 0 unless the default is negative, >= 1 for counts."""
    import typing

    if not dataclasses.is_dataclass(cls.Config):
        return
    try:
        hint = typing.get_type_hints(cls.Config).get(name)
    except Exception:  # noqa: BLE001 - a user config with unresolvable annotations: its own code checks
        return
    default = getattr(cls.Config(), name, None)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    base = args[0] if typing.get_origin(hint) is typing.Union and len(args) == 1 else hint
    base = typing.get_origin(base) or base
    where = f"({getattr(cls, 'name', cls.__name__)} config field {name}: {getattr(base, '__name__', base)}, default {default!r})"
    if base is bool:
        if not isinstance(value, bool):
            raise c.fail(key, f"expected true/false {where}, got {type(value).__name__} {value!r}")
        return
    if base in (int, float):
        ok = isinstance(value, int) or (base is float and isinstance(value, float))
        if isinstance(value, bool) or not ok:
            raise c.fail(key, f"expected {_tname(base)} {where}, got {type(value).__name__} {value!r}")
        if not math.isfinite(value):
            raise c.fail(key, f"must be a finite number {where}, got {value!r}")
        neg_ok = isinstance(default, (int, float)) and not isinstance(default, bool) and default < 0
        if base is int and name in _COUNT_FIELDS and isinstance(default, int) and default >= 1 and value < 1:
            raise c.fail(key, f"must be >= 1 {where}, got {value}")
        if not neg_ok and value < 0:
            raise c.fail(key, f"must be >= 0 {where}, got {value}")
        return
    if base is str and not isinstance(value, str):
        raise c.fail(key, f"expected a string {where}, got {type(value).__name__} {value!r}")
    if base in (tuple, list):
        if not isinstance(value, list):
            raise c.fail(key, f"expected a list {where}, got {type(value).__name__} {value!r}")
        kinds = {type(x) for x in (default or ())}
        if kinds and not all(type(x) in kinds for x in value):
            raise c.fail(key, f"expected a list of {'/'.join(sorted(k.__name__ for k in kinds))} {where}, "
                         f"got {value!r}")


def _config_defaultable(cls) -> bool:
    try:
        cls.Config()
        return True
    except TypeError:
        return False


def _metric_dataset_problem(spec, metric: str, dataset: str, modality: str, features: str) -> Optional[str]:
    """Why `metric` can never be computed for this dataset/extractor, or None."""
    if spec is None:
        return None
    req = set(getattr(spec, "requires", ()) or ())
    if "mixture" in req:
        from genbench.data import get_dataset

        if getattr(get_dataset(dataset), "mixture", None) is None:
            return f"{metric!r} needs a dataset with a known mixture (ring8, grid25); {dataset!r} has none"
    if "fake_class_probs" in req and not features.startswith("classifier:"):
        if extractor_names() and not _extractor_known(f"classifier:{dataset}"):
            return f"{metric!r} needs a classifier for {dataset!r} (extractor 'classifier:{dataset}'), which does not exist"
    mods = getattr(spec, "modalities", None)
    if mods and modality not in mods:
        alt = _same_kind_for(spec, modality)
        return (f"{metric!r} works on {' and '.join(mods)} data; {dataset!r} is {modality} data"
                + (f" (use {alt!r})" if alt else ""))
    return None


def _same_kind_for(spec, modality: str) -> Optional[str]:
    """A registered metric of the same category as `spec`'s main result that works on `modality` data."""
    cat = spec.declared[0].category if getattr(spec, "declared", None) else None
    if cat is None:
        return None
    for name, other in metric_specs().items():
        if other is not spec and getattr(other, "declared", None) and other.declared[0].category == cat \
                and modality in (other.modalities or (modality,)):
            return name
    return None


def _unknown_metric(m: str, specs: dict) -> str:
    for name, spec in specs.items():
        if m in (getattr(spec, "output_names", None) or getattr(spec, "outputs", ()) or ()):
            return f"{m!r} is one of the results of metric {name!r}: list {name!r} instead"
    return unknown_name_message("metric", m, list(specs))
