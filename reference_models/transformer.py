"""A GPT-style decoder-only character transformer (family "autoregressive").

Pre-norm blocks of causal multi-head self-attention and a 4x MLP (exact GELU, or squared ReLU with
`mlp_act="relu2"`), rotary position embeddings (relative positions, so a key/value cache stays valid however long
the generation), input embedding tied to the output layer. Trained on random windows of `block_size` characters
with linear warm-up and cosine decay, by AdamW, or (`optimizer="muon"`) by Muon for the blocks' weight matrices
(momentum, then each update orthogonalized by a Newton-Schulz iteration) and AdamW for the embedding, norms and
biases. bf16 autocast on CUDA (config.amp), and on CPU only when `cpu_bf16` is set and the CPU multiplies bf16
natively (reference_models.nets.autocast); likelihoods (`nll_per_char`, `log_prob`) are always computed in
float32. With `attn_impl="matmul"` attention is written as batched matmuls (torch's fused CPU kernel is slow in
bf16).

Cheap local context (optional; character models gain from it): `token_shift` mixes each position's attention input
with the previous position's (a learned per-channel kernel-2 causal conv), and `qkv_conv=k` is Primer's
multi-dconv-head attention (So et al. 2021): a causal depthwise conv of kernel k along time after the q, k and v
projections. Both start as the identity. The KV cache keeps the convs' last inputs, so cached sampling stays the
same computation as uncached.

Sampling context: a sample is generated with at most `block_size` characters of context; when the context is
full, it is cut back to its last `block_size // 2` characters (the cache is then rebuilt from them). Cached and
uncached sampling follow this same rule, so for the same seed they give the same characters (the cache only
saves computation). `nll_per_char` uses windows of `block_size` with stride `block_size // 2` by default: each
character is scored with between block_size/2 and block_size characters of context, as in sampling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from genbench.models import register_model
from genbench.models.base import check_budget
from reference_models.decoding import StaticKV, fill_static, graphed_generate
from reference_models.text_base import NeuralTextModel, TextConfig, is_line_dataset


@dataclass
class TransformerConfig(TextConfig):
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 128
    dropout: float = 0.0
    weight_decay: float = 0.1
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    amp: bool = True  # bf16 autocast on CUDA (and on CPU when cpu_bf16)
    cpu_bf16: bool = False  # bf16 autocast on CPU too, where the CPU multiplies bf16 natively (nets.autocast)
    mlp_act: str = "gelu"  # "gelu" (exact erf) | "relu2" (squared ReLU)
    optimizer: str = "adamw"  # "adamw" | "muon" (Muon for the blocks' matrices, AdamW for the rest)
    muon_lr: float = 0.02  # Muon's learning rate (scaled by the same warm-up/decay schedule as lr)
    muon_momentum: float = 0.95
    qkv_conv: int = 0  # > 0: Primer's multi-dconv-head attention, a causal depthwise conv of this kernel along time after q, k, v
    token_shift: bool = False  # attention input: a learned per-channel mix of each position with the previous one
    attn_impl: str = "sdpa"  # "sdpa" (torch's fused kernel) | "matmul" (batched matmuls: faster under CPU bf16)
    cuda_graphs: bool = True  # cached sampling on CUDA replays one CUDA graph per position (reference_models.decoding)
    log_every: int = 50

    @classmethod
    def for_budget(cls, budget: str, info) -> "TransformerConfig":
        check_budget(budget)
        if budget == "smoke":
            return cls(n_layer=1, n_head=2, n_embd=32, block_size=32, batch_size=8, steps=20, lr=3e-3,
                       warmup_steps=5, max_seconds=None, sample_length=64, eval_context=32, log_every=5)
        if budget == "quick":  # CPU, 1 thread; step-based (same seed -> same model on any machine)
            if is_line_dataset(info):  # names: ~60 CPU-s of training (runs inside the default suite); 900 steps
                # (~30 CPU-s) left it 0.03 bits/char behind the 5-gram, 1800 beat it (reports/benchmarks/text.md)
                return cls(n_layer=2, n_head=4, n_embd=64, block_size=32, batch_size=64, steps=1800, lr=5e-3,
                           warmup_steps=50, max_seconds=None, eval_context=32)
            # running text (shakespeare-char): 357 CPU-s of training measured (1 thread, load ~2), no more than
            # the LSTM's quick config (394 CPU-s, same run): 1.896 bits/char against the LSTM's 1.908 and the
            # 6-gram's 1.956 (reports/benchmarks/text.md, with the sweeps). Width 128 (was 96: 1.909 after 2300
            # steps, 400 CPU-s; better per step on the remote sweep G); 3 layers, context 64 (a
            # depth/width/batch/context/lr sweep at equal CPU time); Muon + squared ReLU (2.160 vs 2.271 bits/char for AdamW + GELU at 1200
            # steps); batch 64 in CPU bf16 with matmul attention (torch's fused CPU attention is slow in bf16): ~1.4x
            # the characters per CPU-s of float32; Primer's dconv on q/k/v (at 800 steps: 2.037 vs 2.053 with token
            # shift, 2.086 with neither; ~20% more CPU per step); Muon lr 0.0075 (sweep G, step 2400 of 3200: 1.917
            # vs 1.922 for 0.01 and 1.933 for 0.015; 0.03 was worse still at 800 steps).
            # On CPUs without native bf16, cpu_bf16 is a no-op and these steps take longer.
            return cls(n_layer=3, n_head=4, n_embd=128, block_size=64, batch_size=64, steps=1770, lr=6e-3,
                       warmup_steps=100, max_seconds=None, sample_length=256, eval_context=64,
                       optimizer="muon", muon_lr=0.0075, mlp_act="relu2", qkv_conv=3, attn_impl="matmul",
                       cpu_bf16=True)
        # standard: one GPU (nanoGPT's shakespeare-char config: 6 x 384, context 256, dropout 0.2)
        return cls(n_layer=6, n_head=6, n_embd=384, block_size=256, batch_size=64, steps=5000, lr=1e-3,
                   dropout=0.2, warmup_steps=100, max_seconds=None, sample_length=256, eval_context=256)


def rotary(x: torch.Tensor, pos: torch.Tensor, inv_freq: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (x[..., i], x[..., i + d/2]) of x (B, T, ..., d) by angle pos[t] * inv_freq[i] (positions along
    dimension 1: q and k are rotated together, before the heads are moved in front of the time axis)."""
    ang = pos.to(inv_freq.dtype)[:, None] * inv_freq[None, :]  # (T, d/2)
    ang = ang.view(ang.shape[0], *([1] * (x.dim() - 3)), ang.shape[1])
    cos, sin = ang.cos().to(x.dtype), ang.sin().to(x.dtype)
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


