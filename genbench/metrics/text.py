"""Text metrics: held-out likelihood (bits/char, perplexity), sample diversity (distinct-n, self-BLEU),
novelty against the training data, embedding distances (Frechet distance, precision/recall on sentence or
character-n-gram embeddings). Sampling speed (characters/s, first-character latency) is in
`genbench.metrics.text_speed`.

Protocols (stated in every MetricResult):
- bits_per_char / perplexity: `model.nll_per_char(text, context, stride)` over the held-out text, preceded by
  "\n"; windows of `context` characters advancing by `stride` (default context // 2), every character scored
  exactly once with at least context - stride characters of context (the first window: all it has).
  bits/char = nats / ln 2; perplexity = exp(nats per char).
- distinct-n: distinct n-grams / all n-grams over all samples, n = 1..4. Unit "char" (character n-grams within
  each sample; used for line datasets such as names) or "word" (whitespace tokens; running text).
- self_bleu: mean over samples of BLEU-4 (uniform weights, no smoothing, corpus-style brevity penalty with the
  closest reference length) of each sample against all the other samples as references; high = samples
  resemble each other (low diversity). Same unit as distinct-n.
- novelty: share of generated lines that do not occur among the training lines. Line mode: each sample is a
  line. Stream mode: the complete lines inside the samples (the last, unterminated line of a sample is dropped).
- embedding FD / precision / recall: `genbench.metrics.frechet_distance` on Gaussian fits and
  `genbench.metrics.prdc` (official k=3 P/R) of the features of one text extractor (`genbench.features.text`).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Iterable, Optional, Sequence

import torch

from genbench.errors import InvalidInputError
from genbench.metrics.base import MetricResult
from genbench.metrics.likelihood import LN2

TEXT_METRICS_VERSION = "1"


# ---------------------------------------------------------------------------------------------- likelihood
def nll_protocol(model, context: Optional[int], stride: Optional[int]) -> dict:
    C = int(context or model.default_context())
    S = int(stride or max(1, C // 2))
    return {"context": C, "stride": S, "scoring": "sliding window, each character once, text preceded by '\\n'",
            "kind": model.log_prob_kind}


def heldout_text(split, max_chars: Optional[int] = None, sample_mode: str = "stream", seed: int = 0) -> tuple[str, dict]:
    """(text, protocol) of the held-out text scored for bits/char. Stream mode (running text): the first
    `max_chars` characters of the split, contiguous. Line mode (datasets of independent lines, e.g. names):
    whole lines of the split in a seeded random order, each followed by "\n", as many as fit in `max_chars`
    (at least one) -- a line file's own order need not be random (names is sorted by frequency, so its first
    characters are the commonest names only)."""
    if sample_mode not in ("line", "stream"):
        raise InvalidInputError(f"sample_mode must be 'line' or 'stream', got {sample_mode!r}")
    if sample_mode == "stream":
        text = split.text if max_chars is None else split.text[: int(max_chars)]
        return text, {"text": "first characters of the split" if max_chars is not None else "whole split",
                      "max_chars": max_chars}
    lines = split.lines
    if not lines:
        raise InvalidInputError("the held-out split has no lines to score")
    order = torch.randperm(len(lines), generator=torch.Generator().manual_seed(int(seed))).tolist()
    parts, total = [], 0
    for i in order:
        k = len(lines[i]) + 1
        if max_chars is not None and parts and total + k > int(max_chars):
            break
        parts.append(lines[i] + "\n")
        total += k
    return "".join(parts), {"text": "whole lines in a seeded random order", "line_order_seed": int(seed),
                            "n_lines": len(parts), "max_chars": max_chars}


def heldout_nll(model, text, context: Optional[int] = None, stride: Optional[int] = None,
                max_chars: Optional[int] = None, reference_split: str = "test", dataset: Optional[str] = None) -> list[MetricResult]:
    """bits_per_char and perplexity of `model` on a held-out text (str or TextSplit); see module docstring."""
    nats, n = model.nll_per_char(text, context=context, stride=stride, max_chars=max_chars)
    return nll_results(nats, n, {**nll_protocol(model, context, stride), "reference_split": reference_split,
                                 **({"dataset": dataset} if dataset else {})})


def nll_results(nats_per_char: float, n_chars: int, protocol: dict) -> list[MetricResult]:
    if not math.isfinite(nats_per_char):
        raise InvalidInputError(f"held-out NLL is {nats_per_char}; the model's likelihood evaluation failed")
    proto = {**protocol, "n_chars": int(n_chars)}
    extra = {"nats_per_char": float(nats_per_char)}
    return [
        MetricResult("bits_per_char", nats_per_char / LN2, "bits/char", False, TEXT_METRICS_VERSION, proto, extra=extra),
        MetricResult("perplexity", math.exp(nats_per_char), "", False, TEXT_METRICS_VERSION, proto, extra=extra),
    ]


# ---------------------------------------------------------------------------------------------- n-grams
def _check_texts(samples: Any, what: str = "samples") -> list[str]:
    if isinstance(samples, str) or not isinstance(samples, (list, tuple)):
        raise InvalidInputError(f"{what} must be a list of strings, got {type(samples).__name__}")
    if not all(isinstance(s, str) for s in samples):
        raise InvalidInputError(f"{what} must contain only strings")
    return list(samples)


def tokens(s: str, unit: str) -> list[str]:
    if unit == "char":
        return list(s)
    if unit == "word":
        return s.split()
    raise InvalidInputError(f"unit must be 'char' or 'word', got {unit!r}")


def ngrams(toks: Sequence[str], n: int) -> list[tuple]:
    return [tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)]


def distinct_n(samples: Sequence[str], n: int, unit: str = "char") -> float:
    """Distinct n-grams / total n-grams over all samples (n-grams do not cross sample boundaries).
    Raises when the samples hold no n-gram at all."""
    samples = _check_texts(samples)
    if n < 1:
        raise InvalidInputError(f"n must be >= 1, got {n}")
    seen: set = set()
    total = 0
    for s in samples:
        g = ngrams(tokens(s, unit), n)
        total += len(g)
        seen.update(g)
    if total == 0:
        raise InvalidInputError(f"distinct-{n}: the samples contain no {unit} {n}-gram")
    return len(seen) / total


def self_bleu(samples: Sequence[str], max_n: int = 4, unit: str = "char", max_samples: Optional[int] = 1000) -> float:
    """Mean BLEU-`max_n` of each sample (hypothesis) against all other samples (references); see module docstring."""
    scores = self_bleu_scores(samples, max_n, unit, max_samples)
    return float(sum(scores) / len(scores))


def self_bleu_scores(samples: Sequence[str], max_n: int = 4, unit: str = "char", max_samples: Optional[int] = 1000) -> list:
    """BLEU-`max_n` of each sample against all the others. Exact and O(total n-grams): for every n-gram the
    largest and second-largest count over samples give the clipping count "max over the references other than
    the hypothesis itself"."""
    samples = _check_texts(samples)
    if max_samples is not None:
        samples = samples[: int(max_samples)]
    if len(samples) < 2:
        raise InvalidInputError("self-BLEU needs at least 2 samples")
    toks = [tokens(s, unit) for s in samples]
    counts = [[Counter(ngrams(t, n)) for n in range(1, max_n + 1)] for t in toks]
    top: list[dict] = []  # per n: gram -> [max1, n_at_max1, max2]
    for n in range(max_n):
        d: dict = {}
        for c in counts:
            for g, v in c[n].items():
                e = d.get(g)
                if e is None:
                    d[g] = [v, 1, 0]
                elif v > e[0]:
                    e[2], e[0], e[1] = e[0], v, 1
                elif v == e[0]:
                    e[1] += 1
                elif v > e[2]:
                    e[2] = v
        top.append(d)
    lengths = sorted(len(t) for t in toks)
    scores = []
    for t, cs in zip(toks, counts):
        c_len = len(t)
        if c_len == 0:
            scores.append(0.0)
            continue
        logp = 0.0
        zero = False
        for n in range(max_n):
            total = max(c_len - n, 0)
            if total == 0:
                zero = True
                break
            match = 0
            for g, v in cs[n].items():
                m1, k1, m2 = top[n][g]
                ref = m1 if (v < m1 or k1 >= 2) else m2
                match += min(v, ref)
            if match == 0:
                zero = True
                break
            logp += math.log(match / total) / max_n
        if zero:
            scores.append(0.0)
            continue
        r = _closest_other_length(lengths, c_len)
        bp = 1.0 if c_len > r else math.exp(1.0 - r / c_len)
        scores.append(bp * math.exp(logp))
    return scores


