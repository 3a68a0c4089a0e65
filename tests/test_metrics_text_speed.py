"""Text sampling speed (genbench/metrics/text_speed.py) with a scripted clock and a model that records its calls:
chars/s and first-character latency from known durations (median, not mean), the calls made (warm-up, repeats,
batch, characters, cache, seed, inference mode), the device synchronised around each timed call, the protocol
and the defaults."""

from __future__ import annotations

import types

import pytest
import torch

from genbench.metrics import text_speed
from genbench.metrics.text import TEXT_METRICS_VERSION


class Recorder:
    """A text model stand-in: `generate_ids` records its arguments and advances the scripted clock."""

    def __init__(self, clock, device="cpu", uncached=None):
        self.clock, self.device, self.calls = clock, device, []
        if uncached is not None:
            self.has_uncached_path = uncached

    def generate_ids(self, n, generator, steps, stop_at_newline=True, use_cache=True):
        self.calls.append({"n": n, "seed": generator.initial_seed(), "steps": steps, "stop": stop_at_newline,
                           "cache": use_cache, "inference": torch.is_inference_mode_enabled()})
        self.clock.step()


class Clock:
    """perf_counter that advances by the next of `durations` at each generate_ids call (warm-up calls too)."""

    def __init__(self, durations):
        self.t, self.durations = 100.0, list(durations)

    def step(self):
        self.t += self.durations.pop(0)

    def perf_counter(self):
        return self.t


@pytest.fixture
def clock(monkeypatch):
    def make(durations):
        c = Clock(durations)
        monkeypatch.setattr(text_speed, "time", types.SimpleNamespace(perf_counter=c.perf_counter))
        return c
    monkeypatch.setattr("genbench.env_info.hardware", lambda dev="cpu": f"hw of {dev}")
    return make


def test_chars_per_s_is_characters_over_the_median_time(clock):
    c = clock([9.0, 0.5, 0.1, 0.2])  # warm-up 9 s (not timed), then 0.5, 0.1, 0.2: median 0.2 (mean 0.27)
    m = Recorder(c)
    r = text_speed.sampling_speed(m, n_chars=12, batch_size=5, use_cache=False, repeats=3, warmup=1, seed=7)
    assert r.name == "chars_per_s" and r.unit == "chars/s" and r.higher_is_better
    assert r.value == pytest.approx(12 * 5 / 0.2, rel=1e-12)
    assert r.extra["seconds"] == pytest.approx([0.5, 0.1, 0.2], abs=1e-12)
    assert r.version == TEXT_METRICS_VERSION
    assert m.calls == [{"n": 5, "seed": 7, "steps": 12, "stop": False, "cache": False, "inference": True}] * 4
    assert r.protocol == {"n_chars": 12, "batch_size": 5, "kv_cache": False, "repeats": 3, "warmup": 1, "device": "cpu",
                          "statistic": "median", "timing": True, "torch_threads": torch.get_num_threads(),
                          "hardware": "hw of cpu"}
    # the median differs from the mean: 4 repeats 1, 1, 1, 9 -> median 1, mean 3
    c = clock([1.0, 1.0, 1.0, 9.0])
    r = text_speed.sampling_speed(Recorder(c), n_chars=4, batch_size=2, repeats=4, warmup=0)
    assert r.value == pytest.approx(8.0, rel=1e-12) and r.protocol["warmup"] == 0


def test_sampling_speed_defaults(clock):
    c = clock([1.0] * 4)
    m = Recorder(c)
    r = text_speed.sampling_speed(m)
    assert m.calls == [{"n": 1, "seed": 0, "steps": 256, "stop": False, "cache": True, "inference": True}] * 4
    assert r.protocol["repeats"] == 3 and r.protocol["warmup"] == 1 and r.protocol["kv_cache"] is True
    assert r.value == pytest.approx(256.0, rel=1e-12)