ATTN_IMPLS = ("sdpa", "matmul")


def matmul_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + mask) v for q (B, H, Tq, d), k and v (B, H, Tk, d), written as batched matmuls
    (the same function as F.scaled_dot_product_attention without dropout). Under CPU bf16 autocast the matmuls run in
    bf16 and the softmax in float32, where torch's fused CPU attention kernel is slow (its bf16 backward took
    ~60 ms of a ~110 ms training step at 3 x 96, batch 64 x 64)."""
    B, H, Tq, d = q.shape
    Tk = k.shape[2]
    kt = k.reshape(B * H, Tk, d).transpose(1, 2)
    qf = q.reshape(B * H, Tq, d)
    if causal:  # query i (the last Tq of Tk positions) sees keys j <= i + Tk - Tq
        mask = torch.full((Tq, Tk), float("-inf"), device=q.device, dtype=qf.dtype).triu(Tk - Tq + 1)
        s = torch.baddbmm(mask, qf, kt, alpha=d ** -0.5)
    else:
        s = torch.bmm(qf, kt) * d ** -0.5
    p = s.float().softmax(-1)
    return torch.bmm(p.to(v.dtype), v.reshape(B * H, Tk, d)).view(B, H, Tq, d)


class CausalDepthwiseConv(nn.Module):
    """Primer's "multi-dconv-head" step (So et al. 2021): each channel of x (B, T, C) is replaced by a learned
    combination of its values at the last `kernel` positions, y[t] = sum_j w[j] * x[t - j] (+ bias), with zeros
    before the window's first position. Initialised to the identity (w[0] = 1), so it starts as plain attention.
    Incremental use (one new position, `tail` = the previous kernel - 1 inputs) gives the same output as the full
    sequence."""

    def __init__(self, channels: int, kernel: int):
        super().__init__()
        if kernel < 1:
            raise ValueError(f"qkv_conv kernel must be >= 1, got {kernel}")
        self.kernel = kernel
        w = torch.zeros(kernel, channels)
        w[0] = 1.0
        self.weight = nn.Parameter(w)  # weight[j]: the tap on x[t - j]
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor, tail: Optional[torch.Tensor] = None):
        """(y, new_tail): y (B, T, C) and the last kernel - 1 rows of [tail, x] (zeros where there were none)."""
        B, T, C = x.shape
        K = self.kernel
        if tail is None:
            tail = x.new_zeros(B, K - 1, C)
        xp = torch.cat([tail, x], 1)  # (B, K - 1 + T, C)
        if T == 1:  # one new position (sampling with a cache): the sum written out
            y = self.bias.to(x.dtype) + xp[:, K - 1 :] * self.weight[0].to(x.dtype)
            for j in range(1, K):
                y = y + xp[:, K - 1 - j : K - 1 - j + T] * self.weight[j].to(x.dtype)
        else:  # the same sum as a grouped conv1d (cross-correlation: its taps run oldest first)
            y = F.conv1d(xp.transpose(1, 2), self.weight.flip(0).t().unsqueeze(1), self.bias, groups=C).transpose(1, 2)
        return y, xp[:, xp.shape[1] - (K - 1) :]


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int, dropout: float, qkv_conv: int = 0, attn_impl: str = "sdpa",
                 token_shift: bool = False):
        super().__init__()
        if n_embd % n_head or (n_embd // n_head) % 2:
            raise ValueError(f"n_embd {n_embd} must split into {n_head} heads of even size")
        if attn_impl not in ATTN_IMPLS:
            raise ValueError(f"attn_impl must be one of {ATTN_IMPLS}, got {attn_impl!r}")
        self.attn_impl = attn_impl
        self.n_head, self.hd = n_head, n_embd // n_head
        self.qkv = nn.Linear(n_embd, 3 * n_embd, bias=False)
        self.dconv = CausalDepthwiseConv(3 * n_embd, qkv_conv) if qkv_conv > 0 else None
        self.shift = CausalDepthwiseConv(n_embd, 2) if token_shift else None  # token shift: a kernel-2 conv
        self.proj = nn.Linear(n_embd, n_embd, bias=False)
        self.dropout = dropout
        self.register_buffer("inv_freq", 1.0 / (10000 ** (torch.arange(0, self.hd, 2).float() / self.hd)), persistent=False)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, cache=None):
        """Attention output and this layer's cache (k, v, tail, shift_tail): rotated keys and values of every
        position so far, the last qkv_conv - 1 pre-conv q/k/v rows and the last input row for the token shift (None
        without the conv / the shift). `cache` is such a tuple, or a `decoding.StaticKV` (fixed buffers, written
        in place and returned)."""
        B, T, C = x.shape
        if cache is not None and T != 1:
            raise ValueError("cached attention takes one new position at a time")
        static = isinstance(cache, StaticKV)
        prev_tail = None if cache is None else (cache.tail if static else cache[2])
        prev_shift = None if cache is None else (cache.shift_tail if static else cache[3])
        shift_tail = None
        if self.shift is not None:
            x, shift_tail = self.shift(x, prev_shift)
        qkv, tail = self.qkv(x), None
        if self.dconv is not None:
            qkv, tail = self.dconv(qkv, prev_tail)
        qkv = qkv.view(B, T, 3, self.n_head, self.hd)
        q, k = rotary(qkv[:, :, :2], pos, self.inv_freq).permute(2, 0, 3, 1, 4)  # (B, H, T, hd) each
        v = qkv[:, :, 2].transpose(1, 2)
        if static:
            k, v = cache.append(k, v, tail, shift_tail)
        elif cache is not None:
            k = torch.cat([cache[0], k], 2)
            v = torch.cat([cache[1], v], 2)
        causal = cache is None  # a cached step's one new position sees every cached one
        if self.attn_impl == "matmul" and not (self.training and self.dropout > 0):
            y = matmul_attention(q, k, v, causal)
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=causal, dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).reshape(B, T, C)
        return F.dropout(self.proj(y), self.dropout, self.training), cache if static else (k, v, tail, shift_tail)


MLP_ACTS = ("gelu", "relu2")


class _ReLU2(torch.autograd.Function):
    """relu(x)^2 with a hand-written backward (2 x relu(x) x grad): the same function and gradient as
    `F.relu(x).square()` in about half the elementwise passes, which dominate a small model's CPU step."""

    @staticmethod
    def forward(ctx, x):
        r = torch.relu(x)
        ctx.save_for_backward(r)
        return r * r

    @staticmethod
    def backward(ctx, g):
        (r,) = ctx.saved_tensors
        return g * (r + r)