def _closest_other_length(sorted_lengths: list[int], own: int) -> int:
    """Closest length to `own` among the references (all lengths minus one instance of `own`); ties: shorter."""
    import bisect

    ls = list(sorted_lengths)
    ls.pop(bisect.bisect_left(ls, own))
    i = bisect.bisect_left(ls, own)
    cands = [ls[j] for j in (i - 1, i) if 0 <= j < len(ls)]
    return min(cands, key=lambda x: (abs(x - own), x))


def sample_lines(samples: Sequence[str], sample_mode: str) -> list[str]:
    """The generated lines of `samples`: line mode -> the samples themselves; stream mode -> the complete,
    non-empty lines inside each sample (the last line is dropped unless the sample ends with "\n")."""
    samples = _check_texts(samples)
    if sample_mode == "line":
        return list(samples)
    if sample_mode != "stream":
        raise InvalidInputError(f"sample_mode must be 'line' or 'stream', got {sample_mode!r}")
    out = []
    for s in samples:
        parts = s.split("\n")
        out.extend(p for p in parts[:-1] if p)
    return out


def novelty(generated_lines: Sequence[str], train_lines: Iterable[str]) -> float:
    """Share of generated lines that are not among the training lines (exact string match)."""
    gen = _check_texts(generated_lines, "generated lines")
    if not gen:
        raise InvalidInputError("novelty: no generated lines to score")
    train = train_lines if isinstance(train_lines, (set, frozenset)) else set(train_lines)
    return sum(1 for g in gen if g not in train) / len(gen)


