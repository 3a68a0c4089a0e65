"""Suite files for tests, built from Python values (not pasted TOML): `suite_toml(...)` renders one,
`write_suite(path, ...)` writes it; `write_dummy_suite` is the tiny runner suite: the `dummy-gauss` model
(tests/runner_dummies.py) on ring8, FD only."""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path
from typing import Any, Optional


def toml_value(v: Any) -> str:
    """One TOML value: strings, booleans, numbers, lists and inline tables."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError(f"TOML has no value for {v!r} here")
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # a TOML basic string (same escapes)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"no TOML form for {type(v).__name__}")


def _key(k: str) -> str:
    return k if k.replace("-", "").replace("_", "").isalnum() else json.dumps(k)


def suite_toml(datasets: dict, models: dict, *, name: str = "t", budget: str = "smoke", device: str = "cpu",
               seeds=(0,), n_bootstrap: Optional[int] = 10, speed: Optional[dict] = None, sweeps: Optional[dict] = None,
               **top: Any) -> str:
    """A suite file: `datasets` = {name: {key: value}}, `models` = {name: {key: value}} (values may be dicts,
    written as inline tables), `sweeps` = {model: {key: value}}; other keyword arguments are top-level keys."""
    head = {"name": name, "budget": budget, "device": device, "seeds": list(seeds)}
    if n_bootstrap is not None:
        head["n_bootstrap"] = n_bootstrap
    head.update(top)
    lines = [f"{_key(k)} = {toml_value(v)}" for k, v in head.items()]
    for section, table in (("speed", speed),):
        if table:
            lines += ["", f"[{section}]"] + [f"{_key(k)} = {toml_value(v)}" for k, v in table.items()]
    for kind, tables in (("datasets", datasets), ("models", models), ("sweeps", sweeps or {})):
        for tname, table in tables.items():
            lines += ["", f"[{kind}.{_key(tname)}]"] + [f"{_key(k)} = {toml_value(v)}" for k, v in table.items()]
    text = "\n".join(lines) + "\n"
    tomllib.loads(text)  # a helper bug shows here, not as a confusing suite error
    return text


def write_suite(path: Path, datasets: dict, models: dict, **kw: Any) -> Path:
    """Write `suite_toml(...)` to `path` (a directory: `path/s.toml`) and return the file."""
    path = Path(path)
    p = path / "s.toml" if path.is_dir() else path
    p.write_text(suite_toml(datasets, models, **kw))
    return p


DUMMY_SPEED = {"batch_size": 64, "repeats": 1, "warmup": 0}
RING8_FD = {"features": "identity", "n_samples": 200, "metrics": ["fd"]}
# ring8 with every points metric
RING8_ALL = {"features": "identity", "n_samples": 200, "metrics": ["fd", "prdc", "mode_coverage", "bits_per_dim"]}


def write_dummy_suite(tmp_path: Path, name: str = "t", seeds=(0,), overrides: Optional[dict] = None) -> Path:
    """dummy-gauss on ring8 (FD only), smoke budget, one quick timing batch; `overrides`: the model's."""
    model = {"overrides": dict(overrides)} if overrides else {}
    return write_suite(tmp_path, {"ring8": dict(RING8_FD)}, {"dummy-gauss": model}, name=name, seeds=seeds,
                       speed=DUMMY_SPEED)
