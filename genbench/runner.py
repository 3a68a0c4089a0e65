"""`genbench run`: the resumable benchmark runner.

Jobs are (dataset, model, seed) triples of a suite. Per job the worker
  1. trains the model, or loads its cached checkpoint (key = hash of model config, dataset identity, seed,
     budget and the model's code; loaded as plain data after a sha256 check, reference_models/checkpoint.py:
     a checkpoint that fails it is deleted with a warning and the model retrained),
  2. draws the suite's number of samples and checks them (shape, finite values),
  3. extracts features once (real-data features are computed once per dataset and reused by every job, and
     cached in sealed files under DIR/cache/features/: a corrupt one is deleted with a warning and recomputed),
  4. computes every metric the suite lists for the dataset (genbench.metrics.compute_metrics),
  5. measures speed and cost (genbench.speed), and for swept diffusion samplers repeats 2-5 per setting,
  6. writes per-job artifacts (samples preview, training history) under DIR/artifacts/.
The driver commits each finished job (metrics + artifacts + status) in one SQLite transaction and rewrites
DIR/results.csv and DIR/results.json, so a run killed at any moment resumes where it stopped: finished jobs are
skipped, jobs left 'running' or 'failed' are redone. A failing job (exception, diverged training, NaN/inf
samples, wrong shape) is recorded as failed with its error and the run goes on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import io
import json
import math
import os
import random
import shutil
import sys
import time
import traceback
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from genbench.errors import DiskFullError, GenbenchError, InvalidInputError, disk_full_message, is_disk_full
from genbench.executors import Executor, LocalExecutor
from genbench.fileio import CorruptFileError, atomic_write_bytes, atomic_write_text, read_sealed, write_sealed
from genbench.store import CSV_NAME, DB_NAME, JSON_NAME, ResultsStore
from genbench.suite import LIKELIHOOD_METRICS, DatasetSpec, ModelSpec, SpeedSpec, Suite, SweepSpec

PREVIEW_N = 64
REAL_SUBSET_SEED = 20240601  # the real reference subset is the same for every job and seed
STALE_TEMP_S = 60.0  # a .tmp file this old in a locked run directory is a killed writer's leftover


class JobFailure(GenbenchError):
    """A job could not produce valid results (diverged training, non-finite or malformed samples...)."""


# ---------------------------------------------------------------------------------------------- job specs
@dataclass
class JobSpec:
    """Everything a worker needs to run one job (picklable, so a cluster executor can ship it)."""

    job_id: str
    dataset: DatasetSpec
    model: ModelSpec
    seed: int
    budget: str
    device: str
    speed: SpeedSpec
    sweep: Optional[SweepSpec]
    n_bootstrap: int
    out_dir: str
    quiet: bool = False
    threads: Optional[int] = None  # torch CPU threads the job runs with (None: not known, e.g. genbench eval)

    @property
    def spec_hash(self) -> str:
        """Changes whenever anything that changes this job's numbers changes (then a resume redoes it). The
        thread count is included: it changes float summation order, hence quality numbers slightly (digits/gan FD
        43.850 with one thread count, 43.857 with another)."""
        blob = {"dataset": vars(self.dataset), "model": vars(self.model), "seed": self.seed, "budget": self.budget,
                "device": self.device, "speed": vars(self.speed), "sweep": vars(self.sweep) if self.sweep else None,
                "n_bootstrap": self.n_bootstrap, "threads": self.threads}
        return _hash(blob)


@dataclass
class JobResult:
    job_id: str
    family: str
    metrics: list  # metric rows (dicts with "variant")
    artifacts: list  # (kind, path relative to DIR)
    train_seconds: Optional[float]
    checkpoint_path: Optional[str]
    cache_key: str
    config: dict
    cached: bool = False
    seconds: float = 0.0


def job_id_for(dataset: str, model: str, seed: int) -> str:
    return f"{dataset}/{model}/seed{seed}"


def _slug(job_id: str) -> str:
    return job_id.replace("/", "__")


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def make_jobs(suite: Suite, out_dir: Path, device: str, quiet: bool = False,
              threads: Optional[int] = None) -> list[JobSpec]:
    """The suite's jobs; `threads` = the torch CPU threads each job runs with (part of its spec hash)."""
    jobs = []
    for d, m in suite.pairs():
        # the model spec as this job sees it: its overrides for this dataset only (so the job's hash, and a
        # resume, depend on nothing that belongs to other datasets)
        m = dataclasses.replace(m, overrides=m.overrides_for(d.name), dataset_overrides={})
        for seed in suite.seeds:
            jobs.append(JobSpec(job_id_for(d.name, m.name, seed), d, m, int(seed), suite.budget, device, suite.speed,
                                suite.sweeps.get(m.name), suite.n_bootstrap, str(out_dir), quiet, threads))
    return jobs


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ---------------------------------------------------------------------------------------------- progress
def _tqdm(quiet: bool, **kw):
    from tqdm.auto import tqdm

    return tqdm(disable=quiet, leave=False, file=sys.stderr, dynamic_ncols=True, **kw)


