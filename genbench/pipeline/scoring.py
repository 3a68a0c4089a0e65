"""Scoring one sampler setting of a job: draw the samples, check them, save previews, featurise, build the
EvalContext and compute the suite's metrics. The modality-specific parts come from the dataset's scorer
(genbench/pipeline/scorers.py); `genbench eval` scores replayed samples through the same `score_samples`."""

from __future__ import annotations

import dataclasses
import inspect
import json
import sys
from pathlib import Path
from typing import Any, Optional

import torch

from genbench.defaults import FEATURE_BATCH_SIZE
from genbench.errors import InvalidInputError
from genbench.fileio import atomic_write_text
from genbench.pipeline.jobs import JobFailure, JobSpec
from genbench.pipeline.progress import progress_bar
from genbench.pipeline.scorers import PREVIEW_N, scorer_for
from genbench.suite import likelihood_metrics


def check_samples(x, info, n: int, what: str = "samples") -> None:
    """Raise JobFailure unless x is n valid samples of the dataset."""
    scorer_for(info.modality).check(x, info, n, what)


def real_subset(split, n: int, text_unit: Optional[tuple] = None):
    """A fixed pseudo-random subset of `n` items of a split (all of it if smaller); text: `n` units shaped like
    the model's samples (`text_unit`, see `TextScorer.real_subset`)."""
    return scorer_for(split.info.modality).real_subset(split, n, text_unit)


def draw_samples(model, n: int, seed: int, batch_size: int, quiet: bool, desc: str, conditions=None):
    """n samples in chunks (progress bar); chunk i uses seed*1000003 + i, so results depend only on
    (seed, n, batch_size). `conditions`: n class labels for a conditional model (chunk i gets its slice)."""
    out = []
    bar = progress_bar(quiet, total=n, desc=desc, unit="sample")
    done, i = 0, 0
    try:
        while done < n:
            b = min(batch_size, n - done)
            kw = {} if conditions is None else {"condition": conditions[done:done + b]}
            x = model.sample(b, seed=seed * 1_000_003 + i, batch_size=b, **kw)
            out.append(x)
            done += b
            i += 1
            bar.update(b)
    finally:
        bar.close()
    if out and isinstance(out[0], torch.Tensor):
        return torch.cat(out, 0)
    return [s for chunk in out for s in chunk]


def result_rows(results, variant: str = "") -> list[dict]:
    """MetricResults as the metric rows a job records (dicts with "variant")."""
    rows = []
    for m in results:
        d = m.to_dict()
        d["variant"] = variant
        rows.append(d)
    return rows


def feature_protocol(ext) -> dict:
    """The extractor's protocol with `pinned` stated (False for a user extractor whose weights carry no hash, or
    a classifier built here: reports say so, and its numbers are not comparable across machines)."""
    p = dict(ext.protocol)
    if "pinned" not in p:
        p["pinned"] = bool(getattr(ext, "pinned", False) or getattr(ext, "weightless", False)
                           or p.get("weights_sha256"))
    return p


def model_precision(model, device) -> str:
    """The model's `precision(device)` ('bf16-autocast' / 'float32'); 'float32' for objects without one (user
    models that do not subclass GenerativeModel, replayed samples)."""
    fn = getattr(model, "precision", None)
    return str(fn(device)) if callable(fn) else "float32"


@dataclasses.dataclass(frozen=True)
class JobConditions:
    """What one job asks its model for: n class labels or n text prefixes (never both), and their protocol."""

    labels: Any = None  # a LongTensor of n class labels
    prefixes: Optional[list] = None  # n held-out text prefixes
    protocol: dict = dataclasses.field(default_factory=dict)

    @property
    def condition(self) -> Any:
        """What `sample(n, seed, condition=...)` is given (None: an unconditional draw)."""
        return self.labels if self.labels is not None else self.prefixes