def diversity_metrics(samples: Sequence[str], train_lines: Optional[Iterable[str]], sample_mode: str,
                      unit: Optional[str] = None, self_bleu_samples: int = 1000, dataset: Optional[str] = None) -> list[MetricResult]:
    """distinct_1..4, self_bleu and (when train_lines is given) novelty as MetricResults."""
    samples = _check_texts(samples)
    unit = unit or ("char" if sample_mode == "line" else "word")
    base = {"n_samples": len(samples), "unit": unit, "sample_mode": sample_mode, **({"dataset": dataset} if dataset else {})}
    out = []
    for n in (1, 2, 3, 4):
        out.append(MetricResult(f"distinct_{n}", distinct_n(samples, n, unit), "", True, TEXT_METRICS_VERSION,
                                {**base, "n": n, "definition": "distinct n-grams / all n-grams"}))
    m = min(len(samples), self_bleu_samples)
    out.append(MetricResult("self_bleu", self_bleu(samples, 4, unit, m), "", False, TEXT_METRICS_VERSION,
                            {**base, "n_samples": m, "bleu": "BLEU-4, uniform weights, no smoothing, closest-length BP",
                             "references": "all other samples"}))
    if train_lines is not None:
        lines = sample_lines(samples, sample_mode)
        out.append(MetricResult("novelty", novelty(lines, train_lines), "", True, TEXT_METRICS_VERSION,
                                {**base, "n_lines": len(lines), "match": "exact line", "against": "training lines"}))
    return out


