"""`prefix_bpc`: do a text model's samples continue the prefixes they were asked to continue? (issue #23)

A text dataset table with `prefix_length = L` makes every text model continue n held-out prefixes p_i of L
characters (`genbench.models.conditions.draw_prefixes`); sample i is s_i = p_i + c_i. The samples are judged by a
fixed reference model, as conditional accuracy judges images by a pinned classifier: genbench's interpolated
modified Kneser-Ney character n-gram (`ngram`, the dataset's quick config: order 5 on line datasets, 6 on running
text), fitted on the dataset's train split with seed 0. It is deterministic (counts, no optimisation), fits in
about a second, and is the same judge for every model and seed. The continuation scored is t_i = c_i, followed by
"\\n" on line datasets (a name is scored with its end: ending the line is the model's choice too), cut to its first
`SCORE_CHARS` (32) characters. Then

    prefix_bpc  = - sum_i log2 P_judge(t_i | "\\n" + p_i) / sum_i |t_i|             bits/char, lower is better
    prefix_gain = - sum_i log2 P_judge(t_i | "\\n" + p_(i+1 mod n)) / sum_i |t_i|  -  prefix_bpc
                                                                                   bits/char, higher is better

`prefix_bpc` is the judge's code length of the continuations given their own prefixes: a continuation that ignores
its prefix pays where it meets it (e.g. "Mar" + "John": the judge finds "rJ" very unlikely), and an unlikely
continuation pays everywhere. `prefix_gain` separates obeying from fluency: how many bits per character the right
prefix saves over another held-out prefix (the next one in the job's fixed pseudo-random order, so an unrelated
draw). A model ignoring its prefixes gets about 0. Only the characters within the judge's context (order - 1) of
the prefix can differ between the two, so the gain is bounded by what those carry; both depend on the judge's
order and on `SCORE_CHARS` (stated in the protocol): compare models at equal settings. The judge's log P is
`continuation_log_prob` (reference_models/text_prefix.py); characters outside the judge's vocabulary (the
dataset's) make the metric skip with the reason.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any, Optional, Sequence

from genbench.errors import InvalidInputError
from genbench.metrics.base import MetricResult
from genbench.metrics.context import EvalContext
from genbench.metrics.registry import MetricSpec, MetricUnavailable, Output, register_metric

SCORE_CHARS = 32  # characters of each continuation scored (its start: where it meets the prefix)
JUDGE_MODEL, JUDGE_BUDGET, JUDGE_SEED = "ngram", "quick", 0
PREFIX_METRICS = ("prefix_bpc",)
_JUDGES: dict = {}


def scored_continuations(samples: Sequence[str], prefixes: Sequence[str], line_mode: bool,
                         score_chars: int = SCORE_CHARS) -> list:
    """t_i of the module docstring: each sample without its prefix (+ "\\n" in line mode), first `score_chars`."""
    if len(samples) != len(prefixes):
        raise InvalidInputError(f"{len(samples)} samples for {len(prefixes)} prefixes")
    out = []
    for i, (s, p) in enumerate(zip(samples, prefixes)):
        if not s.startswith(p):
            raise InvalidInputError(f"sample {i} does not start with its prefix {p!r}")
        out.append((s[len(p):] + ("\n" if line_mode else ""))[: int(score_chars)])
    return out


def prefix_scores(judge, samples: Sequence[str], prefixes: Sequence[str], line_mode: bool,
                  score_chars: int = SCORE_CHARS) -> dict:
    """prefix_bpc and prefix_gain (module docstring) under `judge` (an object with
    `continuation_log_prob(prefixes, continuations)` in nats), with the scored character count."""
    t = scored_continuations(samples, prefixes, line_mode, score_chars)
    n_chars = sum(len(c) for c in t)
    if not t or n_chars == 0:
        raise InvalidInputError("no continuation characters to score")
    other = list(prefixes[1:]) + list(prefixes[:1])
    own = judge.continuation_log_prob(list(prefixes), t).double()
    mis = judge.continuation_log_prob(other, t).double()
    bpc = -float(own.sum()) / n_chars / math.log(2)
    bpc_mis = -float(mis.sum()) / n_chars / math.log(2)
    return {"prefix_bpc": bpc, "prefix_gain": bpc_mis - bpc, "mismatched_bpc": bpc_mis, "n_chars": n_chars,
            "n_samples": len(t)}


def reference_judge(dataset: str) -> tuple[Any, dict]:
    """(the judge model of `dataset`, its protocol): `ngram` with the dataset's quick config fitted on its train
    split with seed 0 (cached per dataset and training text)."""
    from genbench.data import get_dataset
    from genbench.models.registry import create_model

    ds = get_dataset(dataset)
    train = ds.load("train")
    digest = hashlib.sha256(train.text.encode("utf-8")).hexdigest()
    key = (dataset, digest)
    if key not in _JUDGES:
        m = create_model(JUDGE_MODEL, ds.info, JUDGE_BUDGET)
        m.fit(train, seed=JUDGE_SEED)
        proto = {"judge": f"{JUDGE_MODEL} (interpolated modified Kneser-Ney, order {m.config.order})",
                 "judge_order": int(m.config.order), "judge_context": int(m.default_context()),
                 "judge_trained_on": f"{dataset} train split ({len(train.text)} characters, sha256 {digest[:16]}), "
                                     f"seed {JUDGE_SEED}"}
        _JUDGES[key] = (m, proto)
    return _JUDGES[key]


def _prefix_bpc(ctx: EvalContext) -> list[MetricResult]:
    prefixes: Optional[list] = getattr(ctx, "text_prefixes", None)
    if not prefixes:
        raise MetricUnavailable("prefix_bpc: the samples have no prefixes (set prefix_length in the dataset table)")
    if ctx.modality not in (None, "text"):
        raise MetricUnavailable(f"prefix_bpc applies to text data, not {ctx.modality!r}")
    judge, jproto = getattr(ctx, "prefix_judge", None) or (None, {})
    if judge is None:
        if not ctx.dataset:
            raise MetricUnavailable("prefix_bpc: no dataset named, so no reference judge")
        judge, jproto = reference_judge(ctx.dataset)
    line_mode = getattr(judge, "sample_mode", "stream") == "line"
    try:
        r = prefix_scores(judge, ctx.fake_texts, prefixes, line_mode)
    except InvalidInputError as e:
        raise MetricUnavailable(f"prefix_bpc: {e}") from None
    proto = {**(ctx.condition_protocol or {}), **jproto, "score_chars": SCORE_CHARS,
             "continuation": "the sample after its prefix" + (", with its end-of-line" if line_mode else "") +
             f", first {SCORE_CHARS} characters", "reference_split": ctx.reference_split,
             **({"dataset": ctx.dataset} if ctx.dataset else {}), **ctx.extra_protocol}
    extra = {"n_chars": r["n_chars"], "n_samples": r["n_samples"]}
    return [MetricResult("prefix_bpc", r["prefix_bpc"], "bits/char", False, "1", proto, extra=extra),
            MetricResult("prefix_gain", r["prefix_gain"], "bits/char", True, "1",
                         {**proto, "mismatched": "the prefix of the next sample (cyclic)"},
                         extra={**extra, "mismatched_bpc": r["mismatched_bpc"]})]


register_metric(MetricSpec(
    "prefix_bpc", "bits/char", False, "1", ("fake_texts",), _prefix_bpc,
    "bits/char of each sample's continuation given its prefix under a fixed reference n-gram (lower: the samples "
    "follow their prefixes), and the gain over mismatched prefixes",
    (Output("prefix_bpc", "bits/char", False, "quality", "prefix bits/char", order=265, rank=8),
     Output("prefix_gain", "bits/char", True, None, "prefix gain (bits/char)", order=266)),
    ("text",)))
