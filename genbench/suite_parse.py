"""Building a `Suite` from a suite file's TOML data (`parse_suite`): every key, type, name and combination is
checked before any work starts, and an error names the file and the key (genbench/suite_checks.py).
"""

from __future__ import annotations

import math
from pathlib import Path

from genbench.defaults import (BUDGETS, DEFAULT_BUDGET, SPEED_BATCH_SIZE, SPEED_REPEATS, SPEED_WARMUP,  # noqa: F401
                               SUITE_N_BOOTSTRAP)
from genbench.errors import GenbenchError
from genbench.registry import unknown_name_message
from genbench.suite_checks import (MAX_LIKELIHOOD, MAX_SAMPLES, MIN_SAMPLES, _check_override, _Checker,
                                   _config_defaultable, _count_between, _metric_dataset_problem, _nonneg, _positive,
                                   _tname, _unknown_metric)
from genbench.suite_spec import (DEVICES, REFERENCE_SPLITS, DatasetSpec, ModelSpec, SpeedSpec, Suite, SweepSpec,
                                 _conditional_metrics, _dataset_info, _prefix_metrics, _extractor_known, _model_class, dataset_modality,
                                 extractor_modalities, extractor_names, metric_specs, recorded_metrics)

_TOP_KEYS = {"name", "description", "budget", "device", "seeds", "n_bootstrap", "threads", "workers", "resources", "speed", "datasets", "models",
             "sweeps"}
_DATASET_KEYS = {"features", "n_samples", "reference", "metrics", "n_train_features", "n_likelihood", "options",
                 "conditions", "prefix_length"}
# EvalContext fields a suite may set per dataset (the rest are filled by the runner).
METRIC_OPTIONS = {"kid_subsets": int, "kid_subset_size": int, "k_pr": int, "k_dc": int, "prdc_convention": str,
                  "vendi_kernel": str, "vendi_max_samples": int, "copy_fraction": float, "bootstrap_alpha": float,
                  "fd_inf_points": int, "fd_inf_min_fraction": float, "fd_inf_draws": int, "fd_inf_scale": str,
                  "is_splits": int, "mauve_buckets": int}
_MODEL_KEYS = {"overrides", "dataset_overrides", "datasets", "model"}
_SWEEP_KEYS = {"sampler", "steps", "guidance"}
_SPEED_KEYS = {"batch_size", "repeats", "warmup"}
_RESOURCE_KEYS = {"num_cpus", "num_gpus"}


def _named_tables(c, data: dict, key: str) -> dict:
    """The suite's required `[key.<name>]` tables (datasets, models), or the error saying what to add."""
    tab = data.get(key)
    if tab is None:
        raise c.fail(key, f"is required: add at least one [{key}.<name>] table")
    if not isinstance(tab, dict) or not tab:
        raise c.fail(key, f"expected one or more [{key}.<name>] tables")
    return tab


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
    dtab = _named_tables(c, data, "datasets")
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
        plen = c.typed(dt, "prefix_length", where, int, default=0, check=_count_between(1, 256, "characters"))
        if plen and modality != "text":
            raise c.fail(f"{where}.prefix_length", f"dataset {dname!r} is {modality} data: prefixes apply to text "
                         "datasets only (labelled image datasets: conditions)")
        for m in metrics:
            if m in _prefix_metrics() and not plen:
                raise c.fail(f"{where}.metrics", f"{m!r} scores prefix-conditioned text: add prefix_length = <characters> "
                             f"to [datasets.{dname}] (or remove {m!r})")
        datasets.append(DatasetSpec(dname, feats, n, ref, metrics, ntf, nlk, dict(opts), conditions, plen))

    # models
    mtab = _named_tables(c, data, "models")
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
