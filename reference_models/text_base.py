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
- Prefix conditioning (issue #23): `sample(n, seed, condition=prefixes)` and `continuation_log_prob`, in
  reference_models/text_prefix.py (`PrefixConditioning`, a base of `TextModel`).
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
from reference_models.text_prefix import NEWLINE, PrefixConditioning, inverse_cdf_sample  # noqa: F401  (re-exported)

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


class TextModel(PrefixConditioning, GenerativeModel):
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

    # ---- sampling (sample, generate_ids and the prefix API: reference_models/text_prefix.py) ------------------
    @property
    def sample_mode(self) -> str:
        return self.config.sample_mode if self.config.sample_mode != "auto" else "stream"

    @property
    def takes_prefixes(self) -> bool:
        """True when the model generates character by character, so it can continue a prefix (not text-copy)."""
        return type(self)._begin is not TextModel._begin

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
