"""Conditional accuracy vs guidance of the class-conditional DDPM (cfg-ddpm), measured through the pipeline.

    .venv/bin/python benchmarks/bench_conditional.py                 # the `conditional` suite, 2000 samples
    .venv/bin/python benchmarks/bench_conditional.py --n-samples 1000 --guidance 0 1 2 4

Runs the built-in `conditional` suite (Fashion-MNIST, cfg-ddpm at its quick CPU config, conditions uniform over
the 10 classes, guidance sweep) with one torch thread into --out (a scratch run directory; rerunning resumes), then
writes reports/benchmarks/conditional.md: per guidance scale the conditional accuracy (pinned Fashion-MNIST
classifier; its own held-out accuracy, the ceiling, is stated), CAS (with its real-data ceiling), intra-class FD, FD, precision, recall, NFE per
sample and samples/s, with the training time, the command, the date and the load average. Not a timed test:
wall times depend on the machine's load.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from genbench.fileio import atomic_write_text  # noqa: E402

COLS = [("conditional_accuracy", "cond. accuracy", "{:.1%}"), ("cas", "CAS", "{:.1%}"),
        ("intra_fd", "intra-class FD", "{:.2f}"),
        ("fd", "FD", "{:.2f}"), ("precision", "precision", "{:.3f}"), ("recall", "recall", "{:.3f}"),
        ("nfe", "NFE/sample", "{:.0f}"), ("samples_per_s", "samples/s", "{:.1f}")]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/tmp/genbench-bench-conditional", help="scratch run directory")
    ap.add_argument("--n-samples", type=int, default=None, help="samples per setting (default: the suite's)")
    ap.add_argument("--guidance", type=float, nargs="+", default=None, help="scales (default: the suite's)")
    ap.add_argument("--report", default=str(ROOT / "reports" / "benchmarks" / "conditional.md"))
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)  # as `genbench run --threads 1` does
    from genbench.runner import Runner
    from genbench.store import ResultsStore
    from genbench.suite import load_suite

    suite = copy.deepcopy(load_suite("conditional"))
    if args.n_samples:
        suite.datasets[0].n_samples = int(args.n_samples)
    from genbench.models import get_model_class
    from genbench.data import get_dataset

    default_g = get_model_class("cfg-ddpm").Config.for_budget(suite.budget, get_dataset("fashion-mnist").info).guidance
    scales = [float(g) for g in (args.guidance or suite.sweeps["cfg-ddpm"].guidance)]
    # the job's main variant already samples at the config's scale: the sweep skips it (no duplicate work)
    suite.sweeps["cfg-ddpm"].guidance = [g for g in scales if g != default_g]
    load0 = os.getloadavg()
    t0 = time.time()
    cpu0 = time.process_time()
    summary = Runner(suite, args.out, device="cpu", quiet=True, threads=1, workers=1).run()
    wall, cpu = time.time() - t0, time.process_time() - cpu0
    load1 = os.getloadavg()
    if summary.failed:
        print(f"failed: {summary.failed}", file=sys.stderr)
        return 1
    with ResultsStore(args.out) as store:
        f = store.metrics_frame()
        jobs = store.jobs_frame()
    f = f[f["model"] == "cfg-ddpm"]
    vals: dict = {}
    protos: dict = {}
    for r in f.to_dict("records"):
        vals.setdefault(r["variant"], {})[r["metric"]] = r["value"]
        protos.setdefault(r["metric"], json.loads(r["protocol"] or "{}"))
    train_s = vals.get("", {}).get("train_seconds")
    acc_proto = protos.get("conditional_accuracy", {})
    variants = [(g, "" if g == default_g else f"guidance-{g:g}") for g in sorted(scales)]
    lines = [
        "# Conditional accuracy vs classifier-free guidance (cfg-ddpm, quick config, Fashion-MNIST)",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(t0))} on this shared 2-core CPU machine, "
        f"1 torch thread, load average {load0[0]:.1f} at the start and {load1[0]:.1f} at the end "
        f"(wall times move with load). Torch {torch.__version__}.",
        "",
        f"Command: `.venv/bin/python benchmarks/bench_conditional.py"
        + (f" --n-samples {args.n_samples}" if args.n_samples else "")
        + (f" --guidance {' '.join(f'{g:g}' for g in args.guidance)}" if args.guidance else "") + "` "
        f"(the built-in `conditional` suite: {suite.datasets[0].n_samples} samples per guidance scale, conditions "
        f"{suite.datasets[0].conditions} over the 10 classes, features and judge `{suite.datasets[0].features}`; "
        f"seed {suite.seeds[0]}; the scale {default_g:g} is the job's main variant, the others its sweep).",
        "",
        f"Training: {train_s:.0f} s wall (cfg-ddpm quick: 1200 steps of batch 32, label dropout 0.1); whole run "
        f"{wall:.0f} s wall, {cpu:.0f} CPU-s in this process." if train_s is not None else "",
        "",
        f"Ceiling: the classifier's own held-out accuracy, {acc_proto.get('classifier_accuracy', float('nan')):.2%} "
        "(real test images of the requested class score exactly this; a sampler ignoring its condition ~10%). "
        f"CAS real-data ceiling (the same recipe on as many real training images per class): "
        f"{protos.get('cas', {}).get('real_data_ceiling', float('nan')):.1%}.",
        "",
        "| guidance s | " + " | ".join(c[1] for c in COLS) + " |",
        "|---:|" + "---:|" * len(COLS),
    ]
    for g, v in variants:
        row = [f"{g:g}"]
        for key, _, fmt in COLS:
            x = vals[v].get(key)
            row.append(fmt.format(x) if x is not None else "—")
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "s = 0 is the unconditional model (the null label), s = 1 the conditional model, s > 1 guided "
              "(two network passes per step: NFE doubles). Intra-class FD: mean over the 10 classes of the FD between "
              "the classifier features of the generated and the held-out images of each class (200 + ~200 per class "
              "at 2000 samples); compare only at equal sample counts.", ""]
    atomic_write_text(Path(args.report), "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