def test_first_char_latency_is_the_median_in_milliseconds(clock):
    c = clock([5.0, 0.004, 0.002, 0.010, 0.003, 0.001, 0.5])  # warm-up, then 5 repeats (median 0.003 s; mean 0.004)
    m = Recorder(c)
    r = text_speed.first_char_latency(m, use_cache=False)
    assert r.name == "first_char_latency" and r.unit == "ms" and not r.higher_is_better
    assert r.value == pytest.approx(3.0, rel=1e-9)
    assert m.calls == [{"n": 1, "seed": 0, "steps": 1, "stop": True, "cache": False, "inference": True}] * 6
    assert r.protocol == {"batch_size": 1, "context": "\\n", "repeats": 5, "warmup": 1, "device": "cpu",
                          "statistic": "median", "timing": True, "torch_threads": torch.get_num_threads(),
                          "hardware": "hw of cpu"}
    assert c.durations == [0.5]
    m2 = Recorder(clock([0.0, 0.002, 0.002]))
    r = text_speed.first_char_latency(m2, repeats=2, warmup=1)
    assert r.value == pytest.approx(2.0, rel=1e-9) and m2.calls[0]["cache"] is True and len(m2.calls) == 3


@pytest.mark.parametrize("uncached", [None, False, True])
def test_speed_metrics_lists_and_latency_repeats(clock, uncached):
    # chars/s (1 warm-up + 3 repeats), chars/s without the cache when the model has such a path (4 more),
    # latency with max(repeats, 3) = 3 repeats after 1 warm-up
    n_speed = 8 if uncached else 4
    c = clock([0.25] * n_speed + [0.002] * 4)
    m = Recorder(c, uncached=uncached)
    res = text_speed.speed_metrics(m)
    assert [r.name for r in res] == ["chars_per_s"] + (["chars_per_s_nocache"] if uncached else []) + ["first_char_latency"]
    assert [cl["cache"] for cl in m.calls] == [True] * 4 + ([False] * 4 if uncached else []) + [True] * 4
    assert all(cl["steps"] == 256 and cl["n"] == 1 for cl in m.calls[:n_speed])
    assert res[0].value == pytest.approx(256 / 0.25) and res[0].protocol["kv_cache"] is True
    if uncached:
        assert res[1].protocol["kv_cache"] is False and res[1].value == pytest.approx(256 / 0.25)
    assert res[-1].protocol["repeats"] == 3 and res[-1].value == pytest.approx(2.0)
    assert c.durations == []
    # more repeats than 3: latency takes them too; fewer: still 3
    for repeats, lat in ((5, 5), (1, 3), (2, 3)):
        c = clock([0.5] * (repeats + 1) + [0.001] * (lat + 1))
        res = text_speed.speed_metrics(Recorder(c), n_chars=3, batch_size=2, repeats=repeats)
        assert res[0].protocol["repeats"] == repeats and res[-1].protocol["repeats"] == lat and c.durations == []
        assert res[0].value == pytest.approx(3 * 2 / 0.5) and res[0].protocol["batch_size"] == 2


def test_the_device_is_synchronised_around_each_timed_call(clock, monkeypatch):
    syncs = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda dev=None: syncs.append(("sync", str(dev))))
    c = clock([1.0, 2.0, 3.0])

    class Logged(Recorder):
        def generate_ids(self, *a, **kw):
            syncs.append("run")
            super().generate_ids(*a, **kw)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    r = text_speed.sampling_speed(Logged(c, device="cuda:0"), n_chars=2, repeats=2, warmup=1)
    s = ("sync", "cuda:0")
    assert syncs == ["run", s, "run", s, s, "run", s]  # warm-up unsynchronised, then sync / run / sync
    assert r.protocol["device"] == "cuda:0" and r.protocol["hardware"] == "hw of cuda:0"
    syncs.clear()
    text_speed.sampling_speed(Logged(clock([1.0] * 3), device="cpu"), n_chars=2, repeats=2, warmup=1)
    assert syncs == ["run"] * 3  # a CPU model is never synchronised, even where CUDA exists
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    syncs.clear()
    text_speed.sampling_speed(Logged(clock([1.0] * 3), device="cuda"), n_chars=2, repeats=2, warmup=1)
    assert syncs == ["run"] * 3  # no CUDA: nothing to synchronise
