"""Text models: causality, KV cache, likelihood protocol against torchmetrics, n-gram normalisation against a
naive Kneser-Ney, determinism and save/load."""

from __future__ import annotations

import math
import random
from collections import defaultdict

import pytest
import torch

from genbench.data.base import DatasetInfo, TextSplit
from genbench.errors import InvalidInputError
from reference_models import create_model, list_models, load_model
from reference_models.text_base import inverse_cdf_sample, sliding_windows

INFO = DatasetInfo(name="tiny-text", modality="text", shape=(), value_range=(0, 0))
LINES = ["smith", "johnson", "williams", "jones", "brown", "davis", "miller", "wilson", "moore", "taylor",
         "anderson", "thomas", "jackson", "white", "harris", "martin", "thompson", "garcia", "martinez", "robinson"]
TEXT = "".join(ln + "\n" for ln in LINES * 6)
VOCAB = sorted(set(TEXT) | set("qz"))  # two characters never seen in training


def split(text: str = TEXT, name: str = "train") -> TextSplit:
    return TextSplit(text, list(VOCAB), INFO, name, source="test")


_CACHE: dict = {}


def fitted(name: str, fresh: bool = False, **ov) -> object:
    """A smoke-budget model fitted on TEXT (shared between tests unless fresh: tests never mutate it)."""
    key = (name, tuple(sorted(ov.items())))
    if fresh or key not in _CACHE:
        m = create_model(name, INFO, "smoke", ov or None)
        m.fit(split(), seed=0)
        if fresh:
            return m
        _CACHE[key] = m
    return _CACHE[key]


def test_registered():
    assert {"transformer", "lstm", "ngram", "text-copy"} <= set(list_models())


# ---------------------------------------------------------------------------------------------- transformer
# the quick config's options on running text (local-context convs, matmul attention); the convs start as the
# identity, so the tests give them random weights (else they would not be exercised)
OPTS = [{}, {"qkv_conv": 3, "token_shift": True, "attn_impl": "matmul"}, {"qkv_conv": 2, "attn_impl": "sdpa"}]