class _TrainMonitor:
    """Training callback: a progress bar and a divergence check (non-finite loss stops the job)."""

    def __init__(self, total: int, desc: str, quiet: bool):
        self.bar = _tqdm(quiet, total=total, desc=desc, unit="step")
        self.last = 0

    def __call__(self, step: int, logs: dict):
        for k, v in logs.items():
            if isinstance(v, (int, float)) and ("loss" in k) and not math.isfinite(v):
                raise JobFailure(f"training diverged at step {step}: {k} = {v}")
        if step > self.last:
            self.bar.update(step - self.last)
            self.last = step
        loss = logs.get("loss")
        if isinstance(loss, (int, float)):
            self.bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
        return None

    def close(self):
        self.bar.close()


# ---------------------------------------------------------------------------------------------- worker
class Worker:
    """Runs jobs in one process, caching datasets, extractors and real-data features between jobs."""

    def __init__(self):
        self._datasets: dict = {}
        self._splits: dict = {}
        self._extractors: dict = {}
        self._features: dict = {}
        self._data_ids: dict = {}

    # ---- caches --------------------------------------------------------------------------------------------
    def dataset(self, name: str):
        if name not in self._datasets:
            from genbench.data import get_dataset

            self._datasets[name] = get_dataset(name)
        return self._datasets[name]

    def split(self, name: str, split: str):
        key = (name, split)
        if key not in self._splits:
            self._splits[key] = self.dataset(name).load(split)
        return self._splits[key]

    def data_identity(self, name: str) -> dict:
        """Dataset identity for the checkpoint key: info, source and a digest of the training bytes."""
        if name not in self._data_ids:
            tr = self.split(name, "train")
            h = hashlib.sha256()
            if hasattr(tr, "x"):
                h.update(tr.x.detach().cpu().contiguous().numpy().tobytes())
            else:
                h.update(tr.text.encode("utf-8"))
            self._data_ids[name] = {"info": tr.info.to_dict(), "source": tr.source, "train_sha256": h.hexdigest()}
        return self._data_ids[name]

    def extractor(self, name: str, device: str):
        key = (name, device)
        if key not in self._extractors:
            from genbench.features import get_extractor

            self._extractors[key] = get_extractor(name, device=device)
        return self._extractors[key]

    def _extract(self, ext, samples, batch_size: int, quiet: bool, desc: str) -> torch.Tensor:
        if not quiet:
            print(f"  {desc} ({_len(samples)} samples, {ext.name})", file=sys.stderr, flush=True)
        try:
            feats = ext.extract(samples, batch_size=batch_size, progress=not quiet)
        except TypeError:  # an extractor without a progress option
            feats = ext.extract(samples, batch_size=batch_size)
        return feats.double().cpu()

    def real_features(self, spec: DatasetSpec, which: str, n: int, device: str, out_dir: Path, quiet: bool,
                      text_unit: Optional[tuple] = None):
        """(samples, features) of a fixed subset of a real split, computed once per dataset, split, extractor
        and size (text: and unit, see `_text_subset`); also cached on disk under DIR/cache/features/ so resumed
        runs and other workers reuse it."""
        ext = self.extractor(spec.features, device)
        proto_id = _protocol_id(ext)
        key = (spec.name, which, spec.features, proto_id, n, self.data_identity(spec.name)["train_sha256"][:16])
        if text_unit is not None:
            key = key + tuple(text_unit)
        if key in self._features:
            return self._features[key]
        samples = real_subset(self.split(spec.name, which), n, text_unit)
        disk = out_dir / "cache" / "features" / f"{_hash(list(key))[:20]}.pt"
        feats = _read_feature_cache(disk, key)
        if feats is None:
            feats = self._extract(ext, samples, _feature_batch(spec), quiet, f"real features: {spec.name}/{which}")
            buf = io.BytesIO()
            torch.save({"key": json.dumps(list(key)), "features": feats}, buf)
            write_sealed(disk, buf.getvalue())
        import warnings

        from genbench.metrics import MetricWarning, gaussian_stats

        with warnings.catch_warnings():  # N <= D: the fd metric says so itself (and computes FD from the features)
            warnings.simplefilter("ignore", MetricWarning)
            stats = gaussian_stats(feats) if feats.shape[0] > 1 else None
        self._features[key] = (samples, feats, stats)
        return self._features[key]

    # ---- one job -------------------------------------------------------------------------------------------
    def __call__(self, job: JobSpec) -> JobResult:
        return run_job(job, self)


