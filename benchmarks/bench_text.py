"""Text-track benchmark: trains the quick-budget text models on shakespeare-char and names and measures
held-out bits/char, sample diversity / novelty / embedding distances, and sampling speed; writes
reports/benchmarks/text.md.

    .venv/bin/python benchmarks/bench_text.py                   # everything, sequentially
    .venv/bin/python benchmarks/bench_text.py --part shk-transformer --json /tmp/a.json   # one part
    .venv/bin/python benchmarks/bench_text.py --report /tmp/a.json /tmp/b.json ...        # assemble the report

Parts: shk-transformer, shk-baselines (lstm, ngram at orders 3..7, text-copy), names (all four models).
Parts can run as separate processes at once (each uses --threads torch threads). Every figure states its
protocol; timings state the threads, the machine's load average and process CPU seconds (the machine is shared).
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

LN2 = math.log(2.0)
SMOKE = os.environ.get("BENCH_TEXT_SMOKE") == "1"  # pipeline check only: smoke budget, tiny evaluation
MAX_SECONDS = None  # --max-seconds: training time cap for transformer / lstm (stated in the overrides column)
ONLY = None  # --models: restrict a part to these models
SHK_EVAL_CHARS = 100_000  # first characters of the shakespeare-char test split scored for bits/char
LINE_ORDER_SEED = 20240601  # names: the held-out lines are scored in this seeded random order (as genbench run)


def load(name):
    from genbench.data import get_dataset

    ds = get_dataset(name)
    return ds, ds.load("train"), ds.load("test")


def train_and_score(model_name, ds, train, test, overrides=None, eval_chars=None, n_samples=500, features=None,
                    seed=0, speed=False):
    if ONLY and model_name not in ONLY:
        return None
    from genbench.metrics.text import diversity_metrics, embedding_metrics, heldout_text, reference_texts
    from genbench.metrics.text_speed import speed_metrics
    from reference_models import create_model

    budget = "smoke" if SMOKE else "quick"
    if SMOKE:
        eval_chars, n_samples = 2000, min(n_samples, 40)
        overrides = {k: v for k, v in (overrides or {}).items() if k == "order"}
    if MAX_SECONDS is not None and model_name in ("transformer", "lstm"):
        overrides = {**(overrides or {}), "max_seconds": MAX_SECONDS}
    m = create_model(model_name, ds.info, budget, overrides)
    load0 = os.getloadavg()[0]
    c0, t0 = time.process_time(), time.perf_counter()
    m.fit(train, seed=seed)
    fit_wall, fit_cpu = time.perf_counter() - t0, time.process_time() - c0
    row = {"model": model_name, "dataset": ds.info.name, "overrides": overrides or {}, "steps": m.history.steps,
           "params": m.num_params, "fit_wall_s": fit_wall, "fit_cpu_s": fit_cpu,
           "load_avg_start": load0, "load_avg_end": os.getloadavg()[0], "threads": torch.get_num_threads(),
           "precision": m.precision()}
    if m.log_prob_kind != "none":
        t0, c0 = time.perf_counter(), time.process_time()
        text, text_proto = heldout_text(test, eval_chars, m.sample_mode, seed=LINE_ORDER_SEED)
        nats, n = m.nll_per_char(text)
        C = m.default_context()
        row.update(nats_per_char=nats, bits_per_char=nats / LN2, perplexity=math.exp(nats), eval_chars=n,
                   context=C, stride=C // 2, eval_text=text_proto["text"], eval_wall_s=time.perf_counter() - t0,
                   eval_cpu_s=time.process_time() - c0)
    t0, c0 = time.perf_counter(), time.process_time()
    samples = m.sample(n_samples, seed=seed, batch_size=100)
    row["sample_wall_s"], row["sample_cpu_s"] = time.perf_counter() - t0, time.process_time() - c0
    row["sample_mode"] = m.sample_mode
    row["examples"] = samples[:8] if m.sample_mode == "line" else [s[:160] for s in samples[:2]]
    train_lines = set(train.lines)
    for r in diversity_metrics(samples, train_lines, m.sample_mode):
        row[r.name] = r.value
    row["diversity_protocol"] = {"unit": "char" if m.sample_mode == "line" else "word", "n_samples": len(samples)}
    if features:
        real = reference_texts(test, n_samples, m.sample_mode, m.config.sample_length, seed=0)
        for r in embedding_metrics(samples, real, features):
            row[r.name] = r.value
            row["embedding_protocol"] = r.protocol
    if speed and model_name != "text-copy":
        for r in speed_metrics(m, n_chars=256, batch_size=1, repeats=3):
            row[r.name] = r.value
    print(json.dumps(row, default=str), flush=True)
    return row


def part_shk_transformer(features):
    ds, tr, te = load("shakespeare-char")
    return [train_and_score("transformer", ds, tr, te, eval_chars=SHK_EVAL_CHARS, features=features, speed=True)]


def part_shk_baselines(features):
    ds, tr, te = load("shakespeare-char")
    rows = [train_and_score("lstm", ds, tr, te, eval_chars=SHK_EVAL_CHARS, features=features, speed=True)]
    for order in (3, 4, 5, 6, 7):
        rows.append(train_and_score("ngram", ds, tr, te, {"order": order}, eval_chars=SHK_EVAL_CHARS,
                                    features=features if order == 6 else None, speed=order == 6))
    rows.append(train_and_score("text-copy", ds, tr, te, features=features))
    return rows


def part_names(features):
    ds, tr, te = load("names")
    rows = []
    for name in ("transformer", "lstm"):
        rows.append(train_and_score(name, ds, tr, te, n_samples=1000, features=features, speed=True))
    for order in (4, 5, 6):
        rows.append(train_and_score("ngram", ds, tr, te, {"order": order}, n_samples=1000,
                                    features=features if order == 5 else None))
    rows.append(train_and_score("text-copy", ds, tr, te, n_samples=1000, features=features))
    return rows


PARTS = {"shk-transformer": part_shk_transformer, "shk-baselines": part_shk_baselines, "names": part_names}


# ---------------------------------------------------------------------------------------------- config sweep
def sweep_one(cfg: dict) -> dict:
    """One sweep point: train `cfg["model"]` on `cfg["dataset"]` with the quick config plus `cfg["ov"]`
    (1 torch thread), then bits/char on the first `eval_chars` test characters in file order (and on the whole
    test split with `eval_all`), novelty of `sample` samples. CPU seconds are this process's."""
    torch.set_num_threads(1)
    from reference_models import create_model

    ds, tr, te = load(cfg["dataset"])
    m = create_model(cfg["model"], ds.info, "quick", {**cfg.get("ov", {}), "max_seconds": cfg.get("max_seconds")})
    c0 = time.process_time()
    m.fit(tr, seed=cfg.get("seed", 0))
    row = {**cfg, "steps_done": m.history.steps, "fit_cpu": time.process_time() - c0, "params": m.num_params}
    row["bpc"] = m.nll_per_char(te, max_chars=cfg.get("eval_chars", 30000))[0] / LN2
    if cfg.get("eval_all"):
        row["bpc_all"] = m.nll_per_char(te)[0] / LN2
        if m.sample_mode == "line":  # the benchmark's protocol: whole held-out lines in a seeded random order
            from genbench.metrics.text import heldout_text

            row["bpc_shuffled"] = m.nll_per_char(heldout_text(te, None, "line", seed=LINE_ORDER_SEED)[0])[0] / LN2
    if cfg.get("sample"):
        s = m.sample(cfg["sample"], seed=0, batch_size=100)
        lines = set(tr.lines)
        row["novelty"] = sum(x not in lines for x in s) / len(s)
    return row


