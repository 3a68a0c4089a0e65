"""The metric registry: each MetricSpec names its unit, direction, version, the EvalContext fields it needs,
and a `compute(ctx) -> list[MetricResult]` (one spec may yield several results: prdc -> 4)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Iterable

from genbench.errors import GenbenchError
from genbench.metrics.base import MetricResult
from genbench.metrics.context import EvalContext
from genbench.registry import Registry

log = logging.getLogger(__name__)


class MetricUnavailable(GenbenchError):
    """A metric cannot be computed from this EvalContext (a required input is absent or does not apply)."""


@dataclass(frozen=True)
class MetricSpec:
    name: str
    unit: str  # unit of the main result
    higher_is_better: bool  # direction of the main result
    version: str
    requires: tuple  # EvalContext field names that must not be None
    compute: Callable[[EvalContext], list]
    description: str = ""
    outputs: tuple = field(default=())  # names of the MetricResults it yields (default: (name,))


METRICS: Registry[MetricSpec] = Registry("metric")


def register_metric(spec: MetricSpec, *, replace: bool = False) -> MetricSpec:
    """Add a metric (built-in or a user's) to the registry."""
    return METRICS.register(spec.name, spec, replace=replace)


def list_metrics() -> list[str]:
    return METRICS.names()


def get_metric(name: str) -> MetricSpec:
    return METRICS.get(name)


def missing_requirements(spec: MetricSpec, ctx: EvalContext) -> list[str]:
    return [r for r in spec.requires if getattr(ctx, r, None) is None]


def compute_metrics(names: Iterable[str], ctx: EvalContext, strict: bool = False) -> list[MetricResult]:
    """Compute the named metrics on ctx; returns their MetricResults in order.

    Unknown names raise UnknownNameError (did-you-mean) before anything is computed. A metric whose required
    EvalContext fields are None, or whose compute raises MetricUnavailable, is skipped: its reason goes to
    `ctx.skipped[name]` (and the log). With strict=True it raises MetricUnavailable instead."""
    specs = [METRICS.get(n) for n in names]
    out: list[MetricResult] = []
    for spec in specs:
        missing = missing_requirements(spec, ctx)
        try:
            if missing:
                raise MetricUnavailable(f"metric {spec.name!r} needs EvalContext field(s) {', '.join(missing)}, which are not set")
            out.extend(spec.compute(ctx))
        except MetricUnavailable as e:
            if strict:
                raise
            ctx.skipped[spec.name] = str(e)
            log.info("skipped metric %s: %s", spec.name, e)
    return out
