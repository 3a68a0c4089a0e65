"""Step 1 of every job: the trained model, from its checkpoint when one matches, else trained now and saved.

The checkpoint key is the model's name, config, training data identity, seed, budget and code version (and its
arithmetic precision when not float32), so any change retrains. A checkpoint that cannot be used (corrupt,
unverifiable, unsafe, incompatible) is a cache: it is deleted with a one-line warning and the model is trained
again. Training is seeded, watched by the progress monitor, and refused when a loss became non-finite. The
training history is written as the job's "history" artifact.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from genbench.fileio import atomic_write_text
from genbench.pipeline.jobs import JobFailure, code_version, seed_everything, slug, stable_hash


@dataclass
class Trained:
    model: Any
    config: dict
    cache_key: str
    ckpt_rel: str
    art_rel: str
    train_seconds: float
    cached: bool
    artifacts: list


def train_or_load(job, worker, fit: Callable[[Any, Any], None], check: Optional[Callable[[Any], None]] = None) -> Trained:
    """The job's model trained or loaded. `fit(model, monitor)` trains a fresh model, passing `monitor` as its
    callback (the caller knows its data: images, labels, two domains...); `check(model)` may refuse the model
    before anything runs (raise JobFailure)."""
    from genbench.models import create_model, load_model
    from genbench.pipeline import speed as S
    from genbench.pipeline.progress import TrainMonitor
    from genbench.pipeline.scoring import model_precision

    spec, mspec, device, out_dir = job.dataset, job.model, job.device, Path(job.out_dir)
    info = worker.dataset(spec.name).info
    if mspec.factory:  # a user's model ("package.module:factory"); registers it in this worker process too
        from genbench.models import register_external

        register_external(mspec.name, mspec.factory)

    def fresh():
        seed_everything(job.seed)
        return create_model(mspec.name, info, job.budget, mspec.overrides or None)

    model = fresh()
    if check is not None:
        check(model)
    config = model.config.to_dict()
    precision = model_precision(model, device)  # bf16 results differ from float32 ones: key and protocol
    key = {"model": mspec.name, "config": config, "data": worker.data_identity(spec.name), "seed": job.seed,
           "budget": job.budget, "code": code_version(type(model))}
    cache_key = stable_hash({**key, "precision": precision} if precision != "float32" else key)
    ckpt_rel = f"checkpoints/{slug(job.job_id)}-{cache_key[:12]}"
    ckpt = out_dir / ckpt_rel
    art_rel = f"artifacts/{slug(job.job_id)}"

    cached = (ckpt / "config.json").exists() and (ckpt / "weights.pt").exists()
    train_seconds = 0.0
    if cached:
        try:
            model = load_model(ckpt).to(device)
            train_seconds = float(model.history.seconds or 0.0)
        except Exception as e:  # a corrupt, unverifiable, unsafe or incompatible checkpoint is retrained
            discard_checkpoint(ckpt, ckpt_rel, e)
            cached = False
            model = fresh()
    if not cached:
        seed_everything(job.seed)
        mon = TrainMonitor(int(getattr(model.config, "steps", 0) or 0), f"train {job.job_id}", job.quiet)
        t0 = time.perf_counter()
        try:
            fit(model, mon)
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
    atomic_write_text(out_dir / hist_rel, json.dumps(finite_records(model.history.records)))
    return Trained(model, config, cache_key, ckpt_rel, art_rel, train_seconds, cached, [("history", hist_rel)])


def discard_checkpoint(ckpt: Path, ckpt_rel: str, err: Exception) -> None:
    """Warn (one line naming the checkpoint and why) and delete a checkpoint that cannot be used: it is a cache
    and the model is trained again."""
    why = str(err).splitlines()[0] if str(err) else ""
    print(f"  warning: checkpoint {ckpt_rel} could not be used ({type(err).__name__}: {why}); deleted, retraining",
          file=sys.stderr, flush=True)
    shutil.rmtree(ckpt, ignore_errors=True)


def finite_records(records) -> list:
    """History records with non-finite floats as None (JSON has no NaN/inf)."""
    return [{k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in r.items()} for r in records]
