"""Interpolated modified Kneser-Ney character n-gram model (family "baseline").

Chen & Goodman's interpolated modified Kneser-Ney (1998): for order k with context h (k-1 characters),

    P_k(w | h) = max(c_k(h w) - D_k(c_k(h w)), 0) / c_k(h .)  +  gamma_k(h) * P_{k-1}(w | h[1:])
    gamma_k(h) = (D_k1 N1(h .) + D_k2 N2(h .) + D_k3+ N3+(h .)) / c_k(h .)

where c_k are raw counts at the highest order and continuation counts (number of distinct left extensions)
at the lower orders; N_r(h .) is the number of characters that follow h with count r (r = 3 means >= 3); the
three discounts per order come from the count-of-counts n_1..n_4: Y = n1 / (n1 + 2 n2), D1 = 1 - 2Y n2/n1,
D2 = 2 - 3Y n3/n2, D3+ = 3 - 4Y n4/n3. A context never seen at order k falls back to P_{k-1}(w | h[1:]).
The unigram level is interpolated with the uniform distribution over the vocabulary, so every character has
non-zero probability and P(. | h) sums to 1 over the vocabulary for every h.

The training text is preceded by order-1 newlines, and histories shorter than order-1 are left-padded with
newlines (the text starts at a line boundary). Counting is vectorised with numpy over integer n-gram keys.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from genbench.errors import InvalidInputError
from genbench.models import register_model
from genbench.models.base import check_budget
from reference_models.text_base import TextConfig, TextModel, is_line_dataset


@dataclass
class NGramConfig(TextConfig):
    order: int = 6

    @classmethod
    def for_budget(cls, budget: str, info) -> "NGramConfig":
        check_budget(budget)
        order = {"smoke": 3, "quick": 6, "standard": 7}[budget]
        if budget == "quick" and is_line_dataset(info):
            order = 5  # names: the best order on held-out names (6 and 4 are worse; reports/benchmarks/text.md)
        # scored with the neural models' window of the same budget and dataset (context beyond order - 1 changes
        # nothing for an n-gram), so that a leaderboard's bits/char share one protocol
        quick_context = 32 if is_line_dataset(info) else 64
        return cls(order=order, steps=1, sample_length=256,
                   eval_context={"smoke": 32, "quick": quick_context, "standard": 256}[budget])


def _lookup(keys: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index, found) of the int64 queries q in the sorted unique array keys."""
    if keys.size == 0:
        return np.zeros(q.shape, dtype=np.int64), np.zeros(q.shape, dtype=bool)
    i = np.searchsorted(keys, q)
    ic = np.minimum(i, keys.size - 1)
    return ic, (i < keys.size) & (keys[ic] == q)


def _discounts(counts: np.ndarray) -> np.ndarray:
    """[D1, D2, D3+] of modified Kneser-Ney from the count-of-counts (with safe fallbacks on tiny data)."""
    n = [int(np.sum(counts == r)) for r in (1, 2, 3, 4)]
    y = n[0] / (n[0] + 2 * n[1]) if n[0] + 2 * n[1] > 0 else 0.5
    d = []
    for r in (1, 2, 3):
        v = r - (r + 1) * y * n[r] / n[r - 1] if n[r - 1] > 0 else 0.5 * r
        d.append(float(min(max(v, 0.05), r - 0.05 * r)))  # keeps 0 < D_r < r: probabilities stay in (0, 1]
    return np.array(d, dtype=np.float64)


