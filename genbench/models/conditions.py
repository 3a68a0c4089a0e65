"""Conditional generation: the conditions a model declares, checking them, and how the pipeline draws them.

A model is *conditional* when its class sets `conditional = True` (genbench/models/base.py): it then accepts
`sample(n, seed, condition=y)` with `y` a length-`n` sequence of integer class labels in `0..K-1`, where
`K = model.condition_classes` (the dataset's `num_classes`: class labels of a labelled image dataset), and
returns sample i drawn for class y[i]. `condition=None` leaves the class to the model (the classifier-free-guided
DDPM samples unconditionally, through its null label).

The pipeline draws the conditions of a job from a stated distribution (a suite dataset's `conditions` key), and
keeps every sample's condition beside it (metrics read it as `EvalContext.fake_labels`):

- "uniform": every class the same share: class c gets floor(n/K) samples, the first n mod K classes one more;
- "heldout": the reference split's label frequencies: class c gets n * p_c samples, rounded by largest
  remainders (ties to the lower class), so the counts sum to n.

Either way the n labels are then put in a fixed pseudo-random order (`torch.randperm` seeded with
`CONDITION_ORDER_SEED`, independent of the job seed), so every chunk of samples mixes classes and the same
(distribution, n, K) always gives the same labels. `condition_protocol` is what a score's protocol records.

Text models (issue #23) take prefixes instead of labels: a text dataset table with `prefix_length = L` asks each
text model to continue n held-out prefixes of L characters (`draw_prefixes`; protocol: `prefix_protocol`), and
sample i is prefix i followed by its continuation (reference_models/text_prefix.py).
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch

from genbench.errors import InvalidInputError

CONDITION_DISTRIBUTIONS = ("uniform", "heldout")
CONDITION_ORDER_SEED = 20240602


def check_condition(condition: Any, n: int, num_classes: Optional[int], who: str) -> torch.Tensor:
    """`condition` as a (n,) int64 CPU tensor of class labels in 0..num_classes-1; InvalidInputError saying
    what is wrong otherwise (an unconditional model, a label outside the declared classes, a wrong length or a
    non-integer type)."""
    if num_classes is None:
        raise InvalidInputError(f"{who} is unconditional: it takes no condition (call sample(n, seed) without "
                                "condition=, or use a class-conditional model)")
    if isinstance(condition, np.ndarray):
        condition = torch.from_numpy(np.ascontiguousarray(condition))
    elif not isinstance(condition, torch.Tensor):
        try:
            condition = torch.as_tensor(list(condition))
        except (TypeError, ValueError, RuntimeError):
            raise InvalidInputError(f"{who}: condition must be a sequence of {n} integer class labels, got "
                                    f"{type(condition).__name__}") from None
    if condition.dtype == torch.bool or condition.dtype.is_floating_point or condition.dtype.is_complex:
        raise InvalidInputError(f"{who}: condition must hold integer class labels 0..{num_classes - 1}, got dtype "
                                f"{condition.dtype}")
    condition = condition.reshape(-1).to("cpu", torch.int64)
    if condition.numel() != n:
        raise InvalidInputError(f"{who}: {condition.numel()} conditions for {n} samples; give one class label per "
                                "sample")
    if n:
        lo, hi = int(condition.min()), int(condition.max())
        if lo < 0 or hi >= num_classes:
            bad = lo if lo < 0 else hi
            raise InvalidInputError(f"{who}: condition {bad} is outside the declared classes 0..{num_classes - 1} "
                                    f"({num_classes} classes)")
    return condition



def training_labels(model, labels: Any, n: int) -> torch.Tensor:
    """The labels a class-conditional model's `fit(train, labels=y)` was given, checked (one class label in
    0..K-1 per training item, as `check_condition`); InvalidInputError when they are missing."""
    if labels is None:
        raise InvalidInputError(f"model {model.name!r} is class-conditional: fit(train, labels=y) needs the "
                                f"training labels of {model.info.name!r}")
    return check_condition(labels, n, model.condition_classes, f"model {model.name!r} (training labels)")

def class_counts(n: int, num_classes: int, distribution: str, heldout_labels: Optional[torch.Tensor] = None) -> list:
    """How many of n samples each class gets under `distribution` (module docstring); sums to n."""
    if distribution not in CONDITION_DISTRIBUTIONS:
        from genbench.registry import unknown_name_message

        raise InvalidInputError(unknown_name_message("condition distribution", distribution, CONDITION_DISTRIBUTIONS))
    K = int(num_classes)
    if distribution == "uniform":
        return [n // K + (1 if c < n % K else 0) for c in range(K)]
    if heldout_labels is None or len(heldout_labels) == 0:
        raise InvalidInputError("conditions = 'heldout' needs the reference split's labels, which are missing")
    freq = torch.bincount(torch.as_tensor(heldout_labels).reshape(-1).long(), minlength=K)[:K].double()
    quota = freq / freq.sum() * n
    counts = [int(v) for v in torch.floor(quota).tolist()]
    rem = (quota - torch.floor(quota)).tolist()
    order = sorted(range(K), key=lambda c: (-rem[c], c))
    for c in order[: n - sum(counts)]:
        counts[c] += 1
    return counts


def draw_conditions(n: int, num_classes: int, distribution: str,
                    heldout_labels: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The n class labels a job asks for (module docstring): (n,) int64."""
    counts = class_counts(n, num_classes, distribution, heldout_labels)
    y = torch.cat([torch.full((k,), c, dtype=torch.int64) for c, k in enumerate(counts)]) if n else \
        torch.empty(0, dtype=torch.int64)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(CONDITION_ORDER_SEED))
    return y[perm]


