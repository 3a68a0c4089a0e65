"""Seed / one-knob sweep of the `nsf` flow on ring8 and grid25 (reports/benchmarks/nsf_seed_sweep.md came from it).

    RES=/tmp/nsf_sweep .venv/bin/python benchmarks/sweep_nsf.py --tag seed0 --seeds 0 --configs default bins8 reverse

For each (variant, seed, dataset): train the quick config with the variant's overrides, sample 2500 points, score
mode coverage / HQ share (genbench.metrics.mode_coverage) and the test NLL, and append one JSON line to
$RES/<tag>.jsonl as it goes (a job killed at a time limit keeps what it had). One torch thread; needs only torch and
genbench (no clean-fid / prdc), so it runs on a bare machine with the repository copied."""
import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

torch.set_num_threads(1)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from genbench.data import get_dataset  # noqa: E402
from genbench.metrics.modes import mode_coverage  # noqa: E402
from reference_models import create_model  # noqa: E402


VARIANTS = {"default": {}, "steps1000": {"steps": 1000}, "steps4000": {"steps": 4000}, "bins8": {"bins": 8},
            "bins32": {"bins": 32}, "reverse": {"mixing": "reverse"}, "layers6": {"n_layers": 6}}


def cpu_model() -> str:
    try:
        return next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    except Exception:
        return platform.processor()


ap = argparse.ArgumentParser()
ap.add_argument("--tag", required=True)
ap.add_argument("--seeds", nargs="+", type=int, required=True)
ap.add_argument("--datasets", nargs="+", default=["grid25", "ring8"])
ap.add_argument("--configs", nargs="+", default=["default"], help="VARIANTS names (or JSON override dicts), in order")
a = ap.parse_args()
res = Path(os.environ.get("RES", "/tmp/res_nsf"))
res.mkdir(parents=True, exist_ok=True)
out = res / f"{a.tag}.jsonl"
data = {ds: get_dataset(ds) for ds in a.datasets}
splits = {ds: (d.load("train").x, d.load("test").x) for ds, d in data.items()}
for cfg in a.configs:
    over = VARIANTS[cfg] if cfg in VARIANTS else json.loads(cfg)
    for seed in a.seeds:
        for ds in a.datasets:
            d, (tr, te) = data[ds], splits[ds]
            m = create_model("nsf", d.info, "quick", over)
            c = time.process_time(); m.fit(tr, seed=seed); train_cpu = time.process_time() - c
            c = time.process_time(); x = m.sample(2500, seed=seed, batch_size=500); sample_cpu = time.process_time() - c
            mc = mode_coverage(x, d.mixture)
            row = {"variant": cfg, "dataset": ds, "seed": seed, "overrides": over, "steps": m.history.steps,
                   "modes": mc["modes_covered"], "num_modes": mc["num_modes"], "hq": round(mc["hq_share"], 4),
                   "nll_test": round(-float(m.log_prob(te).mean()), 4), "train_cpu_s": round(train_cpu, 2),
                   "sample_cpu_s": round(sample_cpu, 3), "torch": torch.__version__, "cpu": cpu_model()}
            with open(out, "a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)
