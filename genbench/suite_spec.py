"""What a parsed suite is: `Suite` and its dataset, model, sweep and speed specs (genbench/suite.py loads
them, genbench/suite_parse.py builds and validates them), and the registries a suite is checked against
(models, datasets, extractors, metrics and the modalities they apply to).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from genbench.defaults import SPEED_BATCH_SIZE, SPEED_REPEATS, SPEED_WARMUP, SUITE_N_BOOTSTRAP
from genbench.errors import GenbenchError

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
    prefix_length: int = 0  # text: > 0 asks every text model to continue held-out prefixes of this many characters


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


def _prefix_metrics() -> tuple:
    """Metrics that score prefix-conditioned text samples (they need a text dataset with prefix_length)."""
    try:
        from genbench.metrics.text_prefix import PREFIX_METRICS
    except ImportError:
        return ()
    return PREFIX_METRICS


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