def run_sweep(configs: str, out: str, procs: int) -> None:
    import multiprocessing as mp

    cfgs = json.loads(Path(configs).read_text())
    with mp.get_context("spawn").Pool(procs, maxtasksperchild=1) as pool, open(out, "a") as f:
        for row in pool.imap_unordered(sweep_one, cfgs):
            print(json.dumps(row, default=str), flush=True)
            f.write(json.dumps(row, default=str) + "\n")
            f.flush()


def sweep_report(rows: list, note: str) -> list:
    out = ["## Config sweep (how the quick configs were chosen)", "", note, "",
           "| sweep | dataset | model | setting | steps | training CPU s | bits/char | whole test, file order | whole test, shuffled lines | novelty | params |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    key = lambda r: (r["dataset"], r.get("sweep", ""), r["model"], r["bpc"])
    for r in sorted(rows, key=key):
        out.append("| " + " | ".join([r.get("sweep", ""), r["dataset"], r["model"], r["tag"], str(r["steps_done"]),
                                      fmt(r["fit_cpu"], 1), fmt(r["bpc"]), fmt(r.get("bpc_all")), fmt(r.get("bpc_shuffled")),
                                      fmt(r.get("novelty")),
                                      str(r["params"])]) + " |")
    return out + [""]


def row_precision(r) -> str:
    """Training/sampling arithmetic of a row ('bf16-autocast' or 'float32'); rows written before this field
    existed get it from the model's current quick config with the row's overrides (same config, same CPU)."""
    if r["model"] not in ("transformer", "lstm"):
        return "-"  # counting models
    if "precision" in r:
        return r["precision"]
    from genbench.data import get_dataset
    from reference_models import create_model

    return create_model(r["model"], get_dataset(r["dataset"]).info, "quick", r.get("overrides") or None).precision()


def fmt(v, nd=3):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def report(rows, meta) -> str:
    out = ["# Text models benchmark", "",
           "Written by `benchmarks/bench_text.py`. Quick budget (reference_models/*.py `for_budget('quick')`), seed 0, CPU.", ""]
    out += [f"- machine: {meta.get('platform')}, {meta.get('cpus')} CPUs shared with other jobs; torch {meta.get('torch')}",
            f"- torch threads per process: {meta.get('threads')}; the parts ran as {meta.get('processes')} concurrent processes",
            "- timings are wall-clock under that contention; `fit CPU s` is the process CPU time of training (closer to "
            "what an idle machine needs, per thread); load average at start/end of each fit is listed"]
    out += [f"- {n}" for n in meta.get("notes", [])] + [""]
    for dn, title in (("shakespeare-char", "shakespeare-char"), ("names", "names")):
        rs = [r for r in rows if r["dataset"] == dn]
        if not rs:
            continue
        r0 = next((r for r in rs if "context" in r), {})
        out += [f"## {title}", "",
                f"Held-out NLL: test split, {fmt(r0.get('eval_chars'), 0)} characters ({r0.get('eval_text', 'first characters')}), "
                "preceded by a newline; sliding window, each character scored once with the model's context (context/stride "
                "below), always in float32 (the training precision column is the arithmetic of training and sampling). "
                "Diversity: distinct-n and self-BLEU-4 in "
                f"{rs[0].get('diversity_protocol', {}).get('unit')} units; novelty = share of generated lines not in the training lines. "
                f"Embedding FD / precision / recall (k=3): {rs[0].get('embedding_protocol', {}).get('features', '-')} features of "
                "the samples vs as many held-out units of the same kind (lines for names, passages of the same length for shakespeare).", "",
                "| model | overrides | steps | params | training precision | fit wall s | fit CPU s | load avg | bits/char | ppl | ctx/stride | distinct-1/2/3/4 | self-BLEU | novelty | FD | P | R | chars/s cache | chars/s no cache | 1st char ms |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in rs:
            dist = "/".join(fmt(r.get(f"distinct_{n}"), 2) for n in (1, 2, 3, 4))
            out.append("| " + " | ".join([
                r["model"], json.dumps(r.get("overrides") or {}).replace("|", "/"), str(r["steps"]), str(r["params"]),
                row_precision(r), fmt(r["fit_wall_s"], 1), fmt(r["fit_cpu_s"], 1), f"{r['load_avg_start']:.1f}-{r['load_avg_end']:.1f}",
                fmt(r.get("bits_per_char")), fmt(r.get("perplexity"), 2),
                f"{r['context']}/{r['stride']}" if "context" in r else "-", dist, fmt(r.get("self_bleu")),
                fmt(r.get("novelty")), fmt(r.get("fd_text"), 4), fmt(r.get("precision_text"), 3), fmt(r.get("recall_text"), 3),
                fmt(r.get("chars_per_s"), 0), fmt(r.get("chars_per_s_nocache"), 0), fmt(r.get("first_char_latency"), 1)]) + " |")
        out.append("")
        for r in rs:
            if r["model"] in ("transformer", "lstm") or (r["model"] == "ngram" and "fd_text" in r):
                ex = r.get("examples") or []
                if not ex:
                    continue
                out.append(f"Samples, {r['model']}: " + (", ".join(ex) if r["sample_mode"] == "line" else ""))
                if r["sample_mode"] != "line":
                    out += ["", "```", ex[0] if ex else "", "```"]
                out.append("")
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=sorted(PARTS), action="append")
    ap.add_argument("--json", help="write this part's rows here (for --report)")
    ap.add_argument("--report", nargs="*", help="assemble reports/benchmarks/text.md from these JSON files")
    ap.add_argument("--features", default="text-auto", help="text feature extractor (minilm, char-ngram, text-auto)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-seconds", type=float, help="cap the training time of transformer / lstm (shared machine)")
    ap.add_argument("--models", nargs="*", help="only these models within the parts")
    ap.add_argument("--note", action="append", default=[], help="a line for the report's notes (how the run went)")
    ap.add_argument("--from-logs", nargs="*", help="rows from the JSON lines printed by parts (when a part was cut short)")
    ap.add_argument("--processes", type=int, default=1, help="how many parts ran at once (stated in the report)")
    ap.add_argument("--out", default=str(ROOT / "reports" / "benchmarks" / "text.md"))
    ap.add_argument("--sweep", nargs=2, metavar=("CONFIGS.json", "OUT.jsonl"), help="run a config sweep (1 thread per process)")
    ap.add_argument("--procs", type=int, default=1, help="--sweep: processes at once")
    ap.add_argument("--sweep-rows", help="--report: add the sweep table from this JSON-lines file")
    ap.add_argument("--sweep-note", default="", help="--report: how and where the sweep ran")
    a = ap.parse_args(argv)
    if a.sweep:
        run_sweep(a.sweep[0], a.sweep[1], a.procs)
        return 0
    global MAX_SECONDS, ONLY
    MAX_SECONDS, ONLY = a.max_seconds, a.models
    torch.set_num_threads(a.threads)
    meta = {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__, "threads": a.threads,
            "processes": a.processes}
    from genbench.fileio import atomic_write_text

    if a.report is not None:
        rows, metas = [], []
        for f in a.from_logs or []:
            for line in Path(f).read_text().splitlines():
                if line.startswith("{") and '"model"' in line:
                    rows.append(json.loads(line))
        for f in a.report:
            blob = json.loads(Path(f).read_text())
            rows += blob["rows"]
            metas.append(blob["meta"])
        meta = metas[0] if metas else meta
        meta["processes"] = a.processes
        meta["notes"] = a.note
        text = report(rows, meta)
        if a.sweep_rows:
            srows = [json.loads(x) for x in Path(a.sweep_rows).read_text().splitlines() if x.strip()]
            text += "\n".join(sweep_report(srows, a.sweep_note)) + "\n"
        atomic_write_text(a.out, text)
        print(f"wrote {a.out}")
        return 0
    features = a.features
    if features == "text-auto":
        from genbench.features.text import minilm_available

        features = "minilm" if minilm_available() else "char-ngram"
    rows = []
    for p in a.part or sorted(PARTS):
        rows += [r for r in PARTS[p](features) if r is not None]
    if a.json:
        atomic_write_text(a.json, json.dumps({"rows": rows, "meta": meta}, default=str, indent=1))
    if not a.part:
        atomic_write_text(a.out, report(rows, meta))
        print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
