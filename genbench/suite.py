"""Benchmark suites: TOML files naming the datasets (with their feature extractor, sample count, reference split
and metrics), the models, seeds, budget, device, speed settings and optional diffusion sampler sweeps.

    name = "quick"
    description = "every family on ring8, grid25 and fashion-mnist"
    budget = "quick"               # smoke | quick | standard: training budget of every model
    device = "cpu"                 # auto | cpu | cuda
    seeds = [0]
    n_bootstrap = 200              # bootstrap resamples for confidence intervals (0: none)
    threads = 1                    # optional: torch CPU threads (default: torch's choice; --threads overrides)
    workers = 2                    # optional: jobs run at once in worker processes (default 1; --workers overrides)
    resources = { num_cpus = 1, num_gpus = 0.25 }  # optional: per-job resources of a Ray task (--executor ray;
                                   # default num_cpus = threads or 1, num_gpus = 1 on cuda else 0; fractions allowed)

    [speed]
    batch_size = 256               # samples/s is measured at this batch size
    repeats = 5                    # median of this many timed batches
    warmup = 1                     # untimed batches first

    [datasets.ring8]
    features = "identity"          # feature extractor (genbench list extractors)
    n_samples = 2000               # generated samples scored (and real reference samples, at most); 2..1000000
    reference = "test"             # real split the samples are compared with
    metrics = ["fd", "prdc", "mode_coverage", "bits_per_dim"]   # genbench list metrics
    n_train_features = 0           # training items featurised for memorisation (0: n_samples)
    n_likelihood = 0               # reference items (text: characters) scored for likelihood (0: n_samples; text 20000)
    options = { kid_subsets = 20 } # metric settings (EvalContext fields: kid_subsets, kid_subset_size, k_pr, k_dc...)
    conditions = "uniform"         # labelled datasets: how class conditions are drawn for conditional models
                                   # ("uniform" | "heldout"; default "uniform"; genbench/models/conditions.py)

    [models.gan]                   # every model runs on every dataset of a modality it supports ...
    [models.ddpm]
    datasets = ["ring8"]           # ... unless restricted here
    overrides = { steps = 200 }    # config fields replacing the budget's defaults
    dataset_overrides = { ring8 = { steps = 500 } }   # ... on one dataset only

    [sweeps.ddpm]                  # diffusion only: also score these sampler settings (variant "ddim-10", ...)
    sampler = "ddim"
    steps = [10, 25, 50]

    [sweeps.cfg-ddpm]              # guided diffusion: also score these guidance scales (variant "guidance-2", ...)
    guidance = [0, 1, 2, 4]        # (with or without sampler/steps)

`load_suite(name_or_path)` parses and validates everything before any work starts: unknown keys, wrong types,
unknown names (with "did you mean"), and impossible combinations raise `SuiteError` naming the file and key.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from genbench.defaults import (BUDGETS, DEFAULT_BUDGET, SPEED_BATCH_SIZE, SPEED_REPEATS, SPEED_WARMUP,  # noqa: F401
                               SUITE_N_BOOTSTRAP)
from genbench.errors import GenbenchError
from genbench.registry import unknown_name_message

SUITES_DIR = Path(__file__).with_name("suites")
DEFAULT_SUITE = "quick"
DEVICES = ("auto", "cpu", "cuda")
REFERENCE_SPLITS = ("train", "test")


def recorded_metrics() -> set:
    """Metrics the runner records for every job by itself (speed and cost, as declared); not listed in suites."""
    from genbench.metrics.registry import recorded_outputs

    return set(recorded_outputs())


def likelihood_metrics() -> set:
    """Metrics computed from a model's log_prob on the reference split, when it has one (as declared)."""
    from genbench.metrics.registry import likelihood_metrics as declared

    return declared()


class SuiteError(GenbenchError, ValueError):
    """A suite file is malformed; the message names the file and the key."""


@dataclass
class SpeedSpec:
    batch_size: int = SPEED_BATCH_SIZE
    repeats: int = SPEED_REPEATS
    warmup: int = SPEED_WARMUP


