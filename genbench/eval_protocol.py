"""The protocol a sample set is scored with by `genbench eval` (and `genbench stats build`): the dataset table
(feature extractor, sample count, reference split, metrics) of the run being added to, else of the first built-in
suite that has the dataset, else genbench's defaults for its modality; then the user's --extractor / --metrics
overrides, each recorded as a change. `stored_suite_data` reads the suite a results store holds (TOML, or the JSON
of older stores) back as a TOML-shaped dict; `genbench check` uses it too."""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from genbench.defaults import EVAL_N_BOOTSTRAP, EVAL_N_SAMPLES
from genbench.errors import InvalidInputError

PROTOCOL_SUITES = ("quick", "standard", "smoke")  # built-in suites searched for a dataset's protocol, in order
CONDITIONAL_SUITES = ("conditional",)  # searched first for conditional samples (an .npz with labels 'y')
# Protocol for a dataset no suite covers (user datasets): extractor and metrics per modality.
DEFAULT_PROTOCOL = {
    "points": ("identity", ["fd", "prdc"]),
    "image": ("inception", ["fd", "kid", "prdc"]),
}
DEFAULT_N_SAMPLES = EVAL_N_SAMPLES
DEFAULT_N_BOOTSTRAP = EVAL_N_BOOTSTRAP


@dataclass
class EvalProtocol:
    spec: Any  # genbench.suite.DatasetSpec
    n_bootstrap: int
    source: str  # where the protocol came from
    changes: list = field(default_factory=list)  # how this evaluation departs from that source


def stored_suite_data(text: str, where: str) -> dict:
    """A suite stored in a results store (TOML text, or the JSON of Suite.to_dict()) as a TOML-shaped dict."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        pass
    try:
        d = json.loads(text)
    except json.JSONDecodeError:
        raise InvalidInputError(f"{where}: the stored suite is neither TOML nor JSON") from None
    if not isinstance(d, dict) or not isinstance(d.get("datasets"), list):
        raise InvalidInputError(f"{where}: the stored suite has an unknown layout")
    out = {k: d[k] for k in ("name", "description", "budget", "device", "seeds", "n_bootstrap", "speed") if k in d}
    out["datasets"] = {x["name"]: {k: v for k, v in x.items() if k != "name"} for x in d["datasets"]}
    models = {}
    for m in d.get("models", []):
        t: dict = {}
        if m.get("overrides"):
            t["overrides"] = m["overrides"]
        if m.get("datasets") is not None:
            t["datasets"] = m["datasets"]
        if m.get("factory"):
            t["model"] = m["factory"]
        models[m["name"]] = t
    out["models"] = models
    if d.get("sweeps"):
        out["sweeps"] = {k: {key: v[key] for key in ("sampler", "steps", "guidance") if v.get(key)}
                         for k, v in d["sweeps"].items()}
    return out


def _latest_suite_text(runs: pd.DataFrame) -> tuple[str, str]:
    """(suite_toml, suite_name) of the latest run that stored one."""
    if runs is None or runs.empty or "suite_toml" not in runs.columns:
        return "", ""
    runs = runs[runs["suite_toml"].fillna("").astype(str).str.strip() != ""]
    if runs.empty:
        return "", ""
    if "started_at" in runs.columns:
        runs = runs.sort_values("started_at", kind="stable")
    last = runs.iloc[-1]
    return str(last["suite_toml"]), str(last.get("suite_name") or "")


def _dataset_spec(name: str, table: dict):
    from genbench.suite import DatasetSpec

    allowed = {f.name for f in dataclasses.fields(DatasetSpec)}
    kw = {k: v for k, v in table.items() if k in allowed and k != "name"}
    kw.setdefault("reference", "test")
    return DatasetSpec(name=name, **kw)


def _scores_unconditional_models(data: dict, dataset: str, modality: str) -> bool:
    """Whether a suite (TOML-shaped dict) runs a built-in unconditional model on `dataset`: its table then scores
    unconditional samples too, the conditional metrics skipped for them (a mixed table such as `standard`'s
    Fashion-MNIST). Users' models (`model = "pkg.mod:factory"`) are not imported here and do not count."""
    from genbench.models import get_model_class

    for name, table in (data.get("models") or {}).items():
        table = table if isinstance(table, dict) else {}
        only = table.get("datasets")
        if (only is not None and dataset not in only) or "model" in table:
            continue
        try:
            cls = get_model_class(name)
        except Exception:  # a model this installation does not have
            continue
        if (only is not None or modality in cls.modalities) and not getattr(cls, "conditional", False):
            return True
    return False


