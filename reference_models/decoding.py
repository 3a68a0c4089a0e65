"""Fast cached decoding for the character transformer: a static key/value cache and, on CUDA, one CUDA graph
per position.

Batch-1 sampling of a small model is bound by Python and kernel launches, not by the GPU: every character runs
~25 small kernels per layer, each launched from Python. Two changes remove that, without changing a number:

* `StaticKV` keeps each layer's keys and values in buffers of fixed shape (B, H, block_size, hd) and writes the
  new position in place, instead of concatenating a growing tensor. Attention reads the first `length + 1`
  positions, so it computes the same thing as before; the tests check the samples are identical.
* `graphed_generate` records one step (the forward pass at position p, writing the cache, then the draw of the
  next character from its uniform) as a CUDA graph per position p < block_size, once per (model, batch size),
  and then replays them: one launch per character. Positions are baked into each graph, so shapes stay static.
  The uniforms are the same stream the eager path draws (`torch.rand(n)` per step from the CPU generator, made
  in advance; the generator is then left exactly where the eager path leaves it, also when every line stopped
  early). When the context is full it is cut back to its last block_size // 2 characters and rebuilt by an
  eager forward pass, as in eager sampling.

Without CUDA the same orchestration runs with plain calls instead of graph replays (`use_graphs=False`), which
is how the CPU tests pin that it gives the eager path's characters and generator state.
"""

from __future__ import annotations

from typing import Optional

import torch

from reference_models.text_base import inverse_cdf_sample


class StaticKV:
    """One attention layer's cache in fixed buffers: keys and values (B, H, capacity, hd) of positions
    0..length-1, the conv tails (fixed shapes, updated in place). `fill` loads a prefill's cache, `append` writes
    one position and returns the keys and values to attend over."""

    def __init__(self, capacity: int):
        self.capacity = int(capacity)
        self.k: Optional[torch.Tensor] = None
        self.v: Optional[torch.Tensor] = None
        self.tail: Optional[torch.Tensor] = None
        self.shift_tail: Optional[torch.Tensor] = None
        self.length = 0

    @staticmethod
    def _into(buf: Optional[torch.Tensor], x: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        if x is None:
            return None
        if buf is None or buf.shape != x.shape or buf.dtype != x.dtype or buf.device != x.device:
            return x.clone()
        return buf.copy_(x)

    def fill(self, k: torch.Tensor, v: torch.Tensor, tail, shift_tail) -> "StaticKV":
        B, H, L, hd = k.shape
        if L > self.capacity:
            raise ValueError(f"prefill of {L} positions exceeds the cache's {self.capacity}")
        shape = (B, H, self.capacity, hd)
        if self.k is None or tuple(self.k.shape) != shape or self.k.dtype != k.dtype or self.k.device != k.device:
            self.k = k.new_zeros(shape)
            self.v = v.new_zeros(shape)
        self.k[:, :, :L].copy_(k)
        self.v[:, :, :L].copy_(v)
        self.tail = self._into(self.tail, tail)
        self.shift_tail = self._into(self.shift_tail, shift_tail)
        self.length = L
        return self

    def append(self, k1: torch.Tensor, v1: torch.Tensor, tail, shift_tail) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.length
        if p >= self.capacity:
            raise ValueError(f"the cache holds {self.capacity} positions; position {p} does not fit")
        self.k[:, :, p : p + 1].copy_(k1)
        self.v[:, :, p : p + 1].copy_(v1)
        if tail is not None:
            self.tail.copy_(tail)
        if shift_tail is not None:
            self.shift_tail.copy_(shift_tail)
        self.length = p + 1
        return self.k[:, :, : p + 1], self.v[:, :, : p + 1]


def fill_static(caches: list, prefill_cache: list) -> list:
    """Load an uncached forward pass's per-layer (k, v, tail, shift_tail) into `caches` (list of StaticKV)."""
    for sk, c in zip(caches, prefill_cache):
        sk.fill(*c)
    return caches


class GraphDecoder:
    """The per-(model, batch size) state of graphed decoding: static caches, the current token and uniform, and
    one step function (CUDA graph on CUDA) per position."""

    def __init__(self, model, n: int, use_graphs: bool):
        self.model, self.net, self.n = model, model.net, int(n)
        self.W = int(model.config.block_size)
        self.use_graphs = bool(use_graphs)
        dev = model.device
        self.caches = [StaticKV(self.W) for _ in model.net.blocks]
        self.tok = torch.full((self.n,), int(model.newline_id), dtype=torch.long, device=dev)
        self.u = torch.zeros(self.n, dtype=torch.float64, device=dev)
        self.graphs: dict[int, object] = {}
        self._ready = False

    def prefill(self, ids: torch.Tensor) -> torch.Tensor:
        """Uncached forward pass over the window `ids` (n, L) (the eager path's code), cache loaded; last logits."""
        with self.model._autocast():
            logits, cache = self.net(ids)
        fill_static(self.caches, cache)
        return logits[:, -1].float()

    def _step(self, p: int) -> None:
        """Advance by the token in `self.tok` at position p, then draw the next token with `self.u` into it."""
        for sk in self.caches:
            sk.length = p
        c = self.model.config
        with self.model._autocast(cache_enabled=False):  # safe under graph capture
            logits, _ = self.net(self.tok[:, None], pos0=p, cache=self.caches)
        nxt = inverse_cdf_sample(logits[:, -1].float(), self.u, c.temperature, c.top_k)
        self.tok.copy_(nxt)

    def _capture_all(self) -> None:
        """Record a graph for every position (once). Buffers must exist: run after the first prefill."""
        if self._ready or not self.use_graphs:
            self._ready = True
            return
        saved = ([(sk.k.clone(), sk.v.clone(), None if sk.tail is None else sk.tail.clone(),
                   None if sk.shift_tail is None else sk.shift_tail.clone(), sk.length) for sk in self.caches],
                 self.tok.clone(), self.u.clone())
        side = torch.cuda.Stream(device=self.model.device)
        side.wait_stream(torch.cuda.current_stream(self.model.device))
        with torch.cuda.stream(side):  # warm-up (cuBLAS workspaces, lazy inits) before capture
            for _ in range(2):
                self._step(0)
        torch.cuda.current_stream(self.model.device).wait_stream(side)
        pool = torch.cuda.graph_pool_handle()
        for p in range(self.W):
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g, pool=pool):
                self._step(p)
            self.graphs[p] = g
        caches, tok, u = saved  # capture runs nothing, but the warm-up did: restore the state it changed
        for sk, (k, v, tail, st, length) in zip(self.caches, caches):
            sk.k.copy_(k), sk.v.copy_(v)
            if tail is not None:
                sk.tail.copy_(tail)
            if st is not None:
                sk.shift_tail.copy_(st)
            sk.length = length
        self.tok.copy_(tok), self.u.copy_(u)
        self._ready = True

    def step(self, p: int) -> None:
        if self.use_graphs:
            self.graphs[p].replay()
            for sk in self.caches:
                sk.length = p + 1
        else:
            self._step(p)


