"""Quality bar of the translation track (issue #19), measured, not a timed test:

    CycleGAN beats both baselines (identity, colour-transfer) on FD, with content kept >= 90% of the paired
    oracle's, on at least 2 of 3 seeds (each direction).

Runs the `i2i` suite (quick budget, or --budget) for seeds 0, 1, 2 into --run-dir (resumable: finished jobs are
kept), then writes one table and verdict per translation pair of the suite (mnist-grey-colour, mnist-grey-edges) as
the section "Image-to-image translation (issue #19)" of reports/benchmarks/model_quality.md (replacing that section
only; the rest of the file is left as it is). Exit 0 only when the bar is met on every pair.

    PYTHONPATH=. python benchmarks/bench_translation.py [--budget quick] [--seeds 0,1,2] [--run-dir runs/i2i-bench]
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SECTION = "## Image-to-image translation (issue #19)"
DIRS = ("a2b", "b2a")


def run(budget: str, seeds: list, run_dir: Path) -> float:
    from genbench.runner import Runner
    from genbench.suite import apply_overrides, load_suite

    suite = apply_overrides(load_suite("i2i"), seeds=list(seeds), budget=budget)
    t0 = time.perf_counter()
    summary = Runner(suite, run_dir, device="cpu", quiet=True).run()
    if summary.failed:
        raise SystemExit(f"failed jobs: {summary.failed}")
    return time.perf_counter() - t0


def _ci(r, percent: bool = False) -> str:
    lo, hi = r.get("ci_low"), r.get("ci_high")
    if lo is None or hi is None or lo != lo or hi != hi:  # no interval (n_bootstrap 0) or NaN from the frame
        return ""
    return f" [{100 * lo:.1f}, {100 * hi:.1f}]" if percent else f" [{lo:.1f}, {hi:.1f}]"


def metrics(run_dir: Path):
    from genbench.results.store import ResultsStore

    with ResultsStore(run_dir) as store:
        return store.metrics_frame()


def table(f, seeds: list, dataset: str) -> tuple[str, int]:
    """The bar's table for one pair of the run's metrics frame `f`, and on how many seeds the bar is met."""
    rec = {(r["model"], int(r["seed"]), r["metric"]): r for r in f.to_dict("records")
           if r["variant"] == "" and r["dataset"] == dataset}
    v = {k: float(r["value"]) for k, r in rec.items()}
    lines = ["| seed | direction | cyclegan FD [95% CI] | colour-transfer FD | identity FD | cyclegan content [95% CI] | "
             "oracle content | content / oracle | cyclegan cycle L1 | bar met |", "|---|---|---|---|---|---|---|---|---|---|"]
    seeds_ok = 0
    for s in seeds:
        ok_all = True
        for d in DIRS:
            fd = {m: v[(m, s, f"fd_{d}")] for m in ("cyclegan", "colour-transfer", "identity")}
            c, o = v[("cyclegan", s, f"content_kept_{d}")], v[("paired-oracle", s, f"content_kept_{d}")]
            ok = fd["cyclegan"] < fd["colour-transfer"] and fd["cyclegan"] < fd["identity"] and c >= 0.9 * o
            ok_all &= ok
            lines.append(f"| {s} | {d} | {fd['cyclegan']:.1f}{_ci(rec[('cyclegan', s, f'fd_{d}')])} | "
                         f"{fd['colour-transfer']:.1f} | {fd['identity']:.1f} | "
                         f"{100 * c:.1f}%{_ci(rec[('cyclegan', s, f'content_kept_{d}')], True)} | {100 * o:.1f}% | "
                         f"{c / o:.2f} | {v[('cyclegan', s, f'cycle_l1_{d}')]:.3f} | {'yes' if ok else 'no'} |")
        seeds_ok += int(ok_all)
    return "\n".join(lines), seeds_ok


def write_section(out: Path, body: str) -> None:
    from genbench.fileio import atomic_write_text

    text = out.read_text(encoding="utf-8") if out.exists() else "# Model quality\n"
    pat = re.compile(re.escape(SECTION) + r".*?(?=\n## |\Z)", re.S)
    block = f"{SECTION}\n\n{body.strip()}\n"
    text = pat.sub(lambda _m: block, text) if pat.search(text) else text.rstrip("\n") + "\n\n" + block
    atomic_write_text(out, text)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", default="quick")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--run-dir", default=str(ROOT / "runs" / "i2i-bench"))
    p.add_argument("--out", default=str(ROOT / "reports" / "benchmarks" / "model_quality.md"))
    a = p.parse_args(argv)
    seeds = [int(s) for s in a.seeds.split(",")]
    secs = run(a.budget, seeds, Path(a.run_dir))
    from genbench.env_info import cpu_model

    need = (2 * len(seeds) + 2) // 3  # 2 of 3
    body = (f"`PYTHONPATH=. python benchmarks/bench_translation.py --budget {a.budget} --seeds {a.seeds}`: the `i2i` "
            f"suite on {cpu_model()}, {secs:.0f} s (jobs already in --run-dir are reused).")
    passed = []
    f = metrics(Path(a.run_dir))
    for ds in sorted(set(f["dataset"])):
        tab, ok = table(f, seeds, ds)
        passed.append(ok >= need)
        body += (f"\n\n**{ds}**\n\n{tab}\n\nBar (CycleGAN FD below both baselines and content kept >= 90% of the "
                 f"oracle's, both directions): met on {ok} of {len(seeds)} seeds -> {'PASS' if ok >= need else 'FAIL'} "
                 f"(needs {need} of {len(seeds)}).")
    write_section(Path(a.out), body)
    print(body)
    return 0 if passed and all(passed) else 1


if __name__ == "__main__":
    raise SystemExit(main())
