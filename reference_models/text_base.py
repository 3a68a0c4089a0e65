"""The shared protocol of genbench's character-level text models (transformer, lstm, ngram, text-copy).

Text conventions (also summarised in genbench/models/base.py):

- `fit(train)` takes a `TextSplit` (genbench/data/base.py). The model's vocabulary is the split's `vocab`
  (shared by the train and test splits of a dataset), stored in `config.vocab` so that `load_model` can
  rebuild the network before loading weights.
- `sample(n, seed)` returns a list of `n` Python strings. Two sample modes (`config.sample_mode`):
  * "line"   (datasets of short lines, e.g. names): each sample is one line, generated from the context "\n"
    until the model emits "\n" (not included) or `max_line_length` characters.
  * "stream" (running text, e.g. shakespeare-char): each sample is exactly `sample_length` characters,
    generated from the context "\n" (so it starts at a line boundary).
  "auto" (the default) resolves at fit time: "line" when 95% of the training lines have <= 32 characters,
  else "stream". The resolved mode is saved with the model.
- Line datasets train on their lines in a seeded random order (`training_text`): neighbouring lines of a file
  can share information that held-out lines do not (names is alphabetical within frequency ties).
- `nll_per_char(text, context, stride)` -> (nats per character, number of characters): the exact negative
  log-likelihood of a held-out text under the model, scored with a sliding window (see `sliding_windows`).
  The text is scored as if preceded by "\n" (it starts at a line boundary); every character is scored once.
- `log_prob(lines)` -> float64 tensor: log P(line + "\n" | "\n") in nats for each string (a whole line with its
  end-of-line), so a names model's `log_prob` is the probability of a name.
- Sampling draws one uniform number per sequence per step from a CPU generator and inverts the CDF, so the
  same (seed, batch_size) gives the same strings on any device and with or without a key/value cache.
- Prefix conditioning (issue #23): `sample(n, seed, condition=prefixes)` with n prefix strings returns sample i
  as prefixes[i] followed by the model's continuation of "\n" + prefixes[i] (line mode: up to "\n", the prefix
  counting towards `max_line_length`; stream mode: `sample_length` new characters). A model with a bounded
  context conditions on the prefix's last `max_context` characters. Within a batch the prefixes are generated in
  groups of equal length (by length, then order), so the same (seed, batch_size, prefixes) gives the same strings;
  all-empty prefixes give exactly `sample(n, seed)`. `continuation_log_prob(prefixes, continuations)` is
  log P(continuation | "\n" + prefix) in nats (the sliding-window protocol of `nll_per_char`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence

import torch

from genbench.data.base import TextSplit
from genbench.errors import InvalidInputError
from genbench.models.base import LOG_PROB_EXACT, Callback, FitHistory, GenerativeModel, ModelConfig, check_budget
from genbench.models.text import DEFAULT_SAMPLE_LENGTH, SAMPLE_MODES, resolve_sample_mode  # noqa: F401  (re-exported)

NEWLINE = "\n"
LINE_DATASETS = ("names",)  # built-in datasets of short independent lines (the others are running text)


def is_line_dataset(info) -> bool:
    """True for the built-in datasets of short lines (names): the text models' quick configs use short
    contexts and small networks there, and running-text settings (shakespeare-char) for every other dataset."""
    return getattr(info, "name", None) in LINE_DATASETS


@dataclass
class TextConfig(ModelConfig):
    vocab: str = ""  # the characters, in id order; filled from the training split by fit()
    sample_mode: str = "auto"  # "auto" | "line" | "stream" (see module docstring)
    sample_length: int = DEFAULT_SAMPLE_LENGTH  # stream mode: characters per sample
    max_line_length: int = 64  # line mode: longest line generated (characters, without "\n")
    temperature: float = 1.0
    top_k: int = 0  # 0: sample from the full distribution
    eval_context: int = 256  # default sliding-window length of nll_per_char (capped by the model's own context)


def training_text(split: TextSplit, sample_mode: str, seed: int) -> str:
    """The text a model trains on. Running text ("stream"): the split's text. Line datasets ("line"): the lines
    in a seeded random order, each followed by "\n" -- lines are independent items, and a file's own order can
    leak between neighbours (names: the census list is alphabetical within each frequency tie, so a model with
    context learns to copy the previous name's prefix, which fails on held-out names in any other order)."""
    if sample_mode != "line":
        return split.text
    lines = split.lines
    order = torch.randperm(len(lines), generator=torch.Generator().manual_seed(int(seed))).tolist()
    return "".join(lines[i] + NEWLINE for i in order)


def sliding_windows(n_targets: int, context: int, stride: int) -> list[tuple[int, int, int]]:
    """Windows over a sequence s[0..n_targets] whose targets are s[1..n_targets] (s[0] is the "\n" context).

    Window (b, e, f): inputs s[b:e], targets s[b+1:e+1]; only targets s[j] with f < j <= e are scored.
    The first window scores its `context` targets; each next window starts `stride` later and scores the
    `stride` targets not yet scored, so every target is scored exactly once with at least
    `context - stride` characters of context (all available context in the first window).
    stride == context gives disjoint windows (lm-evaluation-harness style)."""
    if context < 1 or not (1 <= stride <= context):
        raise InvalidInputError(f"need context >= 1 and 1 <= stride <= context, got context={context}, stride={stride}")
    out = []
    b, done = 0, 0
    while done < n_targets:
        e = min(b + context, n_targets)
        out.append((b, e, done))
        done = e
        b += stride
    return out


def inverse_cdf_sample(logits: torch.Tensor, u: torch.Tensor, temperature: float = 1.0, top_k: int = 0) -> torch.Tensor:
    """Indices drawn from softmax(logits / temperature) restricted to the top-k, one per row, using the given
    uniforms u in [0, 1) (float64). Computed in float64 on the logits' device (so a CUDA graph can hold it);
    deterministic given u. Devices differ only in the last bits of the softmax, so a draw can differ between CPU
    and GPU only when u falls within ~1e-15 of a boundary of the cumulative distribution."""
    if temperature <= 0:
        raise InvalidInputError(f"temperature must be > 0, got {temperature}")
    lg = logits.detach().double() / float(temperature)
    u = u.to(lg.device, non_blocking=True)
    if top_k and top_k < lg.shape[-1]:
        kth = torch.topk(lg, int(top_k), dim=-1).values[..., -1:]
        lg = lg.masked_fill(lg < kth, float("-inf"))
    p = torch.softmax(lg, dim=-1)
    c = torch.cumsum(p, dim=-1)
    idx = torch.searchsorted(c, (u.double() * c[..., -1]).unsqueeze(-1).contiguous(), right=True).squeeze(-1)
    return idx.clamp_(max=lg.shape[-1] - 1)


class TextModel(GenerativeModel):
    """Base of the character-level text models. Subclasses implement `_build()` (networks from `config.vocab`),
    `_fit_ids(ids, seed, callbacks)`, and the three likelihood/sampling hooks `_begin`, `_advance`,
    `_window_logprobs` (or set log_prob_kind = "none" and override `sample`)."""

    modalities = ("text",)
    log_prob_kind = LOG_PROB_EXACT
    Config = TextConfig
    max_context: Optional[int] = None  # longest context the model can condition on (None: unbounded)
    # True when use_cache=False takes a different (uncached) path, so its speed is worth its own figure
    has_uncached_path: bool = False

    def __init__(self, config: TextConfig, info):
        super().__init__(config, info)
        if config.sample_mode not in SAMPLE_MODES:
            raise InvalidInputError(f"sample_mode must be one of {SAMPLE_MODES}, got {config.sample_mode!r}")
        self.built = False
        if config.vocab:
            self._setup_vocab(config.vocab)

    # ---- vocabulary ---------------------------------------------------------------------------------------
    def _setup_vocab(self, vocab: str) -> None:
        if len(set(vocab)) != len(vocab):
            raise InvalidInputError("vocabulary has repeated characters")
        if NEWLINE not in vocab:
            raise InvalidInputError('text models need "\\n" in the vocabulary (lines end with it)')
        self.config.vocab = vocab
        self.stoi = {c: i for i, c in enumerate(vocab)}
        self.newline_id = self.stoi[NEWLINE]
        self._build()
        self.built = True

    @property
    def vocab_size(self) -> int:
        return len(self.config.vocab)

    def encode(self, s: str) -> torch.Tensor:
        try:
            return torch.tensor([self.stoi[c] for c in s], dtype=torch.long)
        except KeyError as e:
            raise InvalidInputError(
                f"character {e.args[0]!r} is not in the model's vocabulary ({self.vocab_size} characters); score "
                "text from the dataset the model was trained on (its splits share one vocabulary)") from None

    def decode(self, ids: Iterable[int]) -> str:
        v = self.config.vocab
        return "".join(v[int(i)] for i in ids)

    def _require_built(self) -> None:
        if not self.built:
            raise InvalidInputError(f"model {self.name!r} has not been fitted: call fit(train_split) first")

    # ---- training -----------------------------------------------------------------------------------------
    def fit(self, train, budget: Optional[str] = None, seed: int = 0, device="cpu",
            callbacks: Iterable[Callback] = ()) -> FitHistory:
        """Train on a `TextSplit` (its `.text`, with its `.vocab`). `budget` replaces steps/max_seconds by that
        budget's defaults."""
        if not isinstance(train, TextSplit):
            raise InvalidInputError(
                f"text model {self.name!r} trains on a TextSplit (genbench.data.get_dataset(name).load('train')), "
                f"got {type(train).__name__}")
        if not train.text:
            raise InvalidInputError("the training text is empty")
        if budget is not None:
            b = self.Config.for_budget(check_budget(budget), self.info)
            self.config.steps, self.config.max_seconds = b.steps, b.max_seconds
        vocab = "".join(train.vocab)
        if self.built and vocab != self.config.vocab:
            raise InvalidInputError("this model was built for another vocabulary; create a new model for this data")
        if not self.built:
            self._setup_vocab(vocab)
        if self.config.sample_mode == "auto":
            self.config.sample_mode = resolve_sample_mode(train)
        self.to(device)
        ids = self.encode(training_text(train, self.config.sample_mode, int(seed)))
        t0 = time.perf_counter()
        self.history = FitHistory()
        self._fit_ids(ids, int(seed), list(callbacks))
        self.history.seconds = time.perf_counter() - t0
        return self.history

    def _fit_ids(self, ids: torch.Tensor, seed: int, callbacks: list) -> None:
        raise NotImplementedError

    def _out_of_time(self, t0: float) -> bool:
        ms = self.config.max_seconds
        return ms is not None and time.perf_counter() - t0 > ms

    # ---- sampling -----------------------------------------------------------------------------------------
    @property
    def sample_mode(self) -> str:
        return self.config.sample_mode if self.config.sample_mode != "auto" else "stream"

    def sample(self, n: int, seed: int = 0, batch_size: Optional[int] = None, use_cache: bool = True,  # type: ignore[override]
               condition: Optional[Sequence[str]] = None) -> list:
        """`n` strings (see the module docstring for line / stream mode). Same (seed, batch_size) -> same strings.
        `condition`: n prefix strings; sample i is condition[i] and its continuation (module docstring)."""
        self._require_built()
        if n < 0:
            raise InvalidInputError(f"n must be >= 0, got {n}")
        prefixes = None if condition is None else self._check_prefixes(condition, n)
        bs = int(batch_size or max(1, min(n, 256)))
        gen = torch.Generator(device="cpu").manual_seed(int(seed))
        out: list[str] = []
        with torch.inference_mode():
            while len(out) < n:
                b = min(bs, n - len(out))
                if prefixes is None:
                    out.extend(self._generate(b, gen, use_cache=use_cache))
                else:
                    out.extend(self._continue(prefixes[len(out):len(out) + b], gen, use_cache))
        return out

    def _check_prefixes(self, condition, n: int) -> list:
        who = f"model {self.name!r}"
        if type(self)._begin is TextModel._begin:
            raise InvalidInputError(f"{who} generates no character by character: it cannot continue a prefix")
        if isinstance(condition, str) or not all(isinstance(p, str) for p in condition):
            raise InvalidInputError(f"{who}: a text model's condition is a list of {n} prefix strings, one per sample")
        prefixes = list(condition)
        if len(prefixes) != n:
            raise InvalidInputError(f"{who}: {len(prefixes)} prefixes for {n} samples; give one prefix per sample")
        for i, p in enumerate(prefixes):
            if self.sample_mode == "line" and (NEWLINE in p or len(p) > self.config.max_line_length):
                raise InvalidInputError(f"{who} samples lines: prefix {i} must be one line of at most "
                                        f"{self.config.max_line_length} characters without '\\n'")
            self.encode(p)  # characters outside the vocabulary: a clear error
        return prefixes

    def _continue(self, prefixes: list, gen: torch.Generator, use_cache: bool) -> list:
        """Each prefix followed by its continuation; the batch generated in groups of equal prefix length."""
        line = self.sample_mode == "line"
        out: list = [None] * len(prefixes)
        for L in sorted({len(p) for p in prefixes}):
            idx = [i for i, p in enumerate(prefixes) if len(p) == L]
            ctx = torch.stack([torch.cat([torch.tensor([self.newline_id]), self.encode(prefixes[i])]) for i in idx])
            if self.max_context:
                ctx = ctx[:, -int(self.max_context):]
            steps = self.config.max_line_length - L + 1 if line else self.config.sample_length
            ids = self._generate_ids(len(idx), gen, steps, stop_at_newline=line, use_cache=use_cache,
                                     ctx=ctx.to(self.device))
            for i, row in zip(idx, ids.tolist()):
                if line:
                    row = row[: row.index(self.newline_id)] if self.newline_id in row else row[: steps - 1]
                out[i] = prefixes[i] + self.decode(row)
        return out

    def _sample(self, n: int, generator: torch.Generator):  # the tensor API of the base class does not apply
        return self._generate(n, generator)

    def _generate(self, n: int, gen: torch.Generator, use_cache: bool = True, length: Optional[int] = None,
                  stop_at_newline: Optional[bool] = None) -> list:
        line = self.sample_mode == "line" if stop_at_newline is None else stop_at_newline
        steps = int(length if length is not None else (self.config.max_line_length + 1 if line else self.config.sample_length))
        ids = self._generate_ids(n, gen, steps, stop_at_newline=line, use_cache=use_cache)
        out = []
        for row in ids.tolist():
            if line:
                row = row[: row.index(self.newline_id)] if self.newline_id in row else row[: self.config.max_line_length]
            out.append(self.decode(row))
        return out

    def generate_ids(self, n: int, generator: torch.Generator, steps: int, stop_at_newline: bool = False,
                     use_cache: bool = True) -> torch.Tensor:
        """(n, <= steps) character ids drawn from the context "\n" with `generator` (a CPU torch.Generator): the
        character-by-character path that `sample` decodes, exposed for timing (genbench.metrics.text_speed).
        Raises NotImplementedError for models with no per-character path (text-copy)."""
        self._require_built()
        return self._generate_ids(n, generator, steps, stop_at_newline=stop_at_newline, use_cache=use_cache)

    def _generate_ids(self, n: int, gen: torch.Generator, steps: int, stop_at_newline: bool = False,
                      use_cache: bool = True, on_token=None, ctx: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(n, <= steps) ids generated from the context "\n" (or the ids `ctx` (n, T)). `on_token(t)` is called
        after each step (timing)."""
        if ctx is None:
            ctx = torch.full((n, 1), self.newline_id, dtype=torch.long, device=self.device)
        logits, state = self._begin(ctx, use_cache)
        out = []
        # on the logits' device: a model whose tables live on the host (the n-gram) samples there on any device
        done = torch.zeros(n, dtype=torch.bool, device=logits.device)
        for t in range(steps):
            u = torch.rand(n, generator=gen, dtype=torch.float64)
            nxt = inverse_cdf_sample(logits, u, self.config.temperature, self.config.top_k)
            out.append(nxt)
            if on_token is not None:
                on_token(t)
            if stop_at_newline:
                done |= nxt == self.newline_id
                if bool(done.all()):
                    break
            if t + 1 < steps:
                logits, state = self._advance(state, nxt.to(self.device))
        return torch.stack(out, 1).cpu() if out else torch.empty(n, 0, dtype=torch.long)

    def _begin(self, ctx: torch.Tensor, use_cache: bool):
        """(logits (B, V) for the next character after ids `ctx` (B, T), state)."""
        raise NotImplementedError

    def _advance(self, state, nxt: torch.Tensor):
        """Append ids `nxt` (B,) to the state; (logits (B, V) for the character after them, new state)."""
        raise NotImplementedError

    # ---- likelihood ---------------------------------------------------------------------------------------
    def _window_logprobs(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, V) log-probabilities of the character after each position of the ids x (B, T), conditioned
        only on x (the window)."""
        raise NotImplementedError

    def _window_target_logprobs(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(B, T) log P(y[:, t] | x[:, :t+1]). Models that can score targets directly override this."""
        return self._window_logprobs(x).double().gather(-1, y.unsqueeze(-1)).squeeze(-1)

    def default_context(self) -> int:
        c = int(self.config.eval_context)
        return min(c, self.max_context) if self.max_context else c

    def nll_per_char(self, text, context: Optional[int] = None, stride: Optional[int] = None,
                     max_chars: Optional[int] = None, batch_size: int = 32, return_all: bool = False):
        """Mean negative log-likelihood of `text` (a str or TextSplit) in nats per character, and the number of
        characters scored: (nats_per_char, n_chars); with return_all, the per-character NLL tensor too.

        Protocol: the text (first `max_chars` characters when given) is preceded by "\n"; windows of `context`
        characters advance by `stride` (default context // 2) and each character is scored once, conditioned on
        the characters of its window before it (see `sliding_windows`). `context` defaults to
        `default_context()` and may not exceed the model's `max_context`."""
        if self.log_prob_kind == "none":
            raise NotImplementedError(f"model {self.name!r} has no tractable likelihood")
        self._require_built()
        s = text.text if isinstance(text, TextSplit) else str(text)
        if max_chars is not None:
            s = s[: int(max_chars)]
        if not s:
            raise InvalidInputError("cannot score an empty text")
        C = int(context or self.default_context())
        if self.max_context is not None and C > self.max_context:
            raise InvalidInputError(f"context {C} exceeds model {self.name!r}'s maximum context {self.max_context}")
        S = int(stride or max(1, C // 2))
        seq = torch.cat([torch.tensor([self.newline_id]), self.encode(s)])
        wins = sliding_windows(len(s), C, S)
        nll = torch.empty(len(s), dtype=torch.float64)
        with torch.inference_mode():
            full = [w for w in wins if w[1] - w[0] == C]
            rest = [w for w in wins if w[1] - w[0] != C]
            groups = [full[i : i + batch_size] for i in range(0, len(full), batch_size)] + [[w] for w in rest]
            for g in groups:
                x = torch.stack([seq[b:e] for b, e, _ in g]).to(self.device)
                y = torch.stack([seq[b + 1 : e + 1] for b, e, _ in g]).to(self.device)
                lp = self._window_target_logprobs(x, y).double().cpu()
                for row, (b, e, f) in zip(lp, g):
                    # targets s[j], j in (f, e]  <->  window positions j - b - 1
                    nll[f:e] = -row[f - b : e - b]
        val = float(nll.mean())
        return (val, len(s), nll) if return_all else (val, len(s))

    def log_prob(self, x: Sequence[str], batch_size: int = 256) -> torch.Tensor:  # type: ignore[override]
        """log P(line + "\n" | "\n") in nats for every string in `x` (float64). Lines longer than the model's
        context are scored with the sliding window of `nll_per_char`."""
        if self.log_prob_kind == "none":
            raise NotImplementedError(f"model {self.name!r} has no tractable likelihood")
        self._require_built()
        if isinstance(x, str):
            raise InvalidInputError("log_prob takes a list of strings (lines), not one string")
        out = torch.empty(len(x), dtype=torch.float64)
        C = self.default_context()
        by_len: dict[int, list[int]] = {}
        for i, ln in enumerate(x):
            if NEWLINE in ln:
                raise InvalidInputError(f"log_prob scores single lines; string {i} contains '\\n'")
            by_len.setdefault(len(ln), []).append(i)
        with torch.inference_mode():
            for L, idx in by_len.items():
                if L + 1 > C:
                    for i in idx:
                        v, n = self.nll_per_char(x[i] + NEWLINE, context=C)
                        out[i] = -v * n
                    continue
                for k in range(0, len(idx), batch_size):
                    part = idx[k : k + batch_size]
                    seq = torch.stack([torch.cat([torch.tensor([self.newline_id]), self.encode(x[i] + NEWLINE)]) for i in part])
                    lp = self._window_target_logprobs(seq[:, :-1].to(self.device), seq[:, 1:].to(self.device))
                    out[part] = lp.double().cpu().sum(1)
        return out

    def continuation_log_prob(self, prefixes: Sequence[str], continuations: Sequence[str]) -> torch.Tensor:
        """log P(continuations[i] | "\n" + prefixes[i]) in nats for every pair (float64): the characters of the
        continuation scored as `nll_per_char` scores prefix + continuation (the same windows), summed."""
        if self.log_prob_kind == "none":
            raise NotImplementedError(f"model {self.name!r} has no tractable likelihood")
        self._require_built()
        if isinstance(prefixes, str) or isinstance(continuations, str) or len(prefixes) != len(continuations):
            raise InvalidInputError("continuation_log_prob takes two lists of strings of the same length (prefixes "
                                    "and their continuations)")
        out = torch.zeros(len(prefixes), dtype=torch.float64)
        for i, (p, c) in enumerate(zip(prefixes, continuations)):
            if c:
                out[i] = -self.nll_per_char(p + c, return_all=True)[2][len(p):].sum()
        return out

    # ---- bookkeeping --------------------------------------------------------------------------------------
    def modules(self) -> dict[str, torch.nn.Module]:
        return {"net": self.net} if self.built and isinstance(getattr(self, "net", None), torch.nn.Module) else {}

    def save(self, path):
        self._require_built()
        return super().save(path)


def training_windows(ids: torch.Tensor, batch_size: int, length: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of random windows (x, y) with y = x shifted by one, drawn with `gen` (CPU)."""
    n = ids.numel() - length - 1
    if n < 1:
        raise InvalidInputError(f"training text has {ids.numel()} characters; need more than {length + 1}")
    starts = torch.randint(0, n + 1, (batch_size,), generator=gen)
    offs = torch.arange(length + 1)
    w = ids[starts[:, None] + offs[None, :]]
    return w[:, :-1], w[:, 1:]


def lr_at(step: int, total: int, lr: float, warmup: int, min_ratio: float = 0.1) -> float:
    """Linear warm-up then cosine decay to min_ratio * lr at `total` steps."""
    if step < warmup:
        return lr * (step + 1) / warmup
    p = min(1.0, (step - warmup) / max(1, total - warmup))
    return lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * p)))


class NeuralTextModel(TextModel):
    """Shared by the neural character models (transformer, LSTM): `self.net(x) -> (logits, state)`, the
    training loop over random windows, bf16 autocast (CUDA, or CPU when opted in), and window log-probabilities."""

    def _autocast(self, cache_enabled: bool = True):
        from reference_models.nets import autocast

        return autocast(self.device, bool(self.config.amp), bool(getattr(self.config, "cpu_bf16", False)),
                        cache_enabled)

    def _train_loop(self, ids: torch.Tensor, opt: torch.optim.Optimizer, window: int, gen: torch.Generator,
                    callbacks: list) -> None:
        """Next-character cross-entropy on `window`-long random windows of `ids`, with the warm-up/cosine
        learning rate, gradient clipping, a loss EMA in the history, callbacks and the step/time budget."""
        import torch.nn.functional as F

        c = self.config
        self.net.train()
        t0 = time.perf_counter()
        ema = None
        for step in range(c.steps):
            for g in opt.param_groups:
                g["lr"] = lr_at(step, c.steps, c.lr, c.warmup_steps, c.min_lr_ratio)
            x, y = training_windows(ids, c.batch_size, window, gen)
            x, y = x.to(self.device), y.to(self.device)
            with self._autocast():
                logits, _ = self.net(x)
            loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if c.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.net.parameters(), c.grad_clip)
            opt.step()
            lv = float(loss.detach())
            ema = lv if ema is None else 0.95 * ema + 0.05 * lv
            if step % c.log_every == 0 or step == c.steps - 1:
                self.history.log(step, loss=lv, loss_ema=ema, seconds=time.perf_counter() - t0)
            stop = any(cb(step, {"loss": lv}) == "stop" for cb in callbacks)
            self.history.steps = step + 1
            if stop or self._out_of_time(t0):
                break
        self.net.eval()

    def _window_logprobs(self, x: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        self.net.eval()
        logits, _ = self.net(x)  # float32 (no autocast): likelihoods are scored in full precision
        return F.log_softmax(logits.float(), -1)
