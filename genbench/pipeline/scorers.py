"""One scorer per modality behind one interface: everything the pipeline does differently for tensors (points,
images) and for text -- how a split's training data and identity are read, how real items are drawn to match
the model's samples, how samples are checked and previewed, which EvalContext fields carry them, the held-out
likelihood inputs and any extra speed measurements. The worker and the scoring code never test a modality.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from genbench.defaults import REAL_SUBSET_SEED, TEXT_LIKELIHOOD_CHARS, TEXT_SPEED_CHARS
from genbench.fileio import atomic_write_bytes, atomic_write_text
from genbench.pipeline.jobs import JobFailure

PREVIEW_N = 64


class TensorScorer:
    """Points and images: samples are float tensors shaped (n, *info.shape)."""

    preview_ext = ".npz"

    def __init__(self, modality: str):
        self.modality = modality

    # ---- data ------------------------------------------------------------------------------------------------
    def train_data(self, split):
        """What `model.fit` receives."""
        return split.x

    def data_bytes(self, split) -> bytes:
        """The training bytes the checkpoint key's data digest is taken over."""
        return split.x.detach().cpu().contiguous().numpy().tobytes()

    def unit(self, model, split, fake=None) -> Optional[tuple]:
        """How real items must be cut to match the model's samples (text only)."""
        return None

    def subset_indices(self, split, n: int) -> Optional[torch.Tensor]:
        """The indices of `real_subset(split, n)` (sorted), or None for the whole split."""
        return _subset_index(len(split.x), n)

    def real_subset(self, split, n: int, unit: Optional[tuple] = None):
        """A fixed pseudo-random subset of `n` items of a split (all of it if smaller)."""
        idx = self.subset_indices(split, n)
        return split.x if idx is None else split.x[idx]

    def real_subset_labels(self, split, n: int) -> Optional[torch.Tensor]:
        """The labels of `real_subset(split, n)`'s items (None for a split without labels)."""
        if getattr(split, "y", None) is None:
            return None
        idx = self.subset_indices(split, n)
        return (split.y if idx is None else split.y[idx]).long()

    def subset_key(self, split, n: int, unit: Optional[tuple] = None) -> dict:
        """What identifies `real_subset(split, n, unit)` within the split (reference-statistics key)."""
        idx = self.subset_indices(split, n)
        if idx is None:
            return {"n": len(split.x), "indices": "all"}
        return {"n": int(idx.numel()), "indices_sha256": hashlib.sha256(idx.to(torch.int64).numpy().tobytes()).hexdigest()}

    # ---- samples ---------------------------------------------------------------------------------------------
    def check(self, x, info, n: int, what: str = "samples") -> None:
        """Raise JobFailure unless x is n valid samples of the dataset."""
        if not isinstance(x, torch.Tensor):
            raise JobFailure(f"{what}: expected a tensor, got {type(x).__name__}")
        want = (n, *tuple(info.shape))
        if tuple(x.shape) != want:
            raise JobFailure(f"{what}: wrong shape {tuple(x.shape)}, expected {want}")
        bad = (~torch.isfinite(x)).sum().item()
        if bad:
            nan = torch.isnan(x).sum().item()
            raise JobFailure(f"{what}: {bad} non-finite values ({nan} NaN, {bad - nan} inf) in {n} samples")

    def save_preview(self, path: Path, x, labels=None) -> None:
        """The first PREVIEW_N samples as `x` (and their conditions as `y`, for conditional samples)."""
        buf = io.BytesIO()
        arrays = {"x": x[:PREVIEW_N].detach().cpu().float().numpy().astype(np.float32)}
        if labels is not None:
            arrays["y"] = torch.as_tensor(labels)[:PREVIEW_N].cpu().numpy().astype(np.int64)
        np.savez_compressed(buf, **arrays)
        atomic_write_bytes(path, buf.getvalue())

    # ---- metric inputs ---------------------------------------------------------------------------------------
    def sample_fields(self, real_x, fake, info) -> dict:
        """EvalContext fields that carry the samples themselves."""
        return {"real_samples": real_x, "fake_samples": fake, "data_dim": info.dim}

    def train_samples(self, tr_x):
        return tr_x

    def train_texts(self, train_split):
        return None

    def likelihood_fields(self, model, info, spec, ref_split) -> dict:
        """log_prob of the first `n_likelihood` (default n_samples) reference items of the fixed real subset."""
        real_x = self.real_subset(ref_split, spec.n_likelihood or spec.n_samples)
        lp = model.log_prob(real_x)
        if not torch.isfinite(lp).all():
            bad = (~torch.isfinite(lp)).sum().item()
            raise JobFailure(f"log_prob gave {bad} non-finite values on {len(lp)} real {info.name} examples")
        return {"log_prob": lp.double(), "log_prob_kind": model.log_prob_kind, "data_dim": info.dim}

    def extra_speed(self, model, repeats: int) -> list:
        """Speed results beyond samples/s and latency (MetricResults)."""
        return []