@dataclass
class DatasetSpec:
    name: str
    features: str
    n_samples: int
    reference: str = "test"
    metrics: list = field(default_factory=list)
    n_train_features: int = 0  # training samples featurised for memorisation metrics (0: n_samples)
    n_likelihood: int = 0  # reference items (text: characters) scored for likelihood (0: n_samples; text 20000)
    options: dict = field(default_factory=dict)  # metric settings: EvalContext fields (kid_subsets, k_pr, ...)
    conditions: Optional[str] = None  # conditional models' class conditions: "uniform" (None: the same) | "heldout"


@dataclass
class ModelSpec:
    name: str
    overrides: dict = field(default_factory=dict)
    datasets: Optional[list] = None  # None: every dataset of a supported modality
    factory: Optional[str] = None  # a user's model: "package.module:factory" (genbench/models/external.py)
    dataset_overrides: dict = field(default_factory=dict)  # dataset -> config fields for that dataset only

    def overrides_for(self, dataset: str) -> dict:
        """Config overrides of this model on `dataset` (the dataset's entries win)."""
        return {**self.overrides, **self.dataset_overrides.get(dataset, {})}


@dataclass
class SweepSpec:
    model: str
    sampler: str = ""  # "" with no steps: no sampler sweep
    steps: list = field(default_factory=list)
    guidance: list = field(default_factory=list)  # guidance scales (models with set_guidance)

    def variants(self) -> list[tuple[str, str, float]]:
        """(variant name, kind, value): ("ddim-10", "steps", 10), ..., ("guidance-2", "guidance", 2.0), ..."""
        out = [(f"{self.sampler}-{s}", "steps", s) for s in self.steps]
        return out + [(f"guidance-{g:g}", "guidance", float(g)) for g in self.guidance]


@dataclass
class Suite:
    name: str
    description: str
    budget: str
    device: str
    seeds: list
    datasets: list  # [DatasetSpec]
    models: list  # [ModelSpec]
    speed: SpeedSpec = field(default_factory=SpeedSpec)
    sweeps: dict = field(default_factory=dict)  # model name -> SweepSpec
    n_bootstrap: int = SUITE_N_BOOTSTRAP
    source: str = "<memory>"  # file path or "builtin:<name>"
    toml_text: str = ""
    threads: Optional[int] = None  # torch CPU threads for the run (None: torch's default; --threads overrides)
    workers: int = 1  # jobs run at once, each in its own worker process (1: in this process; --workers overrides)
    resources: dict = field(default_factory=dict)  # per-job Ray resources: num_cpus, num_gpus (see job_resources)
    # user models of [models.X] model = "pkg.mod:factory": name -> class, resolved while parsing but registered only
    # by install_user_models() (a run does that when it starts; parsing a suite changes no registry)
    user_models: dict = field(default_factory=dict, repr=False, compare=False)

    def install_user_models(self) -> None:
        """Register this suite's user models in the model registry (genbench.models), as a run needs them."""
        from genbench.models import install_external

        for name, cls in self.user_models.items():
            install_external(name, cls)

    def model_modalities(self, name: str) -> tuple:
        cls = self.user_models.get(name)
        return tuple(cls.modalities) if cls is not None else model_modalities(name)

    def job_resources(self, device: str) -> dict:
        """Per-job resources of a Ray task: `[resources]` or num_cpus = threads or 1, num_gpus = 1 on cuda else 0."""
        cpus = self.resources.get("num_cpus", self.threads or 1)
        gpus = self.resources.get("num_gpus", 1 if str(device).startswith("cuda") else 0)
        return {"num_cpus": float(cpus), "num_gpus": float(gpus)}

    def dataset(self, name: str) -> DatasetSpec:
        for d in self.datasets:
            if d.name == name:
                return d
        raise KeyError(name)

    def pairs(self) -> list[tuple[DatasetSpec, ModelSpec]]:
        """(dataset, model) pairs in suite order: each model on the datasets it applies to."""
        out = []
        for d in self.datasets:
            mod = dataset_modality(d.name)
            for m in self.models:
                if m.datasets is not None:
                    if d.name in m.datasets:
                        out.append((d, m))
                elif mod in self.model_modalities(m.name):
                    out.append((d, m))
        return out

    def to_dict(self) -> dict:
        return {
            "name": self.name, "description": self.description, "budget": self.budget, "device": self.device,
            "seeds": list(self.seeds), "n_bootstrap": self.n_bootstrap, "speed": vars(self.speed).copy(),
            "datasets": [vars(d).copy() for d in self.datasets],
            "models": [vars(m).copy() for m in self.models],
            "sweeps": {k: vars(v).copy() for k, v in self.sweeps.items()},
        }

    @property
    def hash(self) -> str:
        """Hash of the effective suite (after command-line overrides)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True, default=str).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------- registries
def _model_class(name: str):
    from genbench.models import get_model_class

    return get_model_class(name)


def model_modalities(name: str) -> tuple:
    return tuple(_model_class(name).modalities)


def dataset_modality(name: str) -> str:
    from genbench.data import get_dataset

    return get_dataset(name).info.modality


def _dataset_info(name: str):
    from genbench.data import get_dataset

    return get_dataset(name).info


def _conditional_metrics() -> tuple:
    """Metrics that score class-conditional samples (they need a labelled dataset)."""
    try:
        from genbench.metrics.conditional import CONDITIONAL_METRICS
    except ImportError:
        return ()
    return CONDITIONAL_METRICS


# Extractor -> modalities it accepts, for extractors whose class does not say (`modalities` attribute).
_EXTRACTOR_MODALITIES = {"identity": ("points",), "inception": ("image",), "random-conv": ("image",),
                         "minilm": ("text",), "char-ngram": ("text",)}


def extractor_names() -> list[str]:
    try:
        from genbench.features import list_extractors
    except ImportError:
        return []
    return list(list_extractors())


def extractor_modalities(name: str) -> tuple:
    """Modalities an extractor accepts: its registry entry's `modality` ("image", "points", "text", "any")."""
    try:
        from genbench.features import EXTRACTORS

        base = name.split(":", 1)[0]
        if base in EXTRACTORS:
            mod = getattr(EXTRACTORS.get(base), "modality", None) or "any"
            return ("points", "image", "text") if mod == "any" else (mod,)
    except ImportError:
        pass
    if name.startswith("classifier:"):
        return ("image",)
    return _EXTRACTOR_MODALITIES.get(name, ("points", "image", "text"))