def randomize_convs(m, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in m.net.named_parameters():
            if ".dconv." in n or ".shift." in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return m


@pytest.mark.parametrize("opts", OPTS)
def test_transformer_is_causal(opts):
    m = randomize_convs(create_model("transformer", INFO, "smoke", {"vocab": "".join(VOCAB), "n_layer": 2, **opts}))
    torch.manual_seed(0)
    x = torch.randint(0, len(VOCAB), (2, 24))
    x2 = x.clone()
    x2[:, 12] = (x2[:, 12] + 1) % len(VOCAB)
    with torch.no_grad():
        a, _ = m.net(x)
        b, _ = m.net(x2)
    assert torch.equal(a[:, :12], b[:, :12]) or torch.allclose(a[:, :12], b[:, :12], atol=1e-6, rtol=0)
    assert (a[:, 12:] - b[:, 12:]).abs().max() > 1e-3  # the changed character does matter from its position on


@pytest.mark.parametrize("opts", OPTS)
@pytest.mark.parametrize("length", [10, 40])  # 40 > block_size 32: the context is cut back (cache rebuilt)
def test_kv_cache_sampling_equals_uncached(length, opts):
    m = create_model("transformer", INFO, "smoke", {"vocab": "".join(VOCAB), "n_layer": 2, "sample_mode": "stream",
                                                    "sample_length": length, **opts})
    randomize_convs(m)
    a = m.sample(3, seed=3, use_cache=True)
    b = m.sample(3, seed=3, use_cache=False)
    assert a == b
    assert all(len(s) == length for s in a)
    # stronger: the next-character logits agree at every step
    ctx = torch.full((2, 1), m.newline_id)
    la, sa = m._begin(ctx, True)
    lb, sb = m._begin(ctx, False)
    g = torch.Generator().manual_seed(0)
    for _ in range(length):
        assert torch.allclose(la, lb, atol=1e-4, rtol=1e-4)
        nxt = inverse_cdf_sample(la, torch.rand(2, generator=g, dtype=torch.float64))
        la, sa = m._advance(sa, nxt)
        lb, sb = m._advance(sb, nxt)


def test_perplexity_matches_torchmetrics_on_same_logits():
    from torchmetrics.text import Perplexity

    m = fitted("transformer")
    text = "johnson\nsmith\nwilson\nmoore\n"
    L = len(text)
    nats, n, per = m.nll_per_char(text, context=L, stride=L, return_all=True)  # one window: exact same logits
    ids = torch.cat([torch.tensor([m.newline_id]), m.encode(text)])
    with torch.no_grad():
        logits, _ = m.net(ids[None, :-1])
    ppl = Perplexity()(logits.double(), ids[None, 1:])
    assert n == L
    assert math.isclose(math.exp(nats), float(ppl), rel_tol=1e-6)
    from genbench.metrics.text import heldout_nll

    res = {r.name: r for r in heldout_nll(m, text, context=L, stride=L)}
    assert math.isclose(res["perplexity"].value, float(ppl), rel_tol=1e-6)
    assert math.isclose(res["bits_per_char"].value, nats / math.log(2), rel_tol=1e-12)
    assert res["bits_per_char"].protocol["context"] == L and res["bits_per_char"].protocol["stride"] == L


def test_sliding_window_scores_every_char_once_with_enough_context():
    for n, C, S in [(100, 16, 8), (7, 16, 8), (50, 10, 10), (33, 8, 3)]:
        seen = []
        for b, e, f in sliding_windows(n, C, S):
            assert e - b <= C
            for j in range(f + 1, e + 1):
                seen.append(j)
                assert j - b >= min(C - S, j)  # characters of context before target j inside its window
        assert seen == list(range(1, n + 1))
    with pytest.raises(InvalidInputError):
        sliding_windows(10, 8, 9)


def test_sliding_window_nll_equals_bruteforce():
    m = fitted("transformer")
    text = TEXT[:150]
    C, S = 32, 12
    nats, n, per = m.nll_per_char(text, context=C, stride=S, return_all=True)
    ids = torch.cat([torch.tensor([m.newline_id]), m.encode(text)])
    ref = []
    for b, e, f in sliding_windows(len(text), C, S):
        with torch.no_grad():
            lp = torch.log_softmax(m.net(ids[None, b:e])[0][0].double(), -1)
        for j in range(f + 1, e + 1):
            ref.append(-float(lp[j - b - 1, ids[j]]))
    assert torch.allclose(per, torch.tensor(ref, dtype=torch.float64), atol=1e-5)
    assert math.isclose(nats, sum(ref) / len(ref), rel_tol=1e-6)


# ---------------------------------------------------------------------------------------------- n-gram
def naive_kn(text: str, vocab: list, order: int):
    """Interpolated modified Kneser-Ney written the slow, obvious way (dicts of tuples), as an independent check."""
    V = len(vocab)
    pad = "\n" * (order - 1) + text
    raw = defaultdict(int)
    for i in range(order - 1, len(pad)):
        raw[tuple(pad[i - order + 1 : i + 1])] += 1
    counts = {order: dict(raw)}
    for k in range(order - 1, 0, -1):
        cont = defaultdict(int)
        for g in counts[k + 1]:
            cont[g[1:]] += 1
        counts[k] = dict(cont)

    def discounts(c):
        n = [sum(1 for v in c.values() if v == r) for r in (1, 2, 3, 4)]
        y = n[0] / (n[0] + 2 * n[1]) if n[0] + 2 * n[1] else 0.5
        out = []
        for r in (1, 2, 3):
            v = r - (r + 1) * y * n[r] / n[r - 1] if n[r - 1] else 0.5 * r
            out.append(min(max(v, 0.05), r - 0.05 * r))
        return out

    D = {k: discounts(counts[k]) for k in counts}

    def d(k, c):
        return 0.0 if c == 0 else D[k][min(c, 3) - 1]

    def p(w, h):  # h: tuple of the last (order-1) characters
        k = len(h) + 1
        if k == 1:
            c1 = counts[1]
            tot = sum(c1.values())
            gamma = sum(d(1, c) for c in c1.values()) / tot
            return max(c1.get((w,), 0) - d(1, c1.get((w,), 0)), 0) / tot + gamma / V
        ck = counts[k]
        follow = {g[-1]: c for g, c in ck.items() if g[:-1] == h}
        if not follow:
            return p(w, h[1:])
        tot = sum(follow.values())
        gamma = sum(d(k, c) for c in follow.values()) / tot
        c = follow.get(w, 0)
        return max(c - d(k, c), 0) / tot + gamma * p(w, h[1:])

    return p


def test_ngram_matches_naive_kneser_ney_and_sums_to_one():
    order = 4
    m = fitted("ngram", order=order)
    from reference_models.text_base import training_text

    assert m.config.sample_mode == "line"  # TEXT is a line dataset: fit() counts its lines in a seeded order
    p = naive_kn(training_text(split(), "line", 0), VOCAB, order)
    rng = random.Random(0)
    hists = ["\n\n\n", "smi", "ohn", "son", "qzq", "\nja", "zzs", "ams", "\n\nw"]
    hists += ["".join(rng.choice(VOCAB) for _ in range(order - 1)) for _ in range(20)]
    for h in hists:
        dist = m.distribution(h)
        assert abs(float(dist.sum()) - 1.0) < 1e-12, h
        assert bool((dist > 0).all())
        ref = torch.tensor([p(w, tuple(h)) for w in VOCAB], dtype=torch.float64)
        assert torch.allclose(dist, ref, atol=1e-12), h


def test_ngram_nll_uses_the_same_probabilities():
    m = fitted("ngram", order=3)
    text = "jones\nsmith\n"
    nats, n, per = m.nll_per_char(text, context=8, stride=4, return_all=True)
    s = "\n" + text
    ref = [-math.log(float(m.distribution(s[max(0, j - 2) : j])[m.stoi[s[j]]])) for j in range(1, len(s))]
    # windows of 8 with stride 4 leave >= 4 >= order-1 characters of context: the n-gram sees its full history
    assert torch.allclose(per, torch.tensor(ref, dtype=torch.float64), atol=1e-12)


# ---------------------------------------------------------------------------------------------- all models
@pytest.mark.parametrize("name", ["transformer", "lstm", "ngram", "text-copy"])
def test_same_seed_same_samples_and_save_load(name, tmp_path):
    m = fitted(name)
    a = m.sample(12, seed=5)
    assert a == m.sample(12, seed=5)
    assert a != m.sample(12, seed=6)
    assert isinstance(a, list) and len(a) == 12 and all(isinstance(s, str) for s in a)
    assert m.sample_mode == "line" and all("\n" not in s for s in a)
    m.save(tmp_path / name)
    m2 = load_model(tmp_path / name)
    assert m2.sample(12, seed=5) == a
    if m.log_prob_kind != "none":
        assert m2.nll_per_char(TEXT[:100]) == m.nll_per_char(TEXT[:100])


@pytest.mark.parametrize("name", ["transformer", "lstm", "ngram"])
def test_training_is_deterministic_and_log_prob_consistent(name):
    a, b = fitted(name), fitted(name, fresh=True)
    assert a.nll_per_char(TEXT[:120]) == b.nll_per_char(TEXT[:120])
    lp = a.log_prob(["smith", "zqzqz"])
    nats, n = a.nll_per_char("smith\n", context=a.default_context())
    assert math.isclose(float(lp[0]), -nats * n, rel_tol=1e-6)
    if name == "ngram":  # exact counts: a name of never-seen characters is far less likely than a training name
        assert float(lp[1]) < float(lp[0]) - 10


def test_text_copy_emits_training_lines_and_stream_passages():
    m = fitted("text-copy")
    assert set(m.sample(50, seed=0)) <= set(LINES)
    s = create_model("text-copy", INFO, "smoke", {"sample_mode": "stream", "sample_length": 20})
    s.fit(split(), seed=0)
    out = s.sample(5, seed=1)
    assert all(len(x) == 20 and x in TEXT for x in out)


def test_stream_mode_lengths_and_trained_model_learns():
    m = create_model("ngram", INFO, "smoke", {"sample_mode": "stream", "sample_length": 40})
    m.fit(split(), seed=0)
    assert all(len(s) == 40 for s in m.sample(4, seed=0))
    t = fitted("transformer", steps=60)
    uniform = math.log(len(VOCAB))
    assert t.nll_per_char(TEXT[:200])[0] < uniform - 0.5


def test_bad_inputs_raise_clear_errors():
    m = create_model("transformer", INFO, "smoke")
    with pytest.raises(InvalidInputError, match="TextSplit"):
        m.fit(torch.zeros(3, 2))
    with pytest.raises(InvalidInputError, match="fit"):
        m.sample(2)
    m.fit(split(), seed=0)
    with pytest.raises(InvalidInputError, match="vocabulary"):
        m.nll_per_char("SMITH")
    with pytest.raises(InvalidInputError, match="maximum context"):
        m.nll_per_char("smith", context=10_000)
    with pytest.raises(NotImplementedError):
        fitted("text-copy").nll_per_char("smith")
    with pytest.raises(ValueError):
        create_model("transformer", DatasetInfo("pts", "points", (2,), (-1, 1)), "smoke")


# ---------------------------------------------------------------------------------------------- quick-config options
def test_muon_orthogonalize_matches_svd_polar_factor():
    """Newton-Schulz output is close to U V^T of the SVD (the exact orthogonal polar factor), for wide, tall and
    batched matrices whose singular values span 30x (as gradients do; the iteration is not meant to lift
    singular values near 0): its singular values lie in ~[0.7, 1.2] and it is aligned with U V^T."""
    from reference_models.transformer import orthogonalize

    torch.manual_seed(0)
    for shape in [(16, 48), (48, 16), (3, 24, 24)]:
        *b, r, c = shape
        k = min(r, c)
        u = torch.linalg.qr(torch.randn(*b, r, k, dtype=torch.float64))[0]
        v = torch.linalg.qr(torch.randn(*b, c, k, dtype=torch.float64))[0]
        s = torch.logspace(0, -1.5, k, dtype=torch.float64) * 7.0
        g = u @ torch.diag_embed(s.expand(*b, k)) @ v.mT
        polar = (u @ v.mT).float()
        o = orthogonalize(g.float())
        sv = torch.linalg.svdvals(o)
        assert o.shape == g.shape and sv.min() > 0.6 and sv.max() < 1.25
        cos = (o * polar).sum((-2, -1)) / (o.norm(dim=(-2, -1)) * polar.norm(dim=(-2, -1)))
        assert bool((cos > 0.97).all())


def test_transformer_muon_relu2_trains_deterministically():
    ov = {"optimizer": "muon", "mlp_act": "relu2", "steps": 60}
    a, b = fitted("transformer", **ov), fitted("transformer", fresh=True, **ov)
    assert a.nll_per_char(TEXT[:200]) == b.nll_per_char(TEXT[:200])
    assert a.nll_per_char(TEXT[:200])[0] < math.log(len(VOCAB)) - 0.5  # it learns
    with pytest.raises(ValueError, match="optimizer"):
        create_model("transformer", INFO, "smoke", {"optimizer": "sgd"}).fit(split(), seed=0)


def check_nll_unchanged_by_cpu_bf16(m, monkeypatch):
    """nll_per_char of the same weights is identical with cpu_bf16 on (and native bf16 forced) and off."""
    from reference_models.nets import cpu_native_bf16

    ref = m.nll_per_char(TEXT[:150])
    monkeypatch.setenv("GENBENCH_CPU_BF16", "1")
    cpu_native_bf16.cache_clear()
    try:
        m.config.cpu_bf16 = True
        assert m.nll_per_char(TEXT[:150]) == ref
    finally:
        m.config.cpu_bf16 = False
        cpu_native_bf16.cache_clear()


@pytest.mark.parametrize("name", ["transformer", "lstm"])
def test_likelihood_is_float32_even_with_cpu_bf16(name, monkeypatch):
    """cpu_bf16 switches training/sampling to bf16 autocast, never the likelihood: nll_per_char of the same weights
    is identical with the flag on (and native bf16 forced) and off."""
    check_nll_unchanged_by_cpu_bf16(fitted(name), monkeypatch)


def test_matmul_attention_equals_torch_sdpa():
    """The explicit-matmul attention (used for CPU bf16 training) is torch's scaled_dot_product_attention: causal
    (square) and for new queries against a longer key sequence (the KV-cache step)."""
    import torch.nn.functional as F

    from reference_models.transformer import matmul_attention

    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 9, 8, dtype=torch.float64) for _ in range(3))
    assert torch.allclose(matmul_attention(q, k, v, True), F.scaled_dot_product_attention(q, k, v, is_causal=True))
    assert torch.allclose(matmul_attention(q[:, :, -1:], k, v, False), F.scaled_dot_product_attention(q[:, :, -1:], k, v))
    # causal with fewer queries than keys: the queries are the last positions (each sees keys up to itself)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)[:, :, -4:]
    assert torch.allclose(matmul_attention(q[:, :, -4:], k, v, True), ref)