class TextScorer(TensorScorer):
    """Text: samples are lists of strings shaped like the text models' samples (genbench/models/text.py)."""

    preview_ext = ".json"

    def train_data(self, split):
        return split

    def data_bytes(self, split) -> bytes:
        return split.text.encode("utf-8")

    def unit(self, model, split, fake=None) -> tuple:
        """(sample_mode, sample_length) of what `model` generates: a genbench text model states both; for another
        sampler (genbench eval) the mode comes from the split and the length from the samples (median)."""
        from genbench.models.text import DEFAULT_SAMPLE_LENGTH, resolve_sample_mode

        mode = getattr(model, "sample_mode", None)
        if mode not in ("line", "stream"):
            mode = resolve_sample_mode(split)
        length = getattr(getattr(model, "config", None), "sample_length", None)
        if not length:
            lens = sorted(len(s) for s in fake or [])
            length = lens[len(lens) // 2] if lens else DEFAULT_SAMPLE_LENGTH
        return (mode, int(length) if mode == "stream" else 0)

    def real_subset(self, split, n: int, unit: Optional[tuple] = None) -> list:
        """Real text items shaped like the text models' samples, drawn with
        `genbench.metrics.text.reference_texts`: `unit` = (sample_mode, sample_length) of the model; "line" ->
        `n` whole lines (names), "stream" -> `n` passages of exactly sample_length characters starting at line
        boundaries (shakespeare-char). Without a unit: the split's own mode and the default sample length."""
        from genbench.metrics.text import reference_texts
        from genbench.models.text import DEFAULT_SAMPLE_LENGTH, resolve_sample_mode

        mode, length = unit if unit is not None else (resolve_sample_mode(split), DEFAULT_SAMPLE_LENGTH)
        return reference_texts(split, n, mode, int(length), seed=REAL_SUBSET_SEED)

    def subset_key(self, split, n: int, unit: Optional[tuple] = None) -> dict:
        """Text subsets are drawn by a rule, not indices: the rule, its seed, size and unit identify them."""
        from genbench.models.text import DEFAULT_SAMPLE_LENGTH, resolve_sample_mode

        mode, length = unit if unit is not None else (resolve_sample_mode(split), DEFAULT_SAMPLE_LENGTH)
        return {"n": int(n), "rule": "genbench.metrics.text.reference_texts", "seed": REAL_SUBSET_SEED,
                "unit": [str(mode), int(length)]}

    def check(self, x, info, n: int, what: str = "samples") -> None:
        if not isinstance(x, (list, tuple)) or len(x) != n or not all(isinstance(s, str) for s in x):
            raise JobFailure(f"{what}: expected a list of {n} strings, got {type(x).__name__} of length {_safe_len(x)}")

    def save_preview(self, path: Path, x, labels=None) -> None:
        atomic_write_text(path, json.dumps(list(x[:PREVIEW_N]), ensure_ascii=False, indent=0))

    def sample_fields(self, real_x, fake, info) -> dict:
        """Text metrics receive the strings."""
        return {"real_samples": real_x, "fake_samples": fake, "real_texts": real_x, "fake_texts": fake,
                "data_dim": None}

    def train_samples(self, tr_x):
        return None

    def train_texts(self, train_split) -> list:
        """The training lines (novelty)."""
        return list(train_split.lines)

    def likelihood_fields(self, model, info, spec, ref_split) -> dict:
        """nats/char over `n_likelihood` (default TEXT_LIKELIHOOD_CHARS) reference characters (running text: the first ones; line
        datasets: whole lines in a seeded random order, see `genbench.metrics.text.heldout_text`), with the window
        protocol (context, stride) in `nll_protocol`."""
        from genbench.metrics.text import heldout_text, nll_protocol

        max_chars = spec.n_likelihood or TEXT_LIKELIHOOD_CHARS
        text, text_proto = heldout_text(ref_split, max_chars, self.unit(model, ref_split)[0], seed=REAL_SUBSET_SEED)
        nats, count = model.nll_per_char(text)
        if not math.isfinite(float(nats)):
            raise JobFailure(f"nll_per_char gave {nats} on the {spec.reference} text of {info.name}")
        return {"nll_per_char": float(nats), "n_chars": int(count), "log_prob_kind": model.log_prob_kind,
                "nll_protocol": {**nll_protocol(model, None, None), **text_proto}}

    def extra_speed(self, model, repeats: int) -> list:
        """Characters/s with and without the key/value cache, first-character latency (models that generate
        character by character)."""
        if not hasattr(model, "generate_ids"):
            return []
        from genbench.metrics.text_speed import speed_metrics

        try:
            return speed_metrics(model, n_chars=TEXT_SPEED_CHARS, batch_size=1, repeats=repeats)
        except NotImplementedError:  # e.g. text-copy draws whole training passages: no per-character path
            return []


def _subset_index(N: int, n: int) -> Optional[torch.Tensor]:
    """Indices of the fixed real subset of n of N items (sorted), None for all of them."""
    if n >= N:
        return None
    return torch.randperm(N, generator=torch.Generator().manual_seed(REAL_SUBSET_SEED))[:n].sort().values


def _safe_len(x) -> str:
    try:
        return str(len(x))
    except TypeError:
        return "?"


SCORERS = {"points": TensorScorer("points"), "image": TensorScorer("image"), "text": TextScorer("text")}


def scorer_for(modality: str) -> TensorScorer:
    """The scorer of a modality (a dataset of another modality is scored as tensors)."""
    return SCORERS.get(modality) or TensorScorer(modality)
