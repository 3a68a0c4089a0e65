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
    prefix_length = 3              # text datasets: text models continue held-out prefixes of this many characters

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
The specs a suite parses into are in genbench/suite_spec.py, the parsing in suite_parse.py, its checks in
suite_checks.py; this module loads suite files and applies command-line overrides.
"""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Optional

from genbench.defaults import BUDGETS
from genbench.registry import unknown_name_message
from genbench.suite_parse import parse_suite
from genbench.suite_spec import (DEFAULT_SUITE, DEVICES, SUITES_DIR, DatasetSpec, ModelSpec, SpeedSpec, Suite, SuiteError,
                                 SweepSpec, likelihood_metrics, recorded_metrics)


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