def _extractor_known(name: str) -> bool:
    names = extractor_names()
    if name in names:
        return True
    if name.startswith("classifier:"):
        return any(n.startswith("classifier:") for n in names) or "classifier" in names
    return False


def metric_specs() -> dict:
    try:
        from genbench.metrics import METRICS
    except ImportError:
        return {}
    return {n: METRICS.get(n) for n in METRICS.names()} if hasattr(METRICS, "names") else dict(METRICS)


# ---------------------------------------------------------------------------------------------- loading
def list_suites() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.toml"))


def suite_path(name_or_path: str | Path) -> Path:
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists() or "/" in str(name_or_path):
        if not p.exists():
            raise SuiteError(f"suite file {p} does not exist")
        return p
    builtin = SUITES_DIR / f"{name_or_path}.toml"
    if not builtin.exists():
        raise SuiteError(unknown_name_message("suite", str(name_or_path), list_suites())
                         + " (or give a path to a suite .toml file)")
    return builtin


def load_suite(name_or_path: str | Path = DEFAULT_SUITE) -> Suite:
    path = suite_path(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise SuiteError(f"{path}: not UTF-8 text (byte {e.start}): save the suite file as UTF-8") from None
    except OSError as e:
        raise SuiteError(f"{path}: cannot be read ({e.strerror or e})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SuiteError(f"{path}: not valid TOML: {e}") from None
    suite = parse_suite(data, source=str(path))
    suite.toml_text = text
    return suite


_TOP_KEYS = {"name", "description", "budget", "device", "seeds", "n_bootstrap", "threads", "workers", "resources", "speed", "datasets", "models",
             "sweeps"}
_DATASET_KEYS = {"features", "n_samples", "reference", "metrics", "n_train_features", "n_likelihood", "options",
                 "conditions"}
# EvalContext fields a suite may set per dataset (the rest are filled by the runner).
METRIC_OPTIONS = {"kid_subsets": int, "kid_subset_size": int, "k_pr": int, "k_dc": int, "prdc_convention": str,
                  "vendi_kernel": str, "vendi_max_samples": int, "copy_fraction": float, "bootstrap_alpha": float,
                  "fd_inf_points": int, "fd_inf_min_fraction": float, "fd_inf_draws": int, "fd_inf_scale": str,
                  "is_splits": int, "mauve_buckets": int}
_MODEL_KEYS = {"overrides", "dataset_overrides", "datasets", "model"}
_SWEEP_KEYS = {"sampler", "steps", "guidance"}
_SPEED_KEYS = {"batch_size", "repeats", "warmup"}
_RESOURCE_KEYS = {"num_cpus", "num_gpus"}


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


def parse_suite(data: dict, source: str = "<memory>") -> Suite:
    """Validate a parsed TOML document and build the Suite (all names are checked against the registries)."""
    from genbench.data import list_datasets
    from genbench.models import list_models

    c = _Checker(source)
    c.keys(data, _TOP_KEYS, "")
    name = c.typed(data, "name", "", str, default=Path(source).stem)
    description = c.typed(data, "description", "", str, default="")
    budget = c.typed(data, "budget", "", str, default=DEFAULT_BUDGET,
                     check=lambda v: None if v in BUDGETS else unknown_name_message("budget", v, BUDGETS))
    device = c.typed(data, "device", "", str, default="auto",
                     check=lambda v: None if v in DEVICES else unknown_name_message("device", v, DEVICES))
    seeds = c.typed(data, "seeds", "", list, default=[0], what="a list of integers")
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise c.fail("seeds", f"expected a non-empty list of integers >= 0, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise c.fail("seeds", f"repeated seeds in {seeds!r}")
    n_boot = c.typed(data, "n_bootstrap", "", int, default=SUITE_N_BOOTSTRAP, check=_nonneg)
    threads = c.typed(data, "threads", "", int, default=None, check=_positive)
    workers = c.typed(data, "workers", "", int, default=1, check=_positive)
    rs = c.keys(data.get("resources", {}), _RESOURCE_KEYS, "resources")
    resources = {}
    for k in ("num_cpus", "num_gpus"):
        if k in rs:
            v = rs[k]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or (k == "num_cpus" and v == 0):
                raise c.fail(f"resources.{k}", f"expected a number {'> 0' if k == 'num_cpus' else '>= 0'} "
                             f"(fractions allowed, e.g. 0.25), got {v!r}")
            resources[k] = float(v)

    sp = c.keys(data.get("speed", {}), _SPEED_KEYS, "speed")
    speed = SpeedSpec(
        batch_size=c.typed(sp, "batch_size", "speed", int, default=SPEED_BATCH_SIZE, check=_positive),
        repeats=c.typed(sp, "repeats", "speed", int, default=SPEED_REPEATS, check=_positive),
        warmup=c.typed(sp, "warmup", "speed", int, default=SPEED_WARMUP, check=_nonneg),
    )

    # datasets
    dtab = data.get("datasets")
    if dtab is None:
        raise c.fail("datasets", "is required: add at least one [datasets.<name>] table")
    if not isinstance(dtab, dict) or not dtab:
        raise c.fail("datasets", "expected one or more [datasets.<name>] tables")
    known_ds = list_datasets()
    specs = metric_specs()
    datasets = []
    for dname, dt in dtab.items():
        where = f"datasets.{dname}"
        if dname not in known_ds:
            raise c.fail(where, unknown_name_message("dataset", dname, known_ds))
        c.keys(dt, _DATASET_KEYS, where)
        modality = dataset_modality(dname)
        feats = c.typed(dt, "features", where, str)
        if modality == "translation":  # scored per direction on the target domain's classifier
            from genbench.data.translation import TARGET_FEATURES

            if feats != TARGET_FEATURES:
                raise c.fail(f"{where}.features", f"{dname!r} is translation data, scored on each target domain's "
                             f"pinned classifier: use features = {TARGET_FEATURES!r}")
        elif extractor_names() and not _extractor_known(feats):
            raise c.fail(f"{where}.features", unknown_name_message("feature extractor", feats, extractor_names()))
        if modality != "translation" and modality not in extractor_modalities(feats):
            raise c.fail(f"{where}.features", f"extractor {feats!r} works on {', '.join(extractor_modalities(feats))} "
                         f"data, but {dname!r} is {modality} data")
        n = c.typed(dt, "n_samples", where, int, check=_count_between(MIN_SAMPLES, MAX_SAMPLES, "samples"))
        ref = c.typed(dt, "reference", where, str, default="test",
                      check=lambda v: None if v in REFERENCE_SPLITS else unknown_name_message("split", v, REFERENCE_SPLITS))
        metrics = c.str_list(dt, "metrics", where)
        if not metrics:
            raise c.fail(f"{where}.metrics", "list at least one metric")
        if len(set(metrics)) != len(metrics):
            raise c.fail(f"{where}.metrics", f"repeated metric names in {metrics}")
        recorded = recorded_metrics()
        for m in metrics:
            if m in recorded:
                raise c.fail(f"{where}.metrics", f"{m!r} is a speed metric the runner records for every job; "
                             "remove it from the list (tune it under [speed])")
            if specs and m not in specs:
                raise c.fail(f"{where}.metrics", _unknown_metric(m, specs))
            problem = _metric_dataset_problem(specs.get(m), m, dname, modality, feats)
            if problem:
                raise c.fail(f"{where}.metrics", problem)
        ntf = c.typed(dt, "n_train_features", where, int, default=0,
                      check=_count_between(MIN_SAMPLES, MAX_SAMPLES, "training items", zero_ok=True))
        nlk = c.typed(dt, "n_likelihood", where, int, default=0,
                      check=_count_between(MIN_SAMPLES, MAX_LIKELIHOOD, "items (text: characters)", zero_ok=True))
        opts = c.typed(dt, "options", where, dict, default={})
        for k, v in opts.items():
            if k not in METRIC_OPTIONS:
                raise c.fail(f"{where}.options.{k}", unknown_name_message("metric option", k, METRIC_OPTIONS))
            want = METRIC_OPTIONS[k]
            if isinstance(v, bool) or not isinstance(v, (int, float) if want is float else want):
                raise c.fail(f"{where}.options.{k}", f"expected {_tname(want)}, got {v!r}")
        from genbench.models.conditions import CONDITION_DISTRIBUTIONS

        conditions = c.typed(dt, "conditions", where, str, default=None, check=lambda v: None if v in
                             CONDITION_DISTRIBUTIONS else unknown_name_message("condition distribution", v,
                                                                               CONDITION_DISTRIBUTIONS))
        labelled = bool(getattr(_dataset_info(dname), "num_classes", None))
        if conditions is not None and not labelled:
            raise c.fail(f"{where}.conditions", f"dataset {dname!r} has no class labels: conditions apply to "
                         "labelled datasets only")
        for m in metrics:
            if m in _conditional_metrics() and not labelled:
                raise c.fail(f"{where}.metrics", f"{m!r} scores class-conditional samples; dataset {dname!r} has no "
                             "class labels")
        datasets.append(DatasetSpec(dname, feats, n, ref, metrics, ntf, nlk, dict(opts), conditions))

    # models
    mtab = data.get("models")
    if mtab is None:
        raise c.fail("models", "is required: add at least one [models.<name>] table")
    if not isinstance(mtab, dict) or not mtab:
        raise c.fail("models", "expected one or more [models.<name>] tables")
    known_models = list_models()
    user_classes: dict = {}  # user models of this suite: name -> class (genbench.models.external_model_class)
    models = []
    ds_names = [d.name for d in datasets]
    for mname, mt in mtab.items():
        where = f"models.{mname}"
        c.keys(mt, _MODEL_KEYS, where)
        factory = None
        if "model" in mt:  # a user's model: "package.module:factory" (genbench/models/external.py)
            factory = c.typed(mt, "model", where, str, what="a 'package.module:factory' string")
            from genbench.models import external_model_class

            try:  # resolved and checked, not registered: Suite.install_user_models() does that when a run starts
                user_classes[mname] = external_model_class(
                    mname, factory, source=f"{source} [{where}]",
                    search_paths=(str(Path(source).parent),) if Path(source).exists() else ())
            except GenbenchError as e:
                raise c.fail(f"{where}.model", str(e)) from None
        if mname not in known_models and mname not in user_classes:
            raise c.fail(where, unknown_name_message("model", mname, known_models))
        cls = user_classes.get(mname) or _model_class(mname)
        overrides = c.typed(mt, "overrides", where, dict, default={})
        fields = set(cls.Config().to_dict()) if _config_defaultable(cls) else None
        if fields is not None:
            for k in overrides:
                if k not in fields:
                    raise c.fail(f"{where}.overrides.{k}", unknown_name_message(f"{mname} config field", k, fields))
                _check_override(c, f"{where}.overrides.{k}", cls, k, overrides[k])
        d_over = c.typed(mt, "dataset_overrides", where, dict, default={})
        for dn, ov in d_over.items():
            if dn not in ds_names:
                raise c.fail(f"{where}.dataset_overrides.{dn}", f"dataset {dn!r} is not in this suite's [datasets] "
                             f"({', '.join(ds_names)})")
            if not isinstance(ov, dict):
                raise c.fail(f"{where}.dataset_overrides.{dn}", f"expected a table of config fields, got {ov!r}")
            if fields is not None:
                for k in ov:
                    if k not in fields:
                        raise c.fail(f"{where}.dataset_overrides.{dn}.{k}",
                                     unknown_name_message(f"{mname} config field", k, fields))
                    _check_override(c, f"{where}.dataset_overrides.{dn}.{k}", cls, k, ov[k])
        only = c.str_list(mt, "datasets", where, default=None)
        if only is not None:
            for dn in only:
                if dn not in ds_names:
                    raise c.fail(f"{where}.datasets", f"dataset {dn!r} is not in this suite's [datasets] "
                                 f"({', '.join(ds_names)})")
                mod = dataset_modality(dn)
                if mod not in cls.modalities:
                    raise c.fail(f"{where}.datasets", f"model {mname!r} supports {', '.join(cls.modalities)} data; "
                                 f"dataset {dn!r} is {mod} data")
        elif not any(dataset_modality(dn) in cls.modalities for dn in ds_names):
            raise c.fail(where, f"model {mname!r} supports {', '.join(cls.modalities)} data but no dataset of this "
                         f"suite is ({', '.join(f'{d}: {dataset_modality(d)}' for d in ds_names)})")
        models.append(ModelSpec(mname, dict(overrides), only, factory, {k: dict(v) for k, v in d_over.items()}))

    # sweeps
    sweeps = {}
    for mname, st in c.keys(data.get("sweeps", {}), set(known_models) | set(mtab), "sweeps").items():
        where = f"sweeps.{mname}"
        c.keys(st, _SWEEP_KEYS, where)
        if mname not in mtab:
            raise c.fail(where, f"model {mname!r} is not in this suite's [models]")
        cls = user_classes.get(mname) or _model_class(mname)
        guidance = c.typed(st, "guidance", where, list, default=[], what="a list of numbers")
        if "guidance" in st:
            if not hasattr(cls, "set_guidance"):
                raise c.fail(f"{where}.guidance", f"model {mname!r} has no guidance scale (only guided diffusion "
                             "models, with set_guidance(scale), can sweep guidance)")
            if not guidance or not all(isinstance(g, (int, float)) and not isinstance(g, bool) and math.isfinite(g)
                                       and g >= 0 for g in guidance):
                raise c.fail(f"{where}.guidance", f"expected a non-empty list of numbers >= 0, got {guidance!r}")
            if len(set(float(g) for g in guidance)) != len(guidance):
                raise c.fail(f"{where}.guidance", f"repeated scales in {guidance!r}")
        if "guidance" in st and "sampler" not in st and "steps" not in st:
            sweeps[mname] = SweepSpec(mname, "", [], [float(g) for g in guidance])
            continue
        if not hasattr(cls, "set_sampler"):
            raise c.fail(where, f"model {mname!r} has no adjustable sampler (only diffusion models, with "
                         "set_sampler(sampler, steps), can be swept)")
        sampler = c.typed(st, "sampler", where, str)
        steps = c.typed(st, "steps", where, list, what="a list of integers")
        if not steps or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in steps):
            raise c.fail(f"{where}.steps", f"expected a non-empty list of integers > 0, got {steps!r}")
        if len(set(steps)) != len(steps):
            raise c.fail(f"{where}.steps", f"repeated steps in {steps!r}")
        import sys as _sys

        samplers = getattr(cls, "SAMPLERS", None) or getattr(_sys.modules.get(cls.__module__), "SAMPLERS", None)
        if samplers and sampler not in samplers:
            raise c.fail(f"{where}.sampler", unknown_name_message("sampler", sampler, samplers))
        for dn in ds_names:
            if mtab[mname].get("datasets") is not None and dn not in mtab[mname]["datasets"]:
                continue
            from genbench.data import get_dataset

            info = get_dataset(dn).info
            if info.modality not in cls.modalities:
                continue
            try:
                cfg = cls.Config.for_budget(budget, info)
                T = int(getattr(cfg, "timesteps", 0) or 0)
            except Exception:
                T = 0
            T = int((mtab[mname].get("overrides") or {}).get("timesteps", T))
            if T and max(steps) > T:
                raise c.fail(f"{where}.steps", f"{max(steps)} steps exceed the {T} diffusion timesteps of {mname!r} "
                             f"on {dn!r} at budget {budget!r}")
        sweeps[mname] = SweepSpec(mname, sampler, list(steps), [float(g) for g in guidance])

    suite = Suite(name, description, budget, device, list(seeds), datasets, models, speed, sweeps, n_boot, source,
                  threads=threads, workers=workers, resources=resources, user_models=user_classes)
    for d in datasets:
        if not any(pd.name == d.name for pd, _ in suite.pairs()):
            raise c.fail(f"datasets.{d.name}", f"no model of this suite applies to {d.name!r} "
                         f"({dataset_modality(d.name)} data)")
    return suite


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


# ---------------------------------------------------------------------------------------------- overrides
def apply_overrides(suite: Suite, models: Optional[list] = None, datasets: Optional[list] = None,
                    seeds: Optional[list] = None, budget: Optional[str] = None, device: Optional[str] = None) -> Suite:
    """The suite restricted/overridden by command-line options (names validated)."""
    s = copy.deepcopy(suite)
    where = f"{suite.source} (command line)"
    if datasets:
        have = [d.name for d in s.datasets]
        for d in datasets:
            if d not in have:
                raise SuiteError(f"{where}: --datasets: " + unknown_name_message("dataset of this suite", d, have))
        s.datasets = [d for d in s.datasets if d.name in datasets]
    if models:
        have = [m.name for m in s.models]
        for m in models:
            if m not in have:
                raise SuiteError(f"{where}: --models: " + unknown_name_message("model of this suite", m, have))
        s.models = [m for m in s.models if m.name in models]
        s.sweeps = {k: v for k, v in s.sweeps.items() if k in models}
    if seeds is not None:
        if not seeds or any(x < 0 for x in seeds) or len(set(seeds)) != len(seeds):
            raise SuiteError(f"{where}: --seeds: expected distinct integers >= 0, got {seeds}")
        s.seeds = list(seeds)
    if budget is not None:
        if budget not in BUDGETS:
            raise SuiteError(f"{where}: --budget: " + unknown_name_message("budget", budget, BUDGETS))
        s.budget = budget
    if device is not None:
        if device not in DEVICES:
            raise SuiteError(f"{where}: --device: " + unknown_name_message("device", device, DEVICES))
        s.device = device
    if not s.pairs():
        raise SuiteError(f"{where}: the chosen --models and --datasets leave no (dataset, model) pair to run")
    s.datasets = [d for d in s.datasets if any(pd.name == d.name for pd, _ in s.pairs())]
    return s


__all__ = ["Suite", "DatasetSpec", "ModelSpec", "SweepSpec", "SpeedSpec", "SuiteError", "load_suite", "parse_suite",
           "list_suites", "apply_overrides", "DEFAULT_SUITE", "recorded_metrics", "likelihood_metrics"]
