"""GPU check of genbench: the CUDA paths (device placement, bf16 autocast, channels-last, device synchronisation,
CUDA peak memory) end to end, with timings. Run it on a machine with a CUDA GPU:

    python benchmarks/gpu_check.py --out gpu_check            # writes gpu_check/gpu_check.{json,md}

Sections (each one runs even if an earlier one failed; failures are printed with their traceback):
1. metrics on the GPU against the CPU: Frechet distance (2048-d), P/R/D/C and KID give the CPU's numbers;
2. `classifier:fashion-mnist` features on the GPU equal the CPU's; throughput;
3. every image family's `standard` config (mixed precision, channels-last) on Fashion-MNIST for a fixed number of
   steps: training steps/s, sampling samples/s, classifier FD and class coverage of 2000 samples, bits/dim,
   save -> load -> identical samples on the GPU;
4. the text transformer's `standard` config (nanoGPT's shakespeare-char shape, bf16) for a fixed number of steps:
   held-out bits/char, characters/s with and without the KV cache;
5. the `smoke` suite through `genbench run --device cuda` (every family, the runner, the store, the reports).
The numbers in 3 and 4 are from short runs (a few thousand steps), not the standard budget.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks._sections import section_decorator, write_json  # noqa: E402

RESULTS: dict = {}
OUT: Path | None = None  # gpu_check.json is rewritten after every section: a run killed by a time limit keeps what it had
DEV = "cuda"  # --device cpu dry-runs this script itself (with --scale 0.01) on a machine without a GPU
section = section_decorator(RESULTS, lambda: None if OUT is None else OUT / "gpu_check.json")
SCALE = 1.0






def sync():
    if DEV == "cuda":
        torch.cuda.synchronize()


@section("metrics")
def check_metrics():
    from genbench.metrics import frechet_distance, gaussian_stats, kid, prdc

    g = torch.Generator().manual_seed(0)
    a = torch.randn(4000, 2048, generator=g, dtype=torch.float64)
    b = torch.randn(4000, 2048, generator=g, dtype=torch.float64) * 1.1 + 0.05
    s1, s2 = gaussian_stats(a), gaussian_stats(b)
    fd_cpu = frechet_distance(*s1, *s2)
    gpu = [t.to(DEV) for t in (*s1, *s2)]
    frechet_distance(*gpu)
    sync()
    t = time.perf_counter()
    fd_gpu = frechet_distance(*gpu)
    sync()
    fd_gpu_s = time.perf_counter() - t
    x = torch.randn(20000, 64, generator=g)
    y = torch.randn(20000, 64, generator=g) * 1.2
    p_cpu = prdc(x, y)
    sync()
    t = time.perf_counter()
    p_gpu = prdc(x.to(DEV), y.to(DEV))
    sync()
    prdc_gpu_s = time.perf_counter() - t
    k_cpu = kid(x, y, subsets=20, subset_size=1000, seed=0)
    k_gpu = kid(x.to(DEV), y.to(DEV), subsets=20, subset_size=1000, seed=0)
    out = {"fd_cpu": fd_cpu, "fd_gpu": fd_gpu, "fd_rel_diff": abs(fd_gpu - fd_cpu) / fd_cpu,
           "fd_2048_gpu_s": round(fd_gpu_s, 3), "prdc_cpu": p_cpu, "prdc_gpu": p_gpu,
           "prdc_20k_x_64_gpu_s": round(prdc_gpu_s, 3), "kid_cpu": list(k_cpu), "kid_gpu": list(k_gpu)}
    assert out["fd_rel_diff"] < 1e-6, out
    assert all(abs(p_cpu[k] - p_gpu[k]) < 1e-4 for k in p_cpu), (p_cpu, p_gpu)
    assert abs(k_cpu[0] - k_gpu[0]) < 1e-6 * max(1.0, abs(k_cpu[0])), (k_cpu, k_gpu)
    return out


def _fashion():
    from genbench.data import get_dataset

    d = get_dataset("fashion-mnist")
    return d, d.load("train"), d.load("test")


@section("classifier features")
def check_classifier():
    from genbench.features import get_extractor

    _, _, test = _fashion()
    x = test.x[:5000]
    cpu = get_extractor("classifier:fashion-mnist", device="cpu")
    gpu = get_extractor("classifier:fashion-mnist", device=DEV)
    f_cpu = cpu.extract(x, batch_size=500)
    gpu.extract(x[:500], batch_size=500)
    sync()
    t = time.perf_counter()
    f_gpu = gpu.extract(x, batch_size=500)
    sync()
    s = time.perf_counter() - t
    agree = float((cpu.predict_proba(x).argmax(1) == gpu.predict_proba(x).argmax(1)).double().mean())
    out = {"max_abs_diff": float((f_cpu - f_gpu).abs().max()), "images_per_s_gpu": round(len(x) / s),
           "argmax_agreement": agree, "accuracy": cpu.accuracy}
    assert out["max_abs_diff"] < 1e-6 and agree == 1.0, out
    return out


STEPS = {"gan": 3000, "vae": 3000, "ddpm": 2000, "realnvp": 1500, "pixelcnn": 1500}


def check_image_model(name: str, steps: int, n: int = 1000):
    from genbench.features import get_extractor
    from genbench.metrics import frechet_distance, gaussian_stats
    from reference_models import create_model, load_model

    data, train, test = _fashion()
    over = {"steps": max(2, int(steps * SCALE)), "max_seconds": None}
    if SCALE < 1:  # dry run: a short sampler and few samples too
        n = 64
        fields = create_model(name, data.info, "standard").config.to_dict()
        over.update({k: 4 for k in ("sample_steps", "vlb_timesteps") if k in fields})
    model = create_model(name, data.info, "standard", overrides=over)
    if DEV == "cuda":
        torch.cuda.reset_peak_memory_stats()
    sync()
    t = time.perf_counter()
    model.fit(train.x, seed=0, device=DEV)
    sync()
    train_s = time.perf_counter() - t
    model.sample(64, seed=1)  # warm-up
    sync()
    t = time.perf_counter()
    x = model.sample(n, seed=0, batch_size=500)
    sync()
    sample_s = time.perf_counter() - t
    assert x.shape[1:] == test.x.shape[1:] and torch.isfinite(x).all() and x.min() >= 0 and x.max() <= 1
    fx = get_extractor("classifier:fashion-mnist", device=DEV)
    fd = frechet_distance(*gaussian_stats(fx.extract(x.cpu(), batch_size=500)),
                          *gaussian_stats(fx.extract(test.x, batch_size=500)))
    shares = torch.bincount(fx.predict_proba(x.cpu()).argmax(1).cpu(), minlength=10).double() / len(x)
    out = {"config": {k: v for k, v in model.config.to_dict().items() if k in
                      ("steps", "batch_size", "ch", "mixed_precision", "sample_steps", "sampler", "timesteps")},
           "train_s": round(train_s, 1), "steps_per_s": round(model.history.steps / train_s, 1),
           "samples_per_s": round(n / sample_s, 1), "fd_classifier_1000": round(fd, 2),
           "classes_ge_3pct": int((shares >= 0.03).sum()), "min_class_share": round(float(shares.min()), 4),
           "peak_cuda_mb": round(torch.cuda.max_memory_allocated() / 2**20) if DEV == "cuda" else None, "log_prob_kind": model.log_prob_kind}
    if model.log_prob_kind != "none":
        lp = model.log_prob(test.x[:500] if SCALE >= 1 else test.x[:8])
        out["bits_per_dim_500"] = round(float(-lp.mean() / (data.info.dim * math.log(2))), 3)
    with tempfile.TemporaryDirectory() as tmp:
        model.save(Path(tmp) / "m")
        again = load_model(Path(tmp) / "m").to(DEV)
        a, b = model.sample(16, seed=3), again.sample(16, seed=3)
        out["save_load_identical"] = bool(torch.equal(a.cpu(), b.cpu()))
    return out


def check_images(only=None):
    for name, steps in STEPS.items():
        if only and name not in only:
            continue
        section(f"image model {name} (standard config, {steps} steps)")(check_image_model)(name, steps)


@section("text transformer (standard config)")
def check_text(steps: int = 2000):
    from genbench.data import get_dataset
    from genbench.metrics.text_speed import sampling_speed
    from reference_models import create_model

    d = get_dataset("shakespeare-char")
    train, test = d.load("train"), d.load("test")
    model = create_model("transformer", d.info, "standard",
                         overrides={"steps": max(2, int(steps * SCALE)), "max_seconds": None})
    sync()
    t = time.perf_counter()
    model.fit(train, seed=0, device=DEV)
    sync()
    train_s = time.perf_counter() - t
    nats, n = model.nll_per_char(test, max_chars=int(100000 * min(1.0, SCALE * 10)))
    fast = sampling_speed(model, n_chars=256, batch_size=1, use_cache=True)
    slow = sampling_speed(model, n_chars=256, batch_size=1, use_cache=False)
    return {"steps": model.history.steps, "train_s": round(train_s, 1),
            "steps_per_s": round(model.history.steps / train_s, 2), "nats_per_char": round(nats, 4),
            "bits_per_char": round(nats / math.log(2), 4), "chars_scored": n,
            "chars_per_s_kv_cache": round(fast.value), "chars_per_s_no_cache": round(slow.value),
            "sample": model.sample(1, seed=0)[0][:300]}


@section("smoke suite on cuda (genbench run)")
def check_smoke(out_dir: Path):
    from genbench.runner import Runner
    from genbench.suite import load_suite

    s = Runner(load_suite("smoke"), out_dir / "smoke", device=DEV, fresh=True, quiet=True).run()
    res = {"done": len(s.done), "failed": s.failed, "seconds": round(s.seconds, 1)}
    assert not s.failed, s.failed
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="gpu_check")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="cpu: dry run of this script")
    p.add_argument("--scale", type=float, default=1.0, help="multiply every step count (0.01 for a dry run)")
    p.add_argument("--only", nargs="*", help="sections: metrics classifier images text smoke, or image model names")
    a = p.parse_args(argv)
    global DEV, SCALE, OUT
    DEV, SCALE = a.device, a.scale
    out = OUT = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if DEV == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device is visible to torch; nothing to check", file=sys.stderr)
        return 2
    RESULTS["env"] = {"torch": torch.__version__, "device": torch.cuda.get_device_name(0) if DEV == "cuda" else "cpu",
                      "python": sys.version.split()[0]}
    print(RESULTS["env"], flush=True)
    want = set(a.only or ["metrics", "classifier", "images", "text", "smoke"])
    if "metrics" in want:
        check_metrics()
    if "classifier" in want:
        check_classifier()
    img = [m for m in STEPS if m in want]
    if "images" in want or img:
        check_images(img or None)
    if "text" in want:
        check_text()
    if "smoke" in want:
        check_smoke(out)
    write_json(out / "gpu_check.json", RESULTS)
    failed = [k for k, v in RESULTS.items() if isinstance(v, dict) and v.get("ok") is False]
    print(f"\ngpu_check: {len(RESULTS) - 1 - len(failed)} sections ok, {len(failed)} failed: {failed}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
