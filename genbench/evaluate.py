"""Scoring what the user brings (`genbench eval`), and the protocol a run directory or a built-in suite gives it.

`evaluate_samples` (`genbench eval`): score a folder of images, an .npz/.npy array or a text file of samples
against a built-in (or user) dataset with the leaderboard's protocol: the dataset table (feature extractor,
sample count, reference split, metrics) of the run being added to (`--out DIR`), else of the first built-in
suite that has the dataset (quick, standard, smoke; for conditional samples -- an .npz whose 'y' holds the
class each sample was generated for -- the `conditional` suite first, and its conditional metrics are added to
another protocol's list; a conditional protocol refuses samples without labels). The samples go through the runner's own scoring
(`genbench.pipeline.scoring.score_samples`: same checks, fixed real subset, features, EvalContext, compute_metrics), so
the numbers are comparable with the leaderboard's. With `out`, the result is recorded in that run's store as
model "user:<name>" (family "user") and results.csv/json are rewritten.

`genbench check` (rerunning a baseline's suite and comparing): genbench/check.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import sys
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from genbench.defaults import EVAL_N_BOOTSTRAP, EVAL_N_SAMPLES
from genbench.errors import InvalidInputError

USER_FAMILY = "user"
USER_PREFIX = "user:"
PROTOCOL_SUITES = ("quick", "standard", "smoke")  # built-in suites searched for a dataset's protocol, in order
CONDITIONAL_SUITES = ("conditional",)  # searched first for conditional samples (an .npz with labels 'y')
# Protocol for a dataset no suite covers (user datasets): extractor and metrics per modality.
DEFAULT_PROTOCOL = {
    "points": ("identity", ["fd", "prdc"]),
    "image": ("inception", ["fd", "kid", "prdc"]),
}
DEFAULT_N_SAMPLES = EVAL_N_SAMPLES
DEFAULT_N_BOOTSTRAP = EVAL_N_BOOTSTRAP
CHECK_MARKER = ".genbench-check"


# ---------------------------------------------------------------------------------------------- protocol
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


def protocol_for(dataset: str, modality: str, run_dir: Optional[Path] = None, extractor: Optional[str] = None,
                 metrics: Optional[list] = None, conditional: bool = False) -> EvalProtocol:
    """The dataset's leaderboard protocol (see module docstring), then --extractor / --metrics overrides.
    `conditional` (samples with labels): the conditional suite's protocol is looked up first."""
    from genbench.suite import SUITES_DIR, recorded_metrics

    proto = None
    if run_dir is not None:
        from genbench.store import ResultsStore

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
    else:
        for sname in (CONDITIONAL_SUITES if conditional else ()) + PROTOCOL_SUITES:
            path = SUITES_DIR / f"{sname}.toml"
            if not path.exists():
                continue
            data = tomllib.loads(path.read_text(encoding="utf-8"))
            if dataset in data.get("datasets", {}):
                proto = EvalProtocol(_dataset_spec(dataset, data["datasets"][dataset]),
                                     int(data.get("n_bootstrap", DEFAULT_N_BOOTSTRAP)), f"built-in suite {sname!r}")
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


# ---------------------------------------------------------------------------------------------- eval
class _Replay:
    """A 'model' that hands out the user's samples in order, so the runner scores them like a model's (their
    labels, for conditional samples, go to the scoring beside them)."""

    log_prob_kind = "none"
    family = USER_FAMILY

    def __init__(self, items):
        self.items = items
        self.pos = 0

    def sample(self, n: int, seed: int = 0, batch_size: Optional[int] = None):
        out = self.items[self.pos:self.pos + n]
        self.pos += n
        return out


class _UserDatasetWorker:
    """Mixin over the runner's Worker: dataset `name` is the user's reference data (every split is all of it)."""

    def __init__(self, name: str, split):
        super().__init__()
        self._user_name = name
        self._user_split = split

    def dataset(self, name):
        if name == self._user_name:
            sp = self._user_split

            class _DS:
                info = sp.info
                mixture = None

                @staticmethod
                def load(split="train"):
                    return sp

            return _DS
        return super().dataset(name)

    def split(self, name, split):
        if name == self._user_name:
            return self._user_split
        return super().split(name, split)


@dataclass
class EvalResult:
    dataset: str
    model: str  # "user:<name>"
    samples_path: str
    n_samples: int
    protocol: EvalProtocol
    rows: list  # metric rows (dicts: name, value, ci_low, ci_high, unit, higher_is_better, protocol, ...)
    skipped: dict
    job_id: str
    recorded_in: Optional[Path] = None


