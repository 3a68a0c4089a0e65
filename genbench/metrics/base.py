"""What every metric returns: a value with its unit, direction, version and the protocol it was computed under."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Optional


@dataclass
class MetricResult:
    name: str  # e.g. "fd", "kid", "precision", "bits_per_dim", "modes_covered"
    value: float
    unit: str  # e.g. "", "bits/dim", "modes", "samples/s"
    higher_is_better: bool
    version: str  # bump when the definition changes, so stored numbers are never silently compared across versions
    protocol: dict = field(default_factory=dict)  # feature network, resize, n_real, n_fake, reference split, k, seed...
    ci_low: Optional[float] = None
    ci_high: Optional[float] = None
    extra: dict = field(default_factory=dict)  # e.g. per-mode histogram, std over KID subsets

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __post_init__(self) -> None:
        self.value = float(self.value)
        if math.isnan(self.value):
            raise ValueError(f"metric {self.name} is NaN (protocol {self.protocol})")