def test_causal_depthwise_conv_equals_conv1d_and_runs_incrementally():
    """y[t] = sum_j w[j] x[t-j] + b with zero padding, against torch's grouped conv1d; feeding one position at a
    time with the returned tail gives the same outputs; the identity init passes x through."""
    import torch.nn.functional as F

    from reference_models.transformer import CausalDepthwiseConv

    torch.manual_seed(0)
    B, T, C, K = 2, 7, 5, 3
    conv = CausalDepthwiseConv(C, K).double()
    x = torch.randn(B, T, C, dtype=torch.float64)
    assert torch.equal(conv(x)[0], x)
    with torch.no_grad():
        conv.weight.normal_()
        conv.bias.normal_()
    y, tail = conv(x)
    ref = F.conv1d(F.pad(x.transpose(1, 2), (K - 1, 0)), conv.weight.flip(0).t().unsqueeze(1), conv.bias, groups=C)
    assert torch.allclose(y, ref.transpose(1, 2))
    assert torch.equal(tail, x[:, -(K - 1):])
    t, steps = None, []
    for i in range(T):
        yi, t = conv(x[:, i : i + 1], t)
        steps.append(yi)
    assert torch.allclose(torch.cat(steps, 1), y)


def test_transformer_local_convs_train_deterministically_and_bf16_likelihood_is_float32(monkeypatch):
    ov = {"qkv_conv": 3, "token_shift": True, "attn_impl": "matmul", "optimizer": "muon", "mlp_act": "relu2",
          "steps": 60}
    a, b = fitted("transformer", **ov), fitted("transformer", fresh=True, **ov)
    assert a.nll_per_char(TEXT[:200]) == b.nll_per_char(TEXT[:200])
    assert a.nll_per_char(TEXT[:200])[0] < math.log(len(VOCAB)) - 0.5  # it learns
    w = a.net.blocks[0].attn.dconv.weight
    identity = torch.zeros_like(w)
    identity[0] = 1.0
    assert (w - identity).abs().max() > 1e-3  # the conv was trained (away from its identity init)
    check_nll_unchanged_by_cpu_bf16(a, monkeypatch)
    with pytest.raises(ValueError, match="attn_impl"):
        create_model("transformer", INFO, "smoke", {"attn_impl": "flash"}).fit(split(), seed=0)


