"""Which metrics a leaderboard shows, in which order, under which label — the one place to change it.

Names are the canonical `MetricResult.name`s (see genbench/metrics). A metric missing from a run is simply left
out of its table; a run whose dataset has an unknown modality shows every metric it has, in `ALL_ORDER`.
"""

from __future__ import annotations

# Headline columns per dataset modality, in table order. near_copy_share (memorisation) is there because FD and
# friends are blind to a model that copies its training set (the train-copy baseline shows it).
HEADLINE: dict[str, tuple[str, ...]] = {
    "points": ("modes_covered", "hq_share", "hq_fraction", "mode_kl", "fd", "bits_per_dim", "nll", "near_copy_share",
               "samples_per_s"),
    "image": ("fd", "kid", "precision", "recall", "density", "coverage", "classes_covered", "bits_per_dim",
              "near_copy_share", "samples_per_s", "nfe"),
    "text": ("bits_per_char", "perplexity", "novelty", "distinct_2", "distinct_4", "fd_text", "chars_per_s"),
}

# Column label (the arrow from higher_is_better is added by the table code).
LABELS: dict[str, str] = {
    "fd": "FD",
    "kid": "KID",
    "precision": "precision",
    "recall": "recall",
    "density": "density",
    "coverage": "coverage",
    "hq_share": "high-quality %",
    "hq_fraction": "high-quality %",
    "modes_covered": "modes covered",
    "mode_kl": "reverse KL",
    "classes_covered": "classes covered",
    "class_kl": "class KL",
    "vendi": "Vendi",
    "near_copy_share": "near copies %",
    "nn_ratio": "train/held-out NN",
    "nn_train_heldout_ratio": "train/held-out NN",
    "bits_per_dim": "bits/dim",
    "nll": "NLL (nats)",
    "bits_per_char": "bits/char",
    "perplexity": "perplexity",
    "samples_per_s": "samples/s",
    "latency_ms": "latency (ms)",
    "nfe": "NFE",
    "train_seconds": "train s",
    "peak_memory_mb": "peak MB",
    "num_params": "params",
    "distinct_1": "distinct-1",
    "distinct_2": "distinct-2",
    "distinct_3": "distinct-3",
    "distinct_4": "distinct-4",
    "self_bleu": "self-BLEU",
    "novelty": "novelty",
    "fd_text": "FD (embeddings)",
    "precision_text": "precision (emb.)",
    "recall_text": "recall (emb.)",
    "chars_per_s": "chars/s",
    "chars_per_s_nocache": "chars/s (no cache)",
    "first_token_ms": "first token (ms)",
    "first_char_latency": "first char (ms)",
}

# Shares stored in [0, 1] that the tables show as percentages.
PERCENT = {"hq_share", "hq_fraction", "near_copy_share"}

# Order for "show everything" (unknown modality) and for metrics outside HEADLINE in the CSV export.
ALL_ORDER: tuple[str, ...] = tuple(dict.fromkeys(
    HEADLINE["image"] + HEADLINE["points"] + HEADLINE["text"] + tuple(LABELS)
))

# What the summary calls quality / diversity / speed / likelihood: the first metric of each list that the
# dataset's models report is the one the sentence is about.
CATEGORIES: dict[str, tuple[str, ...]] = {
    "quality": ("fd", "fd_text", "kid", "hq_share", "hq_fraction", "precision", "density", "precision_text"),
    "diversity": ("modes_covered", "classes_covered", "recall", "coverage", "mode_kl", "recall_text", "distinct_4",
                  "novelty", "vendi"),
    "speed": ("samples_per_s", "chars_per_s", "latency_ms", "first_char_latency", "first_token_ms"),
    "likelihood": ("bits_per_dim", "nll", "bits_per_char", "perplexity"),
    "memorisation": ("near_copy_share",),
}
# Categories the summary only mentions as a cost of leading elsewhere (nobody "leads" on not copying).
COST_ONLY = {"memorisation"}

# Speed metrics: figures put them on a log axis and the summary compares them as ratios.
RATIO_METRICS = {"samples_per_s", "chars_per_s", "latency_ms", "first_token_ms", "first_char_latency", "num_params", "peak_memory_mb",
                 "train_seconds", "nfe"}


def label(metric: str) -> str:
    return LABELS.get(metric, metric)


def headline_for(modality: str | None, available: set[str]) -> list[str]:
    """Headline metrics of a modality that the run actually has (unknown modality: all it has)."""
    if modality in HEADLINE:
        return [m for m in HEADLINE[modality] if m in available]
    known = [m for m in ALL_ORDER if m in available]
    return known + sorted(available - set(known))