def condition_protocol(distribution: str, num_classes: int) -> dict:
    """What a conditional score's protocol says about its conditions."""
    how = ("balanced: floor(n/K) per class, the first n mod K classes one more" if distribution == "uniform" else
           "the reference split's label frequencies, largest-remainder rounding")
    return {"conditions": distribution, "num_classes": int(num_classes), "condition_counts": how}


# ---------------------------------------------------------------------------------------------- text prefixes
PREFIX_SEED = 20240604  # the held-out windows a text job's prefixes are drawn from (fixed for every job and seed)


def draw_prefixes(split, n: int, length: int, sample_mode: str) -> list:
    """The n prefixes a text job asks its models to continue: held-out text of `length` characters that follows a
    line start of the reference split (the models continue "\\n" + prefix). Line datasets ("line"): the first
    `length` characters of held-out lines longer than `length` (so each has a true continuation); running text
    ("stream"): the `length` characters after a line start, for every line start with at least `length` + 1
    characters after it. The candidates are put in an order drawn with `PREFIX_SEED` (independent of the job
    seed) and taken in that order, cycling when there are fewer than n; so the same (split, n, length, mode)
    always gives the same prefixes, and they are kept in that order with the samples."""
    if int(length) < 1:
        raise InvalidInputError(f"prefix_length must be >= 1, got {length}")
    L = int(length)
    if sample_mode == "line":
        cands = [ln[:L] for ln in split.lines if len(ln) > L]
    else:
        text = split.text
        cands = [text[s:s + L] for s in [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n"]
                 if s + L < len(text)]
    if not cands:
        raise InvalidInputError(f"the held-out split has no {'line' if sample_mode == 'line' else 'line start'} with "
                                f"more than {L} characters to draw prefixes of {L} characters from; use a shorter "
                                "prefix_length")
    order = torch.randperm(len(cands), generator=torch.Generator().manual_seed(PREFIX_SEED)).tolist()
    return [cands[order[i % len(order)]] for i in range(int(n))]


def prefix_protocol(length: int, sample_mode: str) -> dict:
    """What a prefix-conditioned score's protocol says about its prefixes."""
    where = ("the first {L} characters of held-out lines longer than {L}" if sample_mode == "line" else
             "the {L} characters after a line start of the held-out text")
    return {"conditions": "held-out text prefixes", "prefix_length": int(length),
            "prefixes": where.format(L=int(length)) + f", in an order drawn with seed {PREFIX_SEED}, cycling "
            "if there are fewer than n_samples", "prefix_seed": PREFIX_SEED}
