"""Plain words for what the runner records in its own terms.

The runner stores why it skipped a metric as the metric's own message ("metric 'bits_per_dim' needs EvalContext
field(s) log_prob, which are not set"). Reports turn it into what a reader can use ("gan: no likelihood (GANs
define none), so no bits/dim") by the model's family, and keep the raw reason beside it (the HTML title).
"""

from __future__ import annotations

from genbench.report.headline import label

_NO_LIKELIHOOD_SIGNS = ("log_prob", "no likelihood", "nll_per_char")

# Why a family has no likelihood, in a reader's words.
_WHY_NO_LIKELIHOOD = {
    "gan": "GANs define none",
    "baseline": "it replays or resamples training data, which defines none",
    "user": "samples alone carry none",
}
_COPIES = {"train-copy", "text-copy"}


def no_likelihood(metric: str, reason: str) -> bool:
    """Was `metric` skipped because the model has no likelihood?"""
    from genbench.metrics.registry import likelihood_metrics

    return metric in likelihood_metrics() and any(s in reason for s in _NO_LIKELIHOOD_SIGNS)


def why_no_likelihood(model: str, family: str) -> str:
    if model in _COPIES:
        return "it replays training samples, which defines none"
    return _WHY_NO_LIKELIHOOD.get(family, "the model defines none")


def skipped_words(model: str, family: str, metrics: list) -> list[str]:
    """One plain sentence per kind of reason for a model's skipped metrics: [(metric, raw reason)] -> sentences,
    e.g. "gan: no likelihood (GANs define none), so no bits/dim"."""
    lik = [m for m, why in metrics if no_likelihood(m, why)]
    out = []
    if lik:
        out.append(f"{model}: no likelihood ({why_no_likelihood(model, family)}), so no "
                   + ", ".join(label(m) for m in lik))
    for m, why in metrics:
        if m not in lik:
            out.append(f"{model}: {label(m)} not measured ({_plain_reason(why)})")
    return out


def _plain_reason(why: str) -> str:
    """A raw reason without the metric-name prefix the metrics put in front ("bits_per_dim: ...")."""
    head, sep, tail = why.partition(": ")
    return tail if sep and " " not in head else why


def grouped(skipped: list, families: dict) -> list[tuple[str, str]]:
    """[(model, metric, raw reason)] -> [(plain sentence, raw reasons joined)] in model order."""
    by_model: dict[str, list] = {}
    for model, metric, why in skipped:
        by_model.setdefault(model, []).append((metric, why))
    out = []
    for model, items in by_model.items():
        raw = "; ".join(f"{m}: {why}" for m, why in items)
        for sentence in skipped_words(model, families.get(model, ""), items):
            out.append((sentence, raw))
    return out
