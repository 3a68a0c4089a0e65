"""Scoring what the user brings (`genbench eval`); the protocol a run directory or a built-in suite gives it is
looked up in genbench/eval_protocol.py.

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

import hashlib
import json
import math
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from genbench.errors import InvalidInputError
from genbench.eval_protocol import EvalProtocol, protocol_for

USER_FAMILY = "user"
USER_PREFIX = "user:"
CHECK_MARKER = ".genbench-check"


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
    from genbench.results.store import ResultsStore

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
