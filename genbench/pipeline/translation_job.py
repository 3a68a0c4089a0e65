"""One job of the translation track: a translation model (genbench/models/translation.py) on a translation dataset
(genbench/data/translation.py). The worker hands every job on a "translation" dataset here.

  1. train the model on the unpaired training split, or load its cached checkpoint (same key rules as the other
     jobs: model config, dataset identity, seed, budget, model code);
  2. per direction, translate `n_samples` source images of the paired held-out split (all of it, or a fixed
     seeded subset: `heldout_indices`), check what came
     back (shape, finite) and translate it back; a model that returns the wrong shape, NaN/inf, or refuses the
     input fails the job with the reason (the run goes on);
  3. score both directions (genbench/metrics/translation.py) with the target domain's pinned classifier
     (`classifier:<domain>`); the realism reference is the target domain's training images; with the suite's
     `n_bootstrap` > 0, FD, content kept and cycle L1 get bootstrap intervals (seed 0, like KID's subsets);
  4. time translation a2b (images/s at the suite's speed batch size, latency of one image), count parameters
     (generators only), record training time and peak memory; save before/after previews for the report.
"""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

import numpy as np
import torch

from genbench.errors import GenbenchError
from genbench.fileio import atomic_write_bytes
from genbench.pipeline.jobs import JobFailure, JobResult
from genbench.pipeline.training import train_or_load

PREVIEW_N = 16
PREVIEW_KIND = "translation_preview"


def heldout_indices(total: int, n: int) -> torch.Tensor:
    """The held-out items scored when n < total: a fixed pseudo-random subset (seed REAL_SUBSET_SEED, sorted), the
    same for every model and seed (the split is sorted by class, so its first n items would not do)."""
    from genbench.defaults import REAL_SUBSET_SEED

    if n >= total:
        return torch.arange(total)
    return torch.randperm(total, generator=torch.Generator().manual_seed(REAL_SUBSET_SEED))[:n].sort().values


def _checked(model, x: torch.Tensor, direction: str, what: str) -> torch.Tensor:
    """model.translate(x, direction), or JobFailure naming what went wrong."""
    try:
        y = model.translate(x, direction)
    except GenbenchError as e:
        raise JobFailure(f"{what}: {e}") from e
    except RuntimeError as e:  # e.g. batches of different shapes from a user's _translate
        raise JobFailure(f"{what}: translate({direction}) raised RuntimeError: {str(e).splitlines()[0]}") from e
    if not isinstance(y, torch.Tensor):
        raise JobFailure(f"{what}: translate({direction}) returned {type(y).__name__}, expected a tensor")
    if tuple(y.shape) != tuple(x.shape):
        raise JobFailure(f"{what}: translate({direction}) returned shape {tuple(y.shape)} for input "
                         f"{tuple(x.shape)}; a translation has the shape of its input")
    bad = int((~torch.isfinite(y)).sum())
    if bad:
        raise JobFailure(f"{what}: translate({direction}) returned {bad} non-finite values "
                         f"({int(torch.isnan(y).sum())} NaN) for {len(x)} images")
    return y.float()


def _reference_features(worker, ext, dataset: str, domain: str, images: torch.Tensor, quiet: bool):
    key = ("translation", dataset, domain, ext.protocol.get("id", ext.name))
    if key not in worker._features:
        worker._features[key] = worker.extract(ext, images, 256, quiet, f"real features: {dataset}/{domain} train")
    return worker._features[key]


def _save_preview(path: Path, previews: dict) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: v.detach().cpu().float().numpy() for k, v in previews.items()})
    atomic_write_bytes(path, buf.getvalue())