def graphed_generate(model, n: int, gen: torch.Generator, steps: int, stop_at_newline: bool = False,
                     use_graphs: Optional[bool] = None) -> torch.Tensor:
    """The same (n, <= steps) ids as `TextModel._generate_ids(..., use_cache=True)` for the same generator state,
    generated through `GraphDecoder` (see the module docstring); leaves `gen` where the eager path leaves it."""
    c = model.config
    dev = model.device
    if use_graphs is None:
        use_graphs = dev.type == "cuda"
    if steps <= 0:
        return torch.empty(n, 0, dtype=torch.long)
    key = (n, bool(use_graphs), id(model.net))
    decoders = model.__dict__.setdefault("_graph_decoders", {})
    dec = decoders.get(key)
    if dec is None:
        decoders.clear()  # one batch size at a time: graphs hold memory
        dec = decoders[key] = GraphDecoder(model, n, use_graphs)
    state = gen.get_state()
    u_all = torch.stack([torch.rand(n, generator=gen, dtype=torch.float64) for _ in range(steps)]).to(dev)
    W = dec.W
    ctx = torch.full((n, 1), int(model.newline_id), dtype=torch.long, device=dev)
    logits = dec.prefill(ctx)
    dec._capture_all()
    first = inverse_cdf_sample(logits, u_all[0], c.temperature, c.top_k)
    outs = [first]
    dec.tok.copy_(first)
    T, start = 1, 0  # ids so far (context + generated) and the window's first position, as in Transformer._advance
    for t in range(1, steps):
        T += 1
        if T - start > W:  # context full: cut back and rebuild the cache (eager, as the eager path does)
            start = T - max(1, W // 2)
            ids = torch.cat([ctx, torch.stack(outs, 1)], 1)
            logits = dec.prefill(ids[:, start:])
            nxt = inverse_cdf_sample(logits, u_all[t], c.temperature, c.top_k)
            dec.tok.copy_(nxt)
        else:
            dec.u.copy_(u_all[t])
            dec.step(T - 1 - start)
            nxt = dec.tok.clone()
        outs.append(nxt)
    out = torch.stack(outs, 1).cpu()
    k = steps
    if stop_at_newline:  # the eager loop stops after the step where every row has had a newline
        seen = (out == int(model.newline_id)).to(torch.int32).cummax(1).values.bool().all(0)
        hit = torch.nonzero(seen)
        if hit.numel():
            k = int(hit[0, 0]) + 1
    gen.set_state(state)
    for _ in range(k):  # leave the generator exactly where the eager path leaves it
        torch.rand(n, generator=gen, dtype=torch.float64)
    return out[:, :k]
