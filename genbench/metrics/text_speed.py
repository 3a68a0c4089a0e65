"""Sampling speed of character-level text models: characters/s with and without the key/value cache, and the
latency to the first character.

Both time the model's public per-character path, `model.generate_ids(n, generator, steps, stop_at_newline,
use_cache)` (`reference_models.text_base.TextModel`), from the context "\\n", with the device synchronised around
each timed call. Every result states its protocol: characters, batch size, cache on or off, repeats, warm-up
calls, the median as statistic, device, torch threads and the hardware it ran on (timings are compared only on
the same hardware: genbench.results.compare).
"""

from __future__ import annotations

import statistics
import time

import torch

from genbench.metrics.base import MetricResult
from genbench.metrics.text import TEXT_METRICS_VERSION


def _sync(device) -> None:
    dev = torch.device(device)
    if dev.type == "cuda" and torch.cuda.is_available():
        torch.cuda.synchronize(dev)


def _timed(model, run, repeats: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        _sync(model.device)
        t0 = time.perf_counter()
        run()
        _sync(model.device)
        times.append(time.perf_counter() - t0)
    return times


def _protocol(model, repeats: int, warmup: int, **more) -> dict:
    from genbench.env_info import hardware

    return {**more, "repeats": repeats, "warmup": warmup, "device": str(model.device), "statistic": "median",
            "timing": True, "torch_threads": torch.get_num_threads(), "hardware": hardware(model.device)}


def sampling_speed(model, n_chars: int = 256, batch_size: int = 1, use_cache: bool = True, repeats: int = 3,
                   warmup: int = 1, seed: int = 0) -> MetricResult:
    """Characters generated per second (median of `repeats` after `warmup`), `batch_size` sequences of `n_chars`
    characters each from the context "\\n" (newlines do not stop the generation here)."""
    gen = torch.Generator().manual_seed(int(seed))

    def run():
        with torch.inference_mode():
            model.generate_ids(batch_size, gen, n_chars, stop_at_newline=False, use_cache=use_cache)

    times = _timed(model, run, repeats, warmup)
    proto = _protocol(model, repeats, warmup, n_chars=n_chars, batch_size=batch_size, kv_cache=bool(use_cache))
    return MetricResult("chars_per_s", n_chars * batch_size / statistics.median(times), "chars/s", True,
                        TEXT_METRICS_VERSION, proto, extra={"seconds": times})


def first_char_latency(model, repeats: int = 5, warmup: int = 1, use_cache: bool = True) -> MetricResult:
    """Milliseconds from the start of a generation (context "\\n", one sequence) to the first sampled character
    (median of repeats): the prompt forward pass plus one draw."""
    gen = torch.Generator().manual_seed(0)

    def run():
        with torch.inference_mode():
            model.generate_ids(1, gen, 1, use_cache=use_cache)

    times = _timed(model, run, repeats, warmup)
    proto = _protocol(model, repeats, warmup, batch_size=1, context="\\n")
    return MetricResult("first_char_latency", statistics.median(times) * 1000.0, "ms", False, TEXT_METRICS_VERSION,
                        proto, extra={"seconds": times})


def speed_metrics(model, n_chars: int = 256, batch_size: int = 1, repeats: int = 3) -> list[MetricResult]:
    """chars/s with the cache (protocol kv_cache=True); without it as `chars_per_s_nocache` for models whose
    uncached path differs (`model.has_uncached_path`); and first-character latency."""
    out = [sampling_speed(model, n_chars, batch_size, True, repeats)]
    if getattr(model, "has_uncached_path", False):
        r = sampling_speed(model, n_chars, batch_size, False, repeats)
        r.name = "chars_per_s_nocache"
        out.append(r)
    out.append(first_char_latency(model, repeats=max(repeats, 3)))
    return out