def job_conditions(job: JobSpec, worker, model, info) -> JobConditions:
    """The n class labels a conditional model is asked for, with their protocol; nothing for an unconditional
    model. The distribution is the dataset table's `conditions` ("uniform" when not given; conditions.py). A model
    whose declared classes differ from the dataset's, or a dataset without labels, fails the job. A text dataset
    with `prefix_length`: the n prefix strings and their protocol (`job_prefixes`)."""
    if getattr(job.dataset, "prefix_length", 0):
        prefixes, proto = job_prefixes(job, worker, model, info)
        return JobConditions(prefixes=prefixes, protocol=proto)
    if not getattr(model, "conditional", False):
        return JobConditions()
    from genbench.models.conditions import condition_protocol, draw_conditions

    K = info.num_classes
    if not K:
        raise JobFailure(f"model {job.model.name!r} is class-conditional but dataset {info.name!r} has no class labels")
    declared = getattr(model, "condition_classes", None)
    if declared != K:
        raise JobFailure(f"model {job.model.name!r} declares {declared} classes, but dataset {info.name!r} has {K}: "
                         f"a conditional model must accept the dataset's labels 0..{K - 1}")
    dist = job.dataset.conditions or "uniform"
    held = None
    if dist == "heldout":
        held = getattr(worker.split(job.dataset.name, job.dataset.reference), "y", None)
        if held is None:
            raise JobFailure(f"conditions = 'heldout': the {job.dataset.reference} split of {info.name!r} has no labels")
    return JobConditions(labels=draw_conditions(job.dataset.n_samples, K, dist, held),
                         protocol=condition_protocol(dist, K))


def job_prefixes(job: JobSpec, worker, model, info) -> tuple[list, dict]:
    """(the n held-out prefixes a text model is asked to continue, their protocol): `draw_prefixes` over the
    reference split, in the dataset's own sample mode (the same prefixes for every model). A model that cannot
    continue a prefix (text-copy, a replayed sampler), a prefix that does not fit the model's context with the "\n"
    before it, or a multi-line prefix for a model that samples single lines fails the job."""
    from genbench.models.conditions import draw_prefixes, prefix_protocol
    from genbench.models.text import resolve_sample_mode

    L, who = int(job.dataset.prefix_length), f"model {job.model.name!r}"
    if not getattr(model, "takes_prefixes", False):
        raise JobFailure(f"{who} cannot continue a text prefix (it does not generate character by character), but "
                         f"[datasets.{info.name}] asks for prefix_length = {L}: list the model under another dataset "
                         "table (its `datasets = [...]`) or drop prefix_length")
    ctx = getattr(model, "max_context", None)
    if ctx and L + 1 > int(ctx):
        raise JobFailure(f"prefix_length = {L} does not fit {who}'s context of {ctx} characters (the prefix and the "
                         f"'\n' before it: {L + 1}); use prefix_length <= {int(ctx) - 1}, or a longer context "
                         "(e.g. overrides = { block_size = ... })")
    ref = worker.split(job.dataset.name, job.dataset.reference)
    mode = resolve_sample_mode(ref)
    try:
        prefixes = draw_prefixes(ref, job.dataset.n_samples, L, mode)
    except InvalidInputError as e:
        raise JobFailure(f"[datasets.{info.name}] prefix_length = {L}: {e}") from None
    line_model = getattr(model, "sample_mode", None) == "line"
    longest = getattr(getattr(model, "config", None), "max_line_length", None)
    if line_model and (any("\n" in p for p in prefixes) or (longest is not None and L >= int(longest))):
        raise JobFailure(f"{who} samples single lines of at most {longest} characters, but the prefixes of "
                         f"{info.name!r} ({L} characters{', across line ends' if mode != 'line' else ''}) do not fit "
                         "in one: use a shorter prefix_length")
    return prefixes, prefix_protocol(L, mode)


def _check_prefixed(fake: list, prefixes: list, who: str) -> None:
    """JobFailure unless every sample starts with its prefix (the condition a text sample is scored against)."""
    bad = [i for i, (s, p) in enumerate(zip(fake, prefixes)) if not (isinstance(s, str) and s.startswith(p))]
    if bad:
        raise JobFailure(f"{who}: {len(bad)} of {len(fake)} samples do not start with the prefix they were asked to "
                         f"continue (first: sample {bad[0]}, prefix {prefixes[bad[0]]!r}); sample(n, seed, "
                         "condition=prefixes) must return each prefix followed by its continuation")