def _sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(f for f in path.rglob("*") if f.is_file())
    for f in files:
        h.update(f.relative_to(path).as_posix().encode() if path.is_dir() else b"")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def evaluate_samples(samples: str | Path, dataset: str, *, out: Optional[str | Path] = None,
                     name: Optional[str] = None, extractor: Optional[str] = None, metrics: Optional[list] = None,
                     seed: int = 0, device: str = "cpu", quiet: bool = True, class_folders: bool = False,
                     sharding=None) -> EvalResult:
    """Score the samples at `samples` against `dataset` (a built-in name, or a path to user data used as the
    reference); with `out` (a `genbench run` directory) record them there as model "user:<name>", holding the
    directory's run lock throughout (a run or another eval on it makes this fail at once, naming it).
    `class_folders`: `samples` is a folder with one subfolder per class label (DIR/<class>/*.png,
    genbench/data/user.py); each image is scored as generated for its folder's class. `sharding`: a
    FeatureSharding (genbench/pipeline/shards.py) that splits the feature passes over an executor's workers."""
    from genbench.rundir import run_dir_lock

    kw = dict(out=out, name=name, extractor=extractor, metrics=metrics, seed=seed, device=device, quiet=quiet,
              class_folders=class_folders, sharding=sharding)
    if out is None:
        return _evaluate_samples(samples, dataset, **kw)
    _require_run_dir(Path(out))
    with run_dir_lock(out):
        return _evaluate_samples(samples, dataset, **kw)


def _require_run_dir(run_dir: Path) -> None:
    if not (run_dir / "results.db").exists():
        raise InvalidInputError(f"--out {run_dir}: no results.db there; --out adds the samples to an existing "
                                f"`genbench run` directory (run `genbench run SUITE --out {run_dir}` first)")


def _evaluate_samples(samples: str | Path, dataset: str, *, out: Optional[str | Path], name: Optional[str],
                      extractor: Optional[str], metrics: Optional[list], seed: int, device: str,
                      quiet: bool, class_folders: bool = False, sharding=None) -> EvalResult:
    from genbench.data import get_dataset, list_datasets, load_user_data
    from genbench.models.external_checks import validate_samples
    from genbench.pipeline.jobs import JobSpec, job_id_for
    from genbench.pipeline.scoring import score_samples
    from genbench.pipeline.worker import Worker
    from genbench.suite import ModelSpec, SpeedSpec

    spath = Path(samples)
    name = name or spath.stem or spath.name
    if not name or any(c in name for c in "/\\") or name.startswith(USER_PREFIX):
        raise InvalidInputError(f"--name {name!r}: give a plain name such as 'my-gan' (it is recorded as "
                                f"'{USER_PREFIX}<name>')")
    model_name = USER_PREFIX + name
    run_dir = Path(out) if out is not None else None

    # the reference dataset: built-in by name, else user data by path
    user_ref = None
    if dataset in list_datasets():
        ds = get_dataset(dataset)
        ok, why = ds.available()
        if not ok:
            raise InvalidInputError(f"dataset {dataset!r} is not available here: {why}")
        info = ds.info
        ds_name = dataset
    elif Path(dataset).exists():
        if run_dir is not None:
            raise InvalidInputError("--out records into a run's leaderboard, whose datasets are built-in ones; "
                                    f"{dataset!r} is a path to user data")
        user_ref = load_user_data(dataset)
        info = user_ref.info
        ds_name = info.name
    else:
        from genbench.registry import unknown_name_message

        raise InvalidInputError(unknown_name_message("dataset", dataset, list_datasets())
                                + " (or give the path of a folder / .npz / .npy / text file to score against)")

    # the samples, checked against the dataset
    if class_folders and not info.num_classes:
        raise InvalidInputError(f"--class-folders: dataset {ds_name!r} has no class labels to condition on; score "
                                "the samples without --class-folders, or against a labelled dataset")
    data = load_user_data(spath, modality=info.modality,
                          expect_shape=None if info.modality == "text" else tuple(info.shape), name=model_name,
                          class_folders=class_folders, num_classes=info.num_classes)
    items = data.lines if info.modality == "text" else data.x
    labels = getattr(data, "y", None)
    n_have = len(items)
    items = validate_samples(items, info, n_have, model_name, who=f"samples in {spath}")

    from genbench.metrics.conditional import CONDITIONAL_METRICS

    if labels is not None and not info.num_classes:
        raise InvalidInputError(f"{spath}: the samples carry labels 'y', but dataset {ds_name!r} has no classes to "
                                "condition on; drop 'y' or score against a labelled dataset")
    proto = protocol_for(ds_name, info.modality, run_dir, extractor, metrics, conditional=labels is not None)
    spec = proto.spec
    cond_metrics = [m for m in spec.metrics if m in CONDITIONAL_METRICS]
    if labels is None and cond_metrics:
        raise InvalidInputError(f"{spath}: labels missing: the protocol of {proto.source} scores conditional samples "
                                f"({', '.join(cond_metrics)}); give an .npz with the samples as 'x' and the class "
                                "each was generated for as 'y' (integers 0..K-1)")
    if labels is not None and not cond_metrics and not metrics:
        spec.metrics = list(spec.metrics) + list(CONDITIONAL_METRICS)
        proto.changes.append(f"added {', '.join(CONDITIONAL_METRICS)} (the samples carry labels 'y')")
    from genbench.suite import likelihood_metrics

    lik = likelihood_metrics()
    no_lik = [m for m in spec.metrics if m in lik]
    if no_lik:
        spec.metrics = [m for m in spec.metrics if m not in lik]
        proto.changes.append(f"not scored: {', '.join(no_lik)} (needs a model's likelihood; samples have none)")
    if not spec.metrics:
        raise InvalidInputError("no metric left to compute on samples: choose others with --metrics")
    if n_have > spec.n_samples:
        proto.changes.append(f"scored the first {spec.n_samples} of {n_have} samples")
        items = items[: spec.n_samples]
        labels = labels[: spec.n_samples] if labels is not None else None
    elif n_have < spec.n_samples:
        proto.changes.append(f"{n_have} samples instead of the protocol's {spec.n_samples} (n_fake and n_real "
                             "differ from the leaderboard's: not comparable with it)")
        spec.n_samples = n_have
    n = len(items)

    job_id = job_id_for(ds_name, model_name, seed)
    tmp = None
    if run_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="genbench-eval-")
        work = Path(tmp.name)
    else:
        work = run_dir
    try:
        job = JobSpec(job_id, spec, ModelSpec(model_name), int(seed), "none", device, SpeedSpec(batch_size=max(1, min(n, 1024))),
                      None, int(proto.n_bootstrap), str(work), quiet, feature_shards=sharding)
        worker = type("EvalWorker", (_UserDatasetWorker, Worker), {})(ds_name, user_ref) if user_ref is not None else Worker()
        artifacts: list = []
        art_rel = f"artifacts/{job_id.replace('/', '__').replace(':', '_')}"
        rows = score_samples(job, worker, _Replay(items), info, artifacts, art_rel, labels=labels)
        skipped = {}
        for kind, rel in artifacts:
            if kind == "skipped_metrics" and (work / rel).exists():
                skipped = json.loads((work / rel).read_text())
        result = EvalResult(ds_name, model_name, str(spath), n, proto, rows, skipped, job_id)
        if run_dir is not None:
            _record(run_dir, result, artifacts, spath, seed)
            result.recorded_in = run_dir
    finally:
        if tmp is not None:
            tmp.cleanup()
    return result


