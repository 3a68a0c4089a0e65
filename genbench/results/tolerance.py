"""The smallest change of a score that counts (`tolerances.toml`): per metric an absolute amount or a relative
share, and for timing figures an absolute floor in milliseconds of the timed call (`call_ms`). See
docs/gate.md.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from genbench.errors import InvalidInputError

DEFAULT_TOLERANCES = Path(__file__).with_name("tolerances.toml")
_FLOOR_TABLE = "timing_floor_ms"  # tolerances.toml: absolute floors of timing changes (ms of the timed call)


@dataclass(frozen=True)
class Tolerance:
    amount: float
    relative: bool

    @classmethod
    def parse(cls, raw, metric: str = "?") -> "Tolerance":
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            return cls(abs(float(raw)), False)
        if isinstance(raw, str):
            s = raw.strip()
            try:
                if s.endswith("%"):
                    return cls(abs(float(s[:-1])) / 100.0, True)
                return cls(abs(float(s)), False)
            except ValueError:
                pass
        raise InvalidInputError(f"tolerance for {metric!r} must be a number (absolute) or a string like '5%' (relative), got {raw!r}")

    def allowed(self, baseline: float) -> float:
        return self.amount * abs(baseline) if self.relative else self.amount

    def __str__(self) -> str:
        return f"{self.amount * 100:g}%" if self.relative else f"{self.amount:g}"


class Tolerances(dict):
    """metric -> Tolerance (the `[tolerances]` table), plus `floors_ms`: metric -> the absolute floor of a timing
    change, in milliseconds of the timed call (the `[timing_floor_ms]` table; key `default` for unlisted ones)."""

    def __init__(self, *args, floors_ms: Optional[dict] = None, **kw):
        super().__init__(*args, **kw)
        self.floors_ms = dict(floors_ms or {})


def load_tolerances(path: Optional[str | Path] = None) -> Tolerances:
    tol, floors = _read_tolerance_file(DEFAULT_TOLERANCES)
    if path is not None:
        more, more_floors = _read_tolerance_file(Path(path))
        tol.update(more)
        floors.update(more_floors)
    return Tolerances(tol, floors_ms=floors)


def _read_tolerance_file(path: Path) -> tuple[dict[str, Tolerance], dict[str, float]]:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise InvalidInputError(f"tolerance file {path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise InvalidInputError(f"tolerance file {path} is not valid TOML: {e}") from None
    floors_raw = data.get(_FLOOR_TABLE, {})
    table = data.get("tolerances", {k: v for k, v in data.items() if k != _FLOOR_TABLE})
    if not isinstance(table, dict):
        raise InvalidInputError(f"{path}: expected a [tolerances] table of metric = tolerance")
    if not isinstance(floors_raw, dict):
        raise InvalidInputError(f"{path}: expected a [{_FLOOR_TABLE}] table of metric = milliseconds")
    floors = {}
    for k, v in floors_raw.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise InvalidInputError(f"{path}: [{_FLOOR_TABLE}] {k} must be a number of milliseconds >= 0, got {v!r}")
        floors[k] = float(v)
    return {k: Tolerance.parse(v, k) for k, v in table.items()}, floors


def tolerance_for(metric: str, tolerances: dict[str, Tolerance], timing: bool = False) -> Tolerance:
    """The metric's own tolerance, else (timing figures) `timing_default`, else `default`, else 0."""
    return (tolerances.get(metric) or (tolerances.get("timing_default") if timing else None)
            or tolerances.get("default") or Tolerance(0.0, False))


def timing_floor_ms(metric: str, tolerances: dict[str, Tolerance]) -> float:
    """The absolute floor of a timing change, in ms of the timed call (`[timing_floor_ms]`; a plain dict of
    tolerances gets the built-in floors)."""
    floors = getattr(tolerances, "floors_ms", None)
    if floors is None:
        floors = _builtin_floors()
    return floors.get(metric, floors.get("default", 0.0))


def _builtin_floors() -> dict[str, float]:
    return _read_tolerance_file(DEFAULT_TOLERANCES)[1]


def call_ms(value: float, unit: str, protocol: dict) -> Optional[float]:
    """Milliseconds of the call a timing figure timed, from the figure: `ms` and `s` figures are that time (one
    sample's latency, one fit); a rate is the time of one timed call, `samples/s` -> batch_size / rate,
    `chars/s` -> n_chars * batch_size / rate (as genbench.speed and genbench.metrics.text measure them). None
    when the figure is not a time (peak memory), or is not positive and finite, or the protocol lacks the batch."""
    if not math.isfinite(value) or value <= 0:
        return None
    unit = (unit or "").strip()
    if unit == "ms":
        return value
    if unit == "s":
        return value * 1000.0
    if unit in ("samples/s", "chars/s"):
        items = [protocol.get("batch_size")] + ([protocol.get("n_chars")] if unit == "chars/s" else [])
        if not all(isinstance(n, (int, float)) and not isinstance(n, bool) and n > 0 for n in items):
            return None
        return 1000.0 * math.prod(items) / value
    return None