def _read_feature_cache(disk: Path, key: tuple) -> Optional[torch.Tensor]:
    """The features cached in `disk` for `key`, or None (then they are computed and written again): when the
    file is missing or for another key, and, after a one-line warning and deleting it, when it is corrupt (its
    payload's sha256 differs from the sealed one; an unsealed file from an older genbench counts as corrupt)."""
    if not disk.exists():
        return None
    try:
        blob = torch.load(io.BytesIO(read_sealed(disk)), map_location="cpu", weights_only=True)
        if not isinstance(blob, dict) or not isinstance(blob.get("features"), torch.Tensor):
            raise CorruptFileError(f"{disk}: not a genbench feature cache")
    except FileNotFoundError:
        return None
    except Exception as e:  # CorruptFileError, or a sealed payload torch cannot read: recomputed
        why = (str(e).splitlines() or [type(e).__name__])[0].replace(f"{disk}: ", "")
        print(f"  warning: feature cache {disk} is corrupt ({why}); deleted, recomputing", file=sys.stderr,
              flush=True)
        disk.unlink(missing_ok=True)
        return None
    return blob["features"] if blob.get("key") == json.dumps(list(key)) else None


def _len(samples) -> int:
    return len(samples)


def _feature_batch(spec: DatasetSpec) -> int:
    return 256


def _feature_protocol(ext) -> dict:
    """The extractor's protocol with `pinned` stated (False for a user extractor whose weights carry no hash, or
    a classifier built here: reports say so, and its numbers are not comparable across machines)."""
    p = dict(ext.protocol)
    if "pinned" not in p:
        p["pinned"] = bool(getattr(ext, "pinned", False) or getattr(ext, "weightless", False)
                           or p.get("weights_sha256"))
    return p


def _protocol_id(ext) -> str:
    try:
        return str(ext.protocol.get("id", ext.name))
    except Exception:
        return str(getattr(ext, "name", "?"))


def real_subset(split, n: int, text_unit: Optional[tuple] = None):
    """A fixed pseudo-random subset of `n` items of a split (all of it if smaller); text: `n` units shaped like
    the model's samples (`text_unit`, see `_text_subset`)."""
    if hasattr(split, "x"):
        N = len(split.x)
        if n >= N:
            return split.x
        idx = torch.randperm(N, generator=torch.Generator().manual_seed(REAL_SUBSET_SEED))[:n].sort().values
        return split.x[idx]
    return _text_subset(split, n, text_unit)


def _text_subset(split, n: int, text_unit: Optional[tuple] = None) -> list:
    """Real text items shaped like the text models' samples (reference_models/text_base.py), drawn with
    `genbench.metrics.text.reference_texts`: `text_unit` = (sample_mode, sample_length) of the model (see
    `_text_unit`); "line" -> `n` whole lines (names), "stream" -> `n` passages of exactly sample_length
    characters starting at line boundaries (shakespeare-char). Without a unit: the split's own mode and the
    default sample length."""
    from genbench.metrics.text import reference_texts
    from reference_models.text_base import TextConfig, resolve_sample_mode

    mode, length = text_unit if text_unit is not None else (resolve_sample_mode(split), TextConfig().sample_length)
    return reference_texts(split, n, mode, int(length), seed=REAL_SUBSET_SEED)