def test_relu2_matches_autograd_of_relu_square():
    """The hand-written relu(x)^2 backward equals autograd's gradient of F.relu(x).square() (and passes gradcheck)."""
    import torch.nn.functional as F

    from reference_models.transformer import relu2

    torch.manual_seed(0)
    x = torch.randn(50, 7, dtype=torch.float64, requires_grad=True)
    g = torch.randn(50, 7, dtype=torch.float64)
    (a,) = torch.autograd.grad(relu2(x), x, g)
    (b,) = torch.autograd.grad(F.relu(x).square(), x, g)
    assert torch.equal(relu2(x), F.relu(x).square()) and torch.allclose(a, b, rtol=0, atol=1e-15)
    assert torch.autograd.gradcheck(relu2, (x,))


def _expected_context(j: int, C: int, S: int) -> int:
    """Characters of context (the leading "\\n" included) of target j = 1..n under windows of C advancing by S:
    the first window scores targets 1..C with all j characters before them; window k >= 1 starts at k*S and
    scores the S targets after C + (k-1)*S, i.e. with C - S + 1 .. C characters of context."""
    return j if j <= C else C - S + 1 + (j - C - 1) % S


@pytest.mark.parametrize("n,C,S", [(61, 16, None), (61, 15, None), (40, 8, 1), (45, 12, 12), (50, 10, 3),
                                   (7, 16, None), (16, 16, None), (17, 16, 5), (33, 2, 1)])