# ---------------------------------------------------------------------------------------------- embeddings
def reference_texts(split, n: int, sample_mode: str, sample_length: int = 256, seed: int = 0) -> list[str]:
    """Held-out units comparable with a model's samples: line mode -> `n` lines drawn without replacement
    (seeded); stream mode -> `n` passages of `sample_length` characters starting at seeded random line starts
    of the split's text (the same unit as the model's stream samples)."""
    g = torch.Generator().manual_seed(int(seed))
    if sample_mode == "line":
        lines = split.lines
        idx = torch.randperm(len(lines), generator=g)[: min(n, len(lines))].sort().values
        return [lines[int(i)] for i in idx]
    text = split.text
    starts = [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n" and i + 1 + sample_length <= len(text)]
    starts = [s for s in starts if s + sample_length <= len(text)]
    if not starts:
        raise InvalidInputError(f"held-out text is shorter than one passage of {sample_length} characters")
    idx = torch.randperm(len(starts), generator=g)[: min(n, len(starts))].sort().values
    return [text[starts[int(i)] : starts[int(i)] + sample_length] for i in idx]


def embedding_metrics(fake_texts: Sequence[str], real_texts: Sequence[str], extractor, batch_size: int = 64,
                      dataset: Optional[str] = None) -> list[MetricResult]:
    """Frechet distance and precision/recall (official k=3, inclusive) between the extractor's features of
    generated and held-out texts. `extractor` is a text FeatureExtractor or its name."""
    from genbench.features.text import get_text_extractor
    from genbench.metrics.frechet import frechet_distance_features
    from genbench.metrics.manifold import prdc

    ext = get_text_extractor(extractor) if isinstance(extractor, str) else extractor
    f = ext.extract(_check_texts(fake_texts, "fake texts"), batch_size=batch_size)
    r = ext.extract(_check_texts(real_texts, "real texts"), batch_size=batch_size)
    fd = frechet_distance_features(r, f)  # exact from the features when N <= D (metrics.frechet.fd_route)
    pr = prdc(r, f, k_pr=3, k_dc=5)
    proto = {"features": ext.protocol["id"], "n_real": int(r.shape[0]), "n_fake": int(f.shape[0]),
             "feature_dim": int(r.shape[1]), **({"dataset": dataset} if dataset else {})}
    return [
        MetricResult("fd_text", fd, "", False, TEXT_METRICS_VERSION, {**proto, "statistics": "float64, unbiased covariance"}),
        MetricResult("precision_text", pr["precision"], "", True, TEXT_METRICS_VERSION, {**proto, "k": 3, "ball": "<="}),
        MetricResult("recall_text", pr["recall"], "", True, TEXT_METRICS_VERSION, {**proto, "k": 3, "ball": "<="}),
    ]


# ---------------------------------------------------------------------------------------------- registry
def _fake_texts(ctx, name: str) -> list[str]:
    if ctx.modality != "text":
        raise _unavailable(f"{name} applies to text data, not {ctx.modality!r}")
    fake = getattr(ctx, "fake_texts", None)
    if fake is None and isinstance(ctx.fake_samples, (list, tuple)):
        fake = ctx.fake_samples
    if fake is None:
        raise _unavailable(f"{name} needs the generated strings (EvalContext.fake_texts)")
    return list(fake)


def _unavailable(msg: str):
    from genbench.metrics.registry import MetricUnavailable

    return MetricUnavailable(msg)


def _mode_of(texts: list[str]) -> str:
    return "stream" if any("\n" in t for t in texts) else "line"


def _spec_distinct(ctx) -> list[MetricResult]:
    fake = _fake_texts(ctx, "distinct_n")
    mode = _mode_of(fake)
    return [m for m in diversity_metrics(fake, None, mode, dataset=ctx.dataset) if m.name.startswith("distinct_")]


def _spec_self_bleu(ctx) -> list[MetricResult]:
    fake = _fake_texts(ctx, "self_bleu")
    mode = _mode_of(fake)
    unit = "char" if mode == "line" else "word"
    m = min(len(fake), 1000)
    return [MetricResult("self_bleu", self_bleu(fake, 4, unit, m), "", False, TEXT_METRICS_VERSION,
                         {**ctx.base_protocol(), "n_samples": m, "unit": unit,
                          "bleu": "BLEU-4, uniform weights, no smoothing, closest-length BP", "references": "all other samples"})]


def _spec_novelty(ctx) -> list[MetricResult]:
    fake = _fake_texts(ctx, "novelty")
    train = set(ctx.train_texts)
    mode = _mode_of(fake)
    lines = sample_lines(fake, mode)
    return [MetricResult("novelty", novelty(lines, train), "", True, TEXT_METRICS_VERSION,
                         {**ctx.base_protocol(), "n_lines": len(lines), "sample_mode": mode, "match": "exact line",
                          "against": "training lines"})]


def _spec_bits_per_char(ctx) -> list[MetricResult]:
    if ctx.modality != "text":
        raise _unavailable(f"bits_per_char applies to text data, not {ctx.modality!r} (images/points: bits_per_dim)")
    if ctx.log_prob_kind == "none":
        raise _unavailable("bits_per_char: the model has no likelihood (log_prob_kind='none')")
    nats = getattr(ctx, "nll_per_char", None)
    if nats is None:
        raise _unavailable("bits_per_char needs EvalContext.nll_per_char (model.nll_per_char on the held-out text)")
    nllp = getattr(ctx, "nll_protocol", None) or {"context": None, "stride": None,
                                                  "note": "caller did not pass nll_protocol (see genbench.metrics.text.nll_protocol)"}
    proto = {"reference_split": ctx.reference_split, "kind": ctx.log_prob_kind, **nllp,
             **({"dataset": ctx.dataset} if ctx.dataset else {}), **ctx.extra_protocol}
    return nll_results(float(nats), int(getattr(ctx, "n_chars", 0) or 0), proto)


def register_text_metrics() -> None:
    """Add the text metrics to genbench.metrics.METRICS (idempotent)."""
    from genbench.metrics.registry import METRICS, MetricSpec, Output, register_metric

    specs = (
        MetricSpec("distinct_n", "", True, TEXT_METRICS_VERSION, (), _spec_distinct,
                   "distinct n-grams / all n-grams of the generated text, n = 1..4",
                   (Output("distinct_1", "", True, None, "distinct-1", order=350),
                    Output("distinct_2", "", True, None, "distinct-2", headline=("text",), order=230),
                    Output("distinct_3", "", True, None, "distinct-3", order=355),
                    Output("distinct_4", "", True, "diversity", "distinct-4", headline=("text",), order=240, rank=6)),
                   ("text",)),
        MetricSpec("self_bleu", "", False, TEXT_METRICS_VERSION, (), _spec_self_bleu,
                   "mean BLEU-4 of each sample against the others (similarity between samples)",
                   (Output("self_bleu", "", False, None, "self-BLEU", order=360),), ("text",)),
        MetricSpec("novelty", "", True, TEXT_METRICS_VERSION, ("train_texts",), _spec_novelty,
                   "share of generated lines not in the training data",
                   (Output("novelty", "", True, "diversity", "novelty", headline=("text",), order=220, rank=7),),
                   ("text",)),
        MetricSpec("bits_per_char", "bits/char", False, TEXT_METRICS_VERSION, (), _spec_bits_per_char,
                   "held-out NLL per character (sliding window) in bits, and perplexity",
                   (Output("bits_per_char", "bits/char", False, "likelihood", "bits/char", headline=("text",), order=200,
                           rank=2),
                    # the same information as bits/char: shown, not scored a second time
                    Output("perplexity", "", False, None, "perplexity", headline=("text",), order=210)),
                   ("text",)),
    )
    for s in specs:
        if s.name not in METRICS:
            register_metric(s)


def _declare_recorded() -> None:
    """Text results computed outside the metric registry: the runner's text speed measurements
    (`genbench.metrics.text_speed.speed_metrics`) and `embedding_metrics`."""
    from genbench.metrics.registry import Output, declare_outputs

    declare_outputs(
        Output("chars_per_s", "chars/s", True, "speed", "chars/s", headline=("text",), order=260, rank=1, log_scale=True),
        Output("chars_per_s_nocache", "chars/s", True, None, "chars/s (no cache)", order=380),
        Output("first_char_latency", "ms", False, "speed", "first char (ms)", order=390, rank=3, log_scale=True),
        source="recorded by genbench run for text models that generate character by character")
    declare_outputs(
        Output("fd_text", "", False, "quality", "FD (embeddings)", headline=("text",), order=250, rank=1),
        Output("precision_text", "", True, "quality", "precision (emb.)", order=365, rank=6),
        Output("recall_text", "", True, "diversity", "recall (emb.)", order=370, rank=5),
        source="genbench.metrics.text.embedding_metrics", recorded=False)


_declare_recorded()