@register_model
class NGram(TextModel):
    name = "ngram"
    family = "baseline"
    Config = NGramConfig
    max_context = None

    def _build(self) -> None:
        V, N = self.vocab_size, int(self.config.order)
        if N < 1:
            raise InvalidInputError(f"n-gram order must be >= 1, got {N}")
        if V ** N >= 2**62:
            raise InvalidInputError(f"order {N} with {V} characters overflows 64-bit n-gram keys; lower the order")
        self.tables: list[dict] = []  # per order k = 1..N: keys, counts, ctx keys, ctx totals, N1/N2/N3+, D

    # ---- counting -----------------------------------------------------------------------------------------
    def _fit_ids(self, ids, seed, callbacks):
        V, N = self.vocab_size, int(self.config.order)
        t0 = time.perf_counter()
        a = np.concatenate([np.full(N - 1, self.newline_id, dtype=np.int64), ids.numpy().astype(np.int64)])
        L = a.size - (N - 1)  # positions that end an n-gram of the real text
        grams = [None] * (N + 1)
        key = np.zeros(L, dtype=np.int64)
        for j in range(N):  # key of the N-gram ending at each position, built left to right
            key = key * V + a[j : j + L]
        grams[N] = key
        tables: list[dict] = [None] * (N + 1)  # type: ignore[list-item]
        uk, uc = np.unique(grams[N], return_counts=True)
        counts = {N: (uk, uc.astype(np.int64))}
        for k in range(N - 1, 0, -1):  # continuation counts: distinct left extensions of each k-gram
            upper = counts[k + 1][0]
            suf = upper % (V ** k)
            ks, kc = np.unique(suf, return_counts=True)
            counts[k] = (ks, kc.astype(np.int64))
        for k in range(1, N + 1):
            keys, c = counts[k]
            ctx = keys // V
            cu, inv = np.unique(ctx, return_inverse=True)
            tot = np.bincount(inv, weights=c, minlength=cu.size)
            n1 = np.bincount(inv, weights=(c == 1), minlength=cu.size)
            n2 = np.bincount(inv, weights=(c == 2), minlength=cu.size)
            n3 = np.bincount(inv, weights=(c >= 3), minlength=cu.size)
            tables[k] = {"keys": keys, "counts": c, "ctx": cu, "tot": tot, "n1": n1, "n2": n2, "n3": n3,
                         "D": _discounts(c)}
        self.tables = tables
        self.history.steps = 1
        self.history.log(0, seconds=time.perf_counter() - t0,
                         **{f"ngrams_{k}": float(tables[k]["keys"].size) for k in range(1, N + 1)})
        for cb in callbacks:
            cb(0, {"loss": 0.0})

    # ---- probabilities ------------------------------------------------------------------------------------
    def _prob(self, hist: np.ndarray, w: np.ndarray) -> np.ndarray:
        """P(w | hist) for histories hist (M, N-1) int64 and characters w (M, K): (M, K) float64."""
        self._require_fitted()
        V, N = self.vocab_size, int(self.config.order)
        t1 = self.tables[1]
        D = t1["D"]
        idx, found = _lookup(t1["keys"], w)
        c = np.where(found, t1["counts"][idx], 0).astype(np.float64)
        tot = float(t1["tot"][0])
        gamma = (D[0] * t1["n1"][0] + D[1] * t1["n2"][0] + D[2] * t1["n3"][0]) / tot
        p = np.maximum(c - self._disc(D, c), 0.0) / tot + gamma / V
        hkey = np.zeros(hist.shape[0], dtype=np.int64)
        for k in range(2, N + 1):
            hkey = hkey + hist[:, N - k] * (V ** (k - 2))  # context = last k-1 characters of the history
            t = self.tables[k]
            ci, cf = _lookup(t["ctx"], hkey)
            gi, gf = _lookup(t["keys"], hkey[:, None] * V + w)
            c = np.where(gf, t["counts"][gi], 0).astype(np.float64)
            tot = np.where(cf, t["tot"][ci], 1.0)[:, None]
            D = t["D"]
            gamma = (np.where(cf, D[0] * t["n1"][ci] + D[1] * t["n2"][ci] + D[2] * t["n3"][ci], 0.0))[:, None] / tot
            pk = np.maximum(c - self._disc(D, c), 0.0) / tot + gamma * p
            p = np.where(cf[:, None], pk, p)
        return p

    @staticmethod
    def _disc(D: np.ndarray, c: np.ndarray) -> np.ndarray:
        return np.where(c >= 3, D[2], np.where(c == 2, D[1], np.where(c == 1, D[0], 0.0)))

    def _require_fitted(self) -> None:
        if not getattr(self, "tables", None):
            raise InvalidInputError("the n-gram model has no counts: call fit(train_split) first")

    def _histories(self, x: torch.Tensor) -> np.ndarray:
        """(B*T, N-1) histories ending at every position of x (B, T), left-padded with newlines."""
        N = int(self.config.order)
        a = x.cpu().numpy().astype(np.int64)
        B, T = a.shape
        pad = np.concatenate([np.full((B, max(N - 2, 0)), self.newline_id, dtype=np.int64), a], 1)
        if N == 1:
            return np.zeros((B * T, 0), dtype=np.int64)
        win = np.lib.stride_tricks.sliding_window_view(pad, N - 1, axis=1)  # (B, T, N-1)
        return win.reshape(B * T, N - 1)

    def distribution(self, history: str) -> torch.Tensor:
        """P(. | history) over the vocabulary (float64, sums to 1)."""
        h = self.encode(history)[None, :] if history else torch.full((1, 1), self.newline_id)
        hist = self._histories(h)[-1:]
        w = np.arange(self.vocab_size, dtype=np.int64)[None, :]
        return torch.from_numpy(self._prob(hist, w)[0])

    def _window_target_logprobs(self, x, y):
        B, T = x.shape
        hist = self._histories(x)
        p = self._prob(hist, y.cpu().numpy().astype(np.int64).reshape(B * T, 1))
        return torch.from_numpy(np.log(p).reshape(B, T))

    def _window_logprobs(self, x):
        B, T = x.shape
        hist = self._histories(x)
        w = np.broadcast_to(np.arange(self.vocab_size, dtype=np.int64), (B * T, self.vocab_size))
        return torch.from_numpy(np.log(self._prob(hist, w)).reshape(B, T, -1))

    # ---- sampling -----------------------------------------------------------------------------------------
    def _next(self, ids: torch.Tensor) -> torch.Tensor:
        hist = self._histories(ids[:, -max(1, int(self.config.order) - 1):])
        B = ids.shape[0]
        hist = hist.reshape(B, -1, hist.shape[-1])[:, -1] if hist.shape[-1] else np.zeros((B, 0), dtype=np.int64)
        w = np.broadcast_to(np.arange(self.vocab_size, dtype=np.int64), (B, self.vocab_size))
        return torch.from_numpy(np.log(self._prob(hist, w)))

    def _begin(self, ctx, use_cache):
        ctx = ctx.cpu()  # the counts are numpy tables: the history stays on the CPU whatever the device
        return self._next(ctx), ctx

    def _advance(self, ids, nxt):
        ids = torch.cat([ids, nxt.cpu()[:, None]], 1)[:, -max(1, int(self.config.order) - 1):]
        return self._next(ids), ids

    # ---- state --------------------------------------------------------------------------------------------
    def extra_state(self):
        return {"tables": [None] + [{k: torch.from_numpy(np.asarray(v)) for k, v in t.items()} for t in self.tables[1:]]}

    def load_extra_state(self, state):
        tabs = state.get("tables") or []
        self.tables = [None] + [{k: v.numpy() for k, v in t.items()} for t in tabs[1:]]

    def save(self, path):
        self._require_fitted()
        return super().save(path)