def test_every_window_of_nll_per_char_has_its_exact_context(n, C, S):
    """Instrumented model: encode() maps the i-th character to id BASE + i, so a window's ids say which positions
    it holds, and the stub scorer returns -(target position * 10000 + characters conditioned on), so the
    per-character NLL names the character scored and its context length. Checks: every window is a contiguous
    slice of "\\n" + text of at most C characters (exactly C unless it reaches the end of the text), its
    targets are the next characters, every character is scored exactly once, and with exactly
    _expected_context characters (stride default C // 2)."""
    m = fitted("ngram", fresh=True, order=2)
    BASE = 1000
    assert m.newline_id < BASE
    windows = []

    def encode(s):
        return torch.arange(BASE, BASE + len(s), dtype=torch.long)

    def scorer(x, y):
        windows.extend(zip(x.tolist(), y.tolist()))
        pos = (y - BASE + 1).double()  # target id BASE + i is character s[i + 1] of "\n" + text
        ctx = torch.arange(1, x.shape[1] + 1, dtype=torch.float64).expand_as(pos)  # target t sees x[:, :t+1]
        return -(pos * 10000 + ctx)

    m.encode, m._window_target_logprobs = encode, scorer
    text = "smith\njones\n" * 6
    text = (text * (n // len(text) + 1))[:n]
    nats, n_scored, per = m.nll_per_char(text, context=C, stride=S, return_all=True)
    S_used = S or max(1, C // 2)
    assert n_scored == n
    seq = [m.newline_id] + list(range(BASE, BASE + n))
    for x, y in windows:
        b = seq.index(x[0])
        assert x == seq[b : b + len(x)] and y == seq[b + 1 : b + len(x) + 1]
        assert len(x) == min(C, n - b)
    assert len(windows) == len(sliding_windows(n, C, S_used))
    per = per.tolist()
    assert [int(v) // 10000 for v in per] == list(range(1, n + 1))  # each character once, in order
    assert [int(v) % 10000 for v in per] == [_expected_context(j, C, S_used) for j in range(1, n + 1)]
    if S_used == 1:
        assert [int(v) % 10000 for v in per] == [min(j, C) for j in range(1, n + 1)]
    if S is None:  # the protocol a results row states is the one used
        from genbench.metrics.text import nll_protocol

        assert nll_protocol(m, C, None)["stride"] == S_used


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (the device run found this)")
@pytest.mark.parametrize("name", ["ngram", "lstm", "transformer"])
def test_line_sampling_on_cuda_matches_the_cpu(name):
    """Every text model samples lines on a GPU: the n-gram keeps its tables on the host, so its logits stay there
    (the H200 run of benchmarks/bench_gpu.py failed names/ngram with 'cuda:0 and cpu'). Same seed, same lines."""
    m = create_model(name, INFO, "smoke", {"sample_mode": "line"})
    m.fit(split(), seed=0)
    cpu = m.sample(8, seed=3)
    m.to("cuda")
    gpu = m.sample(8, seed=3)
    assert len(gpu) == 8 and all(isinstance(s, str) and "\n" not in s for s in gpu)
    if name == "ngram":  # host tables: bit-identical draws
        assert gpu == cpu
