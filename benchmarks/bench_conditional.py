"""Quality bars of the class-conditional reference models (issue #23), measured through the pipeline.

    .venv/bin/python benchmarks/bench_conditional.py                 # the `conditional` suite, 2000 samples
    .venv/bin/python benchmarks/bench_conditional.py --n-samples 1000 --guidance 0 1 2 4 --models cfg-ddpm

Runs the built-in `conditional` suite's Fashion-MNIST block (cfg-ddpm with its guidance sweep, cgan, cvae and cpixelcnn, all
at their quick CPU configs; conditions uniform over the 10 classes; the suite's names prefix block for the text
models is left out: its figures are in docs/conditional.md, "Text prefixes") with one torch thread into --out (a scratch run
directory; rerunning resumes), then writes reports/benchmarks/conditional.md and the same table into the
"Conditional generation" section of reports/benchmarks/model_quality.md (between its markers): per model and
guidance scale the conditional accuracy (pinned Fashion-MNIST classifier; its own held-out accuracy, the
ceiling, is stated), CAS (with its real-data ceiling), intra-class FD, intra-class recall and coverage, FD,
precision, recall, NFE per sample and samples/s, then the bars: cfg-ddpm's conditional accuracy rises with
guidance and reaches >= 90% at some scale while its recall falls; cgan reaches >= 85%. With the training
times, the command, the date and the load average. Not a timed test: wall times depend on the machine's load.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from genbench.fileio import atomic_write_text  # noqa: E402

COLS = [("conditional_accuracy", "cond. accuracy", "{:.1%}"), ("cas", "CAS", "{:.1%}"),
        ("intra_fd", "intra-class FD", "{:.2f}"), ("intra_recall", "intra recall", "{:.3f}"),
        ("intra_coverage", "intra coverage", "{:.3f}"),
        ("fd", "FD", "{:.2f}"), ("precision", "precision", "{:.3f}"), ("recall", "recall", "{:.3f}"),
        ("nfe", "NFE/sample", "{:.0f}"), ("samples_per_s", "samples/s", "{:.1f}")]
MARK_BEGIN = "<!-- conditional: written by benchmarks/bench_conditional.py -->"
MARK_END = "<!-- /conditional -->"
BARS = {"cfg-ddpm": 0.90, "cgan": 0.85}  # conditional accuracy to reach (issue #23)


def bars(vals: dict, scales: list, default_g: float, models: list) -> list:
    """The issue's bars as (text, PASS/FAIL) lines from {(model, variant): {metric: value}}."""
    out = []
    if "cfg-ddpm" in models and len(scales) > 1:
        acc = [vals.get(("cfg-ddpm", v), {}).get("conditional_accuracy") for _, v in scales]
        rec = [vals.get(("cfg-ddpm", v), {}).get("recall") for _, v in scales]
        if None not in acc and None not in rec:
            rises = acc[-1] > acc[0]
            best = max(range(len(acc)), key=lambda i: acc[i])
            reach = acc[best] >= BARS["cfg-ddpm"]
            falls = rec[best] < rec[0]
            out.append(f"cfg-ddpm: conditional accuracy {acc[0]:.1%} at s = {scales[0][0]:g} -> {acc[-1]:.1%} at s = "
                       f"{scales[-1][0]:g} (rises: {'yes' if rises else 'no'}); best {acc[best]:.1%} at s = "
                       f"{scales[best][0]:g} (>= 90%: {'yes' if reach else 'no'}); recall {rec[0]:.3f} -> "
                       f"{rec[best]:.3f} there (falls: {'yes' if falls else 'no'}): "
                       f"**{'PASS' if rises and reach and falls else 'FAIL'}**")
    if "cgan" in models:
        a = vals.get(("cgan", ""), {}).get("conditional_accuracy")
        if a is not None:
            out.append(f"cgan: conditional accuracy {a:.1%} (bar >= 85%): **{'PASS' if a >= BARS['cgan'] else 'FAIL'}**")
    for name in ("cvae", "cpixelcnn"):
        a = vals.get((name, ""), {}).get("conditional_accuracy") if name in models else None
        if a is not None:
            out.append(f"{name}: conditional accuracy {a:.1%} (no bar in the issue)")
    return out


