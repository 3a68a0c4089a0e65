"""How a metric record becomes a row of the results store's `metrics` table, and how rows become JSON:
non-finite floats, infinities kept as "inf" / "-inf" in results.json, protocol and extra as sorted JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from genbench.errors import InvalidInputError


def _json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=_json_default, allow_nan=False)


def _json_default(o: Any) -> Any:
    if hasattr(o, "tolist"):  # numpy / torch scalars and arrays
        return _finite(o.tolist())
    if isinstance(o, (set, tuple)):
        return list(o)
    if isinstance(o, Path):
        return str(o)
    return str(o)


def _finite(v: Any) -> Any:
    """JSON has no NaN/inf: non-finite floats become None (recursively)."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite(x) for x in v]
    return v


def _lossless_numbers(record: dict) -> dict:
    """A metric record's value/ci_low/ci_high for results.json: infinities as the strings "inf" / "-inf" (JSON has
    no literal for them, and `null` would turn an infinite KL into "no value"); NaN -- how SQLite stores "no
    value" -- stays null. `float("inf")` and pandas' `to_numeric` read the strings back."""
    out = {}
    for k in ("value", "ci_low", "ci_high"):
        v = record.get(k)
        if isinstance(v, float) and math.isinf(v):
            out[k] = "inf" if v > 0 else "-inf"
    return out


def _metric_row(m: Any) -> dict:
    """A MetricResult (or a dict with the same fields) as a metrics-table row."""
    d = m.to_dict() if hasattr(m, "to_dict") else dict(m)
    for key in ("name", "value", "unit", "higher_is_better"):
        if key not in d:
            raise InvalidInputError(f"metric record {d!r} lacks {key!r}")

    def num(v):
        return None if v is None else float(v)

    return {
        "name": str(d["name"]),
        "variant": str(d.get("variant") or ""),
        "value": num(d["value"]),
        "ci_low": num(d.get("ci_low")),
        "ci_high": num(d.get("ci_high")),
        "unit": str(d.get("unit") or ""),
        "higher_is_better": int(bool(d["higher_is_better"])),
        "version": str(d.get("version") or ""),
        "protocol_json": _json(_finite(d.get("protocol") or {})),
        "extra_json": _json(_finite(d.get("extra") or {})),
    }
