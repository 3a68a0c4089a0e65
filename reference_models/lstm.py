"""A character LSTM language model (family "autoregressive", recurrent).

Embedding -> multi-layer LSTM -> linear output. Trained with truncated back-propagation on random windows of
`seq_len` characters, each started from a zero state; AdamW with warm-up and cosine decay; bf16 autocast on
CUDA, and on CPU when `cpu_bf16` is set and the CPU multiplies bf16 natively (reference_models.nets.autocast);
likelihoods are always computed in float32. Sampling carries the recurrent state over the whole sample (the state is the LSTM's cache, so
cached and uncached sampling are the same computation). `nll_per_char` uses the common sliding-window
protocol (windows of `eval_context` characters from a zero state, stride eval_context // 2).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from genbench.models import register_model
from genbench.models.base import check_budget
from reference_models.text_base import NeuralTextModel, TextConfig, is_line_dataset


@dataclass
class LSTMConfig(TextConfig):
    n_layer: int = 2
    n_embd: int = 64
    hidden: int = 256
    seq_len: int = 128
    dropout: float = 0.0
    weight_decay: float = 0.0
    warmup_steps: int = 50
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    amp: bool = True  # bf16 autocast on CUDA (and on CPU when cpu_bf16)
    cpu_bf16: bool = False  # bf16 autocast on CPU too, where the CPU multiplies bf16 natively (nets.autocast)
    log_every: int = 50

    @classmethod
    def for_budget(cls, budget: str, info) -> "LSTMConfig":
        check_budget(budget)
        if budget == "smoke":
            return cls(n_layer=1, n_embd=16, hidden=32, seq_len=32, batch_size=8, steps=20, lr=3e-3, warmup_steps=5,
                       max_seconds=None, sample_length=64, eval_context=32, log_every=5)
        if budget == "quick":  # CPU, 1 thread; step-based, the same CPU time as the transformer's quick config
            if is_line_dataset(info):  # names: ~25 CPU-s of training
                return cls(n_layer=1, n_embd=64, hidden=256, seq_len=32, batch_size=32, steps=900, lr=4e-3,
                           max_seconds=None, eval_context=32)
            # running text: at least the transformer's budget (394 CPU-s measured, 1 thread, load ~2, against
            # the transformer's 357; 15000 steps took 329 CPU-s and gave 1.918 bits/char, 18200 give 1.908); one 256-unit
            # layer at a high lr beat 2 x 256 (windows 64 and 128) and 1 x 512 at equal CPU time
            # (reports/benchmarks/text.md). bf16 autocast on CPUs with native bf16: a training step takes ~20
            # CPU-ms instead of ~46 in float32, so the same CPU time buys 2.3x the steps (on other CPUs cpu_bf16
            # is a no-op and these steps take ~2.3x the time)
            return cls(n_layer=1, n_embd=64, hidden=256, seq_len=64, batch_size=32, steps=18200, lr=6e-3,
                       max_seconds=None, sample_length=256, eval_context=64, cpu_bf16=True)
        return cls(n_layer=3, n_embd=128, hidden=512, seq_len=256, batch_size=64, steps=5000, lr=2e-3,
                   dropout=0.2, max_seconds=None, sample_length=256, eval_context=256)


class CharLSTM(nn.Module):
    def __init__(self, vocab_size: int, n_embd: int, hidden: int, n_layer: int, dropout: float):
        super().__init__()
        self.emb = nn.Embedding(vocab_size, n_embd)
        self.rnn = nn.LSTM(n_embd, hidden, n_layer, batch_first=True, dropout=dropout if n_layer > 1 else 0.0)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, vocab_size)

    def forward(self, idx, state=None):
        h, state = self.rnn(self.drop(self.emb(idx)), state)
        return self.head(self.drop(h)), state


@register_model
class LSTM(NeuralTextModel):
    name = "lstm"
    family = "autoregressive"
    Config = LSTMConfig
    max_context = None

    def _build(self) -> None:
        c = self.config
        self.net = CharLSTM(self.vocab_size, c.n_embd, c.hidden, c.n_layer, c.dropout).to(self.device)

    def _fit_ids(self, ids, seed, callbacks):
        c = self.config
        torch.manual_seed(seed)
        self._build()
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.AdamW(self.net.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        self._train_loop(ids, opt, c.seq_len, gen, callbacks)

    def _begin(self, ctx, use_cache):
        self.net.eval()
        with self._autocast():
            logits, state = self.net(ctx)
        return logits[:, -1].float(), state

    def _advance(self, state, nxt):
        with self._autocast():
            logits, state = self.net(nxt[:, None], state)
        return logits[:, -1].float(), state
