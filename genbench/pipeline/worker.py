"""The worker: runs jobs in one process, caching datasets, extractors and real-data features between jobs.

Per job (`run_job`) it
  1. trains the model, or loads its cached checkpoint (key = hash of model config, dataset identity, seed,
     budget and the model's code; loaded as plain data after a sha256 check, genbench/models/checkpoint.py:
     a checkpoint that fails it is deleted with a warning and the model retrained),
  2-4. scores its samples (genbench/pipeline/scoring.py: draw, check, featurise, compute the suite's metrics;
     reference features and statistics come from the shared cache, genbench/pipeline/refstats.py),
  5. measures speed and cost (genbench/pipeline/speed.py), and for swept diffusion samplers repeats 2-5 per
     setting,
  6. writes per-job artifacts (samples preview, training history) under DIR/artifacts/.
"""

from __future__ import annotations

import hashlib
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import torch

from genbench.defaults import FEATURE_BATCH_SIZE
from genbench.pipeline.jobs import JobFailure, JobResult, JobSpec
from genbench.pipeline.refstats import StatsCache, key_digest
from genbench.pipeline.scorers import scorer_for
from genbench.pipeline.scoring import result_rows, score
from genbench.pipeline.training import train_or_load
from genbench.suite import DatasetSpec


class Worker:
    """Runs jobs in one process, caching datasets, extractors and real-data features between jobs."""

    def __init__(self):
        self._datasets: dict = {}
        self._splits: dict = {}
        self._extractors: dict = {}
        self._features: dict = {}
        self._data_ids: dict = {}
        self._split_sha: dict = {}
        self.stats_cache = StatsCache()
        self.sharding = None  # a FeatureSharding (genbench/pipeline/shards.py) for every pass; a job's own wins

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
            h = hashlib.sha256(scorer_for(tr.info.modality).data_bytes(tr))
            self._data_ids[name] = {"info": tr.info.to_dict(), "source": tr.source, "train_sha256": h.hexdigest()}
        return self._data_ids[name]

    def extractor(self, name: str, device: str):
        key = (name, device)
        if key not in self._extractors:
            from genbench.features import get_extractor

            self._extractors[key] = get_extractor(name, device=device)
        return self._extractors[key]

    def extract(self, ext, samples, batch_size: int, quiet: bool, desc: str) -> torch.Tensor:
        if not quiet:
            print(f"  {desc} ({_len(samples)} samples, {ext.name})", file=sys.stderr, flush=True)
        try:
            feats = ext.extract(samples, batch_size=batch_size, progress=not quiet)
        except TypeError:  # an extractor without a progress option
            feats = ext.extract(samples, batch_size=batch_size)
        return feats.double().cpu()

    def features(self, name: str, device: str, samples, batch_size: int, quiet: bool, desc: str,
                 sharding=None) -> torch.Tensor:
        """Features of `samples` through extractor `name`, float64 on the CPU: in this process, or, with a
        FeatureSharding (`sharding`, else `self.sharding`) of 2 or more shards, in batch-aligned shards on its
        executor's workers, merged in row order (the same features as one pass)."""
        sh = sharding if sharding is not None else self.sharding
        ext = self.extractor(name, device)
        if sh is None or int(sh.shards) < 2 or _len(samples) <= batch_size:
            return self.extract(ext, samples, batch_size, quiet, desc)
        if not quiet:
            print(f"  {desc} ({_len(samples)} samples, {ext.name}): {sh.describe()}", file=sys.stderr, flush=True)
        merged = sh.run(samples, name, device, batch_size, keep_features=True)
        if merged.n != _len(samples):
            raise RuntimeError(f"sharded feature pass returned {merged.n} rows for {_len(samples)} samples")
        return merged.features

    def split_sha256(self, name: str, split: str) -> str:
        """sha256 of a split's content (the bytes genbench reads), the reference-statistics key's data part."""
        key = (name, split)
        if key not in self._split_sha:
            sp = self.split(name, split)
            self._split_sha[key] = hashlib.sha256(scorer_for(sp.info.modality).data_bytes(sp)).hexdigest()
        return self._split_sha[key]

    def reference(self, spec: DatasetSpec, which: str, n: int, device: str, quiet: bool,
                  text_unit: Optional[tuple] = None, extract=None, sharding=None):
        """(samples, RefStats) of a fixed subset of a real split: features and Gaussian statistics from the
        shared reference-statistics cache (genbench/pipeline/refstats.py), computed once per content key and
        kept in this process too. `extract(samples, batch_size)` replaces this process's extraction pass when the
        entry must be built; without it, a FeatureSharding (`sharding`, else `self.sharding`) shards that pass on
        its executor's workers (genbench/pipeline/shards.py)."""
        from genbench.pipeline.refstats import reference_key

        ext = self.extractor(spec.features, device)
        split = self.split(spec.name, which)
        sc = scorer_for(split.info.modality)
        key = reference_key(spec.name, which, self.split_sha256(spec.name, which),
                            sc.subset_key(split, n, text_unit), _protocol(ext), device)
        digest = key_digest(key)
        samples = sc.real_subset(split, n, text_unit)
        if digest in self._features:
            entry = self._features[digest]
            entry.source = "memory"
        else:
            desc = f"real features: {spec.name}/{which}"
            if extract is None:
                build = lambda: self.features(spec.features, device, samples, _feature_batch(spec), quiet, desc,  # noqa: E731
                                              sharding)
            else:
                build = lambda: extract(samples, _feature_batch(spec))  # noqa: E731
            entry = self.stats_cache.get_or_build(key, build)
            self._features[digest] = entry
        if not quiet:
            if entry.source == "computed":
                how = f"computed in {entry.seconds:.1f} s, cached as {digest[:12]}"
            else:
                how = f"0 s: from the {'stats cache' if entry.source == 'cache' else 'worker memory'} ({digest[:12]})"
            print(f"  reference features {spec.name}/{which} n={entry.features.shape[0]} {ext.name}: {how}",
                  file=sys.stderr, flush=True)
        return samples, entry

    def real_features(self, spec: DatasetSpec, which: str, n: int, device: str, out_dir: Path, quiet: bool,
                      text_unit: Optional[tuple] = None, sharding=None):
        """(samples, features, (mu, sigma)) of a fixed subset of a real split (see `reference`); `out_dir` is
        not used any more (the cache is shared by every run directory) and kept for callers."""
        samples, entry = self.reference(spec, which, n, device, quiet, text_unit, sharding=sharding)
        stats = (entry.mu, entry.sigma) if entry.mu is not None else None
        return samples, entry.features, stats

    # ---- one job -------------------------------------------------------------------------------------------
    def __call__(self, job: JobSpec) -> JobResult:
        return run_job(job, self)