def _drop_conditional_metrics(proto: "EvalProtocol", data: dict, dataset: str, modality: str) -> None:
    """Unlabelled samples under a table that also scores unconditional models: score them as the run scores those
    models, without the conditional metrics (recorded as a change). A table of conditional models only keeps them,
    and `genbench eval` then refuses samples without labels."""
    from genbench.metrics.conditional import CONDITIONAL_METRICS

    cond = [m for m in proto.spec.metrics if m in CONDITIONAL_METRICS]
    rest = [m for m in proto.spec.metrics if m not in CONDITIONAL_METRICS]
    if cond and rest and _scores_unconditional_models(data, dataset, modality):
        proto.spec.metrics = rest
        proto.changes.append(f"left out {', '.join(cond)} (the samples carry no labels 'y'; the run skips them for "
                             "its unconditional models too)")


def protocol_for(dataset: str, modality: str, run_dir: Optional[Path] = None, extractor: Optional[str] = None,
                 metrics: Optional[list] = None, conditional: bool = False) -> EvalProtocol:
    """The dataset's leaderboard protocol (see module docstring), then --extractor / --metrics overrides.
    `conditional` (samples with labels): the conditional suite's protocol is looked up first."""
    from genbench.suite import SUITES_DIR, recorded_metrics

    proto = None
    if run_dir is not None:
        from genbench.results.store import ResultsStore

        with ResultsStore(run_dir) as store:
            text, sname = _latest_suite_text(store.runs_frame())
        if not text:
            raise InvalidInputError(f"{run_dir}: its results store holds no suite; record into a directory written "
                                    "by `genbench run`")
        data = stored_suite_data(text, str(run_dir))
        tables = data.get("datasets", {})
        if dataset not in tables:
            raise InvalidInputError(f"the run in {run_dir} (suite {sname!r}) has no dataset {dataset!r} (it has: "
                                    f"{', '.join(tables) or 'none'}); score against one of those, or leave out --out")
        proto = EvalProtocol(_dataset_spec(dataset, tables[dataset]), int(data.get("n_bootstrap", DEFAULT_N_BOOTSTRAP)),
                             f"the run in {run_dir} (suite {sname!r})")
        if not conditional:
            _drop_conditional_metrics(proto, data, dataset, modality)
    else:
        for sname in (CONDITIONAL_SUITES if conditional else ()) + PROTOCOL_SUITES:
            path = SUITES_DIR / f"{sname}.toml"
            if not path.exists():
                continue
            data = tomllib.loads(path.read_text(encoding="utf-8"))
            if dataset in data.get("datasets", {}):
                proto = EvalProtocol(_dataset_spec(dataset, data["datasets"][dataset]),
                                     int(data.get("n_bootstrap", DEFAULT_N_BOOTSTRAP)), f"built-in suite {sname!r}")
                if not conditional:
                    _drop_conditional_metrics(proto, data, dataset, modality)
                break
    if proto is None:
        if modality not in DEFAULT_PROTOCOL:
            if not (extractor and metrics):
                raise InvalidInputError(f"no built-in suite scores dataset {dataset!r} ({modality} data): give "
                                        "--extractor and --metrics (genbench list extractors / metrics)")
            feats, mets = extractor, list(metrics)
        else:
            feats, mets = DEFAULT_PROTOCOL[modality]
        proto = EvalProtocol(_dataset_spec(dataset, {"features": feats, "n_samples": DEFAULT_N_SAMPLES,
                                                     "metrics": list(mets)}),
                             DEFAULT_N_BOOTSTRAP, f"genbench's defaults for {modality} data")
    spec = proto.spec
    if extractor and extractor != spec.features:
        proto.changes.append(f"features {spec.features!r} -> {extractor!r}")
        spec.features = extractor
    if metrics:
        from genbench.metrics import METRICS

        for m in metrics:
            if m in recorded_metrics():
                raise InvalidInputError(f"--metrics: {m!r} measures a model's speed; samples have none")
            METRICS.get(m)  # did-you-mean error for unknown names
        if list(metrics) != list(spec.metrics):
            proto.changes.append(f"metrics {', '.join(spec.metrics)} -> {', '.join(metrics)}")
            spec.metrics = list(metrics)
    return proto