def run_translation_job(job, worker) -> JobResult:
    from genbench.metrics.translation import DIRECTIONS, TRANSLATION_METRICS, TranslationScores, compute
    from genbench.models.translation import TranslationModel, reverse
    from genbench.pipeline import speed as S
    from genbench.pipeline.scoring import result_rows

    t_job = time.perf_counter()
    out_dir, device, q = Path(job.out_dir), job.device, job.quiet
    mem_source = S.reset_peak_memory(device)
    spec, mspec = job.dataset, job.model
    ds = worker.dataset(spec.name)
    info = ds.info
    train, test = worker.split(spec.name, "train"), worker.split(spec.name, spec.reference)
    if not getattr(test, "paired", False):
        raise JobFailure(f"{spec.name}: the reference split {spec.reference!r} is not paired; translation is scored "
                         "on the paired held-out split (reference = 'test')")
    def check(model):
        if not isinstance(model, TranslationModel):
            raise JobFailure(f"model {mspec.name!r} is not a translation model (a genbench.models.translation."
                             "TranslationModel with translate(x, direction))")

    def fit(model, monitor):
        try:
            model.fit(train, budget=None, seed=job.seed, device=device, callbacks=[monitor])
        except GenbenchError as e:
            raise JobFailure(f"model {mspec.name!r}: fit failed: {e}") from e

    # 1. train or load (genbench/pipeline/training.py)
    t = train_or_load(job, worker, fit, check)
    model, config, cache_key, ckpt_rel, art_rel = t.model, t.config, t.cache_key, t.ckpt_rel, t.art_rel
    train_seconds, cached, artifacts = t.train_seconds, t.cached, list(t.artifacts)

    # 2-3. translate both ways and score
    n = min(int(spec.n_samples), len(test.a))
    names = [m for m in spec.metrics if m in TRANSLATION_METRICS]
    rows, previews = [], {}
    for d in DIRECTIONS:
        src, tgt = ("a", "b") if d == "a2b" else ("b", "a")
        idx = heldout_indices(len(test.a), n)
        x, y = test.domain(src)[idx], test.labels(src)[idx]
        if not q:
            print(f"  translating {n} held-out {ds.domains[src]} images {d}, and back", file=sys.stderr, flush=True)
        fwd = _checked(model, x, d, f"model {mspec.name!r}")
        back = _checked(model, fwd, reverse(d), f"model {mspec.name!r}")
        ext = worker.extractor(f"classifier:{ds.domains[tgt]}", device)
        real = _reference_features(worker, ext, spec.name, tgt, train.domain(tgt), q)
        fake = worker.extract(ext, fwd, 256, q, f"features of the {d} translations")
        probs = ext.predict_proba(fwd).double().cpu()
        from genbench.pipeline.scoring import feature_protocol

        proto = {"dataset": spec.name, "source_domain": ds.domains[src], "target_domain": ds.domains[tgt],
                 "heldout": f"{spec.reference} (paired)", "reference": f"{ds.domains[tgt]} training images of "
                 f"{spec.name} (n={len(train.domain(tgt))})", "recipe_sha256": test.meta.get("recipe_sha256", "")}
        opts = spec.options or {}
        scores = TranslationScores(d, x, y, back, fake, probs, real, feature_protocol(ext), int(info.num_classes or 10),
                                   proto, kid_subsets=int(opts.get("kid_subsets", 100)),
                                   kid_subset_size=int(opts.get("kid_subset_size", max(2, n // 2))), seed=0,
                                   n_bootstrap=int(job.n_bootstrap),
                                   bootstrap_alpha=float(opts.get("bootstrap_alpha", 0.05)))
        rows += result_rows(compute(names, scores))
        show = torch.linspace(0, n - 1, min(PREVIEW_N, n)).round().long()  # spread over the (class-sorted) split
        previews.update({f"{d}_source": x[show], f"{d}_translated": fwd[show], f"{d}_cycled": back[show]})
    prev_rel = f"{art_rel}/translation_preview.npz"
    _save_preview(out_dir / prev_rel, previews)
    artifacts.append((PREVIEW_KIND, prev_rel))

    # 4. speed and cost
    bs = int(job.speed.batch_size)
    pool = test.a[: max(1, min(bs, len(test.a)))]
    pool = pool.repeat((bs + len(pool) - 1) // len(pool), 1, 1, 1)[:bs]

    def translate_fn(k, _seed):
        return model.translate(pool[:k], "a2b", batch_size=k)

    speed = S.sampling_speed(translate_fn, device, bs, job.speed.repeats, job.speed.warmup)
    for m in speed:
        m.protocol["what"] = "held-out domain a images translated a2b (translate(x, 'a2b'))"
    rows += result_rows(speed)
    rows += result_rows(S.cost_metrics(model, device, train_seconds, S.peak_memory_mb(device, mem_source), mem_source,
                                       cached))
    return JobResult(job.job_id, model.family, rows, artifacts, train_seconds, ckpt_rel, cache_key, config, cached,
                     time.perf_counter() - t_job)