def _record(run_dir: Path, result: EvalResult, artifacts: list, spath: Path, seed: int) -> None:
    from genbench.store import ResultsStore

    with ResultsStore(run_dir) as store:
        runs = store.runs_frame()
        run_id = str(runs.sort_values("started_at").iloc[-1]["run_id"]) if not runs.empty else "eval"
        jobs = store.jobs_frame()
        budgets = jobs.loc[~jobs["model"].astype(str).str.startswith(USER_PREFIX), "budget"].dropna()
        budget = str(budgets.mode().iloc[0]) if len(budgets) else "none"
        config = {"eval": {"samples": str(spath.resolve()), "sha256": _sha256_of(spath), "n_samples": result.n_samples,
                           "protocol_source": result.protocol.source, "changes": result.protocol.changes,
                           "argv": list(sys.argv)}}
        store.add_job(result.job_id, run_id=run_id, dataset=result.dataset, model=result.model, family=USER_FAMILY,
                      seed=seed, budget=budget, config=config)
        store.start_job(result.job_id, run_id, config=config)
        store.record_job(result.job_id, result.rows, artifacts)
        # the job may have existed under another family/budget
        store.update_job(result.job_id, family=USER_FAMILY, budget=budget, dataset=result.dataset, model=result.model)
        store.export()


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return f"{v:.4g}"


def format_eval(result: EvalResult) -> str:
    from tabulate import tabulate

    table = []
    for r in result.rows:
        lo, hi = r.get("ci_low"), r.get("ci_high")
        ci = f"[{_fmt(lo)}, {_fmt(hi)}]" if lo is not None and hi is not None else "—"
        table.append([r["name"], _fmt(r["value"]), ci, r.get("unit") or "", "↑" if r["higher_is_better"] else "↓"])
    lines = [f"{result.model} on {result.dataset}: {result.n_samples} samples from {result.samples_path}", ""]
    lines.append(tabulate(table, headers=["metric", "value", "95% CI", "unit", "better"], tablefmt="github",
                          disable_numparse=True))
    spec = result.protocol.spec
    p0: dict = {}
    for r in result.rows:  # the protocol keys shared by the rows (some metrics omit features or counts)
        for k, v in (r.get("protocol") or {}).items():
            p0.setdefault(k, v)
    lines += ["", f"protocol: {result.protocol.source}: features {p0.get('features', spec.features)}, reference split "
              f"{spec.reference}, n_real {p0.get('n_real', '?')}, n_fake {p0.get('n_fake', result.n_samples)}, "
              f"seed {p0.get('seed', '?')}, bootstrap {result.protocol.n_bootstrap}"]
    for ch in result.protocol.changes:
        lines.append(f"  differs from it: {ch}")
    for k, why in result.skipped.items():
        lines.append(f"skipped {k}: {why}")
    if result.recorded_in is not None:
        lines.append(f"recorded as {result.model!r} (family {USER_FAMILY!r}) in {result.recorded_in}/results.db; "
                     "results.csv and results.json rewritten")
    return "\n".join(lines) + "\n"


__all__ = ["evaluate_samples", "format_eval", "protocol_for", "EvalResult", "EvalProtocol", "USER_FAMILY", "USER_PREFIX"]