def relu2(x: torch.Tensor) -> torch.Tensor:
    return _ReLU2.apply(x)


class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int, dropout: float, mlp_act: str = "gelu", qkv_conv: int = 0,
                 attn_impl: str = "sdpa", token_shift: bool = False):
        super().__init__()
        if mlp_act not in MLP_ACTS:
            raise ValueError(f"mlp_act must be one of {MLP_ACTS}, got {mlp_act!r}")
        self.ln1, self.ln2 = nn.LayerNorm(n_embd), nn.LayerNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head, dropout, qkv_conv, attn_impl, token_shift)
        self.fc, self.out = nn.Linear(n_embd, 4 * n_embd), nn.Linear(4 * n_embd, n_embd)
        self.dropout, self.mlp_act = dropout, mlp_act

    def forward(self, x, pos, cache=None):
        a, kv = self.attn(self.ln1(x), pos, cache)
        x = x + a
        h = self.fc(self.ln2(x))
        h = F.gelu(h) if self.mlp_act == "gelu" else relu2(h)
        x = x + F.dropout(self.out(h), self.dropout, self.training)
        return x, kv


class GPT(nn.Module):
    def __init__(self, vocab_size: int, n_layer: int, n_head: int, n_embd: int, dropout: float, mlp_act: str = "gelu",
                 qkv_conv: int = 0, attn_impl: str = "sdpa", token_shift: bool = False):
        super().__init__()
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.blocks = nn.ModuleList([Block(n_embd, n_head, dropout, mlp_act, qkv_conv, attn_impl, token_shift)
                                     for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(n_embd)
        self.head = nn.Linear(n_embd, vocab_size, bias=False)
        self.head.weight = self.wte.weight  # weight tying
        self.drop = nn.Dropout(dropout)
        for name, p in self.named_parameters():
            if ".dconv." in name or ".shift." in name:
                continue  # identity init (CausalDepthwiseConv)
            if p.dim() >= 2:
                std = 0.02 / math.sqrt(2 * n_layer) if name.endswith(("proj.weight", "out.weight")) else 0.02
                nn.init.normal_(p, 0.0, std)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, idx: torch.Tensor, pos0: int = 0, cache: Optional[list] = None):
        """Logits (B, T, V) for ids idx (B, T) at positions pos0..pos0+T-1, and the per-layer attention caches."""
        pos = torch.arange(pos0, pos0 + idx.shape[1], device=idx.device)
        x = self.drop(self.wte(idx))
        new = []
        for i, blk in enumerate(self.blocks):
            x, kv = blk(x, pos, None if cache is None else cache[i])
            new.append(kv)
        return self.head(self.ln_f(x)), new


def orthogonalize(g: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """An approximately orthogonal matrix with g's row/column spaces (U V^T of g's SVD; singular values pushed
    into roughly [0.7, 1.2]) by a quintic Newton-Schulz iteration on g / ||g||_F, in float32."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g.float()
    tall = x.shape[-2] > x.shape[-1]
    if tall:
        x = x.mT
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    for _ in range(steps):
        m = x @ x.mT
        x = a * x + (b * m + c * (m @ m)) @ x
    return x.mT if tall else x


class Muon(torch.optim.Optimizer):
    """Momentum on the gradients of weight matrices, then each update orthogonalized (`orthogonalize`) and
    scaled by sqrt(max(1, rows / cols)) (Keller Jordan's "Muon", written from its description). A fused
    attention input matrix (3 * n_embd, n_embd) is orthogonalized as its three square blocks (q, k, v)."""

    def __init__(self, params, lr: float = 0.02, momentum: float = 0.95):
        super().__init__(params, {"lr": lr, "momentum": momentum})

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                if "buf" not in st:
                    st["buf"] = torch.zeros_like(p)
                buf = st["buf"].mul_(group["momentum"]).add_(p.grad)
                g = p.grad.add(buf, alpha=group["momentum"])  # Nesterov
                rows, cols = g.shape
                if rows == 3 * cols:
                    u = orthogonalize(g.view(3, cols, cols)).reshape(rows, cols)
                    scale = 1.0
                else:
                    u = orthogonalize(g)
                    scale = max(1.0, rows / cols) ** 0.5
                p.add_(u.to(p.dtype), alpha=-group["lr"] * scale)


class _Both:
    """AdamW and Muon stepped together; the training loop's learning-rate schedule (set on param_groups as a
    multiple of the AdamW base lr) scales Muon's lr by the same factor."""

    def __init__(self, adam: torch.optim.Optimizer, muon: Muon, base_lr: float):
        self.adam, self.muon, self.base_lr = adam, muon, base_lr
        self.muon_lr = [g["lr"] for g in muon.param_groups]

    @property
    def param_groups(self):
        return self.adam.param_groups

    def zero_grad(self, set_to_none: bool = True):
        self.adam.zero_grad(set_to_none=set_to_none)
        self.muon.zero_grad(set_to_none=set_to_none)

    def step(self):
        f = self.adam.param_groups[0]["lr"] / self.base_lr
        for g, lr in zip(self.muon.param_groups, self.muon_lr):
            g["lr"] = lr * f
        self.adam.step()
        self.muon.step()


@register_model
class Transformer(NeuralTextModel):
    name = "transformer"
    family = "autoregressive"
    Config = TransformerConfig
    has_uncached_path = True  # use_cache=False recomputes the whole window each step

    @property
    def max_context(self) -> int:  # type: ignore[override]
        return int(self.config.block_size)

    def _build(self) -> None:
        c = self.config
        self.net = GPT(self.vocab_size, c.n_layer, c.n_head, c.n_embd, c.dropout, c.mlp_act,
                       c.qkv_conv, c.attn_impl, c.token_shift).to(self.device)

    # ---- training -----------------------------------------------------------------------------------------
    def _fit_ids(self, ids, seed, callbacks):
        c = self.config
        torch.manual_seed(seed)
        self._build()  # fresh weights from this seed
        gen = torch.Generator().manual_seed(seed)
        if c.optimizer not in ("adamw", "muon"):
            raise ValueError(f"optimizer must be 'adamw' or 'muon', got {c.optimizer!r}")
        local = lambda n: ".dconv." in n or ".shift." in n  # noqa: E731  (the convs: identity init, AdamW, no decay)
        matrices = ([p for n, p in self.net.blocks.named_parameters() if p.dim() >= 2 and not local(n)]
                    if c.optimizer == "muon" else [])
        conv = {id(p) for n, p in self.net.named_parameters() if local(n)}
        rest = [p for p in self.net.parameters() if all(p is not q for q in matrices)]
        decay = [p for p in rest if p.dim() >= 2 and id(p) not in conv]
        no_decay = [p for p in rest if p.dim() < 2 or id(p) in conv]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": c.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=c.lr, betas=(0.9, 0.99))
        if matrices:
            opt = _Both(opt, Muon(matrices, lr=c.muon_lr, momentum=c.muon_momentum), c.lr)
        self._train_loop(ids, opt, c.block_size, gen, callbacks)

    # ---- sampling (see module docstring for the context rule) ---------------------------------------------
    def _generate_ids(self, n, gen, steps, stop_at_newline=False, use_cache=True, on_token=None, ctx=None):
        """Cached sampling on CUDA goes through per-position CUDA graphs (same characters, one launch each); a
        prefix context (`ctx`) takes the eager path."""
        if use_cache and on_token is None and ctx is None and self.device.type == "cuda" and self.config.cuda_graphs:
            self.net.eval()
            return graphed_generate(self, n, gen, steps, stop_at_newline)
        return super()._generate_ids(n, gen, steps, stop_at_newline, use_cache, on_token, ctx=ctx)

    def _begin(self, ctx, use_cache):
        self.net.eval()
        st = {"ids": ctx, "start": 0, "cache": None, "use_cache": bool(use_cache)}
        if use_cache:
            st["static"] = [StaticKV(self.config.block_size) for _ in self.net.blocks]
        return self._refresh(st)

    def _refresh(self, st):
        with self._autocast():
            logits, cache = self.net(st["ids"][:, st["start"] :])
        st["cache"] = fill_static(st["static"], cache) if st["use_cache"] else None
        return logits[:, -1].float(), st

    def _advance(self, st, nxt):
        st["ids"] = torch.cat([st["ids"], nxt[:, None]], 1)
        T, W = st["ids"].shape[1], int(self.config.block_size)
        if T - st["start"] > W:
            st["start"] = T - max(1, W // 2)
            return self._refresh(st)
        if not st["use_cache"]:
            return self._refresh(st)
        with self._autocast():
            logits, cache = self.net(nxt[:, None], pos0=T - 1 - st["start"], cache=st["cache"])
        st["cache"] = cache
        return logits[:, -1].float(), st

    @property
    def nfe_per_sample(self) -> float:
        return float(self.config.max_line_length + 1 if self.sample_mode == "line" else self.config.sample_length)
