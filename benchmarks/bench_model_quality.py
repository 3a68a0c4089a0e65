"""Quality bars of the reference models' configs (issue 4), measured with genbench's metric engine.

    .venv/bin/python benchmarks/bench_model_quality.py                       # every registered image/points model
    .venv/bin/python benchmarks/bench_model_quality.py --models gan vae --datasets ring8 grid25 --gan-seeds 0 1 2

For each (dataset, model, seed): train with the budget's config (default "quick", CPU), time training and
sampling, then score
- ring8 / grid25: 2500 samples, `genbench.metrics.mode_coverage` (VEEGAN/PacGAN protocol: nearest mode, HQ
  within 3 std): modes covered, HQ share, reverse KL; mean NLL of the test split (nats/point) where the model
  has a likelihood. Bars: diffusion/flow/VAE 8/8 (ring8), >= 23/25 (grid25), HQ >= 80%; GAN >= 7/8 on ring8.
- fashion-mnist: 5000 samples through `classifier:fashion-mnist`: share of each predicted class (bar: every
  class >= 3%) and the Frechet distance of the classifier features to the 10000 test images (bar: below the
  gmm baseline's); bits/dim of 1000 test images where the model has a likelihood (bound or exact, labelled).
Models with "best"/"last" checkpoints (GAN) are scored with both, labelled.

Results accumulate in reports/benchmarks/model_quality.json (keyed by dataset/model/checkpoint/seed/budget), so
runs for different models (another engineer's) add rows; the Markdown table reports/benchmarks/model_quality.md
is rebuilt from all of them. Wall times depend on machine load: the load average is recorded with every row.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from genbench.data import get_dataset  # noqa: E402
from genbench.fileio import atomic_write_text  # noqa: E402
from reference_models import create_model, get_model_class, list_models  # noqa: E402

TOY = ("ring8", "grid25")
BAR_FAMILIES_MODES = ("diffusion", "flow", "vae")  # must cover all modes with >= 80% HQ


def _load(ds: str):
    d = get_dataset(ds)
    return d, d.load("train"), d.load("test")


def _samples_per_checkpoint(model, n: int, seed: int):
    """[(label, samples, seconds)] — both GAN checkpoints when the model keeps them."""
    cfg = model.config
    labels = ["best", "last"] if hasattr(cfg, "checkpoint") and {"best", "last"} <= set(model.history.checkpoints) else [None]
    out = []
    for lab in labels:
        if lab:
            cfg.checkpoint = lab
        t, c = time.perf_counter(), time.process_time()
        x = model.sample(n, seed=seed, batch_size=500)
        out.append((lab, x, time.perf_counter() - t, time.process_time() - c))
    if labels[0]:
        cfg.checkpoint = "best"
    return out


class ImageScorer:
    def __init__(self, test_x: torch.Tensor):
        from genbench.features import get_extractor
        from genbench.metrics import gaussian_stats

        self.fx = get_extractor("classifier:fashion-mnist")
        self.real_stats = gaussian_stats(self.fx.extract(test_x, batch_size=500))

    def __call__(self, x: torch.Tensor) -> dict:
        from genbench.metrics import frechet_distance, gaussian_stats

        mu, sig = gaussian_stats(self.fx.extract(x, batch_size=500))
        fd = frechet_distance(mu, sig, *self.real_stats)
        shares = torch.bincount(self.fx.predict_proba(x, batch_size=500).argmax(1), minlength=10).double() / len(x)
        return {"fd_classifier": fd, "class_shares": [round(float(s), 4) for s in shares],
                "min_class_share": float(shares.min()), "classes_ge_3pct": int((shares >= 0.03).sum()),
                "classifier": self.fx.protocol_id, "classifier_accuracy": self.fx.accuracy}


def run_one(ds: str, name: str, seed: int, budget: str, n_toy: int, n_img: int, cache: dict, device: str) -> list[dict]:
    data, train, test = cache.setdefault(ds, _load(ds))
    model = create_model(name, data.info, budget)
    load0 = os.getloadavg()[0]
    t, c = time.perf_counter(), time.process_time()
    model.fit(train.x, seed=seed, device=device)
    train_s, train_cpu_s = time.perf_counter() - t, time.process_time() - c
    model.to("cpu")
    n = n_toy if ds in TOY else n_img
    rows = []
    for lab, x, sample_s, sample_cpu_s in _samples_per_checkpoint(model, n, seed):
        row = {"dataset": ds, "model": name, "family": model.family, "checkpoint": lab or "", "seed": seed,
               "budget": budget, "train_s": round(train_s, 1), "sample_s": round(sample_s, 2), "n_samples": n,
               "train_cpu_s": round(train_cpu_s, 1), "sample_cpu_s": round(sample_cpu_s, 2),
               "train_steps": model.history.steps, "num_params": model.num_params, "threads": torch.get_num_threads(),
               "load_avg_1min": round(load0, 2), "log_prob_kind": model.log_prob_kind}
        if ds in TOY:
            from genbench.metrics import mode_coverage

            mc = mode_coverage(x, data.mixture)
            row.update(modes_covered=mc["modes_covered"], num_modes=mc["num_modes"], hq_share=round(mc["hq_share"], 4),
                       mode_kl=round(mc["kl"], 4))
        else:
            row.update(cache.setdefault(("scorer", ds), ImageScorer(test.x))(x))
        rows.append(row)
    if model.log_prob_kind != "none":
        t = time.perf_counter()
        if ds in TOY:
            lp = model.log_prob(test.x)
            lik = {"nll": float(-lp.mean())}
        else:
            lp = model.log_prob(test.x[:1000])
            lik = {"bits_per_dim": float(-lp.mean() / (data.info.dim * math.log(2)))}
        lik["loglik_s"] = round(time.perf_counter() - t, 1)
        for r in rows:
            r.update(lik)
    return rows


def bars(rows: list[dict]) -> None:
    """Annotate each row with the issue-4 bar it is held to and whether it passes."""
    gmm_fd = {r["dataset"]: r["fd_classifier"] for r in rows if r["model"] == "gmm" and "fd_classifier" in r}
    for r in rows:
        ds, fam = r["dataset"], r["family"]
        if ds in TOY:
            if fam == "gan" and ds == "ring8":
                r["bar"], r["pass"] = ">= 7/8 modes", r["modes_covered"] >= 7
            elif fam in BAR_FAMILIES_MODES:
                need = 8 if ds == "ring8" else 23
                r["bar"] = f">= {need}/{r['num_modes']} modes, HQ >= 80%"
                r["pass"] = r["modes_covered"] >= need and r["hq_share"] >= 0.8
        elif "fd_classifier" in r and fam not in ("baseline",):
            ok = r["classes_ge_3pct"] == 10
            r["bar"] = "10 classes >= 3%, FD < gmm"
            if ds in gmm_fd:
                ok = ok and r["fd_classifier"] < gmm_fd[ds]
            else:
                r["bar"] += " (no gmm row yet)"
            r["pass"] = ok


def fmt(v, nd=3):
    if v is None or v == "":
        return ""
    if isinstance(v, bool):
        return "PASS" if v else "FAIL"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def markdown(rows: list[dict], meta: dict) -> str:
    bars(rows)
    lines = ["# Reference model quality (issue 4 bars)", "",
             f"Generated by `benchmarks/bench_model_quality.py` — {meta['when']} — torch {meta['torch']} — "
             f"{meta['platform']}, {meta['cpus']} CPU cores shared with other jobs (see load average per row; "
             "wall times grow with it).", ""]
    toy = [r for r in rows if r["dataset"] in TOY]
    img = [r for r in rows if r["dataset"] not in TOY]
    key = lambda r: (r["dataset"], r["family"], r["model"], r["checkpoint"], r["seed"])
    if toy:
        lines += ["## 2D mixtures (2500 samples; mode_coverage: nearest mode, HQ within 3 std)", "",
                  "| dataset | model | ckpt | seed | budget | modes | HQ share | mode KL | NLL (nats/pt) | train s | train CPU s | sample s | steps | threads | load | bar | result |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in sorted(toy, key=key):
            lines.append(f"| {r['dataset']} | {r['model']} | {r['checkpoint']} | {r['seed']} | {r['budget']} | "
                         f"{r['modes_covered']}/{r['num_modes']} | {fmt(r['hq_share'])} | {fmt(r['mode_kl'])} | "
                         f"{fmt(r.get('nll'))} | {fmt(r['train_s'], 1)} | {fmt(r.get('train_cpu_s'), 1)} | {fmt(r['sample_s'], 2)} | {r['train_steps']} | "
                         f"{r['threads']} | {fmt(r['load_avg_1min'], 1)} | {r.get('bar', '')} | {fmt(r.get('pass', ''))} |")
        gan = [r for r in toy if r["family"] == "gan" and r["checkpoint"] in ("best", "")]
        for ds in sorted({r["dataset"] for r in gan}):
            m = [r["modes_covered"] for r in gan if r["dataset"] == ds]
            lines.append(f"\nGAN seed spread on {ds} (best checkpoint): modes covered {m} over seeds "
                         f"{[r['seed'] for r in gan if r['dataset'] == ds]}, mean {sum(m) / len(m):.2f}.")
        lines.append("")
    if img:
        lines += ["## Images (5000 samples; classifier:fashion-mnist features vs the 10000 test images)", "",
                  "| dataset | model | ckpt | seed | budget | FD (classifier) | classes >= 3% | min class share | bits/dim (1000 test) | likelihood | train s | train CPU s | sample s | sample CPU s | steps | threads | load | bar | result |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in sorted(img, key=key):
            lines.append(f"| {r['dataset']} | {r['model']} | {r['checkpoint']} | {r['seed']} | {r['budget']} | "
                         f"{fmt(r['fd_classifier'], 2)} | {r['classes_ge_3pct']}/10 | {fmt(r['min_class_share'])} | "
                         f"{fmt(r.get('bits_per_dim'))} | {r['log_prob_kind']} | {fmt(r['train_s'], 1)} | "
                         f"{fmt(r.get('train_cpu_s'), 1)} | {fmt(r['sample_s'], 2)} | {fmt(r.get('sample_cpu_s'), 2)} | {r['train_steps']} | {r['threads']} | {fmt(r['load_avg_1min'], 1)} | "
                         f"{r.get('bar', '')} | {fmt(r.get('pass', ''))} |")
        lines.append("")
    lines.append("Likelihood kinds: exact = exact (flows, PixelCNN; gmm: exact for its dequantised model), "
                 "bound = lower bound on log-likelihood (VAE: IWAE; diffusion: VLB), so its bits/dim is an upper bound.")
    return "\n".join(lines) + "\n"


def keep_conditional_section(path: Path, text: str) -> str:
    """`text` plus the sections other benchmarks keep in the same file, so rewriting these tables drops neither:
    the conditional-generation section of benchmarks/bench_conditional.py (between its markers) and the
    image-to-image section of benchmarks/bench_translation.py (its heading to the next heading)."""
    import re

    old = path.read_text() if path.exists() else ""
    begin, end = "<!-- conditional: written by benchmarks/bench_conditional.py -->", "<!-- /conditional -->"
    i, j = old.find(begin), old.find(end)
    if 0 <= i < j:
        text = text.rstrip("\n") + "\n\n" + old[i:j + len(end)] + "\n"
    m = re.search(r"^## Image-to-image translation \(issue #19\).*?(?=^## |\Z)", old, re.S | re.M)
    if m:
        text = text.rstrip("\n") + "\n\n" + m.group(0).rstrip("\n") + "\n"
    return text


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="*", help="model names (default: every registered image/points model)")
    p.add_argument("--datasets", nargs="*", default=["ring8", "grid25", "fashion-mnist"])
    p.add_argument("--budget", default="quick")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gan-seeds", nargs="*", type=int, default=[0, 1, 2], help="extra seeds for GAN-family models on 2D data")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest for these small nets on a shared 2-core box)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--n-toy", type=int, default=2500)
    p.add_argument("--n-img", type=int, default=5000)
    p.add_argument("--out", default=str(ROOT / "reports" / "benchmarks" / "model_quality.md"))
    p.add_argument("--fresh", action="store_true", help="ignore earlier results in the JSON next to --out")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    try:  # numpy/sklearn BLAS too (PCA, EM): extra threads only spin on a busy shared machine
        from threadpoolctl import threadpool_limits

        threadpool_limits(a.threads)
    except ImportError:
        pass
    out_md = Path(a.out)
    out_json = out_md.with_suffix(".json")
    results = {} if a.fresh or not out_json.exists() else json.loads(out_json.read_text())["rows"]
    models = a.models or [m for m in list_models() if {"points", "image"} & set(get_model_class(m).modalities)]
    cache: dict = {}
    mine: dict = {}
    for ds in a.datasets:
        modality = get_dataset(ds).info.modality
        for name in models:
            if modality not in get_model_class(name).modalities:
                continue
            seeds = sorted({a.seed, *a.gan_seeds}) if ds in TOY and get_model_class(name).family == "gan" else [a.seed]
            for seed in seeds:
                print(f"[{time.strftime('%H:%M:%S')}] {ds} / {name} / seed {seed} ...", flush=True)
                try:
                    rows = run_one(ds, name, seed, a.budget, a.n_toy, a.n_img, cache, a.device)
                except Exception as e:  # keep the other rows; report the failure
                    print(f"  FAILED: {type(e).__name__}: {e}", flush=True)
                    continue
                if out_json.exists():  # merge rows written meanwhile by another invocation (e.g. run in parallel)
                    results = json.loads(out_json.read_text())["rows"] | mine
                for r in rows:
                    results[f"{ds}|{name}|{r['checkpoint']}|{seed}|{a.budget}"] = r
                    mine[f"{ds}|{name}|{r['checkpoint']}|{seed}|{a.budget}"] = r
                    show = {k: r[k] for k in ("checkpoint", "modes_covered", "hq_share", "nll", "fd_classifier",
                                              "classes_ge_3pct", "bits_per_dim", "train_s", "train_cpu_s", "sample_s", "train_steps") if k in r}
                    print("  ", show, flush=True)
                meta = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "torch": torch.__version__,
                        "platform": platform.platform(), "cpus": os.cpu_count()}
                out_md.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_text(out_json, json.dumps({"meta": meta, "rows": results}, indent=1))
                atomic_write_text(out_md, keep_conditional_section(out_md, markdown(list(results.values()), meta)))
    print(out_md.read_text() if out_md.exists() else "no results")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