def _text_unit(model, split, fake: Optional[list] = None) -> tuple:
    """(sample_mode, sample_length) of what `model` generates: a genbench text model states both; for another
    sampler (genbench eval) the mode comes from the split and the length from the samples (median)."""
    from reference_models.text_base import TextConfig, resolve_sample_mode

    mode = getattr(model, "sample_mode", None)
    if mode not in ("line", "stream"):
        mode = resolve_sample_mode(split)
    length = getattr(getattr(model, "config", None), "sample_length", None)
    if not length:
        lens = sorted(len(s) for s in fake or [])
        length = lens[len(lens) // 2] if lens else TextConfig().sample_length
    return (mode, int(length) if mode == "stream" else 0)


def code_version(cls) -> str:
    """Digest of the code a model's checkpoint depends on: genbench's version, every source file of the
    reference_models package (networks live in shared modules such as nets.py/unet.py), and the files defining
    the class and its bases (user models live elsewhere)."""
    import genbench
    import reference_models

    h = hashlib.sha256(genbench.__version__.encode())
    files = set(Path(reference_models.__file__).resolve().parent.glob("*.py"))
    for k in inspect.getmro(cls):
        try:
            f = inspect.getsourcefile(k)
        except TypeError:  # builtins (object, ABC)
            continue
        if f:
            files.add(Path(f).resolve())
    for f in sorted(files):
        h.update(str(f.name).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


_HARNESS_CODE: list = []


def harness_code_version() -> str:
    """Digest of genbench's code that turns samples into numbers (data, features, metrics, runner, speed)."""
    if not _HARNESS_CODE:
        root = Path(__file__).resolve().parent
        files = sorted([*(root / "data").rglob("*.py"), *(root / "features").rglob("*.py"),
                        *(root / "metrics").rglob("*.py"), root / "runner.py", root / "speed.py"])
        h = hashlib.sha256()
        for f in files:
            h.update(str(f.relative_to(root)).encode())
            h.update(f.read_bytes())
        _HARNESS_CODE.append(h.hexdigest()[:16])
    return _HARNESS_CODE[0]


def job_code_version(model_name: str) -> str:
    """What a recorded job's numbers depend on besides its settings: the model's code and the harness code. A
    finished job whose code version changed is redone on resume (its checkpoint is reused if the model's own
    code did not change)."""
    from reference_models import get_model_class

    return f"{code_version(get_model_class(model_name))}-{harness_code_version()}"


def check_samples(x, info, n: int, what: str = "samples") -> None:
    """Raise JobFailure unless x is n valid samples of the dataset."""
    if info.modality == "text":
        if not isinstance(x, (list, tuple)) or len(x) != n or not all(isinstance(s, str) for s in x):
            raise JobFailure(f"{what}: expected a list of {n} strings, got {type(x).__name__} of length {_safe_len(x)}")
        return
    if not isinstance(x, torch.Tensor):
        raise JobFailure(f"{what}: expected a tensor, got {type(x).__name__}")
    want = (n, *tuple(info.shape))
    if tuple(x.shape) != want:
        raise JobFailure(f"{what}: wrong shape {tuple(x.shape)}, expected {want}")
    bad = (~torch.isfinite(x)).sum().item()
    if bad:
        nan = torch.isnan(x).sum().item()
        raise JobFailure(f"{what}: {bad} non-finite values ({nan} NaN, {bad - nan} inf) in {n} samples")


def _safe_len(x) -> str:
    try:
        return str(len(x))
    except TypeError:
        return "?"


def draw_samples(model, n: int, seed: int, batch_size: int, quiet: bool, desc: str):
    """n samples in chunks (progress bar); chunk i uses seed*1000003 + i, so results depend only on
    (seed, n, batch_size)."""
    out = []
    bar = _tqdm(quiet, total=n, desc=desc, unit="sample")
    done, i = 0, 0
    try:
        while done < n:
            b = min(batch_size, n - done)
            x = model.sample(b, seed=seed * 1_000_003 + i, batch_size=b)
            out.append(x)
            done += b
            i += 1
            bar.update(b)
    finally:
        bar.close()
    if out and isinstance(out[0], torch.Tensor):
        return torch.cat(out, 0)
    return [s for chunk in out for s in chunk]


def _save_preview(path: Path, x, info) -> None:
    import io

    if isinstance(x, torch.Tensor):
        buf = io.BytesIO()
        np.savez_compressed(buf, x=x[:PREVIEW_N].detach().cpu().float().numpy().astype(np.float32))
        atomic_write_bytes(path, buf.getvalue())
    else:
        atomic_write_text(path, json.dumps(list(x[:PREVIEW_N]), ensure_ascii=False, indent=0))


def _rows(results, variant: str = "") -> list[dict]:
    rows = []
    for m in results:
        d = m.to_dict()
        d["variant"] = variant
        rows.append(d)
    return rows


def _discard_checkpoint(ckpt: Path, ckpt_rel: str, err: Exception) -> None:
    """Warn (one line naming the checkpoint and why) and delete a checkpoint that cannot be used: it is a cache
    and the model is trained again."""
    why = str(err).splitlines()[0] if str(err) else ""
    print(f"  warning: checkpoint {ckpt_rel} could not be used ({type(err).__name__}: {why}); deleted, retraining",
          file=sys.stderr, flush=True)
    shutil.rmtree(ckpt, ignore_errors=True)


def run_job(job: JobSpec, worker: Worker) -> JobResult:
    from reference_models import create_model, load_model

    from genbench import speed as S

    t_job = time.perf_counter()
    out_dir = Path(job.out_dir)
    device = job.device
    q = job.quiet
    mem_source = S.reset_peak_memory(device)
    spec, mspec = job.dataset, job.model
    ds = worker.dataset(spec.name)
    info = ds.info
    train = worker.split(spec.name, "train")

    if mspec.factory:  # a user's model ("package.module:factory"); registers it in this worker process too
        from genbench.external import register_external

        register_external(mspec.name, mspec.factory)
    seed_everything(job.seed)
    model = create_model(mspec.name, info, job.budget, mspec.overrides or None)
    config = model.config.to_dict()
    precision = _model_precision(model, device)  # bf16 results differ from float32 ones: key and protocol
    key = {"model": mspec.name, "config": config, "data": worker.data_identity(spec.name), "seed": job.seed,
           "budget": job.budget, "code": code_version(type(model))}
    cache_key = _hash({**key, "precision": precision} if precision != "float32" else key)
    ckpt_rel = f"checkpoints/{_slug(job.job_id)}-{cache_key[:12]}"
    ckpt = out_dir / ckpt_rel
    art_rel = f"artifacts/{_slug(job.job_id)}"
    artifacts: list = []

    # 1. train or load --------------------------------------------------------------------------------------
    cached = (ckpt / "config.json").exists() and (ckpt / "weights.pt").exists()
    if cached:
        try:
            model = load_model(ckpt).to(device)
            train_seconds = float(model.history.seconds or 0.0)
        except Exception as e:  # a corrupt, unverifiable, unsafe or incompatible checkpoint is retrained
            _discard_checkpoint(ckpt, ckpt_rel, e)
            cached = False
            seed_everything(job.seed)
            model = create_model(mspec.name, info, job.budget, mspec.overrides or None)
    if not cached:
        seed_everything(job.seed)
        mon = _TrainMonitor(int(getattr(model.config, "steps", 0) or 0), f"train {job.job_id}", q)
        t0 = time.perf_counter()
        try:
            data = train if info.modality == "text" else train.x
            model.fit(data, budget=None, seed=job.seed, device=device, callbacks=[mon])
        finally:
            mon.close()
        S.synchronize(device)
        train_seconds = time.perf_counter() - t0
        for rec in model.history.records:
            for k, v in rec.items():
                if "loss" in k and isinstance(v, float) and not math.isfinite(v):
                    raise JobFailure(f"training diverged at step {rec.get('step')}: {k} = {v}")
        model.save(ckpt)
    hist_rel = f"{art_rel}/history.json"
    atomic_write_text(out_dir / hist_rel, json.dumps(_finite_records(model.history.records)))
    artifacts.append(("history", hist_rel))

    # 2-4. sample, features, metrics --------------------------------------------------------------------------
    bs = job.speed.batch_size
    rows = _score(job, worker, model, info, variant="", artifacts=artifacts, art_rel=art_rel)

    # 5. speed and cost ---------------------------------------------------------------------------------------
    def sample_fn(n, s):
        return model.sample(n, seed=s, batch_size=n)

    if not q:
        print(f"  timing sampling ({job.speed.repeats} x {bs} samples after {job.speed.warmup} warm-up)",
              file=sys.stderr, flush=True)
    rows += _rows(S.sampling_speed(sample_fn, device, bs, job.speed.repeats, job.speed.warmup))
    if info.modality == "text" and hasattr(model, "_generate_ids"):
        from genbench.metrics.text import speed_metrics

        try:  # characters/s with and without the key/value cache, first-character latency
            rows += _rows(speed_metrics(model, n_chars=256, batch_size=1, repeats=job.speed.repeats))
        except NotImplementedError:  # e.g. text-copy draws whole training passages: no per-character path
            pass

    # diffusion sampler sweep: quality and speed per setting (variant "ddim-10", ...)
    if job.sweep is not None:
        for steps in job.sweep.steps:
            variant = f"{job.sweep.sampler}-{steps}"
            with _sampler_variant(model, job.sweep.sampler, steps):
                rows += _score(job, worker, model, info, variant=variant, artifacts=artifacts, art_rel=art_rel,
                               likelihood=False)
                rows += _rows(S.sampling_speed(sample_fn, device, bs, job.speed.repeats, job.speed.warmup), variant)
                rows += _rows([m for m in S.cost_metrics(model, device, None, None, mem_source, cached)
                               if m.name == "nfe"], variant)

    rows += _rows(S.cost_metrics(model, device, train_seconds, S.peak_memory_mb(device, mem_source), mem_source, cached))
    return JobResult(job.job_id, model.family, rows, artifacts, train_seconds, ckpt_rel, cache_key, config, cached,
                     time.perf_counter() - t_job)


@contextmanager
def _sampler_variant(model, sampler: str, steps: int):
    """Temporarily switch a trained diffusion model's sampler (`model.set_sampler(sampler, steps)`)."""
    before = (model.config.sampler, model.config.sample_steps)
    model.set_sampler(sampler, int(steps))
    try:
        yield model
    finally:
        model.set_sampler(*before)


def _finite_records(records):
    out = []
    for r in records:
        out.append({k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in r.items()})
    return out


def _model_precision(model, device) -> str:
    """The model's `precision(device)` ('bf16-autocast' / 'float32'); 'float32' for objects without one (user
    models that do not subclass GenerativeModel, replayed samples)."""
    fn = getattr(model, "precision", None)
    return str(fn(device)) if callable(fn) else "float32"


def _score(job: JobSpec, worker: Worker, model, info, variant: str, artifacts: list, art_rel: str,
           likelihood: bool = True) -> list[dict]:
    """Sample, featurise and compute the suite's metrics for one sampler setting."""
    from genbench.metrics import METRICS, compute_metrics

    spec = job.dataset
    out_dir = Path(job.out_dir)
    q = job.quiet
    n = spec.n_samples
    tag = f" [{variant}]" if variant else ""
    fake = draw_samples(model, n, job.seed, job.speed.batch_size, q, f"sample {job.job_id}{tag}")
    check_samples(fake, info, n)
    suffix = f"-{variant}" if variant else ""
    ext_name = ".npz" if info.modality != "text" else ".json"
    prev_rel = f"{art_rel}/samples_preview{suffix}{ext_name}"
    _save_preview(out_dir / prev_rel, fake, info)
    artifacts.append(("samples_preview" if not variant else f"samples_preview:{variant}", prev_rel))
    unit = _text_unit(model, worker.split(spec.name, spec.reference), fake) if info.modality == "text" else None
    if not variant:
        real_rel = f"artifacts/{spec.name}/real_preview{'-' + '-'.join(map(str, unit)) if unit else ''}{ext_name}"
        if not (out_dir / real_rel).exists():
            _save_preview(out_dir / real_rel, real_subset(worker.split(spec.name, spec.reference), PREVIEW_N, unit), info)
        artifacts.append(("real_preview", real_rel))

    names = [m for m in spec.metrics if (likelihood or m not in LIKELIHOOD_METRICS)]
    need = set()
    for m in names:
        need |= set(getattr(METRICS.get(m), "requires", ()) or ())

    ext = worker.extractor(spec.features, job.device)
    real_x, real_f, real_stats = worker.real_features(spec, spec.reference, n, job.device, out_dir, q, unit)
    fake_f = worker._extract(ext, fake, 256, q, f"fake features {job.job_id}{tag}")
    prec = _model_precision(model, job.device)
    ctx_fields: dict[str, Any] = {
        "real_features": real_f, "fake_features": fake_f, "feature_protocol": _feature_protocol(ext),
        "real_stats": real_stats, "real_samples": real_x if info.modality != "text" else None,
        "fake_samples": fake if info.modality != "text" else None, "seed": job.seed,
        "n_bootstrap": job.n_bootstrap, "dataset": spec.name, "reference_split": spec.reference,
        "modality": info.modality, "data_dim": info.dim if info.modality != "text" else None,
        "device": job.device, "num_classes": info.num_classes,
        "extra_protocol": {**({"sampler": variant} if variant else {}),
                           **({"precision": prec} if prec != "float32" else {})},
        **spec.options,
    }
    if info.modality == "text":  # text metrics receive the strings
        ctx_fields.update(real_samples=real_x, fake_samples=fake, real_texts=real_x, fake_texts=fake)
    if need & {"train_features", "train_samples"}:
        n_tr = spec.n_train_features or n
        tr_x, tr_f, _ = worker.real_features(spec, "train", n_tr, job.device, out_dir, q, unit)
        ctx_fields.update(train_samples=tr_x if info.modality != "text" else None, train_features=tr_f)
    mixture = getattr(worker.dataset(spec.name), "mixture", None)
    if mixture is not None:
        ctx_fields["mixture"] = mixture
    if "fake_class_probs" in need:
        clf = ext if hasattr(ext, "predict_proba") else worker.extractor(f"classifier:{spec.name}", job.device)
        ctx_fields["fake_class_probs"] = clf.predict_proba(fake).double().cpu()
        cp = dict(getattr(clf, "protocol", {}) or {})
        if getattr(clf, "accuracy", None) is not None:
            cp.setdefault("accuracy", float(clf.accuracy))
        ctx_fields["classifier_protocol"] = cp
    if "log_prob" in need or any(m in LIKELIHOOD_METRICS for m in names):
        if model.log_prob_kind != "none":
            ctx_fields.update(_likelihood_fields(model, info, spec, worker))
        else:
            ctx_fields["log_prob_kind"] = "none"
    from genbench.metrics.context import EvalContext

    ctx = _make_context(EvalContext, ctx_fields)
    results = compute_metrics(names, ctx) if names else []
    skipped = dict(getattr(ctx, "skipped", {}) or {})
    if skipped:
        sk_rel = f"{art_rel}/skipped_metrics{suffix}.json"
        atomic_write_text(out_dir / sk_rel, json.dumps(skipped, indent=1))
        artifacts.append(("skipped_metrics", sk_rel))
        if not q:
            for k, why in skipped.items():
                print(f"  skipped {k}: {why}", file=sys.stderr, flush=True)
    return _rows(results, variant)


def score_samples(job: JobSpec, worker: Worker, sampler, info, artifacts: list, art_rel: str) -> list[dict]:
    """Public seam for `genbench eval` (genbench/evaluate.py): score what `sampler.sample(n, seed=, batch_size=)`
    returns exactly as a job's model samples are scored (same checks, real subset, features, EvalContext and
    metrics; likelihood metrics are skipped when `sampler.log_prob_kind == "none"`). Returns metric rows."""
    return _score(job, worker, sampler, info, variant="", artifacts=artifacts, art_rel=art_rel)


def _likelihood_fields(model, info, spec: DatasetSpec, worker: Worker) -> dict:
    """Held-out likelihood inputs: log_prob of the first `n_likelihood` (default n_samples) reference items of
    the fixed real subset; text: nats/char over `n_likelihood` (default 20000) reference characters (running
    text: the first ones; line datasets: whole lines in a seeded random order, see
    `genbench.metrics.text.heldout_text`), with the window protocol (context, stride) in `nll_protocol`."""
    ref = worker.split(spec.name, spec.reference)
    if info.modality == "text":
        from genbench.metrics.text import heldout_text, nll_protocol

        max_chars = spec.n_likelihood or 20000
        text, text_proto = heldout_text(ref, max_chars, _text_unit(model, ref)[0], seed=REAL_SUBSET_SEED)
        nats, count = model.nll_per_char(text)
        if not math.isfinite(float(nats)):
            raise JobFailure(f"nll_per_char gave {nats} on the {spec.reference} text of {info.name}")
        return {"nll_per_char": float(nats), "n_chars": int(count), "log_prob_kind": model.log_prob_kind,
                "nll_protocol": {**nll_protocol(model, None, None), **text_proto}}
    real_x = real_subset(ref, spec.n_likelihood or spec.n_samples)
    lp = model.log_prob(real_x)
    if not torch.isfinite(lp).all():
        bad = (~torch.isfinite(lp)).sum().item()
        raise JobFailure(f"log_prob gave {bad} non-finite values on {len(lp)} real {info.name} examples")
    return {"log_prob": lp.double(), "log_prob_kind": model.log_prob_kind, "data_dim": info.dim}


def _make_context(cls, fields: dict):
    """An EvalContext from the fields it declares; the others (e.g. text metrics' nll_per_char, fake_texts)
    become attributes, which registered metrics read with getattr."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set(inspect.signature(cls).parameters)
    ctx = cls(**{k: v for k, v in fields.items() if k in names})
    for k, v in fields.items():
        if k not in names:
            setattr(ctx, k, v)
    return ctx


# ---------------------------------------------------------------------------------------------- driver
@dataclass
class RunSummary:
    out_dir: Path
    done: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    failed: list = field(default_factory=list)  # (job_id, error)
    seconds: float = 0.0

    @property
    def files(self) -> list[Path]:
        return [self.out_dir / DB_NAME, self.out_dir / CSV_NAME, self.out_dir / JSON_NAME]


class Runner:
    def __init__(self, suite: Suite, out_dir: str | os.PathLike, device: str = "cpu", fresh: bool = False,
                 quiet: bool = False, executor: Optional[Executor] = None, argv: Optional[list] = None,
                 log=None, workers: Optional[int] = None, threads: Optional[int] = None):
        """`workers` (default: the suite's) > 1 runs that many jobs at once in worker processes with `threads`
        torch threads each (default: the suite's); an explicit `executor` replaces both."""
        self.suite = suite
        self.out_dir = Path(out_dir)
        self.device = device
        self.fresh = fresh
        self.quiet = quiet
        self.workers = int(workers if workers is not None else getattr(suite, "workers", 1) or 1)
        if executor is None:
            from genbench.executors import ProcessExecutor

            t = threads if threads is not None else suite.threads
            executor = ProcessExecutor(self.workers, t) if self.workers > 1 else LocalExecutor()
        t = threads if threads is not None else getattr(suite, "threads", None)
        self.threads = int(t) if t is not None else torch.get_num_threads()  # what the jobs run with
        self.executor = executor
        self.argv = list(argv) if argv is not None else list(sys.argv)
        self.log = log or (lambda msg: print(msg, flush=True))

    _WIPED_FILES = (DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm", CSV_NAME, JSON_NAME)
    _WIPED_DIRS = ("artifacts", "checkpoints", "cache")

    def _wipe(self) -> None:
        """`--fresh`: delete the run's results, artifacts, checkpoints and caches; refused (InvalidInputError) in a
        directory that is not a genbench run directory."""
        from genbench.rundir import check_fresh_allowed

        check_fresh_allowed(self.out_dir, self._WIPED_FILES + self._WIPED_DIRS)
        for name in self._WIPED_FILES:
            p = self.out_dir / name
            if p.exists():
                p.unlink()
        for sub in self._WIPED_DIRS:
            shutil.rmtree(self.out_dir / sub, ignore_errors=True)

    def run(self) -> RunSummary:
        """Run the suite's jobs holding DIR's run lock (a second process on DIR fails at once, naming this one)."""
        from genbench.rundir import run_dir_lock

        self.out_dir.mkdir(parents=True, exist_ok=True)
        with run_dir_lock(self.out_dir):
            return self._run_locked()

    def _run_locked(self) -> RunSummary:
        from genbench.env_info import environment
        from genbench.fileio import remove_stale_temps
        from genbench.rundir import write_marker

        t0 = time.perf_counter()
        if self.fresh:
            self._wipe()
        remove_stale_temps(self.out_dir, older_than_s=STALE_TEMP_S)  # left by a killed run; we hold the lock
        store = ResultsStore(self.out_dir, create=True)
        write_marker(self.out_dir)
        summary = RunSummary(self.out_dir)
        run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]
        env = environment(self.device)
        store.begin_run(run_id, suite_name=self.suite.name, suite_hash=self.suite.hash,
                        suite_toml=self.suite.toml_text or json.dumps(self.suite.to_dict()), argv=self.argv, **env)
        jobs = make_jobs(self.suite, self.out_dir, self.device, self.quiet, self.threads)
        todo = []
        codes = {m: job_code_version(m) for m in {j.model.name for j in jobs}}  # source digests, once per model
        for j in jobs:
            code = codes[j.model.name]
            row = store.job_row(j.job_id)
            prev = json.loads(row["config_json"] or "{}") if row is not None else {}
            if row is not None and row["status"] == "done" and prev.get("spec_hash") == j.spec_hash \
                    and prev.get("code") == code:
                summary.skipped.append(j.job_id)
                continue
            if row is not None and row["status"] == "done":
                why = ("its suite settings changed" if prev.get("spec_hash") != j.spec_hash else
                       "the code that computes its numbers (the model's, or genbench's data/features/metrics/runner) "
                       "changed")
                self.log(f"[redo] {j.job_id}: {why} since it was recorded")
            store.add_job(j.job_id, run_id=run_id, dataset=j.dataset.name, model=j.model.name,
                          family=_family(j.model.name), seed=j.seed, budget=j.budget,
                          config={"spec_hash": j.spec_hash, "code": code, "job": _job_dict(j)})
            todo.append(j)
        self.log(f"genbench run: suite {self.suite.name!r} ({self.suite.source}), {len(jobs)} jobs "
                 f"({len(summary.skipped)} already done, {len(todo)} to run) on {self.device} -> {self.out_dir}")
        store.export()

        def submitted():
            for k, j in enumerate(todo):
                store.start_job(j.job_id, run_id, config={"spec_hash": j.spec_hash, "code": codes[j.model.name],
                                                          "job": _job_dict(j)})
                if not self.quiet:
                    self.log(f"[{k + 1}/{len(todo)}] {j.job_id} ...")
                yield j

        worker = Worker()
        try:
            for job, result, error in self.executor.map_unordered(worker, submitted()):
                if error is None:
                    store.record_job(job.job_id, result.metrics, result.artifacts, result.train_seconds,
                                     result.checkpoint_path)
                    with store.transaction() as c:
                        c.execute("UPDATE jobs SET family=?, config_json=?, cache_key=? WHERE job_id=?",
                                  (result.family, json.dumps({"spec_hash": job.spec_hash,
                                                              "code": codes[job.model.name],
                                                              "job": _job_dict(job),
                                                              "model_config": result.config}, default=str),
                                   result.cache_key, job.job_id))
                    summary.done.append(job.job_id)
                    self.log(_done_line(job, result))
                elif is_disk_full(error):  # every later job would fail the same way: stop the run instead
                    raise DiskFullError(disk_full_message(error, f"the results of job {job.job_id} in {self.out_dir}"))
                else:
                    msg = f"{type(error).__name__}: {error}"
                    if not isinstance(error, (JobFailure, GenbenchError)):
                        tb = "".join(traceback.format_exception(type(error), error, error.__traceback__)[-6:])
                        msg += "\n" + tb
                    store.fail_job(job.job_id, msg)
                    summary.failed.append((job.job_id, f"{type(error).__name__}: {error}"))
                    self.log(f"FAILED {job.job_id}: {type(error).__name__}: {error}")
                store.export()
        except DiskFullError:
            store.close()
            raise
        except KeyboardInterrupt:
            store.export()
            print(f"genbench run: interrupted; finished jobs are saved in {self.out_dir}: run the same command again "
                  "to resume", file=sys.stderr, flush=True)
            store.close()
            raise
        store.finish_run(run_id)
        store.export()
        store.close()
        summary.seconds = time.perf_counter() - t0
        return summary


def _family(model: str) -> str:
    from reference_models import get_model_class

    return get_model_class(model).family


def _job_dict(j: JobSpec) -> dict:
    return {"dataset": vars(j.dataset), "model": vars(j.model), "seed": j.seed, "budget": j.budget,
            "device": j.device, "speed": vars(j.speed), "sweep": vars(j.sweep) if j.sweep else None,
            "n_bootstrap": j.n_bootstrap, "threads": j.threads}


_HEADLINE = ("fd", "fd_text", "precision", "recall", "coverage", "modes_covered", "bits_per_dim", "nll",
             "bits_per_char", "samples_per_s")


def _done_line(job: JobSpec, r: JobResult) -> str:
    vals = {m["name"]: m["value"] for m in r.metrics if m["variant"] == ""}
    parts = [f"{k}={vals[k]:.4g}" for k in _HEADLINE if k in vals]
    src = "cached checkpoint" if r.cached else f"trained {r.train_seconds:.1f}s"
    return f"done {job.job_id} ({r.family}, {src}, {r.seconds:.1f}s): " + " ".join(parts)


__all__ = ["Runner", "RunSummary", "JobSpec", "JobResult", "JobFailure", "Worker", "run_job", "make_jobs",
           "job_id_for", "check_samples", "seed_everything"]