def score(job: JobSpec, worker, model, info, variant: str, artifacts: list, art_rel: str,
          likelihood: bool = True, conditions: Optional[tuple] = None) -> list[dict]:
    """Sample, featurise and compute the suite's metrics for one sampler setting. `conditions`: (labels,
    protocol) given with replayed samples (genbench eval); otherwise drawn by `job_conditions`."""
    from genbench.metrics import METRICS, compute_metrics

    spec = job.dataset
    sc = scorer_for(info.modality)
    out_dir = Path(job.out_dir)
    q = job.quiet
    n = spec.n_samples
    tag = f" [{variant}]" if variant else ""
    prefixes = None
    if conditions is None:
        asked = job_conditions(job, worker, model, info)
        fake = draw_samples(model, n, job.seed, job.speed.batch_size, q, f"sample {job.job_id}{tag}", asked.condition)
        fake_labels, prefixes, cond_proto = asked.labels, asked.prefixes, asked.protocol
    else:
        fake_labels, cond_proto = conditions
        fake = draw_samples(model, n, job.seed, job.speed.batch_size, q, f"sample {job.job_id}{tag}")
    sc.check(fake, info, n)
    suffix = f"-{variant}" if variant else ""
    if prefixes is not None:
        _check_prefixed(fake, prefixes, f"model {job.model.name!r}")
        pre_rel = f"{art_rel}/prefixes{suffix}.json"
        atomic_write_text(out_dir / pre_rel, json.dumps(prefixes, ensure_ascii=False, indent=0))
        artifacts.append(("text_prefixes", pre_rel))
    prev_rel = f"{art_rel}/samples_preview{suffix}{sc.preview_ext}"
    sc.save_preview(out_dir / prev_rel, fake, fake_labels)
    artifacts.append(("samples_preview" if not variant else f"samples_preview:{variant}", prev_rel))
    ref = worker.split(spec.name, spec.reference)
    unit = sc.unit(model, ref, fake)
    if not variant:
        real_rel = f"artifacts/{spec.name}/real_preview{'-' + '-'.join(map(str, unit)) if unit else ''}{sc.preview_ext}"
        if not (out_dir / real_rel).exists():
            sc.save_preview(out_dir / real_rel, sc.real_subset(ref, PREVIEW_N, unit))
        artifacts.append(("real_preview", real_rel))

    lik = likelihood_metrics()
    names = [m for m in spec.metrics if (likelihood or m not in lik)]
    need = set()
    for m in names:
        need |= set(getattr(METRICS.get(m), "requires", ()) or ())

    ext = worker.extractor(spec.features, job.device)
    shards = getattr(job, "feature_shards", None)
    real_x, ref_stats = worker.reference(spec, spec.reference, n, job.device, q, unit, sharding=shards)
    real_f = ref_stats.features
    real_stats = (ref_stats.mu, ref_stats.sigma) if ref_stats.mu is not None else None
    fake_f = worker.features(spec.features, job.device, fake, FEATURE_BATCH_SIZE, q,
                             f"fake features {job.job_id}{tag}", shards)
    # what a paired bootstrap between two runs needs (genbench/results/paired.py): both feature sets and the reference's identity
    from genbench.results.stored_features import save_features

    artifacts.extend(save_features(out_dir, art_rel, spec.name, variant, real_f, fake_f, ref_stats.key))
    prec = model_precision(model, job.device)
    ctx_fields: dict[str, Any] = {
        "real_features": real_f, "fake_features": fake_f, "feature_protocol": feature_protocol(ext),
        "real_stats": real_stats, **sc.sample_fields(real_x, fake, info), "seed": job.seed,
        "n_bootstrap": job.n_bootstrap, "dataset": spec.name, "reference_split": spec.reference,
        "modality": info.modality, "device": job.device, "num_classes": info.num_classes,
        "extra_protocol": {**({"sampler": variant} if variant else {}),
                           **({"precision": prec} if prec != "float32" else {})},
        "fake_labels": fake_labels, "condition_protocol": cond_proto, "text_prefixes": prefixes,
        **spec.options,
    }
    if fake_labels is not None:
        ctx_fields["real_labels"] = sc.real_subset_labels(ref, n)
    if need & {"train_features", "train_samples"}:
        n_tr = spec.n_train_features or n
        tr_x, tr_f, _ = worker.real_features(spec, "train", n_tr, job.device, out_dir, q, unit, sharding=shards)
        ctx_fields.update(train_samples=sc.train_samples(tr_x), train_features=tr_f)
    if "train_texts" in need:
        ctx_fields["train_texts"] = sc.train_texts(worker.split(spec.name, "train"))
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
    if "fake_inception_probs" in need:  # Inception Score: NVIDIA's full Inception file, or a skip saying how to get it
        from genbench.features.inception_full import inception_probs_fields

        ctx_fields.update(inception_probs_fields(fake, job.device))
    if "log_prob" in need or any(m in lik for m in names):
        if model.log_prob_kind != "none":
            ctx_fields.update(sc.likelihood_fields(model, info, spec, ref))
        else:
            ctx_fields["log_prob_kind"] = "none"
    from genbench.metrics.context import EvalContext

    ctx = make_context(EvalContext, ctx_fields)
    if "prdc" in names:  # the reference's k-NN radii from the shared cache: only the fake set's distances remain
        ctx.real_radii = _reference_radii(worker, ref_stats, ctx, int(fake_f.shape[0]))
    results = compute_metrics(names, ctx) if names else []
    skipped = dict(getattr(ctx, "skipped", {}) or {})
    if skipped:
        sk_rel = f"{art_rel}/skipped_metrics{suffix}.json"
        atomic_write_text(out_dir / sk_rel, json.dumps(skipped, indent=1))
        artifacts.append(("skipped_metrics", sk_rel))
        if not q:
            for k, why in skipped.items():
                print(f"  skipped {k}: {why}", file=sys.stderr, flush=True)
    return result_rows(results, variant)


