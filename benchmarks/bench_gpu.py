"""Device benchmark (issue 20): everything that needs a GPU, in one script, side by side in one run.

    python benchmarks/bench_gpu.py --phase a --out DIR   # smoke suite on cuda, device resize, text sampler
    python benchmarks/bench_gpu.py --phase b --out DIR   # Inception vs clean-fid on 10k images, standard-short suite
    python benchmarks/bench_gpu.py --dry-run --out DIR   # both phases on the CPU at a tiny scale (a test runs it)

Phase a needs no large asset (digits, ring8 and names only); phase b needs `fid-inception`, Fashion-MNIST, the
MNIST 5k subset and Shakespeare in the genbench cache. Each section runs even if an earlier one failed; DIR/gpu.json
is rewritten after each, and DIR/gpu.md is the readable summary (reports/benchmarks/gpu.md is a copy of a device
run). Figures:
- resize: the matrix resize on the device against clean-fid's make_resizer (max difference, 0..255 scale), and
  images/s against PIL on one CPU thread;
- text: batch-1 characters/s of the `standard` transformer (6 x 384, context 256; random weights: speed does not
  depend on them) without cache, with the static cache eagerly, and with CUDA graphs; the ids of the eager and the
  graphed path for the same seeds (identical expected);
- smoke: `genbench run smoke --device cuda`, failed jobs (0 expected);
- inception: genbench's `inception` extractor end to end from uint8 tensors on the host vs clean-fid's
  `compute_fid` (its defaults: PNG folders, 12 loader workers, batch 32) on the same 10k + 10k Fashion-MNIST images
  with the same weights, TF32 off for both, wall times and the two FIDs;
- suite: `genbench run standard-short --device cuda` under a wall-clock limit; the run directory is packed into
  DIR/standard-gpu.tar.gz (without checkpoints and caches) and samples/s of each family are read from it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks._sections import section_decorator, write_json  # noqa: E402

RESULTS: dict = {}
OUT = Path(".")
DEV = "cuda"
section = section_decorator(RESULTS, lambda: OUT / "gpu.json")
DRY = False






def sync():
    if DEV == "cuda":
        torch.cuda.synchronize()


def timed(fn, repeats=1):
    best = float("inf")
    out = None
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        out = fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best, out


@section("env")
def env():
    from genbench.env_info import hardware

    d = {"torch": torch.__version__, "python": sys.version.split()[0], "device": DEV, "dry_run": DRY,
         "hardware": hardware(torch.device(DEV)), "cpu_count": os.cpu_count()}
    if DEV == "cuda":
        d["gpu"] = torch.cuda.get_device_name(0)
    return d


@section("resize")
def resize():
    from cleanfid.resize import make_resizer
    from genbench.features.inception import clean_resize
    from genbench.features.resize import CleanResizer

    ref = make_resizer("PIL", False, "bicubic", (299, 299))
    rng = np.random.default_rng(0)
    d = {}
    for s, c in [(28, 1), (32, 3), (64, 3)]:
        x = torch.from_numpy(rng.integers(0, 256, (8, c, s, s), dtype=np.uint8))
        ours = CleanResizer(299, DEV)(x).cpu().numpy()
        theirs = np.stack([np.stack([ref(np.repeat(im[ch][:, :, None], 3, -1))[:, :, 0] for ch in range(c)])
                           for im in x.numpy()])
        d[f"max_abs_diff_{s}px"] = float(np.abs(ours - theirs).max())
    n = 64 if DRY else 2048
    x = torch.from_numpy(rng.integers(0, 256, (n, 1, 28, 28), dtype=np.uint8))
    r = CleanResizer(299, DEV)
    r(x[:8])
    t_dev, _ = timed(lambda: r(x), 3)
    m = min(n, 256)
    torch.set_num_threads(1)
    t_pil, _ = timed(lambda: [clean_resize(im) for im in x[:m].numpy()])
    torch.set_num_threads(os.cpu_count() or 1)
    d.update(images_per_s_device=round(n / t_dev), images_per_s_pil_1thread=round(m / t_pil),
             speedup=round((n / t_dev) / (m / t_pil), 1))
    return d


def _text_model(vocab_size=65):
    from genbench.data.base import DatasetInfo
    from reference_models import create_model

    info = DatasetInfo(name="shakespeare-char", modality="text", shape=(), value_range=(0, 0))
    vocab = "".join(chr(32 + i) for i in range(vocab_size - 1)) + "\n"
    budget = "smoke" if DRY else "standard"
    m = create_model("transformer", info, budget, {"vocab": vocab, "sample_mode": "stream"})
    torch.manual_seed(0)
    m.to(DEV)
    m._build()
    m.net.eval()
    return m


@section("text")
def text():
    from genbench.metrics.text_speed import sampling_speed

    m = _text_model()
    n_chars = 64 if DRY else 256
    d = {"config": {k: getattr(m.config, k) for k in ("n_layer", "n_head", "n_embd", "block_size")}}
    m.config.cuda_graphs = False
    d["chars_per_s_nocache"] = round(sampling_speed(m, n_chars, 1, False, 3).value, 1)
    d["chars_per_s_eager_static_cache"] = round(sampling_speed(m, n_chars, 1, True, 3).value, 1)
    m.config.cuda_graphs = True
    t0 = time.perf_counter()
    with torch.inference_mode():
        m._generate_ids(1, torch.Generator().manual_seed(0), 2)  # captures the graphs (once per batch size)
    sync()
    d["graph_capture_s"] = round(time.perf_counter() - t0, 2)
    d["chars_per_s_graphs"] = round(sampling_speed(m, n_chars, 1, True, 3).value, 1)
    d["speedup_graphs_vs_eager"] = round(d["chars_per_s_graphs"] / d["chars_per_s_eager_static_cache"], 1)
    d["h100_before_chars_per_s"] = 276  # reports/benchmarks/gpu_check_h100.md, the cat-based cache
    for bs in (256,):
        m.config.cuda_graphs = False
        e = sampling_speed(m, n_chars, bs, True, 2).value
        m.config.cuda_graphs = True
        g = sampling_speed(m, n_chars, bs, True, 2).value
        d[f"chars_per_s_batch{bs}"] = {"eager": round(e), "graphs": round(g)}
    same = {}
    steps = 80 if DRY else 600  # > 2 x block_size: the window is cut back and the cache rebuilt
    for n, seed in [(1, 0), (1, 1), (8, 2)]:
        ids = {}
        for graphs in (False, True):
            m.config.cuda_graphs = graphs
            with torch.inference_mode():
                ids[graphs] = m._generate_ids(n, torch.Generator().manual_seed(seed), steps)
        same[f"n{n}_seed{seed}"] = bool(torch.equal(ids[False], ids[True]))
        if not same[f"n{n}_seed{seed}"]:
            same[f"n{n}_seed{seed}_first_diff"] = int((ids[False] != ids[True]).any(0).nonzero()[0, 0])
    d["ids_identical_eager_vs_graphs"] = same
    return d


def _genbench(args: list, timeout: float, log: Path) -> dict:
    """Run `python -m genbench ARGS` with a wall-clock limit; on the limit, SIGINT (the runner stops cleanly and
    keeps finished jobs), then SIGKILL if it does not stop."""
    t0 = time.perf_counter()
    with open(log, "w") as f:
        p = subprocess.Popen([sys.executable, "-m", "genbench", *args], cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
                             start_new_session=True)
        timed_out = False
        try:
            rc = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(p.pid, signal.SIGINT)
            try:
                rc = p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                rc = p.wait()
    tail = log.read_text(errors="replace").splitlines()[-15:]
    return {"rc": rc, "timed_out": timed_out, "wall_s": round(time.perf_counter() - t0, 1), "tail": tail}


def _jobs(run_dir: Path) -> dict:
    import sqlite3

    db = run_dir / "results.db"
    if not db.exists():
        return {}
    con = sqlite3.connect(db)
    try:
        rows = con.execute("SELECT status, job_id, error FROM jobs").fetchall()
    finally:
        con.close()
    out = {"done": sum(r[0] == "done" for r in rows), "failed": [f"{r[1]}: {(r[2] or '').splitlines()[:1]}"
                                                              for r in rows if r[0] == "failed"],
           "other": [f"{r[1]}: {r[0]}" for r in rows if r[0] not in ("done", "failed")]}
    return out


@section("smoke")
def smoke():
    d = Path(tempfile.mkdtemp(prefix="smoke-gpu-"))
    r = _genbench(["run", "smoke", "--device", DEV, "--out", str(d), "--quiet", "--no-report"], 240, OUT / "smoke.log")
    return {**r, "jobs": _jobs(d)}


def _fashion_u8(split: str, n: int) -> torch.Tensor:
    from genbench.data import get_dataset

    x = get_dataset("fashion-mnist").load(split).x[:n]
    return x if x.dtype == torch.uint8 else torch.round(x.float() * 255).clamp(0, 255).to(torch.uint8)


def _scipy_sqrtm_disp_shim() -> None:
    """clean-fid 0.1.35 calls `scipy.linalg.sqrtm(A, disp=False)`; newer SciPy dropped `disp` (the H200 image's
    SciPy raised "unexpected keyword argument 'disp'"). Give sqrtm the old two-value form when asked for it."""
    import inspect

    import scipy.linalg as sl

    if "disp" in inspect.signature(sl.sqrtm).parameters:
        return
    orig = sl.sqrtm

    def sqrtm(A, disp=True, **kw):
        r = orig(A, **kw)
        return r if disp else (r, 0.0)

    sl.sqrtm = sqrtm


@section("inception")
def inception():
    from PIL import Image

    from cleanfid import fid as cfid

    _scipy_sqrtm_disp_shim()
    from genbench.assets import fetch
    from genbench.features import get_extractor
    from genbench.metrics import frechet_distance, gaussian_stats

    n = 12 if DRY else 10000
    a, b = _fashion_u8("train", n), _fashion_u8("test", n)
    torch.backends.cudnn.allow_tf32 = False  # both sides in true float32 (genbench switches TF32 off itself)
    torch.backends.cuda.matmul.allow_tf32 = False
    fx = get_extractor("inception", device=DEV)
    fx.extract(a[:64])  # warm-up (cuDNN autotune, lazy inits)
    t_ours, (fa, fb) = timed(lambda: (fx.extract(a), fx.extract(b)))
    fd_ours = float(frechet_distance(*gaussian_stats(fa), *gaussian_stats(fb)))

    tmp = Path(tempfile.mkdtemp(prefix="cfid-"))
    for name, x in (("a", a), ("b", b)):
        (tmp / name).mkdir()
        for i, im in enumerate(x[:, 0].numpy()):
            Image.fromarray(im, mode="L").save(tmp / name / f"{i:05d}.png")
    net = torch.jit.load(str(fetch("fid-inception")), map_location=DEV).eval()

    def feat(batch):  # clean-fid hands float (B, 3, 299, 299) in [0, 255] after its own PIL resize
        with torch.no_grad():
            return net((batch.to(DEV) - 128) / 128)

    kw = {} if not DRY else {"num_workers": 0}
    t_cf, fd_cf = timed(lambda: cfid.compute_fid(str(tmp / "a"), str(tmp / "b"), mode="clean",
                                                 custom_feat_extractor=feat, device=torch.device(DEV),
                                                 verbose=False, **kw))
    return {"n_images": 2 * n, "genbench_s": round(t_ours, 2), "genbench_images_per_s": round(2 * n / t_ours),
            "cleanfid_s": round(t_cf, 2), "cleanfid_images_per_s": round(2 * n / t_cf),
            "speedup": round(t_cf / t_ours, 1), "fid_genbench": fd_ours, "fid_cleanfid": float(fd_cf),
            "fid_rel_diff": abs(fd_ours - float(fd_cf)) / abs(float(fd_cf))}


def _dry_suite() -> Path:
    """standard-short at a tiny scale for the CPU dry run (same datasets' code paths, smoke budget)."""
    src = (ROOT / "genbench/suites/standard-short.toml").read_text()
    lines = []
    for ln in src.splitlines():
        key = ln.split("=")[0].strip()
        if key == "overrides":
            continue
        ln = {"n_samples": "n_samples = 8", "n_train_features": "n_train_features = 8",
              "n_likelihood": "n_likelihood = 8" if "100000" not in ln else "n_likelihood = 2000",
              "budget": 'budget = "smoke"', "workers": "workers = 1", "n_bootstrap": "n_bootstrap = 0",
              "steps": "steps = [3, 5]"}.get(key, ln)
        lines.append(ln)
    p = Path(tempfile.mkdtemp(prefix="dry-suite-")) / "standard-short-dry.toml"
    p.write_text("\n".join(lines) + "\n")
    return p


@section("suite")
def suite(limit_s: float):
    run_dir = OUT / "standard-gpu"
    args = ["run", str(_dry_suite()) if DRY else "standard-short", "--device", DEV, "--out", str(run_dir), "--quiet"]
    if DRY:
        args += ["--datasets", "fashion-mnist,shakespeare-char", "--models", "gan,ddpm,transformer,ngram"]
    r = _genbench(args, limit_s, OUT / "suite.log")
    if r["timed_out"] or not (run_dir / "leaderboard.md").exists():
        r["report"] = _genbench(["report", str(run_dir)], 120, OUT / "report.log")["rc"]
    d = {**r, "jobs": _jobs(run_dir)}
    speed, quality = {}, {}
    rj = run_dir / "results.json"
    if rj.exists():
        for m in json.loads(rj.read_text())["metrics"]:
            key = f"{m['dataset']}/{m['model']}" + (f"/{m['variant']}" if m["variant"] else "")
            if m["metric"] in ("samples_per_s", "chars_per_s"):
                speed[key] = round(m["value"], 1)
            if m["metric"] in ("fd", "bits_per_dim", "bits_per_char", "class_coverage"):
                quality.setdefault(key, {})[m["metric"]] = round(m["value"], 4)
    d["speed"], d["quality"] = speed, quality
    with tarfile.open(OUT / "standard-gpu.tar.gz", "w:gz") as tar:
        for f in sorted(run_dir.rglob("*")):
            rel = f.relative_to(run_dir)
            if f.is_file() and rel.parts[0] not in ("checkpoints", "cache") and not f.name.endswith(".lock"):
                tar.add(f, arcname=str(Path("standard-gpu") / rel))
    return d


def write_md() -> None:
    lines = ["# genbench on a device: benchmarks/bench_gpu.py", ""]
    for name, r in RESULTS.items():
        lines.append(f"## {name}: {'ok' if r.get('ok') else 'FAILED'} ({r.get('seconds')} s)")
        lines.append("")
        lines.append("```")
        lines.append(json.dumps({k: v for k, v in r.items() if k not in ("ok", "seconds")}, indent=1, default=str))
        lines.append("```")
        lines.append("")
    tmp = OUT / "gpu.md.tmp"
    tmp.write_text("\n".join(lines))
    tmp.replace(OUT / "gpu.md")


def main(argv=None) -> int:
    global OUT, DEV, DRY
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output folder (gpu.json, gpu.md, logs, standard-gpu.tar.gz)")
    ap.add_argument("--phase", choices=("a", "b", "all"), default="all")
    ap.add_argument("--dry-run", action="store_true", help="on the CPU at a tiny scale (no GPU needed)")
    ap.add_argument("--suite-limit", type=float, default=300.0, help="wall-clock seconds for the suite run")
    args = ap.parse_args(argv)
    OUT = Path(args.out)
    OUT.mkdir(parents=True, exist_ok=True)
    DRY = bool(args.dry_run)
    DEV = "cpu" if DRY else "cuda"
    if not DRY and not torch.cuda.is_available():
        print("no CUDA device: run with --dry-run on a machine without a GPU", file=sys.stderr)
        return 2
    prev = OUT / "gpu.json"
    if prev.exists():
        RESULTS.update(json.loads(prev.read_text()))
    env()
    if args.phase in ("a", "all"):
        resize()
        text()
        smoke()
    if args.phase in ("b", "all"):
        inception()
        suite(args.suite_limit)
    write_md()
    return 0 if all(r.get("ok") for r in RESULTS.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