def put_section(path: Path, section: str) -> None:
    """Replace (or append) the marked conditional section of model_quality.md."""
    text = path.read_text() if path.exists() else ""
    block = f"{MARK_BEGIN}\n{section.rstrip()}\n{MARK_END}\n"
    if MARK_BEGIN in text and MARK_END in text:
        text = re.sub(re.escape(MARK_BEGIN) + r".*?" + re.escape(MARK_END) + r"\n?", lambda m: block, text, flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n" + block
    atomic_write_text(path, text)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/tmp/genbench-bench-conditional", help="scratch run directory")
    ap.add_argument("--n-samples", type=int, default=None, help="samples per setting (default: the suite's)")
    ap.add_argument("--guidance", type=float, nargs="+", default=None, help="cfg-ddpm scales (default: the suite's)")
    ap.add_argument("--models", nargs="+", default=None, help="models of the suite to run (default: all)")
    ap.add_argument("--report", default=str(ROOT / "reports" / "benchmarks" / "conditional.md"))
    ap.add_argument("--quality-report", default=str(ROOT / "reports" / "benchmarks" / "model_quality.md"),
                    help="file whose marked conditional section gets the table ('' to skip)")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)  # as `genbench run --threads 1` does
    from genbench.data import get_dataset
    from genbench.env_info import cpu_isa, hardware
    from genbench.models import get_model_class
    from genbench.runner import Runner
    from genbench.results.store import ResultsStore
    from genbench.suite import load_suite

    suite = copy.deepcopy(load_suite("conditional"))
    # the Fashion-MNIST block only: the class-conditional models (the text prefix block is scored on other data)
    image_models = {m.name for d, m in suite.pairs() if d.name == "fashion-mnist"}
    suite.datasets = [d for d in suite.datasets if d.name == "fashion-mnist"]
    suite.models = [m for m in suite.models if m.name in image_models]
    suite.sweeps = {k: v for k, v in suite.sweeps.items() if k in image_models}
    if args.n_samples:
        suite.datasets[0].n_samples = int(args.n_samples)
    if args.models:
        unknown = sorted(set(args.models) - {m.name for m in suite.models})
        if unknown:
            ap.error(f"--models {unknown}: not in the conditional suite's Fashion-MNIST block "
                     f"({[m.name for m in suite.models]})")
        suite.models = [m for m in suite.models if m.name in args.models]
        suite.sweeps = {k: v for k, v in suite.sweeps.items() if k in args.models}
    models = [m.name for m in suite.models]
    default_g = get_model_class("cfg-ddpm").Config.for_budget(suite.budget, get_dataset("fashion-mnist").info).guidance
    scales = []
    if "cfg-ddpm" in models:
        gs = sorted(float(g) for g in (args.guidance or suite.sweeps["cfg-ddpm"].guidance))
        # the job's main variant already samples at the config's scale: the sweep skips it (no duplicate work)
        suite.sweeps["cfg-ddpm"].guidance = [g for g in gs if g != default_g]
        scales = [(g, "" if g == default_g else f"guidance-{g:g}") for g in gs]
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
    vals: dict = {}
    protos: dict = {}
    for r in f.to_dict("records"):
        if r["dataset"] != "fashion-mnist" or r["model"] not in models:  # a scratch dir may hold other jobs
            continue
        vals.setdefault((r["model"], r["variant"]), {})[r["metric"]] = r["value"]
        protos.setdefault(r["metric"], json.loads(r["protocol"] or "{}"))
    acc_proto = protos.get("conditional_accuracy", {})
    rows = [(m, g, v) for m in models for g, v in (scales if m == "cfg-ddpm" else [(None, "")])]
    ds = suite.datasets[0]
    train = ", ".join(f"{m} {vals.get((m, ''), {}).get('train_seconds', float('nan')):.0f} s" for m in models)
    lines = [
        "## Conditional generation (issue 23 bars; Fashion-MNIST, quick configs)",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(t0))} on this shared machine ({hardware('cpu')}"
        f"{'' if any(f.startswith('amx') for f in cpu_isa()) else ', no AMX'}), "
        f"1 torch thread, load average {load0[0]:.1f} at the start and {load1[0]:.1f} at the end "
        f"(wall times move with load).",
        "",
        "Command: `.venv/bin/python benchmarks/bench_conditional.py"
        + (f" --n-samples {args.n_samples}" if args.n_samples else "")
        + (f" --guidance {' '.join(f'{g:g}' for g in args.guidance)}" if args.guidance else "")
        + (f" --models {' '.join(args.models)}" if args.models else "") + "` "
        f"(the built-in `conditional` suite's Fashion-MNIST block: {ds.n_samples} samples per model and guidance scale, conditions "
        f"{ds.conditions} over the 10 classes, features and judge `{ds.features}`, reference: the {ds.reference} "
        f"split; seed {suite.seeds[0]}; cfg-ddpm's scale {default_g:g} is its job's main variant, the others its "
        "sweep).",
        "",
        f"Training wall time: {train}; whole run {wall:.0f} s wall, {cpu:.0f} CPU-s in this process.",
        "",
        f"Ceilings: the classifier's own held-out accuracy, {acc_proto.get('classifier_accuracy', float('nan')):.2%} "
        "(real test images of the requested class score exactly this; a sampler ignoring its condition ~10%). "
        f"CAS real-data ceiling (the same recipe on as many real training images per class, tested on the same "
        f"reference items): {protos.get('cas', {}).get('real_data_ceiling', float('nan')):.1%}.",
        "",
        "| model | guidance s | " + " | ".join(c[1] for c in COLS) + " |",
        "|---|---:|" + "---:|" * len(COLS),
    ]
    for m, g, v in rows:
        row = [m, "—" if g is None else f"{g:g}"]
        for key, _, fmt in COLS:
            x = vals.get((m, v), {}).get(key)
            row.append(fmt.format(x) if x is not None else "—")
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Bars:", ""] + [f"- {b}" for b in bars(vals, scales, default_g, models)]
    lines += ["", "cfg-ddpm: s = 0 is the unconditional model (the null label), s = 1 the conditional model, s > 1 "
              "guided (two network passes per step: NFE doubles). Intra-class FD, recall and coverage: per class "
              "between the classifier features of the generated and the reference images of that class (200 + "
              "~200 per class at 2000 samples), mean over the 10 classes; compare only at equal sample counts.", ""]
    text = "\n".join(lines)
    atomic_write_text(Path(args.report), "# Conditional generation quality\n\n" + text.split("\n", 1)[1])
    if args.quality_report:
        put_section(Path(args.quality_report), text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