def _reference_radii(worker, ref, ctx, n_fake: int):
    """The reference's squared k-NN radii for this context's P/R/D/C settings (None when they do not apply:
    the metric then computes them itself, or reports the problem)."""
    from genbench.errors import InvalidInputError
    from genbench.metrics.manifold import _resolve_ks

    try:
        k_pr, k_dc, _ = _resolve_ks(ctx.k_pr, ctx.k_dc, ctx.prdc_convention, None)
        if ref.features.shape[0] <= max(k_pr, k_dc):
            return None
        return worker.stats_cache.radii(ref, (k_pr, k_dc), n_fake, ctx.device)
    except InvalidInputError:
        return None


def score_samples(job: JobSpec, worker, sampler, info, artifacts: list, art_rel: str,
                  labels: Optional[torch.Tensor] = None) -> list[dict]:
    """Public seam for `genbench eval` (genbench/evaluate.py): score what `sampler.sample(n, seed=, batch_size=)`
    returns exactly as a job's model samples are scored (same checks, real subset, features, EvalContext and
    metrics; likelihood metrics are skipped when `sampler.log_prob_kind == "none"`). `labels`: the class each
    sample was generated for (conditional samples), checked against the dataset's classes. Returns metric rows."""
    conditions = None
    if labels is not None:
        from genbench.models.conditions import check_condition

        K = info.num_classes
        if not K:
            raise InvalidInputError(f"the samples carry labels 'y', but dataset {info.name!r} has no classes to "
                                    "condition on; drop 'y' or score against a labelled dataset")
        y = check_condition(labels, job.dataset.n_samples, int(K), "the samples' labels 'y'")
        conditions = (y, {"conditions": "given with the samples", "num_classes": int(K)})
    return score(job, worker, sampler, info, variant="", artifacts=artifacts, art_rel=art_rel, conditions=conditions)


def make_context(cls, fields: dict):
    """An EvalContext from the fields it declares; the others (e.g. text metrics' nll_per_char, fake_texts)
    become attributes, which registered metrics read with getattr."""
    names = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set(inspect.signature(cls).parameters)
    ctx = cls(**{k: v for k, v in fields.items() if k in names})
    for k, v in fields.items():
        if k not in names:
            setattr(ctx, k, v)
    return ctx
