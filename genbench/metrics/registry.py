"""The metric registry: each MetricSpec names its unit, direction, version, the EvalContext fields it needs,
and a `compute(ctx) -> list[MetricResult]` (one spec may yield several results: prdc -> 4).

It is also the one declaration of how each result is shown and used: every result name a spec yields is an
`Output` (unit, direction, category, label, display format, whether the leaderboard of a modality shows it, and
where). The report (genbench/report/headline.py), `genbench recommend`, suite validation and the runner's
progress lines read these declarations; nothing else lists metric names. Results that the runner records itself
(speed and cost, genbench/pipeline/speed.py; text speed, genbench/metrics/text.py) are declared with `declare_outputs`.
"""

from __future__ import annotations

import logging
import importlib
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

from genbench.errors import GenbenchError
from genbench.metrics.base import MetricResult
from genbench.metrics.context import EvalContext
from genbench.registry import Registry

log = logging.getLogger(__name__)


class MetricUnavailable(GenbenchError):
    """A metric cannot be computed from this EvalContext (a required input is absent or does not apply)."""


CATEGORIES = ("quality", "diversity", "likelihood", "speed", "memorisation", "footprint")
PERCENT, NUMBER = "percent", "number"  # display formats: a share in [0, 1] shown as a percentage; a plain number


@dataclass(frozen=True)
class Output:
    """One result name a metric yields, and how it is read and shown.

    `category`: what the summary and `genbench recommend` count it as (one of CATEGORIES, or None: shown, never
    scored); `rank`: its place within the category (the summary speaks of the lowest-ranked one the models
    report). `headline`: the modalities whose leaderboard shows it as a column, placed by `order` (also the
    order of "show everything"). `log_scale`: compared as ratios and drawn on a log axis (speed, size)."""

    name: str
    unit: str = ""
    higher_is_better: bool = True
    category: Optional[str] = None
    label: str = ""
    fmt: str = NUMBER
    headline: tuple = ()
    order: int = 1000
    rank: int = 100
    log_scale: bool = False

    def __post_init__(self):
        if self.category is not None and self.category not in CATEGORIES:
            raise ValueError(f"metric output {self.name!r}: category {self.category!r} is not one of {CATEGORIES}")
        if self.fmt not in (PERCENT, NUMBER):
            raise ValueError(f"metric output {self.name!r}: fmt {self.fmt!r} is not {PERCENT!r} or {NUMBER!r}")


@dataclass(frozen=True)
class MetricSpec:
    name: str
    unit: str  # unit of the main result
    higher_is_better: bool  # direction of the main result
    version: str
    requires: tuple  # EvalContext field names that must not be None
    compute: Callable[[EvalContext], list]
    description: str = ""
    outputs: tuple = field(default=())  # the results it yields: Output declarations or names (default: (name,))
    modalities: tuple = ()  # data it applies to ("points", "image", "text"); () = any

    @property
    def declared(self) -> tuple:
        """Its outputs as `Output`s (a bare name gets the spec's unit and direction, and no category)."""
        outs = self.outputs or (self.name,)
        return tuple(o if isinstance(o, Output) else Output(o, self.unit, self.higher_is_better) for o in outs)

    @property
    def output_names(self) -> tuple:
        return tuple(o.name for o in self.declared)


METRICS: Registry[MetricSpec] = Registry("metric")
_DECLARED: dict[str, tuple] = {}  # outputs no MetricSpec yields: name -> (Output, where it comes from, recorded)
# Modules whose import registers the built-in metrics and declares the recorded outputs.
_DECLARING = ("genbench.metrics.builtin", "genbench.metrics.fd_infinity", "genbench.metrics.inception_score",
              "genbench.metrics.mauve", "genbench.metrics.cmmd", "genbench.metrics.conditional",
              "genbench.metrics.text", "genbench.metrics.text_prefix", "genbench.metrics.translation",
              "genbench.pipeline.speed")


def register_metric(spec: MetricSpec, *, replace: bool = False) -> MetricSpec:
    """Add a metric (built-in or a user's) to the registry; its outputs' declarations come with it."""
    return METRICS.register(spec.name, spec, replace=replace)


def declare_outputs(*outputs: Output, source: str = "recorded by genbench run for every job",
                    recorded: bool = True) -> None:
    """Declare results that no MetricSpec computes: `recorded` ones the runner measures for every job (speed,
    cost; suites cannot list them), others come from a library function (`source` says which). Reports,
    recommend and summaries read them like any other output."""
    for o in outputs:
        _DECLARED[o.name] = (o, source, recorded)


def _load() -> None:
    for mod in _DECLARING:
        importlib.import_module(mod)


def outputs() -> dict[str, Output]:
    """Every declared result name -> its Output (registered metrics' outputs, then the recorded ones)."""
    _load()
    out: dict[str, Output] = {}
    for name in METRICS.names():
        for o in METRICS.get(name).declared:
            out.setdefault(o.name, o)
    for name, (o, _source, _recorded) in _DECLARED.items():
        out.setdefault(name, o)
    return out


def output(name: str) -> Optional[Output]:
    """The declaration of result `name`, or None for a name nothing declares (an old store's, a user's)."""
    return outputs().get(name)


def recorded_outputs() -> dict[str, tuple]:
    """Results the runner records by itself (not listable in a suite): name -> (Output, where it comes from)."""
    _load()
    return {n: (o, source) for n, (o, source, recorded) in _DECLARED.items() if recorded}


def spec_of_output(name: str) -> Optional[MetricSpec]:
    """The registered metric that yields result `name`, or None."""
    _load()
    for spec_name in METRICS.names():
        spec = METRICS.get(spec_name)
        if name in spec.output_names:
            return spec
    return None


def headline(modality: str) -> list[str]:
    """The result names a modality's leaderboard shows, in column order."""
    return [o.name for o in sorted(outputs().values(), key=lambda o: o.order) if modality in o.headline]


def display_order() -> list[str]:
    """Every declared result name in display order (for a dataset of unknown modality, and exports)."""
    return [o.name for o in sorted(outputs().values(), key=lambda o: o.order)]


def in_category(category: str) -> tuple:
    """The result names counted as `category`, most representative first (by rank)."""
    return tuple(o.name for o in sorted(outputs().values(), key=lambda o: o.rank) if o.category == category)


def likelihood_metrics() -> set[str]:
    """Metrics computed from the model's likelihood: specs that yield a likelihood output, and all their outputs
    (a model without log_prob skips them; a sampler sweep does not repeat them)."""
    _load()
    out = set()
    for spec_name in METRICS.names():
        spec = METRICS.get(spec_name)
        if any(o.category == "likelihood" for o in spec.declared):
            out |= {spec_name, *spec.output_names}
    return out


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
                why = [ctx.unavailable[m] for m in missing if m in (getattr(ctx, "unavailable", None) or {})]
                raise MetricUnavailable(f"metric {spec.name!r} needs EvalContext field(s) {', '.join(missing)}, which "
                                        f"are not set" + (": " + "; ".join(why) if why else ""))
            out.extend(spec.compute(ctx))
        except MetricUnavailable as e:
            if strict:
                raise
            ctx.skipped[spec.name] = str(e)
            log.info("skipped metric %s: %s", spec.name, e)
    return out
