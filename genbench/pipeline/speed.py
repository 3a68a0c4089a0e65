"""Honest speed and cost figures for one model: throughput at a batch size after warm-up with device
synchronisation (median of repeats), single-sample latency, network evaluations per sample, training wall time,
peak memory and parameter count -- each a MetricResult with its unit, direction and protocol.

Timing metrics carry `"timing": true` in their protocol so that comparisons and reproducibility checks can tell
them from deterministic quality numbers.
"""

from __future__ import annotations

import resource
import statistics
import sys
import time
from typing import Any, Callable, Optional

import torch

from genbench.metrics.base import MetricResult
from genbench.metrics.registry import Output, declare_outputs

SPEED_VERSION = "1"

# What the runner records for every job (suites cannot list these): how each is read and shown.
declare_outputs(
    Output("samples_per_s", "samples/s", True, "speed", "samples/s", headline=("points", "image"), order=130, rank=0,
           log_scale=True),
    Output("latency_ms", "ms", False, "speed", "latency (ms)", order=332, rank=2, log_scale=True),
    Output("nfe", "evals/sample", False, None, "NFE", headline=("image",), order=140, log_scale=True),
    Output("train_seconds", "s", False, None, "train s", order=335, log_scale=True),
    Output("peak_memory_mb", "MiB", False, "footprint", "peak MB", order=340, rank=1, log_scale=True),
    Output("num_params", "params", False, "footprint", "params", order=345, rank=0, log_scale=True),
)


def synchronize(device: str | torch.device) -> None:
    dev = torch.device(device)
    if dev.type == "cuda" and torch.cuda.is_available():
        torch.cuda.synchronize(dev)


def time_call(fn: Callable[[], Any], device, repeats: int, warmup: int) -> list[float]:
    """Wall seconds of `repeats` calls of fn after `warmup` untimed calls, synchronising the device around each."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        synchronize(device)
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return times


# ---------------------------------------------------------------------------------------------- memory
def reset_peak_memory(device) -> str:
    """Reset the peak-memory counter; returns the source later read by `peak_memory_mb`."""
    dev = torch.device(device)
    if dev.type == "cuda" and torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats(dev)
        return "cuda.max_memory_allocated"
    try:  # Linux: writing 5 to clear_refs resets the process's resident-set high-water mark (VmHWM)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return "VmHWM"
    except OSError:
        return "ru_maxrss"


def peak_memory_mb(device, source: str) -> float:
    if source == "cuda.max_memory_allocated":
        return torch.cuda.max_memory_allocated(torch.device(device)) / 2**20
    if source == "VmHWM":
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return float(line.split()[1]) / 1024.0  # kB
        except OSError:
            pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024.0  # bytes on macOS, kB on Linux


_MEMORY_SCOPE = {
    "cuda.max_memory_allocated": "peak CUDA memory allocated by tensors during the job (training, sampling, scoring)",
    "VmHWM": "peak resident memory of the whole process during the job (reset at job start)",
    "ru_maxrss": "peak resident memory of the whole process since it started",
}


# ---------------------------------------------------------------------------------------------- figures
def _timing_protocol(device, **more) -> dict:
    dev = torch.device(device)
    from genbench.env_info import hardware

    p = {"timing": True, "device": str(dev), "torch_threads": torch.get_num_threads(), **more}
    if dev.type == "cuda" and torch.cuda.is_available():
        p["device_name"] = torch.cuda.get_device_name(dev)
    p["hardware"] = hardware(dev)  # timings are compared only between runs on the same hardware
    return p


def sampling_speed(sample: Callable[[int, int], Any], device, batch_size: int, repeats: int, warmup: int,
                   latency_repeats: Optional[int] = None) -> list[MetricResult]:
    """samples/s at `batch_size` (median over `repeats` timed batches after `warmup`) and latency of one
    sample (median). `sample(n, seed)` must draw n samples (each call uses a different seed)."""
    counter = iter(range(10**9))

    def batch():
        return sample(batch_size, 1_000_000 + next(counter))

    times = time_call(batch, device, repeats, warmup)
    med = statistics.median(times)
    lat_times = time_call(lambda: sample(1, 2_000_000 + next(counter)), device, latency_repeats or repeats, max(1, warmup))
    lat = statistics.median(lat_times)
    proto = _timing_protocol(device, batch_size=batch_size, repeats=repeats, warmup=warmup, statistic="median",
                             synchronized=torch.device(device).type == "cuda")
    out = [
        MetricResult("samples_per_s", batch_size / med, "samples/s", True, SPEED_VERSION, proto,
                     extra={"batch_seconds": times}),
        MetricResult("latency_ms", lat * 1000.0, "ms", False, SPEED_VERSION,
                     {**proto, "batch_size": 1, "repeats": latency_repeats or repeats}, extra={"seconds": lat_times}),
    ]
    return out


def cost_metrics(model, device, train_seconds: Optional[float], peak_mb: Optional[float], memory_source: str,
                 cached: bool) -> list[MetricResult]:
    """nfe per sample, parameter count, training wall time and peak memory."""
    out = [
        MetricResult("nfe", float(model.nfe_per_sample), "evals/sample", False, SPEED_VERSION,
                     {"definition": "network evaluations to draw one sample"}),
        MetricResult("num_params", float(model.num_params), "params", False, SPEED_VERSION,
                     {"definition": "parameters of every saved network (model.modules()), e.g. a GAN's "
                                    "discriminator and EMA copies included"}),
    ]
    if train_seconds is not None:
        out.append(MetricResult("train_seconds", float(train_seconds), "s", False, SPEED_VERSION,
                                _timing_protocol(device, from_checkpoint_cache=bool(cached),
                                                 definition="wall time of model.fit (as first trained when cached)")))
    if peak_mb is not None:
        out.append(MetricResult("peak_memory_mb", float(peak_mb), "MiB", False, SPEED_VERSION,
                                _timing_protocol(device, source=memory_source,
                                                 scope=_MEMORY_SCOPE.get(memory_source, memory_source))))
    return out


__all__ = ["sampling_speed", "cost_metrics", "time_call", "synchronize", "reset_peak_memory", "peak_memory_mb"]
