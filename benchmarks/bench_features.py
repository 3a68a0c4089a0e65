"""Feature-extractor throughput: `inception` and `classifier:fashion-mnist`, in images/s, on the CPU (and CUDA when
present), after warm-up, median of repeats. Prints the table and writes reports/benchmarks/features.md.

    .venv/bin/python benchmarks/bench_features.py              # throughput (classifier trained/cached on first use)
    .venv/bin/python benchmarks/bench_features.py --train      # also time training the classifier from scratch
    .venv/bin/python benchmarks/bench_features.py --quick      # fewer images and repeats

Inputs are Fashion-MNIST test images (28x28 grayscale). Inception time is split into the PIL resize to
299x299 (CPU, part of the protocol) and the network. CPU rows are measured with 1 and with 2 torch threads:
on a shared machine two threads can be much slower than one (they spin while other processes hold the
cores), so the load average at the time of the run is recorded with the numbers. On CUDA the clock is read
after torch.cuda.synchronize().
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "reports" / "benchmarks" / "features.md"


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device: str, repeats: int, warmup=None) -> list[float]:
    """Seconds of each of `repeats` calls of fn, after one warm-up call of `warmup` (default: fn itself)."""
    (warmup or fn)()
    _sync(device)
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        _sync(device)
        out.append(time.perf_counter() - t)
    return out


def bench_inception(x: torch.Tensor, device: str, batch_size: int, repeats: int) -> list[dict]:
    from genbench.features import get_extractor

    fx = get_extractor("inception", device=device)
    u8 = fx._prepare(x)
    rows = []
    t_all = timed(lambda: fx.extract(x, batch_size=batch_size), device, repeats,
                  warmup=lambda: fx.extract(x[:batch_size], batch_size=batch_size))
    t_resize = timed(lambda: [fx.resize_batch(u8[i:i + batch_size]) for i in range(0, len(u8), batch_size)],
                     device, repeats)
    n = len(x)
    med, med_r = statistics.median(t_all), statistics.median(t_resize)
    rows.append({"extractor": "inception (end to end)", "device": device, "n": n, "batch": batch_size,
                 "ips": n / med, "sec": med})
    rows.append({"extractor": "  of which PIL resize 299x299", "device": device, "n": n, "batch": batch_size,
                 "ips": n / med_r, "sec": med_r})
    return rows


def bench_classifier(x: torch.Tensor, device: str, batch_size: int, repeats: int) -> list[dict]:
    from genbench.features import get_extractor

    c = get_extractor("classifier:fashion-mnist", device=device, verbose=False)
    med = statistics.median(timed(lambda: c.extract(x, batch_size=batch_size), device, repeats))
    medp = statistics.median(timed(lambda: c.predict_proba(x, batch_size=batch_size), device, repeats))
    n = len(x)
    return [{"extractor": "classifier:fashion-mnist features", "device": device, "n": n, "batch": batch_size,
             "ips": n / med, "sec": med},
            {"extractor": "classifier:fashion-mnist predict_proba", "device": device, "n": n, "batch": batch_size,
             "ips": n / medp, "sec": medp}]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--train", action="store_true", help="time training classifier:fashion-mnist from scratch "
                                                         "(in a temporary cache; 1-3 min on 2 cores)")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)

    from genbench.data import get_dataset

    test = get_dataset("fashion-mnist").load("test")
    n_inc = 8 if args.quick else 16
    n_clf = 2000 if args.quick else 10000
    repeats = 2 if args.quick else 3
    load_before = os.getloadavg()
    rows: list[dict] = []
    old_threads = torch.get_num_threads()
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for r in bench_inception(test.x[:n_inc], "cpu", 8, repeats) + \
                bench_classifier(test.x[:n_clf], "cpu", 1000, repeats + 2):
            r["threads"] = threads
            rows.append(r)
            print(f"{r['extractor']:<42} cpu x{threads}  {r['ips']:>10.1f} images/s  (n={r['n']}, batch {r['batch']})",
                  flush=True)
    torch.set_num_threads(old_threads)
    if torch.cuda.is_available():
        for r in bench_inception(test.x[:2048 if not args.quick else 512], "cuda", 256, repeats) + \
                bench_classifier(test.x, "cuda", 5000, repeats + 2):
            r["threads"] = torch.get_num_threads()
            rows.append(r)
            print(f"{r['extractor']:<42} cuda     {r['ips']:>10.1f} images/s  (n={r['n']}, batch {r['batch']})",
                  flush=True)
    train = None
    if args.train:
        from genbench.features.classifier import ClassifierExtractor

        with tempfile.TemporaryDirectory() as d:
            t = time.perf_counter()
            c = ClassifierExtractor("fashion-mnist", cache_dir=d, verbose=True)
            train = {"wall": time.perf_counter() - t, "train": c.train_seconds, "acc": c.accuracy,
                     "epochs": c.meta["epochs"], "id": c.protocol_id}
        print(f"classifier:fashion-mnist trained from scratch in {train['train']:.1f} s "
              f"({train['epochs']} epochs, 1 thread), test accuracy {100 * train['acc']:.2f}%", flush=True)
    load_after = os.getloadavg()

    from genbench.features import get_extractor

    clf = get_extractor("classifier:fashion-mnist", verbose=False)
    lines = [
        "# Feature extractor throughput",
        "",
        f"Command: `.venv/bin/python benchmarks/bench_features.py{' --train' if args.train else ''}"
        f"{' --quick' if args.quick else ''}`  ",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}"
        f"{', CUDA ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else ', no GPU'}; "
        f"load average {load_before[0]:.1f} before / {load_after[0]:.1f} after (other jobs share these cores).  ",
        f"Inputs: Fashion-MNIST test images (1x28x28). Warm-up 1 call (inception: one batch), then the median of {repeats} "
        f"(inception) / {repeats + 2} (classifier) timed calls of `extract` on the whole set.",
        "",
        "| extractor | device | torch threads | images | batch | images/s | seconds |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['extractor'].strip()} | {r['device']} | {r['threads']} | {r['n']} | {r['batch']} | "
                     f"{r['ips']:.1f} | {r['sec']:.3f} |")
    lines += [
        "",
        f"- `inception` protocol: `{get_extractor('inception').protocol_id}` (PIL bicubic resize on the CPU is part of "
        "the protocol; the resize row is that step alone).",
        f"- `classifier:fashion-mnist` protocol: `{clf.protocol_id}`, held-out test accuracy "
        f"{100 * clf.accuracy:.2f}% on {clf.meta['n_test']} images; inference in float64.",
    ]
    if train:
        lines.append(f"- Training `classifier:fashion-mnist` from scratch (first use; later uses load the cache): "
                     f"{train['train']:.1f} s for {train['epochs']} epochs on 1 CPU thread, test accuracy "
                     f"{100 * train['acc']:.2f}%.")
    if not torch.cuda.is_available():
        lines.append("- No CUDA device on this machine: GPU rows are absent (the script adds them where one exists).")
    from genbench.fileio import atomic_write_text

    atomic_write_text(args.out, "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