def _len(samples) -> int:
    return len(samples)


def _feature_batch(spec: DatasetSpec) -> int:
    return FEATURE_BATCH_SIZE


def _protocol(ext) -> dict:
    """The extractor's protocol as the reference key records it (id, weights sha256, ...)."""
    from genbench.pipeline.scoring import feature_protocol

    try:
        return feature_protocol(ext)
    except Exception:
        return {"id": str(getattr(ext, "name", "?"))}


def run_job(job: JobSpec, worker: Worker) -> JobResult:
    from genbench.pipeline import speed as S

    t_job = time.perf_counter()
    device = job.device
    q = job.quiet
    mem_source = S.reset_peak_memory(device)
    spec, mspec = job.dataset, job.model
    ds = worker.dataset(spec.name)
    info = ds.info
    if info.modality == "translation":  # image-to-image translation: its own job (genbench/pipeline/translation_job.py)
        from genbench.pipeline.translation_job import run_translation_job

        return run_translation_job(job, worker)
    sc = scorer_for(info.modality)
    train = worker.split(spec.name, "train")

    def fit(model, monitor):
        labels = {}
        if getattr(model, "conditional", False):  # a class-conditional model trains on the labels too
            if getattr(train, "y", None) is None:
                raise JobFailure(f"model {mspec.name!r} is class-conditional, but the training split of "
                                 f"{spec.name!r} has no labels")
            labels = {"labels": train.y}
        model.fit(sc.train_data(train), budget=None, seed=job.seed, device=device, callbacks=[monitor], **labels)

    # 1. train or load (genbench/pipeline/training.py) ---------------------------------------------------------
    t = train_or_load(job, worker, fit)
    model, config, cache_key, ckpt_rel, art_rel = t.model, t.config, t.cache_key, t.ckpt_rel, t.art_rel
    train_seconds, cached, artifacts = t.train_seconds, t.cached, list(t.artifacts)

    # 2-4. sample, features, metrics --------------------------------------------------------------------------
    bs = job.speed.batch_size
    rows = score(job, worker, model, info, variant="", artifacts=artifacts, art_rel=art_rel)

    # 5. speed and cost ---------------------------------------------------------------------------------------
    def sample_fn(n, s):
        if getattr(model, "conditional", False):  # timed as scored: with conditions (uniform over the classes)
            from genbench.models.conditions import draw_conditions

            return model.sample(n, seed=s, batch_size=n, condition=draw_conditions(n, model.condition_classes, "uniform"))
        return model.sample(n, seed=s, batch_size=n)

    if not q:
        print(f"  timing sampling ({job.speed.repeats} x {bs} samples after {job.speed.warmup} warm-up)",
              file=sys.stderr, flush=True)
    rows += result_rows(S.sampling_speed(sample_fn, device, bs, job.speed.repeats, job.speed.warmup))
    rows += result_rows(sc.extra_speed(model, job.speed.repeats))

    # diffusion sampler / guidance sweep: quality and speed per setting (variant "ddim-10", "guidance-2", ...)
    if job.sweep is not None:
        for variant, kind, value in job.sweep.variants():
            with _sweep_variant(model, job.sweep.sampler, kind, value):
                rows += score(job, worker, model, info, variant=variant, artifacts=artifacts, art_rel=art_rel,
                               likelihood=False)
                rows += result_rows(S.sampling_speed(sample_fn, device, bs, job.speed.repeats, job.speed.warmup), variant)
                rows += result_rows([m for m in S.cost_metrics(model, device, None, None, mem_source, cached)
                               if m.name == "nfe"], variant)

    rows += result_rows(S.cost_metrics(model, device, train_seconds, S.peak_memory_mb(device, mem_source), mem_source, cached))
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


@contextmanager
def _sweep_variant(model, sampler: str, kind: str, value):
    """One setting of a sweep: sampler steps (`_sampler_variant`) or a guidance scale (`model.set_guidance`)."""
    if kind == "steps":
        with _sampler_variant(model, sampler, int(value)):
            yield model
        return
    before = model.config.guidance
    model.set_guidance(float(value))
    try:
        yield model
    finally:
        model.set_guidance(before)


