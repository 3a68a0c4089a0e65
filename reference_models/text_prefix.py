"""Sampling of the character-level text models (reference_models/text_base.py): from the context "\n", and from
prefixes (issue #23). `PrefixConditioning` is a base class of `TextModel`; it uses the model's hooks `_begin`,
`_advance`, `encode`/`decode`, `_require_built`, `nll_per_char` and the config's sample settings.

Prefix conditioning (issue #23): `sample(n, seed, condition=prefixes)` with n prefix strings returns sample i
as prefixes[i] followed by the model's continuation of "\n" + prefixes[i] (line mode: up to "\n", the prefix
counting towards `max_line_length`; stream mode: `sample_length` new characters). A model with a bounded
context conditions on the prefix's last `max_context` characters. Within a batch the prefixes are generated in
groups of equal length (by length, then order), so the same (seed, batch_size, prefixes) gives the same strings;
all-empty prefixes give exactly `sample(n, seed)`. `continuation_log_prob(prefixes, continuations)` is
log P(continuation | "\n" + prefix) in nats (the sliding-window protocol of `nll_per_char`).
A model that does not generate character by character (`takes_prefixes` False: text-copy) refuses prefixes.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from genbench.errors import InvalidInputError

NEWLINE = "\n"


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


class PrefixConditioning:
    """`sample` (unconditional or from prefixes), `generate_ids` and `continuation_log_prob` of `TextModel`."""

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
        if not self.takes_prefixes:
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
